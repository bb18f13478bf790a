"""Routing table: invariants against a model, relaxed splitting, eviction, refresh, closest,
the hot paths against the general code, subnet shares and bans."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis import target as hypothesis_target
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_kad._config import Config
from trio_kad._diversity import subnet_group
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


def contact(node_id: bytes, port: int = 1) -> Contact:
    return Contact(node_id, "10.0.0.1", port)


def at_distance(d: int, origin: bytes = OWN) -> bytes:
    return int_to_id(id_to_int(origin) ^ d)


def k_closest_ids(ids: set[bytes], k: int) -> set[bytes]:
    return set(sorted(ids, key=lambda i: distance(i, OWN))[:k])


def check_structure(table: RoutingTable) -> None:
    """Invariants that hold after every operation."""
    buckets = table.buckets
    assert buckets[0].low == 0
    assert buckets[-1].high == ID_SPACE
    seen: set[bytes] = set()
    for before, after in itertools.pairwise(buckets):
        assert before.high == after.low
    for b in buckets:
        size = b.high - b.low
        assert size & (size - 1) == 0 and b.low % size == 0  # aligned power of two
        assert len(b) <= table.k
        assert len(b.replacements) <= 20
        for c in b.contacts + b.replacements:
            assert b.covers(distance(c.node_id, table.own_id))
            assert c.node_id not in seen
            assert c.node_id != table.own_id
            seen.add(c.node_id)
        if b.replacements:
            assert len(b) == table.k  # a replacement is only waiting because the bucket is full
    assert len(table) == sum(len(b) for b in buckets)
    assert {c.node_id for c in table.contacts()} == {c.node_id for b in buckets for c in b.contacts}


def machine_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


# --- state machine -------------------------------------------------------------------

# Ids are drawn as distances from the own id: small ones land near us (deep buckets, the
# relaxed-splitting path), large ones far away (full, unsplittable buckets).
near_distances = st.integers(min_value=1, max_value=2**12)
far_distances = st.integers(min_value=2**255, max_value=2**255 + 2**8)
any_distances = st.integers(min_value=1, max_value=ID_SPACE - 1)


class RoutingMachine(RuleBasedStateMachine):
    """The table against a model: who is in it, in which bucket, what ``closest`` returns.

    Invariants: no bucket over k, the own id never in the table, every contact and
    candidate in the bucket covering its distance, a banned id absent while banned,
    the k closest to the own id always kept, ``closest`` the brute-force sort of the
    model's contacts by XOR distance.
    """

    def __init__(self) -> None:
        super().__init__()
        self.k = 4
        self.max_failures = 3
        self.table = RoutingTable(OWN, k=self.k, replacement_cache_size=20, max_failures=3)
        self.now = 0.0
        self.offered: list[bytes] = []  # every id ever offered, to pick from
        self.model: dict[bytes, Contact] = {}  # what should be in the buckets
        self.failures: dict[bytes, int] = {}
        self.protected: set[bytes] = set()  # among the k closest when offered
        self.pending_pings: list[Contact] = []
        self.bans: dict[bytes, float] = {}  # node id -> banned until

    @initialize()
    def start(self) -> None:
        check_structure(self.table)

    def _cached_ids(self) -> set[bytes]:
        return {c.node_id for b in self.table.buckets for c in b.replacements}

    def _offer(self, c: Contact) -> None:
        self.now += 1.0
        node_id = c.node_id
        known = self.model.get(node_id)
        closer = sum(1 for i in self.model if distance(i, OWN) < distance(node_id, OWN))
        cached_before = self._cached_ids()
        result = self.table.update(c, self.now)
        if node_id not in self.offered:
            self.offered.append(node_id)
        if node_id == OWN:
            assert result == Ignored("own id")
            return
        if self.now < self.bans.get(node_id, -1.0):
            assert result == Ignored("banned")
            assert node_id not in self.table
            assert self._cached_ids() == cached_before
            return
        if known is not None:
            if known == c or self.failures.get(node_id, 0) > 0:
                assert result == Updated()
                assert self.table.bucket_for(node_id).contacts[-1] == c
                self.model[node_id] = c
                self.failures[node_id] = 0
            else:
                assert result == Ignored("address conflict")
                assert self.table.get(node_id) == known
            return
        if closer < self.k:
            self.protected.add(node_id)
        if isinstance(result, Added):
            self.model[node_id] = c
            self.failures[node_id] = 0
        else:
            assert isinstance(result, PingOldest)
            assert node_id not in self.protected
            assert node_id not in self.table
            bucket = self.table.bucket_for(node_id)
            assert bucket.replacements[-1] == c
            assert bucket.contacts[0] == result.oldest
            self.pending_pings.append(result.oldest)
        # Splits may promote cached replacements into halves with room.
        promoted = {c2.node_id for c2 in self.table.contacts()} - set(self.model)
        assert promoted <= cached_before
        for i in promoted:
            got = self.table.get(i)
            assert got is not None
            self.model[i] = got
            self.failures[i] = 0

    def _removed(self, node_id: bytes, bucket_replacements: list[Contact]) -> None:
        del self.model[node_id]
        self.failures.pop(node_id, None)
        self.protected.discard(node_id)
        if bucket_replacements:
            promoted = bucket_replacements[-1]  # the most recently seen one
            assert self.table.get(promoted.node_id) == promoted
            self.model[promoted.node_id] = promoted
            self.failures[promoted.node_id] = 0

    @rule(d=near_distances, port=st.integers(1, 2))
    def update_near(self, d: int, port: int) -> None:
        self._offer(contact(at_distance(d), port))

    @rule(d=far_distances, port=st.integers(1, 2))
    def update_far(self, d: int, port: int) -> None:
        self._offer(contact(at_distance(d), port))

    @rule(d=any_distances)
    def update_random(self, d: int) -> None:
        self._offer(contact(at_distance(d)))

    @rule()
    def update_own(self) -> None:
        self._offer(contact(OWN))

    @precondition(lambda self: self.offered)
    @rule(data=st.data(), port=st.integers(1, 2))
    def update_again(self, data: st.DataObject, port: int) -> None:
        self._offer(contact(data.draw(st.sampled_from(self.offered)), port))

    @precondition(lambda self: self.offered)
    @rule(data=st.data())
    def mark_failed(self, data: st.DataObject) -> None:
        self._fail(data.draw(st.sampled_from(self.offered)))

    def _fail(self, node_id: bytes) -> None:
        replacements = self.table.bucket_for(node_id).replacements
        cached = node_id in self._cached_ids()
        removed = self.table.mark_failed(node_id)
        if node_id not in self.model:
            assert removed is None
            assert node_id not in self._cached_ids()  # a failed candidate is forgotten
            if cached:
                assert len(self.table.bucket_for(node_id).replacements) == len(replacements) - 1
            return
        self.failures[node_id] += 1
        failures = self.failures[node_id]
        if failures >= self.max_failures or (replacements and failures >= 2):
            assert removed == self.model[node_id]
            self._removed(node_id, replacements)
        else:
            assert removed is None
            info = self.table.info(node_id)
            assert info is not None and info.failures == self.failures[node_id]

    @precondition(lambda self: self.offered)
    @rule(data=st.data())
    def remove(self, data: st.DataObject) -> None:
        node_id = data.draw(st.sampled_from(self.offered))
        replacements = self.table.bucket_for(node_id).replacements
        removed = self.table.remove(node_id)
        if node_id in self.model:
            assert removed == self.model[node_id]
            self._removed(node_id, replacements)
        else:
            assert removed is None
        assert node_id not in self.table
        assert node_id not in self._cached_ids()

    @precondition(lambda self: self.offered)
    @rule(data=st.data(), duration=st.integers(0, 4))
    def ban(self, data: st.DataObject, duration: int) -> None:
        node_id = data.draw(st.sampled_from(self.offered))
        replacements = self.table.bucket_for(node_id).replacements
        self.bans[node_id] = self.now + duration
        removed = self.table.ban(node_id, self.now + duration, now=self.now)
        if node_id in self.model:
            assert removed == self.model[node_id]
            self._removed(node_id, replacements)
        else:
            assert removed is None
        assert node_id not in self.table
        assert node_id not in self._cached_ids()
        assert self.table.banned(node_id, self.now) == (duration > 0)

    @precondition(lambda self: self.pending_pings)
    @rule()
    def ping_answered(self) -> None:
        oldest = self.pending_pings.pop(0)
        self._offer(oldest)

    @precondition(lambda self: self.pending_pings)
    @rule()
    def ping_unanswered(self) -> None:
        oldest = self.pending_pings.pop(0)
        self._fail(oldest.node_id)

    @invariant()
    def structure(self) -> None:
        check_structure(self.table)

    @invariant()
    def matches_model(self) -> None:
        assert {c.node_id: c for c in self.table.contacts()} == self.model
        assert OWN not in self.table

    @invariant()
    def neighbourhood_kept(self) -> None:
        assert self.protected <= set(self.model)

    @invariant()
    def banned_absent(self) -> None:
        for node_id, until in self.bans.items():
            if self.now < until:
                assert node_id not in self.table
                assert node_id not in self._cached_ids()

    @rule(
        d=st.one_of(near_distances, far_distances, any_distances, st.just(0)),
        count=st.integers(0, 12),
    )
    def closest(self, d: int, count: int) -> None:
        target = at_distance(d)
        by_distance = sorted(self.model.values(), key=lambda c: distance(c.node_id, target))
        assert self.table.closest(target, count) == by_distance[:count]


TestRoutingMachine = RoutingMachine.TestCase
TestRoutingMachine.settings = machine_settings(max_examples=60)


# --- properties ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(1, 2**16),
            st.integers(1, ID_SPACE - 1),
            st.integers(2**255, 2**255 + 2**10),
        ),
        max_size=200,
        unique=True,
    ),
    st.integers(1, 8),
)
def test_neighbourhood_complete(distances: list[int], k: int) -> None:
    table = RoutingTable(OWN, k=k)
    ids = {at_distance(d) for d in distances}
    for i, d in enumerate(distances):
        table.update(contact(at_distance(d)), float(i))
    check_structure(table)
    assert k_closest_ids(ids, k) <= {c.node_id for c in table.contacts()}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 60), st.integers(0, 2**32 - 1))
def test_closest_matches_brute_force(seed: int, count: int, target_seed: int) -> None:
    rng = random.Random(seed)
    table = RoutingTable(OWN, k=5)
    for i in range(150):
        table.update(contact(int_to_id(rng.getrandbits(ID_BITS))), float(i))
    target = int_to_id(random.Random(target_seed).getrandbits(ID_BITS))
    everyone = table.contacts()
    expected = sorted(everyone, key=lambda c: distance(c.node_id, target))[:count]
    assert table.closest(target, count) == expected
    excluded = {c.node_id for c in everyone[::3]}
    expected = [c for c in sorted(everyone, key=lambda c: distance(c.node_id, target))]
    expected = [c for c in expected if c.node_id not in excluded][:count]
    assert table.closest(target, count, exclude=excluded) == expected


# --- unit tests: eviction, conflicts, refresh ---------------------------------------


def far_table(
    k: int = 2, *, replacement_cache_size: int = 20, max_failures: int = 3
) -> tuple[RoutingTable, list[Contact]]:
    """A table whose far bucket [2**255, 2**256) is full and may not split."""
    table = RoutingTable(
        OWN, k=k, replacement_cache_size=replacement_cache_size, max_failures=max_failures
    )
    table.update(contact(at_distance(1)), 0.0)  # forces the own bucket to split away
    table.update(contact(at_distance(2)), 0.0)
    fars = [contact(at_distance(2**255 + i)) for i in range(k)]
    for i, c in enumerate(fars):
        assert table.update(c, float(i + 1)) == Added()
    return table, fars


def test_full_far_bucket_keeps_oldest_until_it_fails() -> None:
    table, (oldest, newest) = far_table()
    newcomer = contact(at_distance(2**255 + 100))
    assert table.update(newcomer, 10.0) == PingOldest(oldest)
    assert newcomer.node_id not in table
    assert table.bucket_for(newcomer.node_id).replacements == [newcomer]
    # The oldest answered: it stays and becomes the most recent; the newcomer keeps waiting.
    assert table.update(oldest, 11.0) == Updated()
    assert table.bucket_for(oldest.node_id).contacts == [newest, oldest]
    assert table.update(contact(at_distance(2**255 + 101)), 12.0) == PingOldest(newest)
    # newest did not answer: with a replacement waiting, a second failure in a row
    # evicts it (one lost packet must not).
    assert table.mark_failed(newest.node_id) is None
    assert table.mark_failed(newest.node_id) == newest
    bucket = table.bucket_for(oldest.node_id)
    # The most recently seen replacement (seen at 12) is promoted.
    assert [c.node_id for c in bucket.contacts] == [oldest.node_id, at_distance(2**255 + 101)]
    assert bucket.replacements == [newcomer]


def test_one_failure_without_replacement_keeps_contact() -> None:
    table, (oldest, _) = far_table(max_failures=3)
    assert table.mark_failed(oldest.node_id) is None
    assert table.mark_failed(oldest.node_id) is None
    info = table.info(oldest.node_id)
    assert info is not None and info.failures == 2
    # Seen alive again: the count restarts.
    assert table.update(oldest, 5.0) == Updated()
    info = table.info(oldest.node_id)
    assert info is not None and info.failures == 0 and info.last_seen == 5.0
    assert table.last_seen(oldest.node_id) == 5.0
    assert table.last_seen(bytes(32)) is None
    for _ in range(2):
        assert table.mark_failed(oldest.node_id) is None
    assert table.mark_failed(oldest.node_id) == oldest
    assert oldest.node_id not in table


def test_remove_promotes_replacement() -> None:
    table, (oldest, newest) = far_table()
    waiting = [contact(at_distance(2**255 + 100 + i)) for i in range(3)]
    for i, c in enumerate(waiting):
        table.update(c, 10.0 + i)
    assert table.remove(oldest.node_id) == oldest
    bucket = table.bucket_for(newest.node_id)
    assert bucket.contacts == [newest, waiting[2]]
    assert bucket.replacements == waiting[:2]
    # Removing a cached candidate just forgets it.
    assert table.remove(waiting[0].node_id) is None
    assert bucket.replacements == waiting[1:2]
    assert table.remove(at_distance(77)) is None
    assert table.mark_failed(at_distance(77)) is None


def test_replacement_cache_bounded_and_reseen_moves_to_end() -> None:
    table, _ = far_table(replacement_cache_size=3)
    waiting = [contact(at_distance(2**255 + 100 + i)) for i in range(4)]
    for i, c in enumerate(waiting):
        assert isinstance(table.update(c, 10.0 + i), PingOldest)
    bucket = table.bucket_for(waiting[0].node_id)
    assert bucket.replacements == waiting[1:]  # the oldest candidate fell out
    table.update(waiting[1], 20.0)
    assert bucket.replacements == [waiting[2], waiting[3], waiting[1]]


def test_promoted_replacement_keeps_least_recently_seen_order() -> None:
    table, (oldest, newest) = far_table(k=2)
    late = contact(at_distance(2**255 + 100))
    table.update(late, 3.0)
    table.update(newest, 50.0)  # newest is now seen after the candidate
    assert table.remove(oldest.node_id) == oldest
    assert table.bucket_for(late.node_id).contacts == [late, newest]


def test_address_conflict() -> None:
    table = RoutingTable(OWN, k=4)
    original = contact(at_distance(99), port=1)
    impostor = contact(at_distance(99), port=2)
    assert table.update(original, 1.0) == Added()
    assert table.update(impostor, 2.0) == Ignored("address conflict")
    assert table.get(original.node_id) == original
    # Once the known address stops answering, the node is taken to have moved.
    assert table.mark_failed(original.node_id) is None
    assert table.update(impostor, 3.0) == Updated()
    assert table.get(original.node_id) == impostor
    info = table.info(original.node_id)
    assert info is not None and info.failures == 0


def test_own_id_ignored_and_bad_ids_rejected() -> None:
    table = RoutingTable(OWN)
    assert table.update(contact(OWN), 0.0) == Ignored("own id")
    assert OWN not in table
    assert len(table) == 0
    with pytest.raises(ValueError):
        table.update(contact(b"short"), 0.0)
    with pytest.raises(ValueError):
        RoutingTable(b"short")
    with pytest.raises(ValueError):
        RoutingTable(OWN, k=0)


def test_split_keeps_order_and_relaxed_splitting() -> None:
    table = RoutingTable(OWN, k=2)
    a, b = contact(at_distance(2**255 + 1)), contact(at_distance(3))
    table.update(a, 1.0)
    table.update(b, 2.0)
    c = contact(at_distance(ID_SPACE - 1))
    # The single bucket holds the own id, so it splits at time 3.
    assert table.update(c, 3.0) == Added()
    assert [(x.low, x.high) for x in table.buckets] == [(0, 2**255), (2**255, ID_SPACE)]
    assert table.buckets[1].contacts == [a, c]
    # A split is no lookup; c, seen alive in a full far bucket, is activity there.
    assert [x.last_touched for x in table.buckets] == [0.0, 3.0]
    # The far bucket is full and does not hold the own id, but a far contact that is
    # among the 2 closest to us (only b is closer) still gets in by splitting it.
    d = contact(at_distance(2**255))
    assert table.update(d, 4.0) == Added()
    half = 2**255 + 2**254
    assert [(x.low, x.high) for x in table.buckets] == [
        (0, 2**255),
        (2**255, half),
        (half, ID_SPACE),
    ]
    assert table.buckets[1].contacts == [a, d]
    assert [x.last_touched for x in table.buckets] == [0.0, 4.0, 3.0]
    # A farther one in that full bucket is not among the 2 closest: it waits.
    e = contact(at_distance(2**255 + 5))
    assert table.update(e, 5.0) == PingOldest(a)
    assert e.node_id not in table
    check_structure(table)


def test_touch_and_stale_buckets() -> None:
    table = RoutingTable(OWN, k=1, now=100.0)
    assert table.stale_buckets(150.0, 60.0) == []
    assert table.stale_buckets(160.0, 60.0) == [(0, ID_SPACE)]  # boundary counts as stale
    table.update(contact(at_distance(2**255)), 200.0)
    table.update(contact(at_distance(1)), 300.0)  # splits down to the near contact at t=300
    # A split is no lookup: the halves are as stale as the bucket they came from.
    assert table.stale_buckets(300.0, 60.0) == [(x.low, x.high) for x in table.buckets]
    assert table.stale_buckets(300.0, 250.0) == []
    far = at_distance(2**255 + 5)
    assert table.bucket_for(far).low == 2**255
    assert table.stale_buckets(400.0, 60.0) == [(x.low, x.high) for x in table.buckets]
    table.touch(far, 390.0)
    assert (2**255, ID_SPACE) not in table.stale_buckets(400.0, 60.0)
    assert (2**255, ID_SPACE) in table.stale_buckets(450.0, 60.0)
    assert len(table.stale_buckets(400.0, 60.0)) == len(table.buckets) - 1


def test_scale_ten_thousand_contacts() -> None:
    rng = random.Random(7)
    table = RoutingTable(OWN)
    ids = [int_to_id(rng.getrandbits(ID_BITS)) for _ in range(10_000)]
    for i, node_id in enumerate(ids):
        table.update(contact(node_id), float(i))
    check_structure(table)
    assert k_closest_ids(set(ids), 20) <= {c.node_id for c in table.contacts()}
    for node_id in ids[:500]:
        assert len(table.closest(node_id, 20)) == 20


# --- closest: any shape of table ----------------------------------------------------

# Near ids split the own bucket deeply; clusters far away trigger relaxed splits of
# buckets that do not hold the own id; random ones fill the far buckets.
shape_distances = st.one_of(
    st.integers(1, 2**16),
    st.integers(1, ID_SPACE - 1),
    st.integers(2**255, 2**255 + 2**10),
    st.integers(2**200, 2**200 + 2**12),
)
shape_targets = st.one_of(
    shape_distances,
    st.just(0),  # the own id
    st.integers(0, 2**20),
    st.integers(0, ID_SPACE - 1),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(shape_distances, max_size=120, unique=True),
    st.integers(1, 6),
    st.lists(shape_targets, min_size=1, max_size=6),
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


# --- the hot paths agree with the general code -------------------------------------


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
                b.replacement_entries,
            )
            for b in table.buckets
        ],
        len(table),
        sorted(table._cached),
        table._bans.entries(),
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
    loopback = [ipaddress.ip_network("127.0.0.0/8")]  # exempt in these tables
    for b in table.buckets:
        groups = [subnet_group(c.host, loopback) for c in b.replacements]
        groups = [g for g in groups if g is not None]
        assert all(groups.count(g) <= cap for g in groups)


# Several /24s and /48s, an exempt loopback, a DNS name (not limited).
SHORT_PATH_HOSTS = [
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
updates = st.tuples(
    st.just("update"), picks, st.integers(0, len(SHORT_PATH_HOSTS) - 1), st.integers(1, 2)
)
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
        c = Contact(node_id, SHORT_PATH_HOSTS[i % len(SHORT_PATH_HOSTS)], 1)
        assert fast.update(c, now) == slow.update(c, now)
    for op in ops:
        now += 1.0
        node_id = ids[op[1] % len(ids)]
        if op[0] == "update":
            c = Contact(node_id, SHORT_PATH_HOSTS[op[2]], op[3])
            assert fast.update(c, now) == slow.update(c, now)
        elif op[0] == "fail":
            assert fast.mark_failed(node_id) == slow.mark_failed(node_id)
        elif op[0] == "remove":
            assert fast.remove(node_id) == slow.remove(node_id)
        elif op[0] == "ban":
            assert fast.ban(node_id, now + op[2], now=now) == slow.ban(
                node_id, now + op[2], now=now
            )
        else:
            _, t, count, pick = op
            target_id = int_to_id(t)
            excluded = {ids[pick % len(ids)], at_distance(FAR + 2**9)}  # one maybe in, one not
            check_closest(fast, target_id, count, excluded)
            assert fast.closest(target_id, count) == slow.closest(target_id, count)
        assert state(fast) == state(slow)
        check_cache_shares(fast, cap)
    event(f"short path used: {fast.hits > 0}")
    hypothesis_target(float(fast.hits), label="updates answered by the short path")


# --- the short path, case by case ---------------------------------------------------


def busy_far_table(cap: int | None = 1) -> tuple[CountingTable, list[Contact]]:
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
    table, members = busy_far_table()
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
    # Promoted when the oldest fails (twice), it keeps the time it was last seen.
    assert table.mark_failed(oldest.node_id) is None
    assert table.mark_failed(oldest.node_id) == oldest
    info = table.info(first.node_id)
    assert info is not None and info.contact == moved and info.last_seen == 13.0
    assert info.failures == 0


def test_short_path_steps_aside_for_another_host() -> None:
    table, _ = busy_far_table()
    stranger = Contact(at_distance(FAR + 100), "192.0.2.1", 1)
    assert isinstance(table.update(stranger, 10.0), PingOldest)
    elsewhere = Contact(stranger.node_id, "10.0.1.7", 1)  # the /24 of a member, at its share
    assert table.update(elsewhere, 11.0) == Ignored("subnet full")
    assert table.bucket_for(stranger.node_id).replacements == []
    assert table.hits == 0


def test_short_path_sees_a_group_fill_up_and_a_bucket_with_room() -> None:
    table, members = busy_far_table(cap=1)
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
    table, members = busy_far_table(cap=None)
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


CAP = 2


def honest_host(i: int) -> str:
    """A distinct /24 for every i."""
    return f"10.{(i >> 8) & 0xFF}.{i & 0xFF}.7"


def assert_capped(table: RoutingTable, cap: int = CAP, exempt: tuple[str, ...] = ()) -> None:
    networks = [ipaddress.ip_network(n) for n in exempt]
    for bucket in table.buckets:
        for contacts in (bucket.contacts, bucket.replacements):
            counts = Counter(subnet_group(c.host, networks) for c in contacts)
            counts.pop(None, None)
            assert max(counts.values(), default=0) <= cap, bucket


def far_full_table(k: int = 4) -> tuple[RoutingTable, list[Contact]]:
    """A capped table whose far bucket [2**255, 2**256) is full of honest contacts."""
    table = RoutingTable(OWN, k=k, max_per_subnet=CAP)
    for i in range(1, k + 1):  # near contacts: the own bucket splits away from the far half
        table.update(Contact(at_distance(i), honest_host(1000 + i), 1), 0.0)
    honest = [Contact(at_distance(2**255 + i), honest_host(i), 1) for i in range(k)]
    for i, c in enumerate(honest):
        assert table.update(c, 1.0 + i) == Added()
    assert table.bucket_for(honest[0].node_id).low == 2**255
    return table, honest


# --- subnet shares (the diversity filter) -------------------------------------


@pytest.mark.parametrize("attacker_first", [False, True])
@pytest.mark.parametrize("same_ip", [False, True])
def test_one_host_with_fifty_ids_gets_at_most_its_share(
    attacker_first: bool, same_ip: bool
) -> None:
    rng = random.Random(1)
    table = RoutingTable(OWN, k=20, max_per_subnet=CAP)

    # 50 attacker ids spread over the id space: two per distance scale, from the far
    # half down into the own neighbourhood, all from one /24.
    attacker = [
        Contact(
            at_distance(rng.randrange(2 ** (255 - i // 2), 2 ** (256 - i // 2))),
            "203.0.113.9" if same_ip else f"203.0.113.{i + 1}",
            4000 + i,
        )
        for i in range(50)
    ]
    honest = [Contact(int_to_id(rng.getrandbits(ID_BITS)), honest_host(i), 1) for i in range(3000)]
    first, second = (attacker, honest) if attacker_first else (honest, attacker)
    now = itertools.count()
    for c in first:
        table.update(c, float(next(now)))
    before = set(table.contacts())
    results = [table.update(c, float(next(now))) for c in second]
    # Refused newcomers never evict anyone: whatever was in a bucket is still there
    # (a PingOldest only asks the caller to check, it removes nothing).
    assert before <= set(table.contacts())
    assert_capped(table)
    if not attacker_first:
        assert Ignored("subnet full") in results

    attacker_ids = {c.node_id for c in attacker}
    taken = [sum(c.node_id in attacker_ids for c in b.contacts) for b in table.buckets]
    assert max(taken) <= CAP
    # Honest contacts from distinct subnets still fill the far buckets to k.
    assert len(table.buckets) > 5
    for bucket in table.buckets[-4:]:
        assert len(bucket) == table.k
        assert sum(c.node_id not in attacker_ids for c in bucket.contacts) >= table.k - CAP

    # The attacker keeps knocking while every honest contact "fails": promotions from the
    # replacement caches stay under the cap too.
    for i, c in enumerate(honest):
        table.mark_failed(c.node_id)
        if i % 10 == 0:
            for a in attacker:
                table.update(a, float(next(now)))
    assert_capped(table)


def test_full_bucket_caches_only_a_share_and_promotions_respect_the_cap() -> None:
    table, honest = far_full_table(k=4)
    far = table.bucket_for(honest[0].node_id)
    attackers = [Contact(at_distance(2**255 + 100 + i), "203.0.113.5", 9) for i in range(6)]
    assert table.update(attackers[0], 10.0) == PingOldest(honest[0])
    assert table.update(attackers[1], 11.0) == PingOldest(honest[0])
    # Its share of the replacement cache is taken: refused outright, not cached.
    assert table.update(attackers[2], 12.0) == Ignored("subnet full")
    assert far.replacements == attackers[:2]

    # An honest contact leaves: the newest attacker candidate is promoted.
    assert table.remove(honest[0].node_id) == honest[0]
    assert far.contacts[-1] == attackers[1]
    assert far.replacements == [attackers[0]]
    # Another attacker id fits the cache again (one in the bucket, one cached).
    assert table.update(attackers[3], 13.0) == PingOldest(honest[1])
    assert table.remove(honest[1].node_id) == honest[1]
    assert {c.node_id for c in far.contacts} >= {attackers[1].node_id, attackers[3].node_id}
    # Now the group holds its share of the bucket: the cached one may not be promoted,
    # and a newcomer of the group is refused even though the bucket has room.
    assert table.remove(honest[2].node_id) == honest[2]
    assert len(far) == 3
    assert far.replacements == [attackers[0]]
    assert table.update(attackers[4], 14.0) == Ignored("subnet full")
    assert attackers[4].node_id not in table and attackers[4] not in far.replacements
    # One failure of an honest contact does not drop it for a candidate that could not
    # take its place.
    assert table.mark_failed(honest[3].node_id) is None
    assert honest[3].node_id in table
    # An honest newcomer takes the free slot.
    newcomer = Contact(at_distance(2**255 + 200), honest_host(200), 1)
    assert table.update(newcomer, 15.0) == Added()
    # When an attacker entry fails, the cached attacker candidate may take its place.
    assert table.mark_failed(attackers[1].node_id) is None
    assert table.mark_failed(attackers[1].node_id) == attackers[1]
    assert attackers[0] in far.contacts
    assert far.replacements == []
    assert_capped(table)


def test_known_contact_moving_into_a_full_subnet_is_refused() -> None:
    table, honest = far_full_table(k=4)
    attackers = [Contact(at_distance(2**255 + 100 + i), "203.0.113.5", 9) for i in range(2)]
    table.remove(honest[0].node_id)
    table.remove(honest[1].node_id)
    for i, a in enumerate(attackers):
        assert table.update(a, 20.0 + i) == Added()
    moved = Contact(honest[2].node_id, "203.0.113.77", 1)
    assert table.mark_failed(honest[2].node_id) is None
    assert table.update(moved, 30.0) == Ignored("subnet full")
    assert table.get(honest[2].node_id) == honest[2]
    # Moving within its own group, or to a group with room, is fine.
    elsewhere = Contact(honest[2].node_id, honest_host(999), 1)
    assert table.update(elsewhere, 31.0) == Updated()
    assert table.get(honest[2].node_id) == elsewhere
    assert_capped(table)


# --- exemptions and grouping ---------------------------------------------------------


def test_exempt_ranges_and_dns_names_are_not_limited() -> None:
    table = RoutingTable(OWN, k=20, max_per_subnet=CAP, exempt=("127.0.0.0/8", "::1/128"))
    hosts = ["127.0.0.1", "127.0.0.2", "::1", "node.example", "localhost"]
    for i in range(60):
        host = hosts[i % len(hosts)]
        result = table.update(Contact(at_distance(2**255 + i), host, 5000 + i), float(i))
        assert isinstance(result, Added | PingOldest)
    far = table.bucket_for(at_distance(2**255))
    assert len(far) == 20
    assert len(far.replacements) == 20
    # Without the exemption, loopback is one /24 like any other.
    plain = RoutingTable(OWN, k=20, max_per_subnet=CAP)
    results = [
        plain.update(Contact(at_distance(2**255 + i), "127.0.0.1", 5000 + i), float(i))
        for i in range(5)
    ]
    assert results == [Added(), Added()] + [Ignored("subnet full")] * 3


def test_ipv6_contacts_grouped_by_48() -> None:
    table = RoutingTable(OWN, k=8, max_per_subnet=CAP)
    same = [f"2001:db8:aa:{i:x}::1" for i in range(4)]  # one /48, four /64s
    others = [f"2001:db8:{i + 1:x}::1" for i in range(4)]  # four /48s
    results = [
        table.update(Contact(at_distance(2**255 + i), host, 1), float(i))
        for i, host in enumerate(same + others)
    ]
    assert (
        results
        == [Added(), Added(), Ignored("subnet full"), Ignored("subnet full")] + [Added()] * 4
    )


def test_group_cache_is_bounded() -> None:
    table = RoutingTable(OWN, k=2, max_per_subnet=CAP)
    for i in range(5000):
        table.update(Contact(at_distance(2**255 + i), honest_host(i), 1), float(i))
    assert len(table._groups) <= 4096
    assert_capped(table)


def test_constructor_checks() -> None:
    with pytest.raises(ValueError):
        RoutingTable(OWN, max_per_subnet=0)
    with pytest.raises(ValueError):
        RoutingTable(OWN, exempt=("not a network",))
    with pytest.raises(TypeError):
        RoutingTable(OWN, exempt="127.0.0.0/8")
    with pytest.raises(ValueError):
        RoutingTable(OWN, max_bans=0)


# --- bans ----------------------------------------------------------------------------


def test_ban_removes_promotes_refuses_and_expires() -> None:
    table = RoutingTable(OWN, k=2)
    table.update(Contact(at_distance(1), "10.0.0.1", 1), 0.0)
    table.update(Contact(at_distance(2), "10.0.0.2", 1), 0.0)
    liar, other = (Contact(at_distance(2**255 + i), f"10.0.1.{i}", 1) for i in range(2))
    waiting = Contact(at_distance(2**255 + 50), "10.0.2.1", 1)
    table.update(liar, 1.0)
    table.update(other, 2.0)
    assert table.update(waiting, 3.0) == PingOldest(liar)

    assert table.bans_running(0.0) == 0
    assert table.ban(liar.node_id, until=100.0, now=0.0) == liar
    assert table.bans_running(99.0) == 1 and table.bans_running(100.0) == 0
    assert liar.node_id not in table
    assert table.get(waiting.node_id) == waiting  # the replacement took its place
    assert table.banned(liar.node_id, 99.0)
    assert table.update(liar, 50.0) == Ignored("banned")
    assert table.update(liar, 99.9) == Ignored("banned")
    assert liar.node_id not in table and liar not in table.bucket_for(liar.node_id).replacements
    # The ban runs out by time.
    assert not table.banned(liar.node_id, 100.0)
    assert isinstance(table.update(liar, 100.0), PingOldest)
    assert table.update(liar, 101.0) != Ignored("banned")

    # Banning an id not in the table still refuses it; banning again extends the ban.
    stranger = Contact(at_distance(77), "10.0.3.1", 1)
    assert table.ban(stranger.node_id, until=10.0, now=0.0) is None
    assert table.update(stranger, 5.0) == Ignored("banned")
    table.ban(stranger.node_id, until=20.0, now=0.0)
    assert table.update(stranger, 15.0) == Ignored("banned")
    assert table.update(stranger, 20.0) == Added()
    # A banned replacement-cache candidate is forgotten.
    cached = Contact(at_distance(2**255 + 60), "10.0.4.1", 1)
    assert isinstance(table.update(cached, 30.0), PingOldest)
    assert table.ban(cached.node_id, until=40.0, now=0.0) is None
    assert cached not in table.bucket_for(cached.node_id).replacements
    with pytest.raises(ValueError):
        table.ban(b"short", until=1.0, now=0.0)


def test_a_full_ban_list_lifts_no_ban_early() -> None:
    # Whoever can earn many bans must not be able to lift an older one with them.
    table = RoutingTable(OWN, max_bans=3)
    ids = [at_distance(2**200 + i) for i in range(5)]
    for i, node_id in enumerate(ids[:3]):
        table.ban(node_id, until=1000.0 + i, now=0.0)
    table.update(Contact(ids[3], "10.0.0.4", 1), 1.0)
    assert table.ban(ids[3], until=1000.0, now=1.0) == Contact(ids[3], "10.0.0.4", 1)
    assert [table.banned(i, 999.0) for i in ids] == [True, True, True, False, False]
    assert table.update(Contact(ids[0], "10.0.0.1", 1), 2.0) == Ignored("banned")
    # Banning again a banned id needs no room: it moves the end of its ban.
    table.ban(ids[1], until=2000.0, now=2.0)
    assert table.banned(ids[1], 1500.0)
    # Expired bans make room, and only they do.
    table.ban(ids[4], until=1500.0, now=1000.0)  # ids[0]'s ban is over at 1000
    assert [table.banned(i, 1000.0) for i in ids] == [False, True, True, False, True]
    table.ban(ids[3], until=1600.0, now=1001.0)  # ids[2]'s is over at 1002: still full
    assert not table.banned(ids[3], 1001.0)
    table.ban(ids[3], until=1600.0, now=1002.0)
    assert [table.banned(i, 1002.0) for i in ids] == [False, True, False, True, True]


def test_ban_list_cap_is_a_config_field() -> None:
    assert Config().max_bans == 1024
    with pytest.raises(ValueError):
        Config(max_bans=0)
    table = RoutingTable(OWN, max_bans=Config(max_bans=2).max_bans)
    ids = [at_distance(2**200 + i) for i in range(5)]
    for i, node_id in enumerate(ids):
        table.ban(node_id, until=1000.0 + i, now=0.0)
    # Over the cap further bans are not recorded; the first ones run their course.
    assert [table.banned(i, 0.0) for i in ids] == [True, True, False, False, False]
    assert table.update(Contact(ids[4], "10.0.0.1", 1), 1.0) == Added()
    assert table.update(Contact(ids[0], "10.0.0.2", 1), 1.0) == Ignored("banned")


def test_subnet_group_still_importable_from_routing() -> None:
    from trio_kad import _routing

    assert _routing.subnet_group is subnet_group


# --- state machine: the cap holds under any sequence ---------------------------------

CAPPED_HOSTS = ["203.0.113.1", "203.0.113.2", "198.51.100.1", "2001:db8:1::1", "2001:db8:1:2::1"]
CAPPED_HOSTS += [honest_host(i) for i in range(6)] + ["127.0.0.1", "127.0.0.2", "peer.example"]
EXEMPT = ("127.0.0.0/8",)
capped_distances = st.one_of(
    st.integers(1, 2**10), st.integers(2**255, 2**255 + 2**6), st.integers(1, ID_SPACE - 1)
)


class CappedMachine(RuleBasedStateMachine):
    """No model of who gets in: only the cap, the structure and no-eviction-on-refusal."""

    def __init__(self) -> None:
        super().__init__()
        self.table = RoutingTable(
            OWN, k=4, replacement_cache_size=6, max_per_subnet=CAP, exempt=EXEMPT
        )
        self.now = 0.0
        self.offered: list[bytes] = []

    @rule(d=capped_distances, host=st.sampled_from(CAPPED_HOSTS))
    def update(self, d: int, host: str) -> None:
        self.now += 1.0
        c = Contact(at_distance(d), host, 1)
        before = self.table.contacts()
        cached_before = {x for b in self.table.buckets for x in b.replacements}
        result = self.table.update(c, self.now)
        self.offered.append(c.node_id)
        if isinstance(result, Ignored):
            # A refusal changes nobody's place (a split may come first; it evicts no one),
            # beyond forgetting the refused id.
            assert set(self.table.contacts()) == set(before)
            assert (c.node_id in self.table) == (c.node_id in {x.node_id for x in before})
            cached_after = {x for b in self.table.buckets for x in b.replacements}
            assert cached_after == {x for x in cached_before if x.node_id != c.node_id}
            if result == Ignored("banned"):
                assert self.table.banned(c.node_id, self.now)
        elif isinstance(result, PingOldest):
            # Nobody evicted: a full bucket may not split; it only asks for a ping.
            assert set(before) <= set(self.table.contacts())

    @precondition(lambda self: self.offered)
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        self.table.mark_failed(data.draw(st.sampled_from(self.offered)))

    @precondition(lambda self: self.offered)
    @rule(data=st.data(), duration=st.integers(0, 5))
    def ban(self, data: st.DataObject, duration: int) -> None:
        node_id = data.draw(st.sampled_from(self.offered))
        self.table.ban(node_id, self.now + duration, now=self.now)
        assert node_id not in self.table

    @invariant()
    def capped(self) -> None:
        assert_capped(self.table, exempt=EXEMPT)
        for bucket in self.table.buckets:
            assert len(bucket) <= self.table.k
            assert len(bucket.replacements) <= 6
            for c in bucket.contacts + bucket.replacements:
                assert bucket.covers(distance(c.node_id, OWN))
        assert len(self.table) == sum(len(b) for b in self.table.buckets)


TestCappedMachine = CappedMachine.TestCase
TestCappedMachine.settings = machine_settings(max_examples=30)


# --- refresh: what counts as activity in a range (paper 2.3) ----------------------------


def test_traffic_refreshes_a_full_bucket_but_not_one_with_room() -> None:
    table = RoutingTable(OWN, k=2, now=0.0, max_per_subnet=1)
    far = [at_distance(2**255 + i) for i in range(1, 5)]
    table.update(Contact(far[0], "10.0.1.1", 1), 10.0)
    assert table.bucket_for(far[0]).last_touched == 0.0  # room left: only a lookup counts
    table.update(Contact(far[0], "10.0.1.1", 1), 20.0)
    assert table.bucket_for(far[0]).last_touched == 0.0
    table.update(Contact(at_distance(1), "10.0.2.1", 1), 30.0)  # splits: halves made at 30
    table.update(Contact(far[1], "10.0.3.1", 1), 40.0)  # fills the far bucket
    bucket = table.bucket_for(far[0])
    assert bucket.full and bucket.last_touched == 40.0
    table.update(Contact(far[0], "10.0.1.1", 1), 50.0)  # a known contact seen again
    assert bucket.last_touched == 50.0
    table.update(Contact(far[2], "10.0.4.1", 1), 60.0)  # a newcomer waits: PingOldest
    assert bucket.last_touched == 60.0
    table.update(Contact(far[3], "10.0.3.2", 1), 70.0)  # its /24 has its share: ignored
    assert bucket.last_touched == 60.0
    assert table.stale_buckets(60.0 + 100.0, 100.0) == [(b.low, b.high) for b in table.buckets]


def test_the_own_neighbourhood_is_touched_as_a_whole() -> None:
    table = RoutingTable(OWN, k=2, now=0.0)
    for d in (1, 2, 3, 2**255, 2**100):
        table.update(contact(at_distance(d)), 0.0)
    assert table.neighbourhood_radius() == 3  # past the 2nd closest, at distance 2
    table.touch_within(table.neighbourhood_radius(), 5.0)
    assert [b.last_touched == 5.0 for b in table.buckets] == [b.high <= 3 for b in table.buckets]
    assert RoutingTable(OWN, k=2).neighbourhood_radius() == ID_SPACE  # fewer than k known
