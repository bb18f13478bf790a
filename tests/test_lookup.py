"""The lookup state machine against a scripted network (no I/O, no Trio)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lookups import World, check_result, contact, drive, inventor, k_closest, replier

from trio_kad._disjoint import DisjointLookup
from trio_kad._ids import Contact, int_to_id
from trio_kad._lookup import Done, Lookup, Query, Wait


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    n=st.integers(1, 150),
    k=st.integers(1, 8),
    alpha=st.integers(1, 5),
    known=st.one_of(st.none(), st.integers(1, 40)),
    fail_rate=st.sampled_from([0.0, 0.0, 0.1, 0.5]),
    n_seeds=st.integers(0, 10),
    max_candidates_extra=st.one_of(st.none(), st.integers(0, 10)),
)
def test_lookup_properties(
    seed: int,
    n: int,
    k: int,
    alpha: int,
    known: int | None,
    fail_rate: float,
    n_seeds: int,
    max_candidates_extra: int | None,
) -> None:
    rng = random.Random(seed)
    world = World(rng, n, k, known)
    target = rng.getrandbits(256).to_bytes(32, "big")
    own = rng.choice(world.ids)  # the own id is in the world: others name it, it is never asked
    exclude = {own}
    failing = frozenset(i for i in world.ids if rng.random() < fail_rate)
    seeds = [contact(i) for i in rng.sample(world.ids, min(n_seeds, n))]
    max_candidates = None if max_candidates_extra is None else k + max_candidates_extra
    lookup = Lookup(target, seeds, k=k, alpha=alpha, exclude=exclude, max_candidates=max_candidates)
    # Full-view nodes leave the requester out of replies (as real nodes do); partial-view
    # ones name it, so that exclusion is exercised.
    reply = world.reply_fn(target, own if known is None else None)
    trace = drive(lookup, alpha, reply, rng, failing, max_steps=2 * n + 2)
    check_result(lookup, target, k, trace, exclude)
    result = [c.node_id for c in lookup.closest()]
    if not failing:
        # Done means the k closest non-failed contacts learned have all answered.
        learned = ({c.node_id for c in seeds} | trace.learned) - exclude
        assert result == k_closest(target, learned, k)
        if known is None and seeds and seeds != [contact(own)]:
            assert result == k_closest(target, set(world.ids) - exclude, k)
    # A finished lookup stays finished; duplicate and unknown reports change nothing.
    before = (result, lookup.statistics())
    for i in [*sorted(trace.answered), *sorted(trace.failed), rng.randbytes(32)]:
        lookup.on_reply(i, [contact(j) for j in world.ids])
        lookup.on_failure(i)
    assert isinstance(lookup.next(), Done)
    assert ([c.node_id for c in lookup.closest()], lookup.statistics()) == before


def test_full_view_finds_true_closest() -> None:
    rng = random.Random(1)
    k, alpha = 20, 3
    world = World(rng, 500, k, None)
    target = rng.getrandbits(256).to_bytes(32, "big")
    seeds = [contact(i) for i in rng.sample(world.ids, k)]
    lookup = Lookup(target, seeds, k=k, alpha=alpha)
    trace = drive(lookup, alpha, world.reply_fn(target), rng)
    assert [c.node_id for c in lookup.closest()] == k_closest(target, world.ids, k)
    check_result(lookup, target, k, trace, set())
    # Seeds answer in round 1, the true closest they name in round 2.
    assert lookup.statistics().rounds == 2


def test_no_seeds_is_done_at_once() -> None:
    lookup = Lookup(bytes(32), [], k=3, alpha=2)
    assert lookup.done
    assert isinstance(lookup.next(), Done)
    assert lookup.closest() == []


def test_only_excluded_seed_is_done_at_once() -> None:
    own = int_to_id(5)
    lookup = Lookup(bytes(32), [contact(own)], k=3, alpha=2, exclude=[own])
    assert isinstance(lookup.next(), Done)
    assert lookup.statistics().candidates == 0


def test_strict_alpha_and_closest_first() -> None:
    target = bytes(32)
    ids = [int_to_id(d) for d in range(1, 11)]
    lookup = Lookup(target, [contact(i) for i in reversed(ids)], k=5, alpha=3)
    steps = [lookup.next() for _ in range(5)]
    assert steps[:3] == [Query(contact(ids[0])), Query(contact(ids[1])), Query(contact(ids[2]))]
    assert steps[3:] == [Wait(), Wait()]
    assert lookup.in_flight == 3
    lookup.on_reply(ids[1], [])
    assert lookup.next() == Query(contact(ids[3]))
    assert lookup.next() == Wait()


def test_lowered_parallelism_asks_one_then_widens_to_alpha() -> None:
    ids = [int_to_id(d) for d in range(1, 11)]
    lookup = Lookup(bytes(32), [contact(i) for i in ids], k=5, alpha=3)
    lookup.parallelism = 1
    assert [lookup.next(), lookup.next()] == [Query(contact(ids[0])), Wait()]
    lookup.parallelism = 3
    assert [lookup.next(), lookup.next(), lookup.next()] == [
        Query(contact(ids[1])),
        Query(contact(ids[2])),
        Wait(),
    ]
    assert lookup.in_flight == 3
    for bad in (0, 4):
        with pytest.raises(ValueError, match="parallelism"):
            lookup.parallelism = bad


def test_a_dropped_rpc_puts_its_contact_back_to_be_asked_again() -> None:
    ids = [int_to_id(d) for d in range(1, 11)]
    lookup = Lookup(bytes(32), [contact(i) for i in ids], k=5, alpha=3)
    lookup.parallelism = 1
    assert lookup.next() == Query(contact(ids[0]))
    lookup.retry(ids[0])
    assert lookup.in_flight == 0
    lookup.parallelism = 3
    # Still the closest: asked first again, with the next two.
    assert [lookup.next() for _ in range(4)] == [
        Query(contact(ids[0])),
        Query(contact(ids[1])),
        Query(contact(ids[2])),
        Wait(),
    ]
    lookup.retry(ids[9])  # never asked: nothing changes
    lookup.on_reply(ids[0], [])
    lookup.retry(ids[0])  # answered already: nothing changes
    assert lookup.in_flight == 2
    stats = lookup.statistics()
    # The dropped RPC counts as sent, neither answered nor failed.
    assert (stats.queries, stats.replies, stats.failures) == (4, 1, 0)


def test_failed_contact_is_dropped_for_good() -> None:
    target = bytes(32)
    a, b, c = (int_to_id(d) for d in (1, 2, 3))
    lookup = Lookup(target, [contact(a), contact(b)], k=2, alpha=1)
    assert lookup.next() == Query(contact(a))
    lookup.on_failure(a)
    assert lookup.in_flight == 0
    assert lookup.next() == Query(contact(b))
    # b names a again: it must not come back.
    lookup.on_reply(b, [contact(a), contact(c)])
    assert lookup.next() == Query(contact(c))
    lookup.on_reply(c, [contact(a)])
    assert isinstance(lookup.next(), Done)
    assert lookup.closest() == [contact(b), contact(c)]
    stats = lookup.statistics()
    assert (stats.queries, stats.replies, stats.failures) == (3, 2, 1)


def test_a_forged_address_that_failed_does_not_hide_the_id_at_its_own() -> None:
    # A liar names an honest id at a wrong address; that contact fails. The same
    # id at its own address, named later by an honest peer, must still be asked,
    # else one forged contact keeps the honest node out of every path of the lookup.
    target = bytes(32)
    honest, liar, b = (int_to_id(d) for d in (1, 2, 3))
    forged = Contact(honest, "10.9.9.9", 9)
    lookup = DisjointLookup(target, [contact(liar), contact(b)], paths=2, k=3, alpha=1)
    assert lookup.next() == Query(contact(liar))
    lookup.on_reply(liar, [forged])
    assert lookup.next() == Query(contact(b))
    assert lookup.next() == Query(forged)
    lookup.on_failure(honest)
    lookup.on_reply(b, [contact(honest), forged])
    assert lookup.next() == Query(contact(honest))
    lookup.on_reply(honest, [forged])
    assert isinstance(lookup.next(), Done)
    assert lookup.closest() == [contact(honest), contact(liar), contact(b)]
    assert lookup.statistics().failures == 1


def test_late_duplicate_and_unknown_replies_are_ignored() -> None:
    target = bytes(32)
    a, b, c, far = (int_to_id(d) for d in (1, 2, 3, 1000))
    stranger = int_to_id(7)
    lookup = Lookup(target, [contact(a), contact(b)], k=2, alpha=1)

    def snapshot() -> object:
        return (lookup.closest(), lookup.statistics(), lookup.in_flight, lookup.done)

    # A reply from a known contact never asked, and from an unknown one.
    before = snapshot()
    lookup.on_reply(b, [contact(c)])
    lookup.on_reply(stranger, [contact(c)])
    lookup.on_failure(b)
    lookup.on_failure(stranger)
    assert snapshot() == before

    assert lookup.next() == Query(contact(a))
    lookup.on_reply(a, [contact(far)])
    before = snapshot()
    # Duplicate reply, then a late failure, for a contact that already answered.
    lookup.on_reply(a, [contact(c)])
    lookup.on_failure(a)
    assert snapshot() == before
    assert lookup.next() == Query(contact(b))
    lookup.on_failure(b)
    before = snapshot()
    # A late reply for a contact that already failed.
    lookup.on_reply(b, [contact(c)])
    assert snapshot() == before
    assert lookup.next() == Query(contact(far))


def test_finish_stops_the_lookup() -> None:
    target = bytes(32)
    ids = [int_to_id(d) for d in range(1, 6)]
    lookup = Lookup(target, [contact(i) for i in ids], k=5, alpha=2)
    assert lookup.next() == Query(contact(ids[0]))
    lookup.on_reply(ids[0], [])
    lookup.finish()
    assert lookup.done
    assert isinstance(lookup.next(), Done)
    assert lookup.closest() == [contact(ids[0])]


def test_exclude_is_never_queried_nor_returned() -> None:
    target = bytes(32)
    own, a, b = (int_to_id(d) for d in (1, 2, 3))
    lookup = Lookup(target, [contact(own), contact(a)], k=3, alpha=3, exclude=[own])
    assert lookup.next() == Query(contact(a))
    lookup.on_reply(a, [contact(own), contact(b)])
    assert lookup.next() == Query(contact(b))
    lookup.on_reply(b, [contact(own)])
    assert isinstance(lookup.next(), Done)
    assert lookup.closest() == [contact(a), contact(b)]


def test_done_when_k_closest_answered_even_with_rpcs_in_flight() -> None:
    target = bytes(32)
    ids = [int_to_id(d) for d in range(1, 5)]
    lookup = Lookup(target, [contact(i) for i in ids], k=2, alpha=3)
    assert [lookup.next() for _ in range(3)] == [Query(contact(i)) for i in ids[:2]] + [Wait()]
    lookup.on_reply(ids[0], [])
    lookup.on_reply(ids[1], [])
    # Farther contacts are never asked: the k closest seen have all answered.
    assert isinstance(lookup.next(), Done)
    assert lookup.statistics().queries == 2


def test_max_candidates_drops_farthest_unasked() -> None:
    target = bytes(32)
    ids = [int_to_id(d) for d in range(1, 11)]
    lookup = Lookup(target, [contact(i) for i in ids], k=2, alpha=1, max_candidates=4)
    assert lookup.statistics().candidates == 4
    assert lookup.next() == Query(contact(ids[0]))
    # Nearer contacts arrive: the farthest never-asked ones make room.
    near = [int_to_id(d) for d in range(1 << 20, (1 << 20) + 3)]
    lookup.on_reply(ids[0], [contact(i) for i in near])
    assert lookup.statistics().candidates == 4
    asked = []
    while isinstance(step := lookup.next(), Query):
        asked.append(step.contact.node_id)
        lookup.on_reply(step.contact.node_id, [])
    assert asked == [ids[1]]
    assert lookup.closest() == [contact(ids[0]), contact(ids[1])]


def test_pruning_keeps_in_flight_contacts() -> None:
    target = bytes(32)
    far = [int_to_id(1 << 100 | d) for d in range(3)]
    lookup = Lookup(target, [contact(i) for i in far], k=1, alpha=3, max_candidates=3)
    lookup.next()
    lookup.next()
    lookup.next()  # only the closest is asked; the other two wait
    assert lookup.in_flight == 1
    near = [int_to_id(d) for d in range(1, 4)]
    lookup.on_reply(far[0], [contact(i) for i in near])
    assert lookup.statistics().candidates == 3
    assert lookup.closest() == [contact(far[0])]
    assert lookup.next() == Query(contact(near[0]))


def test_rounds_in_a_chain() -> None:
    # A knows only B, B only C, ...: each nearer the target, so each is asked.
    target = bytes(32)
    length = 12
    chain = [int_to_id(1 << (200 - i)) for i in range(length)]
    knows = {chain[i]: [chain[i + 1]] for i in range(length - 1)}
    knows[chain[-1]] = [chain[-2]]  # the last one names its predecessor again (a duplicate)
    lookup = Lookup(target, [contact(chain[0])], k=3, alpha=3)
    rng = random.Random(0)
    trace = drive(lookup, 3, lambda i: [contact(j) for j in knows[i]], rng)
    assert trace.queried == chain
    stats = lookup.statistics()
    assert stats.rounds == length
    assert stats.queries == stats.replies == length
    assert lookup.closest() == [contact(i) for i in reversed(chain[-3:])]


def test_seeds_are_depth_one() -> None:
    target = bytes(32)
    ids = [int_to_id(d) for d in range(1, 4)]
    lookup = Lookup(target, [contact(i) for i in ids], k=3, alpha=3)
    trace = drive(lookup, 3, lambda i: [], random.Random(0))
    assert len(trace.queried) == 3
    assert lookup.statistics().rounds == 1


def kademlia_world(rng: random.Random, n: int, k: int) -> dict[bytes, list[bytes]]:
    """Each node knows its k closest plus up to k random nodes per bucket (section 2.2)."""
    ids = [rng.getrandbits(256).to_bytes(32, "big") for _ in range(n)]
    as_int = [int.from_bytes(i, "big") for i in ids]
    knows: dict[bytes, list[bytes]] = {}
    for me, me_int in zip(ids, as_int, strict=True):
        buckets: dict[int, list[bytes]] = {}
        for other, other_int in zip(ids, as_int, strict=True):
            if other_int != me_int:
                buckets.setdefault((me_int ^ other_int).bit_length(), []).append(other)
        table: set[bytes] = set(k_closest(me, (i for i in ids if i != me), k))
        for members in buckets.values():
            table.update(members if len(members) <= k else rng.sample(members, k))
        knows[me] = list(table)
    return knows


@pytest.mark.parametrize("k", [20, 8])
def test_rounds_stay_logarithmic(k: int) -> None:
    rng = random.Random(2002)
    n, alpha = 1000, 3
    knows = kademlia_world(rng, n, k)
    ids = list(knows)
    rounds = []
    for _ in range(20):
        start = rng.choice(ids)
        target = rng.getrandbits(256).to_bytes(32, "big")
        seeds = [contact(i) for i in k_closest(target, knows[start], k)]
        lookup = Lookup(target, seeds, k=k, alpha=alpha, exclude=[start])
        drive(lookup, alpha, replier(knows, target, k, start), rng)
        others = [i for i in ids if i != start]
        assert [c.node_id for c in lookup.closest()] == k_closest(target, others, k)
        rounds.append(lookup.statistics().rounds)
    print(f"k={k}: rounds {sorted(rounds)}")
    assert max(rounds) <= math.log2(n)


def test_ever_closer_invented_ids_cannot_keep_a_lookup_going() -> None:
    # Each answer names 20 fresh ids nearer than the one asked: the k closest are
    # never all answered, so only the bound on RPCs ends the lookup.
    target = bytes(32)
    seeds = [contact(int_to_id(1 << 200 | d)) for d in range(5)]
    lookup = Lookup(target, seeds, k=20, alpha=3, max_queries=100, max_candidates=80)
    drive(lookup, 3, inventor(target), random.Random(3), max_steps=10_000)
    stats = lookup.statistics()
    assert stats.queries == 100
    assert stats.in_flight == 0
    # Contacts remembered: the shortlist (those asked stay on it) and the failed ids.
    assert stats.candidates <= 80 + stats.queries
    assert len(lookup.closest()) == 20
