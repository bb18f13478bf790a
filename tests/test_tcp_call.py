"""One request on a shared connection (_tcp_call): callers take turns at reading it.

The callers waiting on a connection take turns at reading it and hand each
reply to its own caller, whatever the order; a scripted peer (``scripted``)
puts the order and timing of replies under the test's control.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from scripted import CLIENT_ID, CONFIG, Requests, client, pong, scripted_peer
from transports import KEY

from trio_kad._errors import TransportError
from trio_kad._ids import Address
from trio_kad._messages import Ping, ReplyFrame, Store
from trio_kad._tcp import TcpTransport


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


async def test_a_request_too_large_for_a_new_connection_leaves_it_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = CONFIG.replace(idle_timeout=10.0, max_frame_size=4096, max_value_size=2048)

    async def echo(stream: trio.SocketStream, requests: Requests) -> None:
        while (request := await requests.next()) is not None:
            await stream.send_all(pong(request))

    async with scripted_peer(echo) as (address, _), client(config) as transport:
        with pytest.raises(TransportError, match="max_frame_size"):
            await transport.request(address, CLIENT_ID, None, Store(KEY, b"x" * 8192))
        # The connection dialed for it is parked with the watcher, so it idles out.
        assert transport.statistics().connections_open == 1
        await trio.sleep(11.0)
        assert transport.statistics().connections_open == 0
