"""The frequent frames read without cbor2 (``_decode_fast``).

The fast path must read exactly what the general path (``_decode``) reads:
checked against random frames, damaged ones, and with a ``ContactCache``.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutation import mutate
from wire import KEY, SENDER, boundary_frames, ids, ports, uints

from trio_kad._codec import ContactCache, decode_frame, encode_frame
from trio_kad._decode import decode_general
from trio_kad._decode_fast import decode_usual
from trio_kad._messages import (
    FindNode,
    FindValue,
    Frame,
    Ping,
    Pong,
    ReplyFrame,
    RequestFrame,
    Stored,
)

# Shared by the examples on purpose: contacts remembered from one example are
# hits in the next, and the small limit makes it empty itself now and then.
CONTACTS = ContactCache(limit=64)

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
    usual = decode_usual(payload)
    assert usual == decode_general(payload) == decode_general(payload, CONTACTS) == frame
    assert type(usual) is type(frame)


@settings(max_examples=500)
@given(usual_frames | boundary_frames, st.data())
def test_fast_path_accepts_only_what_the_general_path_reads_the_same(
    frame: Frame, data: st.DataObject
) -> None:
    mutated = mutate(encode_frame(frame)[4:], data, max_steps=3)
    usual = decode_usual(mutated)
    if usual is not None:
        assert decode_general(mutated) == usual
        assert decode_general(mutated, CONTACTS) == usual
        assert decode_frame(mutated, CONTACTS) == usual


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
    assert decode_usual(payload) is None
    assert decode_frame(payload) == decode_general(payload)


def test_longer_heads_than_needed_read_the_same_on_both_paths() -> None:
    # A port written with a four-byte head is valid CBOR, just not the shortest form.
    short = encode_frame(RequestFrame(1, SENDER, 7, Ping()))[4:]
    long = short[:-1] + b"\x1a\x00\x00\x00\x07"
    assert decode_usual(long) == decode_general(long) == decode_frame(short)
