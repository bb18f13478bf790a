"""One TCP connection (_tcp_conn): callers waiting on a shared connection, against scripted peers.

A connection has no task: the callers waiting on it take turns at reading it
and hand each reply to its own caller, whatever the order; while none waits,
the transport's watcher reads it and notices at once when the peer closes.
These tests drive a scripted peer (a plain Trio listener) so the order and
timing of replies are under the test's control.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
from framing import next_frame

from trio_kad._codec import FrameReader, encode_frame
from trio_kad._config import Config
from trio_kad._errors import TransportError
from trio_kad._ids import Address
from trio_kad._messages import Ping, Pong, ReplyFrame, RequestFrame
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


async def test_replies_in_any_order_reach_their_own_callers() -> None:
    async def reverse(stream: trio.SocketStream, requests: Requests) -> None:
        batch = [await requests.next() for _ in range(3)]
        for request in reversed(batch):
            assert request is not None
            await stream.send_all(pong(request))
        await trio.sleep_forever()

    answered: dict[int, int] = {}

    async def ask(transport: TcpTransport, address: Address, index: int) -> None:
        reply = await transport.request(address, CLIENT_ID, None, Ping())
        answered[index] = reply.request_id

    with trio.fail_after(5):
        async with scripted_peer(reverse) as (address, connections), client() as transport:
            async with trio.open_nursery() as nursery:
                for index in range(3):
                    nursery.start_soon(ask, transport, address, index)
    assert sorted(answered) == [0, 1, 2]
    assert len(set(answered.values())) == 3
    assert len(connections) == 1


async def test_a_reading_caller_that_gives_up_hands_the_turn_to_another() -> None:
    # The first caller reads for both; it is cancelled before any reply comes.
    # The second must then read its own reply, not wait forever.
    first_gone = trio.Event()

    async def answer_second_later(stream: trio.SocketStream, requests: Requests) -> None:
        await requests.next()
        second = await requests.next()
        assert second is not None
        await first_gone.wait()
        await stream.send_all(pong(second))
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with scripted_peer(answer_second_later) as (address, _), client() as transport:
            replies: list[ReplyFrame] = []

            async def second() -> None:
                replies.append(await transport.request(address, CLIENT_ID, None, Ping()))

            async with trio.open_nursery() as nursery:
                with trio.move_on_after(0.1):
                    await transport.request(address, CLIENT_ID, None, Ping())
                    pytest.fail("the first request was never answered")
                nursery.start_soon(second)
                await trio.testing.wait_all_tasks_blocked()
                first_gone.set()
    assert len(replies) == 1


async def test_the_reading_turn_passes_while_later_callers_sleep() -> None:
    # Three callers; the peer answers them one at a time, first to last, each
    # only after the previous caller has its reply: every hand-over is exercised.
    async def one_by_one(stream: trio.SocketStream, requests: Requests) -> None:
        batch = [await requests.next() for _ in range(3)]
        for request in batch:
            assert request is not None
            await stream.send_all(pong(request))
            await trio.sleep(0.02)
        await trio.sleep_forever()

    done: list[int] = []

    async def ask(transport: TcpTransport, address: Address, index: int) -> None:
        await transport.request(address, CLIENT_ID, None, Ping())
        done.append(index)

    with trio.fail_after(5):
        async with scripted_peer(one_by_one) as (address, _), client() as transport:
            async with trio.open_nursery() as nursery:
                for index in range(3):
                    nursery.start_soon(ask, transport, address, index)
                    await trio.testing.wait_all_tasks_blocked()
    assert done == [0, 1, 2]


async def test_a_late_reply_waiting_on_an_idle_connection_is_skipped() -> None:
    async def late_then_prompt(stream: trio.SocketStream, requests: Requests) -> None:
        first = await requests.next()
        assert first is not None
        await trio.sleep(0.2)  # after the caller gave up
        await stream.send_all(pong(first))
        while (request := await requests.next()) is not None:
            await stream.send_all(pong(request))

    with trio.fail_after(5):
        async with scripted_peer(late_then_prompt) as (address, connections), client() as transport:
            with trio.move_on_after(0.1):
                await transport.request(address, CLIENT_ID, None, Ping())
            await trio.sleep(0.3)  # the late reply now sits unread in the socket
            reply = await transport.request(address, CLIENT_ID, None, Ping())
            assert isinstance(reply.body, Pong)
            assert len(connections) == 1
            assert transport.statistics().connections_open == 1


async def test_a_pooled_connection_the_peer_closed_is_replaced_before_use() -> None:
    async def answer_once(stream: trio.SocketStream, requests: Requests) -> None:
        request = await requests.next()
        assert request is not None
        await stream.send_all(pong(request))

    with trio.fail_after(5):
        async with scripted_peer(answer_once) as (address, connections), client() as transport:
            for _ in range(3):
                reply = await transport.request(address, CLIENT_ID, None, Ping())
                assert isinstance(reply.body, Pong)
                await trio.sleep(0.05)  # the peer closes meanwhile
            assert len(connections) == 3
            stats = transport.statistics()
            assert stats.connections_opened == 3
            # Every connection has its reader: the peer's close is seen at once.
            assert stats.connections_open == 0


async def test_half_a_reply_then_silence_fails_the_caller_after_io_timeout() -> None:
    async def half(stream: trio.SocketStream, requests: Requests) -> None:
        request = await requests.next()
        assert request is not None
        data = pong(request)
        await stream.send_all(data[: len(data) // 2])
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with scripted_peer(half) as (address, _), client() as transport:
            start = trio.current_time()
            with pytest.raises(TransportError, match="stalled"):
                await transport.request(address, CLIENT_ID, None, Ping())
            assert trio.current_time() - start >= CONFIG.io_timeout * 0.9
            assert transport.statistics().connections_open == 0
            assert transport.statistics().protocol_errors == 1


async def test_a_peer_closing_mid_request_fails_every_caller_waiting() -> None:
    async def close_after_two(stream: trio.SocketStream, requests: Requests) -> None:
        await requests.next()
        await requests.next()

    failures: list[str] = []

    async def ask(transport: TcpTransport, address: Address) -> None:
        try:
            await transport.request(address, CLIENT_ID, None, Ping())
        except TransportError as exc:
            failures.append(str(exc))

    with trio.fail_after(5):
        async with scripted_peer(close_after_two) as (address, _), client() as transport:
            async with trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(ask, transport, address)
            assert transport.statistics().connections_open == 0
    assert len(failures) == 2


async def test_idle_outbound_connections_are_closed_without_a_task_each(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = CONFIG.replace(idle_timeout=10.0)

    async def echo(stream: trio.SocketStream, requests: Requests) -> None:
        while (request := await requests.next()) is not None:
            await stream.send_all(pong(request))

    async with scripted_peer(echo) as (address, _), client(config) as transport:
        await transport.request(address, CLIENT_ID, None, Ping())
        assert transport.statistics().connections_open == 1
        await trio.sleep(9.0)
        assert transport.statistics().connections_open == 1
        await trio.sleep(1.5)
        assert transport.statistics().connections_open == 0


def _tasks_below(task: trio.lowlevel.Task) -> int:
    return sum(
        1 + _tasks_below(child) for nursery in task.child_nurseries for child in nursery.child_tasks
    )


async def test_idle_connections_cost_no_task_at_either_end() -> None:
    server = TcpTransport()
    clients = [TcpTransport() for _ in range(20)]

    async def start(
        nursery: trio.Nursery, transport: TcpTransport, node_id: bytes, serving: bool
    ) -> Address | None:
        handler = (lambda frame, remote: _pong()) if serving else None
        address: Address | None = await nursery.start(
            transport.run, CONFIG, node_id, "127.0.0.1", 0, handler
        )
        return address

    root = trio.lowlevel.current_root_task()
    assert root is not None
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = await start(nursery, server, SERVER_ID, True)
            assert address is not None
            for client in clients:
                await start(nursery, client, CLIENT_ID, False)
            await trio.testing.wait_all_tasks_blocked()
            before = _tasks_below(root)
            for client in clients:
                reply = await client.request(address, CLIENT_ID, None, Ping())
                assert isinstance(reply.body, Pong)
            await trio.testing.wait_all_tasks_blocked()
            # Twenty connections open at both ends, parked with the watchers: no task more.
            assert server.statistics().connections_open == 20
            assert sum(c.statistics().connections_open for c in clients) == 20
            assert _tasks_below(root) == before
            nursery.cancel_scope.cancel()


async def _pong() -> Pong:
    return Pong()
