"""The address policy (``_address``): which hosts a contact may name, and per-IP grouping.

Pure functions first, exhaustively: every special range at its edges and
inside, the standard library's flags as an oracle, and random hosts. Then
the policy as the node applies it, over the in-memory network only (its
addresses are labels: nothing is ever sent to them).
"""

from __future__ import annotations

import ipaddress
import random
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_kad import Config, Dht, MemoryNetwork, open_dht
from trio_kad._address import (
    AddressPolicy,
    Scope,
    address_scope,
    contact_address_allowed,
    ip_group,
    ip_literal,
    listening_scope,
    listens_on_loopback,
)
from trio_kad._ids import Contact
from trio_kad._messages import ErrorReply, Ping, RequestFrame, Store, Stored
from trio_kad._node import Node
from trio_kad.testing import node_of

U, L, P, G = Scope.UNROUTABLE, Scope.LOOPBACK, Scope.PRIVATE, Scope.GLOBAL

# Every range the policy singles out, with its scope, and the ranges around them.
RANGES = [
    ("0.0.0.0/8", U),
    ("10.0.0.0/8", P),
    ("100.64.0.0/10", P),
    ("127.0.0.0/8", L),
    ("169.254.0.0/16", U),
    ("172.16.0.0/12", P),
    ("192.0.0.0/24", U),
    ("192.0.2.0/24", U),
    ("192.88.99.0/24", U),
    ("192.168.0.0/16", P),
    ("198.18.0.0/15", U),
    ("198.51.100.0/24", U),
    ("203.0.113.0/24", U),
    ("224.0.0.0/4", U),
    ("240.0.0.0/4", U),
    ("1.0.0.0/8", G),
    ("11.0.0.0/8", G),
    ("100.128.0.0/9", G),
    ("172.32.0.0/11", G),
    ("192.169.0.0/16", G),
    ("223.0.0.0/8", G),
    ("::/128", U),
    ("::1/128", L),
    ("::2/127", U),
    ("::/96", U),  # IPv4-compatible, deprecated (::1 and :: aside)
    ("64:ff9b::/96", U),
    ("100::/64", U),
    ("1fff:ffff::/32", U),
    ("2000::/16", G),
    ("2001::/23", U),
    ("2001:200::/23", G),
    ("2001:db8::/32", U),
    ("2002::/16", U),
    ("2003::/16", G),
    ("2606:4700::/32", G),
    ("3ffe::/16", G),
    ("3fff::/20", U),
    ("4000::/3", U),
    ("5f00::/16", U),
    ("fc00::/7", P),
    ("fe80::/10", U),
    ("fec0::/10", U),
    ("ff00::/8", U),
]


@pytest.mark.parametrize(("network", "scope"), RANGES)
def test_each_range_has_its_scope_at_its_edges_and_inside(network: str, scope: Scope) -> None:
    net = ipaddress.ip_network(network)
    rng = random.Random(network)
    first, last = int(net.network_address), int(net.broadcast_address)
    inside = [first, last, *(rng.randint(first, last) for _ in range(50))]
    kind = type(net.network_address)
    for value in inside:
        host = str(kind(value))
        if host in ("::", "::1") and network == "::/96":
            continue  # the two addresses ::/96 holds that are not IPv4-compatible
        assert address_scope(host) is scope, host


EXAMPLES = {
    # Reachable.
    "127.0.0.1": L,
    "127.255.255.254": L,
    "::1": L,
    "::ffff:127.0.0.1": L,  # a mapped address is its IPv4 address
    "10.1.2.3": P,
    "::ffff:10.1.2.3": P,
    "fd12:3456::1": P,
    "8.8.8.8": G,
    "::ffff:8.8.8.8": G,
    "2606:4700:4700::1111": G,
    "2606:4700:4700:0:0:0:0:1111": G,  # any spelling ipaddress reads
    # Never dialed for a peer.
    "0.0.0.0": U,
    "::": U,
    "255.255.255.255": U,
    "224.0.0.1": U,
    "239.255.255.250": U,
    "ff02::1": U,
    "169.254.169.254": U,  # cloud metadata
    "::ffff:169.254.169.254": U,
    "fe80::1": U,
    "fe80::1%eth0": U,
    "2606:4700::1%1": U,  # a zone on any address: not a plain literal
    "::ffff:8.8.8.8%eth0": U,
    "192.0.2.1": U,
    "2001:db8::1": U,
    "localhost": U,  # a name, even this one
    "example.org": U,
    "metadata.google.internal": U,
    "127.1": U,  # what the C resolver would read as 127.0.0.1
    "0x7f000001": U,
    "2130706433": U,
    "0177.0.0.1": U,
    "127.0.0.01": U,
    "[::1]": U,
    "1.2.3.4/32": U,
    "1.2.3.4 ": U,
    "": U,
}


