"""Peer addresses: parsing what users type, formatting, and which hosts a contact may name.

Pure code. One place for the ``host:port`` / ``[v6]:port`` rules, so the
command line, ``open_dht``, log lines and error messages agree; and one
place for the address policy: a contact a peer names is dialed only when
its host is an IP literal of unicast scope that the node's own listening
address admits (``contact_address_allowed``, ``AddressPolicy``), and the
per-IP limits count an IPv6 host by its /64 (``ip_group``).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

from ._ids import Address, Contact

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOST_LENGTH = 253
"""Longest host text in a contact: the longest DNS name."""


def format_address(address: Address) -> str:
    """``(host, port)`` as ``host:port``, with IPv6 hosts in brackets."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(peer: str | tuple[str, int]) -> Address:
    """``"host:port"``, ``"[v6]:port"`` or ``(host, port)`` to ``(host, port)``.

    Raises ``ValueError`` (``TypeError`` for another type) naming the bad input.
    """
    if isinstance(peer, tuple):
        host, port = peer
    elif isinstance(peer, str):
        host, sep, port_text = peer.rpartition(":")
        if not sep or not host or not port_text.isdigit():
            raise ValueError(f"peer address must look like host:port, got {peer!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        port = int(port_text)
    else:
        raise TypeError(f"peer address must be str or (host, port), not {type(peer).__name__}")
    if not isinstance(host, str) or not host or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"invalid peer address {peer!r}")
    return (host, port)


def parse_addresses(peers: Iterable[str | tuple[str, int]]) -> list[Address]:
    """``parse_address`` of each; a lone string counts as one peer, not its characters."""
    if isinstance(peers, str):
        peers = [peers]
    return [parse_address(p) for p in peers]


def valid_host(host: object) -> bool:
    """Can ``host`` travel in a contact (1..253 printable ASCII characters, no spaces)?"""
    # Printable ASCII without spaces: a DNS name or an IP literal, safe to log.
    return (
        type(host) is str
        and 1 <= len(host) <= MAX_HOST_LENGTH
        and host.isascii()
        and host.isprintable()
        and " " not in host
    )


# --- the address policy --------------------------------------------------------


class Scope(enum.IntEnum):
    """How far an address reaches, narrowest first; ``UNROUTABLE`` is never a contact."""

    UNROUTABLE = 0
    """Not a unicast IP literal anyone should dial: a DNS name, unspecified, multicast,
    broadcast, link-local, documentation, benchmarking, deprecated or unassigned."""
    LOOPBACK = 1
    """This host: 127.0.0.0/8, ::1."""
    PRIVATE = 2
    """One site: 10/8, 172.16/12, 192.168/16, 100.64/10 (shared), fc00::/7 (unique local)."""
    GLOBAL = 3
    """The internet: every other IPv4 unicast address, the rest of 2000::/3."""


def _networks(*texts: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(text) for text in texts)


# From the IANA special-purpose address registries (RFC 6890 and its updates):
# ranges not globally reachable that no node listens on.
_V4_UNROUTABLE = _networks(
    "0.0.0.0/8",  # "this network"; 0.0.0.0 dials the own host
    "169.254.0.0/16",  # link-local, cloud metadata services
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation (TEST-NET-1)
    "192.88.99.0/24",  # 6to4 relay anycast, deprecated
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation (TEST-NET-2)
    "203.0.113.0/24",  # documentation (TEST-NET-3)
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
)
_V4_PRIVATE = _networks("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16")
_V4_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_V6_GLOBAL = ipaddress.ip_network("2000::/3")  # the only range IANA allocates unicast from
_V6_UNROUTABLE = _networks(
    "2001::/23",  # IETF protocol assignments: Teredo, benchmarking, ORCHID...
    "2001:db8::/32",  # documentation
    "2002::/16",  # 6to4, deprecated (RFC 7526), embeds an IPv4 address
    "3fff::/20",  # documentation (RFC 9637)
)
_V6_PRIVATE = ipaddress.ip_network("fc00::/7")
_V6_LOOPBACK = ipaddress.IPv6Address(1)

_LOOPBACK_NAMES = frozenset({"localhost"})
"""The one DNS name whose meaning is fixed (RFC 6761): a node may listen on it."""


def ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address (IPv4-mapped IPv6 as its IPv4 address), ``None`` if not one.

    Only the forms ``ipaddress`` reads: never ``127.1``, ``0x7f000001`` or
    ``2130706433``, which the C resolver would take for addresses.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # one host, one address, however it is written
    return ip


def address_scope(host: str) -> Scope:
    """The ``Scope`` of ``host``: ``UNROUTABLE`` for anything but a unicast IP literal."""
    if not isinstance(host, str) or "%" in host:
        return Scope.UNROUTABLE  # "fe80::1%eth0": scoped to one link
    ip = ip_literal(host)
    if ip is None:
        return Scope.UNROUTABLE  # a name: where it points is not ours to find out
    if isinstance(ip, ipaddress.IPv4Address):
        if ip in _V4_LOOPBACK:
            return Scope.LOOPBACK
        if any(ip in network for network in _V4_UNROUTABLE):
            return Scope.UNROUTABLE
        if any(ip in network for network in _V4_PRIVATE):
            return Scope.PRIVATE
        return Scope.GLOBAL
    if ip == _V6_LOOPBACK:
        return Scope.LOOPBACK
    if ip in _V6_PRIVATE:
        return Scope.PRIVATE
    if ip not in _V6_GLOBAL or any(ip in network for network in _V6_UNROUTABLE):
        return Scope.UNROUTABLE
    return Scope.GLOBAL


def listening_scope(own_host: str) -> Scope:
    """The narrowest scope of contact a node listening on ``own_host`` accepts.

    A node on loopback (or ``localhost``) is reachable from this host only:
    its peers are local, so they may name loopback, private and global
    contacts. A node on a private address accepts private and global ones,
    never loopback (a peer must not point it at its own local services).
    Every other host, including ``0.0.0.0``, ``::`` and DNS names, is public:
    global contacts only.
    """
    if isinstance(own_host, str) and own_host.lower() in _LOOPBACK_NAMES:
        return Scope.LOOPBACK
    scope = address_scope(own_host)
    return scope if scope in (Scope.LOOPBACK, Scope.PRIVATE) else Scope.GLOBAL


def contact_address_allowed(host: str, own_host: str) -> bool:
    """May a node listening on ``own_host`` dial ``host``, named by a peer in a contact?"""
    scope = address_scope(host)
    return scope is not Scope.UNROUTABLE and scope >= listening_scope(own_host)


def listens_on_loopback(own_host: str) -> bool:
    """Is ``own_host`` a loopback address or ``localhost`` (a node for this host only)?"""
    return listening_scope(own_host) is Scope.LOOPBACK


class AddressPolicy:
    """``contact_address_allowed`` for one own host, remembering recent answers.

    The cache holds at most ``cache_size`` hosts and is emptied when full:
    a peer naming ever new hosts costs parsing time, never memory.
    """

    __slots__ = ("_cache", "_cache_size", "own_host", "scope")

    def __init__(self, own_host: str, cache_size: int = 4096) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be >= 1")
        self.own_host = own_host
        self.scope = listening_scope(own_host)
        """The narrowest contact scope accepted."""
        self._cache_size = cache_size
        self._cache: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        """The same answer as ``contact_address_allowed(host, own_host)``."""
        allowed = self._cache.get(host)
        if allowed is None:
            scope = address_scope(host)
            allowed = scope is not Scope.UNROUTABLE and scope >= self.scope
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[host] = allowed
        return allowed

    def allowed(self, contacts: tuple[Contact, ...]) -> tuple[Contact, ...]:
        """The contacts whose host ``allows``; ``contacts`` itself when that is all of them."""
        allows = self.allows
        for contact in contacts:
            if not allows(contact.host):
                return tuple(c for c in contacts if allows(c.host))
        return contacts


def ip_group(host: str) -> str:
    """The key a per-IP limit counts ``host`` under: its IPv4 address, or its IPv6 /64.

    One IPv6 subscriber gets a /64 (RFC 6177) and can use any address in it,
    so a /64 is one "IP". An IPv4-mapped address counts as its IPv4 address;
    anything that is not an IP literal is its own key.
    """
    if ":" not in host:
        return host  # IPv4 as the OS reports it: already its own key, and common
    ip = ip_literal(host)
    if ip is None:
        return host
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"
