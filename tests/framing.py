"""Reading whole frames off a raw Trio stream, for tests that play a peer by hand."""

from __future__ import annotations

import trio

from trio_kad._codec import FrameReader, decode_frame
from trio_kad._ids import Address
from trio_kad._messages import Frame


async def next_frame(stream: trio.SocketStream, reader: FrameReader) -> Frame | None:
    """The next frame on ``stream`` (bytes already read wait in ``reader``), or None at its end."""
    while True:
        payload = reader.next_payload()
        if payload is not None:
            return decode_frame(payload)
        try:
            data = await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if not data:
            return None
        reader.feed(data)


async def connect_from(source: str, address: Address) -> trio.SocketStream:
    """A raw TCP stream to ``address`` whose local end is bound to ``source``."""
    sock = trio.socket.socket()
    try:
        await sock.bind((source, 0))
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
