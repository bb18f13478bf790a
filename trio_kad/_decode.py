"""Frames read from bytes through cbor2: any payload, validated field by field.

Everything received is hostile until proven otherwise: ``decode_general``
raises nothing but ``ProtocolError``, whatever the bytes, and builds only
frames whose every field keeps the wire rules (docs/protocol.md). The frequent
frames usually skip it (``_decode_fast``); ``_codec.decode_frame`` picks. Pure code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._address import MAX_HOST_LENGTH, valid_host
from ._contacts import ContactCache
from ._errors import ProtocolError
from ._fields import fail as _fail
from ._fields import id_field as _id_field
from ._ids import ID_BYTES, Contact
from ._messages import (
    ERROR_CODES,
    MAX_BATCH_PAIRS,
    MAX_CONTACTS,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_PUBLISHED,
    MAX_REQUEST_ID,
    MAX_SEQ,
    MAX_TTL,
    PROTOCOL_VERSION,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Frame,
    Listen,
    Nodes,
    Ping,
    Pong,
    Push,
    Reply,
    ReplyFrame,
    Request,
    RequestFrame,
    SignedPart,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)
from ._provider_wire import PROVIDER_REQUEST_DECODERS, decode_providers
from ._values import load_frame_item

__all__ = ["PING", "PONG", "STORED", "UnsupportedFrameError", "decode_contact", "decode_general"]


class UnsupportedFrameError(ProtocolError):
    """A well-formed frame of another protocol version or an unknown message type.

    A receiver answers it with ``ErrorCode.UNSUPPORTED`` rather than ``MALFORMED``.
    """


def _bytes_field(fields: dict[Any, Any], key: str, min_size: int, request_id: int) -> bytes:
    value = fields.get(key)
    if type(value) is not bytes or len(value) < min_size:
        _fail(f"'{key}' must be bytes", request_id)
    return value


def _ttl_field(fields: dict[Any, Any], request_id: int) -> int | None:
    value = fields.get("ttl")
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_TTL:
        _fail(f"'ttl' must be an int in 0..{MAX_TTL}", request_id)
    return value


def _published(value: object, what: str, request_id: int) -> int:
    if type(value) is not int or not 0 <= value <= MAX_PUBLISHED:
        _fail(f"{what} must be an int in 0..{MAX_PUBLISHED}", request_id)
    return value


def _published_field(fields: dict[Any, Any], request_id: int) -> int:
    """``published`` (0, the oldest, when absent: a peer that does not send it)."""
    return _published(fields.get("published", 0), "'published'", request_id)


def _flag_field(fields: dict[Any, Any], key: str, request_id: int) -> bool:
    value = fields.get(key, False)
    if type(value) is not bool:
        _fail(f"'{key}' must be a boolean", request_id)
    return value


def _port(value: object, what: str, request_id: int) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        _fail(f"{what} must be an int in 1..65535", request_id)
    return value


def decode_contact(item: object, request_id: int) -> Contact:
    """One contact of a ``nodes`` reply, fully validated."""
    if type(item) is not list or len(item) != 3:
        _fail("a contact must be [id, host, port]", request_id)
    node_id, host, port = item
    if type(node_id) is not bytes or len(node_id) != ID_BYTES:
        _fail(f"a contact id must be {ID_BYTES} bytes", request_id)
    if not valid_host(host):
        _fail(f"a contact host must be 1..{MAX_HOST_LENGTH} printable ASCII characters", request_id)
    return Contact(node_id, host, _port(port, "a contact port", request_id))


def _decode_nodes(fields: dict[Any, Any], request_id: int, cache: ContactCache | None) -> Nodes:
    items = fields.get("nodes")
    if type(items) is not list or len(items) > MAX_CONTACTS:
        _fail(f"'nodes' must be an array of at most {MAX_CONTACTS} contacts", request_id)
    if cache is None:
        return Nodes(tuple([decode_contact(item, request_id) for item in items]))
    return Nodes(cache.decode_all(items, request_id, decode_contact))


def _decode_store(fields: dict[Any, Any], request_id: int) -> Store:
    signed = _signed_field(fields, request_id)
    cas = _seq_field(fields, "cas", request_id)
    if cas is not None and signed is None:
        _fail("'cas' is for signed stores only", request_id)
    return Store(
        _id_field(fields, "key", request_id),
        _bytes_field(fields, "value", 1, request_id),
        _ttl_field(fields, request_id),
        _flag_field(fields, "cache", request_id),
        signed,
        cas,
        published=_published_field(fields, request_id),
    )


def _decode_found_value(fields: dict[Any, Any], request_id: int) -> FoundValue:
    return FoundValue(
        _bytes_field(fields, "value", 0, request_id),
        _ttl_field(fields, request_id),
        _signed_field(fields, request_id),
        published=_published_field(fields, request_id),
        cached=_flag_field(fields, "cached", request_id),
    )


def _decode_error(fields: dict[Any, Any], request_id: int) -> ErrorReply:
    code = fields.get("code")
    message = fields.get("message")
    if type(code) is not int or code not in ERROR_CODES:
        _fail("'code' must be a known error code", request_id)
    if type(message) is not str or len(message) > MAX_ERROR_MESSAGE_LENGTH:
        _fail(
            f"'message' must be text of at most {MAX_ERROR_MESSAGE_LENGTH} characters", request_id
        )
    return ErrorReply(
        ERROR_CODES[code],
        message,
        _seq_field(fields, "seq", request_id),
        published=_published_field(fields, request_id),
    )


def _batch(fields: dict[Any, Any], key: str, request_id: int) -> list[Any]:
    items = fields.get(key)
    if type(items) is not list or not 1 <= len(items) <= MAX_BATCH_PAIRS:
        _fail(f"'{key}' must be an array of 1..{MAX_BATCH_PAIRS} items", request_id)
    return items


def _decode_store_many(fields: dict[Any, Any], request_id: int) -> StoreMany:
    pairs = []
    for item in _batch(fields, "pairs", request_id):
        if type(item) is not list or not 3 <= len(item) <= 4:
            _fail(
                "a pair must be [key, value, ttl], [key, value, ttl, published]"
                " or [key, value, ttl, signed]",
                request_id,
            )
        key, value, ttl = item[:3]
        if type(key) is not bytes or len(key) != ID_BYTES:
            _fail(f"a pair key must be {ID_BYTES} bytes", request_id)
        if type(value) is not bytes or not value:
            _fail("a pair value must be non-empty bytes", request_id)
        if type(ttl) is not int or not 0 <= ttl <= MAX_TTL:
            _fail(f"a pair ttl must be an int in 0..{MAX_TTL}", request_id)
        # The fourth item: an int is the pair's publication time, an array its signature.
        extra = None if len(item) == 3 else item[3]
        if type(extra) is list:
            pairs.append(Store(key, value, ttl, signed=decode_signed_part(extra, request_id)))
        else:
            published = 0 if extra is None else _published(extra, "a pair published", request_id)
            pairs.append(Store(key, value, ttl, published=published))
    return StoreMany(tuple(pairs))


# --- signed records (docs/protocol.md, "Signed records") ---------------------


def decode_signed_part(item: object, request_id: int) -> SignedPart:
    """A ``[public_key, salt, seq, signature]``, every length and range checked."""
    if type(item) is not list or len(item) != 4:
        _fail("'signed' must be [public_key, salt, seq, signature]", request_id)
    signed = SignedPart(*item)
    problem = signed.problem()
    if problem is not None:
        _fail(problem, request_id)
    return signed


def _signed_field(fields: dict[Any, Any], request_id: int) -> SignedPart | None:
    item = fields.get("signed")
    return None if item is None else decode_signed_part(item, request_id)


def _seq_field(fields: dict[Any, Any], key: str, request_id: int) -> int | None:
    value = fields.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_SEQ:
        _fail(f"'{key}' must be an int in 0..{MAX_SEQ}", request_id)
    return value


def _decode_stored_many(fields: dict[Any, Any], request_id: int) -> StoredMany:
    results: list[int] = []
    for result in _batch(fields, "results", request_id):
        if type(result) is not int or (result != 0 and result not in ERROR_CODES):
            _fail("a result must be 0 or a known error code", request_id)
        results.append(ERROR_CODES.get(result, 0))
    return StoredMany(tuple(results))


def _decode_push(fields: dict[Any, Any], request_id: int) -> Push:
    pair = _decode_store(fields, request_id)
    if pair.cache or pair.cas is not None:
        _fail("a push carries no 'cache' or 'cas'", request_id)
    return Push(pair)


# Bodies without fields are immutable and equal to any other instance: share one.
PING = Ping()
PONG = Pong()
STORED = Stored()

_REQUEST_DECODERS: dict[str, Callable[[dict[Any, Any], int], Request]] = {
    "ping": lambda fields, request_id: PING,
    "store": _decode_store,
    "find_node": lambda fields, request_id: FindNode(_id_field(fields, "target", request_id)),
    "find_value": lambda fields, request_id: FindValue(_id_field(fields, "key", request_id)),
    "store_many": _decode_store_many,
    **PROVIDER_REQUEST_DECODERS,
    "listen": lambda fields, request_id: Listen(_id_field(fields, "key", request_id)),
    "push": _decode_push,
}
_REPLY_DECODERS: dict[str, Callable[[dict[Any, Any], int], Reply]] = {
    "pong": lambda fields, request_id: PONG,
    "stored": lambda fields, request_id: STORED,
    "value": _decode_found_value,
    "error": _decode_error,
    "stored_many": _decode_stored_many,
    "providers": lambda fields, request_id: decode_providers(fields, request_id, decode_contact),
}


def decode_general(payload: bytes, contacts: ContactCache | None = None) -> Frame:
    """``_codec.decode_frame`` for any payload, through cbor2."""
    fields = load_frame_item(payload)
    if type(fields) is not dict:
        raise ProtocolError("frame is not a CBOR map")
    request_id = fields.get("id")
    if type(request_id) is not int or not 0 <= request_id <= MAX_REQUEST_ID:
        raise ProtocolError("'id' must be an unsigned 64-bit int")
    version = fields.get("v")
    if type(version) is not int:
        _fail("'v' must be an int", request_id)
    if version != PROTOCOL_VERSION:
        raise UnsupportedFrameError("unsupported protocol version", request_id=request_id)
    kind = fields.get("t")
    if type(kind) is not str:
        _fail("'t' must be text", request_id)
    sender_id = fields.get("from")
    if type(sender_id) is not bytes or len(sender_id) != ID_BYTES:
        _fail(f"'from' must be {ID_BYTES} bytes", request_id)

    request_decoder = _REQUEST_DECODERS.get(kind)
    if request_decoder is not None:
        # No "port": a client-only sender, which must not enter routing tables.
        sender_port = None if "port" not in fields else _port(fields["port"], "'port'", request_id)
        body = request_decoder(fields, request_id)
        duplex = _flag_field(fields, "duplex", request_id)
        return RequestFrame(request_id, sender_id, sender_port, body, duplex)
    if kind == "nodes":  # the one body that carries contacts
        return ReplyFrame(request_id, sender_id, _decode_nodes(fields, request_id, contacts))
    reply_decoder = _REPLY_DECODERS.get(kind)
    if reply_decoder is not None:
        return ReplyFrame(request_id, sender_id, reply_decoder(fields, request_id))
    raise UnsupportedFrameError("unknown message type", request_id=request_id)
