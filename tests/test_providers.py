"""The pure provider sets: a holder's bounds and expiry, a finder's merge."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_kad._messages import ErrorCode, ProviderEntry
from trio_kad._providers import Provider, ProviderMerge, ProviderTable

KEY = b"k" * 32
OTHER = b"o" * 32


def node(n: int) -> bytes:
    return n.to_bytes(32, "big")


def table(**bounds: int) -> ProviderTable:
    limits = dict(max_per_topic=4, max_topics=3, max_per_origin=5, max_ids_per_origin=3)
    limits.update(bounds)
    return ProviderTable(lifetime=100.0, **limits)


def test_announcements_are_kept_freshest_first() -> None:
    t = table()
    assert t.add(KEY, node(1), "198.51.100.1", 80, "", now=0.0) is None
    assert t.add(KEY, node(2), "198.51.100.2", 81, "", now=10.0) is None
    entries = t.get(KEY, now=15.0)
    assert [(e.node_id, e.host, e.port, e.age, e.ttl) for e in entries] == [
        (node(2), "198.51.100.2", 81, 5, 95),
        (node(1), "198.51.100.1", 80, 15, 85),
    ]
    assert len(t) == 2 and t.topics == 1
    assert t.get(OTHER, now=15.0) == []


def test_each_entry_expires_on_its_own() -> None:
    t = table()
    t.add(KEY, node(1), "198.51.100.1", 80, "", now=0.0)
    t.add(KEY, node(2), "198.51.100.2", 80, "", now=50.0)
    assert [e.node_id for e in t.get(KEY, now=100.0)] == [node(2)]
    assert t.get(KEY, now=150.0) == []
    assert t.topics == 0 and len(t) == 0


def test_reannouncing_refreshes_the_entry_and_may_change_its_port() -> None:
    t = table()
    t.add(KEY, node(1), "198.51.100.1", 80, "a", now=0.0)
    t.add(KEY, node(1), "198.51.100.1", 8080, "a", now=90.0)
    (entry,) = t.get(KEY, now=150.0)
    assert (entry.port, entry.age, entry.ttl) == (8080, 60, 40)
    assert len(t) == 1


def test_a_full_topic_refuses_newcomers_but_keeps_refreshing_its_members() -> None:
    t = table(max_per_origin=100, max_ids_per_origin=100)
    for n in range(4):
        assert t.add(KEY, node(n), "198.51.100.1", 80, "a", now=0.0) is None
    refusal = t.add(KEY, node(9), "198.51.100.9", 80, "b", now=1.0)
    assert refusal is not None and refusal.code is ErrorCode.OVERLOADED
    assert t.add(KEY, node(0), "198.51.100.1", 80, "a", now=2.0) is None
    assert t.refused["the topic's provider set is full"] == 1
    # Once an entry expires, the newcomer gets its place.
    assert t.add(KEY, node(9), "198.51.100.9", 80, "b", now=100.5) is None


def test_topics_per_node_are_bounded() -> None:
    t = table()
    for n in range(3):
        assert t.add(bytes([n]) * 32, node(1), "198.51.100.1", 80, "", now=0.0) is None
    refusal = t.add(OTHER, node(1), "198.51.100.1", 80, "", now=0.0)
    assert refusal is not None and refusal.code is ErrorCode.OVERLOADED


def test_one_address_has_an_entry_quota_over_all_topics() -> None:
    t = table(max_topics=10, max_ids_per_origin=10)
    for n in range(5):
        assert t.add(bytes([n]) * 32, node(1), "203.0.113.7", 80, "203.0.113.0/24", 0.0) is None
    refusal = t.add(OTHER, node(1), "203.0.113.7", 80, "203.0.113.0/24", now=0.0)
    assert refusal is not None and refusal.code is ErrorCode.OVER_QUOTA
    # Another address is not affected; the exempt origin "" counts toward nothing.
    assert t.add(OTHER, node(2), "198.51.100.1", 80, "198.51.100.0/24", now=0.0) is None
    assert t.add(OTHER, node(3), "127.0.0.1", 80, "", now=0.0) is None


def test_fresh_node_ids_from_one_address_are_bounded() -> None:
    t = table(max_per_topic=50, max_per_origin=50)
    origin = "203.0.113.0/24"
    kept = [t.add(KEY, node(n), "203.0.113.7", 80, origin, now=0.0) is None for n in range(20)]
    assert sum(kept) == 3
    refusal = t.add(KEY, node(99), "203.0.113.8", 80, origin, now=0.0)
    assert refusal is not None and refusal.code is ErrorCode.OVER_QUOTA
    # A known id may announce more topics; honest peers elsewhere still get in.
    assert t.add(OTHER, node(0), "203.0.113.7", 80, origin, now=0.0) is None
    assert t.add(KEY, node(500), "198.51.100.1", 80, "198.51.100.0/24", now=0.0) is None
    assert t.refused["too many node ids from this address"] == 18
    # Expired ids free their places.
    assert t.add(KEY, node(50), "203.0.113.7", 80, origin, now=200.0) is None


def test_nobody_takes_over_an_id_from_another_address() -> None:
    t = table()
    t.add(KEY, node(1), "198.51.100.1", 80, "", now=0.0)
    refusal = t.add(KEY, node(1), "203.0.113.66", 6666, "", now=1.0)
    assert refusal is not None and refusal.code is ErrorCode.PROVIDER_CONFLICT
    assert [(e.host, e.port) for e in t.get(KEY, now=2.0)] == [("198.51.100.1", 80)]


def test_ports_out_of_range_are_refused() -> None:
    t = table()
    for port in (0, 65536, -1):
        refusal = t.add(KEY, node(1), "198.51.100.1", port, "", now=0.0)
        assert refusal is not None and refusal.code is ErrorCode.MALFORMED
    assert len(t) == 0


def test_replicated_entries_keep_their_age_and_never_outlive_the_lifetime() -> None:
    t = table()
    t.add(KEY, node(1), "198.51.100.1", 80, "", now=10.0, ttl=1000.0, age=30.0)
    (entry,) = t.get(KEY, now=10.0)
    assert (entry.age, entry.ttl) == (30, 100)
    # An older copy of the same entry does not make it look older.
    t.add(KEY, node(1), "198.51.100.1", 80, "", now=10.0, ttl=20.0, age=90.0)
    assert t.get(KEY, now=10.0)[0].age == 30


def test_copies_of_copies_never_outlive_the_entry() -> None:
    first, second = table(), table()
    first.add(KEY, node(1), "198.51.100.1", 80, "", now=0.3)
    now = 0.3
    for _ in range(50):  # replicated back and forth, a fraction of a second apart
        now += 0.7
        (entry,) = first.get(KEY, now)
        second.add(KEY, node(1), entry.host, entry.port, "", now, ttl=entry.ttl, age=entry.age)
        first, second = second, first
    assert first.get(KEY, now=100.3) == [] and second.get(KEY, now=100.3) == []


def test_remove_and_sweep() -> None:
    t = table()
    t.add(KEY, node(1), "198.51.100.1", 80, "a", now=0.0)
    t.add(KEY, node(2), "198.51.100.1", 80, "a", now=60.0)
    assert t.remove(KEY, node(1)) and not t.remove(KEY, node(1))
    assert t.expire(now=200.0) == 1 and len(t) == 0
    assert list(t.items(now=200.0)) == []


@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 5), st.integers(0, 4), st.integers(0, 300)),
        max_size=200,
    )
)
def test_bounds_hold_whatever_is_announced(
    announcements: list[tuple[int, int, int, int]],
) -> None:
    t = table(max_per_topic=6, max_topics=4, max_per_origin=9, max_ids_per_origin=4)
    now = 0.0
    for who, topic, origin, step in announcements:
        now += step / 10
        t.add(bytes([topic]) * 32, node(who), f"10.0.{origin}.1", 80, f"o{origin}", now)
        live = dict(t.items(now))
        assert len(live) <= 4
        assert all(len(entries) <= 6 for entries in live.values())
        per_origin: dict[str, set[bytes]] = {}
        count: dict[str, int] = {}
        for key, entries in live.items():
            for e in entries:
                o = t.origin_of(key, e.node_id)
                assert o is not None
                per_origin.setdefault(o, set()).add(e.node_id)
                count[o] = count.get(o, 0) + 1
        assert all(len(ids) <= 4 for ids in per_origin.values())
        assert all(n <= 9 for n in count.values())


def entry(n: int, age: int) -> ProviderEntry:
    return ProviderEntry(node(n), "198.51.100.1", 1000 + n, age, 100)


HONEST, SECOND, LIAR = b"h" * 32, b"s" * 32, b"l" * 32


def test_merge_is_distinct_by_node_id_confirmed_then_freshest() -> None:
    merge = ProviderMerge(limit=3)
    assert [p.node_id for p in merge.add([entry(1, 50), entry(2, 10)], HONEST)] == [
        node(1),
        node(2),
    ]
    # A sighting of a known provider is no new provider; a fresher one lowers its age.
    assert merge.add([entry(1, 5)], SECOND) == []
    assert [p.node_id for p in merge.add([entry(3, 1), entry(4, 0)], HONEST)] == [node(3), node(4)]
    # Four ids known, but only node 1 named by two holders: not enough to stop.
    assert not merge.full
    merge.add([entry(3, 2), entry(4, 3)], SECOND)
    assert merge.full
    assert merge.result() == [
        Provider(node(4), "198.51.100.1", 1004, 0.0),
        Provider(node(3), "198.51.100.1", 1003, 1.0),
        Provider(node(1), "198.51.100.1", 1001, 5.0),
    ]


def test_one_lying_holder_neither_crowds_out_nor_moves_honest_providers() -> None:
    merge = ProviderMerge(limit=3)
    # The liar answers first: invented providers of age 0, and provider 1 at its own host.
    invented = [ProviderEntry(node(100 + i), "203.0.113.9", 9000 + i, 0, 100) for i in range(3)]
    moved = ProviderEntry(node(1), "203.0.113.9", 9999, 0, 100)
    merge.add([*invented, moved], LIAR)
    assert not merge.full  # one holder's word is not enough to stop
    honest = [entry(1, 30), entry(2, 40), entry(3, 50)]
    merge.add(honest, HONEST)
    merge.add(honest, SECOND)
    assert merge.full
    assert merge.result() == [
        Provider(node(1), "198.51.100.1", 1001, 30.0),
        Provider(node(2), "198.51.100.1", 1002, 40.0),
        Provider(node(3), "198.51.100.1", 1003, 50.0),
    ]


def test_a_holder_repeating_itself_confirms_nothing() -> None:
    merge = ProviderMerge(limit=1)
    merge.add([entry(1, 5), entry(1, 5)], HONEST)
    merge.add([entry(1, 4)], HONEST)
    assert not merge.full
    merge.add([entry(1, 9)], SECOND)
    assert merge.full
    assert merge.result() == [Provider(node(1), "198.51.100.1", 1001, 4.0)]
