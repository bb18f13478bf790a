"""Routing table: invariants against a model, relaxed splitting, eviction and refresh rules."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trio_kad._ids import ID_BITS, ID_SPACE, Contact, distance, id_to_int, int_to_id
from trio_kad._routing import (
    Added,
    Ignored,
    PingOldest,
    RoutingTable,
    Updated,
)

OWN = int_to_id(0x5A5A << (ID_BITS - 16))


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


# --- state machine -------------------------------------------------------------------

# Ids are drawn as distances from the own id: small ones land near us (deep buckets, the
# relaxed-splitting path), large ones far away (full, unsplittable buckets).
near_distances = st.integers(min_value=1, max_value=2**12)
far_distances = st.integers(min_value=2**255, max_value=2**255 + 2**8)
any_distances = st.integers(min_value=1, max_value=ID_SPACE - 1)


class RoutingMachine(RuleBasedStateMachine):
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
        if replacements or self.failures[node_id] >= self.max_failures:
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
        removed = self.table.ban(node_id, self.now + duration)
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


TestRoutingMachine = RoutingMachine.TestCase
TestRoutingMachine.settings = settings(
    max_examples=60,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


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
    # newest did not answer: with a replacement waiting, one failure is enough.
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
    assert all(x.last_touched == 3.0 for x in table.buckets)
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
    assert table.buckets[1].last_touched == 4.0
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
    assert table.stale_buckets(300.0, 60.0) == []
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
