"""The in-memory network and transport, in virtual time."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import trio
import trio.testing
from transports import (
    CLIENT_ID,
    CONFIG,
    KEY,
    SERVER_ID,
    echo_handler,
    running,
)

from trio_kad import MemoryNetwork, MemoryTransport
from trio_kad._errors import TransportError
from trio_kad._ids import Address, Contact
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
from trio_kad._transport import RequestHandler
from trio_kad._wan import WanModel
from trio_kad.testing import open_simulation

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


async def answered_pings(network: MemoryNetwork, count: int, wait: float) -> int:
    """Of ``count`` PINGs from a new client to a new server, how many came back within ``wait``."""
    client = network.transport()
    answered = 0
    async with running(network.transport()) as address, running(client, handler=None):
        assert address is not None
        for _ in range(count):
            with trio.move_on_after(wait):
                await client.request(address, CLIENT_ID, None, Ping())
                answered += 1
    return answered


async def test_memory_random_loss(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(3), drop_rate=0.5)
    assert 5 < await answered_pings(network, 40, 1.0) < 35


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


# --- the WAN model (virtual time) ------------------------------------------------

STILL = WanModel(jitter=0.0, loss=0.0)
"""No jitter, no loss: every delay is exact."""


async def timed_ping(client: MemoryTransport, address: Address | None) -> float:
    """Seconds one PING to ``address`` takes in virtual time."""
    assert address is not None
    start = trio.current_time()
    assert (await client.request(address, CLIENT_ID, None, Ping())).body == Pong()
    return trio.current_time() - start


async def test_wan_handshake_then_half_rtt_each_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(4), model=STILL)
    server, client = network.transport(), network.transport()
    assert server.site is not None and client.site is not None
    rtt = STILL.rtt(client.site, server.site)
    async with running(server) as address, running(client, handler=None):
        assert network.sites() == [server.site]
        # A new connection: the handshake's round trip, then the request's.
        assert await timed_ping(client, address) == pytest.approx(2 * rtt)
        assert await timed_ping(client, address) == pytest.approx(rtt)
        # Unused for idle_timeout, the connection has closed: a handshake again.
        await trio.sleep(CONFIG.idle_timeout)
        assert await timed_ping(client, address) == pytest.approx(2 * rtt)
    assert client.statistics().connections_opened == 2


@asynccontextmanager
async def wan_pool(
    seed: int, servers: int, limit: int, handler: RequestHandler = echo_handler
) -> AsyncIterator[tuple[MemoryNetwork, MemoryTransport, list[Address], list[float]]]:
    """``servers`` running servers and a client allowed ``limit`` connections; their RTTs."""
    network = MemoryNetwork(rng=random.Random(seed), model=STILL)
    transports = [network.transport() for _ in range(servers)]
    client = network.transport()
    config = CONFIG.replace(max_outbound_connections=limit)
    async with AsyncExitStack() as stack:
        addresses = [
            await stack.enter_async_context(running(t, handler=handler)) for t in transports
        ]
        await stack.enter_async_context(running(client, config, handler=None))
        assert client.site is not None
        rtts = [STILL.rtt(client.site, t.site) for t in transports if t.site is not None]
        yield network, client, [a for a in addresses if a is not None], rtts


async def test_wan_pool_closes_the_least_recently_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with wan_pool(5, 3, 2) as (_, client, (a, b, c), rtts):
        assert await timed_ping(client, a) == pytest.approx(2 * rtts[0])
        assert await timed_ping(client, b) == pytest.approx(2 * rtts[1])
        assert await timed_ping(client, a) == pytest.approx(rtts[0])  # a: most recently used
        assert await timed_ping(client, c) == pytest.approx(2 * rtts[2])  # closes b
        assert await timed_ping(client, a) == pytest.approx(rtts[0])
        assert await timed_ping(client, b) == pytest.approx(2 * rtts[1])  # closes c
        assert await timed_ping(client, c) == pytest.approx(2 * rtts[2])
    assert client.statistics().connections_opened == 5


async def test_wan_busy_connections_stay_open(autojump_clock: trio.testing.MockClock) -> None:
    async def slow_store(frame: RequestFrame, remote: Address) -> Reply:
        if isinstance(frame.body, Store):
            await trio.sleep(10.0)
        return await echo_handler(frame, remote)

    async with wan_pool(6, 2, 1, slow_store) as (_, client, (a, b), rtts):
        async with trio.open_nursery() as nursery:
            # The STORE keeps the connection to a busy while b is dialed past the limit.
            nursery.start_soon(client.request, a, CLIENT_ID, None, Store(KEY, b"v"))
            await trio.testing.wait_all_tasks_blocked()
            assert await timed_ping(client, b) == pytest.approx(2 * rtts[1])
        assert await timed_ping(client, a) == pytest.approx(rtts[0])  # still open
        assert await timed_ping(client, b) == pytest.approx(2 * rtts[1])  # idle for 5 s: closed
    assert client.statistics().connections_opened == 3


async def test_wan_loss_and_silence(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(8), model=WanModel(loss=0.3))
    # A lost segment is resent, as over TCP: late, not gone. Within 0.5 s (an RTT or
    # two, and at most one retransmission timeout) not all come back; within 10 s all do.
    assert 35 < await answered_pings(network, 100, 0.5) < 95
    assert await answered_pings(network, 100, 10.0) >= 99
    client = network.transport()
    async with running(network.transport()) as address, running(client, handler=None):
        assert address is not None
        network.set_mode(address, "drop")
        with trio.move_on_after(60.0) as scope:
            await client.request(address, CLIENT_ID, None, Ping())
        assert scope.cancelled_caught


def test_wan_model_sets_the_delays() -> None:
    with pytest.raises(ValueError):
        MemoryNetwork(model=STILL, latency=0.1)
    assert MemoryNetwork().transport().site is None


async def test_simulation_over_the_wan(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulation(12, seed=2, wan=WanModel()) as sim:
        assert sim.network is not None and sim.network.model is not None
        hosts = [node.address[0] for node in sim.nodes]
        assert len(set(hosts)) == 12
        assert all(ipaddress.ip_address(host).is_global for host in hosts)
        assert await sim.nodes[0].set("key", "value") > 0
        assert await sim.nodes[-1].get("key") == "value"
    with pytest.raises(ValueError):
        async with open_simulation(1, wan=WanModel(), tcp=True):
            pass  # pragma: no cover
