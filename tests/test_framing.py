"""The length prefix and ``FrameReader`` (``_framing``)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire import KEY, SENDER, frames

from trio_kad._codec import FrameReader, decode_frame, encode_frame
from trio_kad._errors import ProtocolError
from trio_kad._framing import LENGTH_PREFIX_SIZE, prefixed
from trio_kad._messages import FoundValue, Frame, ReplyFrame, RequestFrame, Store, Stored


def test_reader_byte_at_a_time() -> None:
    frames_in: list[Frame] = [
        RequestFrame(1, SENDER, 4000, Store(KEY, b"value" * 50)),
        ReplyFrame(1, SENDER, Stored()),
    ]
    stream = b"".join(encode_frame(frame) for frame in frames_in)
    reader = FrameReader(1024)
    out = []
    for index in range(len(stream)):
        reader.feed(stream[index : index + 1])
        payload = reader.next_payload()
        if payload is not None:
            out.append(decode_frame(payload))
            assert reader.buffered == 0
        else:
            assert reader.buffered > 0
        assert reader.next_payload() is None
    assert out == frames_in
    assert reader.buffered == 0


def test_reader_several_frames_in_one_feed() -> None:
    frames_in: list[Frame] = [ReplyFrame(n, SENDER, FoundValue(bytes([n]) * n)) for n in range(50)]
    stream = b"".join(encode_frame(frame) for frame in frames_in)
    reader = FrameReader(1024)
    reader.feed(stream + b"\x00\x00")  # and the start of a 51st frame
    out = []
    while (payload := reader.next_payload()) is not None:
        out.append(decode_frame(payload))
    assert out == frames_in
    assert reader.buffered == 2
    reader.feed(b"\x00\x01\xa0")
    assert reader.next_payload() == b"\xa0"
    assert reader.buffered == 0


def test_reader_empty_payload() -> None:
    reader = FrameReader(10)
    reader.feed(b"\x00\x00\x00\x00")
    assert reader.next_payload() == b""
    assert reader.buffered == 0


def test_reader_exact_limit_accepted() -> None:
    reader = FrameReader(5)
    reader.feed(b"\x00\x00\x00\x05" + b"x" * 5)
    assert reader.next_payload() == b"xxxxx"


def test_reader_oversize_prefix_raises_before_body() -> None:
    reader = FrameReader(1024)
    reader.feed(b"\x00\x00\x04")
    assert reader.next_payload() is None
    reader.feed(b"\x01")  # 1025: the prefix alone is enough to refuse
    with pytest.raises(ProtocolError) as info:
        reader.next_payload()
    assert info.value.request_id is None
    with pytest.raises(ProtocolError):  # the stream has no framing any more
        reader.next_payload()


def test_reader_huge_prefix() -> None:
    reader = FrameReader(1024 * 1024)
    reader.feed(b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError):
        reader.next_payload()


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_reader_rejects_bad_limit(size: Any) -> None:
    with pytest.raises(ValueError):
        FrameReader(size)


@settings(max_examples=100)
@given(st.lists(frames, max_size=5), st.data())
def test_reader_any_chunking(frames_in: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(frame) for frame in frames_in)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = FrameReader(1024 * 1024)
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        reader.feed(stream[start:end])
        while (payload := reader.next_payload()) is not None:
            out.append(decode_frame(payload))
    assert out == frames_in
    assert reader.buffered == 0


def test_prefix_is_the_big_endian_payload_length() -> None:
    assert prefixed(b"") == b"\x00\x00\x00\x00"
    assert prefixed(b"abc") == b"\x00\x00\x00\x03abc"
    assert len(prefixed(b"x")) == LENGTH_PREFIX_SIZE + 1
    reader = FrameReader(3)
    reader.feed(prefixed(b"abc"))
    assert reader.next_payload() == b"abc"
