"""Frames written as bytes: the hand-written CBOR encoder (docs/protocol.md).

Frames are written by hand rather than through cbor2.dumps: the schema is
fixed and small, and joining precomputed pieces takes about half the time of
building a dict and dumping it (a tenth, for a nodes reply whose contacts'
encodings a ``ContactCache`` remembers). The output is exactly what
cbor2.dumps of the same map (keys in the documented order) gives: definite
lengths, shortest heads. Pure code; the layout pieces named here without an
underscore are also what ``_decode_fast`` reads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ._address import MAX_HOST_LENGTH, valid_host
from ._contacts import ContactCache
from ._fields import check_id, check_uint
from ._framing import prefixed
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
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Frame,
    Listen,
    Nodes,
    Ping,
    Pong,
    Providers,
    Push,
    Reply,
    ReplyFrame,
    RequestFrame,
    SignedPart,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)
from ._provider_wire import PROVIDER_REQUEST_ENCODERS, encode_providers

__all__ = ["encode_contact", "encode_frame", "encode_reply"]

_BYTE = tuple(bytes((value,)) for value in range(256))
_pack_head_1 = struct.Struct(">BB").pack
_pack_head_2 = struct.Struct(">BH").pack
_pack_head_4 = struct.Struct(">BI").pack
_pack_head_8 = struct.Struct(">BQ").pack

# CBOR major types, already shifted into the top three bits of the head. Here
# and below, the names without an underscore are the layout that _decode_fast
# reads back.
_UINT = 0x00
_BYTES = 0x40
TEXT = 0x60
_ARRAY = 0x80
MAP = 0xA0


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
    return _head(TEXT, len(text)) + text.encode("ascii")


_ID_HEAD = _head(_BYTES, ID_BYTES)
FRAME_START = _text("v") + _head(_UINT, PROTOCOL_VERSION) + _text("t")
ID_KEY = _text("id")
FROM_KEY_AND_ID_HEAD = _text("from") + _ID_HEAD
PORT_KEY = _text("port")
_CONTACT_START = _head(_ARRAY, 3) + _ID_HEAD
_TRUE = b"\xf5"


def _check_store_value(value: object, what: str) -> bytes:
    if type(value) is not bytes or not value:
        raise ValueError(f"{what} must be non-empty bytes")
    return value


def encode_contact(contact: Contact) -> bytes:
    """``contact`` as a CBOR [id, host, port], once it is checked against the wire rules."""
    if not isinstance(contact, Contact):
        raise ValueError(f"not a Contact: {contact!r}")
    node_id = check_id(contact.node_id, "contact id")
    host = contact.host
    if not valid_host(host):
        raise ValueError(f"contact host must be 1..{MAX_HOST_LENGTH} printable ASCII characters")
    port = check_uint(contact.port, 1, 65535, "contact port")
    return b"".join(
        (_CONTACT_START, node_id, _head(TEXT, len(host)), host.encode("ascii"), _head(_UINT, port))
    )


# A body encoder returns the body's type name (as a CBOR text item), how many
# map entries the body adds, and those entries' bytes.
_BodyBytes = tuple[bytes, int, bytes]

PING_TYPE = _text("ping")
PONG_TYPE = _text("pong")
STORED_TYPE = _text("stored")
_PING_BYTES: _BodyBytes = (PING_TYPE, 0, b"")
_PONG_BYTES: _BodyBytes = (PONG_TYPE, 0, b"")
_STORED_BYTES: _BodyBytes = (STORED_TYPE, 0, b"")
_STORE_TYPE = _text("store")
KEY_KEY_AND_ID_HEAD = _text("key") + _ID_HEAD
_VALUE_KEY = _text("value")
_TTL_KEY = _text("ttl")
_CACHE_ENTRY = _text("cache") + _TRUE
_DUPLEX_ENTRY = _text("duplex") + _TRUE
FIND_NODE_TYPE = _text("find_node")
TARGET_KEY_AND_ID_HEAD = _text("target") + _ID_HEAD
FIND_VALUE_TYPE = _text("find_value")
_NODES_TYPE = _text("nodes")
_NODES_KEY = _text("nodes")
_VALUE_TYPE = _text("value")
_ERROR_TYPE = _text("error")
_CODE_KEY = _text("code")
_MESSAGE_KEY = _text("message")
_STORE_MANY_TYPE = _text("store_many")
_PAIRS_KEY = _text("pairs")
_PAIR_START = _head(_ARRAY, 3) + _ID_HEAD
_PAIR_OF_FOUR_START = _head(_ARRAY, 4) + _ID_HEAD
_PUBLISHED_KEY = _text("published")
_CACHED_ENTRY = _text("cached") + _TRUE
_STORED_MANY_TYPE = _text("stored_many")
_RESULTS_KEY = _text("results")


def _encode_store(body: Store) -> _BodyBytes:
    key = check_id(body.key, "store key")
    value = _check_store_value(body.value, "store value")
    parts = [KEY_KEY_AND_ID_HEAD, key, _VALUE_KEY, _head(_BYTES, len(value)), value]
    entries = 2
    if body.ttl is not None:
        parts += (_TTL_KEY, _head(_UINT, check_uint(body.ttl, 0, MAX_TTL, "store ttl")))
        entries += 1
    if body.cache:
        parts.append(_CACHE_ENTRY)
        entries += 1
    if body.signed is not None or body.cas is not None:
        entries += _signed_store_entries(body, parts)
    entries += _published_entry(body.published, parts)
    return _STORE_TYPE, entries, b"".join(parts)


def _published_entry(published: int, parts: list[bytes]) -> int:
    """Append the ``published`` entry unless it is 0 (the default); return the entries added."""
    if check_uint(published, 0, MAX_PUBLISHED, "published") == 0:
        return 0
    parts += (_PUBLISHED_KEY, _head(_UINT, published))
    return 1


def _encode_find_node(body: FindNode) -> _BodyBytes:
    target = check_id(body.target, "find_node target")
    return FIND_NODE_TYPE, 1, TARGET_KEY_AND_ID_HEAD + target


def _encode_find_value(body: FindValue) -> _BodyBytes:
    key = check_id(body.key, "find_value key")
    return FIND_VALUE_TYPE, 1, KEY_KEY_AND_ID_HEAD + key


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
        published = check_uint(pair.published, 0, MAX_PUBLISHED, "store_many published")
        if pair.cas is not None:
            raise ValueError("a store_many pair cannot carry cas")
        # An optional fourth item: the signed part (its seq orders the pair, so it carries
        # no published), or the publication time when it is not 0.
        if pair.signed is not None:
            fourth = [encode_signed_part(pair.signed)]
        else:
            fourth = [_head(_UINT, published)] if published else []
        parts += (
            _PAIR_OF_FOUR_START if fourth else _PAIR_START,
            check_id(pair.key, "store_many key"),
            _head(_BYTES, len(value)),
            value,
            _head(_UINT, check_uint(pair.ttl, 0, MAX_TTL, "store_many ttl")),
            *fourth,
        )
    return _STORE_MANY_TYPE, 1, b"".join(parts)


def _encode_nodes(body: Nodes, cache: ContactCache | None) -> _BodyBytes:
    contacts = body.contacts
    if len(contacts) > MAX_CONTACTS:
        raise ValueError(f"a nodes reply carries at most {MAX_CONTACTS} contacts")
    parts = [_NODES_KEY, _head(_ARRAY, len(contacts))]
    if cache is None:
        parts += map(encode_contact, contacts)
    else:
        cache.encode_all(contacts, encode_contact, parts)
    return _NODES_TYPE, 1, b"".join(parts)


def _encode_found_value(body: FoundValue) -> _BodyBytes:
    value = body.value
    if type(value) is not bytes:
        raise ValueError("found value must be bytes")
    parts = [_VALUE_KEY, _head(_BYTES, len(value)), value]
    entries = 1
    if body.ttl is not None:
        parts += (_TTL_KEY, _head(_UINT, check_uint(body.ttl, 0, MAX_TTL, "value ttl")))
        entries += 1
    if body.signed is not None:
        # A signed record's seq orders it: ``published`` and ``cached`` are for plain values.
        parts += (_SIGNED_KEY, encode_signed_part(body.signed))
        return _VALUE_TYPE, entries + 1, b"".join(parts)
    entries += _published_entry(body.published, parts)
    if body.cached:
        parts.append(_CACHED_ENTRY)
        entries += 1
    return _VALUE_TYPE, entries, b"".join(parts)


def _encode_error(body: ErrorReply) -> _BodyBytes:
    if not isinstance(body.code, ErrorCode):
        raise ValueError(f"error code must be an ErrorCode, got {body.code!r}")
    if type(body.message) is not str or len(body.message) > MAX_ERROR_MESSAGE_LENGTH:
        raise ValueError(f"error message must be text of at most {MAX_ERROR_MESSAGE_LENGTH}")
    message = body.message.encode("utf-8")  # UnicodeEncodeError is a ValueError
    parts = [_CODE_KEY, _head(_UINT, body.code), _MESSAGE_KEY, _head(TEXT, len(message)), message]
    entries = 2
    if body.seq is not None:
        parts += (_SEQ_KEY, _head(_UINT, check_uint(body.seq, 0, MAX_SEQ, "error seq")))
        entries += 1
    entries += _published_entry(body.published, parts)
    return _ERROR_TYPE, entries, b"".join(parts)


def _encode_stored_many(body: StoredMany) -> _BodyBytes:
    results = body.results
    parts = _batch_start(_RESULTS_KEY, len(results), "a stored_many reply", "results")
    for result in results:
        # 0, or an ErrorCode (or its plain int value); never a bool.
        if type(result) is not int and type(result) is not ErrorCode:
            raise ValueError(f"a stored_many result must be 0 or an ErrorCode, got {result!r}")
        if result != 0 and result not in ERROR_CODES:
            raise ValueError(f"a stored_many result must be 0 or an ErrorCode, got {result!r}")
        parts.append(_BYTE[result])  # every valid result is below 24
    return _STORED_MANY_TYPE, 1, b"".join(parts)


# --- signed records (docs/protocol.md, "Signed records") ---------------------

_SIGNED_KEY = _text("signed")
_CAS_KEY = _text("cas")
_SEQ_KEY = _text("seq")
_SIGNED_PART_START = _head(_ARRAY, 4) + _head(_BYTES, PUBLIC_KEY_BYTES)
_SIGNATURE_HEAD = _head(_BYTES, SIGNATURE_BYTES)


def encode_signed_part(signed: SignedPart) -> bytes:
    """``signed`` as a CBOR [public_key, salt, seq, signature], once checked against the limits."""
    if type(signed) is not SignedPart:
        raise ValueError(f"not a SignedPart: {signed!r}")
    problem = signed.problem()
    if problem is not None:
        raise ValueError(problem)
    salt = signed.salt
    head = (_SIGNED_PART_START, signed.public_key, _head(_BYTES, len(salt)), salt)
    return b"".join((*head, _head(_UINT, signed.seq), _SIGNATURE_HEAD, signed.signature))


def _signed_store_entries(body: Store, parts: list[bytes]) -> int:
    """Append a STORE's ``signed`` and ``cas`` entries to ``parts``; return how many."""
    if body.signed is None:
        raise ValueError("cas is for signed STOREs only")
    parts += (_SIGNED_KEY, encode_signed_part(body.signed))
    if body.cas is None:
        return 1
    parts += (_CAS_KEY, _head(_UINT, check_uint(body.cas, 0, MAX_SEQ, "cas")))
    return 2


