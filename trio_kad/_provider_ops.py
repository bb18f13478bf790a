"""Announcing and finding providers over a ``Node`` (Trio; SPEC "Finding peers").

The holder's rules are in ``_providers``; the wire in ``_provider_wire``.
This is the I/O around them: an announcement is a lookup of the topic's key
and an ``add_provider`` to each of the k closest; finding is a lookup whose
every RPC is a ``get_providers``, answered with the holder's entries and its
k closest contacts, so one RPC serves both. Holders replicate their sets to
the current k closest, and announcers re-announce while the node runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import trio

from ._address import ip_group, ip_literal
from ._diversity import NetworkSet
from ._duties import among_closest, hands_over
from ._errors import StoreError
from ._ids import Address, Contact
from ._lookup import Query
from ._messages import (
    MAX_PROVIDER_ENTRIES,
    AddProvider,
    ErrorCode,
    ErrorReply,
    GetProviders,
    ProviderEntry,
    Providers,
    Reply,
    RequestFrame,
    Stored,
    StoreProviders,
)
from ._providers import Provider, ProviderMerge, ProviderRefusal
from ._search import drive_in_parallel, record_lookup, start_lookup

if TYPE_CHECKING:
    from ._node import Node

__all__ = [
    "ProviderServer",
    "announce",
    "find_providers",
    "handoff_providers",
    "iterate_providers",
    "run_provider_upkeep",
    "run_reannounce",
]

log = logging.getLogger("trio_kad.providers")

REPLICATION_PARALLELISM = 8
"""Provider sets being sent at once by one replication round."""


# --- the holder's side ---------------------------------------------------------


class ProviderServer:
    """Answers ``add_provider``, ``get_providers`` and ``store_providers`` for a node."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._exempt = NetworkSet(node.config.per_ip_exempt)

    def _origin(self, host: str) -> str:
        # Entries from an exempt host count toward no per-IP quota.
        return "" if host in self._exempt else ip_group(host)

    def serve(self, frame: RequestFrame, remote: Address) -> Reply:
        """The reply to one provider request from ``remote``."""
        node, body = self._node, frame.body
        now = trio.current_time()
        if isinstance(body, GetProviders):
            entries = node.providers.get(body.key, now, MAX_PROVIDER_ENTRIES)
            closest = node.table.closest(body.key, node.config.k, exclude={frame.sender_id})
            return Providers(tuple(entries), tuple(closest))
        if isinstance(body, AddProvider):
            # The host is where the connection came from: nobody announces someone else.
            host = remote[0]
            refusal = node.providers.add(
                body.key, frame.sender_id, host, body.port, self._origin(host), now
            )
            return _reply(refusal)
        if isinstance(body, StoreProviders):
            k, sender = node.config.k, frame.sender_id
            closest = node.table.closest(body.key, k, exclude={sender})
            if frame.sender_port is None or not among_closest(sender, body.key, closest, k):
                # Only a holder replicates: a listening node among the k closest to the key
                # as far as this node knows, so a far-off liar cannot plant entries.
                return ErrorReply(ErrorCode.UNSUPPORTED, "only the key's holders replicate it")
            # A holder vouches for the hosts it passes on; each entry counts against its
            # announcer's address, as the announcement itself did.
            for entry in body.entries:
                if entry.node_id == node.node_id or ip_literal(entry.host) is None:
                    # This node knows its own announcements best; and an announcement
                    # only ever records an address, so a name is made up.
                    continue
                node.providers.add(
                    body.key,
                    entry.node_id,
                    entry.host,
                    entry.port,
                    self._origin(entry.host),
                    now,
                    ttl=entry.ttl,
                    age=entry.age,
                )
            return Stored()
        return ErrorReply(ErrorCode.UNSUPPORTED, "unknown request")


def _reply(refusal: ProviderRefusal | None) -> Reply:
    return Stored() if refusal is None else ErrorReply(refusal.code, refusal.message)


