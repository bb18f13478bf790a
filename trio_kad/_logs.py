"""Logging for ``trio-kad``: human-readable lines by default, or one JSON object per line.

Whatever a peer sent may end up in a message (a host, an error text), so
every message and field is cut to a bound, and the text format escapes
control characters: a peer cannot forge a log line with a newline, nor fill a
disk with one long string.

A log call names the peer or key it is about with ``extra``::

    log.info("store refused", extra={"peer": contact, "key": key})

``peer`` and ``key`` become fields of the JSON object (bytes as hex) and are
appended to a text line. A record without ``peer`` whose arguments hold a
``Contact`` (``log.debug("rpc to %r failed", contact)``) gets that contact as
its peer in JSON.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, TypeAlias

from ._address import format_address
from ._ids import Contact

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "configure_logging"]

FORMATS: Final = ("text", "json")
"""The values of ``--log-format``."""

MAX_MESSAGE: Final = 2048
"""Characters of a message kept (a traceback included); the rest is counted, not written."""
MAX_FIELD: Final = 256
"""Characters of a ``peer`` or ``key`` field kept."""
FIELDS: Final = ("peer", "key")
"""``extra`` names a record may carry into the output."""

ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)

_CONTROL = {c: f"\\x{c:02x}" for c in range(32) if c != 9} | {0x7F: "\\x7f"}


def bounded(text: str, limit: int) -> str:
    """``text``, cut to ``limit`` characters with a note of how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _field(value: object) -> str:
    if isinstance(value, Contact):
        text = f"{value.node_id.hex()}@{format_address(value.address)}"
    else:
        text = value.hex() if isinstance(value, bytes) else str(value)
    return bounded(text, MAX_FIELD)


def _fields(record: logging.LogRecord, *, from_args: bool) -> dict[str, str]:
    """The ``peer`` and ``key`` a record names, bounded; with ``from_args``, a Contact
    among its arguments stands for the peer."""
    found = {name: record.__dict__.get(name) for name in FIELDS}
    if found["peer"] is None and from_args and isinstance(record.args, tuple):
        found["peer"] = next((a for a in record.args if isinstance(a, Contact)), None)
    return {name: _field(value) for name, value in found.items() if value is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, peer, key."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": bounded(message, MAX_MESSAGE),
        }
        out.update(_fields(record, from_args=True))
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message``, as before, bounded and with control characters escaped."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line, with ``peer=`` and ``key=`` appended when the record names them."""
        record.message = bounded(record.message, MAX_MESSAGE).translate(_CONTROL)
        line = super().formatMessage(record)
        # A contact among the arguments is in the message already.
        for name, value in _fields(record, from_args=False).items():
            line += f" {name}={value.translate(_CONTROL)}"
        return line

    def formatException(self, ei: ExcInfo) -> str:
        """A traceback, bounded (its newlines kept: it is ours, not a peer's)."""
        return bounded(super().formatException(ei), MAX_MESSAGE)


def configure_logging(verbosity: int, log_format: str = "text") -> None:
    """Log to stderr at WARNING, INFO (``-v``) or DEBUG (``-vv``), as text or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)]
    logging.basicConfig(level=level, handlers=[handler], force=True)