# --- watching a key (issue 18)
_LISTEN_TYPE = _text("listen")
_PUSH_TYPE = _text("push")


def _encode_listen(body: Listen) -> _BodyBytes:
    return _LISTEN_TYPE, 1, KEY_KEY_AND_ID_HEAD + check_id(body.key, "listen key")


def _encode_push(body: Push) -> _BodyBytes:
    # A push carries a pair as a STORE would, but never a cache copy or a cas.
    if type(body.pair) is not Store or body.pair.cache or body.pair.cas is not None:
        raise ValueError(f"a push carries a plain Store, got {body.pair!r}")
    _, entries, fields = _encode_store(body.pair)
    return _PUSH_TYPE, entries, fields


_REQUEST_ENCODERS: dict[type, Callable[[Any], _BodyBytes]] = {
    Ping: lambda body: _PING_BYTES,
    Store: _encode_store,
    FindNode: _encode_find_node,
    FindValue: _encode_find_value,
    StoreMany: _encode_store_many,
    **PROVIDER_REQUEST_ENCODERS,
    Listen: _encode_listen,
    Push: _encode_push,
}
_REPLY_ENCODERS: dict[type, Callable[[Any], _BodyBytes]] = {
    Pong: lambda body: _PONG_BYTES,
    Stored: lambda body: _STORED_BYTES,
    FoundValue: _encode_found_value,
    ErrorReply: _encode_error,
    StoredMany: _encode_stored_many,
    Providers: lambda body: encode_providers(body, encode_contact),
}


