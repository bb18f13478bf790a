"""A scripted TCP peer and a client-only transport, for the connection tests.

The peer is a plain Trio listener running a script per connection, so the
order and timing of replies are under the test's control.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import trio
import trio.testing
from framing import next_frame

from trio_kad._codec import FrameReader, encode_frame
from trio_kad._config import Config
from trio_kad._ids import Address
from trio_kad._messages import Pong, ReplyFrame, RequestFrame
from trio_kad._tcp import TcpTransport

SERVER_ID = b"\x01" * 32
CLIENT_ID = b"\x02" * 32
CONFIG = Config(idle_timeout=5.0, io_timeout=0.3)

Script = Callable[[trio.SocketStream, "Requests"], Awaitable[None]]


class Requests:
    """Reads request frames off a scripted peer's stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._reader = FrameReader(1 << 20)

    async def next(self) -> RequestFrame | None:
        frame = await next_frame(self._stream, self._reader)
        assert frame is None or isinstance(frame, RequestFrame)
        return frame


def pong(request: RequestFrame) -> bytes:
    return encode_frame(ReplyFrame(request.request_id, SERVER_ID, Pong()))


@asynccontextmanager
async def scripted_peer(script: Script) -> AsyncIterator[tuple[Address, list[int]]]:
    """A listener running ``script`` on each connection; yields its address and connections."""
    connections: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        connections.append(1)
        async with stream:
            await script(stream, Requests(stream))

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield ("127.0.0.1", port), connections
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client(config: Config = CONFIG) -> AsyncIterator[TcpTransport]:
    transport = TcpTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run, config, CLIENT_ID, "127.0.0.1", 0, None)
        yield transport
        nursery.cancel_scope.cancel()
