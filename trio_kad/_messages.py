"""The messages of the trio-kad protocol as typed, immutable values.

The codec (``_codec``) turns these into CBOR frames and back; nothing here
knows about bytes on the wire. See docs/protocol.md for the encoding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ._ids import Contact

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
    """

    key: bytes
    value: bytes
    ttl: int | None = None
    cache: bool = False


@dataclass(frozen=True, slots=True)
class FindNode:
    """Which k contacts do you know closest to ``target``? Answered by ``Nodes``."""

    target: bytes


@dataclass(frozen=True, slots=True)
class FindValue:
    """The value under ``key`` if you hold it (``FoundValue``), else ``Nodes`` as for FindNode."""

    key: bytes


Request = Ping | Store | FindNode | FindValue

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
    """Reply to ``FindValue``: the value as opaque bytes, and its remaining life in seconds."""

    value: bytes
    ttl: int | None = None


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


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """Reply to any request the receiver refuses. ``message`` is short and generic."""

    code: ErrorCode
    message: str


Reply = Pong | Stored | Nodes | FoundValue | ErrorReply

# --- frames: a message with its header ---------------------------------------


@dataclass(frozen=True, slots=True)
class RequestFrame:
    """A request as it travels: request id, sender id and listening port, body.

    ``sender_port`` is ``None`` for a client-only node, which must not be put
    into routing tables because nothing listens for it.
    """

    request_id: int
    sender_id: bytes
    sender_port: int | None
    body: Request


@dataclass(frozen=True, slots=True)
class ReplyFrame:
    """A reply as it travels: the request id it answers, the replier's id, body."""

    request_id: int
    sender_id: bytes
    body: Reply


Frame = RequestFrame | ReplyFrame

PROTOCOL_VERSION = 1
MAX_TTL = 2**32 - 1
"""Largest ``ttl`` on the wire, in seconds (about 136 years)."""
