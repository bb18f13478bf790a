"""The lookup driver's cheap paths: exact statistics, clean cancellation, hedged value lookups.

Behaviour must not change with them: strict alpha, exact statistics, cancellation
that leaves nothing behind.
"""

from __future__ import annotations

import random

import trio
import trio.testing

from trio_kad import Config, Dht, MemoryNetwork
from trio_kad._ids import Contact, key_id
from trio_kad._messages import FindNode, FindValue, Reply, Request
from trio_kad._node import Node
from trio_kad.testing import node_of, open_simulation


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