@pytest.mark.parametrize(("host", "scope"), EXAMPLES.items())
def test_examples(host: str, scope: Scope) -> None:
    assert address_scope(host) is scope


def test_a_host_that_is_not_a_string_is_unroutable() -> None:
    assert address_scope(b"127.0.0.1") is U  # type: ignore[arg-type]
    assert address_scope(None) is U  # type: ignore[arg-type]
    assert not contact_address_allowed(None, "127.0.0.1")  # type: ignore[arg-type]


OWN_HOSTS = {
    "127.0.0.1": L,
    "127.0.0.2": L,
    "::1": L,
    "localhost": L,
    "LocalHost": L,
    "10.0.0.1": P,
    "192.168.1.20": P,
    "fd00::5": P,
    "100.64.0.1": P,
    "8.8.8.8": G,
    "2606:4700::1": G,
    "0.0.0.0": G,  # every interface: reachable from anywhere, so public
    "::": G,
    "": G,
    "dht.example.org": G,  # a name may point anywhere: public
    "192.0.2.7": G,  # an odd address to listen on: public
    "169.254.1.1": G,
}


@pytest.mark.parametrize(("own_host", "scope"), OWN_HOSTS.items())
def test_listening_scope(own_host: str, scope: Scope) -> None:
    assert listening_scope(own_host) is scope
    assert listens_on_loopback(own_host) == (scope is L)


@pytest.mark.parametrize("own_host", OWN_HOSTS)
@pytest.mark.parametrize("host", EXAMPLES)
def test_allowed_means_unicast_and_no_narrower_than_the_own_address(
    host: str, own_host: str
) -> None:
    scope, own = address_scope(host), listening_scope(own_host)
    expected = scope is not U and scope >= own
    assert contact_address_allowed(host, own_host) == expected
    assert AddressPolicy(own_host).allows(host) == expected


def test_what_each_kind_of_node_accepts() -> None:
    kinds = {"127.0.0.1": "LPG", "10.0.0.1": "PG", "0.0.0.0": "G"}
    contacts = {"127.0.0.1": "L", "::1": "L", "192.168.0.9": "P", "fd00::9": "P", "1.1.1.1": "G"}
    for own_host, accepted in kinds.items():
        for host, scope in contacts.items():
            assert contact_address_allowed(host, own_host) == (scope in accepted), (host, own_host)


# --- the standard library as an oracle --------------------------------------------

ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
ipv6s = st.one_of(
    st.integers(0, 2**128 - 1),
    # Bias toward the interesting prefixes.
    st.tuples(
        st.sampled_from([0, 0x0064_FF9B, 0x2001_0000, 0x2001_0DB8, 0x2002_0000, 0xFE80_0000]),
        st.integers(0, 2**96 - 1),
    ).map(lambda t: t[0] << 96 | t[1]),
    st.tuples(st.sampled_from([0xFC, 0xFD, 0xFF, 0x20, 0x3F]), st.integers(0, 2**120 - 1)).map(
        lambda t: t[0] << 120 | t[1]
    ),
).map(ipaddress.IPv6Address)


@settings(max_examples=2000, deadline=None)
@given(ipv4s)
def test_ipv4_scopes_agree_with_the_standard_flags(ip: ipaddress.IPv4Address) -> None:
    scope = address_scope(str(ip))
    assert (scope is L) == ip.is_loopback
    if ip.is_multicast or ip.is_link_local or ip.is_unspecified or ip.is_reserved:
        assert scope is U
    if scope is G:
        assert ip.is_global and not ip.is_multicast
    if scope is P:
        assert ip.is_private or ip in ipaddress.ip_network("100.64.0.0/10")
    # Mapped into IPv6, the same host.
    assert address_scope(f"::ffff:{ip}") is scope
    assert ip_literal(f"::ffff:{ip}") == ip


