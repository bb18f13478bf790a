"""The codec's shortcuts change nothing observable.

The encoder writes CBOR by hand, the frequent frames are read without cbor2,
decoded contacts are remembered, and a contact keeps its own encoding: each
is checked here against the plain way of doing the same thing.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutation import mutate

from trio_kad import _codec
from trio_kad._codec import MAX_CONTACTS, decode_frame, encode_frame
from trio_kad._errors import ProtocolError
from trio_kad._ids import Contact
from trio_kad._messages import (
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
    ReplyFrame,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)

SENDER = bytes(range(32))
KEY = bytes(range(100, 132))

ids = st.binary(min_size=32, max_size=32)
ports = st.integers(1, 65535)
hosts = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=253)
# Sizes around every CBOR head boundary (23/24, 255/256, 65535/65536).
sizes = st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536])
values = sizes.flatmap(lambda size: st.just(b"x" * size)) | st.binary(max_size=40)
uints = st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])
ttls = st.none() | st.integers(0, MAX_TTL) | st.sampled_from([23, 24, 255, 256, MAX_TTL])
bodies = st.one_of(
    st.just(Ping()),
    st.builds(Store, ids, values.filter(bool), ttls, st.booleans()),
    st.builds(FindNode, ids),
    st.builds(FindValue, ids),
    st.builds(
        StoreMany,
        st.lists(st.builds(Store, ids, values.filter(bool), st.integers(0, MAX_TTL)), min_size=1)
        .map(tuple)
        .filter(lambda pairs: len(pairs) <= 64),
    ),
)
reply_bodies = st.one_of(
    st.just(Pong()),
    st.just(Stored()),
    st.builds(
        Nodes,
        st.lists(st.builds(Contact, ids, hosts, ports), max_size=30).map(tuple)
        | st.integers(0, MAX_CONTACTS).map(lambda n: (Contact(KEY, "h", 1),) * n),
    ),
    st.builds(FoundValue, values, ttls),
    st.builds(ErrorReply, st.sampled_from(ErrorCode), st.text(max_size=256)),
    st.builds(
        StoredMany, st.lists(st.sampled_from([0, *ErrorCode]), min_size=1, max_size=64).map(tuple)
    ),
)
frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(RequestFrame, st.integers(0, 2**64 - 1) | uints, ids, st.none() | ports, bodies),
    st.builds(ReplyFrame, st.integers(0, 2**64 - 1) | uints, ids, reply_bodies),
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
    elif isinstance(body, FindNode):
        fields |= {"t": "find_node", "target": body.target}
    elif isinstance(body, FindValue):
        fields |= {"t": "find_value", "key": body.key}
    elif isinstance(body, StoreMany):
        fields |= {"t": "store_many", "pairs": [[p.key, p.value, p.ttl] for p in body.pairs]}
    elif isinstance(body, Nodes):
        fields |= {"t": "nodes", "nodes": [[c.node_id, c.host, c.port] for c in body.contacts]}
    elif isinstance(body, FoundValue):
        fields |= {"t": "value", "value": body.value}
        if body.ttl is not None:
            fields["ttl"] = body.ttl
    elif isinstance(body, ErrorReply):
        fields |= {"t": "error", "code": int(body.code), "message": body.message}
    else:
        assert isinstance(body, StoredMany)
        fields |= {"t": "stored_many", "results": [int(result) for result in body.results]}
    return fields


# --- the hand-written encoder ---------------------------------------------------


@settings(max_examples=300)
@given(frames)
def test_encoding_is_what_cbor2_writes(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert encoded[4:] == cbor2.dumps(reference_map(frame))
    assert int.from_bytes(encoded[:4], "big") == len(encoded) - 4


def test_long_value_uses_a_four_byte_length() -> None:
    frame = ReplyFrame(2**64 - 1, SENDER, FoundValue(b"v" * 70_000, MAX_TTL))
    assert encode_frame(frame)[4:] == cbor2.dumps(reference_map(frame))
    assert decode_frame(encode_frame(frame)[4:]) == frame


# --- contacts remembered by their wire triple -------------------------------------


def nodes_payload(*items: object) -> bytes:
    return cbor2.dumps({"v": 1, "t": "nodes", "id": 7, "from": SENDER, "nodes": list(items)})


def decoded_contacts(payload: bytes) -> tuple[Contact, ...]:
    body = decode_frame(payload).body
    assert isinstance(body, Nodes)
    return body.contacts


def test_known_contact_is_reused() -> None:
    node_id = bytes(range(1, 33))
    first = decoded_contacts(nodes_payload([node_id, "10.0.0.1", 4000]))
    again = decoded_contacts(nodes_payload([node_id, "10.0.0.1", 4000]))
    assert first == again == (Contact(node_id, "10.0.0.1", 4000),)
    assert again[0] is first[0]


@pytest.mark.parametrize(
    "port",
    [True, 1.0, cbor2.CBORSimpleValue(1)],
    ids=["bool", "float", "simple value"],
)
def test_values_equal_to_a_known_port_are_still_refused(port: object) -> None:
    # True == 1.0 == simple(1) == 1, with equal hashes: a triple lookup alone
    # would take them for the known contact's port 1.
    node_id = bytes(range(2, 34))
    assert decoded_contacts(nodes_payload([node_id, "h", 1])) == (Contact(node_id, "h", 1),)
    with pytest.raises(ProtocolError):
        decode_frame(nodes_payload([node_id, "h", port]))


def test_near_misses_of_a_known_contact_are_validated() -> None:
    node_id = bytes(range(3, 35))
    decoded_contacts(nodes_payload([node_id, "h", 1]))
    for bad in (
        [node_id, b"h", 1],
        [node_id, "h", 1, 1],
        [node_id, "h"],
        (node_id, "h", [1]),
        [[node_id], "h", 1],
        {"0": node_id},
        [node_id[:31], "h", 1],
    ):
        with pytest.raises(ProtocolError):
            decode_frame(nodes_payload(bad))


def test_remembered_contacts_are_bounded() -> None:
    limit = _codec._MAX_DECODED_CONTACTS
    for start in range(0, limit + 300, MAX_CONTACTS):
        items = [
            [n.to_bytes(32, "big"), "h", 1]
            for n in range(start, min(start + MAX_CONTACTS, limit + 300))
        ]
        assert len(decoded_contacts(nodes_payload(*items))) == len(items)
        assert len(_codec._DECODED_CONTACTS) <= limit


# --- the frequent frames, read without cbor2 ----------------------------------------

usual_frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(
        RequestFrame,
        st.integers(0, 2**64 - 1) | uints,
        ids,
        st.none() | ports | st.sampled_from([1, 23, 24, 255, 256, 65535]),
        st.just(Ping()) | st.builds(FindNode, ids) | st.builds(FindValue, ids),
    ),
    st.builds(
        ReplyFrame,
        st.integers(0, 2**64 - 1) | uints,
        ids,
        st.just(Pong()) | st.just(Stored()),
    ),
)


@settings(max_examples=300)
@given(usual_frames)
def test_usual_frames_are_read_without_cbor2_and_equal_the_general_reading(frame: Frame) -> None:
    payload = encode_frame(frame)[4:]
    usual = _codec._decode_usual(payload)
    assert usual == _codec._decode_general(payload) == frame
    assert type(usual) is type(frame)


@settings(max_examples=500)
@given(usual_frames | frames, st.data())
def test_fast_path_accepts_only_what_the_general_path_reads_the_same(
    frame: Frame, data: st.DataObject
) -> None:
    mutated = mutate(encode_frame(frame)[4:], data, max_steps=3)
    usual = _codec._decode_usual(mutated)
    if usual is not None:
        assert _codec._decode_general(mutated) == usual


@pytest.mark.parametrize(
    "fields",
    [
        # Valid frames in another layout: read by the general path only.
        {"t": "ping", "v": 1, "id": 1, "from": SENDER},
        {"v": 1, "t": "ping", "id": 1, "from": SENDER, "extra": 0},
        {"v": 1, "t": "find_node", "id": 1, "from": SENDER, "target": KEY, "port": 7},
        {"v": 1, "t": "nodes", "id": 1, "from": SENDER, "nodes": [[KEY, "h", 1]], "x": 1},
    ],
)
def test_other_layouts_take_the_general_path(fields: dict[str, Any]) -> None:
    payload = cbor2.dumps(fields)
    assert _codec._decode_usual(payload) is None
    assert decode_frame(payload) == _codec._decode_general(payload)


def test_longer_heads_than_needed_read_the_same_on_both_paths() -> None:
    # A port written with a four-byte head is valid CBOR, just not the shortest form.
    short = encode_frame(RequestFrame(1, SENDER, 7, Ping()))[4:]
    long = short[:-1] + b"\x1a\x00\x00\x00\x07"
    assert _codec._decode_usual(long) == _codec._decode_general(long) == decode_frame(short)


# --- a contact keeps its own encoding ---------------------------------------------


def test_invalid_contact_is_refused_every_time() -> None:
    bad = Contact(KEY, "a b", 1)
    for _ in range(2):
        with pytest.raises(ValueError):
            encode_frame(ReplyFrame(1, SENDER, Nodes((bad,))))


def test_encoding_a_contact_changes_nothing_visible() -> None:
    sent = Contact(KEY, "127.0.0.1", 4000)
    fresh = Contact(KEY, "127.0.0.1", 4000)
    before = (hash(sent), repr(sent), sent.address)
    frame = ReplyFrame(1, SENDER, Nodes((sent, sent)))
    assert encode_frame(frame) == encode_frame(frame)
    assert (hash(sent), repr(sent), sent.address) == before
    assert sent == fresh and fresh == sent
    assert hash(sent) == hash(fresh)
    assert decode_frame(encode_frame(frame)[4:]) == ReplyFrame(1, SENDER, Nodes((fresh, fresh)))


def test_not_a_contact_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_frame(ReplyFrame(1, SENDER, Nodes(((KEY, "h", 1),))))  # type: ignore[arg-type]


# --- Contact and the frames keep their dataclass behaviour -------------------------


def test_contact_is_an_immutable_value() -> None:
    contact = Contact(KEY, "h", 1)
    assert [field.name for field in dataclasses.fields(Contact)] == ["node_id", "host", "port"]
    assert contact == Contact(node_id=KEY, host="h", port=1)
    assert contact != Contact(KEY, "h", 2)
    same_fields: object = (KEY, "h", 1)
    assert contact != same_fields
    assert hash(contact) == hash((KEY, "h", 1))
    assert contact.address == ("h", 1)
    assert repr(contact) == f"Contact({KEY.hex()[:12]}…@h:1)"
    for name in ("node_id", "host", "port", "_encoded", "other"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(contact, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del contact.port
    assert dataclasses.replace(contact, port=2) == Contact(KEY, "h", 2)


def test_contact_copies_and_pickles() -> None:
    contact = Contact(KEY, "h", 1)
    encode_frame(ReplyFrame(1, SENDER, Nodes((contact,))))
    for clone in (copy.copy(contact), copy.deepcopy(contact), pickle.loads(pickle.dumps(contact))):
        assert clone == contact
        assert type(clone) is Contact


@pytest.mark.parametrize(
    "frame",
    [
        RequestFrame(request_id=1, sender_id=SENDER, sender_port=None, body=Ping()),
        ReplyFrame(request_id=1, sender_id=SENDER, body=Pong()),
    ],
)
def test_frames_are_immutable_values(frame: Frame) -> None:
    assert frame == copy.copy(frame) == pickle.loads(pickle.dumps(frame))
    assert hash(frame) == hash(copy.deepcopy(frame))
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.request_id = 2  # type: ignore[misc]
    assert dataclasses.replace(frame, request_id=2).request_id == 2
