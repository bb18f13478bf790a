"""Field checks the codec's modules share.

Decoding (``fail``, ``id_field``): only ``ProtocolError`` comes out, naming the
request. Encoding (``check_uint``, ``check_id``): ``ValueError``, as a
message that cannot be sent is the caller's mistake.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ._errors import ProtocolError
from ._ids import ID_BYTES

__all__ = ["check_id", "check_uint", "fail", "id_field"]


def fail(message: str, request_id: int) -> NoReturn:
    """Refuse the frame: a ``ProtocolError`` naming what is wrong, for the request it carried."""
    raise ProtocolError(message, request_id=request_id)


def id_field(fields: dict[Any, Any], key: str, request_id: int) -> bytes:
    """``fields[key]``, which must be a 32-byte id."""
    value = fields.get(key)
    if type(value) is not bytes or len(value) != ID_BYTES:
        fail(f"'{key}' must be {ID_BYTES} bytes", request_id)
    return value


def check_uint(value: object, low: int, high: int, what: str) -> int:
    """``value``, which must be an int in ``low..high`` to be encoded."""
    # type() is, not isinstance: bool is an int subclass and must not pass.
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} must be an int in {low}..{high}, got {value!r}")
    return value


def check_id(value: object, what: str) -> bytes:
    """``value``, which must be a 32-byte id to be encoded."""
    if type(value) is not bytes or len(value) != ID_BYTES:
        raise ValueError(f"{what} must be {ID_BYTES} bytes")
    return value