@settings(max_examples=2000, deadline=None)
@given(ipv6s)
def test_ipv6_scopes_agree_with_the_standard_flags(ip: ipaddress.IPv6Address) -> None:
    scope = address_scope(str(ip))
    if ip.ipv4_mapped is not None:
        assert scope is address_scope(str(ip.ipv4_mapped))
        return
    assert (scope is L) == ip.is_loopback
    if ip.is_multicast or ip.is_link_local or ip.is_site_local or ip.is_unspecified:
        assert scope is U
    if ip.is_reserved and not ip.is_loopback:  # ::/8 holds ::1
        assert scope is U
    if scope is G:
        assert ip.is_global and ip in ipaddress.ip_network("2000::/3")
    if scope is P:
        assert ip.is_private
    assert address_scope(f"{ip}%eth0") is U


names = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(names, st.sampled_from(list(OWN_HOSTS)))
def test_names_are_never_allowed(name: str, own_host: str) -> None:
    assert not contact_address_allowed(name, own_host)


any_hosts = st.one_of(
    ipv4s.map(str),
    ipv6s.map(str),
    st.sampled_from(list(EXAMPLES)),
    names,
    st.text(max_size=12),
)


@settings(max_examples=500, deadline=None)
@given(any_hosts)
def test_a_narrower_own_address_accepts_everything_a_wider_one_does(host: str) -> None:
    public = contact_address_allowed(host, "8.8.8.8")
    private = contact_address_allowed(host, "10.0.0.1")
    loopback = contact_address_allowed(host, "127.0.0.1")
    assert not public or private
    assert not private or loopback
    if loopback:  # whatever is allowed at all is an IP literal
        assert ip_literal(host) is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(any_hosts, min_size=1, max_size=12), st.sampled_from(list(OWN_HOSTS)))
def test_the_policy_object_agrees_with_the_function(hosts: list[str], own_host: str) -> None:
    policy = AddressPolicy(own_host, cache_size=3)
    for host in hosts + hosts:  # again, from its cache (emptied whenever full)
        assert policy.allows(host) == contact_address_allowed(host, own_host)
    contacts = tuple(Contact(bytes([i]) * 32, h, 1) for i, h in enumerate(hosts))
    allowed = policy.allowed(contacts)
    assert allowed == tuple(c for c in contacts if contact_address_allowed(c.host, own_host))
    if len(allowed) == len(contacts):
        assert allowed is contacts  # nothing to drop: no copy


def test_policy_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AddressPolicy("127.0.0.1", cache_size=0)


# --- per-IP grouping --------------------------------------------------------------


@settings(max_examples=1000, deadline=None)
@given(ipv6s, st.integers(0, 2**64 - 1))
def test_one_ipv6_64_is_one_group(ip: ipaddress.IPv6Address, low: int) -> None:
    same_64 = ipaddress.IPv6Address(int(ip) >> 64 << 64 | low)
    if ip.ipv4_mapped is not None or same_64.ipv4_mapped is not None:
        return  # ::ffff:0:0/96 lies inside ::/64 and is an IPv4 address, its own group
    assert ip_group(str(ip)) == ip_group(str(same_64)) == ip_group(same_64.exploded)
    next_64 = ipaddress.IPv6Address((int(ip) ^ 1 << 64) & (2**128 - 1))
    assert ip_group(str(ip)) != ip_group(str(next_64))


@settings(max_examples=500, deadline=None)
@given(ipv4s, ipv4s)
def test_each_ipv4_address_is_its_own_group(
    a: ipaddress.IPv4Address, b: ipaddress.IPv4Address
) -> None:
    assert ip_group(str(a)) == str(a) == ip_group(f"::ffff:{a}")
    assert (ip_group(str(a)) == ip_group(str(b))) == (a == b)
    # Never the same key as an IPv6 group.
    assert ip_group(str(a)) != ip_group(f"{a.packed.hex()}::")


