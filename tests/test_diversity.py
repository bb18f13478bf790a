"""Routing-table hygiene: per-subnet caps per bucket (diversity filter) and bans."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_kad._ids import ID_BITS, ID_SPACE, Contact, distance, id_to_int, int_to_id
from trio_kad._routing import (
    Added,
    Ignored,
    PingOldest,
    RoutingTable,
    Updated,
    subnet_group,
)

OWN = int_to_id(0x5A5A << (ID_BITS - 16))
CAP = 2


def at_distance(d: int) -> bytes:
    return int_to_id(id_to_int(OWN) ^ d)


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


# --- a host with many ids ------------------------------------------------------------


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


def test_subnet_grouping() -> None:
    assert subnet_group("203.0.113.1") == subnet_group("203.0.113.254")
    assert subnet_group("203.0.113.1") != subnet_group("203.0.112.1")
    # IPv6: one /48 per group, however the lower 80 bits differ.
    assert subnet_group("2001:db8:1::1") == subnet_group("2001:db8:1:ffff:1234::9")
    assert subnet_group("2001:db8:1::1") != subnet_group("2001:db8:2::1")
    # IPv4 and IPv6 groups never collide; an IPv4-mapped address is its IPv4 host.
    assert subnet_group("::cb00:7101") != subnet_group("203.0.113.1")
    assert subnet_group("::ffff:203.0.113.1") == subnet_group("203.0.113.9")
    assert subnet_group("fe80::1%eth0") == subnet_group("fe80::2")
    assert subnet_group("example.org") is None
    assert subnet_group("") is None
    loopback = [ipaddress.ip_network("127.0.0.0/8")]
    assert subnet_group("127.1.2.3", loopback) is None
    assert subnet_group("::ffff:127.0.0.1", loopback) is None
    assert subnet_group("10.0.0.1", loopback) is not None


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

    assert table.ban(liar.node_id, until=100.0) == liar
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
    assert table.ban(stranger.node_id, until=10.0) is None
    assert table.update(stranger, 5.0) == Ignored("banned")
    table.ban(stranger.node_id, until=20.0)
    assert table.update(stranger, 15.0) == Ignored("banned")
    assert table.update(stranger, 20.0) == Added()
    # A banned replacement-cache candidate is forgotten.
    cached = Contact(at_distance(2**255 + 60), "10.0.4.1", 1)
    assert isinstance(table.update(cached, 30.0), PingOldest)
    assert table.ban(cached.node_id, until=40.0) is None
    assert cached not in table.bucket_for(cached.node_id).replacements
    with pytest.raises(ValueError):
        table.ban(b"short", until=1.0)


def test_ban_list_is_bounded_oldest_first() -> None:
    table = RoutingTable(OWN, max_bans=3)
    ids = [at_distance(2**200 + i) for i in range(4)]
    for i in ids[:3]:
        table.ban(i, until=1000.0)
    table.ban(ids[0], until=1000.0)  # re-banned: now the newest
    table.ban(ids[3], until=1000.0)  # over the bound: ids[1], the oldest ban, is lifted
    assert [table.banned(i, 0.0) for i in ids] == [True, False, True, True]
    assert table.update(Contact(ids[1], "10.0.0.1", 1), 1.0) == Added()
    assert table.update(Contact(ids[0], "10.0.0.2", 1), 1.0) == Ignored("banned")


# --- state machine: the cap holds under any sequence ---------------------------------

HOSTS = ["203.0.113.1", "203.0.113.2", "198.51.100.1", "2001:db8:1::1", "2001:db8:1:2::1"]
HOSTS += [honest_host(i) for i in range(6)] + ["127.0.0.1", "127.0.0.2", "peer.example"]
EXEMPT = ("127.0.0.0/8",)
distances = st.one_of(
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

    @rule(d=distances, host=st.sampled_from(HOSTS))
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
        self.table.ban(node_id, self.now + duration)
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
TestCappedMachine.settings = settings(
    max_examples=30,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
