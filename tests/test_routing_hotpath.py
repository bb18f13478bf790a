"""The routing table's hot paths give the same answers as the general code.

``update`` of a candidate already in a replacement cache takes a short path when the
outcome is certain (``_reseen_replacement``); ``closest`` sorts buckets on cached,
shortened keys. A table with the short path turned off must end every sequence of
operations in the same state as one with it, and ``closest`` must agree with sorting
every contact.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings, target
from hypothesis import strategies as st

from trio_kad._ids import ID_BITS, ID_SPACE, Contact, distance, id_to_int, int_to_id
from trio_kad._routing import (
    Added,
    Ignored,
    PingOldest,
    RoutingTable,
    Updated,
    UpdateResult,
)

OWN = int_to_id(0x5A5A << (ID_BITS - 16))
FAR = 2**255  # distances from here on: the far half, a bucket that fills and may not split


def at_distance(d: int) -> bytes:
    return int_to_id(id_to_int(OWN) ^ d)


class SlowTable(RoutingTable):
    """The reference: every re-seen candidate goes down the general path."""

    def _reseen_replacement(self, *args: Any) -> UpdateResult | None:
        return None


class CountingTable(RoutingTable):
    """The table as shipped, counting the updates the short path answered."""

    hits = 0

    def _reseen_replacement(self, *args: Any) -> UpdateResult | None:
        result = super()._reseen_replacement(*args)
        if result is not None:
            self.hits += 1
        return result


def state(table: RoutingTable) -> object:
    """Everything ``update`` may change, in order (replacement entries included)."""
    return (
        [
            (
                b.low,
                b.high,
                b.last_touched,
                b.entries,
                b.replacements,
                [(e.contact, e.last_seen, e.failures, e.group) for e in b._replacements],
            )
            for b in table.buckets
        ],
        len(table),
        sorted(table._cached),
        list(table._bans.items()),
    )


def check_closest(table: RoutingTable, target_id: bytes, count: int, excluded: set[bytes]) -> None:
    everyone = sorted(table.contacts(), key=lambda c: distance(c.node_id, target_id))
    expected = [c for c in everyone if c.node_id not in excluded][:count]
    assert table.closest(target_id, count, exclude=excluded) == expected
    assert table.closest(target_id, count, exclude=frozenset(excluded)) == expected
    assert table.closest(target_id, count, exclude=list(excluded)) == expected
    assert table.closest(target_id, count) == everyone[:count]


def check_cache_shares(table: RoutingTable, cap: int | None) -> None:
    # What the short path relies on instead of counting: no group over its share of a cache.
    if cap is None:
        return
    for b in table.buckets:
        groups = [e.group for e in b._replacements if e.group is not None]
        assert all(groups.count(g) <= cap for g in groups)


# Several /24s and /48s, an exempt loopback, a DNS name (not limited).
HOSTS = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.1.1",
    "10.0.2.1",
    "127.0.0.1",
    "2001:db8::1",
    "2001:db8:0:1::1",
    "node.example",
]

# Near ids first (splits of the own bucket; once k of them are in, the far buckets may
# not split), then far ones (a full bucket with a busy cache), random ones, the own id.
pools = st.tuples(
    st.lists(st.integers(1, 2**12), max_size=5),
    st.lists(st.integers(FAR, FAR + 2**8), min_size=1, max_size=8),
    st.lists(st.integers(1, ID_SPACE - 1), max_size=3),
    st.lists(st.just(0), max_size=1),
).map(lambda parts: list(dict.fromkeys(d for part in parts for d in part)))
picks = st.integers(0, 13)
updates = st.tuples(st.just("update"), picks, st.integers(0, len(HOSTS) - 1), st.integers(1, 2))
operations = st.lists(
    st.one_of(
        updates,  # mostly updates: contacts seen again and again
        updates,
        updates,
        updates,
        updates,
        st.tuples(st.just("fail"), picks),
        st.tuples(st.just("remove"), picks),
        st.tuples(st.just("ban"), picks, st.integers(0, 4)),
        st.tuples(st.just("closest"), st.integers(0, ID_SPACE - 1), st.integers(0, 25), picks),
    ),
    min_size=10,
    max_size=100,
)


@settings(max_examples=200, deadline=None)
@given(
    pool=pools,
    ops=operations,
    k=st.integers(1, 4),
    cache_size=st.integers(0, 3),
    cap=st.sampled_from([None, 1, 2]),
    max_failures=st.integers(1, 3),
    max_bans=st.integers(1, 3),
)
def test_short_path_ends_in_the_same_state(
    pool: list[int],
    ops: list[tuple[Any, ...]],
    k: int,
    cache_size: int,
    cap: int | None,
    max_failures: int,
    max_bans: int,
) -> None:
    options: dict[str, Any] = {
        "k": k,
        "replacement_cache_size": cache_size,
        "max_per_subnet": cap,
        "max_failures": max_failures,
        "max_bans": max_bans,
        "exempt": ["127.0.0.0/8"],
    }
    fast, slow = CountingTable(OWN, **options), SlowTable(OWN, **options)
    ids = [at_distance(d) for d in pool]
    now = 0.0
    for i, node_id in enumerate(ids):  # everyone offered once, in order
        c = Contact(node_id, HOSTS[i % len(HOSTS)], 1)
        assert fast.update(c, now) == slow.update(c, now)
    for op in ops:
        now += 1.0
        node_id = ids[op[1] % len(ids)]
        if op[0] == "update":
            c = Contact(node_id, HOSTS[op[2]], op[3])
            assert fast.update(c, now) == slow.update(c, now)
        elif op[0] == "fail":
            assert fast.mark_failed(node_id) == slow.mark_failed(node_id)
        elif op[0] == "remove":
            assert fast.remove(node_id) == slow.remove(node_id)
        elif op[0] == "ban":
            assert fast.ban(node_id, now + op[2]) == slow.ban(node_id, now + op[2])
        else:
            _, t, count, pick = op
            target_id = int_to_id(t)
            excluded = {ids[pick % len(ids)], at_distance(FAR + 2**9)}  # one maybe in, one not
            check_closest(fast, target_id, count, excluded)
            assert fast.closest(target_id, count) == slow.closest(target_id, count)
        assert state(fast) == state(slow)
        check_cache_shares(fast, cap)
    event(f"short path used: {fast.hits > 0}")
    target(float(fast.hits), label="updates answered by the short path")


# --- the short path, case by case ---------------------------------------------------


def far_table(cap: int | None = 1) -> tuple[CountingTable, list[Contact]]:
    """k = 2: two near contacts (so the far half may not split), then a full far bucket."""
    table = CountingTable(OWN, k=2, replacement_cache_size=3, max_per_subnet=cap)
    members = [
        Contact(at_distance(1), "10.0.8.1", 1),
        Contact(at_distance(2), "10.0.9.1", 1),
        Contact(at_distance(FAR + 1), "10.0.1.1", 1),
        Contact(at_distance(FAR + 2), "10.0.2.1", 1),
    ]
    for i, c in enumerate(members):
        table.update(c, float(i))
    assert table.bucket_for(at_distance(FAR)).contacts == members[2:]
    return table, members


def test_reseen_stranger_takes_the_short_path_and_moves_last() -> None:
    table, members = far_table()
    first = Contact(at_distance(FAR + 100), "192.0.2.1", 1)
    second = Contact(at_distance(FAR + 101), "198.51.100.1", 1)
    oldest = members[2]
    assert table.update(first, 10.0) == PingOldest(oldest)
    assert table.update(second, 11.0) == PingOldest(oldest)
    assert table.hits == 0
    moved = Contact(first.node_id, first.host, 2)  # same host, another port
    assert table.update(moved, 12.0) == PingOldest(oldest)
    assert table.update(moved, 13.0) == PingOldest(oldest)  # already last
    assert table.hits == 2
    assert table.bucket_for(first.node_id).replacements == [second, moved]
    # Promoted when the oldest fails, it keeps the time it was last seen.
    assert table.mark_failed(oldest.node_id) == oldest
    info = table.info(first.node_id)
    assert info is not None and info.contact == moved and info.last_seen == 13.0
    assert info.failures == 0


def test_short_path_steps_aside_for_another_host() -> None:
    table, _ = far_table()
    stranger = Contact(at_distance(FAR + 100), "192.0.2.1", 1)
    assert isinstance(table.update(stranger, 10.0), PingOldest)
    elsewhere = Contact(stranger.node_id, "10.0.1.7", 1)  # the /24 of a member, at its share
    assert table.update(elsewhere, 11.0) == Ignored("subnet full")
    assert table.bucket_for(stranger.node_id).replacements == []
    assert table.hits == 0


def test_short_path_sees_a_group_fill_up_and_a_bucket_with_room() -> None:
    table, members = far_table(cap=1)
    m1, m2 = members[2:]
    # Both fail once while nothing waits to replace them: they stay, free to move.
    assert table.mark_failed(m1.node_id) is None
    assert table.mark_failed(m2.node_id) is None
    s1 = Contact(at_distance(FAR + 100), "192.0.2.1", 1)
    assert table.update(s1, 10.0) == PingOldest(m1)
    assert table.update(s1, 11.0) == PingOldest(m1)
    assert table.hits == 1
    # m1 moves into s1's /24, which is now at its share of the bucket.
    assert table.update(Contact(m1.node_id, "192.0.2.9", 1), 12.0) == Updated()
    assert table.bucket_for(s1.node_id).entries[-1].contact.host == "192.0.2.9"
    assert table.update(s1, 13.0) == Ignored("subnet full")
    assert table.hits == 1
    assert table.bucket_for(s1.node_id).replacements == []
    # Same again with m2, then m1 leaves: s2 may not take its place (its group is
    # full), so the bucket has room and a candidate at once.
    s2 = Contact(at_distance(FAR + 101), "203.0.113.1", 1)
    assert table.update(s2, 14.0) == PingOldest(m2)
    assert table.update(s2, 15.0) == PingOldest(m2)
    assert table.hits == 2
    assert table.update(Contact(m2.node_id, "203.0.113.9", 1), 16.0) == Updated()
    assert table.remove(m1.node_id) is not None
    bucket = table.bucket_for(s2.node_id)
    assert len(bucket) == 1 and bucket.replacements == [s2]
    assert table.update(s2, 17.0) == Ignored("subnet full")
    assert table.hits == 2


def test_short_path_steps_aside_when_the_bucket_may_split_again() -> None:
    table, members = far_table(cap=None)
    stranger = Contact(at_distance(FAR), "10.0.3.1", 1)  # nearer than both far members
    assert table.update(stranger, 10.0) == PingOldest(members[2])
    # Without the near contacts it is among the k closest: relaxed splitting takes it.
    table.remove(members[0].node_id)
    table.remove(members[1].node_id)
    assert table.update(stranger, 11.0) == Added()
    assert table.hits == 0
    assert stranger.node_id in table


# --- closest: the shortened sort keys -------------------------------------------------


def test_closest_with_ids_that_share_their_leading_bits() -> None:
    # Far ids that differ only in their last bits: their shortened keys collide, so the
    # bucket sorts on whole ids; random far ids keep the short keys.
    table = RoutingTable(OWN, k=4)
    near = [at_distance(d) for d in (1, 2, 3, 4)]
    clustered = [at_distance(FAR + d) for d in (5, 9, 12, 3)]
    spread = [at_distance(FAR + (d << 225)) for d in (1, 7, 300, 2**29)]
    for i, node_id in enumerate(near + clustered):
        table.update(Contact(node_id, "10.0.0.1", 1), float(i))
    shared = table.bucket_for(clustered[0])
    other = RoutingTable(OWN, k=4)
    for i, node_id in enumerate(near + spread):
        other.update(Contact(node_id, "10.0.0.1", 1), float(i))
    for t in (0, 1, FAR, FAR + 6, FAR + 2**100, ID_SPACE - 1):
        target_id = at_distance(t)
        for count in (1, 2, 5, 8, 20):
            for excluded in (set(), {clustered[3]}, {clustered[0], near[0]}, {spread[1]}):
                check_closest(table, target_id, count, excluded)
                check_closest(other, target_id, count, excluded)
    assert (shared._near_mask, shared._near_shift) == (-1, 0)  # whole ids
    assert other.bucket_for(spread[0])._near_shift > 0  # shortened keys
