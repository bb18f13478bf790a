"""The Trio driver of one iterative lookup (paper section 2.3).

``Search`` asks the pure ``_lookup.Lookup`` state machine whom to query, sends
the RPCs through the node, and reports each outcome back. Each RPC waits at
most the adaptive timeout ``node.rtt`` gives its contact when it is sent, so
a dead contact holds a slot for a moment, not ``rpc_timeout``, and a lookup
that began before any reply came (a join) adapts as soon as replies come.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple

import trio

from ._disjoint import DisjointLookup
from ._ids import Contact, distance
from ._lookup import Done, Lookup, Query
from ._messages import FindNode, FindValue, FoundValue, Nodes, Reply, Request, SignedPart
from ._newer import newer
from ._values import acceptable_value

if TYPE_CHECKING:
    from ._node import Node

RECENT_LOOKUPS = 100
"""Lookup reports a node keeps for ``Dht.last_lookup`` and diagnostics."""

NARROW_QUERIES = 2
"""Contacts a value lookup asks one at a time before it widens to ``alpha``.

The value is usually held by the first or second contact asked. A key held
by neither (or by nobody) is then looked up ``alpha`` at a time, rather than
one round trip per contact: at 100 ms round trips, some 20 of them in a row.
"""


@dataclass(frozen=True, slots=True)
class LookupReport:
    """What one iterative lookup cost and found."""

    target: bytes
    rounds: int
    """Hops: the longest chain of referrals from the routing table to an answering node."""
    queries: int
    """RPCs sent."""
    failures: int
    """RPCs that timed out, failed or were answered with an error."""
    duration: float
    """Seconds from start to end (Trio clock)."""
    found_at: Contact | None = None
    """For a value lookup: the node that returned the value."""


@dataclass(frozen=True, slots=True)
class LookupOutcome:
    """The end of a lookup: the closest contacts that answered, and the value if one came."""

    contacts: list[Contact]
    value: bytes | None
    report: LookupReport
    ttl: int | None = None
    """The seconds the value had left at the node that returned it."""
    agreed: int = 0
    """For a value lookup: the distinct holders that returned ``value`` byte for byte (with a
    quorum above 1, those among the k nearest heard from), or, when none reached the quorum
    (``value`` is ``None``), the most that agreed on any value."""
    # Signed records.
    signed: SignedPart | None = None
    """The signature that came with ``value`` (a lookup with a ``rank``)."""
    # --- plain values converge (issue 16)
    published: int = 0
    """The value's publication time (``Store.published``)."""


def start_lookup(node: Node, target: bytes) -> tuple[Lookup | DisjointLookup, float]:
    """The state of a new lookup of ``target`` as ``node``'s Config shapes it, and its start.

    Disjoint paths and bounds from the Config; the bucket of ``target`` counts
    as looked up now (paper 2.3: refresh only buckets nobody looked up).
    """
    config = node.config
    started = trio.current_time()
    node.table.touch(target, started)
    paths = config.disjoint_paths
    # One path is the plain lookup: no bookkeeping of paths on the usual get.
    make: Callable[..., Lookup | DisjointLookup] = (
        Lookup if paths == 1 else partial(DisjointLookup, paths=paths)
    )
    state = make(
        target,
        node.table.closest(target, config.k),
        k=config.k,
        alpha=config.alpha,
        exclude=(node.node_id,),
        max_candidates=config.lookup_max_contacts,
        max_queries=config.lookup_max_rpcs,
    )
    return state, started


def record_lookup(
    node: Node, state: Lookup | DisjointLookup, started: float, found_at: Contact | None = None
) -> LookupReport:
    """The report of a lookup that ended, counted in the node's counters."""
    stats = state.statistics()
    report = LookupReport(
        target=state.target,
        rounds=stats.rounds,
        queries=stats.queries,
        failures=stats.failures,
        duration=trio.current_time() - started,
        found_at=found_at,
    )
    counters = node.counters
    counters.lookups += 1
    counters.lookup_rpcs += stats.queries
    counters.lookup_rounds += stats.rounds
    counters.recent_lookups.append(report)
    del counters.recent_lookups[:-RECENT_LOOKUPS]
    return report


class _Vote(NamedTuple):
    """What one holder returned to a quorum read, and how near the key it is."""

    distance: int
    value: bytes
    contact: Contact | None
    """``None`` for this node's own copy."""
    ttl: int | None
    published: int = 0