def encode_frame(frame: Frame, contacts: ContactCache | None = None) -> bytes:
    """The bytes of ``frame`` on the wire: a 4-byte big-endian length, then one CBOR map.

    Raises ``ValueError`` if the frame breaks a wire rule (an id of the wrong
    length, a port out of range, ...): that is a bug on this side, and sending
    it would only make the peer refuse it. ``contacts``, the sender's own
    cache, spares re-encoding the contacts of a ``Nodes`` reply it has sent before.
    """
    if isinstance(frame, ReplyFrame):
        return encode_reply(frame.request_id, frame.sender_id, frame.body, contacts)
    if not isinstance(frame, RequestFrame):
        raise ValueError(f"not a frame: {frame!r}")
    sender_port = frame.sender_port
    if sender_port is None:
        entries, port_key, port = 4, b"", b""
    else:
        port = _head(_UINT, check_uint(sender_port, 1, 65535, "sender port"))
        entries, port_key = 5, PORT_KEY
    if frame.duplex:
        # Once per connection (its first request), so the fast path need not know it.
        port += _DUPLEX_ENTRY
        entries += 1
    encoder = _REQUEST_ENCODERS.get(type(frame.body))
    if encoder is None:
        raise ValueError(f"not a request body: {frame.body!r}")
    head = (entries, port_key, port)
    return _frame_bytes(head, frame.request_id, frame.sender_id, encoder(frame.body))


