"""Frames on the wire: a 4-byte length prefix, then one CBOR map (docs/protocol.md).

Pure code (no trio, no sockets), in the sans-I/O style of h11: ``encode_frame``
turns a frame into bytes, ``FrameReader`` splits a byte stream into payloads,
``decode_frame`` turns one payload into a frame. Everything received is
hostile until proven otherwise: ``decode_frame`` raises nothing but
``ProtocolError``, whatever the bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, NoReturn

import cbor2

from ._errors import ProtocolError
from ._ids import ID_BYTES, Contact
from ._messages import (
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
]

LENGTH_PREFIX_SIZE = 4
"""Bytes of the big-endian length that precedes every CBOR map."""
MAX_REQUEST_ID = 2**64 - 1
"""Largest request id: ids are CBOR unsigned ints that fit in 64 bits."""
MAX_CONTACTS = 256
"""Most contacts one ``nodes`` reply may carry (a node sends k of them)."""
MAX_HOST_LENGTH = 253
"""Longest host text in a contact: the longest DNS name."""
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


def _check_uint(value: object, low: int, high: int, what: str) -> int:
    # type() is, not isinstance: bool is an int subclass and must not pass.
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{what} must be an int in {low}..{high}, got {value!r}")
    return value


def _check_encode_id(value: object, what: str) -> bytes:
    if type(value) is not bytes or len(value) != ID_BYTES:
        raise ValueError(f"{what} must be {ID_BYTES} bytes")
    return value


def valid_host(host: object) -> bool:
    """Can ``host`` travel in a contact (1..253 printable ASCII characters, no spaces)?"""
    # Printable ASCII without spaces: a DNS name or an IP literal, safe to log.
    return (
        type(host) is str
        and 1 <= len(host) <= MAX_HOST_LENGTH
        and host.isascii()
        and host.isprintable()
        and " " not in host
    )


def _encode_contact(contact: Contact) -> list[object]:
    _check_encode_id(contact.node_id, "contact id")
    if not valid_host(contact.host):
        raise ValueError(f"contact host must be 1..{MAX_HOST_LENGTH} printable ASCII characters")
    _check_uint(contact.port, 1, 65535, "contact port")
    return [contact.node_id, contact.host, contact.port]


def _encode_request(body: Request, fields: dict[str, object]) -> None:
    if type(body) is Ping:
        fields["t"] = "ping"
    elif type(body) is Store:
        fields["t"] = "store"
        fields["key"] = _check_encode_id(body.key, "store key")
        if type(body.value) is not bytes or not body.value:
            raise ValueError("store value must be non-empty bytes")
        fields["value"] = body.value
        if body.ttl is not None:
            fields["ttl"] = _check_uint(body.ttl, 0, MAX_TTL, "store ttl")
        if body.cache:
            fields["cache"] = True
    elif type(body) is FindNode:
        fields["t"] = "find_node"
        fields["target"] = _check_encode_id(body.target, "find_node target")
    elif type(body) is FindValue:
        fields["t"] = "find_value"
        fields["key"] = _check_encode_id(body.key, "find_value key")
    else:
        raise ValueError(f"not a request body: {body!r}")


def _encode_reply(body: Reply, fields: dict[str, object]) -> None:
    if type(body) is Pong:
        fields["t"] = "pong"
    elif type(body) is Stored:
        fields["t"] = "stored"
    elif type(body) is Nodes:
        fields["t"] = "nodes"
        if len(body.contacts) > MAX_CONTACTS:
            raise ValueError(f"a nodes reply carries at most {MAX_CONTACTS} contacts")
        fields["nodes"] = [_encode_contact(contact) for contact in body.contacts]
    elif type(body) is FoundValue:
        fields["t"] = "value"
        if type(body.value) is not bytes:
            raise ValueError("found value must be bytes")
        fields["value"] = body.value
        if body.ttl is not None:
            fields["ttl"] = _check_uint(body.ttl, 0, MAX_TTL, "value ttl")
    elif type(body) is ErrorReply:
        fields["t"] = "error"
        if not isinstance(body.code, ErrorCode):
            raise ValueError(f"error code must be an ErrorCode, got {body.code!r}")
        if type(body.message) is not str or len(body.message) > MAX_ERROR_MESSAGE_LENGTH:
            raise ValueError(f"error message must be text of at most {MAX_ERROR_MESSAGE_LENGTH}")
        fields["code"] = int(body.code)
        fields["message"] = body.message
    else:
        raise ValueError(f"not a reply body: {body!r}")


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame`` on the wire: a 4-byte big-endian length, then one CBOR map.

    Raises ``ValueError`` if the frame breaks a wire rule (an id of the wrong
    length, a port out of range, ...): that is a bug on this side, and sending
    it would only make the peer refuse it.
    """
    if not isinstance(frame, RequestFrame | ReplyFrame):
        raise ValueError(f"not a frame: {frame!r}")
    fields: dict[str, object] = {
        "v": PROTOCOL_VERSION,
        "t": "",  # placeholder so "t" comes second, as in docs/protocol.md
        "id": _check_uint(frame.request_id, 0, MAX_REQUEST_ID, "request id"),
        "from": _check_encode_id(frame.sender_id, "sender id"),
    }
    if isinstance(frame, RequestFrame):
        if frame.sender_port is not None:
            fields["port"] = _check_uint(frame.sender_port, 1, 65535, "sender port")
        _encode_request(frame.body, fields)
    else:
        _encode_reply(frame.body, fields)
    payload = cbor2.dumps(fields)
    if len(payload) > _MAX_PREFIXED_LENGTH:
        raise ValueError("frame too large for a 4-byte length prefix")
    return len(payload).to_bytes(LENGTH_PREFIX_SIZE, "big") + payload


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


