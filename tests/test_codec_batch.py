"""The store_many request and its stored_many reply: round trips and every refusal."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_kad._codec import UnsupportedFrameError, decode_frame, encode_frame
from trio_kad._errors import ProtocolError
from trio_kad._messages import (
    MAX_BATCH_PAIRS,
    MAX_TTL,
    ErrorCode,
    FindNode,
    Frame,
    ReplyFrame,
    RequestFrame,
    Store,
    StoredMany,
    StoreMany,
)

SENDER = bytes(range(32))
KEY = bytes(range(100, 132))

ids = st.binary(min_size=32, max_size=32)
pairs = st.builds(Store, ids, st.binary(min_size=1, max_size=64), st.integers(0, MAX_TTL))
results = st.sampled_from([0, *ErrorCode]) | st.integers(1, len(ErrorCode))


def payload_of(frame: Frame) -> bytes:
    return encode_frame(frame)[4:]


def store_many_fields(pair_items: object) -> dict[str, Any]:
    return {"v": 1, "t": "store_many", "id": 7, "from": SENDER, "port": 4000, "pairs": pair_items}


def stored_many_fields(result_items: object) -> dict[str, Any]:
    return {"v": 1, "t": "stored_many", "id": 7, "from": SENDER, "results": result_items}


def refused_with_id(fields: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(cbor2.dumps(fields))
    assert info.value.request_id == 7
    assert not isinstance(info.value, UnsupportedFrameError)


# --- round trips ----------------------------------------------------------------


@settings(max_examples=100)
@given(st.lists(pairs, min_size=1, max_size=MAX_BATCH_PAIRS), st.none() | st.integers(1, 65535))
def test_store_many_round_trip(items: list[Store], port: int | None) -> None:
    frame = RequestFrame(9, SENDER, port, StoreMany(tuple(items)))
    assert decode_frame(payload_of(frame)) == frame


@settings(max_examples=100)
@given(st.lists(results, min_size=1, max_size=MAX_BATCH_PAIRS))
def test_stored_many_round_trip(items: list[int]) -> None:
    frame = ReplyFrame(9, SENDER, StoredMany(tuple(items)))
    assert decode_frame(payload_of(frame)) == frame


def test_store_many_wire_shape() -> None:
    # docs/protocol.md: "pairs" is an array of [key, value, ttl].
    frame = RequestFrame(7, SENDER, 4000, StoreMany((Store(KEY, b"a", 0), Store(SENDER, b"bc", 9))))
    assert cbor2.loads(payload_of(frame)) == store_many_fields([[KEY, b"a", 0], [SENDER, b"bc", 9]])


def test_stored_many_wire_shape_and_codes() -> None:
    frame = ReplyFrame(7, SENDER, StoredMany((0, ErrorCode.TOO_LARGE, 4)))
    assert cbor2.loads(payload_of(frame)) == stored_many_fields([0, 3, 4])
    body = decode_frame(payload_of(frame)).body
    assert isinstance(body, StoredMany)
    # Refusals come back as ErrorCode members, stored pairs as 0.
    assert body.results == (0, ErrorCode.TOO_LARGE, ErrorCode.OVERLOADED)
    assert [type(result) for result in body.results] == [int, ErrorCode, ErrorCode]


def test_largest_batches_decode() -> None:
    big = Store(KEY, b"v" * 1000, MAX_TTL)
    request = RequestFrame(7, SENDER, 1, StoreMany((big,) * MAX_BATCH_PAIRS))
    assert decode_frame(payload_of(request)) == request
    reply = ReplyFrame(7, SENDER, StoredMany((ErrorCode.INTERNAL,) * MAX_BATCH_PAIRS))
    assert decode_frame(payload_of(reply)) == reply


def test_decoded_pairs_are_plain_stores() -> None:
    frame = RequestFrame(7, SENDER, 1, StoreMany((Store(KEY, b"v", 5),)))
    body = decode_frame(payload_of(frame)).body
    assert isinstance(body, StoreMany)
    assert body.pairs == (Store(KEY, b"v", 5, cache=False),)


# --- refusals when decoding ---------------------------------------------------------

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


# --- refusals when encoding ---------------------------------------------------------


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
