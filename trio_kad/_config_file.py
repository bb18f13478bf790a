"""``Config`` from a TOML file (``trio-kad serve --config FILE.toml``).

The file's top-level keys are ``Config`` field names and its values theirs
(arrays for the tuple fields, such as ``per_ip_exempt``). Every mistake is a
``ConfigFileError`` of one line naming the file and the key, so the command
line can refuse it before listening.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ._config import Config

__all__ = ["ConfigFileError", "config_from_table", "load_config"]

_FIELDS = frozenset(field.name for field in dataclasses.fields(Config))


class ConfigFileError(ValueError):
    """A configuration file that cannot be read, or a key, type or range it gets wrong."""


def config_from_table(table: Mapping[str, object], base: Config | None = None) -> Config:
    """``base`` (default ``Config()``) with the fields ``table`` names set to its values.

    Raises ``ConfigFileError`` naming the first unknown key, or the field whose
    type or range ``Config`` refuses.
    """
    changes: dict[str, object] = {}
    for key, value in table.items():
        if key not in _FIELDS:
            raise ConfigFileError(f"unknown Config field {key!r}")
        if isinstance(value, dict):
            raise ConfigFileError(f"{key}: a table is not a value of a Config field")
        changes[key] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(base or Config(), **changes)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigFileError(str(exc)) from None


def load_config(path: str | Path, base: Config | None = None) -> Config:
    """The ``Config`` the TOML file at ``path`` describes (see ``config_from_table``)."""
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    try:
        return config_from_table(table, base)
    except ConfigFileError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
