"""One k-bucket on its own: order, replacement cache, subnet shares, nearest, split."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trio_kad._bucket import FAILURES_BEFORE_REPLACEMENT, Bucket, ContactInfo, Entry, PingOldest
from trio_kad._ids import ID_BITS, ID_SPACE, Contact, distance, id_to_int, int_to_id

OWN = int_to_id(0x5A5A << (ID_BITS - 16))
FAR = 2**255  # the far half: [FAR, ID_SPACE)


def far_bucket(capacity: int = 3, cache_size: int = 2, share: int | None = None) -> Bucket:
    return Bucket(FAR, ID_SPACE, 0.0, capacity=capacity, cache_size=cache_size, share=share)


def entry(bucket: Bucket, d: int, now: float = 0.0, group: int | None = None) -> Entry:
    """An entry for the id at distance ``d`` from the own id, host in ``group``."""
    node_id = int_to_id(id_to_int(OWN) ^ d)
    host = f"10.0.{group if group is not None else 0}.1"
    return Entry(Contact(node_id, host, 1), id_to_int(node_id), d, now, group, bucket)


def test_reading_an_empty_bucket() -> None:
    bucket = far_bucket()
    assert (bucket.low, bucket.high, bucket.size) == (FAR, ID_SPACE, FAR)
    assert len(bucket) == 0 and not bucket.full
    assert bucket.contacts == bucket.replacements == []
    assert bucket.covers(FAR) and bucket.covers(ID_SPACE - 1)
    assert not bucket.covers(FAR - 1) and not bucket.covers(ID_SPACE)
    assert bucket.nearest(0, frozenset(), 5) == []
    assert "contacts=0" in repr(bucket) and "size=2**255" in repr(bucket)


def test_least_recently_seen_first_and_seen_moves_last() -> None:
    bucket = far_bucket()
    a, b, c = (entry(bucket, FAR + i, now=float(i)) for i in range(3))
    for e in (a, b, c):
        bucket.add(e)
    assert bucket.full
    assert bucket.contacts == [a.contact, b.contact, c.contact]
    assert bucket.ping_oldest() == PingOldest(a.contact)
    a.failures = 2
    bucket.seen(a, 10.0)
    assert bucket.contacts == [b.contact, c.contact, a.contact]
    assert bucket.entries[-1] == ContactInfo(a.contact, 10.0, 0)
    # One PingOldest per oldest contact, handed out again while it stays oldest.
    assert bucket.ping_oldest() is bucket.ping_oldest()
    assert bucket.ping_oldest().oldest == b.contact
    assert bucket.count_nearer(FAR + 2) == 2
    bucket.remove(b)
    assert bucket.contacts == [c.contact, a.contact] and not bucket.full


def test_replacement_cache_is_bounded_oldest_out() -> None:
    bucket = far_bucket(cache_size=2)
    waiting = [entry(bucket, FAR + 10 + i, now=float(i)) for i in range(3)]
    assert bucket.add_replacement(waiting[0]) is None
    assert bucket.add_replacement(waiting[1]) is None
    assert bucket.add_replacement(waiting[2]) is waiting[0]
    assert bucket.replacements == [waiting[1].contact, waiting[2].contact]
    bucket.forget_replacement(waiting[2])
    assert bucket.replacements == [waiting[1].contact]
    # A cache of size 0 keeps nobody: the newcomer falls straight out.
    none = far_bucket(cache_size=0)
    lone = entry(none, FAR + 1)
    assert none.add_replacement(lone) is lone and none.replacements == []


def test_reseen_replacement_moves_last_and_asks_for_the_oldest() -> None:
    bucket = far_bucket(capacity=1)
    oldest = entry(bucket, FAR)
    bucket.add(oldest)
    first, second = entry(bucket, FAR + 1, 1.0), entry(bucket, FAR + 2, 2.0)
    bucket.add_replacement(first)
    bucket.add_replacement(second)
    first.failures = 1
    moved = Contact(first.node_id, first.contact.host, 2)
    # Not certain, nothing changes: fewer than k (1) contacts nearer than this bucket
    # (it may split), or another host (maybe another subnet group).
    assert bucket.reseen_replacement(first, moved, 5.0, up_to_here=1) is None
    elsewhere = Contact(first.node_id, "192.0.2.1", 1)
    assert bucket.reseen_replacement(first, elsewhere, 5.0, up_to_here=2) is None
    assert bucket.replacements == [first.contact, second.contact]
    assert bucket.reseen_replacement(first, moved, 5.0, up_to_here=2) == PingOldest(oldest.contact)
    assert bucket.replacement_entries == [
        ContactInfo(second.contact, 2.0, 0),
        ContactInfo(moved, 5.0, 0),
    ]


def test_subnet_share_of_contacts_and_cache() -> None:
    bucket = far_bucket(capacity=4, cache_size=4, share=2)
    one, two = entry(bucket, FAR + 1, group=7), entry(bucket, FAR + 2, group=7)
    assert bucket.has_room_for(7)
    bucket.add(one)
    bucket.add(two)
    assert not bucket.has_room_for(7)
    assert bucket.has_room_for(7, leaving=one)  # once ``one`` leaves
    assert bucket.has_room_for(8) and bucket.has_room_for(None)
    # Moving to another group frees a place in the old one.
    bucket.readdress(two, Contact(two.node_id, "10.0.8.1", 1), 8)
    assert bucket.has_room_for(7)
    cached = [entry(bucket, FAR + 10 + i, group=9) for i in range(2)]
    for e in cached:
        assert bucket.cache_has_room_for(9)
        bucket.add_replacement(e)
    assert not bucket.cache_has_room_for(9)
    assert bucket.cache_has_room_for(None)
    # Without a share nothing is limited.
    free = far_bucket(share=None)
    free.add(entry(free, FAR + 1, group=7))
    assert free.has_room_for(7) and free.cache_has_room_for(7)


def test_promote_takes_the_newest_candidate_with_room_in_its_group() -> None:
    bucket = far_bucket(capacity=3, cache_size=3, share=1)
    members = [entry(bucket, FAR + i, now=float(i * 10), group=i) for i in range(3)]
    for e in members:
        bucket.add(e)
    assert bucket.promote() is None  # full
    blocked = entry(bucket, FAR + 20, now=25.0, group=1)  # group 1 holds its share
    eligible = entry(bucket, FAR + 21, now=15.0, group=5)
    bucket.add_replacement(eligible)
    bucket.add_replacement(blocked)
    assert bucket.has_replacement_for(members[0])  # eligible could take its place
    assert bucket.has_replacement_for(members[1])
    bucket.remove(members[2])
    eligible.failures = 1
    assert bucket.promote() is eligible
    assert eligible.failures == 0
    # Slotted in by last-seen time: 0, 10, then it (15).
    assert bucket.contacts == [members[0].contact, members[1].contact, eligible.contact]
    assert bucket.replacements == [blocked.contact]
    bucket.remove(members[0])
    assert bucket.promote() is None  # the only candidate's group is at its share
    assert bucket.has_replacement_for(members[1])  # but it could replace its own group's


def test_split_shares_out_in_order_and_keeps_the_limits() -> None:
    bucket = Bucket(0, ID_SPACE, 0.0, capacity=4, cache_size=2, share=1)
    ds = [FAR + 3, 5, FAR + 1, 7]
    entries = [entry(bucket, d, now=float(i), group=i) for i, d in enumerate(ds)]
    for e in entries:
        bucket.add(e)
    near_cached, far_cached = entry(bucket, 9, group=9), entry(bucket, FAR + 9, group=9)
    bucket.add_replacement(near_cached)
    bucket.add_replacement(far_cached)
    near, far = bucket.split(3.0)
    assert (near.low, near.high, far.low, far.high) == (0, FAR, FAR, ID_SPACE)
    assert near.last_touched == far.last_touched == 3.0
    assert near.contacts == [entries[1].contact, entries[3].contact]
    assert far.contacts == [entries[0].contact, entries[2].contact]
    assert near.replacements == [near_cached.contact]
    assert far.replacements == [far_cached.contact]
    assert all(e.bucket is (near if e.distance < FAR else far) for e in entries)
    assert near_cached.bucket is near and far_cached.bucket is far
    # The halves keep capacity, cache size and share.
    assert not near.has_room_for(1) and near.has_room_for(2)
    near.add(entry(near, 11, group=11))
    near.add(entry(near, 12, group=12))
    assert near.full


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 2**20 - 1), min_size=0, max_size=12, unique=True),
    st.integers(0, ID_SPACE - 1),
    st.integers(0, 15),
    st.data(),
    st.booleans(),
)
def test_nearest_matches_brute_force(
    offsets: list[int], target: int, count: int, data: st.DataObject, clustered: bool
) -> None:
    # Clustered ids share all but their last 20 bits: the shortened sort keys collide
    # and the bucket sorts on whole ids. Spread ids keep the short keys.
    bucket = far_bucket(capacity=len(offsets) or 1)
    shift = 0 if clustered else 235
    entries = [entry(bucket, FAR + (o << shift)) for o in offsets]
    for e in entries:
        bucket.add(e)
    everyone = sorted((e.contact for e in entries), key=lambda c: id_to_int(c.node_id) ^ target)
    assert bucket.nearest(target, frozenset(), count) == everyone[:count]
    ids = [e.node_id for e in entries]
    excluded = set(data.draw(st.lists(st.sampled_from(ids), max_size=3))) if ids else set()
    expected = [c for c in everyone if c.node_id not in excluded][:count]
    assert bucket.nearest(target, excluded, count) == expected
    assert bucket.nearest(target, list(excluded), count) == expected
    for c in bucket.nearest(target, frozenset(), count):
        assert bucket.covers(distance(c.node_id, OWN))


def test_a_contact_gives_its_place_to_a_replacement_after_two_failures_in_a_row() -> None:
    bucket = far_bucket(capacity=2, cache_size=2)
    old, other = entry(bucket, FAR + 1), entry(bucket, FAR + 2)
    bucket.add(old)
    bucket.add(other)
    # Nobody waits: it stays until max_failures.
    other.failures = 2
    assert not bucket.evicts(other, max_failures=3)
    other.failures = 3
    assert bucket.evicts(other, max_failures=3)
    other.failures = 0
    bucket.add_replacement(entry(bucket, FAR + 10, now=5.0))
    # One lost reply keeps a long-lived contact even with a candidate waiting
    # (paper section 2.2); a second in a row gives the candidate its place.
    old.failures = 1
    assert not bucket.evicts(old, max_failures=3)
    old.failures = FAILURES_BEFORE_REPLACEMENT
    assert bucket.evicts(old, max_failures=3)
    # A max_failures below that still rules.
    old.failures = 1
    assert bucket.evicts(old, max_failures=1)


def test_a_candidate_that_could_not_take_the_place_evicts_nobody() -> None:
    bucket = far_bucket(capacity=2, cache_size=2, share=1)
    honest, neighbour = entry(bucket, FAR + 1, group=1), entry(bucket, FAR + 2, group=2)
    bucket.add(honest)
    bucket.add(neighbour)
    bucket.add_replacement(entry(bucket, FAR + 10, group=2))  # group 2 is at its share
    honest.failures = FAILURES_BEFORE_REPLACEMENT
    assert not bucket.evicts(honest, max_failures=3)
    neighbour.failures = FAILURES_BEFORE_REPLACEMENT
    assert bucket.evicts(neighbour, max_failures=3)
