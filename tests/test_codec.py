"""The codec as a whole (``_codec``): round trips, and hostile input raising only ProtocolError.

Every property holds with and without a ``ContactCache``, and both ways agree.
"""

from __future__ import annotations

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
    replies,
    request_ids,
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
    MAX_TTL,
    ErrorCode,
    FindNode,
    Frame,
    Nodes,
    Ping,
    Pong,
    ReplyFrame,
    RequestFrame,
    Store,
    StoredMany,
    StoreMany,
)

pairs = st.builds(Store, ids, st.binary(min_size=1, max_size=64), st.integers(0, MAX_TTL))
results = st.sampled_from([0, *ErrorCode]) | st.integers(1, len(ErrorCode))

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
