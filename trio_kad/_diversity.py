"""Subnet diversity groups: which /24 (IPv4) or /48 (IPv6) network a host counts against.

Pure: strings in, ints out. The routing table caps the contacts per group in
each bucket (go-libp2p-kbucket's diversity filter), so one host, or one cheap
block of addresses, minting many node ids cannot fill a bucket. Hosts in the
exempt networks (by default loopback on a node that listens there, the private
ranges on a node with a private address: see ``Config.diversity_exempt``) and
hosts that are not IP literals (DNS names: we cannot tell where they point)
are not limited.
IPv4-mapped IPv6 addresses count as their IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable

from ._address import ip_literal

__all__ = ["Network", "NetworkSet", "SubnetGroups", "subnet_group"]

_IPV6_TAG = 1 << 128  # keeps IPv6 group keys apart from IPv4 ones (all below 2**24)

_UNKNOWN = -1  # no group is negative: marks a host not in the cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def subnet_group(host: str, exempt: Iterable[Network] = ()) -> int | None:
    """The diversity group of ``host``: its /24 (IPv4) or /48 (IPv6) network as an int.

    ``None`` when the host is not limited: it is not an IP literal (a DNS
    name) or it lies in one of the ``exempt`` networks.
    """
    ip = ip_literal(host)
    if ip is None or any(ip in network for network in exempt):
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return int(ip) >> 8
    return _IPV6_TAG | (int(ip) >> 80)


def _parse_plain_ipv4(host: str) -> int | None:
    """``host`` as an int if it is a dotted quad every parser reads alike, else ``None``.

    ``None`` means "ask ``ipaddress``", not "not an address": anything unusual
    (leading zeros, non-ASCII digits, a missing octet) takes the slow path.
    """
    parts = host.split(".")
    if len(parts) != 4:
        return None
    value = 0
    for part in parts:
        if not (part.isascii() and part.isdigit()) or len(part) > 3:
            return None
        if part[0] == "0" and part != "0":
            return None
        octet = int(part)
        if octet > 255:
            return None
        value = value << 8 | octet
    return value


class SubnetGroups:
    """``subnet_group`` for one set of exempt networks, remembering recent hosts.

    ``ipaddress`` parsing is a large part of adding a contact from a new host, so plain
    dotted quads are read directly and the last ``cache_size`` answers kept.
    """

    __slots__ = ("_cache", "_cache_size", "_exempt", "_exempt_v4")

    def __init__(self, exempt: Iterable[Network] = (), cache_size: int = 4096) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be >= 1")
        self._exempt = tuple(exempt)
        self._exempt_v4 = tuple(
            (int(n.network_address), int(n.netmask))
            for n in self._exempt
            if isinstance(n, ipaddress.IPv4Network)
        )
        self._cache_size = cache_size
        self._cache: OrderedDict[str, int | None] = OrderedDict()

    @property
    def exempt(self) -> tuple[Network, ...]:
        """The networks whose hosts are not limited."""
        return self._exempt

    def __len__(self) -> int:
        """How many hosts are remembered."""
        return len(self._cache)

    def group(self, host: str) -> int | None:
        """The same answer as ``subnet_group(host, exempt)``."""
        cache = self._cache
        group = cache.get(host, _UNKNOWN)  # not try/except: a miss is common, raising is slow
        if group != _UNKNOWN:
            return group
        value = _parse_plain_ipv4(host) if isinstance(host, str) else None
        if value is None:
            group = subnet_group(host, self._exempt)
        else:
            group = value >> 8
            for network, mask in self._exempt_v4:
                if value & mask == network:
                    group = None
                    break
        if len(cache) >= self._cache_size:
            cache.popitem(last=False)  # oldest parsed first
        cache[host] = group
        return group


class NetworkSet:
    """Answers "is this host in one of these networks?" quickly, for hosts seen again and again.

    A host that is not an IP literal is in no network; ``None`` is no network
    (an exemption ``Config.for_host`` has not resolved yet exempts nobody).
    Answers are memoised for at most ``max_cached`` hosts (the least recently
    added forgotten first), so the cache cannot grow with the number of
    addresses that ever connected.
    """

    __slots__ = ("_cache", "_max_cached", "_networks")

    def __init__(self, networks: Iterable[str] | None, max_cached: int = 4096) -> None:
        if isinstance(networks, str):
            raise TypeError("networks must be an iterable of network strings, not one string")
        self._networks = tuple(ipaddress.ip_network(n) for n in networks or ())
        self._max_cached = max_cached
        self._cache: OrderedDict[str, bool] = OrderedDict()

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not self._networks:
            return False
        known = self._cache.get(host)
        if known is not None:
            return known
        ip = ip_literal(host)
        inside = ip is not None and any(ip in network for network in self._networks)
        self._cache[host] = inside
        if len(self._cache) > self._max_cached:
            self._cache.popitem(last=False)
        return inside
