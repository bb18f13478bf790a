"""Provider sets end to end on the in-memory network, in virtual time."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from trio_kad import Config, MemoryNetwork, Provider, StoreError, open_dht
from trio_kad._ids import key_id
from trio_kad._messages import (
    AddProvider,
    ErrorCode,
    ErrorReply,
    GetProviders,
    ProviderEntry,
    Providers,
    RequestFrame,
    Stored,
    StoreProviders,
)
from trio_kad.testing import node_of, open_simulation

FAST = Config(provider_lifetime=300.0, provider_reannounce_interval=100.0)


async def test_finders_get_every_announcer_freshest_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(30, seed=1) as sim:
        announcers = sim.nodes[:8]
        for i, dht in enumerate(announcers):
            assert await dht.announce("chat", port=5000 + i) == 20
            await trio.sleep(1)
        found = await sim.nodes[-1].find_providers("chat")
        assert [p.port for p in found] == [5007 - i for i in range(8)]
        assert {p.node_id for p in found} == {d.node_id for d in announcers}
        assert all(p.host == "127.0.0.1" for p in found)
        assert [p.age for p in found] == sorted(p.age for p in found)
        assert await sim.nodes[-1].find_providers("nobody here") == []


async def test_provider_lookups_take_disjoint_paths_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(30, seed=14, config=Config(disjoint_paths=2)) as sim:
        for i, dht in enumerate(sim.nodes[:5]):
            await dht.announce("paths", port=5000 + i)
        found = await sim.nodes[-1].find_providers("paths")
        assert sorted(p.port for p in found) == [5000 + i for i in range(5)]
        assert len([p async for p in sim.nodes[-2].providers("paths")]) == 5


async def test_find_providers_stops_once_it_has_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(40, seed=2) as sim:
        for i, dht in enumerate(sim.nodes[:10]):
            await dht.announce("swarm", port=6000 + i)
        finder = sim.nodes[-1]
        before = finder.statistics().transport.frames_sent
        two = await finder.find_providers("swarm", limit=2)
        assert len(two) == 2
        sent = finder.statistics().transport.frames_sent - before
        # One or two holders asked (alpha in flight at most), not the whole neighbourhood.
        assert sent <= 3
        with pytest.raises(ValueError):
            await finder.find_providers("swarm", limit=0)


async def test_providers_yields_each_once_as_found(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulation(30, seed=3) as sim:
        for i, dht in enumerate(sim.nodes[:6]):
            await dht.announce(b"topic", port=7000 + i)
        seen: list[Provider] = []
        async for provider in sim.nodes[-1].providers(b"topic"):
            seen.append(provider)
        assert sorted(p.port for p in seen) == [7000 + i for i in range(6)]
        first = [p async for p in sim.nodes[-2].providers(b"topic", limit=1)]
        assert len(first) == 1


async def test_entries_expire_unless_reannounced(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulation(20, seed=4, config=FAST) as sim:
        stays, leaves, stops = sim.nodes[0], sim.nodes[1], sim.nodes[2]
        for dht in (stays, leaves, stops):
            await dht.announce("t", port=8000)
        await leaves.unannounce("t")
        sim.stop_node(stops)
        await trio.sleep(250)
        # Holders cannot be recalled: the entries stay until they expire.
        ids = {p.node_id for p in await sim.nodes[-1].find_providers("t")}
        assert ids == {stays.node_id, leaves.node_id, stops.node_id}
        await trio.sleep(100)  # one lifetime after the last announcements of the two
        found = await sim.nodes[-1].find_providers("t")
        assert [p.node_id for p in found] == [stays.node_id]
        assert found[0].age < FAST.provider_reannounce_interval + 1


async def test_a_client_only_node_announces_a_port_it_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(5))
    async with open_dht(transport=network.transport()) as first:
        async with open_dht(
            "10.0.0.9", bootstrap=[first.address], transport=network.transport(), client_only=True
        ) as client:
            with pytest.raises(ValueError, match="client-only"):
                await client.announce("svc")
            for port in (0, 65536, True):
                with pytest.raises(ValueError, match="port"):
                    await client.announce("svc", port=port)
            assert await client.announce("svc", port=4444) == 1
            (found,) = await first.find_providers("svc")
            assert (found.node_id, found.host, found.port) == (client.node_id, "10.0.0.9", 4444)


async def test_the_first_node_holds_its_own_entry(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(6))
    async with open_dht(transport=network.transport()) as alone:
        assert await alone.announce("me") == 1
        (me,) = await alone.find_providers("me")
        assert (me.host, me.port) == alone.address
        await alone.unannounce("me")
        assert await alone.find_providers("me") == []


def request(sender: bytes, body: object, port: int | None = 4000) -> RequestFrame:
    return RequestFrame(1, sender, port, body)  # type: ignore[arg-type]


async def test_the_host_is_where_the_announcement_came_from(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(7))
    async with open_dht(transport=network.transport()) as holder:
        node = node_of(holder)
        key = key_id("t")
        reply = await node.handle_request(
            request(b"x" * 32, AddProvider(key, 9)), ("203.0.113.9", 0)
        )
        assert isinstance(reply, Stored)
        # The same id from another address cannot move the entry there.
        moved = await node.handle_request(
            request(b"x" * 32, AddProvider(key, 9)), ("198.51.100.1", 0)
        )
        assert isinstance(moved, ErrorReply) and moved.code is ErrorCode.PROVIDER_CONFLICT
        (entry,) = node.providers.get(key, trio.current_time())
        assert (entry.host, entry.port) == ("203.0.113.9", 9)


async def test_floods_from_one_address_are_refused_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(8))
    config = Config(max_provider_ids_per_ip=4, max_providers_per_topic=10)
    async with open_dht(transport=network.transport(), config=config) as holder:
        node = node_of(holder)
        key = key_id("crowded")
        codes = []
        for n in range(50):
            fresh = n.to_bytes(32, "big")
            reply = await node.handle_request(
                request(fresh, AddProvider(key, 80)), ("203.0.113.9", 0)
            )
            codes.append(reply.code if isinstance(reply, ErrorReply) else None)
        assert codes[:4] == [None] * 4
        assert set(codes[4:]) == {ErrorCode.OVER_QUOTA}
        # Honest announcers elsewhere still get in, until the topic is full.
        for n in range(10):
            sender = (1000 + n).to_bytes(32, "big")
            reply = await node.handle_request(
                request(sender, AddProvider(key, 80)), (f"198.51.{n}.1", 0)
            )
            expected = None if n < 6 else ErrorCode.OVERLOADED
            assert (reply.code if isinstance(reply, ErrorReply) else None) is expected
        stats = holder.statistics()
        assert stats.provider_entries == 10
        assert stats.providers_refused == 46 + 4


async def test_holders_replicate_their_sets_every_replicate_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(provider_lifetime=20_000.0, provider_reannounce_interval=10_000.0)
    async with open_simulation(12, seed=9, config=config) as sim:
        key, holder, other = key_id("t"), node_of(sim.nodes[0]), node_of(sim.nodes[5])
        # An entry only one holder has (as if the others had just joined).
        holder.providers.add(key, b"p" * 32, "198.51.100.4", 80, "", trio.current_time())
        await trio.sleep(config.replicate_interval / 2)
        assert other.providers.get(key, trio.current_time()) == []
        await trio.sleep(config.replicate_interval / 2 + 120)
        (entry,) = other.providers.get(key, trio.current_time())
        assert (entry.node_id, entry.host) == (b"p" * 32, "198.51.100.4")


async def test_a_newcomer_among_the_closest_is_handed_the_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(12, seed=12) as sim:
        await sim.nodes[0].announce("t", port=80)
        newcomer = await sim.add_node()
        await trio.sleep(10)  # far less than replicate_interval
        entries = node_of(newcomer).providers.get(key_id("t"), trio.current_time())
        assert [e.node_id for e in entries] == [sim.nodes[0].node_id]


async def test_replication_only_from_listening_holders(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(10))
    async with open_dht(transport=network.transport()) as holder:
        node = node_of(holder)
        entry = ProviderEntry(b"p" * 32, "198.51.100.4", 80, 5, 100)
        named = ProviderEntry(b"n" * 32, "victim.example", 80, 5, 100)
        body = StoreProviders(key_id("t"), (entry, named))
        refused = await node.handle_request(request(b"h" * 32, body, port=None), ("10.0.0.1", 0))
        assert isinstance(refused, ErrorReply)
        assert isinstance(
            await node.handle_request(request(b"h" * 32, body), ("10.0.0.1", 0)), Stored
        )
        reply = await node.handle_request(
            request(b"f" * 32, GetProviders(key_id("t"))), ("10.0.0.2", 0)
        )
        assert isinstance(reply, Providers)
        assert reply.entries == (entry,)  # a host name is never an announcement's address


async def test_replication_only_from_the_keys_closest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(40, seed=13) as sim:
        holder, key = node_of(sim.nodes[0]), key_id("t")
        far = bytes(b ^ 0xFF for b in key)  # as far from the key as an id can be
        entry = ProviderEntry(b"p" * 32, "198.51.100.4", 80, 5, 100)
        reply = await holder.handle_request(
            request(far, StoreProviders(key, (entry,))), ("198.51.100.66", 0)
        )
        assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.UNSUPPORTED
        assert holder.providers.get(key, trio.current_time()) == []


async def test_announce_fails_when_nobody_accepts(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(11))
    config = Config(max_provider_topics=1)
    async with open_dht(transport=network.transport(), config=config) as first:
        async with open_dht(
            "10.0.0.3", bootstrap=[first.address], transport=network.transport(), client_only=True
        ) as client:
            await client.announce("one", port=80)
            with pytest.raises(StoreError):
                await client.announce("two", port=80)
            assert first.statistics().providers_refused == 1


async def test_a_graceful_leave_hands_provider_sets_to_the_one_taking_its_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # k = 4 and five nodes: every table holds every other node, so the leaver knows who
    # takes its place (the one node outside the four closest to the topic).
    config = Config(k=4)
    async with open_simulation(4, config=config, seed=3) as sim:
        assert sim.network is not None
        leaving = Config(k=4, handoff_on_exit=True)
        async with open_dht(
            bootstrap=[sim.nodes[0].address], config=leaving, transport=sim.network.transport()
        ) as leaver:
            everyone = [*sim.nodes, leaver]

            def distance(dht: object, key: bytes) -> int:
                node_id = dht.node_id  # type: ignore[attr-defined]
                return int.from_bytes(node_id, "big") ^ int.from_bytes(key, "big")

            topic = next(
                t
                for t in (f"topic {i}" for i in range(100))
                if max(everyone, key=lambda d: distance(d, key_id(t))) is not leaver
            )
            key = key_id(topic)
            outsider = max(everyone, key=lambda d: distance(d, key))
            # Not the outsider: a node keeps no copy of its own entry it was not sent.
            announcer = next(d for d in sim.nodes if d is not outsider)
            assert await announcer.announce(topic, port=7000) == 4
            now = trio.current_time()
            assert node_of(leaver).providers.get(key, now)
            assert not node_of(outsider).providers.get(key, now)
        entries = node_of(outsider).providers.get(key, trio.current_time())
        assert [(e.node_id, e.port) for e in entries] == [(announcer.node_id, 7000)]
