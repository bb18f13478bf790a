"""Hostile peers over real TCP: every inbound bound of the TCP transport, from raw sockets.

Linux routes all of 127.0.0.0/8 to loopback, so an "attacker" binds its
sockets to 127.0.0.2 while the honest client uses 127.0.0.1: per-IP limits
must hit only the attacker. Real clock (no autojump with real I/O), small
Config values so each test is short, and ``fail_after`` so a hang fails.
Bounds already covered by test_transport.py (a huge length prefix, half a
frame on one connection, idle timeout, max_inbound_connections, requests per
connection) are not repeated here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cbor2
import trio
from framing import connect_from, next_frame

from trio_kad import open_dht
from trio_kad._codec import FrameReader, encode_frame
from trio_kad._config import Config
from trio_kad._ids import Address
from trio_kad._messages import (
    ErrorCode,
    ErrorReply,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    RequestFrame,
)
from trio_kad._tcp import TcpTransport

SERVER_ID = b"\x01" * 32
CLIENT_ID = b"\x02" * 32
ATTACKER = "127.0.0.2"
HONEST = "127.0.0.1"
# The per-IP limits are under test, so loopback gets no exemption here.
CONFIG = Config(idle_timeout=10.0, io_timeout=2.0, per_ip_exempt=())
OVER_RATE = ErrorReply(ErrorCode.OVERLOADED, "rate limited")


class Counting:
    """A handler that answers pings and counts the calls per remote IP."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def __call__(self, frame: RequestFrame, remote: Address) -> Reply:
        self.calls[remote[0]] = self.calls.get(remote[0], 0) + 1
        return Pong()


@asynccontextmanager
async def serving(
    config: Config, handler: Counting | None = None
) -> AsyncIterator[tuple[TcpTransport, Address]]:
    server = TcpTransport()
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            server.run, config, SERVER_ID, HONEST, 0, handler or Counting()
        )
        assert address is not None
        yield server, address
        nursery.cancel_scope.cancel()


def ping_bytes(request_id: int) -> bytes:
    return encode_frame(RequestFrame(request_id, CLIENT_ID, None, Ping()))


def payload_frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


