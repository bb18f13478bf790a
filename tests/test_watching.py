"""Watching a key: LISTEN, pushes, renewal, churn, limits and the attacks (issue 18)."""

from __future__ import annotations

import cbor2
import pytest
import trio
import trio.testing

from trio_kad import Config, Dht, SigningKey, StaleSequence
from trio_kad._ids import Contact, distance, key_id
from trio_kad._messages import ErrorCode, ErrorReply, Pong, Push, Store
from trio_kad._signed import signed_key
from trio_kad.testing import node_of, open_simulation

CONFIG = Config(k=4, watch_renew_interval=60.0, watch_listener_ttl=180.0)


async def collect(dht: Dht, key: str, into: list[object], limit: int) -> None:
    async with dht.watch(key) as updates:
        async for value in updates:
            into.append(value)
            if len(into) >= limit:
                return


async def test_a_watcher_gets_the_current_value_then_each_new_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=1, config=CONFIG) as sim:
        writer, watcher = sim.nodes[0], sim.nodes[-1]
        await writer.set("k", "v0")
        seen: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, watcher, "k", seen, 4)
            await trio.sleep(1)
            assert seen == ["v0"]
            for value in ("v1", "v2", "v3"):
                await writer.set("k", value)
                await trio.sleep(1)
        assert seen == ["v0", "v1", "v2", "v3"]
        assert node_of(watcher).watches.unsolicited == 0


async def test_a_slow_reader_gets_the_latest_value_and_nothing_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=2, config=CONFIG) as sim:
        writer, watcher = sim.nodes[0], sim.nodes[-1]
        await writer.set("k", 0)
        async with watcher.watch("k") as updates:
            assert await updates.__anext__() == 0
            for n in range(1, 6):
                await writer.set("k", n)
            await trio.sleep(1)
            assert await updates.__anext__() == 5  # 1 to 4 were overtaken
            with trio.move_on_after(10) as scope:
                await updates.__anext__()
            assert scope.cancelled_caught  # nothing more: not 5 again


def listeners_of(sim_nodes: list[Dht], key: str) -> int:
    now = trio.current_time()
    return sum(len(node_of(dht).pusher.listeners.listening(key_id(key), now)) for dht in sim_nodes)


async def test_listeners_are_renewed_and_forgotten_after_the_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=3, config=CONFIG) as sim:
        watcher = sim.nodes[-1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, watcher, "k", [], 1)
            await trio.sleep(1)
            held = listeners_of(sim.nodes, "k")
            assert held == CONFIG.k
            await trio.sleep(10 * CONFIG.watch_listener_ttl)  # renewed all along
            assert listeners_of(sim.nodes, "k") == held
            sim.stop_node(watcher)  # gone without a word
            await trio.sleep(CONFIG.watch_listener_ttl - CONFIG.watch_renew_interval - 1)
            assert listeners_of(sim.nodes, "k") > 0
            await trio.sleep(CONFIG.watch_renew_interval + 2)
            assert listeners_of(sim.nodes, "k") == 0
            nursery.cancel_scope.cancel()


async def test_leaving_the_block_ends_the_watch_and_holders_let_go(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=4, config=CONFIG) as sim:
        writer, watcher = sim.nodes[0], sim.nodes[-1]
        await writer.set("k", "a")
        async with watcher.watch("k") as updates:
            assert await updates.__anext__() == "a"
        assert listeners_of(sim.nodes, "k") == CONFIG.k
        await writer.set("k", "b")  # each holder's push is answered NOT_LISTENING
        await trio.sleep(1)
        assert listeners_of(sim.nodes, "k") == 0
        assert node_of(watcher).watches.unsolicited == CONFIG.k


async def test_the_watch_follows_churn_at_each_renewal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(30, seed=5, config=CONFIG) as sim:
        writer, watcher = sim.nodes[0], sim.nodes[1]
        seen: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, watcher, "k", seen, 3)
            await trio.sleep(1)
            await writer.set("k", 1)
            await trio.sleep(1)
            assert seen == [1]
            # Every node the watcher listens at leaves; new ones come.
            for dht in list(sim.nodes[2:]):
                if node_of(dht).node_id in node_of(watcher).watches.listening_ids(key_id("k")):
                    sim.stop_node(dht)
            await sim.grow(5)
            await trio.sleep(CONFIG.watch_renew_interval)  # one renewal finds the new closest
            await writer.set("k", 2)
            await trio.sleep(1)
            assert seen == [1, 2]
            await writer.set("k", 3)
        assert seen == [1, 2, 3]