class _Fields:
    """Typed access to the fields of a received map; errors carry the request id."""

    __slots__ = ("map", "request_id")

    def __init__(self, fields: dict[Any, Any], request_id: int | None) -> None:
        self.map = fields
        self.request_id = request_id

    def fail(self, message: str) -> NoReturn:
        raise ProtocolError(message, request_id=self.request_id)

    def node_id(self, key: str) -> bytes:
        value = self.map.get(key)
        if type(value) is not bytes or len(value) != ID_BYTES:
            self.fail(f"'{key}' must be {ID_BYTES} bytes")
        return value

    def data(self, key: str, min_size: int) -> bytes:
        value = self.map.get(key)
        if type(value) is not bytes or len(value) < min_size:
            self.fail(f"'{key}' must be bytes")
        return value

    def ttl(self) -> int | None:
        value = self.map.get("ttl")
        if value is None:
            return None
        if type(value) is not int or not 0 <= value <= MAX_TTL:
            self.fail(f"'ttl' must be an int in 0..{MAX_TTL}")
        return value

    def flag(self, key: str) -> bool:
        value = self.map.get(key, False)
        if type(value) is not bool:
            self.fail(f"'{key}' must be a boolean")
        return value

    def port(self, value: object, what: str) -> int:
        if type(value) is not int or not 1 <= value <= 65535:
            self.fail(f"{what} must be an int in 1..65535")
        return value

    def contacts(self) -> tuple[Contact, ...]:
        items = self.map.get("nodes")
        if type(items) is not list or len(items) > MAX_CONTACTS:
            self.fail(f"'nodes' must be an array of at most {MAX_CONTACTS} contacts")
        contacts = []
        for item in items:
            if type(item) is not list or len(item) != 3:
                self.fail("a contact must be [id, host, port]")
            node_id, host, port = item
            if type(node_id) is not bytes or len(node_id) != ID_BYTES:
                self.fail(f"a contact id must be {ID_BYTES} bytes")
            if not valid_host(host):
                self.fail(f"a contact host must be 1..{MAX_HOST_LENGTH} printable ASCII characters")
            contacts.append(Contact(node_id, host, self.port(port, "a contact port")))
        return tuple(contacts)

    def error(self) -> ErrorReply:
        code = self.map.get("code")
        message = self.map.get("message")
        if type(code) is not int or code not in _ERROR_CODES:
            self.fail("'code' must be a known error code")
        if type(message) is not str or len(message) > MAX_ERROR_MESSAGE_LENGTH:
            self.fail(f"'message' must be text of at most {MAX_ERROR_MESSAGE_LENGTH} characters")
        return ErrorReply(ErrorCode(code), message)


_ERROR_CODES = frozenset(code.value for code in ErrorCode)

_REQUEST_DECODERS: dict[str, Callable[[_Fields], Request]] = {
    "ping": lambda f: Ping(),
    "store": lambda f: Store(f.node_id("key"), f.data("value", 1), f.ttl(), f.flag("cache")),
    "find_node": lambda f: FindNode(f.node_id("target")),
    "find_value": lambda f: FindValue(f.node_id("key")),
}
_REPLY_DECODERS: dict[str, Callable[[_Fields], Reply]] = {
    "pong": lambda f: Pong(),
    "stored": lambda f: Stored(),
    "nodes": lambda f: Nodes(f.contacts()),
    "value": lambda f: FoundValue(f.data("value", 0), f.ttl()),
    "error": _Fields.error,
}


def decode_frame(payload: bytes) -> Frame:
    """The frame in ``payload`` (the bytes after the length prefix).

    Raises ``ProtocolError`` (only that, for any input) when the payload is not
    exactly one valid frame. Its ``request_id`` is set when the map carried a
    valid ``"id"``, so the receiver can still answer with an error reply;
    ``UnsupportedFrameError`` marks another version or an unknown message type.
    """
    fields = _loads_one_item(payload)
    if type(fields) is not dict:
        raise ProtocolError("frame is not a CBOR map")
    request_id = fields.get("id")
    if type(request_id) is not int or not 0 <= request_id <= MAX_REQUEST_ID:
        raise ProtocolError("'id' must be an unsigned 64-bit int")
    f = _Fields(fields, request_id)

    version = fields.get("v")
    if type(version) is not int:
        f.fail("'v' must be an int")
    if version != PROTOCOL_VERSION:
        raise UnsupportedFrameError("unsupported protocol version", request_id=request_id)
    kind = fields.get("t")
    if type(kind) is not str:
        f.fail("'t' must be text")
    sender_id = f.node_id("from")

    request_decoder = _REQUEST_DECODERS.get(kind)
    if request_decoder is not None:
        # No "port": a client-only sender, which must not enter routing tables.
        sender_port = None if "port" not in fields else f.port(fields["port"], "'port'")
        return RequestFrame(request_id, sender_id, sender_port, request_decoder(f))
    reply_decoder = _REPLY_DECODERS.get(kind)
    if reply_decoder is not None:
        return ReplyFrame(request_id, sender_id, reply_decoder(f))
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
