"""The in-memory network and transport, in virtual time."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing
from transports import (
    CLIENT_ID,
    CONFIG,
    KEY,
    SERVER_ID,
    running,
)

from trio_kad._errors import TransportError
from trio_kad._ids import Address, Contact
from trio_kad._memory import MemoryNetwork, MemoryTransport
from trio_kad._messages import (
    ErrorCode,
    ErrorReply,
    FindNode,
    Nodes,
    Ping,
    Pong,
    Reply,
    RequestFrame,
    Store,
    Stored,
)

# --- memory network (virtual time) ----------------------------------------------


async def test_memory_round_trip(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(1))
    server = network.transport()
    client = network.transport()
    async with running(server, port=0) as address, running(client, handler=None) as none:
        assert address == ("127.0.0.1", 10000)
        assert none is None
        assert network.addresses() == [address]
        reply = await client.request(address, CLIENT_ID, 5, FindNode(KEY))
        assert reply.sender_id == SERVER_ID
        # remote is the sender's host with port 0 (no socket to read it from).
        assert reply.body == Nodes((Contact(KEY, "127.0.0.1", 4000),))
        reply = await client.request(address, CLIENT_ID, 5, Store(KEY, b"v"))
        assert reply.body == Stored()
    assert network.addresses() == []
    total = network.statistics()
    assert total.requests_sent == 2 and total.requests_received == 2
    assert total.frames_sent == 4 and total.frames_received == 4
    assert total.bytes_sent == total.bytes_received > 0


async def test_memory_ports_count_up_and_collide(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with (
        running(network.transport()) as first,
        running(network.transport()) as second,
    ):
        assert first == ("127.0.0.1", 10000) and second == ("127.0.0.1", 10001)
        with pytest.RaisesGroup(OSError):
            async with running(network.transport(), port=10000):
                pass  # pragma: no cover


async def test_memory_refuse_and_unknown(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    client = network.transport()
    async with running(network.transport()) as address, running(client, handler=None):
        assert address is not None
        network.set_mode(address, "refuse")
        start = trio.current_time()
        with pytest.raises(TransportError):
            await client.request(address, CLIENT_ID, None, Ping())
        with pytest.raises(TransportError):
            await client.request(("127.0.0.1", 1), CLIENT_ID, None, Ping())
        assert trio.current_time() == start
        network.set_mode(address, "up")
        assert (await client.request(address, CLIENT_ID, None, Ping())).body == Pong()
        with pytest.raises(ValueError):
            network.set_mode(address, "sideways")  # type: ignore[arg-type]


async def test_memory_drop_waits_for_the_callers_scope(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    client = network.transport()
    async with running(network.transport()) as address, running(client, handler=None):
        assert address is not None
        network.set_mode(address, "drop")
        start = trio.current_time()
        with trio.move_on_after(2.0) as scope:
            await client.request(address, CLIENT_ID, None, Ping())
        assert scope.cancelled_caught
        assert trio.current_time() - start == 2.0
    assert client.statistics().requests_failed == 1


async def test_memory_random_loss(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(3), drop_rate=0.5)
    client = network.transport()
    answered = 0
    async with running(network.transport()) as address, running(client, handler=None):
        assert address is not None
        for _ in range(40):
            with trio.move_on_after(1.0):
                await client.request(address, CLIENT_ID, None, Ping())
                answered += 1
    assert 5 < answered < 35


async def test_memory_partition_and_heal(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    a, b, c = (network.transport() for _ in range(3))
    async with running(a) as addr_a, running(b) as addr_b, running(c) as addr_c:
        assert addr_a is not None and addr_b is not None and addr_c is not None
        network.partition([[addr_a, addr_b], [addr_c]])
        assert (await a.request(addr_b, CLIENT_ID, 1, Ping())).body == Pong()
        with trio.move_on_after(1.0) as scope:
            await a.request(addr_c, CLIENT_ID, 1, Ping())
        assert scope.cancelled_caught
        with trio.move_on_after(1.0) as scope:
            await c.request(addr_b, CLIENT_ID, 1, Ping())
        assert scope.cancelled_caught
        network.heal()
        assert (await a.request(addr_c, CLIENT_ID, 1, Ping())).body == Pong()


async def test_memory_latency_in_exact_virtual_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(0), latency=0.25)
    client = network.transport()
    async with running(network.transport()) as address, running(client, handler=None):
        assert address is not None
        start = trio.current_time()
        await client.request(address, CLIENT_ID, None, Ping())
        assert trio.current_time() - start == pytest.approx(0.5, abs=1e-9)

    jittery = MemoryNetwork(rng=random.Random(0), latency=0.1, jitter=0.1)
    draws = random.Random(0)
    expected = 0.2 + draws.uniform(0.0, 0.1) + draws.uniform(0.0, 0.1)
    client = jittery.transport()
    async with running(jittery.transport()) as address, running(client, handler=None):
        assert address is not None
        start = trio.current_time()
        await client.request(address, CLIENT_ID, None, Ping())
        assert trio.current_time() - start == pytest.approx(expected, abs=1e-9)


async def test_memory_server_finishes_work_after_caller_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    finished: list[float] = []

    async def slow(frame: RequestFrame, remote: Address) -> Reply:
        await trio.sleep(3.0)
        finished.append(trio.current_time())
        return Stored()

    network = MemoryNetwork()
    client = network.transport()
    async with running(network.transport(), handler=slow) as address:
        async with running(client, handler=None):
            assert address is not None
            with trio.move_on_after(1.0) as scope:
                await client.request(address, CLIENT_ID, None, Store(KEY, b"v"))
            assert finished  # the shielded handler ran to completion
            assert scope.cancelled_caught


async def test_memory_handler_raising_and_oversize(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def broken(frame: RequestFrame, remote: Address) -> Reply:
        raise RuntimeError("secret details")

    network = MemoryNetwork()
    client: MemoryTransport = network.transport()
    small = CONFIG.replace(max_frame_size=2048, max_value_size=1024)
    async with running(network.transport(), handler=broken) as address:
        async with running(client, small, handler=None):
            assert address is not None
            reply = await client.request(address, CLIENT_ID, None, Ping())
            assert reply.body == ErrorReply(ErrorCode.INTERNAL, "internal error")
            with pytest.raises(TransportError):
                await client.request(address, CLIENT_ID, None, Store(KEY, b"x" * 4096))