# --- the announcer's side --------------------------------------------------------


async def announce(node: Node, key: bytes, port: int, own_host: str | None) -> int:
    """Add this node as a provider of ``key`` at the k closest; return the acknowledgements.

    ``own_host``: the address this node listens on, for its own entry when it
    is among the k closest itself (``None`` for a client-only node). Raises
    ``StoreError`` when nobody accepted it.
    """
    outcome = await node.lookup(key)
    targets = outcome.contacts
    acks = 0
    k = node.config.k
    if own_host is not None and among_closest(node.node_id, key, targets, k):
        refusal = node.providers.add(key, node.node_id, own_host, port, "", trio.current_time())
        if refusal is None:
            targets, acks = targets[: k - 1], 1
    request = AddProvider(key, port)

    async def add_at(contact: Contact) -> None:
        nonlocal acks
        if isinstance(await node.rpc(contact, request), Stored):
            acks += 1

    async with trio.open_nursery() as nursery:
        for contact in targets:
            nursery.start_soon(add_at, contact)
    if acks == 0:
        raise StoreError("no node accepted the announcement")
    return acks


async def run_reannounce(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """Announce each topic in ``node.announced`` again every ``provider_reannounce_interval``."""
    interval = node.config.provider_reannounce_interval
    task_status.started()
    while True:
        now = trio.current_time()
        due = [key for key, (_, at) in node.announced.items() if at <= now]
        for key in due:
            port, _ = node.announced[key]
            node.announced[key] = (port, now + interval * node.rng.uniform(0.9, 0.99))
            try:
                await announce(node, key, port, node.own_host)
            except StoreError as exc:
                log.info("re-announcing %s: %s", key.hex()[:12], exc)
            except Exception:
                log.exception("re-announcing %s failed", key.hex()[:12])
        next_at = min((at for _, at in node.announced.values()), default=now + interval)
        await trio.sleep(max(1.0, next_at - trio.current_time()))


# --- the finder's side -------------------------------------------------------------


class _ProviderLookup:
    """One lookup of a topic's key that merges the provider sets it meets."""

    def __init__(self, node: Node, key: bytes, limit: int) -> None:
        self.node = node
        self.request = GetProviders(key)
        self.state, self.started = start_lookup(node, key)
        self.merge = ProviderMerge(limit)

    def local(self) -> list[Provider]:
        """This node's own entries for the key (it may be a holder)."""
        entries = self.node.providers.get(self.state.target, trio.current_time())
        return self._take(entries, self.node.node_id)

    async def ask(self, contact: Contact) -> Reply | None:
        node = self.node
        return await node.rpc(contact, self.request, node.rtt.timeout(contact))

    def absorb(self, contact: Contact, reply: Reply | None) -> list[Provider]:
        """Apply one RPC's outcome; the providers it brought that were not known yet."""
        if not isinstance(reply, Providers):
            self.state.on_failure(contact.node_id)
            return []
        self.state.on_reply(contact.node_id, self.node.addresses.allowed(reply.contacts))
        # Holders record the address an announcement came from: a name was made up.
        entries = (e for e in reply.entries if ip_literal(e.host) is not None)
        return self._take(entries, contact.node_id)

    def _take(self, entries: Iterable[ProviderEntry], holder: bytes) -> list[Provider]:
        new = self.merge.add(entries, holder)
        if self.merge.full:
            self.state.finish()  # enough: ``limit`` providers, each named by two holders
        return new


async def find_providers(node: Node, key: bytes, limit: int) -> list[Provider]:
    """Up to ``limit`` providers of ``key``: distinct by node id (``ProviderMerge``)."""
    search = _ProviderLookup(node, key, limit)
    search.local()
    state = search.state

    def absorb(contact: Contact, reply: Reply | None) -> bool:
        search.absorb(contact, reply)
        return False  # the merge ends the lookup once it is full

    capacity = node.config.alpha * node.config.disjoint_paths
    await drive_in_parallel(state, search.ask, absorb, capacity)
    record_lookup(node, state, search.started)  # Dht.last_lookup: its RPCs and hops
    return search.merge.result()


async def iterate_providers(node: Node, key: bytes, limit: int) -> AsyncIterator[Provider]:
    """Each provider of ``key`` once, as the lookup meets it; one holder asked at a time.

    One RPC at a time needs no task of its own (a nursery cannot stay open
    across a ``yield``), and the first holder asked usually has providers.
    """
    search = _ProviderLookup(node, key, limit)
    found = search.local()
    state = search.state
    state.parallelism = 1
    left = limit
    while True:
        for provider in found[:left]:
            yield provider
        left -= len(found[:left])
        step = state.next() if left > 0 else None
        if not isinstance(step, Query):
            record_lookup(node, state, search.started)
            return
        found = search.absorb(step.contact, await search.ask(step.contact))


# --- upkeep: expiry and replication (paper 2.5, applied to provider sets) ----------


async def run_provider_upkeep(node: Node, *, task_status: trio.TaskStatus[None]) -> None:
    """Sweep expired entries; every ``replicate_interval``, send each set to the k closest."""
    config = node.config
    sweep = min(60.0, config.provider_lifetime / 10)
    next_replication = trio.current_time() + config.replicate_interval
    task_status.started()
    while True:
        await trio.sleep(sweep)
        node.providers.expire(trio.current_time())
        if not node.client_only and trio.current_time() >= next_replication:
            next_replication = trio.current_time() + config.replicate_interval
            try:
                await replicate_providers(node)
            except Exception:
                log.exception("replicating provider sets failed")


async def replicate_providers(node: Node) -> int:
    """Send each provider set this node is among the k closest for to the others; return sets."""
    k = node.config.k
    plan: list[tuple[Contact, StoreProviders]] = []
    sets = 0
    for key, entries in node.providers.items(trio.current_time()):
        closest = node.table.closest(key, k)
        if not among_closest(node.node_id, key, closest, k):
            continue
        sets += 1
        request = StoreProviders(key, tuple(entries[:MAX_PROVIDER_ENTRIES]))
        plan.extend((contact, request) for contact in closest[: k - 1])
    await _send_all(node, plan)
    return sets


async def leave_providers(node: Node) -> int:
    """Leaving for good: send each set this node is among the k closest for to the one
    taking its place, the k-th closest other (as ``_duties.leave_plan`` does for pairs)."""
    k = node.config.k
    plan: list[tuple[Contact, StoreProviders]] = []
    for key, entries in node.providers.items(trio.current_time()):
        others = node.table.closest(key, k)
        if len(others) == k and among_closest(node.node_id, key, others, k):
            plan.append((others[-1], StoreProviders(key, tuple(entries[:MAX_PROVIDER_ENTRIES]))))
    await _send_all(node, plan)
    return len(plan)


async def _send_all(node: Node, plan: list[tuple[Contact, StoreProviders]]) -> None:
    """Send each request of ``plan``, ``REPLICATION_PARALLELISM`` at a time."""
    limiter = trio.CapacityLimiter(REPLICATION_PARALLELISM)

    async def send(contact: Contact, request: StoreProviders) -> None:
        async with limiter:
            await node.rpc(contact, request)

    async with trio.open_nursery() as nursery:
        for contact, request in plan:
            nursery.start_soon(send, contact, request)


async def handoff_providers(node: Node, newcomer: Contact) -> int:
    """Send ``newcomer`` the provider sets it is now among the k closest for; return how many.

    The rule of pairs (``_duties.hands_over``): only the closest holder hands a set over.
    """
    sent = 0
    for key, entries in node.providers.items(trio.current_time()):
        if hands_over(node.table, key, newcomer):
            if await node.rpc(newcomer, StoreProviders(key, tuple(entries))) is None:
                break  # gone: replication catches up
            sent += 1
    return sent
