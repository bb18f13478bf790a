"""Frames, CBOR items and helpers shared by the codec's test files."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import strategies as st

from trio_kad._codec import (
    MAX_CONTACTS,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_HOST_LENGTH,
    MAX_REQUEST_ID,
    decode_frame,
    encode_frame,
)
from trio_kad._errors import ProtocolError
from trio_kad._ids import Contact
from trio_kad._messages import (
    MAX_PUBLISHED,
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


request_ids = st.integers(0, MAX_REQUEST_ID)


ports = st.integers(1, 65535)


hosts = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    min_size=1,
    max_size=MAX_HOST_LENGTH,
)


contacts = st.builds(Contact, ids, hosts, ports)


publications = st.integers(0, MAX_PUBLISHED) | st.sampled_from([0, 23, 24, 2**32, MAX_PUBLISHED])


batch_pairs = st.builds(
    Store, ids, st.binary(min_size=1, max_size=16), st.integers(0, MAX_TTL), published=publications
)


batch_results = st.sampled_from([0, *ErrorCode])


requests = st.one_of(
    st.just(Ping()),
    st.builds(
        Store,
        ids,
        st.binary(min_size=1, max_size=64),
        st.none() | st.integers(0, MAX_TTL),
        st.booleans(),
        published=publications,
    ),
    st.builds(FindNode, ids),
    st.builds(FindValue, ids),
    st.builds(StoreMany, st.lists(batch_pairs, min_size=1, max_size=4).map(tuple)),
)


replies = st.one_of(
    st.just(Pong()),
    st.just(Stored()),
    st.builds(Nodes, st.lists(contacts, max_size=8).map(tuple)),
    st.builds(
        FoundValue,
        st.binary(max_size=64),
        st.none() | st.integers(0, MAX_TTL),
        published=publications,
        cached=st.booleans(),
    ),
    st.builds(
        ErrorReply,
        st.sampled_from(ErrorCode),
        st.text(max_size=MAX_ERROR_MESSAGE_LENGTH),
        published=publications,
    ),
    st.builds(StoredMany, st.lists(batch_results, min_size=1, max_size=8).map(tuple)),
)


frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(RequestFrame, request_ids, ids, st.none() | ports, requests),
    st.builds(ReplyFrame, request_ids, ids, replies),
)


# Anything CBOR can say, including tags, floats, simple values and bignums.
cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.text(max_size=20),
)


cbor_items = st.recursive(
    cbor_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6) | st.binary(max_size=4), children, max_size=4),
        st.builds(cbor2.CBORTag, st.integers(0, 2**64 - 1), children),
    ),
    max_leaves=12,
)


FIELD_NAMES = [
    "v", "t", "id", "from", "port", "key", "value", "target", "nodes", "code", "message",
    "pairs", "results", "published", "cached",
]  # fmt: skip


TYPE_NAMES = [
    "ping", "store", "find_node", "find_value", "pong", "stored", "nodes", "value",
    "store_many", "stored_many",
]  # fmt: skip


# Sizes around every CBOR head boundary (23/24, 255/256, 65535/65536).
sizes = st.sampled_from([0, 1, 23, 24, 255, 256, 65535, 65536])


values = sizes.flatmap(lambda size: st.just(b"x" * size)) | st.binary(max_size=40)


uints = st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1])


ttls = st.none() | st.integers(0, MAX_TTL) | st.sampled_from([23, 24, 255, 256, MAX_TTL])


bodies = st.one_of(
    st.just(Ping()),
    st.builds(Store, ids, values.filter(bool), ttls, st.booleans(), published=publications),
    st.builds(FindNode, ids),
    st.builds(FindValue, ids),
    st.builds(
        StoreMany,
        st.lists(
            st.builds(
                Store, ids, values.filter(bool), st.integers(0, MAX_TTL), published=publications
            ),
            min_size=1,
        )
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
    st.builds(FoundValue, values, ttls, published=publications, cached=st.booleans()),
    st.builds(
        ErrorReply, st.sampled_from(ErrorCode), st.text(max_size=256), published=publications
    ),
    st.builds(
        StoredMany, st.lists(st.sampled_from([0, *ErrorCode]), min_size=1, max_size=64).map(tuple)
    ),
)


boundary_frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(RequestFrame, st.integers(0, 2**64 - 1) | uints, ids, st.none() | ports, bodies),
    st.builds(ReplyFrame, st.integers(0, 2**64 - 1) | uints, ids, reply_bodies),
)


def payload_of(frame: Frame) -> bytes:
    return encode_frame(frame)[4:]


def fields_of(frame: Frame) -> dict[str, Any]:
    fields = cbor2.loads(payload_of(frame))
    assert isinstance(fields, dict)
    return fields


def ping_fields(**extra: Any) -> dict[str, Any]:
    return {"v": 1, "t": "ping", "id": 7, "from": SENDER, "port": 4000, **extra}


def refused(payload: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_frame(payload)
    return info.value


def tag_bytes(tag: int) -> bytes:
    if tag < 24:
        return bytes([0xC0 | tag])
    for head, size in ((0xD8, 1), (0xD9, 2), (0xDA, 4), (0xDB, 8)):
        if tag < 1 << (8 * size):
            return bytes([head]) + tag.to_bytes(size, "big")
    raise AssertionError(tag)


def ping_with_extra(raw_value: bytes) -> bytes:
    """A valid ping whose ignored extra key "x" holds ``raw_value`` (raw CBOR)."""
    return with_one_more_entry(cbor2.dumps(ping_fields()), b"\x61x" + raw_value)


def with_one_more_entry(payload: bytes, raw_entry: bytes) -> bytes:
    """Append a raw key/value pair to an encoded map of fewer than 23 entries."""
    assert 0xA0 <= payload[0] < 0xB7
    return bytes([payload[0] + 1]) + payload[1:] + raw_entry


def store_many_fields(pair_items: object) -> dict[str, Any]:
    return {"v": 1, "t": "store_many", "id": 7, "from": SENDER, "port": 4000, "pairs": pair_items}


def stored_many_fields(result_items: object) -> dict[str, Any]:
    return {"v": 1, "t": "stored_many", "id": 7, "from": SENDER, "results": result_items}
