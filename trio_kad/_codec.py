"""Frames on the wire: a 4-byte length prefix, then one CBOR map (docs/protocol.md).

Pure code (no trio, no sockets), in the sans-I/O style of h11: ``encode_frame``
turns a frame into bytes, ``FrameReader`` splits a byte stream into payloads,
``decode_frame`` turns one payload into a frame. Everything received is
hostile until proven otherwise: ``decode_frame`` raises nothing but
``ProtocolError``, whatever the bytes.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any, NoReturn

import cbor2

from ._address import MAX_HOST_LENGTH, valid_host
from ._errors import ProtocolError
from ._ids import ID_BYTES, Contact, set_contact_encoding
from ._messages import (
    MAX_BATCH_PAIRS,
    MAX_TTL,
    PROTOCOL_VERSION,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Frame,
    Nodes,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    Request,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)

__all__ = [
    "LENGTH_PREFIX_SIZE",
    "MAX_CONTACTS",
    "MAX_ERROR_MESSAGE_LENGTH",
    "MAX_HOST_LENGTH",
    "MAX_REQUEST_ID",
    "FrameReader",
    "UnsupportedFrameError",
    "decode_frame",
    "encode_frame",
    "encode_reply",
]

LENGTH_PREFIX_SIZE = 4
"""Bytes of the big-endian length that precedes every CBOR map."""
MAX_REQUEST_ID = 2**64 - 1
"""Largest request id: ids are CBOR unsigned ints that fit in 64 bits."""
MAX_CONTACTS = 256
"""Most contacts one ``nodes`` reply may carry (a node sends k of them)."""
MAX_ERROR_MESSAGE_LENGTH = 256
"""Longest ``message`` of an ``error`` reply, in characters."""

_MAX_PREFIXED_LENGTH = 2**32 - 1

# The deepest legitimate item is a field of a contact: map -> "nodes" array ->
# contact array -> field, at depth 3 (cbor2 counts the top item as depth 0).
# One level of slack lets a later revision add a nested optional field.
_MAX_DEPTH = 4

# Semantic tags that cbor2 6.3 decodes by itself (found by probing every tag
# below 2**16 and a few larger ones). Among them: 2/3 bignums (CPU cost), 28/29
# shared references (cycles), 35 regex (compiled!), 36 MIME (parsed), 258 sets,
# 0/1 datetimes, 256/25 string references, 55799 self-describe.
_CBOR2_BUILTIN_TAGS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100,
    256, 258, 260, 261, 1004, 43000, 55799,
)  # fmt: skip


class _RefusedTag(ValueError):
    """Raised inside cbor2 for any semantic tag; becomes a ProtocolError."""


def _refuse_tag(*_args: object) -> NoReturn:
    raise _RefusedTag("semantic tags are not allowed")


class _RefuseEveryTag(dict[int, Callable[..., Any]]):
    """cbor2's ``semantic_decoders`` override: every tag maps to a refusal.

    cbor2 consults this mapping before its built-in decoders, so the built-ins
    never run. The known built-ins are listed explicitly and ``__missing__``
    covers any tag a later cbor2 may add a decoder for.
    """

    def __missing__(self, tag: int) -> Callable[..., Any]:
        return _refuse_tag


_SEMANTIC_DECODERS = _RefuseEveryTag(dict.fromkeys(_CBOR2_BUILTIN_TAGS, _refuse_tag))


def _keep_tag(tag: int) -> Callable[[object, bool], cbor2.CBORTag]:
    def keep(value: object, _immutable: bool) -> cbor2.CBORTag:
        return cbor2.CBORTag(tag, value)

    return keep


# A user's value may carry any tag; these two would make cbor2 run a parser
# (re.compile, the email package) on bytes a stranger chose, so they stay tags.
_INERT_TAGS: dict[int, Callable[..., Any]] = {35: _keep_tag(35), 36: _keep_tag(36)}


def decode_value(data: bytes) -> Any:
    """A stored value (the setter's CBOR bytes) as Python data.

    Honours the semantic tags a user may legitimately store (datetimes,
    bignums, decimals, sets, shared references, ...) but never compiles a
    regular expression (tag 35) or parses a MIME message (tag 36): those come
    back as ``cbor2.CBORTag``. Raises ``ValueError`` for bytes that are not
    exactly one CBOR item.
    """
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream, semantic_decoders=_INERT_TAGS).decode()
    except Exception as exc:
        raise ValueError("stored value is not valid CBOR") from exc
    if stream.tell() != len(data):
        raise ValueError("stored value has trailing bytes")
    return value


class UnsupportedFrameError(ProtocolError):
    """A well-formed frame of another protocol version or an unknown message type.

    A receiver answers it with ``ErrorCode.UNSUPPORTED`` rather than ``MALFORMED``.
    """


# --- encoding ------------------------------------------------------------------
#
# Frames are written by hand rather than through cbor2.dumps: the schema is
# fixed and small, and joining precomputed pieces takes about half the time of
# building a dict and dumping it (a tenth, for a nodes reply whose contacts
# carry their encoding). The output is exactly what cbor2.dumps of the same
# map (keys in the documented order) gives: definite lengths, shortest heads.

_BYTE = tuple(bytes((value,)) for value in range(256))
_pack_head_1 = struct.Struct(">BB").pack
_pack_head_2 = struct.Struct(">BH").pack
_pack_head_4 = struct.Struct(">BI").pack
_pack_head_8 = struct.Struct(">BQ").pack
_pack_length_prefix = struct.Struct(">I").pack

# CBOR major types, already shifted into the top three bits of the head.
_UINT = 0x00
_BYTES = 0x40
_TEXT = 0x60
_ARRAY = 0x80
_MAP = 0xA0


def _head(major: int, argument: int) -> bytes:
    """The head of a CBOR item: major type and argument, in its shortest form."""
    if argument < 24:
        return _BYTE[major | argument]
    if argument < 0x100:
        return _pack_head_1(major | 24, argument)
    if argument < 0x10000:
        return _pack_head_2(major | 25, argument)
    if argument < 0x100000000:
        return _pack_head_4(major | 26, argument)
    return _pack_head_8(major | 27, argument)


def _text(text: str) -> bytes:
    """A short ASCII text item, for the constant keys and type names."""
    return _head(_TEXT, len(text)) + text.encode("ascii")


_ID_HEAD = _head(_BYTES, ID_BYTES)
_FRAME_START = _text("v") + _head(_UINT, PROTOCOL_VERSION) + _text("t")
_ID_KEY = _text("id")
_FROM_KEY_AND_ID_HEAD = _text("from") + _ID_HEAD
_PORT_KEY = _text("port")
_CONTACT_START = _head(_ARRAY, 3) + _ID_HEAD
_TRUE = b"\xf5"
_DUPLEX_ENTRY = _text("duplex") + _TRUE

_ERROR_CODES: dict[int, ErrorCode] = {code.value: code for code in ErrorCode}


def _check_uint(value: object, low: int, high: int, what: str) -> int:
    # type() is, not isinstance: bool is an int subclass and must not pass.
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} must be an int in {low}..{high}, got {value!r}")
    return value


def _check_encode_id(value: object, what: str) -> bytes:
    if type(value) is not bytes or len(value) != ID_BYTES:
        raise ValueError(f"{what} must be {ID_BYTES} bytes")
    return value


def _check_store_value(value: object, what: str) -> bytes:
    if type(value) is not bytes or not value:
        raise ValueError(f"{what} must be non-empty bytes")
    return value


def _encode_contact(contact: Contact) -> bytes:
    """``contact`` as a CBOR [id, host, port], validated once and kept on the contact."""
    if not isinstance(contact, Contact):
        raise ValueError(f"not a Contact: {contact!r}")
    node_id = _check_encode_id(contact.node_id, "contact id")
    host = contact.host
    if not valid_host(host):
        raise ValueError(f"contact host must be 1..{MAX_HOST_LENGTH} printable ASCII characters")
    port = _check_uint(contact.port, 1, 65535, "contact port")
    encoded = b"".join(
        (_CONTACT_START, node_id, _head(_TEXT, len(host)), host.encode("ascii"), _head(_UINT, port))
    )
    # A contact's fields never change, so neither does its encoding.
    set_contact_encoding(contact, encoded)
    return encoded


# A body encoder returns the body's type name (as a CBOR text item), how many
# map entries the body adds, and those entries' bytes.
_BodyBytes = tuple[bytes, int, bytes]

_PING_BYTES: _BodyBytes = (_text("ping"), 0, b"")
_PONG_BYTES: _BodyBytes = (_text("pong"), 0, b"")
_STORED_BYTES: _BodyBytes = (_text("stored"), 0, b"")
_STORE_TYPE = _text("store")
_KEY_KEY_AND_ID_HEAD = _text("key") + _ID_HEAD
_VALUE_KEY = _text("value")
_TTL_KEY = _text("ttl")
_CACHE_ENTRY = _text("cache") + _TRUE
_FIND_NODE_TYPE = _text("find_node")
_TARGET_KEY_AND_ID_HEAD = _text("target") + _ID_HEAD
_FIND_VALUE_TYPE = _text("find_value")
_NODES_TYPE = _text("nodes")
_NODES_KEY = _text("nodes")
_VALUE_TYPE = _text("value")
_ERROR_TYPE = _text("error")
_CODE_KEY = _text("code")
_MESSAGE_KEY = _text("message")
_STORE_MANY_TYPE = _text("store_many")
_PAIRS_KEY = _text("pairs")
_PAIR_START = _head(_ARRAY, 3) + _ID_HEAD
_STORED_MANY_TYPE = _text("stored_many")
_RESULTS_KEY = _text("results")


def _encode_store(body: Store) -> _BodyBytes:
    key = _check_encode_id(body.key, "store key")
    value = _check_store_value(body.value, "store value")
    parts = [_KEY_KEY_AND_ID_HEAD, key, _VALUE_KEY, _head(_BYTES, len(value)), value]
    entries = 2
    if body.ttl is not None:
        parts += (_TTL_KEY, _head(_UINT, _check_uint(body.ttl, 0, MAX_TTL, "store ttl")))
        entries += 1
    if body.cache:
        parts.append(_CACHE_ENTRY)
        entries += 1
    return _STORE_TYPE, entries, b"".join(parts)


def _encode_find_node(body: FindNode) -> _BodyBytes:
    target = _check_encode_id(body.target, "find_node target")
    return _FIND_NODE_TYPE, 1, _TARGET_KEY_AND_ID_HEAD + target


def _encode_find_value(body: FindValue) -> _BodyBytes:
    key = _check_encode_id(body.key, "find_value key")
    return _FIND_VALUE_TYPE, 1, _KEY_KEY_AND_ID_HEAD + key


def _batch_start(key: bytes, count: int, what: str, items: str) -> list[bytes]:
    """The first parts of a batch field: its key and array head, once the count is checked."""
    if not 1 <= count <= MAX_BATCH_PAIRS:
        raise ValueError(f"{what} carries 1..{MAX_BATCH_PAIRS} {items}")
    return [key, _head(_ARRAY, count)]


def _encode_store_many(body: StoreMany) -> _BodyBytes:
    pairs = body.pairs
    parts = _batch_start(_PAIRS_KEY, len(pairs), "a store_many request", "pairs")
    for pair in pairs:
        if type(pair) is not Store:
            raise ValueError(f"a store_many pair must be a Store, got {pair!r}")
        if pair.cache:
            raise ValueError("a store_many pair cannot be a cache copy")
        value = _check_store_value(pair.value, "store_many value")
        parts += (
            _PAIR_START,
            _check_encode_id(pair.key, "store_many key"),
            _head(_BYTES, len(value)),
            value,
            _head(_UINT, _check_uint(pair.ttl, 0, MAX_TTL, "store_many ttl")),
        )
    return _STORE_MANY_TYPE, 1, b"".join(parts)


def _encode_nodes(body: Nodes) -> _BodyBytes:
    contacts = body.contacts
    if len(contacts) > MAX_CONTACTS:
        raise ValueError(f"a nodes reply carries at most {MAX_CONTACTS} contacts")
    parts = [_NODES_KEY, _head(_ARRAY, len(contacts))]
    for contact in contacts:
        try:
            encoded = contact._encoded
        except AttributeError:
            encoded = None  # not a Contact: _encode_contact refuses it
        parts.append(_encode_contact(contact) if encoded is None else encoded)
    return _NODES_TYPE, 1, b"".join(parts)


def _encode_found_value(body: FoundValue) -> _BodyBytes:
    value = body.value
    if type(value) is not bytes:
        raise ValueError("found value must be bytes")
    if body.ttl is None:
        return _VALUE_TYPE, 1, b"".join((_VALUE_KEY, _head(_BYTES, len(value)), value))
    ttl = _head(_UINT, _check_uint(body.ttl, 0, MAX_TTL, "value ttl"))
    return _VALUE_TYPE, 2, b"".join((_VALUE_KEY, _head(_BYTES, len(value)), value, _TTL_KEY, ttl))


def _encode_error(body: ErrorReply) -> _BodyBytes:
    if not isinstance(body.code, ErrorCode):
        raise ValueError(f"error code must be an ErrorCode, got {body.code!r}")
    if type(body.message) is not str or len(body.message) > MAX_ERROR_MESSAGE_LENGTH:
        raise ValueError(f"error message must be text of at most {MAX_ERROR_MESSAGE_LENGTH}")
    message = body.message.encode("utf-8")  # UnicodeEncodeError is a ValueError
    parts = (_CODE_KEY, _head(_UINT, body.code), _MESSAGE_KEY, _head(_TEXT, len(message)), message)
    return _ERROR_TYPE, 2, b"".join(parts)


def _encode_stored_many(body: StoredMany) -> _BodyBytes:
    results = body.results
    parts = _batch_start(_RESULTS_KEY, len(results), "a stored_many reply", "results")
    for result in results:
        # 0, or an ErrorCode (or its plain int value); never a bool.
        if type(result) is not int and type(result) is not ErrorCode:
            raise ValueError(f"a stored_many result must be 0 or an ErrorCode, got {result!r}")
        if result != 0 and result not in _ERROR_CODES:
            raise ValueError(f"a stored_many result must be 0 or an ErrorCode, got {result!r}")
        parts.append(_BYTE[result])  # every valid result is below 24
    return _STORED_MANY_TYPE, 1, b"".join(parts)


_REQUEST_ENCODERS: dict[type, Callable[[Any], _BodyBytes]] = {
    Ping: lambda body: _PING_BYTES,
    Store: _encode_store,
    FindNode: _encode_find_node,
    FindValue: _encode_find_value,
    StoreMany: _encode_store_many,
}
_REPLY_ENCODERS: dict[type, Callable[[Any], _BodyBytes]] = {
    Pong: lambda body: _PONG_BYTES,
    Stored: lambda body: _STORED_BYTES,
    Nodes: _encode_nodes,
    FoundValue: _encode_found_value,
    ErrorReply: _encode_error,
    StoredMany: _encode_stored_many,
}


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame`` on the wire: a 4-byte big-endian length, then one CBOR map.

    Raises ``ValueError`` if the frame breaks a wire rule (an id of the wrong
    length, a port out of range, ...): that is a bug on this side, and sending
    it would only make the peer refuse it.
    """
    if isinstance(frame, ReplyFrame):
        return encode_reply(frame.request_id, frame.sender_id, frame.body)
    if not isinstance(frame, RequestFrame):
        raise ValueError(f"not a frame: {frame!r}")
    sender_port = frame.sender_port
    if sender_port is None:
        entries, port_key, port = 4, b"", b""
    else:
        port = _head(_UINT, _check_uint(sender_port, 1, 65535, "sender port"))
        entries, port_key = 5, _PORT_KEY
    if frame.duplex:
        # Once per connection (its first request), so the fast path need not know it.
        port += _DUPLEX_ENTRY
        entries += 1
    encoder = _REQUEST_ENCODERS.get(type(frame.body))
    if encoder is None:
        raise ValueError(f"not a request body: {frame.body!r}")
    head = (entries, port_key, port)
    return _frame_bytes(head, frame.request_id, frame.sender_id, encoder, frame.body)


def encode_reply(request_id: int, sender_id: bytes, body: Reply) -> bytes:
    """``encode_frame(ReplyFrame(request_id, sender_id, body))`` without building the frame.

    A server encodes one reply per request it reads; this spares it the frame object.
    """
    encoder = _REPLY_ENCODERS.get(type(body))
    if encoder is None:
        raise ValueError(f"not a reply body: {body!r}")
    return _frame_bytes(_REPLY_HEAD, request_id, sender_id, encoder, body)


# A reply's entries besides its body, and its (absent) port key and port.
_REPLY_HEAD = (4, b"", b"")


def _frame_bytes(
    head: tuple[int, bytes, bytes],
    request_id: int,
    sender_id: bytes,
    encoder: Callable[[Any], _BodyBytes],
    body: object,
) -> bytes:
    entries, port_key, port = head
    request_id = _check_uint(request_id, 0, MAX_REQUEST_ID, "request id")
    sender_id = _check_encode_id(sender_id, "sender id")
    kind, body_entries, body_bytes = encoder(body)
    payload = b"".join(
        (
            _BYTE[_MAP | (entries + body_entries)],  # at most 9 entries: one byte
            _FRAME_START,
            kind,
            _ID_KEY,
            _head(_UINT, request_id),
            _FROM_KEY_AND_ID_HEAD,
            sender_id,
            port_key,
            port,
            body_bytes,
        )
    )
    if len(payload) > _MAX_PREFIXED_LENGTH:
        raise ValueError("frame too large for a 4-byte length prefix")
    return _pack_length_prefix(len(payload)) + payload


# --- decoding ------------------------------------------------------------------


def _loads_one_item(payload: bytes) -> object:
    """Decode exactly one CBOR item with every dangerous feature refused."""
    stream = io.BytesIO(payload)
    try:
        item = cbor2.CBORDecoder(
            stream,
            tag_hook=_refuse_tag,
            semantic_decoders=_SEMANTIC_DECODERS,
            max_depth=_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            strict_hashable_types=True,
        ).decode()
    except Exception as exc:
        # cbor2 is handed hostile bytes: whatever it raises (CBORDecodeError,
        # ValueError, OverflowError, RecursionError, MemoryError, ...) is the
        # peer's fault, and the message stays generic on purpose.
        raise ProtocolError("frame is not acceptable CBOR") from exc
    if stream.tell() != len(payload):
        raise ProtocolError("trailing bytes after the CBOR map")
    return item


def _fail(message: str, request_id: int) -> NoReturn:
    raise ProtocolError(message, request_id=request_id)


def _id_field(fields: dict[Any, Any], key: str, request_id: int) -> bytes:
    value = fields.get(key)
    if type(value) is not bytes or len(value) != ID_BYTES:
        _fail(f"'{key}' must be {ID_BYTES} bytes", request_id)
    return value


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


def _flag_field(fields: dict[Any, Any], key: str, request_id: int) -> bool:
    value = fields.get(key, False)
    if type(value) is not bool:
        _fail(f"'{key}' must be a boolean", request_id)
    return value


def _port(value: object, what: str, request_id: int) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        _fail(f"{what} must be an int in 1..65535", request_id)
    return value


def _decode_contact(item: object, request_id: int) -> Contact:
    """One contact of a ``nodes`` reply, fully validated."""
    if type(item) is not list or len(item) != 3:
        _fail("a contact must be [id, host, port]", request_id)
    node_id, host, port = item
    if type(node_id) is not bytes or len(node_id) != ID_BYTES:
        _fail(f"a contact id must be {ID_BYTES} bytes", request_id)
    if not valid_host(host):
        _fail(f"a contact host must be 1..{MAX_HOST_LENGTH} printable ASCII characters", request_id)
    contact = Contact(node_id, host, _port(port, "a contact port", request_id))
    if len(_DECODED_CONTACTS) >= _MAX_DECODED_CONTACTS:
        _DECODED_CONTACTS.clear()  # crude, but O(1) and never wrong
    _DECODED_CONTACTS[(node_id, host, port)] = contact
    return contact


# Contacts recently decoded, by their exact wire triple. The same contacts
# come back in reply after reply (a lookup's peers know each other), so most
# are found here: already validated, already built, and carrying their
# encoding for when this node passes them on. The types are checked before a
# lookup because 1 == 1.0 == True: only (bytes, str, int) triples that passed
# validation are ever keys, so a hit is exactly a triple that would pass.
# Bounded: a peer sending random contacts only empties it, costing time.
_DECODED_CONTACTS: dict[tuple[bytes, str, int], Contact] = {}
_MAX_DECODED_CONTACTS = 4096


def _decode_nodes(fields: dict[Any, Any], request_id: int) -> Nodes:
    items = fields.get("nodes")
    if type(items) is not list or len(items) > MAX_CONTACTS:
        _fail(f"'nodes' must be an array of at most {MAX_CONTACTS} contacts", request_id)
    known = _DECODED_CONTACTS.get
    contacts = []
    for item in items:
        if type(item) is list and len(item) == 3:
            node_id, host, port = item
            if type(node_id) is bytes and type(host) is str and type(port) is int:
                contact = known((node_id, host, port))
                if contact is not None:
                    contacts.append(contact)
                    continue
        contacts.append(_decode_contact(item, request_id))
    return Nodes(tuple(contacts))


def _decode_store(fields: dict[Any, Any], request_id: int) -> Store:
    return Store(
        _id_field(fields, "key", request_id),
        _bytes_field(fields, "value", 1, request_id),
        _ttl_field(fields, request_id),
        _flag_field(fields, "cache", request_id),
    )


def _decode_found_value(fields: dict[Any, Any], request_id: int) -> FoundValue:
    return FoundValue(_bytes_field(fields, "value", 0, request_id), _ttl_field(fields, request_id))


def _decode_error(fields: dict[Any, Any], request_id: int) -> ErrorReply:
    code = fields.get("code")
    message = fields.get("message")
    if type(code) is not int or code not in _ERROR_CODES:
        _fail("'code' must be a known error code", request_id)
    if type(message) is not str or len(message) > MAX_ERROR_MESSAGE_LENGTH:
        _fail(
            f"'message' must be text of at most {MAX_ERROR_MESSAGE_LENGTH} characters", request_id
        )
    return ErrorReply(_ERROR_CODES[code], message)


def _batch(fields: dict[Any, Any], key: str, request_id: int) -> list[Any]:
    items = fields.get(key)
    if type(items) is not list or not 1 <= len(items) <= MAX_BATCH_PAIRS:
        _fail(f"'{key}' must be an array of 1..{MAX_BATCH_PAIRS} items", request_id)
    return items


def _decode_store_many(fields: dict[Any, Any], request_id: int) -> StoreMany:
    pairs = []
    for item in _batch(fields, "pairs", request_id):
        if type(item) is not list or len(item) != 3:
            _fail("a pair must be [key, value, ttl]", request_id)
        key, value, ttl = item
        if type(key) is not bytes or len(key) != ID_BYTES:
            _fail(f"a pair key must be {ID_BYTES} bytes", request_id)
        if type(value) is not bytes or not value:
            _fail("a pair value must be non-empty bytes", request_id)
        if type(ttl) is not int or not 0 <= ttl <= MAX_TTL:
            _fail(f"a pair ttl must be an int in 0..{MAX_TTL}", request_id)
        pairs.append(Store(key, value, ttl))
    return StoreMany(tuple(pairs))


def _decode_stored_many(fields: dict[Any, Any], request_id: int) -> StoredMany:
    results: list[int] = []
    for result in _batch(fields, "results", request_id):
        if type(result) is not int or (result != 0 and result not in _ERROR_CODES):
            _fail("a result must be 0 or a known error code", request_id)
        results.append(_ERROR_CODES.get(result, 0))
    return StoredMany(tuple(results))


# Bodies without fields are immutable and equal to any other instance: share one.
_PING = Ping()
_PONG = Pong()
_STORED = Stored()

_REQUEST_DECODERS: dict[str, Callable[[dict[Any, Any], int], Request]] = {
    "ping": lambda fields, request_id: _PING,
    "store": _decode_store,
    "find_node": lambda fields, request_id: FindNode(_id_field(fields, "target", request_id)),
    "find_value": lambda fields, request_id: FindValue(_id_field(fields, "key", request_id)),
    "store_many": _decode_store_many,
}
_REPLY_DECODERS: dict[str, Callable[[dict[Any, Any], int], Reply]] = {
    "pong": lambda fields, request_id: _PONG,
    "stored": lambda fields, request_id: _STORED,
    "nodes": _decode_nodes,
    "value": _decode_found_value,
    "error": _decode_error,
    "stored_many": _decode_stored_many,
}


# --- decoding the frequent frames without cbor2 ---------------------------------
#
# Pings, FIND_NODE, FIND_VALUE and the small replies (pong, stored) are most of
# the frames, and our encoder always lays them out the same way. Building a
# cbor2 decoder for each costs more than reading them, so ``_decode_usual``
# reads exactly that layout and returns None for anything else (another key
# order, one more entry, a bad field, a truncated frame...), which then takes
# the general path. It only accepts bytes the general path decodes to an equal
# frame (tests/test_codec_fastpath.py checks that against random frames).

_UINT_TAILS = {24: 1, 25: 2, 26: 4, 27: 8}
_KIND_AT = 1 + len(_FRAME_START)
_FROM_LENGTH = len(_FROM_KEY_AND_ID_HEAD) + ID_BYTES

# Request kinds: what their body holds after the common entries, an id field
# (its key and id head, and how to make the body) or nothing (a ping).
_USUAL_REQUESTS: dict[bytes, tuple[bytes, Callable[[bytes], Request] | None]] = {
    _PING_BYTES[0]: (b"", None),
    _FIND_NODE_TYPE: (_TARGET_KEY_AND_ID_HEAD, FindNode),
    _FIND_VALUE_TYPE: (_KEY_KEY_AND_ID_HEAD, FindValue),
}
_USUAL_EMPTY_REPLIES: dict[bytes, Reply] = {_PONG_BYTES[0]: _PONG, _STORED_BYTES[0]: _STORED}


def _uint_at(payload: bytes, at: int) -> tuple[int, int]:
    """The unsigned int whose head is at ``at``, and where the next item starts.

    Raises IndexError or KeyError when there is none there: the fast path gives up.
    """
    head = payload[at]
    if head < 24:
        return head, at + 1
    end = at + 1 + _UINT_TAILS[head]
    if end > len(payload):
        raise IndexError(at)
    return int.from_bytes(payload[at + 1 : end], "big"), end


def _decode_usual(payload: bytes) -> Frame | None:
    """The frame in ``payload`` if laid out as our encoder writes a frequent one, else None."""
    try:
        if not payload.startswith(_FRAME_START, 1):
            return None
        kind_end = _KIND_AT + 1 + payload[_KIND_AT] - _TEXT
        kind = payload[_KIND_AT:kind_end]
        request = _USUAL_REQUESTS.get(kind)
        empty_reply = None if request is not None else _USUAL_EMPTY_REPLIES.get(kind)
        if request is None and empty_reply is None:
            return None
        if not payload.startswith(_ID_KEY, kind_end):
            return None
        request_id, at = _uint_at(payload, kind_end + len(_ID_KEY))
        if not payload.startswith(_FROM_KEY_AND_ID_HEAD, at):
            return None
        at += _FROM_LENGTH
        sender_id = payload[at - ID_BYTES : at]
        entries = payload[0] - _MAP
        if request is not None:
            sender_port = None
            if payload.startswith(_PORT_KEY, at):
                sender_port, at = _uint_at(payload, at + len(_PORT_KEY))
                if not 1 <= sender_port <= 65535:
                    return None
                entries -= 1
            body_start, make = request
            if make is None:
                if entries != 4 or at != len(payload):
                    return None
                return RequestFrame(request_id, sender_id, sender_port, _PING)
            end = at + len(body_start) + ID_BYTES
            if entries != 5 or end != len(payload) or not payload.startswith(body_start, at):
                return None
            return RequestFrame(request_id, sender_id, sender_port, make(payload[end - ID_BYTES :]))
        if entries != 4 or at != len(payload) or empty_reply is None:
            return None
        return ReplyFrame(request_id, sender_id, empty_reply)
    except (IndexError, KeyError):
        return None


def decode_frame(payload: bytes) -> Frame:
    """The frame in ``payload`` (the bytes after the length prefix).

    Raises ``ProtocolError`` (only that, for any input) when the payload is not
    exactly one valid frame. Its ``request_id`` is set when the map carried a
    valid ``"id"``, so the receiver can still answer with an error reply;
    ``UnsupportedFrameError`` marks another version or an unknown message type.
    """
    usual = _decode_usual(payload)
    return _decode_general(payload) if usual is None else usual


def _decode_general(payload: bytes) -> Frame:
    """``decode_frame`` for any payload, through cbor2."""
    fields = _loads_one_item(payload)
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
    reply_decoder = _REPLY_DECODERS.get(kind)
    if reply_decoder is not None:
        return ReplyFrame(request_id, sender_id, reply_decoder(fields, request_id))
    raise UnsupportedFrameError("unknown message type", request_id=request_id)


# --- stream splitting ----------------------------------------------------------


class FrameReader:
    """Splits a byte stream into frame payloads, refusing oversized frames early.

    Sans-I/O: feed it whatever the socket returned, then call ``next_payload``
    until it returns ``None``.
    """

    __slots__ = ("_buffer", "_max_frame_size", "_start")

    def __init__(self, max_frame_size: int) -> None:
        if type(max_frame_size) is not int or max_frame_size < 1:
            raise ValueError("max_frame_size must be a positive int")
        self._max_frame_size = max_frame_size
        self._buffer = bytearray()
        # Payloads are sliced off by moving _start; the consumed head is dropped
        # on the next feed, so many small frames in one chunk cost O(n), not O(n^2).
        self._start = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def next_payload(self) -> bytes | None:
        """One complete payload (without its prefix), or ``None`` if more bytes are needed.

        Raises ``ProtocolError`` as soon as a length prefix over ``max_frame_size``
        is seen, before its body arrives, so a peer cannot make us buffer it.
        The reader is then unusable: the stream has lost its framing.
        """
        start = self._start
        body_start = start + LENGTH_PREFIX_SIZE
        if len(self._buffer) < body_start:
            return None
        length = int.from_bytes(self._buffer[start:body_start], "big")
        if length > self._max_frame_size:
            raise ProtocolError(
                f"frame of {length} bytes exceeds the limit of {self._max_frame_size}"
            )
        end = body_start + length
        if len(self._buffer) < end:
            return None
        self._start = end
        return bytes(self._buffer[body_start:end])

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as payloads (0: at a frame boundary).

        Once ``next_payload`` has returned ``None``, this is the size of the
        incomplete frame held, which a transport uses to know whether a frame
        has begun (and its read deadline applies).
        """
        return len(self._buffer) - self._start