async def test_over_the_listener_limit_the_watcher_polls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = CONFIG.replace(max_listeners_per_key=1, watch_poll_interval=5.0)
    async with open_simulation(12, seed=6, config=config) as sim:
        # The two farthest from the key: neither is among the nodes the other listens at.
        far = sorted(sim.nodes, key=lambda d: distance(d.node_id, key_id("k")))
        writer, first, second = far[0], far[-1], far[-2]
        async with first.watch("k") as one:
            await trio.sleep(1)
            async with second.watch("k") as two:
                await trio.sleep(1)
                assert two.polling and not one.polling
                await writer.set("k", "x")
                with trio.fail_after(config.watch_poll_interval + 1):
                    assert await two.__anext__() == "x"
                assert await one.__anext__() == "x"


async def test_a_signed_watch_sees_rising_seqs_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=7, config=CONFIG) as sim:
        writer, watcher = sim.nodes[0], sim.nodes[-1]
        key = SigningKey.generate()
        await writer.put_signed(key, "one", seq=1)
        seqs: list[tuple[int, object]] = []
        async with watcher.watch_signed(key.public_key) as updates:
            async for record in updates:
                seqs.append((record.seq, record.value))
                if record.seq == 1:
                    await writer.put_signed(key, "three", seq=3)
                    with pytest.raises(StaleSequence):
                        await writer.put_signed(key, "two", seq=2)
                if record.seq == 3:
                    break
        assert seqs == [(1, "one"), (3, "three")]


async def test_unsolicited_and_forged_pushes_are_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=8, config=CONFIG) as sim:
        watcher = sim.nodes[-1]
        me = node_of(watcher)
        stranger = node_of(sim.nodes[0])
        target = Contact(watcher.node_id, *watcher.address)
        ident = key_id("k")
        # A key nobody here watches.
        reply = await stranger.rpc(target, Push(Store(ident, cbor2.dumps("lie"))))
        assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.NOT_LISTENING
        assert me.watches.unsolicited == 1
        async with watcher.watch("k") as updates:
            await trio.sleep(1)
            listened = me.watches.listening_ids(key_id("k"))
            liar = next(d for d in sim.nodes if d.node_id not in listened and d is not watcher)
            # A watched key, from a node the watch does not listen at.
            reply = await node_of(liar).rpc(target, Push(Store(ident, cbor2.dumps("lie"))))
            assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.NOT_LISTENING
            assert me.watches.unsolicited == 2
            # From a node it listens at, but not a value any setter could make.
            holder = node_of(next(d for d in sim.nodes if d.node_id in listened))
            for bad in (b"\xff", cbor2.dumps("x" * CONFIG.max_value_size)):
                assert await holder.rpc(target, Push(Store(ident, bad))) == Pong()
            assert me.watches.refused == 2
            # A signed record forged for a plain key, and a date from the far future.
            forged = SigningKey.generate().sign(b"", 1, cbor2.dumps("lie"))
            assert await holder.rpc(target, Push(Store(ident, b"\x01", signed=forged))) == Pong()
            future = me.wall_ms() + 2 * 3600 * 1000
            assert await holder.rpc(target, Push(Store(ident, b"\x01", published=future))) == Pong()
            assert me.watches.refused == 4
            with trio.move_on_after(5) as scope:
                await updates.__anext__()
            assert scope.cancelled_caught  # nothing reached the reader


async def test_a_signed_watch_refuses_forged_records(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=9, config=CONFIG) as sim:
        watcher = sim.nodes[-1]
        me = node_of(watcher)
        key, thief = SigningKey.generate(), SigningKey.generate()
        ident = signed_key(key.public_key)
        target = Contact(watcher.node_id, *watcher.address)
        async with watcher.watch_signed(key.public_key) as updates:
            await trio.sleep(1)
            listened = me.watches.listening_ids(ident)
            holder = node_of(next(d for d in sim.nodes if d.node_id in listened))
            value = cbor2.dumps("lie")
            forged = thief.sign(b"", 9, value)  # another key's signature
            tampered = key.sign(b"", 9, cbor2.dumps("truth"))  # signs other bytes
            for signed in (forged, tampered, None):
                assert await holder.rpc(target, Push(Store(ident, value, signed=signed))) == Pong()
            assert me.watches.refused == 3
            await sim.nodes[0].put_signed(key, "truth", seq=9)
            with trio.fail_after(5):
                record = await updates.__anext__()
            assert (record.seq, record.value) == (9, "truth")


async def test_a_watch_read_outside_the_node_ends_when_the_node_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(10, seed=10, config=CONFIG) as sim:
        writer, watcher = sim.nodes[0], sim.nodes[-1]
        await writer.set("k", "v")
        seen: list[object] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect, watcher, "k", seen, 1000)
                await trio.sleep(1)
                sim.stop_node(watcher)
        assert seen == ["v"]
