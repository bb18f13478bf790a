"""The timers that keep a network's data alive (paper sections 2.3 to 2.5).

What to send is decided in ``_duties``; these tasks only send it. Each
``run_*`` function is one background task, started in the ``open_dht``
nursery with ``nursery.start``. They sleep on the Trio clock (so tests drive
them with ``MockClock``), draw jitter from the node's seeded ``rng`` so a
network's nodes do not fire together, and survive anything one round of work
throws: a bad peer or a failed RPC costs a log line, never the node.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar

import trio

from ._duties import (
    far_buckets,
    handoff_stores,
    leave_plan,
    refresh_plan,
    refresh_targets,
    replication_plan,
    stand_ins,
    strangers,
)
from ._ids import Contact
from ._messages import FindNode, Nodes, Ping, Store
from ._node import Node
from ._provider_ops import handoff_providers, leave_providers
from ._storing import publish, store_batch

log = logging.getLogger("trio_kad.maintenance")

JITTER = 0.1
"""Timers fire between 90% and 99% of their interval: spread out, never late."""

CHECKS_PER_REFRESH = 4
"""Bucket staleness is checked this many times per tRefresh."""

REPLICATION_PARALLELISM = 8
"""Peers receiving replication batches at once."""

EXPIRY_CHECK = 60.0
"""Longest wait between two sweeps of expired pairs (shorter if tExpire is short)."""

UPKEEP_CAUSE: ContextVar[str] = ContextVar("trio_kad_upkeep_cause", default="")
"""The upkeep duty the current task does ("" outside upkeep): the task name of its timer.

