"""The lookup driver's cheap paths: exact statistics, clean cancellation, hedged value lookups.

Behaviour must not change with them: strict alpha, exact statistics, cancellation
that leaves nothing behind.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import cbor2
import pytest
import trio
import trio.testing

from trio_kad import Config, Dht, MemoryNetwork, MemoryTransport, Transport, open_dht
from trio_kad._ids import Address, Contact, distance, int_to_id, key_id
from trio_kad._messages import (
    FindNode,
    FindValue,
    FoundValue,
    Nodes,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    Request,
    Stored,
)
from trio_kad._node import Node
from trio_kad._transport import RequestHandler
from trio_kad.testing import Simulation, node_of, open_simulation


class _TaskTracker(trio.abc.Instrument):
    def __init__(self) -> None:
        self.spawned = 0
        self.alive: set[trio.lowlevel.Task] = set()

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1
        self.alive.add(task)

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.discard(task)


def _count_rpcs(node: Node, kinds: tuple[type[Request], ...]) -> dict[str, int]:
    """Wrap ``node.rpc``: count calls of ``kinds``, those that failed, and the peak in flight.

    Reset the counts with ``counts.update(sent=0, failed=0, peak=0)``.
    """
    counts = {"sent": 0, "failed": 0, "in_flight": 0, "peak": 0}
    original = node.rpc

    async def rpc(contact: Contact, body: Request, timeout: float | None = None) -> Reply | None:
        if not isinstance(body, kinds):
            return await original(contact, body, timeout)
        counts["sent"] += 1
        counts["in_flight"] += 1
        counts["peak"] = max(counts["peak"], counts["in_flight"])
        try:
            reply = await original(contact, body, timeout)
        finally:
            counts["in_flight"] -= 1
        counts["failed"] += reply is None
        return reply

    node.rpc = rpc  # type: ignore[method-assign]
    return counts


async def _reader_with_silent_first_contact(
    nodes: list[Dht], network: MemoryNetwork, key: str, value: int
) -> Dht:
    """Store ``key`` from the first node; a node without a copy, whose first contact is silent.

    The first contact is the one a value lookup asks first, and alone: the
    closest to the key the reader knows.
    """
    await nodes[0].set(key, value)
    reader = next(n for n in nodes if n.get_local(key) is None)
    first = node_of(reader).table.closest(key_id(key), 1)[0]
    network.set_mode(first.address, "drop")
    return reader


async def test_lookup_statistics_match_the_rpcs_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(32), latency=0.005)
    config = Config(k=8, alpha=3)
    async with open_simulation(60, seed=32, config=config, network=network) as sim:
        rng = random.Random(32)
        for victim in rng.sample(sim.nodes[1:], 20):
            network.set_mode(victim.address, "drop")
        node = node_of(sim.nodes[0])
        counts = _count_rpcs(node, (FindNode, FindValue))
        for want_value in (False, True):
            for _ in range(10):
                counts.update(sent=0, failed=0, peak=0)
                outcome = await node.lookup(rng.randbytes(32), want_value=want_value)
                report = outcome.report
                # Cancelled RPCs count as sent, and neither as answered nor failed.
                assert report.queries == counts["sent"]
                assert report.failures == counts["failed"]
                assert counts["peak"] <= config.alpha


async def test_a_cancelled_lookup_leaves_no_task_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(33), latency=0.01)
    async with open_simulation(40, seed=33, network=network) as sim:
        # The last joiners' far-bucket refreshes run in the background: let them end,
        # so the only tasks left are the lookup's own.
        await trio.sleep(sim.config.bootstrap_timeout)
        node = node_of(sim.nodes[3])
        rng = random.Random(33)
        cancelled = 0
        # Cut off at every stage: before the first reply, between replies, in flight.
        for deadline in (0.0, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.07):
            tracker = _TaskTracker()
            trio.lowlevel.add_instrument(tracker)
            try:
                with trio.move_on_after(deadline) as scope:
                    await node.lookup(rng.randbytes(32))
                    await node.lookup(rng.randbytes(32), want_value=True)
                await trio.testing.wait_all_tasks_blocked()
            finally:
                trio.lowlevel.remove_instrument(tracker)
            cancelled += scope.cancelled_caught
            assert not tracker.alive, deadline
        assert cancelled >= 5
        # And the node still looks up afterwards.
        outcome = await node.lookup(rng.randbytes(32))
        assert outcome.contacts


async def test_a_hedged_lookup_widens_when_the_first_contact_is_silent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(34), latency=0.005)
    config = Config(k=8, alpha=3)
    async with open_simulation(50, seed=34, config=config, network=network) as sim:
        reader = await _reader_with_silent_first_contact(sim.nodes, network, "hedged", 1)
        counts = _count_rpcs(node_of(reader), (FindValue,))
        start = trio.current_time()
        assert await reader.get("hedged") == 1
        report = reader.last_lookup
        assert report is not None
        # The silent contact did not hold the lookup for its whole timeout: at the
        # hedge delay its RPC was dropped and alpha contacts asked, it among them.
        assert counts["peak"] > 1
        assert trio.current_time() - start < config.min_rpc_timeout
        assert report.queries == counts["sent"]


async def test_a_get_answered_by_the_first_contact_spawns_no_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(35), latency=0.005)
    async with open_simulation(40, seed=35, network=network) as sim:
        await sim.nodes[0].set("direct", 1)
        reader = next(n for n in sim.nodes if n.get_local("direct") is None)
        await trio.testing.wait_all_tasks_blocked()
        tracker = _TaskTracker()
        trio.lowlevel.add_instrument(tracker)
        try:
            assert await reader.get("direct") == 1
        finally:
            trio.lowlevel.remove_instrument(tracker)
        report = reader.last_lookup
        assert report is not None and report.queries == 1
        assert tracker.spawned == 0


async def test_alpha_one_waits_out_a_silent_contact_then_asks_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Nobody to hedge with: the silent contact's RPC runs to its timeout, once.
    network = MemoryNetwork(rng=random.Random(36), latency=0.005)
    config = Config(k=8, alpha=1)
    async with open_simulation(40, seed=36, config=config, network=network) as sim:
        reader = await _reader_with_silent_first_contact(sim.nodes, network, "patient", 2)
        counts = _count_rpcs(node_of(reader), (FindValue,))
        with trio.fail_after(10 * config.rpc_timeout):
            assert await reader.get("patient") == 2
        assert counts["peak"] == 1
        assert counts["failed"] == 1


class _Wrapper(Transport):
    """A transport that runs ``inner`` as it is; subclasses say how requests go out."""

    def __init__(self, inner: MemoryTransport) -> None:
        super().__init__()
        self.inner = inner

    async def run(
        self,
        config: Config,
        node_id: bytes,
        host: str,
        port: int,
        handler: RequestHandler | None,
        *,
        task_status: trio.TaskStatus[Address | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await self.inner.run(config, node_id, host, port, handler, task_status=task_status)


class _Inventors(_Wrapper):
    """A node's transport that counts its requests in flight and plays hostile peers.

    Requests to an address ``invent`` made answer as the id it was made for:
    every FIND_NODE and FIND_VALUE with 20 fresh ids nearer the target, each
    at an address of its own that answers the same way (colluding peers
    without end). Everything else goes to ``inner``.
    """

    def __init__(self, inner: MemoryTransport) -> None:
        super().__init__(inner)
        self.pending = 0
        """FIND_NODE and FIND_VALUE requests waiting for a reply now."""
        self.answered = 0
        self._ids: dict[Address, bytes] = {}

    def invent(self, node_id: bytes) -> Contact:
        n = len(self._ids)
        contact = Contact(node_id, f"127.66.{n >> 8 & 255}.{n & 255}", 4000 + (n >> 16))
        self._ids[contact.address] = node_id
        return contact

    async def _request(
        self, address: Address, sender_id: bytes, sender_port: int | None, body: Request
    ) -> ReplyFrame:
        finding = isinstance(body, FindNode | FindValue)
        self.pending += finding
        try:
            node_id = self._ids.get(address)
            if node_id is None:
                return await self.inner.request(address, sender_id, sender_port, body)
            await trio.sleep(0.01)
            self.answered += 1
            return ReplyFrame(0, node_id, self._lie(node_id, body))
        finally:
            self.pending -= finding

    def _lie(self, node_id: bytes, body: Request) -> Reply:
        if isinstance(body, FindNode | FindValue):
            target = body.target if isinstance(body, FindNode) else body.key
            nearer = distance(node_id, target) - 1
            target_int = int.from_bytes(target, "big")
            return Nodes(
                tuple(self.invent(int_to_id(target_int ^ (nearer - j))) for j in range(20))
            )
        return Pong() if isinstance(body, Ping) else Stored()


@asynccontextmanager
async def _victim_of_inventors(
    sim: Simulation, network: MemoryNetwork, config: Config, key: str
) -> AsyncIterator[tuple[Dht, _Inventors]]:
    """A node that has joined ``sim`` and then heard from a hostile peer nearer ``key`` than any."""
    transport = _Inventors(network.transport())
    liar = transport.invent(int_to_id(int.from_bytes(key_id(key), "big") ^ 1 << 200))
    peers = [sim.nodes[0].address]
    async with open_dht(bootstrap=peers, transport=transport, config=config) as victim:
        await victim.delete(key)  # a copy handed over on joining, if any
        node_of(victim).saw_alive(liar)
        yield victim, transport


@pytest.mark.parametrize("paths", [1, 2])
async def test_peers_naming_ever_closer_invented_ids_cannot_keep_a_lookup_going(
    autojump_clock: trio.testing.MockClock, paths: int
) -> None:
    # Unbounded, the get below never ends: every hostile answer names 20 fresh ids
    # nearer the key than any honest node, and those answer alike.
    network = MemoryNetwork(rng=random.Random(37), latency=0.005)
    config = Config(lookup_max_rpcs=50, disjoint_paths=paths)
    async with open_simulation(10, seed=37, config=config, network=network) as sim:
        await sim.nodes[0].set("hijacked", 1)
        async with _victim_of_inventors(sim, network, config, "hijacked") as (victim, _):
            with trio.fail_after(60):
                # One path: the liar is the nearest contact and the honest holders
                # are never reached, but the get ends. Two: the liar holds up only
                # the path it was dealt to.
                assert await victim.get("hijacked") == (None if paths == 1 else 1)
                _check_bounded(victim, config)
                assert await victim.set("hijacked", 2) >= 1
                _check_bounded(victim, config)


def _check_bounded(dht: Dht, config: Config) -> None:
    report = dht.last_lookup
    assert report is not None
    assert report.queries <= config.disjoint_paths * config.lookup_max_rpcs


async def test_a_cancelled_get_leaves_nothing_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(39), latency=0.01)
    async with open_simulation(30, seed=39, network=network) as sim:
        for n in range(5):
            await sim.nodes[n].set(f"key{n}", n)
        for paths, quorum in ((1, 1), (3, 1), (1, 3), (3, 3)):
            config = sim.config.replace(disjoint_paths=paths)
            transport = _Inventors(network.transport())
            peers = [sim.nodes[0].address]
            async with open_dht(
                bootstrap=peers, transport=transport, config=config, client_only=True
            ) as reader:
                # Let the joining refresh end: the only tasks left are the get's own.
                await trio.sleep(config.bootstrap_timeout)
                cancelled = 0
                for deadline in (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06):
                    tracker = _TaskTracker()
                    trio.lowlevel.add_instrument(tracker)
                    try:
                        with trio.move_on_after(deadline) as scope:
                            for n in range(5):
                                await reader.get(f"key{n}", quorum=quorum)
                        # No lookup RPC outlives the get; only a STORE caching a value
                        # found by a get that ended may still be on its way.
                        assert transport.pending == 0, (paths, quorum, deadline)
                        await trio.sleep(config.rpc_timeout)
                    finally:
                        trio.lowlevel.remove_instrument(tracker)
                    cancelled += scope.cancelled_caught
                    assert not tracker.alive, (paths, quorum, deadline)
                assert cancelled >= 4
                assert await reader.get("key1", quorum=quorum) == 1


@pytest.mark.parametrize("paths", [1, 3, 8])
async def test_disjoint_paths_store_at_the_k_closest_and_find_values(
    autojump_clock: trio.testing.MockClock, paths: int
) -> None:
    config = Config(k=8, disjoint_paths=paths)
    async with open_simulation(60, seed=40, config=config) as sim:
        for n in range(10):
            key = f"spread{n}"
            writer, reader = sim.nodes[n], sim.nodes[-1 - n]
            assert await writer.set(key, n) == config.k
            ident = key_id(key)
            closest = sorted(sim.nodes, key=lambda d: distance(d.node_id, ident))[: config.k]
            holders = {d.node_id for d in sim.nodes if d.get_local(key) is not None}
            # Over all paths, the k closest were found (the writer keeps its own copy too).
            assert holders - {writer.node_id} == {d.node_id for d in closest} - {writer.node_id}
            await reader.delete(key)
            assert await reader.get(key) == n


class _WrongValues(_Wrapper):
    """A reader's transport on which the nodes at ``liars`` answer every FIND_VALUE alike.

    They all return the same valid but wrong value (colluders agree, so they
    could make up a quorum); FIND_NODE and everything else goes to ``inner``.
    """

    def __init__(self, inner: MemoryTransport, liars: dict[Address, bytes]) -> None:
        super().__init__(inner)
        self.liars = liars

    async def _request(
        self, address: Address, sender_id: bytes, sender_port: int | None, body: Request
    ) -> ReplyFrame:
        liar = self.liars.get(address)
        if liar is None or not isinstance(body, FindValue):
            return await self.inner.request(address, sender_id, sender_port, body)
        await trio.sleep(0.01)
        return ReplyFrame(0, liar, FoundValue(cbor2.dumps("forged"), 3600))


@pytest.mark.parametrize("paths", [1, 2])
async def test_colluders_farther_than_the_holders_cannot_make_up_a_quorum(
    autojump_clock: trio.testing.MockClock, paths: int
) -> None:
    # The first holders a lookup meets are the far ones: the three nodes just
    # beyond the k closest answer any key with one forged value. A quorum of 3
    # is theirs unless the votes that count are those of the holders nearest the key.
    config = Config(k=5, disjoint_paths=paths)
    async with open_simulation(30, seed=41, config=config) as sim:
        assert sim.network is not None
        assert await sim.nodes[0].set("contested", "honest") >= config.k - 1
        ident = key_id("contested")
        ranked = sorted(sim.nodes, key=lambda d: distance(d.node_id, ident))
        liars = {d.address: d.node_id for d in ranked[config.k : config.k + 3]}
        transport = _WrongValues(sim.network.transport(), liars)
        async with open_dht(transport=transport, config=config, client_only=True) as reader:
            # All the reader knows at first is the liars: they are asked first.
            for address, node_id in liars.items():
                node_of(reader).saw_alive(Contact(node_id, *address))
            assert await reader.get("contested", quorum=3) == "honest"


# --- timing at internet round trips (issue 15) ------------------------------------


async def test_joining_past_silent_nodes_takes_round_trips_not_rpc_timeouts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 100 ms round trips, a third of the network silent: the join's lookup gives up on
    # a silent contact after the round trips seen so far (from the bootstrap ping on),
    # not after rpc_timeout. A client needs no own-id lookup: its get is quicker still.
    network = MemoryNetwork(rng=random.Random(38), latency=0.05)
    config = Config()
    async with open_simulation(60, seed=38, config=config, network=network) as sim:
        await sim.nodes[1].set("joined", 1)
        for victim in random.Random(38).sample(sim.nodes[2:], 20):
            network.set_mode(victim.address, "drop")
        peers = [sim.nodes[0].address]
        rng = random.Random(38)
        joins, gets = [], []
        for client_only in (False, True) * 3:
            start = trio.current_time()
            async with open_dht(
                bootstrap=peers,
                transport=network.transport(),
                config=config,
                node_id=rng.randbytes(32),
                client_only=client_only,
            ) as dht:
                joined = trio.current_time() - start
                assert await dht.get("joined") == 1
                (joins, gets)[client_only].append(trio.current_time() - start)
                del joined
    # Before, each silent contact held a slot for rpc_timeout: 7 s to join.
    assert max(joins) < 1.5 * config.rpc_timeout, joins
    assert max(gets) < config.rpc_timeout / 2, gets


class _FarAway(_Wrapper):
    """A node's transport on which some addresses answer ``extra`` seconds later."""

    def __init__(self, inner: MemoryTransport, far: set[Address], extra: float) -> None:
        super().__init__(inner)
        self.far, self.extra = far, extra

    async def _request(
        self, address: Address, sender_id: bytes, sender_port: int | None, body: Request
    ) -> ReplyFrame:
        if address in self.far:
            await trio.sleep(self.extra)
        return await self.inner.request(address, sender_id, sender_port, body)


