"""The core modules stay pure: no I/O, no clock, no global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = [
    "_ids",
    "_config",
    "_errors",
    "_messages",
    "_codec",
    "_contacts",
    "_decode",
    "_decode_fast",
    "_encode",
    "_framing",
    "_values",
    "_routing",
    "_diversity",
    "_lookup",
    "_records",
    "_limits",
]
FORBIDDEN = {"trio", "socket", "time", "asyncio", "os", "secrets", "threading", "selectors"}
PACKAGE = Path(__file__).resolve().parent.parent / "trio_kad"


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_nothing_impure(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN, f"{module} imports {sorted(imported & FORBIDDEN)}"


@pytest.mark.parametrize("module", CORE)
def test_core_module_uses_no_global_random(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
        ):
            # random.Random (the type, for annotations and seeded instances) is fine;
            # module-level functions like random.random() use the hidden global state.
            assert node.attr == "Random", f"{module} calls random.{node.attr}"
