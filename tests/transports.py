"""Shared helpers for the transport tests: a handler, a running transport, raw frames."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cbor2
import trio
import trio.testing
from framing import next_frame

from trio_kad._codec import FrameReader, encode_frame
from trio_kad._config import Config
from trio_kad._ids import Address, Contact
from trio_kad._messages import (
    FindNode,
    FindValue,
    FoundValue,
    Nodes,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    RequestFrame,
    Store,
    Stored,
)
from trio_kad._transport import RequestHandler, Transport

SERVER_ID = b"\x01" * 32
CLIENT_ID = b"\x02" * 32
KEY = b"\x03" * 32
CONFIG = Config(idle_timeout=5.0, io_timeout=2.0)


async def echo_handler(frame: RequestFrame, remote: Address) -> Reply:
    body = frame.body
    if isinstance(body, Ping):
        return Pong()
    if isinstance(body, Store):
        return Stored()
    if isinstance(body, FindNode):
        return Nodes((Contact(body.target, remote[0], 4000),))
    assert isinstance(body, FindValue)
    return FoundValue(body.key + b"!")


@asynccontextmanager
async def running(
    transport: Transport,
    config: Config = CONFIG,
    handler: RequestHandler | None = echo_handler,
    port: int = 0,
) -> AsyncIterator[Address | None]:
    async with trio.open_nursery() as nursery:
        local_id = SERVER_ID if handler is not None else CLIENT_ID
        address = await nursery.start(transport.run, config, local_id, "127.0.0.1", port, handler)
        yield address
        nursery.cancel_scope.cancel()


async def read_frame(stream: trio.SocketStream, reader: FrameReader) -> ReplyFrame | None:
    """The next reply on a raw stream, or None at end of stream."""
    frame = await next_frame(stream, reader)
    assert frame is None or isinstance(frame, ReplyFrame)
    return frame


async def wait_closed(stream: trio.SocketStream) -> None:
    """Read until the peer closes ``stream`` (EOF or reset)."""
    while True:
        try:
            if not await stream.receive_some(65536):
                return
        except trio.BrokenResourceError:
            return


def raw_frame(fields: dict[str, object]) -> bytes:
    payload = cbor2.dumps(fields)
    return len(payload).to_bytes(4, "big") + payload


def store_bytes(request_id: int) -> bytes:
    return encode_frame(RequestFrame(request_id, CLIENT_ID, 4000, Store(KEY, b"\x01")))


def ping_bytes(request_id: int) -> bytes:
    return encode_frame(RequestFrame(request_id, CLIENT_ID, None, Ping()))
