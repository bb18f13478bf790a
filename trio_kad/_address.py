"""Peer addresses: parsing what users type, formatting for messages, checking contact hosts.

Pure code. One place for the ``host:port`` / ``[v6]:port`` rules, so the
command line, ``open_dht``, log lines and error messages agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._ids import Address

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
