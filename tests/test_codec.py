"""The codec as a whole (``_codec``): round trips, and hostile input raising only ProtocolError.

Every property holds with and without a ``ContactCache``, and both ways agree.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutation import mutate
from wire import (
    FIELD_NAMES,
    KEY,
    SENDER,
    TYPE_NAMES,
    cbor_items,
    fields_of,
    frames,
    hosts,
    ids,
    payload_of,
    ping_fields,
    ports,
    refused,
    replies,
    request_ids,
    requests,
    store_many_fields,
    stored_many_fields,
)

from trio_kad._codec import (
    MAX_CONTACTS,
    MAX_HOST_LENGTH,
    MAX_REQUEST_ID,
    ContactCache,
    decode_frame,
    encode_frame,
    encode_reply,
)
from trio_kad._errors import ProtocolError
from trio_kad._ids import Contact
from trio_kad._messages import (
    MAX_BATCH_PAIRS,
    MAX_SALT_BYTES,
    MAX_SEQ,
    MAX_TTL,
    ErrorCode,
    ErrorReply,
    FindNode,
    FoundValue,
    Frame,
    Nodes,
    Ping,
    Pong,
    ReplyFrame,
    RequestFrame,
    SignedPart,
    Store,
    StoredMany,
    StoreMany,
)

pairs = st.builds(Store, ids, st.binary(min_size=1, max_size=64), st.integers(0, MAX_TTL))
results = st.sampled_from([0, *ErrorCode]) | st.sampled_from([code.value for code in ErrorCode])

# Shared by the examples on purpose: contacts remembered from one example are
# hits in the next, and the small limit makes it empty itself now and then.
CONTACTS = ContactCache(limit=64)


def decodes_or_refuses(payload: bytes) -> None:
    """The fuzzing property: a valid frame that re-encodes to itself, or ProtocolError.

    The same with the shared ``ContactCache``: the same frame, or the same refusal.
    """
    try:
        frame = decode_frame(payload)
    except ProtocolError as error:
        with pytest.raises(ProtocolError) as cached:
            decode_frame(payload, CONTACTS)
        assert (type(cached.value), cached.value.request_id) == (type(error), error.request_id)
        return
    assert decode_frame(payload, CONTACTS) == frame
    assert decode_frame(payload_of(frame)) == frame
    assert decode_frame(encode_frame(frame, CONTACTS)[4:], CONTACTS) == frame


@settings(max_examples=200)
@given(frames)
def test_round_trip(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert int.from_bytes(encoded[:4], "big") == len(encoded) - 4
    assert decode_frame(encoded[4:]) == frame
    assert encode_frame(frame, CONTACTS) == encoded
    assert decode_frame(encoded[4:], CONTACTS) == frame


@given(request_ids, ids, replies)
def test_encode_reply_is_encode_frame_of_a_reply(request_id: int, sender: bytes, body: Any) -> None:
    frame = ReplyFrame(request_id, sender, body)
    assert encode_reply(request_id, sender, body) == encode_frame(frame)
    assert encode_reply(request_id, sender, body, CONTACTS) == encode_frame(frame, CONTACTS)


def test_client_only_request_has_no_port() -> None:
    frame = RequestFrame(3, SENDER, None, FindNode(KEY))
    assert "port" not in fields_of(frame)
    assert decode_frame(payload_of(frame)).sender_port is None  # type: ignore[union-attr]


def test_port_in_a_reply_is_ignored() -> None:
    fields = fields_of(ReplyFrame(3, SENDER, Pong())) | {"port": 0}
    assert decode_frame(cbor2.dumps(fields)) == ReplyFrame(3, SENDER, Pong())


def test_unknown_keys_are_ignored() -> None:
    fields = ping_fields(extra=[1, {"a": b"b"}], **{"x-future": "yes"})
    assert decode_frame(cbor2.dumps(fields)) == RequestFrame(7, SENDER, 4000, Ping())


def test_deepest_legitimate_frame_decodes() -> None:
    contact = Contact(KEY, "h" * MAX_HOST_LENGTH, 65535)
    frame = ReplyFrame(MAX_REQUEST_ID, SENDER, Nodes((contact,) * MAX_CONTACTS))
    assert decode_frame(payload_of(frame)) == frame


def test_max_request_id_accepted() -> None:
    frame = decode_frame(cbor2.dumps(ping_fields(id=MAX_REQUEST_ID)))
    assert frame.request_id == MAX_REQUEST_ID


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


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(payload: bytes) -> None:
    decodes_or_refuses(payload)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(cbor_items)
def test_arbitrary_cbor(item: object) -> None:
    decodes_or_refuses(cbor2.dumps(item))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(FIELD_NAMES),
        cbor_items
        | st.sampled_from(TYPE_NAMES)
        | ids
        | st.just(1)
        | st.lists(st.tuples(ids, hosts, ports).map(list), max_size=3)
        | st.lists(
            st.tuples(ids, st.binary(max_size=3), st.integers(-1, MAX_TTL + 1)).map(list),
            max_size=3,
        )
        | st.lists(st.integers(-1, len(ErrorCode) + 1), max_size=MAX_BATCH_PAIRS + 1),
    )
)
def test_arbitrary_frame_shaped_maps(fields: dict[str, object]) -> None:
    decodes_or_refuses(cbor2.dumps(fields))


@settings(max_examples=300)
@given(frames, st.sampled_from(FIELD_NAMES), cbor_items, st.booleans())
def test_mutated_fields(frame: Frame, name: str, item: object, delete: bool) -> None:
    fields = fields_of(frame)
    if delete:
        fields.pop(name, None)
    else:
        fields[name] = item
    decodes_or_refuses(cbor2.dumps(fields))


@settings(max_examples=300)
@given(frames, st.data())
def test_mutated_bytes(frame: Frame, data: st.DataObject) -> None:
    decodes_or_refuses(mutate(payload_of(frame), data))


# --- signed records (docs/protocol.md, "Signed records") --------------------

signed_parts = st.builds(
    SignedPart,
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=MAX_SALT_BYTES),
    st.integers(0, MAX_SEQ) | st.sampled_from([0, 23, 24, 2**32, MAX_SEQ]),
    st.binary(min_size=64, max_size=64),
)
signed_bodies = st.one_of(
    st.builds(
        replace,
        requests.filter(lambda body: isinstance(body, Store)),
        signed=signed_parts,
        cas=st.none() | st.integers(0, MAX_SEQ),
    ),
    st.builds(
        StoreMany,
        st.lists(
            st.builds(replace, pairs, signed=st.none() | signed_parts), min_size=1, max_size=4
        ).map(tuple),
    ),
)
signed_replies = st.one_of(
    st.builds(
        FoundValue, st.binary(max_size=64), st.none() | st.integers(0, MAX_TTL), signed_parts
    ),
    st.builds(
        ErrorReply,
        st.sampled_from(ErrorCode),
        st.text(max_size=20),
        st.none() | st.integers(0, MAX_SEQ),
    ),
)
signed_frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(RequestFrame, request_ids, ids, st.none() | ports, signed_bodies),
    st.builds(ReplyFrame, request_ids, ids, signed_replies),
)


def _signed_item(signed: SignedPart) -> list[object]:
    return [signed.public_key, signed.salt, signed.seq, signed.signature]


@settings(max_examples=200)
@given(signed_frames)
def test_signed_frames_round_trip_as_cbor2_writes_them(frame: Frame) -> None:
    payload = payload_of(frame)
    assert decode_frame(payload) == frame
    fields = cbor2.loads(payload)
    body = frame.body
    # The byte layout is cbor2's: the map, re-dumped in its own key order, is the same bytes.
    assert cbor2.dumps(fields) == payload
    if isinstance(body, Store):
        assert fields["signed"] == _signed_item(body.signed)  # type: ignore[arg-type]
        assert fields.get("cas") == body.cas
    elif isinstance(body, StoreMany):
        assert [pair[3:] for pair in fields["pairs"]] == [
            [] if p.signed is None else [_signed_item(p.signed)] for p in body.pairs
        ]
    elif isinstance(body, FoundValue):
        assert fields["signed"] == _signed_item(body.signed)  # type: ignore[arg-type]
    else:
        assert isinstance(body, ErrorReply) and fields.get("seq") == body.seq


GOOD_PART = [b"p" * 32, b"salt", 5, b"s" * 64]


@pytest.mark.parametrize(
    "item",
    [
        [b"p" * 31, b"", 0, b"s" * 64],
        [b"p" * 33, b"", 0, b"s" * 64],
        [b"p" * 32, b"x" * (MAX_SALT_BYTES + 1), 0, b"s" * 64],
        [b"p" * 32, "salt", 0, b"s" * 64],
        [b"p" * 32, b"", -1, b"s" * 64],
        [b"p" * 32, b"", MAX_SEQ + 1, b"s" * 64],
        [b"p" * 32, b"", True, b"s" * 64],
        [b"p" * 32, b"", 0, b"s" * 63],
        [b"p" * 32, b"", 0],
        [*GOOD_PART, b"more"],
        {"public_key": b"p" * 32},
        b"signed",
    ],
)
def test_bad_signed_parts_are_refused_everywhere(item: object) -> None:
    store = {"v": 1, "t": "store", "id": 7, "from": SENDER, "key": KEY, "value": b"\x01"}
    value = {"v": 1, "t": "value", "id": 7, "from": SENDER, "value": b"\x01"}
    pair = store_many_fields([[KEY, b"\x01", 5, item]])
    for fields in (store | {"signed": item}, value | {"signed": item}, pair):
        assert refused(cbor2.dumps(fields)).request_id == 7
    # And the good one passes in each place.
    for fields in (
        store | {"signed": GOOD_PART, "cas": 4},
        value | {"signed": GOOD_PART},
        store_many_fields([[KEY, b"\x01", 5, GOOD_PART]]),
    ):
        decode_frame(cbor2.dumps(fields))


@pytest.mark.parametrize("cas", [-1, MAX_SEQ + 1, "1", 1.0])
def test_bad_cas_and_error_seq_are_refused(cas: object) -> None:
    store = {"v": 1, "t": "store", "id": 7, "from": SENDER, "key": KEY, "value": b"\x01"}
    assert refused(cbor2.dumps(store | {"signed": GOOD_PART, "cas": cas})).request_id == 7
    error = {"v": 1, "t": "error", "id": 7, "from": SENDER, "code": 6, "message": "m", "seq": cas}
    assert refused(cbor2.dumps(error)).request_id == 7
    # cas without a signature means nothing: refused, never taken for a plain STORE.
    assert refused(cbor2.dumps(store | {"cas": 1})).request_id == 7


def test_encode_refuses_bad_signed_parts() -> None:
    bad = SignedPart(b"p" * 31, b"", 0, b"s" * 64)
    for body in (
        Store(KEY, b"\x01", signed=bad),
        Store(KEY, b"\x01", cas=1),
        StoreMany((Store(KEY, b"\x01", 1, signed=bad),)),
        StoreMany((Store(KEY, b"\x01", 1, signed=SignedPart(*GOOD_PART), cas=1),)),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError):
            encode_frame(RequestFrame(1, SENDER, None, body))
    with pytest.raises(ValueError):
        encode_frame(ReplyFrame(1, SENDER, ErrorReply(ErrorCode.STALE_SEQUENCE, "m", -1)))
