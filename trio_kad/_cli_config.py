"""``Config`` on the command line: ``trio-kad config --defaults`` and serve's field flags.

The meaning printed for each field is the first paragraph of its docstring in
``_config.py``, read with ``ast``, so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import json
import textwrap
from functools import cache

from . import _config
from ._config import Config
from ._config_file import ConfigFileError, config_from_table, load_config

__all__ = [
    "COMMON_FIELDS",
    "SERVE_DEFAULTS",
    "add_config_flags",
    "config_from_args",
    "defaults_toml",
]

COMMON_FIELDS = (
    "k",
    "alpha",
    "rpc_timeout",
    "max_value_size",
    "max_inbound_connections",
    "max_records",
    "max_store_bytes",
)
"""The fields ``serve`` takes as flags (``--max-value-size``); the rest need ``--config``."""

SERVE_DEFAULTS: dict[str, object] = {"handoff_on_exit": True}
"""Where ``serve`` differs from ``Config()``: a node run for months leaves gracefully."""

_HEADER = """\
# Every trio-kad Config field with its default (trio-kad config --defaults).
# Use with: trio-kad serve --config FILE.toml; keep only the lines you change.
# Times are in seconds, sizes in bytes.
"""


@cache
def field_docs() -> dict[str, str]:
    """Each ``Config`` field's name to the first paragraph of its docstring, on one line."""
    tree = ast.parse(inspect.getsource(_config))
    body = next(
        node.body
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == Config.__name__
    )
    docs: dict[str, str] = {}
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            first = inspect.cleandoc(doc.value.value).split("\n\n")[0]
            docs[field.target.id] = " ".join(first.split())
    return docs


def defaults_toml() -> str:
    """Every ``Config`` field with its default and meaning, as TOML ``load_config`` accepts.

    A field whose default is ``None`` (decided from the listening address) is
    printed commented out, since TOML has no null; so is one ``serve`` sets
    otherwise (``SERVE_DEFAULTS``), with serve's value.
    """
    docs = field_docs()
    parts = [_HEADER]
    for field in dataclasses.fields(Config):
        default = getattr(Config(), field.name)
        comment = textwrap.wrap(docs.get(field.name, ""), 96)
        lines = [f"# {line}" for line in comment]
        if default is None:
            lines.append("# Unset by default: decided by the address the node listens on.")
            lines.append(f"# {field.name} = []")
        elif field.name in SERVE_DEFAULTS:
            serves = _toml_value(SERVE_DEFAULTS[field.name])
            lines.append(f"# Unset: serve uses {serves}, open_dht {_toml_value(default)}.")
            lines.append(f"# {field.name} = {serves}")
        else:
            lines.append(f"{field.name} = {_toml_value(default)}")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value))  # strings of networks: JSON's escaping is TOML's
    return repr(value)  # int or float; repr of a float keeps its point


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--k``, ``--max-value-size`` ... (``COMMON_FIELDS``) to ``parser``.

    Values stay text here: ``config_from_args`` converts them, so a bad one is
    refused in one line naming the field, as a bad config file is.
    """
    docs = field_docs()
    for name in COMMON_FIELDS:
        default = getattr(Config(), name)
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=_dest(name),
            metavar="N",
            help=f"{docs[name].rstrip('.')} (default {default})",
        )


def config_from_args(args: argparse.Namespace) -> Config:
    """The ``Config`` that ``--config FILE`` and the field flags make of serve's defaults.

    Serve's defaults are ``Config()`` with ``SERVE_DEFAULTS``; the file sets
    fields over them, the flags over the file. Raises ``ConfigFileError`` (one
    line naming the key) for a bad file, a flag that is not a number, or a
    value ``Config`` refuses.
    """
    path: str | None = args.config
    base = Config().replace(**SERVE_DEFAULTS)
    if path is not None:
        base = load_config(path, base)
    types = {field.name: field.type for field in dataclasses.fields(Config)}
    flags: dict[str, object] = {}
    for name in COMMON_FIELDS:
        text = getattr(args, _dest(name), None)
        if text is None:
            continue
        kind = int if types[name] == "int" else float
        try:
            flags[name] = kind(text)
        except ValueError:
            flag = "--" + name.replace("_", "-")
            raise ConfigFileError(f"{flag}: {text!r} is not a {kind.__name__}") from None
    if not flags:
        return base
    return config_from_table(flags, base)


def _dest(name: str) -> str:
    # Apart from serve's own arguments (--host, --port ...).
    return f"config_{name}"
