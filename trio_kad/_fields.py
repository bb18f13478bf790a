"""Field checks every decoder of a frame's map shares: only ``ProtocolError`` comes out."""

from __future__ import annotations

from typing import Any, NoReturn

from ._errors import ProtocolError
from ._ids import ID_BYTES

__all__ = ["fail", "id_field"]


def fail(message: str, request_id: int) -> NoReturn:
    """Refuse the frame: a ``ProtocolError`` naming what is wrong, for the request it carried."""
    raise ProtocolError(message, request_id=request_id)


def id_field(fields: dict[Any, Any], key: str, request_id: int) -> bytes:
    """``fields[key]``, which must be a 32-byte id."""
    value = fields.get(key)
    if type(value) is not bytes or len(value) != ID_BYTES:
        fail(f"'{key}' must be {ID_BYTES} bytes", request_id)
    return value
