"""The simulated network itself: addresses, failure modes, partitions, delays and loss (Trio).

``MemoryNetwork`` joins the ``MemoryTransport`` instances of ``_memory``: it
hands out addresses, says whether one address can reach another (modes and
partitions), and makes every message wait as long as it travels: a fixed
latency and jitter, or a ``WanModel``'s round trips, jitter, loss and
handshakes.
"""

from __future__ import annotations

import dataclasses
import errno
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import trio

from ._ids import Address
from ._transport import TransportStatistics
from ._wan import Site, WanModel

if TYPE_CHECKING:
    from ._memory import MemoryTransport

__all__ = ["FIRST_PORT", "MemoryNetwork", "Mode"]

Mode = Literal["up", "refuse", "drop"]
"""How a simulated node treats requests: answer, refuse at once, or never answer."""

FIRST_PORT = 10000
"""Ports the network assigns for ``port=0`` count up from here."""

_MODES: frozenset[str] = frozenset({"up", "refuse", "drop"})


class MemoryNetwork:
    """A simulated network joining ``MemoryTransport`` instances.

    Each direction of an RPC takes ``latency + rng.uniform(0, jitter)`` seconds;
    a request is lost with probability ``drop_rate`` (the caller then waits
    until its own cancel scope gives up, as with a silent peer). With a
    ``model``, delays, loss, handshakes and the connection pool follow it
    instead of ``latency`` and ``jitter`` (``drop_rate`` still applies on top).
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        drop_rate: float = 0.0,
        model: WanModel | None = None,
    ) -> None:
        if latency < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        if model is not None and (latency or jitter):
            raise ValueError("a WAN model sets the delays: leave latency and jitter at 0")
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError("drop_rate must be in [0, 1]")
        self.rng = rng if rng is not None else random.Random()
        self.latency = latency
        self.jitter = jitter
        self.drop_rate = drop_rate
        self.model = model
        """The WAN model, or ``None`` for the plain fixed-latency network."""
        self._nodes: dict[Address, MemoryTransport] = {}
        self._modes: dict[Address, Mode] = {}
        self._groups: dict[Address, int] | None = None
        self._transports: list[MemoryTransport] = []
        self._next_port = FIRST_PORT

    def transport(self) -> MemoryTransport:
        """A new transport attached to this network (pass it to ``open_dht``)."""
        from ._memory import MemoryTransport  # the transport module imports this one

        transport = MemoryTransport(self)
        if self.model is not None:
            transport.site = self.model.place(self.rng)
        self._transports.append(transport)
        return transport

    def addresses(self) -> list[Address]:
        """The addresses of the transports currently listening."""
        return list(self._nodes)

    def sites(self) -> list[Site]:
        """Where the WAN model placed the transports currently listening (none without one)."""
        return [node.site for node in self._nodes.values() if node.site is not None]

    def set_mode(self, address: Address, mode: Mode) -> None:
        """Make ``address`` answer ("up"), refuse connections ("refuse") or go silent ("drop")."""
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, not {mode!r}")
        if mode == "up":
            self._modes.pop(address, None)
        else:
            self._modes[address] = mode

    def partition(self, groups: Iterable[Iterable[Address]]) -> None:
        """Split the network: addresses in different groups cannot reach each other.

        Addresses listed in no group (including client-only transports, which
        have none) form one more group together. Replaces any earlier partition.
        """
        mapping: dict[Address, int] = {}
        for index, group in enumerate(groups):
            for address in group:
                mapping[address] = index
        self._groups = mapping

    def heal(self) -> None:
        """Undo ``partition``: every address can reach every other again."""
        self._groups = None

    def statistics(self) -> TransportStatistics:
        """The counters of every transport of this network, summed."""
        total = TransportStatistics()
        names = [field.name for field in dataclasses.fields(total)]
        for transport in self._transports:
            stats = transport._stats
            for name in names:
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    # --- used by MemoryTransport ----------------------------------------------

    def _register(self, host: str, port: int, transport: MemoryTransport) -> Address:
        if port == 0:
            while (host, self._next_port) in self._nodes:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        address = (host, port)
        if address in self._nodes:
            raise OSError(errno.EADDRINUSE, f"address {host}:{port} is already in use")
        self._nodes[address] = transport
        return address

    def _unregister(self, address: Address, transport: MemoryTransport) -> None:
        if self._nodes.get(address) is transport:
            del self._nodes[address]

    def _reachable(self, source: Address | None, target: Address) -> bool:
        groups = self._groups
        if groups is None:
            return True
        source_group = None if source is None else groups.get(source)
        return source_group == groups.get(target)

    def _lost(self) -> bool:
        # No rng draw when there is no loss, so a seeded run's other draws do not shift.
        return bool(self.drop_rate) and self.rng.random() < self.drop_rate

    async def _travel(
        self,
        model: WanModel,
        source: MemoryTransport,
        target: MemoryTransport,
        *,
        fresh: bool = False,
        reply: bool = False,
    ) -> None:
        """One message from ``source`` to ``target`` through ``model`` (a ``fresh``
        connection's first request, or a ``reply``): wait while it travels, or forever
        when it is lost."""
        assert source.site is not None and target.site is not None
        # drop_rate still applies to requests; the model loses requests and replies alike.
        delay = model.trip(source.site, target.site, self.rng, fresh=fresh)
        if delay is None or (not reply and self._lost()):
            await trio.sleep_forever()
        await trio.sleep(delay)

    async def _delay(self) -> None:
        # No rng draw without jitter, so seeded runs without it draw nothing here.
        delay = self.latency
        if self.jitter:
            delay += self.rng.uniform(0.0, self.jitter)
        if delay:
            await trio.sleep(delay)
        else:
            # Still a checkpoint, as for any Trio I/O: a caller whose deadline
            # passed while a shielded handler ran must see its cancellation.
            await trio.lowlevel.checkpoint()
