"""The upkeep decisions, tested without Trio: plain sync tests over a routing table and records."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from trio_kad._duties import (
    RefreshPlan,
    among_closest,
    batches,
    cache_ttl,
    far_buckets,
    handoff_stores,
    leave_plan,
    refresh_plan,
    refresh_targets,
    replication_plan,
    stand_ins,
    strangers,
    ttl_left,
)
from trio_kad._ids import Contact, distance, id_to_int, int_to_id
from trio_kad._messages import MAX_BATCH_PAIRS, Store
from trio_kad._records import Record
from trio_kad._routing import RoutingTable

ids = st.binary(min_size=32, max_size=32)
HOUR = 3600.0


def contact(node_id: bytes, n: int = 0) -> Contact:
    return Contact(node_id, f"10.{n // 250 % 250}.{n % 250}.1", 4000)


def table_with(own: bytes, others: list[bytes], k: int) -> RoutingTable:
    table = RoutingTable(own, k=k)
    for n, node_id in enumerate(others):
        table.update(contact(node_id, n), 0.0)
    return table


def near(key: bytes, bits: int) -> bytes:
    """An id at distance ``bits`` from ``key``."""
    return int_to_id(id_to_int(key) ^ bits)


def record(key: bytes, *, stored_at: float = 0.0, expires_at: float = 10 * HOUR) -> Record:
    return Record(key, b"\x01", stored_at=stored_at, expires_at=expires_at)


# --- remaining life --------------------------------------------------------------------


@given(st.floats(0, 1e6), st.floats(0, 1e6))
def test_ttl_left_rounds_up_and_stops_at_zero(expires_at: float, now: float) -> None:
    left = ttl_left(record(b"\x00" * 32, expires_at=expires_at), now)
    assert left >= 0
    if expires_at > now:
        assert left >= 1 and left - 1 < expires_at - now <= left
    else:
        assert left == 0


# --- "am I among the k closest" --------------------------------------------------------


@given(ids, ids, st.lists(ids, max_size=12, unique=True), st.integers(1, 8))
def test_among_closest_matches_a_sort(
    node_id: bytes, key: bytes, others: list[bytes], k: int
) -> None:
    everyone = sorted({node_id, *others}, key=lambda i: distance(i, key))
    expected = everyone.index(node_id) < k
    assert among_closest(node_id, key, [contact(o) for o in others if o != node_id], k) == expected


# --- cached copies (paper 2.3) ---------------------------------------------------------


def test_a_cached_copy_lives_half_as_long_then_halves_per_node_beyond_k() -> None:
    key = b"\x00" * 32
    own = near(key, 1 << 20)
    k = 3
    close = [contact(near(key, i)) for i in range(1, k + 1)]  # k nodes nearer than own
    farther = [contact(near(key, 1 << 30))]
    assert cache_ttl(own, key, HOUR, close + farther, k) == HOUR / 2
    more = close + [contact(near(key, 100 + i)) for i in range(2)]  # two beyond the k
    assert cache_ttl(own, key, HOUR, more, k) == HOUR / 8
    assert cache_ttl(own, key, HOUR, [], k) == HOUR / 2


# --- refreshing buckets ----------------------------------------------------------------


@given(ids, st.integers(0, 255), st.integers(0, 2**32))
def test_refresh_targets_fall_in_their_ranges(own: bytes, bit: int, seed: int) -> None:
    ranges = [(1 << bit, 1 << (bit + 1)), (0, 1)]
    targets = refresh_targets(own, ranges, random.Random(seed))
    assert len(targets) == 2
    for target, (low, high) in zip(targets, ranges, strict=True):
        assert low <= distance(own, target) < high
    assert targets == refresh_targets(own, ranges, random.Random(seed))


def test_far_buckets_are_all_but_the_own() -> None:
    own = b"\x00" * 32
    table = table_with(own, [near(own, 1 << i) for i in range(0, 256, 3)], k=2)
    assert len(table.buckets) > 1
    ranges = far_buckets(table)
    assert len(ranges) == len(table.buckets) - 1
    assert all(low != 0 for low, _ in ranges)


# --- replication (paper 2.5) -----------------------------------------------------------


def test_replication_groups_near_pairs_per_peer_and_leaves_far_ones() -> None:
    k = 3
    own = b"\x00" * 32
    near_key = near(own, 1)
    far_key = b"\xff" * 32
    # Three contacts nearer to far_key than this node; close to near_key, only this node.
    others = [near(far_key, i) for i in range(1, 4)] + [near(own, 1 << 200)]
    table = table_with(own, others, k)
    records = [
        record(near_key),
        record(far_key),
        # Its own pair too: the k closest hold it, its publisher republishes it daily.
        Record(near(far_key, 9), b"p", stored_at=0.0, expires_at=10 * HOUR, publisher=True),
        Record(near(own, 2), b"c", stored_at=0.0, expires_at=10 * HOUR, cached=True),
        record(near(own, 3), expires_at=HOUR),  # expired at 2 h
        record(near(own, 4), stored_at=1.5 * HOUR),  # stored within the interval
    ]
    plan = replication_plan(table, records, 2 * HOUR, HOUR)
    assert len(plan) == k - 1
    assert all([s.key for s in stores] == [near_key] for stores in plan.values())
    assert all(s.ttl == int(8 * HOUR) for stores in plan.values() for s in stores)


def test_nothing_to_replicate_from_an_empty_store() -> None:
    assert replication_plan(table_with(b"\x00" * 32, [], 3), [], 0.0, HOUR) == {}


def test_a_failed_holders_pairs_go_to_the_next_closest() -> None:
    k = 3
    own = b"\x00" * 32
    key = near(own, 1)
    # Nearest the key after this node: 2, 3, then 4 and 5.
    table = table_with(own, [near(key, d) for d in (2, 3, 4, 5)], k)
    plan = replication_plan(table, [record(key)], 2 * HOUR, HOUR)
    assert sorted(distance(c.node_id, key) for c in plan) == [
        distance(near(key, d), key) for d in (2, 3)
    ]
    gone = near(key, 2)
    extra = stand_ins(table, plan, [gone])
    assert [(c.node_id, [s.key for s in stores]) for c, stores in extra.items()] == [
        (near(key, 4), [key])
    ]
    assert stand_ins(table, plan, []) == {}
    # With every other contact failed or already sent it, there is nobody left.
    assert stand_ins(table, plan, [near(key, d) for d in (2, 3, 4, 5)]) == {}


# --- refresh: the own neighbourhood in one lookup (paper 2.3, 4.2) ---------------------


def test_stale_ranges_in_the_own_neighbourhood_share_one_ask() -> None:
    own = b"\x00" * 32
    # The 2 closest at distances 1 and 2; 3 splits the own bucket into [0, 2) and [2, 4).
    others = [near(own, 1), near(own, 2), near(own, 3), near(own, 1 << 255), near(own, 1 << 100)]
    table = table_with(own, others, 2)
    assert table.neighbourhood_radius() == 3
    stale = [(b.low, b.high) for b in table.buckets]
    assert (0, 2) in stale and (2, 4) in stale
    plan = refresh_plan(table, stale, 2, random.Random(1))
    # First the own id, of the alpha (2) closest: it covers [0, 2), the own bucket.
    (first, target), *others_asked = plan.asks
    assert target == own and [distance(c.node_id, own) for c in first] == [1, 2]
    # Beyond the radius: [2, 4) (2 was seen before 3) and the far contacts' buckets ask
    # their oldest contact; the empty buckets between need a lookup each.
    beyond = [(low, high) for low, high in stale if low >= 2]
    assert len(others_asked) + len(plan.lookups) == len(beyond)
    assert sorted(distance(c.node_id, own) for (c,), _ in others_asked) == [2, 1 << 100, 1 << 255]
    without_own = refresh_plan(table, beyond, 2, random.Random(1))
    assert all(t != own for _, t in without_own.asks)
    assert len(without_own.lookups) == len(plan.lookups)


@given(st.lists(st.integers(1, 2**256 - 1), max_size=40), st.integers(1, 5), st.integers())
def test_each_stale_range_gets_its_cheapest_refresh(
    distances: list[int], k: int, seed: int
) -> None:
    own = b"\x00" * 32
    table = table_with(own, [int_to_id(d) for d in distances], k)
    radius = table.neighbourhood_radius()
    stale = [(b.low, b.high) for b in table.buckets]
    plan = refresh_plan(table, stale, 3, random.Random(seed))
    beyond = [(low, high) for low, high in stale if low != 0 and high > radius]
    targets = [t for _, t in plan.asks] + plan.lookups
    assert targets.count(own) == 1  # the own bucket is always stale here
    assert len(targets) == len(beyond) + 1
    for asked, target in plan.asks:
        if target == own:
            assert asked == table.closest(own, 3)
        else:
            assert asked == [table.bucket_for(target).contacts[0]]  # the least recently seen
    assert all(not len(table.bucket_for(t)) for t in plan.lookups if t != own)


def test_a_table_with_fewer_than_k_contacts_is_all_neighbourhood() -> None:
    own = b"\x00" * 32
    table = table_with(own, [near(own, 1 << 255)], 3)
    plan = refresh_plan(table, [(b.low, b.high) for b in table.buckets], 3, random.Random(2))
    assert [(len(c), t) for c, t in plan.asks] == [(1, own)] and plan.lookups == []
    empty = RoutingTable(own, k=3)
    assert refresh_plan(empty, [(0, 2**256)], 3, random.Random(2)) == RefreshPlan([], [own])


def test_strangers_are_the_unknown_nodes_the_table_has_room_for() -> None:
    own = b"\x00" * 32
    far_ = [near(own, (1 << 255) + i) for i in range(4)]
    # Two near contacts fill the own bucket; far_[0] splits it off the far half.
    table = table_with(own, [near(own, 1), near(own, 2), far_[0]], 2)
    named = [contact(i, n) for n, i in enumerate([*far_, near(own, 3), own])]
    # far_[0] is known, own is not a stranger; the far bucket has room, and the own
    # bucket, full, would split for a newcomer.
    assert [c.node_id for c in strangers(table, named)] == [*far_[1:], near(own, 3)]
    table.update(contact(far_[1], 9), 0.0)  # the far bucket is full now
    assert [c.node_id for c in strangers(table, named)] == [near(own, 3)]


# --- handing pairs to a newcomer (paper 2.5) -------------------------------------------


def test_a_newcomer_closer_to_a_key_is_handed_it() -> None:
    k = 3
    key = b"\x00" * 32
    own = near(key, 1 << 8)
    table = table_with(own, [near(key, 1 << 9), near(key, 1 << 10)], k)
    newcomer = contact(near(key, 1), 99)
    stores = handoff_stores(table, [record(key)], newcomer, HOUR)
    assert stores == [Store(key, b"\x01", ttl=int(9 * HOUR))]
    # Not a cached copy, not an expired pair.
    cached = Record(key, b"\x01", stored_at=0.0, expires_at=10 * HOUR, cached=True)
    assert handoff_stores(table, [cached], newcomer, HOUR) == []
    assert handoff_stores(table, [record(key)], newcomer, 11 * HOUR) == []


def test_only_the_closest_holder_hands_a_pair_over() -> None:
    key = b"\x00" * 32
    own = near(key, 1 << 8)
    table = table_with(own, [near(key, 1 << 2)], 3)  # a holder closer than this node
    assert handoff_stores(table, [record(key)], contact(near(key, 1), 99), HOUR) == []


def test_a_newcomer_beyond_the_k_closest_is_handed_nothing() -> None:
    k = 3
    key = b"\x00" * 32
    own = near(key, 1)
    table = table_with(own, [near(key, 2), near(key, 3)], k)
    # This node and the two others are the k closest: the newcomer is farther.
    assert handoff_stores(table, [record(key)], contact(near(key, 1 << 100), 99), HOUR) == []


def test_a_leaving_node_hands_each_pair_to_the_one_that_takes_its_place() -> None:
    k = 3
    key, far_key = b"\x00" * 32, b"\xff" * 32
    own = near(key, 1 << 8)
    others = [near(key, 1 << 9), near(key, 1 << 10), near(key, 1 << 200), near(key, 1 << 201)]
    table = table_with(own, others, k)
    cached = Record(near(key, 5), b"c", stored_at=0.0, expires_at=10 * HOUR, cached=True)
    records = [
        record(key),
        record(far_key),  # three others are nearer: they hold it
        cached,
        record(near(key, 6), expires_at=HOUR),  # expired
    ]
    plan = leave_plan(table, records, 2 * HOUR)
    # The k-th closest other joins the k holders once this node is gone.
    assert plan == {contact(near(key, 1 << 200), 2): [Store(key, b"\x01", ttl=int(8 * HOUR))]}


def test_a_leaving_node_among_fewer_than_k_hands_nothing() -> None:
    # Every other node already holds what this one holds: nobody takes its place.
    table = table_with(b"\x00" * 32, [near(b"\x00" * 32, 1 << 9)], 3)
    assert leave_plan(table, [record(b"\x00" * 32)], HOUR) == {}


# --- batches ---------------------------------------------------------------------------


def test_batches_bound_pairs_and_bytes() -> None:
    small = [Store(int_to_id(i), b"v", ttl=10) for i in range(MAX_BATCH_PAIRS * 2 + 1)]
    assert [len(b) for b in batches(small, 1 << 20)] == [MAX_BATCH_PAIRS, MAX_BATCH_PAIRS, 1]
    big = [Store(int_to_id(i), b"x" * 1000, ttl=10) for i in range(5)]
    # About two values fit in 2,200 bytes; a value larger than the budget still travels alone.
    assert [len(b) for b in batches(big, 2200)] == [2, 2, 1]
    assert [len(b) for b in batches(big, 10)] == [1, 1, 1, 1, 1]
    assert batches([], 100) == []
