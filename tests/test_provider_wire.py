"""The provider-set messages on the wire: round trips, canonical bytes, hostile fields."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_kad._codec import decode_frame, encode_frame
from trio_kad._errors import ProtocolError
from trio_kad._ids import Contact
from trio_kad._messages import (
    MAX_PROVIDER_ENTRIES,
    AddProvider,
    GetProviders,
    ProviderEntry,
    Providers,
    ReplyFrame,
    RequestFrame,
    StoreProviders,
)

A, B, KEY = b"a" * 32, b"b" * 32, b"k" * 32

ids = st.binary(min_size=32, max_size=32)
ports = st.integers(1, 65535)
hosts = st.sampled_from(["127.0.0.1", "198.51.100.7", "2001:db8::1", "peer.example"])
uints = st.integers(0, 2**32 - 1)
entries = st.builds(ProviderEntry, ids, hosts, ports, uints, uints)
contacts = st.builds(Contact, ids, hosts, ports)
requests = st.one_of(
    st.builds(AddProvider, ids, ports),
    st.builds(GetProviders, ids),
    st.builds(StoreProviders, ids, st.lists(entries, min_size=1, max_size=5).map(tuple)),
)
replies = st.builds(
    Providers,
    st.lists(entries, max_size=5).map(tuple),
    st.lists(contacts, max_size=5).map(tuple),
)


def payload(frame: RequestFrame | ReplyFrame) -> bytes:
    return encode_frame(frame)[4:]


@given(st.integers(0, 2**64 - 1), ids, st.none() | ports, requests)
def test_requests_round_trip_in_canonical_cbor(
    request_id: int, sender: bytes, port: int | None, body: Any
) -> None:
    frame = RequestFrame(request_id, sender, port, body)
    data = payload(frame)
    assert decode_frame(data) == frame
    assert cbor2.dumps(cbor2.loads(data)) == data


@given(st.integers(0, 2**64 - 1), ids, replies)
def test_replies_round_trip_in_canonical_cbor(request_id: int, sender: bytes, body: Any) -> None:
    frame = ReplyFrame(request_id, sender, body)
    data = payload(frame)
    assert decode_frame(data) == frame
    assert cbor2.dumps(cbor2.loads(data)) == data


def frame_map(kind: str, **fields: Any) -> bytes:
    return cbor2.dumps({"v": 1, "t": kind, "id": 7, "from": A, "port": 4000, **fields})


@pytest.mark.parametrize(
    "data",
    [
        frame_map("add_provider", key=KEY, service_port=0),
        frame_map("add_provider", key=KEY, service_port=65536),
        frame_map("add_provider", key=KEY, service_port=True),
        frame_map("add_provider", key=KEY),
        frame_map("add_provider", key=b"short", service_port=80),
        frame_map("get_providers", key=KEY[:31]),
        frame_map("store_providers", key=KEY, entries=[]),
        frame_map("store_providers", key=KEY, entries=[[B, "1.2.3.4", 80, 0]]),
        frame_map("store_providers", key=KEY, entries=[[B, "1.2.3.4", 0, 0, 1]]),
        frame_map("store_providers", key=KEY, entries=[[B, "bad host\n", 80, 0, 1]]),
        frame_map("store_providers", key=KEY, entries=[[B, "1.2.3.4", 80, -1, 1]]),
        frame_map(
            "store_providers",
            key=KEY,
            entries=[[B, "1.2.3.4", 80, 0, 1]] * (MAX_PROVIDER_ENTRIES + 1),
        ),
        cbor2.dumps({"v": 1, "t": "providers", "id": 7, "from": A, "entries": [], "nodes": 3}),
        cbor2.dumps({"v": 1, "t": "providers", "id": 7, "from": A, "entries": {}, "nodes": []}),
        cbor2.dumps(
            {"v": 1, "t": "providers", "id": 7, "from": A, "entries": [], "nodes": [[B, "h", 0]]}
        ),
    ],
)
def test_malformed_provider_messages_raise_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(data)
    assert info.value.request_id == 7


def test_the_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(ValueError, match="port"):
        encode_frame(RequestFrame(1, A, None, AddProvider(KEY, 0)))
    with pytest.raises(ValueError, match="entries"):
        encode_frame(RequestFrame(1, A, 5, StoreProviders(KEY, ())))
    bad = ProviderEntry(B, "1.2.3.4", 80, -1, 0)
    with pytest.raises(ValueError, match="age"):
        encode_frame(ReplyFrame(1, A, Providers((bad,), ())))
