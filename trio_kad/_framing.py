"""Frames on a byte stream: a 4-byte big-endian length, then that many bytes.

Pure code in the sans-I/O style of h11: ``prefixed`` puts the length in front
of a payload, ``FrameReader`` splits a received byte stream back into
payloads and refuses an oversized one from its prefix alone, before its body
arrives. What the payload holds is ``_codec``'s business.
"""

from __future__ import annotations

import struct

from ._errors import ProtocolError

__all__ = ["LENGTH_PREFIX_SIZE", "FrameReader", "prefixed"]

LENGTH_PREFIX_SIZE = 4
"""Bytes of the big-endian length that precedes every CBOR map."""

_MAX_PREFIXED_LENGTH = 2**32 - 1
_pack_length_prefix = struct.Struct(">I").pack


def prefixed(payload: bytes) -> bytes:
    """``payload`` with its length prefix in front, ready to send.

    Raises ``ValueError`` if it is too long for a 4-byte length.
    """
    if len(payload) > _MAX_PREFIXED_LENGTH:
        raise ValueError("frame too large for a 4-byte length prefix")
    return _pack_length_prefix(len(payload)) + payload


class FrameReader:
    """Splits a byte stream into frame payloads, refusing oversized frames early.

    Sans-I/O: feed it whatever the socket returned, then call ``next_payload``
    until it returns ``None``.
    """

    __slots__ = ("_buffer", "_max_frame_size", "_start")

    def __init__(self, max_frame_size: int) -> None:
        if type(max_frame_size) is not int or max_frame_size < 1:
            raise ValueError("max_frame_size must be a positive int")
        self._max_frame_size = max_frame_size
        self._buffer = bytearray()
        # Payloads are sliced off by moving _start; the consumed head is dropped
        # on the next feed, so many small frames in one chunk cost O(n), not O(n^2).
        self._start = 0

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def next_payload(self) -> bytes | None:
        """One complete payload (without its prefix), or ``None`` if more bytes are needed.

        Raises ``ProtocolError`` as soon as a length prefix over ``max_frame_size``
        is seen, before its body arrives, so a peer cannot make us buffer it.
        The reader is then unusable: the stream has lost its framing.
        """
        start = self._start
        body_start = start + LENGTH_PREFIX_SIZE
        if len(self._buffer) < body_start:
            return None
        length = int.from_bytes(self._buffer[start:body_start], "big")
        if length > self._max_frame_size:
            raise ProtocolError(
                f"frame of {length} bytes exceeds the limit of {self._max_frame_size}"
            )
        end = body_start + length
        buffer = self._buffer
        if len(buffer) < end:
            return None
        payload = bytes(buffer[body_start:end])
        if end == len(buffer):
            # All consumed: an idle connection keeps no copy of its last read.
            self._buffer = bytearray()
            self._start = 0
        else:
            self._start = end
        return payload

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet returned as payloads (0: at a frame boundary).

        Once ``next_payload`` has returned ``None``, this is the size of the
        incomplete frame held, which a transport uses to know whether a frame
        has begun (and its read deadline applies).
        """
        return len(self._buffer) - self._start
