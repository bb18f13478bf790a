"""The hand-written encoder (``_encode``): exactly what cbor2 writes, and what it refuses."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from wire import KEY, SENDER, boundary_frames, payload_of, store_many_fields

from trio_kad._codec import MAX_CONTACTS, MAX_REQUEST_ID, decode_frame, encode_frame, encode_reply
from trio_kad._ids import Contact
from trio_kad._messages import (
    MAX_BATCH_PAIRS,
    MAX_TTL,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Frame,
    Nodes,
    Ping,
    Pong,
    Push,
    ReplyFrame,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)


def reference_map(frame: Frame) -> dict[str, Any]:
    """The frame as the map docs/protocol.md describes, keys in the documented order."""
    fields: dict[str, Any] = {"v": 1, "t": "", "id": frame.request_id, "from": frame.sender_id}
    body: Any = frame.body
    if isinstance(frame, RequestFrame) and frame.sender_port is not None:
        fields["port"] = frame.sender_port
    if isinstance(body, Ping | Pong | Stored):
        fields["t"] = {Ping: "ping", Pong: "pong", Stored: "stored"}[type(body)]
    elif isinstance(body, Store):
        fields |= {"t": "store", "key": body.key, "value": body.value}
        if body.ttl is not None:
            fields["ttl"] = body.ttl
        if body.cache:
            fields["cache"] = True
        if body.published:
            fields["published"] = body.published
    elif isinstance(body, FindNode):
        fields |= {"t": "find_node", "target": body.target}
    elif isinstance(body, FindValue):
        fields |= {"t": "find_value", "key": body.key}
    elif isinstance(body, StoreMany):
        pairs = [
            [p.key, p.value, p.ttl] + ([p.published] if p.published else []) for p in body.pairs
        ]
        fields |= {"t": "store_many", "pairs": pairs}
    elif isinstance(body, Nodes):
        fields |= {"t": "nodes", "nodes": [[c.node_id, c.host, c.port] for c in body.contacts]}
    elif isinstance(body, FoundValue):
        fields |= {"t": "value", "value": body.value}
        if body.ttl is not None:
            fields["ttl"] = body.ttl
        if body.published:
            fields["published"] = body.published
        if body.cached:
            fields["cached"] = True
    elif isinstance(body, ErrorReply):
        fields |= {"t": "error", "code": int(body.code), "message": body.message}
        if body.published:
            fields["published"] = body.published
    else:
        assert isinstance(body, StoredMany)
        fields |= {"t": "stored_many", "results": [int(result) for result in body.results]}
    return fields


@settings(max_examples=300)
@given(boundary_frames)
def test_encoding_is_what_cbor2_writes(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert encoded[4:] == cbor2.dumps(reference_map(frame))
    assert int.from_bytes(encoded[:4], "big") == len(encoded) - 4


def test_long_value_uses_a_four_byte_length() -> None:
    frame = ReplyFrame(2**64 - 1, SENDER, FoundValue(b"v" * 70_000, MAX_TTL))
    assert encode_frame(frame)[4:] == cbor2.dumps(reference_map(frame))
    assert decode_frame(encode_frame(frame)[4:]) == frame


def test_ping_frame_bytes_match_docs() -> None:
    # The worked example in docs/protocol.md.
    encoded = encode_frame(RequestFrame(1, SENDER, 4000, Ping()))
    assert encoded.hex() == (
        "0000003e"
        "a5"
        "6176" "01"
        "6174" "6470696e67"
        "626964" "01"
        "6466726f6d" "5820" + SENDER.hex() + "64706f7274" "190fa0"
    )  # fmt: skip


def test_store_many_wire_shape() -> None:
    # docs/protocol.md: "pairs" is an array of [key, value, ttl].
    frame = RequestFrame(7, SENDER, 4000, StoreMany((Store(KEY, b"a", 0), Store(SENDER, b"bc", 9))))
    assert cbor2.loads(payload_of(frame)) == store_many_fields([[KEY, b"a", 0], [SENDER, b"bc", 9]])


def test_encode_reply_refuses_what_encode_frame_refuses() -> None:
    with pytest.raises(ValueError):
        encode_reply(1, SENDER, Ping())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_reply(1, b"short", Pong())
    with pytest.raises(ValueError):
        encode_reply(MAX_REQUEST_ID + 1, SENDER, Pong())


@pytest.mark.parametrize(
    "frame",
    [
        RequestFrame(-1, SENDER, 1, Ping()),
        RequestFrame(2**64, SENDER, 1, Ping()),
        RequestFrame(True, SENDER, 1, Ping()),
        RequestFrame(1, SENDER[:31], 1, Ping()),
        RequestFrame(1, SENDER, 0, Ping()),
        RequestFrame(1, SENDER, 65536, Ping()),
        RequestFrame(1, SENDER, 1, Store(KEY, b"")),
        RequestFrame(1, SENDER, 1, Store(KEY[:1], b"v")),
        RequestFrame(1, SENDER, 1, FindNode(b"")),
        RequestFrame(1, SENDER, 1, FindValue(KEY.hex().encode())),
        RequestFrame(1, SENDER, 1, Pong()),  # type: ignore[arg-type]
        ReplyFrame(1, SENDER, Ping()),  # type: ignore[arg-type]
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "h", 1),) * (MAX_CONTACTS + 1))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "", 1),))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "a b", 1),))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "h", 0),))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY[:4], "h", 1),))),
        ReplyFrame(1, SENDER, ErrorReply(5, "x")),  # type: ignore[arg-type]
        ReplyFrame(1, SENDER, ErrorReply(ErrorCode.INTERNAL, "x" * 257)),
        Ping(),
    ],
)
def test_encode_refuses_invalid_frames(frame: Any) -> None:
    with pytest.raises(ValueError):
        encode_frame(frame)


@pytest.mark.parametrize(
    "body",
    [
        StoreMany(()),
        StoreMany((Store(KEY, b"v", 1),) * (MAX_BATCH_PAIRS + 1)),
        StoreMany((Store(KEY, b"v", 1, cache=True),)),
        StoreMany((Store(KEY, b"v"),)),  # no ttl: the wire requires one
        StoreMany((Store(KEY, b"v", -1),)),
        StoreMany((Store(KEY, b"v", MAX_TTL + 1),)),
        StoreMany((Store(KEY, b"v", True),)),
        StoreMany((Store(KEY[:31], b"v", 1),)),
        StoreMany((Store(KEY, b"", 1),)),
        StoreMany((Store(KEY, "v", 1),)),  # type: ignore[arg-type]
        StoreMany((FindNode(KEY),)),  # type: ignore[arg-type]
        StoreMany((Store(KEY, b"v", 1), (KEY, b"v", 1))),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_bad_store_many(body: StoreMany) -> None:
    with pytest.raises(ValueError):
        encode_frame(RequestFrame(1, SENDER, 1, body))


@pytest.mark.parametrize(
    "body",
    [
        StoredMany(()),
        StoredMany((0,) * (MAX_BATCH_PAIRS + 1)),
        StoredMany((-1,)),
        StoredMany((99,)),
        StoredMany((True,)),
        StoredMany((0.0,)),  # type: ignore[arg-type]
        StoredMany(("0",)),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_bad_stored_many(body: StoredMany) -> None:
    with pytest.raises(ValueError):
        encode_frame(ReplyFrame(1, SENDER, body))


def test_batch_bodies_only_in_their_own_frames() -> None:
    with pytest.raises(ValueError):
        encode_frame(ReplyFrame(1, SENDER, StoreMany((Store(KEY, b"v", 1),))))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_frame(RequestFrame(1, SENDER, 1, StoredMany((0,))))  # type: ignore[arg-type]


def test_invalid_contact_is_refused_every_time() -> None:
    bad = Contact(KEY, "a b", 1)
    for _ in range(2):
        with pytest.raises(ValueError):
            encode_frame(ReplyFrame(1, SENDER, Nodes((bad,))))


def test_not_a_contact_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_frame(ReplyFrame(1, SENDER, Nodes(((KEY, "h", 1),))))  # type: ignore[arg-type]


# --- watching a key (issue 18) ---------------------------------------------------


@pytest.mark.parametrize(
    "pair",
    [Store(KEY, b"\x01", cache=True), Store(KEY, b"\x01", signed=None, cas=3)],
)
def test_a_push_carries_no_cache_copy_and_no_cas(pair: Store) -> None:
    with pytest.raises(ValueError):
        encode_frame(RequestFrame(1, SENDER, 4000, Push(pair)))