class Peer:
    """A raw stream with a frame reader: send bytes, read reply frames."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = FrameReader(1 << 20)

    @classmethod
    async def open(cls, source: str, address: Address) -> Peer:
        return cls(await connect_from(source, address))

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> ReplyFrame | None:
        """The next reply frame, or None once the server closed the connection."""
        frame = await next_frame(self.stream, self.reader)
        assert frame is None or isinstance(frame, ReplyFrame)
        return frame

    async def ping(self, request_id: int) -> Reply | None:
        await self.send(ping_bytes(request_id))
        frame = await self.reply()
        if frame is None:
            return None
        assert frame.request_id == request_id
        return frame.body

    async def replies_until_closed(self) -> dict[int, Reply]:
        """Every reply until the server closes, by request id (replies may come in any order)."""
        replies: dict[int, Reply] = {}
        while (frame := await self.reply()) is not None:
            assert frame.request_id not in replies
            replies[frame.request_id] = frame.body
        return replies

    async def closed(self) -> bool:
        """True when the server closes the connection without sending anything more."""
        return await self.reply() is None

    async def aclose(self) -> None:
        await self.stream.aclose()


# --- connections per IP ---------------------------------------------------------


async def test_connections_per_ip_capped_at_accept_others_unaffected() -> None:
    config = CONFIG.replace(max_connections_per_ip=3)
    with trio.fail_after(5):
        async with serving(config) as (server, address):
            attackers = [await Peer.open(ATTACKER, address) for _ in range(3)]
            for index, peer in enumerate(attackers):
                assert await peer.ping(index) == Pong()
            extra = await Peer.open(ATTACKER, address)
            assert await extra.closed()
            await extra.aclose()
            assert server.statistics().connections_refused == 1
            # Other IPs are not counted against the attacker's share ...
            honest = [await Peer.open(HONEST, address) for _ in range(3)]
            for index, peer in enumerate(honest):
                assert await peer.ping(100 + index) == Pong()
            # ... and the attacker's first connections still work.
            for index, peer in enumerate(attackers):
                assert await peer.ping(10 + index) == Pong()
            # A slot freed is a slot the attacker may use again.
            await attackers.pop().aclose()
            with trio.fail_after(1):
                while server.statistics().connections_open > 5:
                    await trio.sleep(0.01)
            again = await Peer.open(ATTACKER, address)
            assert await again.ping(20) == Pong()
            for peer in [*attackers, *honest, again]:
                await peer.aclose()


async def test_full_server_evicts_from_the_heaviest_ip_not_the_newcomer() -> None:
    config = CONFIG.replace(max_inbound_connections=4, max_connections_per_ip=10)
    with trio.fail_after(5):
        async with serving(config) as (server, address):
            attackers = [await Peer.open(ATTACKER, address) for _ in range(4)]
            for index, peer in enumerate(attackers):
                assert await peer.ping(index) == Pong()
            # Touch all but the first, so the first is the least recently active.
            for index, peer in enumerate(attackers[1:]):
                assert await peer.ping(10 + index) == Pong()
            honest = await Peer.open(HONEST, address)
            assert await honest.ping(99) == Pong()
            assert await attackers[0].closed()
            for index, peer in enumerate(attackers[1:]):
                assert await peer.ping(20 + index) == Pong()
            stats = server.statistics()
            assert stats.connections_open == 4 and server.statistics().connections_refused == 1
            # Shares are now 3 and 1: the next attacker connection finds no one to evict.
            extra = await Peer.open(ATTACKER, address)
            assert await extra.closed()
            for peer in [*attackers, honest, extra]:
                await peer.aclose()


# --- request rate per IP ------------------------------------------------------------


async def test_flood_from_one_ip_gets_overloaded_others_served() -> None:
    config = CONFIG.replace(request_rate_per_ip=2.0, request_burst_per_ip=5)
    handler = Counting()
    with trio.fail_after(5):
        async with serving(config, handler) as (server, address):
            attacker = await Peer.open(ATTACKER, address)
            await attacker.send(b"".join(ping_bytes(i) for i in range(12)))
            bodies = {}
            for _ in range(12):
                frame = await attacker.reply()
                assert frame is not None
                bodies[frame.request_id] = frame.body
            assert sorted(bodies) == list(range(12))
            answered = [i for i, body in bodies.items() if body == Pong()]
            refused = [i for i, body in bodies.items() if body == OVER_RATE]
            # The burst is served (at 2/s the test may earn one more token), the rest refused.
            assert 5 <= len(answered) <= 6 and len(answered) + len(refused) == 12
            assert handler.calls[ATTACKER] == len(answered)
            assert server.statistics().requests_refused == len(refused)
            # The limit is per IP: a second attacker connection shares the empty bucket ...
            second = await Peer.open(ATTACKER, address)
            assert await second.ping(50) == OVER_RATE
            # ... while the honest IP has its own, full one.
            honest = await Peer.open(HONEST, address)
            for index in range(5):
                assert await honest.ping(100 + index) == Pong()
            # Over-rate refusals never reach the handler.
            assert handler.calls[ATTACKER] == len(answered)
            for peer in (attacker, second, honest):
                await peer.aclose()


async def test_exempt_hosts_skip_the_per_ip_limits() -> None:
    # Many nodes on one machine talk to each other from one IP: no per-IP cap for them.
    config = CONFIG.replace(
        max_connections_per_ip=2,
        request_rate_per_ip=2.0,
        request_burst_per_ip=3,
        per_ip_exempt=(f"{HONEST}/32",),
    )
    with trio.fail_after(5):
        async with serving(config) as (server, address):
            honest = [await Peer.open(HONEST, address) for _ in range(4)]
            for index in range(20):
                assert await honest[index % 4].ping(index) == Pong()
            attackers = [await Peer.open(ATTACKER, address) for _ in range(3)]
            assert await attackers[2].closed()
            replies = [await attackers[0].ping(100 + index) for index in range(5)]
            assert replies.count(OVER_RATE) >= 1
            assert server.statistics().connections_refused == 1
            for peer in [*honest, *attackers]:
                await peer.aclose()


async def test_rate_recovers_after_the_peer_slows_down() -> None:
    config = CONFIG.replace(request_rate_per_ip=20.0, request_burst_per_ip=2)
    with trio.fail_after(5):
        async with serving(config) as (_server, address):
            peer = await Peer.open(ATTACKER, address)
            assert [await peer.ping(i) for i in range(2)] == [Pong(), Pong()]
            assert await peer.ping(2) == OVER_RATE
            await trio.sleep(0.2)  # four tokens' worth at 20/s; the bucket holds two
            assert [await peer.ping(i) for i in range(3, 5)] == [Pong(), Pong()]
            await peer.aclose()


async def test_peer_ignoring_overloaded_is_disconnected() -> None:
    burst = 3
    config = CONFIG.replace(request_rate_per_ip=0.01, request_burst_per_ip=burst)
    with trio.fail_after(5):
        async with serving(config) as (server, address):
            attacker = await Peer.open(ATTACKER, address)
            sent = burst + 4 * burst + 10
            await attacker.send(b"".join(ping_bytes(i) for i in range(sent)))
            replies = await attacker.replies_until_closed()
            # The burst, then 4 x burst refusals in a row, then the door.
            assert replies == {
                i: Pong() if i < burst else OVER_RATE for i in range(burst + 4 * burst)
            }
            await attacker.aclose()
            honest = await Peer.open(HONEST, address)
            assert await honest.ping(1) == Pong()
            await honest.aclose()
            assert server.statistics().requests_refused == 4 * burst + 1


# --- stalled half-frames from many connections ------------------------------------


async def test_hundreds_of_stalled_half_frames_all_dropped_honest_served() -> None:
    io_timeout = 0.5
    stalled = 300
    config = CONFIG.replace(io_timeout=io_timeout, max_connections_per_ip=stalled)
    half = ping_bytes(1)[:10]
    closed_after: list[float] = []

    async def stall(address: Address, ready: trio.MemorySendChannel[None]) -> None:
        peer = await Peer.open(ATTACKER, address)
        await peer.send(half)
        sent = trio.current_time()
        await ready.send(None)
        assert await peer.closed()
        closed_after.append(trio.current_time() - sent)
        await peer.aclose()

    with trio.fail_after(15):
        async with serving(config) as (server, address):
            send, receive = trio.open_memory_channel[None](stalled)
            async with trio.open_nursery() as nursery:
                for _ in range(stalled):
                    nursery.start_soon(stall, address, send)
                honest = await Peer.open(HONEST, address)
                # Served while the stalled connections are held open.
                for index in range(20):
                    assert await honest.ping(index) == Pong()
                for _ in range(stalled):
                    await receive.receive()
                assert await honest.ping(99) == Pong()
            assert len(closed_after) == stalled
            # Each is dropped once its frame is io_timeout old, not before (some slack for
            # the time between our send and the server's read).
            assert min(closed_after) >= io_timeout * 0.8
            assert server.statistics().connections_open == 1
            assert await honest.ping(100) == Pong()
            await honest.aclose()


# --- frame sizes at the boundary ------------------------------------------------------


async def test_length_prefix_one_over_the_limit_refused_before_the_body() -> None:
    config = CONFIG.replace(max_frame_size=4096, max_value_size=1024)
    with trio.fail_after(5):
        async with serving(config) as (_server, address):
            peer = await Peer.open(ATTACKER, address)
            # Only the prefix is sent: the refusal cannot have waited for the body.
            await peer.send((4096 + 1).to_bytes(4, "big"))
            frame = await peer.reply()
            assert frame is not None and frame.request_id == 0
            assert frame.body == ErrorReply(ErrorCode.TOO_LARGE, "frame too large")
            assert await peer.closed()
            await peer.aclose()
            # Exactly at the limit is a frame like any other (here: not CBOR, so closed
            # without an answer, as the id cannot be known).
            peer = await Peer.open(ATTACKER, address)
            await peer.send((4096).to_bytes(4, "big") + b"\xff" * 4096)
            assert await peer.closed()
            await peer.aclose()
            honest = await Peer.open(HONEST, address)
            assert await honest.ping(1) == Pong()
            await honest.aclose()


# --- garbage after a valid frame ------------------------------------------------------


async def test_garbage_after_a_valid_frame() -> None:
    config = CONFIG.replace(max_frame_size=4096, max_value_size=1024)
    handler = Counting()
    with trio.fail_after(5):
        async with serving(config, handler) as (server, address):
            # Not CBOR, no id to answer: the ping is answered, then the connection closes.
            peer = await Peer.open(ATTACKER, address)
            await peer.send(ping_bytes(1) + payload_frame(b"\xff\xfe garbage"))
            assert await peer.replies_until_closed() == {1: Pong()}
            await peer.aclose()
            # Garbage where a length prefix belongs: a huge length, refused as too large.
            peer = await Peer.open(ATTACKER, address)
            await peer.send(ping_bytes(2) + b"\xff" * 16)
            # Id 0: the framing is lost, so the server cannot know which request it was.
            assert await peer.replies_until_closed() == {
                2: Pong(),
                0: ErrorReply(ErrorCode.TOO_LARGE, "frame too large"),
            }
            await peer.aclose()
            # A map with a usable id but nonsense fields: an error reply, the stream lives on.
            peer = await Peer.open(ATTACKER, address)
            bad = payload_frame(cbor2.dumps({"v": 1, "t": "ping", "id": 7, "from": 5}))
            await peer.send(ping_bytes(3) + bad + ping_bytes(8))
            replies = {}
            for _ in range(3):
                frame = await peer.reply()
                assert frame is not None
                replies[frame.request_id] = frame.body
            assert replies[3] == replies[8] == Pong()
            assert isinstance(replies[7], ErrorReply) and replies[7].code == ErrorCode.MALFORMED
            # An unknown message type with an id: UNSUPPORTED, and still open.
            unknown = {"v": 1, "t": "launch", "id": 9, "from": CLIENT_ID}
            await peer.send(payload_frame(cbor2.dumps(unknown)))
            frame = await peer.reply()
            assert frame is not None and frame.request_id == 9
            assert isinstance(frame.body, ErrorReply)
            assert frame.body.code == ErrorCode.UNSUPPORTED
            assert await peer.ping(10) == Pong()
            await peer.aclose()
            assert handler.calls[ATTACKER] == 5  # pings 1, 2, 3, 8 and 10
            assert server.statistics().protocol_errors == 4


# --- CBOR tags and deep nesting -------------------------------------------------------


def hostile_payloads() -> list[bytes]:
    """CBOR items that a careless decoder would act on: tags, cycles, deep nesting."""
    regex = cbor2.CBORTag(35, "(a+)+$")  # compiled by cbor2's default decoder
    # Tag 28 marks a shareable item, tag 29 refers back to it: a cycle.
    shared = bytes([0xD8, 28, 0x81, 0xD8, 29, 0x00])
    big = cbor2.CBORTag(2, b"\xff" * 512)  # a bignum
    return [
        cbor2.dumps(regex),
        cbor2.dumps({"v": 1, "t": "ping", "id": 3, "from": regex}),
        shared,
        bytes([0xA1, 0x61, 0x78]) + shared,  # {"x": <cycle>}
        cbor2.dumps({"v": 1, "t": "ping", "id": big, "from": CLIENT_ID}),
        b"\x81" * 3000 + b"\x00",  # [[[[...0...]]]] 3000 deep
        b"\xa1\x61a" * 1000 + b"\x00",  # {"a": {"a": ...}} 1000 deep
        cbor2.dumps({"v": 1, "t": "ping", "id": 5, "from": [[[[[[[[1]]]]]]]]}),
        b"\x9f" * 100 + b"\xff" * 100,  # indefinite-length arrays
    ]


async def test_tags_and_deep_nesting_get_error_or_close_and_server_keeps_serving() -> None:
    handler = Counting()
    with trio.fail_after(10):
        async with serving(CONFIG, handler) as (server, address):
            honest = await Peer.open(HONEST, address)
            for index, payload in enumerate(hostile_payloads()):
                peer = await Peer.open(ATTACKER, address)
                await peer.send(payload_frame(payload) + ping_bytes(1000 + index))
                # Every one is refused by the decoder as a whole, so no id can be read
                # and the connection closes without an answer, before the ping behind it.
                assert await peer.closed()
                await peer.aclose()
                assert await honest.ping(index) == Pong()
            await honest.aclose()
            assert set(handler.calls) == {HONEST}
            assert server.statistics().protocol_errors == len(hostile_payloads())


# --- a whole node -------------------------------------------------------------------------


async def test_real_node_keeps_its_data_and_serves_through_abuse() -> None:
    config = Config(
        io_timeout=0.5,
        idle_timeout=5.0,
        request_rate_per_ip=50.0,
        request_burst_per_ip=20,
        max_connections_per_ip=20,
        max_frame_size=8192,
        max_value_size=4096,
        per_ip_exempt=(),
    )
    with trio.fail_after(15):
        async with open_dht(config=config) as node:
            assert await node.set("key", {"some": "value"}) >= 1
            address = node.address
            attackers: list[Peer] = []
            for index in range(40):
                try:
                    peer = await Peer.open(ATTACKER, address)
                except OSError:
                    continue
                attackers.append(peer)
                kind = index % 4
                if kind == 0:
                    data = b"".join(ping_bytes(i) for i in range(200))
                elif kind == 1:
                    data = ping_bytes(1)[:7]
                elif kind == 2:
                    payloads = hostile_payloads()
                    data = payload_frame(payloads[index % len(payloads)])
                else:
                    data = b"\x7f\xff\xff\xff"
                # Past max_connections_per_ip the server has already closed the socket.
                with contextlib.suppress(trio.BrokenResourceError):
                    await peer.send(data)
            async with open_dht(bootstrap=[address], config=config, client_only=True) as client:
                for _ in range(10):
                    assert await client.get("key") == {"some": "value"}
            assert node.get_local("key") == {"some": "value"}
            for peer in attackers:
                await peer.aclose()
