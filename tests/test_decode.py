"""The general decoder (``_decode``): each field that breaks a wire rule is refused.

A refusal carries the request id whenever the map had a valid one, so the
receiver can still answer it.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from wire import (
    KEY,
    SENDER,
    fields_of,
    payload_of,
    ping_fields,
    refused,
    store_many_fields,
    stored_many_fields,
)

from trio_kad._codec import MAX_CONTACTS, UnsupportedFrameError, decode_frame
from trio_kad._errors import ProtocolError
from trio_kad._messages import (
    MAX_BATCH_PAIRS,
    MAX_TTL,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Frame,
    Listen,
    Nodes,
    Push,
    ReplyFrame,
    RequestFrame,
    Store,
    StoreMany,
)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("id", True),
        ("id", -1),
        ("id", 2**64),
        ("id", 1.0),
        ("id", "7"),
        ("id", None),
    ],
)
def test_bad_request_id_leaves_request_id_unset(name: str, value: object) -> None:
    assert refused(cbor2.dumps(ping_fields(**{name: value}))).request_id is None


def test_missing_id() -> None:
    fields = ping_fields()
    del fields["id"]
    assert refused(cbor2.dumps(fields)).request_id is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("v", True),
        ("v", 1.0),
        ("v", None),
        ("t", b"ping"),
        ("t", 1),
        ("from", SENDER[:31]),
        ("from", SENDER + b"\x00"),
        ("from", SENDER.hex()),
        ("from", list(SENDER)),
        ("port", 0),
        ("port", 65536),
        ("port", -1),
        ("port", True),
        ("port", None),
        ("port", "4000"),
        ("port", 4000.0),
    ],
)
def test_bad_field_sets_request_id(name: str, value: object) -> None:
    error = refused(cbor2.dumps(ping_fields(**{name: value})))
    assert error.request_id == 7
    assert not isinstance(error, UnsupportedFrameError)


@pytest.mark.parametrize("name", ["v", "t", "from"])
def test_missing_field_sets_request_id(name: str) -> None:
    fields = ping_fields()
    del fields[name]
    assert refused(cbor2.dumps(fields)).request_id == 7


@pytest.mark.parametrize(("name", "value"), [("v", 2), ("v", 0), ("t", "store_all"), ("t", "")])
def test_unsupported_version_or_type(name: str, value: object) -> None:
    error = refused(cbor2.dumps(ping_fields(**{name: value})))
    assert isinstance(error, UnsupportedFrameError)
    assert error.request_id == 7


@pytest.mark.parametrize(
    ("frame", "name", "value"),
    [
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "key", KEY[:31]),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "value", b""),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "value", "v"),
        (RequestFrame(7, SENDER, 1, FindNode(KEY)), "target", None),
        (RequestFrame(7, SENDER, 1, FindValue(KEY)), "key", KEY + KEY),
        (ReplyFrame(7, SENDER, FoundValue(b"v")), "value", ["v"]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", {}),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 1]] * (MAX_CONTACTS + 1)),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 1, 2]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h"]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY[:1], "h", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h" * 254, 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "a b", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h\n", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "hé", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, b"h", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 0]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 65536]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", True]]),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "code", 99),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "code", True),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "code", "5"),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "message", b"x"),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "message", "x" * 257),
    ],
)
def test_bad_body_field(frame: Frame, name: str, value: object) -> None:
    fields = fields_of(frame) | {name: value}
    assert refused(cbor2.dumps(fields)).request_id == 7
    del fields[name]
    assert refused(cbor2.dumps(fields)).request_id == 7


@pytest.mark.parametrize(
    ("frame", "name", "value"),
    [
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "ttl", -1),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "ttl", MAX_TTL + 1),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "ttl", True),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "cache", 1),
        (ReplyFrame(7, SENDER, FoundValue(b"v")), "ttl", 1.5),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "published", -1),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "published", 2**63),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "published", True),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "published", 1.5),
        (ReplyFrame(7, SENDER, FoundValue(b"v")), "published", "1"),
        (ReplyFrame(7, SENDER, FoundValue(b"v")), "cached", 1),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.SUPERSEDED, "x")), "published", -5),
    ],
)
def test_bad_optional_field(frame: Frame, name: str, value: object) -> None:
    fields = fields_of(frame) | {name: value}
    assert refused(cbor2.dumps(fields)).request_id == 7
    del fields[name]
    assert decode_frame(cbor2.dumps(fields)) == frame


def refused_with_id(fields: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(cbor2.dumps(fields))
    assert info.value.request_id == 7
    assert not isinstance(info.value, UnsupportedFrameError)


GOOD_PAIR = [KEY, b"v", 60]


@pytest.mark.parametrize(
    "pair_items",
    [
        [],
        [GOOD_PAIR] * (MAX_BATCH_PAIRS + 1),
        {"0": GOOD_PAIR},
        GOOD_PAIR,
        b"",
        None,
        [None],
        [KEY],
        [[KEY, b"v"]],
        [[KEY, b"v", 60, False]],
        [[KEY, b"v", 60, -1]],
        [[KEY, b"v", 60, 2**63]],
        [[KEY, b"v", 60, 1, 2]],
        [(KEY, b"v", 60), [KEY[:31], b"v", 60]],
        [[KEY + b"\x00", b"v", 60]],
        [[KEY.hex(), b"v", 60]],
        [[list(KEY), b"v", 60]],
        [[KEY, b"", 60]],
        [[KEY, "v", 60]],
        [[KEY, [1], 60]],
        [[KEY, b"v", -1]],
        [[KEY, b"v", MAX_TTL + 1]],
        [[KEY, b"v", True]],
        [[KEY, b"v", 1.0]],
        [[KEY, b"v", None]],
        [[KEY, b"v", "60"]],
        [GOOD_PAIR, [KEY, b"v", -1]],
    ],
)
def test_bad_pairs_refused(pair_items: object) -> None:
    refused_with_id(store_many_fields(pair_items))


def test_missing_pairs_refused() -> None:
    fields = store_many_fields(None)
    del fields["pairs"]
    refused_with_id(fields)


def test_pairs_nested_too_deep_refused() -> None:
    # A pair's fields lie at depth 3; one level more is still tolerated by the
    # CBOR layer (a later optional field), two are not.
    refused_with_id(store_many_fields([[[KEY], b"v", 60]]))
    with pytest.raises(ProtocolError) as info:
        decode_frame(cbor2.dumps(store_many_fields([[[[KEY]], b"v", 60]])))
    assert info.value.request_id is None


@pytest.mark.parametrize(
    "result_items",
    [
        [],
        [0] * (MAX_BATCH_PAIRS + 1),
        0,
        None,
        {"0": 0},
        [-1],
        [len(ErrorCode) + 1],
        [99],
        [True],
        [False],
        [0.0],
        ["0"],
        [None],
        [[0]],
        [0, 2**64 - 1],
    ],
)
def test_bad_results_refused(result_items: object) -> None:
    refused_with_id(stored_many_fields(result_items))


def test_missing_results_refused() -> None:
    fields = stored_many_fields(None)
    del fields["results"]
    refused_with_id(fields)


def test_store_many_is_a_request_and_stored_many_a_reply() -> None:
    # The reply type carries no "pairs", the request type no "results".
    refused_with_id(store_many_fields([GOOD_PAIR]) | {"t": "stored_many"})
    refused_with_id(stored_many_fields([0]) | {"t": "store_many"})


def test_pairs_without_published_are_the_oldest() -> None:
    # An older peer sends [key, value, ttl]: published 0, the oldest.
    frame = decode_frame(cbor2.dumps(store_many_fields([GOOD_PAIR, [*GOOD_PAIR, 1234]])))
    assert isinstance(frame, RequestFrame)
    assert frame.body == StoreMany((Store(KEY, b"v", 60), Store(KEY, b"v", 60, published=1234)))


# --- watching a key (issue 18) ---------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        Listen(KEY),
        Push(Store(KEY, b"\x01")),
        Push(Store(KEY, b"\x01", ttl=5, published=123)),
    ],
)
def test_listen_and_push_round_trip(body: Listen | Push) -> None:
    frame = RequestFrame(7, SENDER, 4000, body)
    assert decode_frame(payload_of(frame)) == frame


@pytest.mark.parametrize(
    ("body", "name", "value"),
    [
        (Listen(KEY), "key", KEY[:31]),
        (Listen(KEY), "key", "k"),
        (Listen(KEY), "key", None),
        (Push(Store(KEY, b"\x01")), "key", KEY + b"x"),
        (Push(Store(KEY, b"\x01")), "value", b""),
        (Push(Store(KEY, b"\x01")), "cache", True),
        (Push(Store(KEY, b"\x01")), "published", -1),
    ],
)
def test_malformed_listen_or_push_is_refused_with_its_id(
    body: Listen | Push, name: str, value: object
) -> None:
    fields = fields_of(RequestFrame(7, SENDER, 4000, body))
    if value is None:
        del fields[name]
    else:
        fields[name] = value
    assert refused(cbor2.dumps(fields)).request_id == 7


def test_not_listening_is_an_error_code() -> None:
    frame = ReplyFrame(7, SENDER, ErrorReply(ErrorCode.NOT_LISTENING, "not listening"))
    assert decode_frame(payload_of(frame)) == frame