Each background task sets it once; tasks it starts inherit it, so a counting
transport can tell what every RPC was sent for (``benchmarks/churn.py``).
"""


def jittered(node: Node, interval: float) -> float:
    """``interval`` shortened by a random 1% to 10%."""
    return interval * node.rng.uniform(1 - JITTER, 1 - JITTER / 10)


async def _every(
    node: Node,
    interval: Callable[[], float],
    work: Callable[[], Awaitable[object]],
    name: str,
    task_status: trio.TaskStatus[None],
) -> None:
    UPKEEP_CAUSE.set(name)
    task_status.started()
    while True:
        await trio.sleep(interval())
        try:
            await work()
        except Exception:
            # A background task must never take the node down: log and carry on.
            log.exception("%s failed; retrying next round", name)


async def run_refresh(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """Refresh every bucket with no activity for tRefresh (paper 2.3; ``stale_buckets``)."""
    interval = node.config.refresh_interval / CHECKS_PER_REFRESH
    await _every(
        node, lambda: jittered(node, interval), lambda: refresh(node), "refresh", task_status
    )


async def refresh(node: Node) -> int:
    """One refresh round; returns how many buckets were refreshed.

    Each stale range is refreshed the cheapest way that finds what a lookup
    would (``_duties.refresh_plan``): the own neighbourhood by asking the
    closest contacts for the own id, another bucket by asking one of its
    contacts, an empty one, or one whose contacts all fail, by a lookup.
    """
    table = node.table
    config = node.config
    stale = table.stale_buckets(trio.current_time(), config.refresh_interval)
    plan = refresh_plan(table, stale, config.alpha, node.rng)
    for contacts, target in plan.asks:
        if not await ask(node, contacts, target):
            await node.lookup(target)  # none answered: the paper's way
    for target in plan.lookups:
        await node.lookup(target)
    if node.on_checkpoint is not None:
        await node.on_checkpoint()
    return len(stale)


async def ask(node: Node, contacts: list[Contact], target: bytes) -> bool:
    """Refresh the range of ``target`` with one FIND_NODE to each of ``contacts``, at once.

    The nodes they name that the table lacks and has room for are pinged, so
    those that answer go in; then the range counts as refreshed (for the own
    id, the whole own neighbourhood). Returns ``False`` when none answered.
    """
    started = trio.current_time()
    radius = node.table.neighbourhood_radius()  # the ball the plan meant, if it shrinks
    named: dict[bytes, Contact] = {}

    async def find(contact: Contact) -> None:
        reply = await node.rpc(contact, FindNode(target))
        if isinstance(reply, Nodes):
            named[contact.node_id] = contact
            named.update((c.node_id, c) for c in node.addresses.allowed(reply.contacts))

    async with trio.open_nursery() as nursery:
        for contact in contacts:
            nursery.start_soon(find, contact)
    if not named:
        return False
    table = node.table
    async with trio.open_nursery() as nursery:
        for stranger in strangers(table, named.values())[: node.config.k]:
            nursery.start_soon(node.rpc, stranger, Ping())
    if target == node.node_id:
        table.touch_within(max(radius, table.neighbourhood_radius()), started)
    table.touch(target, started)
    return True


async def refresh_buckets(node: Node, ranges: Iterable[tuple[int, int]]) -> None:
    """Look up a random id in each ``(low, high)`` distance range, one after another."""
    for target in refresh_targets(node.node_id, ranges, node.rng):
        await node.lookup(target)


async def run_join_refresh(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """After each join, refresh every bucket but the own one (paper 2.3).

    ``Node.bootstrap`` returns once the node has looked itself up; this task
    does the rest of the join in the background, each time within
    ``Config.bootstrap_timeout``.
    """
    UPKEEP_CAUSE.set("join refresh")
    task_status.started()
    async for _ in node.joined_out:
        with trio.move_on_after(node.config.bootstrap_timeout) as scope:
            try:
                await refresh_buckets(node, far_buckets(node.table))
            except Exception:
                log.exception("refreshing the far buckets after joining failed")
        if scope.cancelled_caught:
            log.info("refreshing the far buckets after joining took too long; cut short")


async def run_replicate(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """Re-send held pairs to the current k closest every tReplicate (paper 2.5)."""
    interval = node.config.replicate_interval
    await _every(
        node, lambda: jittered(node, interval), lambda: replicate(node), "replicate", task_status
    )


async def replicate(node: Node) -> int:
    """One replication round; returns how many pairs were re-sent.

    Pairs this node is among the k closest to go in ``store_many`` batches, one
    message per peer instead of one lookup and k STOREs per pair; pairs it is
    no longer close to are left to the k closest (``_duties.replication_plan``).
    """
    plan = replication_plan(
        node.table, node.records, trio.current_time(), node.config.replicate_interval
    )
    return await _send_plan(node, plan)


async def leave(node: Node) -> int:
    """Hand the pairs this node holds to those that take its place (``_duties.leave_plan``).

    Bounded by ``Config.handoff_deadline``; returns how many pairs were sent.
    """
    with trio.move_on_after(node.config.handoff_deadline):
        await leave_providers(node)  # provider sets (issue 17)
        return await _send_plan(node, leave_plan(node.table, node.records, trio.current_time()))
    log.warning("leaving: the hand-off did not finish within its deadline")
    return 0


async def _send_plan(node: Node, plan: dict[Contact, list[Store]]) -> int:
    """Send each peer its pairs; a peer that fails is stood in for. Returns the pairs sent."""
    failed = await _send_batches(node, plan)
    # A holder that left is noticed here: its pairs go to the next closest instead.
    await _send_batches(node, stand_ins(node.table, plan, failed))
    return len({store.key for stores in plan.values() for store in stores})


async def _send_batches(node: Node, plan: dict[Contact, list[Store]]) -> list[bytes]:
    """Send each peer its pairs, a few peers at once; return the ids of those that failed."""
    limiter = trio.CapacityLimiter(REPLICATION_PARALLELISM)
    failed: list[bytes] = []

    async def send(contact: Contact, stores: list[Store]) -> None:
        async with limiter:
            if await store_batch(node, contact, stores) < len(stores):
                failed.append(contact.node_id)

    async with trio.open_nursery() as nursery:
        for contact, stores in plan.items():
            nursery.start_soon(send, contact, stores)
    return failed


async def run_republish(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """The original publisher re-stores its pairs every tRepublish (paper 2.5)."""
    interval = node.config.republish_interval
    await _every(
        node, lambda: jittered(node, interval), lambda: republish(node), "republish", task_status
    )


async def republish(node: Node) -> int:
    """One republish round; returns how many pairs were published again."""
    mine = [record for record in node.records if record.publisher]
    for record in mine:
        await publish(node, record.key, record.value, record.signed, record.published)
    return len(mine)


async def run_expire(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """Drop pairs past their expiry (reads already ignore them; this frees the memory)."""
    interval = min(EXPIRY_CHECK, node.config.expire_interval / 10)

    async def sweep() -> None:
        await node.records.expire(trio.current_time())

    await _every(node, lambda: interval, sweep, "expire", task_status)


async def run_handoff(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """Give each newly seen node the pairs it is now among the k closest to (paper 2.5)."""
    UPKEEP_CAUSE.set("handoff")
    task_status.started()
    async for newcomer in node.newcomers_out:
        try:
            await handoff(node, newcomer)
        except Exception:
            log.exception("handing pairs to %r failed", newcomer)


async def handoff(node: Node, newcomer: Contact) -> int:
    """Store at ``newcomer`` the pairs this node should hand over (``_duties.handoff_stores``).

    Returns how many pairs were sent.
    """
    stores = handoff_stores(node.table, node.records, newcomer, trio.current_time())
    if stores:
        await store_batch(node, newcomer, stores)
    await handoff_providers(node, newcomer)  # provider sets (issue 17)
    return len(stores)