def encode_reply(
    request_id: int, sender_id: bytes, body: Reply, contacts: ContactCache | None = None
) -> bytes:
    """``encode_frame(ReplyFrame(request_id, sender_id, body), contacts)`` without the frame.

    A server encodes one reply per request it reads; this spares it the frame object.
    """
    if type(body) is Nodes:  # the one body that carries contacts
        return _frame_bytes(_REPLY_HEAD, request_id, sender_id, _encode_nodes(body, contacts))
    encoder = _REPLY_ENCODERS.get(type(body))
    if encoder is None:
        raise ValueError(f"not a reply body: {body!r}")
    return _frame_bytes(_REPLY_HEAD, request_id, sender_id, encoder(body))


# A reply's entries besides its body, and its (absent) port key and port.
_REPLY_HEAD = (4, b"", b"")


def _frame_bytes(
    head: tuple[int, bytes, bytes],
    request_id: int,
    sender_id: bytes,
    body: _BodyBytes,
) -> bytes:
    entries, port_key, port = head
    request_id = check_uint(request_id, 0, MAX_REQUEST_ID, "request id")
    sender_id = check_id(sender_id, "sender id")
    kind, body_entries, body_bytes = body
    payload = b"".join(
        (
            _BYTE[MAP | (entries + body_entries)],  # at most 12 entries: one byte
            FRAME_START,
            kind,
            ID_KEY,
            _head(_UINT, request_id),
            FROM_KEY_AND_ID_HEAD,
            sender_id,
            port_key,
            port,
            body_bytes,
        )
    )
    return prefixed(payload)
