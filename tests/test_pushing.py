"""The holder's side of watching a key over real TCP: pushes, limits and hostile listeners.

Real clock (no autojump with real I/O), small ``Config`` values so each test
is short, ``fail_after`` so a hang fails. An "attacker" binds to 127.0.0.2,
which Linux routes to loopback, so per-IP limits hit it alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from framing import connect_from, next_frame
from transports import raw_frame
from wire import fields_of

from trio_kad import Config, open_dht
from trio_kad._codec import FrameReader, encode_frame
from trio_kad._ids import Address, key_id
from trio_kad._messages import (
    ErrorCode,
    ErrorReply,
    Listen,
    Nodes,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    RequestFrame,
)
from trio_kad.testing import node_of, open_simulation

CONFIG = Config(k=4, watch_push_timeout=0.5, per_ip_exempt=())
ATTACKER = "127.0.0.2"


class RawPeer:
    """A hand-driven peer on a raw socket: sends frames, reads what comes back."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = FrameReader(1 << 20)

    async def request(self, frame: RequestFrame) -> Reply:
        await self.stream.send_all(encode_frame(frame))
        while True:
            got = await next_frame(self.stream, self.reader)
            assert got is not None
            if isinstance(got, ReplyFrame) and got.request_id == frame.request_id:
                return got.body


@asynccontextmanager
async def raw_peer(source: str, address: Address) -> AsyncIterator[RawPeer]:
    """A raw connection from ``source`` to ``address``, closed on leaving."""
    async with await connect_from(source, address) as stream:
        yield RawPeer(stream)


def listen_frame(request_id: int, sender: bytes, key: bytes, port: int | None) -> RequestFrame:
    return RequestFrame(request_id, sender, port, Listen(key), duplex=request_id == 1)


async def test_a_push_crosses_tcp_to_a_listening_and_a_client_only_watcher() -> None:
    with trio.fail_after(20):
        async with open_simulation(6, tcp=True, config=CONFIG) as sim:
            writer = sim.nodes[0]
            bootstrap = [sim.nodes[1].address]
            async with open_dht(bootstrap=bootstrap, config=CONFIG, client_only=True) as client:
                async with sim.nodes[-1].watch("k") as full, client.watch("k") as light:
                    await trio.sleep(0.5)  # both LISTENs answered
                    assert not full.polling and not light.polling
                    await writer.set("k", "v")
                    assert await full.__anext__() == "v"
                    assert await light.__anext__() == "v"


async def test_a_malformed_listen_is_answered_and_the_connection_still_serves() -> None:
    fields = fields_of(listen_frame(2, b"\x07" * 32, bytes(32), 4000))
    fields["key"] = bytes(31)
    with trio.fail_after(10):
        async with open_dht(config=CONFIG) as dht, raw_peer(ATTACKER, dht.address) as peer:
            await peer.stream.send_all(raw_frame(fields))
            got = await next_frame(peer.stream, peer.reader)
            assert isinstance(got, ReplyFrame) and got.request_id == 2
            assert isinstance(got.body, ErrorReply) and got.body.code is ErrorCode.MALFORMED
            assert await peer.request(RequestFrame(3, b"\x07" * 32, 4000, Ping())) == Pong()
            assert len(node_of(dht).pusher.listeners) == 0


async def test_a_listen_flood_from_one_address_is_bounded_others_are_served() -> None:
    config = CONFIG.replace(max_listeners_per_ip=8)
    key = key_id("k")
    with trio.fail_after(10):
        async with open_dht(config=config) as dht, raw_peer(ATTACKER, dht.address) as peer:
            replies = [
                await peer.request(listen_frame(n, bytes([n]) * 32, key, 4000))
                for n in range(1, 41)
            ]
            refused = [r for r in replies if isinstance(r, ErrorReply)]
            assert sum(isinstance(r, Nodes) for r in replies) == 8
            assert len(refused) == 32 and all(r.code is ErrorCode.OVERLOADED for r in refused)
            async with raw_peer("127.0.0.1", dht.address) as honest:
                reply = await honest.request(listen_frame(1, b"\xee" * 32, key, 4001))
                assert isinstance(reply, Nodes)
            assert len(node_of(dht).pusher.listeners) == 9


async def test_a_listener_that_never_reads_is_dropped_and_holds_nobody_up() -> None:
    config = CONFIG.replace(max_value_size=60_000)
    key = key_id("k")
    never = b"\x05" * 32
    with trio.fail_after(20):
        async with open_dht(config=config) as dht, raw_peer(ATTACKER, dht.address) as sink:
            listeners = node_of(dht).pusher.listeners
            # A client-only listener: it LISTENs over its own connection, then never reads.
            assert isinstance(await sink.request(listen_frame(1, never, key, None)), Nodes)
            for n in range(30):  # far more than the socket buffers hold
                with trio.fail_after(1):
                    await dht.set("k", "x" * 50_000 + str(n))
            await trio.sleep(config.watch_push_timeout + 0.5)
            assert listeners.stats.listeners_dropped == 1
            assert listeners.listening(key, trio.current_time()) == []
            async with raw_peer("127.0.0.1", dht.address) as honest:
                assert await honest.request(RequestFrame(1, b"\xee" * 32, 4001, Ping())) == Pong()
