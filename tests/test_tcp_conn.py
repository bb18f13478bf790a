"""One TCP connection (_tcp_conn): parked with the watcher while no caller reads it.

While no caller waits on a connection, the transport's watcher reads it: it
notices at once when the peer closes, skips late replies, closes idle
connections, and costs no task.
"""

from __future__ import annotations

import trio
import trio.testing
from scripted import CLIENT_ID, CONFIG, SERVER_ID, Requests, client, pong, scripted_peer

from trio_kad._ids import Address
from trio_kad._messages import Ping, Pong
from trio_kad._tcp import TcpTransport


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


async def test_past_twice_the_outbound_limit_a_caller_waits_for_a_busy_connection() -> None:
    config = CONFIG.replace(max_outbound_connections=1)
    release = trio.Event()

    async def held(stream: trio.SocketStream, requests: Requests) -> None:
        while (request := await requests.next()) is not None:
            await release.wait()
            await stream.send_all(pong(request))

    answered = 0

    async def ask(transport: TcpTransport, address: Address) -> None:
        nonlocal answered
        reply = await transport.request(address, CLIENT_ID, None, Ping())
        answered += isinstance(reply.body, Pong)

    with trio.fail_after(5):
        async with (
            scripted_peer(held) as (a, _),
            scripted_peer(held) as (b, _),
            scripted_peer(held) as (c, _),
            client(config) as transport,
        ):
            async with trio.open_nursery() as nursery:
                for address in (a, b, c):
                    nursery.start_soon(ask, transport, address)
                await trio.sleep(0.2)
                # Both busy: one more than the limit was opened, the third caller waits.
                assert transport.statistics().connections_opened == 2
                release.set()
            assert answered == 3
