"""What a node's upkeep should do, decided without I/O (paper sections 2.3 to 2.5).

The Trio tasks in ``_maintenance`` and the node in ``_node`` only send what
these functions decide: which pairs to replicate and to whom, which pairs a
newcomer should be handed, how long a pair or a cached copy has left, whether
this node is among the k closest to a key, which ids refresh a bucket, and how
a batch of STOREs is cut into messages. Like rust-libp2p's ``jobs.rs``, they
take the table, the records and ``now`` (and ``rng``) as arguments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._ids import Contact, count_nearer, distance, random_id_at_distance
from ._messages import MAX_BATCH_PAIRS, Store
from ._records import Record
from ._routing import RoutingTable

CACHE_HORIZON = 32
"""Contacts beyond the k closest that shorten a cached copy's life (``cache_ttl``)."""

BATCH_PAIR_OVERHEAD = 64
"""Bytes counted per pair in a ``store_many`` batch besides its value: key, ttl, CBOR framing."""


def ttl_left(record: Record, now: float) -> int:
    """Whole seconds ``record`` has left at ``now`` (rounded up), 0 once it has expired."""
    return max(0, math.ceil(record.expires_at - now))


def among_closest(node_id: bytes, key: bytes, others: Iterable[Contact], k: int) -> bool:
    """Is ``node_id`` among the ``k`` closest to ``key``, given the ``others`` known?

    The one rule for "should this node hold the pair" (paper 2.3 and 2.5): fewer
    than ``k`` of ``others`` are nearer to ``key`` than ``node_id`` is.
    """
    return count_nearer(others, key, distance(node_id, key)) < k


def cache_ttl(node_id: bytes, key: bytes, ttl: float, known: Iterable[Contact], k: int) -> float:
    """How long ``node_id`` keeps a cached copy of a pair that has ``ttl`` left (paper 2.3).

    Exponentially inversely proportional to the number of nodes between it and
    the closest to the key, counted among the ``known`` contacts (the table's
    ``k + CACHE_HORIZON`` closest): each one beyond the k that hold the pair
    halves the time, and a cached copy always lives at most half as long as
    the original.
    """
    nearer = count_nearer(known, key, distance(node_id, key))
    return ttl * 0.5 ** (1 + max(0, nearer - k))


def refresh_targets(
    node_id: bytes, ranges: Iterable[tuple[int, int]], rng: random.Random
) -> list[bytes]:
    """One random id per ``(low, high)`` distance range: looking it up refreshes that bucket."""
    return [random_id_at_distance(node_id, low, high, rng) for low, high in ranges]


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    """How one refresh round refreshes the stale buckets (paper 2.3), cheapest way first.

    Each ask is one FIND_NODE to contacts the table holds, whose replies name
    what a lookup would find; the nodes named that the table lacks and has room
    for are then pinged, so those that answer go in. A lookup is left for
    ranges with no contact to ask, or when every contact asked failed.
    """

    asks: list[tuple[list[Contact], bytes]]
    """Contacts to ask for a ``target``, at once: the ``alpha`` closest for the own id
    (every stale bucket of the own neighbourhood), the least recently seen contact
    of each other bucket for a random id in it."""
    lookups: list[bytes]
    """Random ids in the stale buckets that hold no contact: look them up."""


def refresh_plan(
    table: RoutingTable, stale: Iterable[tuple[int, int]], alpha: int, rng: random.Random
) -> RefreshPlan:
    """The cheapest refresh of each ``(low, high)`` stale range that finds what a lookup would.

    Stale ranges in the own bucket or below the distance of the k-th closest
    contact (``RoutingTable.neighbourhood_radius``), however many relaxed
    splits (paper 4.2) cut them into, share one ask of the own id to the
    ``alpha`` closest contacts: each knows its own neighbourhood, which is this
    one's (paper 4.2), and replies with the k closest it knows, as the last
    round of a lookup of the own id would. Any other bucket asks its least
    recently seen contact (the likeliest to have left, section 2.2: the ask
    checks it too, and if it fails the range gets a lookup) for a random id
    in its range: all the range's nodes
    are nearer to that contact and to the id than any node outside the range,
    so when the range holds fewer than k nodes the reply names every one a
    lookup would find, and when it holds more, k to fill the bucket with (a
    full bucket then has nothing to add: the ask shows that its range still
    answers, and its contacts are kept by traffic, section 2.2).
    """
    radius = table.neighbourhood_radius()
    own = False
    asks: list[tuple[list[Contact], bytes]] = []
    lookups: list[bytes] = []
    for low, high in stale:
        if low == 0 or high <= radius:
            own = True
            continue
        target = random_id_at_distance(table.own_id, low, high, rng)
        bucket = table.bucket_for(target)
        if len(bucket):
            asks.append(([bucket.contacts[0]], target))
        else:
            lookups.append(target)
    if own:
        closest = table.closest(table.own_id, alpha)
        if closest:
            asks.insert(0, (closest, table.own_id))
        else:
            lookups.insert(0, table.own_id)
    return RefreshPlan(asks, lookups)


def strangers(table: RoutingTable, contacts: Iterable[Contact]) -> list[Contact]:
    """The ``contacts`` the table lacks and has room for: new nodes worth a ping.

    Room is a bucket that is not full, or the own bucket, which splits when full.
    """
    own_id = table.own_id
    found = []
    for contact in contacts:
        if contact.node_id == own_id or contact.node_id in table:
            continue
        bucket = table.bucket_for(contact.node_id)
        if not bucket.full or bucket.low == 0:
            found.append(contact)
    return found


def far_buckets(table: RoutingTable) -> list[tuple[int, int]]:
    """Distance ranges of every bucket but the own one: a joining node refreshes these (2.3)."""
    return [(b.low, b.high) for b in table.buckets if b.low != 0]


