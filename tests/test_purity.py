"""The core modules stay pure: no I/O, no clock, no global randomness.

Every ``trio_kad`` module is core unless it is named in ``SHELL`` (the Trio and
I/O side), so a new module is checked as soon as it exists. A core module:

- imports none of ``FORBIDDEN`` (``import x``, ``import x.y``, ``from x import y``);
- imports ``random`` only as a module, for the ``random.Random`` type and seeded
  instances: no ``from random import ...``, and no ``random.<function>()`` through
  any name the module is bound to (``import random as r``; ``r.random()``);
- loads no module dynamically (``__import__``, ``importlib``);
- imports no shell module, which would bring Trio or sockets in with it.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_kad"

SHELL = [
    "__init__",  # re-exports both sides
    "__main__",
    "_api",
    "_open",  # open_dht: starts a node and its background tasks
    "_demo",
    "_logs",  # formats wall-clock times of log records
    "_maintenance",
    "_memory*",
    "_metrics",  # a transport wrapper counting RPCs; read at scrape time
    "_node*",
    "_persist*",
    "_search",  # the lookup driver, once it leaves _node
    "_serve",  # serving RPCs, once it leaves _node
    "_signed_ops",  # publishing and reading signed records
    "_sockets",
    "_status",  # --status: joins a node to the HTTP server
    "_status_http",
    "_storing",  # storing pairs, once it leaves _node
    "_tcp*",
    "_transport",
    "cli",
    "_cli_records",  # the signed-record commands of cli
    "testing",
    # --- provider sets (issue 17)
    "_provider_ops",  # announcing, finding and replicating providers
    "_cli_providers",  # the announce and providers commands of cli
    # --- watching a key (issue 18)
    "_pushing",  # watching a key: the holder's pushes
    "_watching",  # watching a key: the watcher's listens and polls
    "_cli_watch",
]
"""The Trio and I/O side (glob patterns). A new module that must do I/O goes here."""

FORBIDDEN = {
    "asyncio",
    "datetime",
    "importlib",
    "os",
    "secrets",
    "selectors",
    "socket",
    "threading",
    "time",
    "trio",
}


def is_shell(module: str) -> bool:
    return any(fnmatchcase(module, pattern) for pattern in SHELL)


def all_modules() -> list[str]:
    """Every module of the package, dotted below it (``_x`` or ``sub._y``)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    return [".".join(p.relative_to(PACKAGE).with_suffix("").parts) for p in paths]


CORE = [m for m in all_modules() if not is_shell(m.rpartition(".")[2])]


def impurities(source: str) -> list[str]:
    """What makes ``source`` impure as a core module, one line per finding."""
    tree = ast.parse(source)
    found: list[str] = []
    random_names: set[str] = set()  # names bound to the random module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in FORBIDDEN:
                    found.append(f"imports {alias.name}")
                if alias.name == "random":
                    random_names.add(alias.asname or "random")
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                top = node.module.split(".")[0]
                if top in FORBIDDEN:
                    found.append(f"imports from {node.module}")
                if top == "random":
                    names = ", ".join(a.name for a in node.names)
                    found.append(f"imports {names} from random (use an rng argument)")
            elif node.level == 1:
                # ``from ._x import y`` or ``from . import _x``
                targets = [node.module] if node.module else [a.name for a in node.names]
                for target in targets:
                    if is_shell(target.split(".")[0]):
                        found.append(f"imports the shell module {target}")
        elif isinstance(node, ast.Name) and node.id == "__import__":
            found.append("calls __import__")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_names
            and node.attr != "Random"
        ):
            # random.Random (the type, for annotations and seeded instances) is fine;
            # module-level functions like random.random() use the hidden global state.
            found.append(f"uses {node.value.id}.{node.attr} (the global random state)")
    return found


def test_the_rule_finds_the_core() -> None:
    pure = {"_bucket", "_config", "_diversity", "_errors", "_ids", "_limits", "_lookup"}
    assert pure | {"_messages", "_records", "_routing"} <= set(CORE)
    assert not {"_api", "_node", "_tcp", "_memory", "cli", "__main__"} & set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_core_module_is_pure(module: str) -> None:
    path = PACKAGE.joinpath(*module.split(".")).with_suffix(".py")
    found = impurities(path.read_text())
    assert not found, (
        f"trio_kad.{module} is core and must stay pure: {'; '.join(found)}. "
        "If it is meant to do I/O, add it to SHELL in tests/test_purity.py."
    )


@pytest.mark.parametrize(
    "source",
    [
        "import trio",
        "import socket",
        "import os.path",
        "from time import monotonic",
        "from socket import socketpair",
        "from trio.lowlevel import checkpoint",
        "from random import random",
        "from random import Random",
        "import random\nrandom.random()",
        "import random\nx = random.choice([1, 2])",
        "import random as r\nr.shuffle([])",
        "import random, random as rr\nrr.getrandbits(8)",
        "__import__('time').monotonic()",
        "import importlib\nimportlib.import_module('time')",
        "from ._node import Node",
        "from ._tcp_out import Pool",
        "from . import _api",
    ],
)
def test_impurities_are_found(source: str) -> None:
    assert impurities(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import random\ndef f(rng: random.Random) -> int:\n    return rng.random()",
        "import random as r\nrng = r.Random(7)",
        "from ._ids import Contact\nfrom . import _routing",
        "import math, struct\nfrom collections import OrderedDict",
    ],
)
def test_pure_sources_pass(source: str) -> None:
    assert impurities(source) == [], source