def test_ip_group_examples() -> None:
    assert ip_group("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert ip_group("::1") == "::/64"
    assert ip_group("192.0.2.1") == "192.0.2.1"
    assert ip_group("not an address") == "not an address"
    assert ip_group("a:b") == "a:b"


async def test_the_records_quota_counts_an_ipv6_64_as_one_ip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(3)
    config = Config(max_records_per_ip=2).for_host("2606:4700::1")
    node = Node(rng.randbytes(32), config, MemoryNetwork().transport(), rng=rng)
    replies = []
    for i in range(3):
        frame = RequestFrame(i + 1, rng.randbytes(32), None, Store(rng.randbytes(32), b"\x01"))
        replies.append(await node.handle_request(frame, (f"2001:db8:1:2::{i + 1}", 40000)))
    assert [type(r) for r in replies] == [Stored, Stored, ErrorReply]


# --- the node applies the policy (in-memory network: addresses are labels) ---------

TRAPS = ["127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "metadata.internal", "fe80::1"]


async def _dialed_traps(own_host: str, liar_host: str, *, client_only: bool = False) -> list[str]:
    """The trap hosts a node on ``own_host`` dials after one lookup through a liar naming them."""
    network = MemoryNetwork(rng=random.Random(5))
    async with AsyncExitStack() as stack:

        async def start(host: str, *peers: tuple[str, int], client_only: bool = False) -> Dht:
            return await stack.enter_async_context(
                open_dht(
                    host,
                    0,
                    peers,
                    transport=network.transport(),
                    config=Config(k=8),
                    rng=random.Random(len(host)),
                    client_only=client_only,
                )
            )

        traps = [await start(host) for host in TRAPS]
        liar = await start(liar_host)
        now = trio.current_time()
        for trap in traps:  # past the liar's own screening: it names whatever it likes
            node_of(liar).table.update(Contact(trap.node_id, *trap.address), now)
        victim = await start(own_host, liar.address, client_only=client_only)
        await victim.get("anything")
        dialed = [t for t in traps if t.statistics().requests_served]
        assert [t.address[0] for t in dialed] == [
            t.address[0] for t in traps if t.node_id in node_of(victim).table
        ]
        return [t.address[0] for t in dialed]


async def test_a_private_node_dials_none_of_the_hosts_a_liar_names(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await _dialed_traps("10.0.0.1", "10.0.0.2") == []


async def test_a_loopback_node_dials_loopback_contacts_only_among_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert await _dialed_traps("127.0.0.1", "127.0.0.2") == ["127.0.0.1"]


async def test_a_client_only_node_takes_the_scope_of_its_bootstrap_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # It listens nowhere, so the host it was given (open_dht's default, loopback) says
    # nothing: the network it joins through a private address is a private one.
    assert await _dialed_traps("127.0.0.1", "10.0.0.2", client_only=True) == []
    assert await _dialed_traps("10.0.0.1", "127.0.0.2", client_only=True) == ["127.0.0.1"]


async def test_a_requester_outside_the_policy_is_served_but_not_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(6))
    async with (
        open_dht("10.0.0.1", transport=network.transport()) as node,
        open_dht("127.0.0.1", transport=network.transport()) as local,  # as a local proxy would
        open_dht("10.0.0.9", transport=network.transport()) as neighbour,
    ):
        for peer in (local, neighbour):
            reply = await node_of(peer).rpc(Contact(node.node_id, *node.address), Ping())
            assert reply is not None  # served either way
        assert local.node_id not in node_of(node).table
        assert neighbour.node_id in node_of(node).table


async def test_exemptions_follow_the_listening_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(7))
    explicit = Config(per_ip_exempt=("10.9.0.0/16",))
    async with (
        open_dht("127.0.0.1", transport=network.transport()) as loopback,
        open_dht("10.0.0.1", transport=network.transport()) as private,
        open_dht("10.0.0.2", transport=network.transport(), config=explicit) as chosen,
    ):
        assert loopback.config.per_ip_exempt == ("127.0.0.1/32", "::1/128")
        assert loopback.config.diversity_exempt == ("127.0.0.0/8", "::1/128")
        private_ranges = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16")
        assert private.config.per_ip_exempt == ()
        assert private.config.diversity_exempt == (*private_ranges, "fc00::/7")
        assert chosen.config.per_ip_exempt == ("10.9.0.0/16",)
        assert chosen.config.diversity_exempt == private.config.diversity_exempt
