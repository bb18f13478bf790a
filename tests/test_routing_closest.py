"""``closest`` walks buckets in XOR order: it must agree with sorting every contact."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_kad._ids import ID_BITS, ID_SPACE, Contact, distance, id_to_int, int_to_id
from trio_kad._routing import RoutingTable

OWN = int_to_id(0x5A5A << (ID_BITS - 16))


def at_distance(d: int) -> bytes:
    return int_to_id(id_to_int(OWN) ^ d)


# Near ids split the own bucket deeply; clusters far away trigger relaxed splits of
# buckets that do not hold the own id; random ones fill the far buckets.
distances = st.one_of(
    st.integers(1, 2**16),
    st.integers(1, ID_SPACE - 1),
    st.integers(2**255, 2**255 + 2**10),
    st.integers(2**200, 2**200 + 2**12),
)
targets = st.one_of(
    distances,
    st.just(0),  # the own id
    st.integers(0, 2**20),
    st.integers(0, ID_SPACE - 1),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(distances, max_size=120, unique=True),
    st.integers(1, 6),
    st.lists(targets, min_size=1, max_size=6),
    st.integers(0, 50),
    st.data(),
)
def test_closest_matches_brute_force_on_any_shape(
    offered: list[int], k: int, target_distances: list[int], count: int, data: st.DataObject
) -> None:
    table = RoutingTable(OWN, k=k)
    for i, d in enumerate(offered):
        table.update(Contact(at_distance(d), "10.0.0.1", 1), float(i))
    everyone = table.contacts()
    present = [c.node_id for c in everyone]
    for d in target_distances:
        target = at_distance(d)
        by_distance = sorted(everyone, key=lambda c: distance(c.node_id, target))
        assert table.closest(target, count) == by_distance[:count]
        if present:
            excluded = set(data.draw(st.lists(st.sampled_from(present), max_size=len(present))))
        else:
            excluded = set()
        expected = [c for c in by_distance if c.node_id not in excluded][:count]
        assert table.closest(target, count, exclude=excluded) == expected
        # Any container works, not only sets.
        assert table.closest(target, count, exclude=list(excluded)) == expected


def test_closest_crosses_buckets_in_xor_order() -> None:
    # Buckets [0, 2**254), [2**254, 2**255), [2**255, 2**256) with k=2: the target's
    # own bucket has one contact, the rest must come from the sibling subtree first.
    table = RoutingTable(OWN, k=2)
    ids = [at_distance(d) for d in (1, 2**254 + 1, 2**254 + 7, 2**255 + 3)]
    for i, node_id in enumerate(ids):
        table.update(Contact(node_id, "10.0.0.1", 1), float(i))
    assert [(b.low, b.high) for b in table.buckets][-1] == (2**255, ID_SPACE)
    target = at_distance(2**255 + 1)
    # Distances from the target: 2**255 + 2, 2**255, 2**255 + 2**254, 2**255 + 2**254 + 6.
    assert [c.node_id for c in table.closest(target, 4)] == [ids[3], ids[0], ids[1], ids[2]]
    assert [c.node_id for c in table.closest(target, 2, exclude={ids[3]})] == ids[:2]
