"""The messages of the trio-kad protocol as typed, immutable values.

The codec (``_codec``) turns these into CBOR frames and back; nothing here
knows about bytes on the wire, only the limits both sides of it check. See
docs/protocol.md for the encoding.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._ids import Contact

# --- signed records ------------------------------------------------------------

PUBLIC_KEY_BYTES = 32
"""An Ed25519 public key, raw."""
SIGNATURE_BYTES = 64
"""An Ed25519 signature, raw."""
MAX_SALT_BYTES = 64
"""Longest salt of a signed record."""
MAX_SEQ = 2**63 - 1
"""Largest seq of a signed record (and ``cas``)."""


@dataclass(frozen=True, slots=True)
class SignedPart:
    """What makes a pair a signed record: who signed it, under which salt, its seq, the signature.

    The pair's key must be SHA-256(public_key || salt) and ``signature`` the
    publisher's Ed25519 signature of ``_signed.signing_bytes`` (docs/protocol.md).
    On the wire: ``[public_key, salt, seq, signature]``.
    """

    public_key: bytes
    salt: bytes
    seq: int
    signature: bytes

    def problem(self) -> str | None:
        """What is out of the wire's limits (types, lengths, seq range); ``None`` when nothing.

        The one check of a signed part, wherever one comes from: the encoder
        refuses to send it, the decoder to take it, a reader to believe it.
        """
        public_key, salt, seq, signature = self.public_key, self.salt, self.seq, self.signature
        if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
            return f"a public key must be {PUBLIC_KEY_BYTES} bytes"
        if type(salt) is not bytes or len(salt) > MAX_SALT_BYTES:
            return f"a salt must be at most {MAX_SALT_BYTES} bytes"
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            return f"a seq must be an int in 0..{MAX_SEQ}"
        if type(signature) is not bytes or len(signature) != SIGNATURE_BYTES:
            return f"a signature must be {SIGNATURE_BYTES} bytes"
        return None


# --- requests (paper section 2.3: the four RPCs) -----------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    """Is the receiver alive? Answered by ``Pong``."""


@dataclass(frozen=True, slots=True)
class Store:
    """Store ``value`` (opaque bytes, the setter's CBOR encoding) under ``key`` (a 32-byte id).

    ``ttl`` is how many more seconds the pair should live (``None``: the
    receiver's full tExpire); replication passes on what is left, so copies
    never outlive the publication. ``cache`` marks a FIND_VALUE cache copy
    (paper 2.3), which the receiver keeps for a shorter time.

    ``published`` is when the ``set`` that made the pair ran, in milliseconds
    since the Unix epoch by the publisher's clock, carried unchanged by every
    copy; 0 (also what a peer that does not send it means) is the oldest.
    Holders keep the newer publication (``_newer``).
    """

    key: bytes
    value: bytes
    ttl: int | None = None
    cache: bool = False
    # Signed records (docs/protocol.md, "Signed records").
    signed: SignedPart | None = None
    """The publisher's signature: the pair is a signed record (``_signed``)."""
    cas: int | None = None
    """Compare-and-swap: store only if the seq held is this one (signed STOREs only)."""
    # --- plain values converge (issue 16)
    published: int = 0


@dataclass(frozen=True, slots=True)
class FindNode:
    """Which k contacts do you know closest to ``target``? Answered by ``Nodes``."""

    target: bytes


@dataclass(frozen=True, slots=True)
class FindValue:
    """The value under ``key`` if you hold it (``FoundValue``), else ``Nodes`` as for FindNode."""

    key: bytes


@dataclass(frozen=True, slots=True)
class StoreMany:
    """Store several pairs on one peer at once; answered by ``StoredMany``.

    Replication (paper section 2.5) sends every pair a node holds to each of
    the k closest nodes: one ``StoreMany`` per peer instead of one ``Store``
    per pair. Each item is a ``Store`` with ``cache=False`` and an int
    ``ttl`` (on the wire a pair is ``[key, value, ttl]``, or
    ``[key, value, ttl, published]`` when ``published`` is not 0); 1 to
    ``MAX_BATCH_PAIRS`` items. The sender also keeps the frame under the
    receiver's ``max_frame_size``, splitting large batches by size.
    """

    pairs: tuple[Store, ...]


# --- provider sets (issue 17; docs/protocol.md, "Provider sets") -------------


@dataclass(frozen=True, slots=True)
class AddProvider:
    """Add the sender to the provider set of ``key``, serving on ``port``; answered by ``Stored``.

    The entry's host is the address the request's connection came from, never
    one the sender names.
    """

    key: bytes
    port: int


@dataclass(frozen=True, slots=True)
class GetProviders:
    """The provider set of ``key`` held here, and the k closest contacts (``Providers``)."""

    key: bytes


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """One provider as it travels: ``[node_id, host, port, age, ttl]``.

    ``age``: seconds since it announced; ``ttl``: seconds its entry has left.
    """

    node_id: bytes
    host: str
    port: int
    age: int
    ttl: int


@dataclass(frozen=True, slots=True)
class StoreProviders:
    """A holder replicating the provider set of ``key`` (1 to ``MAX_PROVIDER_ENTRIES`` entries)."""

    key: bytes
    entries: tuple[ProviderEntry, ...]


# --- watching a key (issue 18) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listen:
    """Push me each newer pair of ``key`` you come to hold (docs/protocol.md, "Watching a key").

    Answered as ``FindValue`` is (``FoundValue`` when the receiver holds the
    key, else ``Nodes``), which also says the receiver keeps the sender as a
    listener until ``Config.watch_listener_ttl`` passes without another
    ``Listen``; or refused with ``OVERLOADED`` over a listener limit.
    """

    key: bytes


@dataclass(frozen=True, slots=True)
class Push:
    """A holder's newer pair for a key the receiver listens to: ``pair`` as it was stored.

    ``pair`` is a ``Store`` without ``cache`` or ``cas``. Answered by ``Pong``,
    or by ``NOT_LISTENING`` when the receiver does not listen to that key (any more).
    """

    pair: Store


Request = (
    Ping
    | Store
    | FindNode
    | FindValue
    | StoreMany
    | AddProvider
    | GetProviders
    | StoreProviders
    | Listen
    | Push
)

# --- replies -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pong:
    """Reply to ``Ping``."""


@dataclass(frozen=True, slots=True)
class Stored:
    """Reply to ``Store``: the pair is stored (durably, where the node has a data_dir)."""


@dataclass(frozen=True, slots=True)
class Nodes:
    """Reply to ``FindNode``, or to ``FindValue`` when the value is not held here."""

    contacts: tuple[Contact, ...]


@dataclass(frozen=True, slots=True)
class FoundValue:
    """Reply to ``FindValue``: the value as opaque bytes, and its remaining life in seconds.

    ``published`` is the pair's publication time (``Store.published``);
    ``cached`` says the copy is a FIND_VALUE cache copy, which a newer
    publication elsewhere may have superseded (readers look further).
    """

    value: bytes
    ttl: int | None = None
    # Signed records.
    signed: SignedPart | None = None
    """The signature that came with the value, when it is a signed record."""
    # --- plain values converge (issue 16)
    published: int = 0
    cached: bool = False


class ErrorCode(enum.IntEnum):
    """The fixed set of reasons a request can be refused (docs/protocol.md)."""

    MALFORMED = 1
    """The request could not be decoded or has a field of the wrong shape."""
    UNSUPPORTED = 2
    """Unknown message type or protocol version."""
    TOO_LARGE = 3
    """A frame or value exceeds the receiver's limits."""
    OVERLOADED = 4
    """The receiver is at a limit (connections, requests, storage); try later."""
    INTERNAL = 5
    """The receiver failed to handle a valid request."""
    # Signed and immutable records.
    STALE_SEQUENCE = 6
    """A signed STORE's seq is below the one held, or equal with another value."""
    CAS_MISMATCH = 7
    """A signed STORE's ``cas`` is not the seq held."""
    BAD_SIGNATURE = 8
    """A signed STORE whose signature does not verify, or whose key is not its record's."""
    PROTECTED = 9
    """A plain STORE to a key that holds a signed or content-addressed record."""
    # Plain values converge (issue 16).
    SUPERSEDED = 10
    """The receiver holds a newer publication of the pair (``ErrorReply.published``)."""
    # Provider sets (issue 17).
    OVER_QUOTA = 11
    """The announcing address holds as many provider entries, or node ids, as it may."""
    PROVIDER_CONFLICT = 12
    """The node id is a provider of the key from another address until that entry expires."""
    # Watching a key (issue 18).
    NOT_LISTENING = 13
    """A ``Push`` for a key the receiver does not listen to: the sender stops pushing it there."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Reply to any request the receiver refuses. ``message`` is short and generic.

    ``published``: with ``SUPERSEDED``, the publication time of the pair held
    (0 otherwise, and then not on the wire).
    """

    code: ErrorCode
    message: str
    # Signed records.
    seq: int | None = None
    """For ``STALE_SEQUENCE`` and ``CAS_MISMATCH``: the seq the refusing node holds."""
    # --- plain values converge (issue 16)
    published: int = 0


@dataclass(frozen=True, slots=True)
class StoredMany:
    """Reply to ``StoreMany``: one result per pair, in the order of the request.

    A result is ``0`` when that pair is stored, otherwise the ``ErrorCode``
    that refused it (``TOO_LARGE``, ``OVERLOADED``, ...), as a ``Store`` of
    that pair would have been answered.
    """

    results: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Providers:
    """Reply to ``GetProviders``: the holder's entries for the key and its k closest contacts."""

    entries: tuple[ProviderEntry, ...]
    contacts: tuple[Contact, ...]


Reply = Pong | Stored | Nodes | FoundValue | ErrorReply | StoredMany | Providers

# --- frames: a message with its header ---------------------------------------


# The two frame classes write their own __init__: the generated one of a frozen
# dataclass goes through object.__setattr__ for each field, the slot
# descriptors (bound below the classes) take about half the time, and a frame
# is built for every message sent and every message received.


@dataclass(frozen=True, slots=True, init=False)
class RequestFrame:
    """A request as it travels: request id, sender id and listening port, body.

    ``sender_port`` is ``None`` for a client-only node, which must not be put
    into routing tables because nothing listens for it. ``duplex``: the
    sender reads requests on this connection too, so the receiver may send
    its own requests over it (said in the first request on a connection the
    sender opened; docs/protocol.md, "Connections").
    """

    request_id: int
    sender_id: bytes
    sender_port: int | None
    body: Request
    duplex: bool

    def __init__(
        self,
        request_id: int,
        sender_id: bytes,
        sender_port: int | None,
        body: Request,
        duplex: bool = False,
    ) -> None:
        _set_request_frame_id(self, request_id)
        _set_request_frame_sender(self, sender_id)
        _set_request_frame_port(self, sender_port)
        _set_request_frame_body(self, body)
        _set_request_frame_duplex(self, duplex)


@dataclass(frozen=True, slots=True, init=False)
class ReplyFrame:
    """A reply as it travels: the request id it answers, the replier's id, body."""

    request_id: int
    sender_id: bytes
    body: Reply

    def __init__(self, request_id: int, sender_id: bytes, body: Reply) -> None:
        _set_reply_frame_id(self, request_id)
        _set_reply_frame_sender(self, sender_id)
        _set_reply_frame_body(self, body)


def _slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """Sets slot ``name`` of a ``cls`` instance, bypassing the frozen ``__setattr__``."""
    setter: Callable[[Any, Any], None] = cls.__dict__[name].__set__
    return setter


_set_request_frame_id = _slot_setter(RequestFrame, "request_id")
_set_request_frame_sender = _slot_setter(RequestFrame, "sender_id")
_set_request_frame_port = _slot_setter(RequestFrame, "sender_port")
_set_request_frame_body = _slot_setter(RequestFrame, "body")
_set_request_frame_duplex = _slot_setter(RequestFrame, "duplex")
_set_reply_frame_id = _slot_setter(ReplyFrame, "request_id")
_set_reply_frame_sender = _slot_setter(ReplyFrame, "sender_id")
_set_reply_frame_body = _slot_setter(ReplyFrame, "body")

Frame = RequestFrame | ReplyFrame

PROTOCOL_VERSION = 1
MAX_TTL = 2**32 - 1
"""Largest ``ttl`` on the wire, in seconds (about 136 years)."""
MAX_PUBLISHED = 2**63 - 1
"""Largest ``published`` on the wire, in milliseconds since the Unix epoch."""
MAX_BATCH_PAIRS = 64
"""Most pairs one ``StoreMany`` carries, and so most results one ``StoredMany`` carries."""
MAX_REQUEST_ID = 2**64 - 1
"""Largest request id: ids are CBOR unsigned ints that fit in 64 bits."""
MAX_CONTACTS = 256
"""Most contacts one ``Nodes`` reply may carry (a node sends k of them)."""
MAX_ERROR_MESSAGE_LENGTH = 256
"""Longest ``message`` of an ``ErrorReply``, in characters."""
ERROR_CODES: dict[int, ErrorCode] = {code.value: code for code in ErrorCode}
"""Every ``ErrorCode`` by its value on the wire."""
MAX_PROVIDER_ENTRIES = 256
"""Most provider entries one ``providers`` reply or ``store_providers`` request carries."""
