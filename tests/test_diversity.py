"""Subnet diversity groups and network sets (``_diversity``): pure host-string answers.

The routing table's use of them (a share per bucket) is tested in test_routing.py;
here, what the default cap does to whole simulated networks.
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
from trio_kad._diversity import Network, NetworkSet, SubnetGroups, subnet_group
from trio_kad.testing import node_of

EXEMPT_SETS: list[tuple[Network, ...]] = [
    (),
    (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
    (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.0/24")),
    (ipaddress.ip_network("0.0.0.0/0"),),
    (ipaddress.ip_network("2001:db8::/32"), ipaddress.ip_network("203.0.113.7/32")),
]

# Octets as a parser might meet them: plain, leading zeros, too large, empty,
# signs, spaces, non-ASCII digits (Arabic-Indic three, superscript two).
octets = st.one_of(
    st.integers(0, 300).map(str),
    st.sampled_from(["0", "00", "255", "256", "999", "1000"]),
    st.integers(0, 255).map(lambda n: f"0{n}"),
    st.sampled_from(["", "+1", "-1", " 1", "1 ", "\u0663", "\u00b2", "0x1", "1e2", "1/8"]),
    st.text(alphabet="0123456789a.:", max_size=4),
)
near_valid = st.lists(st.integers(0, 260).map(str), min_size=4, max_size=4).map(".".join)
quads = st.lists(octets, min_size=4, max_size=4).map(".".join)  # what the fast path reads
dotted = st.lists(octets, min_size=3, max_size=5).map(".".join)
ipv6 = st.one_of(
    st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
    st.integers(0, 2**32 - 1).map(lambda n: f"::ffff:{ipaddress.IPv4Address(n)}"),
    st.sampled_from(["::1", "fe80::1%eth0", "2001:db8::7", "::ffff:127.0.0.1", "1:2::3::4"]),
)
hosts = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    near_valid,
    quads,
    dotted,
    ipv6,
    st.sampled_from(["localhost", "example.org", "", "1.2.3.4/24", "1.2.3.4\n"]),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(hosts, min_size=1, max_size=8), st.sampled_from(EXEMPT_SETS))
def test_groups_agree_with_subnet_group(candidates: list[str], exempt: tuple[Network, ...]) -> None:
    groups = SubnetGroups(exempt, cache_size=4)
    for host in candidates + candidates:  # the second round is answered from the cache
        assert groups.group(host) == subnet_group(host, exempt), host


def test_groups_examples() -> None:
    groups = SubnetGroups(EXEMPT_SETS[1])
    assert groups.group("203.0.113.1") == groups.group("203.0.113.254") == 0xCB0071
    assert groups.group("203.0.113.1") != groups.group("203.0.112.1")
    assert groups.group("127.0.0.1") is None  # exempt
    assert groups.group("::1") is None
    assert groups.group("::ffff:203.0.113.9") == groups.group("203.0.113.1")
    assert groups.group("example.org") is None
    assert groups.group("010.0.0.1") is None  # leading zeros: not an address to ipaddress
    assert groups.group("203.0.113.256") is None
    assert groups.group("2001:db8:1::1") == groups.group("2001:db8:1:ffff::9")
    assert groups.exempt == EXEMPT_SETS[1]


def test_group_cache_bounded_oldest_first() -> None:
    groups = SubnetGroups(cache_size=3)
    for i in range(5):
        groups.group(f"198.51.{i}.1")
    assert len(groups) == 3
    assert list(groups._cache) == ["198.51.2.1", "198.51.3.1", "198.51.4.1"]
    with pytest.raises(ValueError):
        SubnetGroups(cache_size=0)


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


def test_network_set_matches_ip_literals_only() -> None:
    networks = NetworkSet(["127.0.0.1/32", "fd00::/8"], max_cached=2)
    assert "127.0.0.1" in networks
    assert "127.0.0.2" not in networks
    assert "fd00::1" in networks
    assert "::1" not in networks
    assert "localhost" not in networks
    assert 127 not in networks
    # Answers stay right once the memo forgets them.
    assert "127.0.0.1" in networks and "10.0.0.1" not in NetworkSet([])
    assert "127.0.0.1" not in NetworkSet(None)  # an exemption not yet decided exempts nobody
    with pytest.raises(TypeError):
        NetworkSet("127.0.0.1/32")
    with pytest.raises(ValueError):
        NetworkSet(["not a network"])


# --- the cap in a network: private networks know their members, public nodes stay capped ---


async def open_network(
    stack: AsyncExitStack, network: MemoryNetwork, hosts: list[str], config: Config
) -> list[Dht]:
    """One node per host, each joining through a random earlier one; closed by ``stack``."""
    rng = random.Random(len(hosts))
    nodes: list[Dht] = []
    for host in hosts:
        bootstrap = [rng.choice(nodes).address] if nodes else []
        dht = await stack.enter_async_context(
            open_dht(
                host,
                0,
                bootstrap,
                transport=network.transport(),
                config=config,
                node_id=rng.randbytes(32),
                rng=random.Random(rng.getrandbits(64)),
            )
        )
        nodes.append(dht)
    await trio.sleep(config.bootstrap_timeout)  # the joins' far-bucket refreshes
    return nodes


PRIVATE_LAYOUTS = {
    "one /24": [f"10.7.3.{i}" for i in range(1, 31)],
    "three /24s": [f"192.168.{i % 3}.{10 + i}" for i in range(30)],
}


@pytest.mark.parametrize("layout", sorted(PRIVATE_LAYOUTS))
async def test_a_private_network_knows_all_its_members(
    autojump_clock: trio.testing.MockClock, layout: str
) -> None:
    hosts = PRIVATE_LAYOUTS[layout]
    config = Config()  # the default cap: 2 per /24 per bucket
    async with AsyncExitStack() as stack:
        nodes = await open_network(stack, MemoryNetwork(rng=random.Random(3)), hosts, config)
        # Joined: each knows at least k others (the cap used to leave 2 to 6)...
        assert min(node.statistics().contacts for node in nodes) >= config.k
        # ... and once their buckets with room have been refreshed (paper 2.3), every
        # other one a bucket has room for (a range of more than k nodes keeps k).
        await trio.sleep(config.refresh_interval * 1.3)
        ids = {node.node_id for node in nodes}
        for node in nodes:
            table = node_of(node).table
            missing = ids - {c.node_id for c in table.contacts()} - {node.node_id}
            assert all(table.bucket_for(m).full for m in missing)
        assert sum(node.statistics().contacts for node in nodes) >= 0.99 * 30 * 29
        for i in range(10):
            assert await nodes[i].set(f"lan-{i}", i) >= config.k
        for i in range(10):
            held = sum(node.get_local(f"lan-{i}") is not None for node in nodes)
            assert held >= config.k
            assert await nodes[-1 - i].get(f"lan-{i}") == i


async def test_a_public_node_still_caps_what_one_subnet_places(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hosts = [f"45.1.1.{i}" for i in range(1, 31)]  # one public /24
    config = Config()
    async with AsyncExitStack() as stack:
        nodes = await open_network(stack, MemoryNetwork(rng=random.Random(4)), hosts, config)
        for node in nodes:
            table = node_of(node).table
            assert len(table) <= config.max_contacts_per_subnet * len(table.buckets)
            assert all(len(b) <= config.max_contacts_per_subnet for b in table.buckets)
            assert node.statistics().contacts < len(hosts) - 1
