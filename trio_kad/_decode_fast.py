"""The frequent frames read without cbor2, exactly as our encoder lays them out.

Pings, FIND_NODE, FIND_VALUE and the small replies (pong, stored) are most of
the frames, and ``_encode`` always lays them out the same way. Building a
cbor2 decoder for each costs more than reading them, so ``decode_usual``
reads exactly that layout and returns None for anything else (another key
order, one more entry, a bad field, a truncated frame...), which then takes
the general path (``_decode``). It only accepts bytes the general path decodes
to an equal frame (tests/test_decode_fast.py checks that against random
frames). Pure code.
"""

from __future__ import annotations

from collections.abc import Callable

from ._decode import PING, PONG, STORED
from ._encode import (
    FIND_NODE_TYPE,
    FIND_VALUE_TYPE,
    FRAME_START,
    FROM_KEY_AND_ID_HEAD,
    ID_KEY,
    KEY_KEY_AND_ID_HEAD,
    MAP,
    PING_TYPE,
    PONG_TYPE,
    PORT_KEY,
    STORED_TYPE,
    TARGET_KEY_AND_ID_HEAD,
    TEXT,
)
from ._ids import ID_BYTES
from ._messages import FindNode, FindValue, Frame, Reply, ReplyFrame, Request, RequestFrame

__all__ = ["decode_usual"]

_UINT_TAILS = {24: 1, 25: 2, 26: 4, 27: 8}
_KIND_AT = 1 + len(FRAME_START)
_FROM_LENGTH = len(FROM_KEY_AND_ID_HEAD) + ID_BYTES

# Request kinds: what their body holds after the common entries, an id field
# (its key and id head, and how to make the body) or nothing (a ping).
_USUAL_REQUESTS: dict[bytes, tuple[bytes, Callable[[bytes], Request] | None]] = {
    PING_TYPE: (b"", None),
    FIND_NODE_TYPE: (TARGET_KEY_AND_ID_HEAD, FindNode),
    FIND_VALUE_TYPE: (KEY_KEY_AND_ID_HEAD, FindValue),
}
_USUAL_EMPTY_REPLIES: dict[bytes, Reply] = {PONG_TYPE: PONG, STORED_TYPE: STORED}


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


def decode_usual(payload: bytes) -> Frame | None:
    """The frame in ``payload`` if laid out as our encoder writes a frequent one, else None."""
    try:
        if not payload.startswith(FRAME_START, 1):
            return None
        kind_end = _KIND_AT + 1 + payload[_KIND_AT] - TEXT
        kind = payload[_KIND_AT:kind_end]
        request = _USUAL_REQUESTS.get(kind)
        empty_reply = None if request is not None else _USUAL_EMPTY_REPLIES.get(kind)
        if request is None and empty_reply is None:
            return None
        if not payload.startswith(ID_KEY, kind_end):
            return None
        request_id, at = _uint_at(payload, kind_end + len(ID_KEY))
        if not payload.startswith(FROM_KEY_AND_ID_HEAD, at):
            return None
        at += _FROM_LENGTH
        sender_id = payload[at - ID_BYTES : at]
        entries = payload[0] - MAP
        if request is not None:
            sender_port = None
            if payload.startswith(PORT_KEY, at):
                sender_port, at = _uint_at(payload, at + len(PORT_KEY))
                if not 1 <= sender_port <= 65535:
                    return None
                entries -= 1
            body_start, make = request
            if make is None:
                if entries != 4 or at != len(payload):
                    return None
                return RequestFrame(request_id, sender_id, sender_port, PING)
            end = at + len(body_start) + ID_BYTES
            if entries != 5 or end != len(payload) or not payload.startswith(body_start, at):
                return None
            return RequestFrame(request_id, sender_id, sender_port, make(payload[end - ID_BYTES :]))
        if entries != 4 or at != len(payload) or empty_reply is None:
            return None
        return ReplyFrame(request_id, sender_id, empty_reply)
    except (IndexError, KeyError):
        return None
