"""The ban list of a routing table: ids refused until a time, bounded (pure).

A node bans an id that answered with garbage or lied about ids
(``RoutingTable.ban``). The list keeps at most ``limit`` running bans, so a
flood of fresh ids cannot grow it without bound: when it is full, bans
expired by ``now`` make room, and if none has, the new ban is not recorded.
A ban is never lifted early: whoever can earn many bans must not lift an
older one with them.
"""

from __future__ import annotations

import math
from collections import OrderedDict

__all__ = ["BanList"]


class BanList:
    """Ids banned until a time each, at most ``limit`` running at once."""

    __slots__ = ("_bans", "_expire_from", "_limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_bans must be >= 1")
        self._limit = limit
        # node id -> banned until, oldest ban first
        self._bans: OrderedDict[bytes, float] = OrderedDict()
        # No running ban ends before this (a lower bound): when the list is full,
        # it is swept for expired bans only once one may have expired.
        self._expire_from = math.inf

    def __len__(self) -> int:
        """Bans recorded, expired ones not yet forgotten included."""
        return len(self._bans)

    def entries(self) -> list[tuple[bytes, float]]:
        """Every ban recorded, as (id, until), oldest first."""
        return list(self._bans.items())

    def running(self, now: float) -> int:
        """How many ids are banned at ``now``."""
        return sum(1 for until in self._bans.values() if now < until)

    def banned(self, node_id: bytes, now: float) -> bool:
        """Whether ``node_id`` is banned at ``now``."""
        until = self._bans.get(node_id)
        return until is not None and now < until

    def refuses(self, node_id: bytes, now: float) -> bool:
        """``banned``, forgetting the ban of ``node_id`` once it has expired."""
        if not self._bans:  # empty on an honest network: skip the lookup
            return False
        until = self._bans.get(node_id)
        if until is None:
            return False
        if now < until:
            return True
        del self._bans[node_id]
        return False

    def add(self, node_id: bytes, until: float, now: float) -> bool:
        """Ban ``node_id`` until ``until`` (banning again moves the end); False if no room."""
        if node_id not in self._bans and not self._room(now):
            return False
        self._bans[node_id] = until
        self._bans.move_to_end(node_id)
        self._expire_from = min(self._expire_from, until)
        return True

    def _room(self, now: float) -> bool:
        """Is there room for one more ban at ``now``, once expired ones are forgotten?"""
        bans = self._bans
        if len(bans) < self._limit:
            return True
        if now < self._expire_from:
            return False  # none has expired since the last sweep: no sweep per refusal
        for node_id in [i for i, until in bans.items() if until <= now]:
            del bans[node_id]
        self._expire_from = min(bans.values(), default=math.inf)
        return len(bans) < self._limit
