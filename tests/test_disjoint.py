"""Disjoint-path lookups (_disjoint) against a scripted network (no I/O, no Trio)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from lookups import World, contact, dist, drive, inventor, k_closest

from trio_kad._disjoint import DisjointLookup
from trio_kad._ids import Contact, int_to_id
from trio_kad._lookup import Lookup, Query, Step


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 150),
    k=st.integers(1, 8),
    alpha=st.integers(1, 4),
    paths=st.integers(1, 5),
    known=st.one_of(st.none(), st.integers(1, 40)),
    fail_rate=st.sampled_from([0.0, 0.1, 0.5]),
    n_seeds=st.integers(0, 12),
)
def test_disjoint_paths_never_share_a_node(
    seed: int,
    n: int,
    k: int,
    alpha: int,
    paths: int,
    known: int | None,
    fail_rate: float,
    n_seeds: int,
) -> None:
    rng = random.Random(seed)
    world = World(rng, n, k, known)
    target = rng.getrandbits(256).to_bytes(32, "big")
    own = rng.choice(world.ids)
    failing = frozenset(i for i in world.ids if rng.random() < fail_rate)
    seeds = [contact(i) for i in rng.sample(world.ids, min(n_seeds, n))]
    lookup = DisjointLookup(target, seeds, paths=paths, k=k, alpha=alpha, exclude=[own])
    # The seeds, nearest first and without the own id, are dealt out in turn.
    dealt = sorted((c.node_id for c in seeds if c.node_id != own), key=lambda i: dist(i, target))
    for index, node_id in enumerate(dealt):
        # None: beyond a path's shortlist bound, pruned (free for any path to take up).
        assert lookup.path_of(node_id) in (index % paths, None)
    assert lookup.path_of(own) is None
    # Each path asks only its seeds and the nodes named in answers to its own queries.
    learned: dict[int, set[bytes]] = {path: set() for path in range(paths)}
    base = world.reply_fn(target, own if known is None else None)

    def reply(node_id: bytes) -> list[Contact]:
        path = lookup.path_of(node_id)
        assert path is not None
        contacts = base(node_id)
        learned[path].update(c.node_id for c in contacts)
        return contacts

    asked: dict[bytes, int] = {}
    original_next = lookup.next

    def next_step() -> Step:
        step = original_next()
        if isinstance(step, Query):
            path = lookup.path_of(step.contact.node_id)
            assert path is not None
            asked[step.contact.node_id] = path
        return step

    lookup.next = next_step  # type: ignore[method-assign]
    trace = drive(lookup, paths * alpha, reply, rng, failing, max_steps=2 * n + 2)
    for node_id, path in asked.items():
        assert node_id in dealt[path::paths] or node_id in learned[path]
    assert own not in asked
    result = [c.node_id for c in lookup.closest()]
    assert result == k_closest(target, trace.answered, k)
    stats = lookup.statistics()
    assert (stats.queries, stats.replies, stats.failures) == (
        len(trace.queried),
        len(trace.answered),
        len(trace.failed),
    )


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 120), k=st.integers(1, 8))
def test_one_disjoint_path_is_the_plain_lookup(seed: int, n: int, k: int) -> None:
    world = World(random.Random(seed), n, k, 30)
    target = random.Random(seed + 1).getrandbits(256).to_bytes(32, "big")
    seeds = [contact(i) for i in world.ids[:k]]
    traces = []
    for lookup in (
        Lookup(target, seeds, k=k, alpha=3, max_queries=40),
        DisjointLookup(target, seeds, paths=1, k=k, alpha=3, max_queries=40),
    ):
        trace = drive(lookup, 3, world.reply_fn(target), random.Random(seed))
        traces.append((trace.queried, lookup.closest(), lookup.statistics()))
    assert traces[0] == traces[1]


def test_each_disjoint_path_has_its_own_bound() -> None:
    target = bytes(32)
    # Far apart, so that the ids invented for one path are never those of another.
    seeds = [contact(int_to_id(1 << 200 | d << 100)) for d in range(6)]
    lookup = DisjointLookup(target, seeds, paths=3, k=20, alpha=3, max_queries=30)
    drive(lookup, 9, inventor(target), random.Random(4), max_steps=10_000)
    assert lookup.statistics().queries == 3 * 30
    assert lookup.done and lookup.in_flight == 0