async def test_hedges_stay_rare_with_near_and_far_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Peers 10 ms and 410 ms away: each peer's own estimate (and the hedge's floor of
    # 1.25 smoothed round trips) keeps requests to far peers from being hedged.
    network = MemoryNetwork(rng=random.Random(39), latency=0.005, jitter=0.002)
    config = Config(k=8)
    async with open_simulation(40, seed=39, config=config, network=network) as sim:
        keys = [f"far-{i}" for i in range(30)]
        for key in keys:
            await sim.nodes[0].set(key, 1)
        far = {n.address for n in sim.nodes[::2]}
        transport = _FarAway(network.transport(), far, extra=0.4)
        peers = [sim.nodes[1].address]
        async with open_dht(bootstrap=peers, transport=transport, config=config) as reader:
            await trio.sleep(config.bootstrap_timeout)  # the join's refresh is over
            counts = _count_rpcs(node_of(reader), (FindValue,))
            gets = hedged = 0
            for _ in range(3):
                for key in keys:
                    if reader.get_local(key) is not None:
                        continue
                    counts.update(sent=0, failed=0, peak=0)
                    assert await reader.get(key) == 1
                    gets += 1
                    hedged += counts["peak"] > 1
    assert gets >= 30
    assert hedged <= gets // 10, (hedged, gets)