class Search:
    """One lookup of ``target`` (a value lookup when ``want_value``) driven over ``node``.

    A value lookup asks one contact at a time, each the closest known, and
    widens to ``alpha`` once a contact fails or is slower than the hedge delay
    (a hedged request), or after ``NARROW_QUERIES`` answers without the value:
    the value is usually held by the first or second contact asked, and then
    costs one or two RPCs rather than alpha per round. The slow contact's RPC
    is dropped and it is asked again among the alpha. Outstanding RPCs are
    cancelled the moment a value arrives.

    With ``Config.disjoint_paths`` above 1 the lookup runs that many disjoint
    paths (``DisjointLookup``), each alpha-parallel from the start.

    With ``quorum`` above 1 a value lookup runs to its end, and only holders
    among the k nodes nearest the key that it heard from have a vote
    (``held``, the local copy, is this node's): the value most of them
    returned, if at least ``quorum`` did. The first holders a lookup meets
    are far from the key, where colluders answering any key with one value
    would otherwise make up the quorum before the holders the value was
    stored at are reached.
    """

    def __init__(
        self,
        node: Node,
        target: bytes,
        *,
        want_value: bool,
        quorum: int = 1,
        held: bytes | None = None,
        rank: Callable[[FoundValue], int | None] | None = None,
        collect: bool = False,
    ) -> None:
        config = node.config
        self._node = node
        self._want_value = want_value
        self._alpha = config.alpha
        self._find_node = FindNode(target)
        self._request: Request = FindValue(target) if want_value else self._find_node
        self._paths = config.disjoint_paths
        self._state, self._started = start_lookup(node, target)
        self._value: bytes | None = None
        self._found_at: Contact | None = None
        self._ttl: int | None = None
        self._published = 0
        # The newest cached copy heard (issue 16): the answer only if no holder of the
        # pair itself answers, since a newer publication may have superseded it.
        self._cached: tuple[FoundValue, Contact] | None = None
        self._quorum = quorum
        self._k = config.k
        # Distinct holders heard from: their vote and where it came from.
        self._holders: dict[bytes, _Vote] = {}
        self._votes: dict[bytes, int] = {}
        if held is not None and acceptable_value(held, config.max_value_size):
            self._holders[node.node_id] = _Vote(distance(node.node_id, target), held, None, None)
            self._votes[held] = 1
        self._rank = rank
        self._collect = collect
        self._best: tuple[int, FoundValue] | None = None

    async def run(self) -> LookupOutcome:
        """Run the lookup to its end and record it in the node's counters."""
        state = self._state
        if self._want_value and self._paths == 1:
            await self._ask_one_at_a_time()
        if not state.done:
            await self._ask_in_parallel()
        if self._quorum > 1:
            vote, agreed = self._count_nearest()
            if vote is not None and agreed >= self._quorum:
                self._value, self._found_at, self._ttl = vote.value, vote.contact, vote.ttl
                self._published = vote.published
        else:
            agreed = max(self._votes.values(), default=0)
            if self._value is None and self._cached is not None:
                self._take(*self._cached)
        report = record_lookup(self._node, state, self._started, self._found_at)
        signed = None if self._best is None else self._best[1].signed
        return LookupOutcome(
            state.closest(),
            self._value,
            report,
            self._ttl,
            agreed,
            signed=signed,
            published=self._published,
        )

    def _take(self, reply: FoundValue, contact: Contact) -> None:
        self._value, self._found_at = reply.value, contact
        self._ttl, self._published = reply.ttl, reply.published

    def _newer_cached(self, reply: FoundValue) -> bool:
        """Is the cached copy heard newer than ``reply`` (``_newer``)?"""
        cached = self._cached
        return cached is not None and newer(
            cached[0].published, cached[0].value, reply.published, reply.value
        )

    def _count_nearest(self) -> tuple[_Vote | None, int]:
        """The value most holders among the k nearest nodes heard from returned, and how many.

        Nodes that answered without the value count among the k nearest, so a
        colluder farther out than they are has no vote. Ties go to the nearest.
        """
        target = self._state.target
        heard = {c.node_id: distance(c.node_id, target) for c in self._state.closest()}
        heard.update((holder, vote.distance) for holder, vote in self._holders.items())
        nearest = heapq.nsmallest(self._k, heard, key=heard.__getitem__)
        votes = sorted(
            (self._holders[n] for n in nearest if n in self._holders), key=attrgetter("distance")
        )
        counts = Counter(vote.value for vote in votes)
        best = max(votes, key=lambda vote: counts[vote.value], default=None)
        return best, 0 if best is None else counts[best.value]

    def _absorb(self, contact: Contact, reply: Reply | None) -> bool:
        """Apply one RPC's outcome to the lookup; True once a value (with its quorum) ends it."""
        state = self._state
        if isinstance(reply, Nodes):
            state.on_reply(contact.node_id, self._node.addresses.allowed(reply.contacts))
            return False
        if isinstance(reply, FoundValue) and self._want_value:
            if not acceptable_value(reply.value, self._node.config.max_value_size):
                # A value no setter could have made: that holder's miss. Nobody is
                # banned for it: the holder may have kept it before STOREs were
                # checked, and who sent it first is not known.
                state.on_reply(contact.node_id, ())
                return False
            if self._rank is not None:
                return self._absorb_ranked(contact, reply, self._rank(reply))
            holder = contact.node_id
            if holder in self._holders:
                # Its vote is counted: a second value from it (to a FIND_NODE) adds nothing.
                state.on_reply(holder, ())
                return False
            self._holders[holder] = _Vote(
                distance(holder, state.target), reply.value, contact, reply.ttl, reply.published
            )
            votes = self._votes[reply.value] = self._votes.get(reply.value, 0) + 1
            if self._quorum == 1:
                state.on_reply(holder, ())
                if reply.cached:
                    # Look on for a holder of the pair itself: keep the newest copy.
                    if self._cached is None or not self._newer_cached(reply):
                        self._cached = (reply, contact)
                    state.parallelism = self._alpha
                    return False
                if self._cached is not None and self._newer_cached(reply):
                    reply, contact = self._cached
                self._take(reply, contact)
                state.finish()
                return True
            # More holders to hear, in parallel. A holder names no contacts, so the
            # holders only it knows would stay unknown: until its value has the
            # quorum, ask it again, for its contacts this time (FIND_NODE).
            state.parallelism = self._alpha
            if votes < self._quorum:
                state.retry(holder)
            else:
                state.on_reply(holder, ())
            return False
        if not isinstance(reply, FoundValue):
            # A failure: the network may be unhealthy here, so widen too.
            state.parallelism = self._alpha
        state.on_failure(contact.node_id)
        return False

    def _absorb_ranked(self, contact: Contact, reply: FoundValue, rank: int | None) -> bool:
        """A value for a lookup with a ``rank``: ``None`` is that holder's miss, else the
        highest rank met is the answer. Ends the lookup unless it ``collect``s to the end."""
        state = self._state
        holder = contact.node_id
        if rank is None or holder in self._holders:
            state.on_reply(holder, ())
            return False
        if self._best is None or rank > self._best[0]:
            self._best = (rank, reply)
            self._value, self._found_at, self._ttl = reply.value, contact, reply.ttl
        if not self._collect:
            state.on_reply(holder, ())
            state.finish()
            return True
        # As for a quorum: hear the rest, and ask this holder for its contacts (FIND_NODE).
        self._holders[holder] = _Vote(distance(holder, state.target), reply.value, contact, None)
        state.parallelism = self._alpha
        state.retry(holder)
        return False

    def _request_for(self, contact: Contact) -> Request:
        """FIND_VALUE (or FIND_NODE), but FIND_NODE to a holder whose value is counted."""
        return self._find_node if contact.node_id in self._holders else self._request

    async def _ask_one_at_a_time(self) -> None:
        """Ask the closest contact from this task until the lookup widens or ends.

        The usual get is one RPC, and a task, a channel and a nursery for it
        would cost three scheduler passes more than the RPC itself.
        """
        state = self._state
        node = self._node
        state.parallelism = 1
        # With alpha 1 there is nobody to hedge with: wait out the RPC.
        hedged = self._alpha > 1
        answered = 0
        while state.parallelism == 1:
            if hedged and answered == NARROW_QUERIES:
                state.parallelism = self._alpha
                return
            step = state.next()
            if not isinstance(step, Query):
                return  # Done: nothing in flight, so never Wait
            reply: Reply | None = None
            contact = step.contact
            request, rtt = self._request_for(contact), node.rtt
            with trio.move_on_after(rtt.hedge_delay(contact) if hedged else math.inf) as hedge:
                reply = await node.rpc(contact, request, rtt.timeout(contact))
            if hedge.cancelled_caught:
                state.retry(contact.node_id)
                state.parallelism = self._alpha
            elif self._absorb(contact, reply):
                return
            else:
                answered += 1

    async def _ask_in_parallel(self) -> None:
        """Drive the lookup with up to ``parallelism`` RPCs at once, each its own task."""
        node = self._node
        request_for, timeout = self._request_for, node.rtt.timeout

        def ask(contact: Contact) -> Awaitable[Reply | None]:
            return node.rpc(contact, request_for(contact), timeout(contact))

        await drive_in_parallel(self._state, ask, self._absorb, self._alpha * self._paths)


async def drive_in_parallel(
    state: Lookup | DisjointLookup,
    ask: Callable[[Contact], Awaitable[Reply | None]],
    absorb: Callable[[Contact, Reply | None], bool],
    capacity: int,
) -> None:
    """Run ``state``'s queries, up to its parallelism at once, each its own task, until it
    is done or ``absorb`` (of each outcome) says to stop. ``capacity``: the most in flight."""
    send, receive = trio.open_memory_channel[tuple[Contact, Reply | None]](capacity)

    async def one(contact: Contact) -> None:
        reply = await ask(contact)
        await send.send((contact, reply))

    # Closed synchronously at the end: `async with` on the channels would cost
    # two checkpoints per lookup for nothing.
    with send, receive:
        async with trio.open_nursery() as nursery:
            while True:
                step = state.next()
                while isinstance(step, Query):
                    nursery.start_soon(one, step.contact)
                    step = state.next()
                if isinstance(step, Done):
                    break
                if absorb(*await receive.receive()):
                    break
            nursery.cancel_scope.cancel()