def _replica(record: Record, now: float) -> Store | None:
    """The STORE that passes ``record`` on with its remaining life; None for a cached copy.

    Cached copies are never passed on (paper 2.3), and expired pairs are gone.
    The publication time goes along unchanged, so the newer pair wins everywhere.
    """
    if record.cached:
        return None
    ttl = ttl_left(record, now)
    if ttl <= 0:
        return None
    return Store(
        record.key, record.value, ttl=ttl, signed=record.signed, published=record.published
    )


def replication_plan(
    table: RoutingTable, records: Iterable[Record], now: float, interval: float
) -> dict[Contact, list[Store]]:
    """Which held pairs to re-send this round, grouped by the peer to send them to.

    A pair stored within the last ``interval`` is skipped: another holder has
    just replicated it (paper 2.5), and doing it again would only double the
    traffic. A node among the k closest knows the others from its own table
    (relaxed splitting keeps its neighbourhood complete, paper 4.2), so its
    pairs go to them grouped per peer, no lookup needed.

    A pair this node is no longer among the k closest to is not re-sent, not
    even its own: the nodes that took its place were handed it when they
    appeared (``handoff_stores``), the k closest replicate it among themselves
    every hour, and its publisher republishes it every tRepublish. Re-sending
    it would cost a lookup and k STOREs per pair per hour for pairs the k
    closest already hold.
    """
    k = table.k
    recently = now - interval
    per_peer: dict[Contact, list[Store]] = {}
    for record in records:
        if record.stored_at > recently:
            continue
        store = _replica(record, now)
        if store is None:
            continue
        closest = table.closest(record.key, k)
        if among_closest(table.own_id, record.key, closest, k):
            for contact in closest[: k - 1]:
                per_peer.setdefault(contact, []).append(store)
    return per_peer


def stand_ins(
    table: RoutingTable, plan: dict[Contact, list[Store]], failed: Iterable[bytes]
) -> dict[Contact, list[Store]]:
    """Where the pairs of a replication ``plan`` go in place of the peers that ``failed``.

    Each pair a failed peer did not take goes to the closest contact of the
    table that was not sent it, so the pair still reaches k live holders
    (what the paper's lookup before each replication would find) without a
    lookup. Failed peers may still be in the table (one failure does not
    evict); they are skipped.
    """
    failed_ids = set(failed)
    if not failed_ids:
        return {}
    sent: dict[bytes, set[bytes]] = {}
    for contact, stores in plan.items():
        for store in stores:
            sent.setdefault(store.key, {table.own_id}).add(contact.node_id)
    extra: dict[Contact, list[Store]] = {}
    for contact, stores in plan.items():
        if contact.node_id not in failed_ids:
            continue
        for store in stores:
            had = sent[store.key]
            wanted = table.k + len(had)
            for candidate in table.closest(store.key, wanted, exclude=failed_ids):
                if candidate.node_id not in had:
                    had.add(candidate.node_id)
                    extra.setdefault(candidate, []).append(store)
                    break
    return extra


def handoff_stores(
    table: RoutingTable, records: Iterable[Record], newcomer: Contact, now: float
) -> list[Store]:
    """The pairs the table's owner should hand to ``newcomer`` (paper 2.5).

    The newcomer gets a pair when it is among the k closest to the key. Only the
    holder closest to the key hands it over, so a join costs one STORE per pair
    rather than k of them.
    """
    stores: list[Store] = []
    for record in records:
        store = _replica(record, now)
        if store is not None and hands_over(table, record.key, newcomer):
            stores.append(store)
    return stores


def hands_over(table: RoutingTable, key: bytes, newcomer: Contact) -> bool:
    """Should the table's owner, holding ``key``, hand it to ``newcomer`` (paper 2.5)?

    When the newcomer is among the k closest to the key and no holder the
    table knows is closer to the key than the owner (that one hands it over).
    """
    k = table.k
    others = table.closest(key, k, exclude={newcomer.node_id})
    if others and distance(others[0].node_id, key) < distance(table.own_id, key):
        return False  # a closer holder will hand it over
    # This node holds the key too, so the newcomer competes for k - 1 places.
    return among_closest(newcomer.node_id, key, others, k - 1)


def leave_plan(
    table: RoutingTable, records: Iterable[Record], now: float
) -> dict[Contact, list[Store]]:
    """What a node leaving for good hands over, grouped by the peer to send it to.

    For each pair this node is among the k closest to, the k-th closest other
    contact is the one that takes its place among the k holders: the closest
    that lacks the pair. Pairs it is not among the k closest to are held
    by those k already; cached copies are not passed on (paper 2.3).
    """
    k = table.k
    plan: dict[Contact, list[Store]] = {}
    for record in records:
        store = _replica(record, now)
        if store is None:
            continue
        others = table.closest(record.key, k)
        if len(others) == k and among_closest(table.own_id, record.key, others, k):
            plan.setdefault(others[-1], []).append(store)
    return plan


def batches(stores: Sequence[Store], max_bytes: int) -> list[list[Store]]:
    """``stores`` cut into runs of at most ``MAX_BATCH_PAIRS`` pairs and about ``max_bytes``.

    A value larger than ``max_bytes`` still travels, alone.
    """
    cut: list[list[Store]] = []
    batch: list[Store] = []
    size = 0
    for store in stores:
        cost = len(store.value) + BATCH_PAIR_OVERHEAD
        if batch and (len(batch) == MAX_BATCH_PAIRS or size + cost > max_bytes):
            cut.append(batch)
            batch, size = [], 0
        batch.append(store)
        size += cost
    if batch:
        cut.append(batch)
    return cut
