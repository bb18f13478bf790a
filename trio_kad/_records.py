"""Key/value records a node holds for the network, and the store interface.

Reads are synchronous (every store keeps its records in memory); writes are
``async`` so that a durable store can commit to disk off the event loop and
return only once the record is safe: a STORE is acknowledged after ``put``
returns.
"""

from __future__ import annotations

import abc
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ._messages import SignedPart

_ROOM_ATTEMPTS = 3
"""Rounds of making room for an own pair before ``put_own`` gives up."""


def value_fits(value: bytes, max_value_size: int) -> bool:
    """The value-size rule (``Config.max_value_size``), measured on the CBOR encoding.

    The one check for every path a value takes: ``Dht.set`` before any I/O,
    a STORE before it is kept, a FIND_VALUE answer before it is believed.
    """
    return len(value) <= max_value_size


@dataclass(slots=True)
class Record:
    """One stored pair. ``value`` is opaque: the setter's CBOR encoding."""

    key: bytes
    value: bytes
    stored_at: float
    """When a STORE for it last arrived, or the local ``set`` made it (Trio clock)."""
    expires_at: float
    """After this time the pair is gone (paper 2.5: tExpire after its publication)."""
    publisher: bool = False
    """This node's own ``set`` created it, so this node republishes it (paper 2.5)."""
    cached: bool = False
    """A copy cached by a FIND_VALUE lookup (paper 2.3): shorter-lived, never replicated."""
    origin: str = ""
    """The IP address whose STORE brought it, for the per-publisher quota ("" when local).

    Kept in memory only: after a restart, records count toward no address."""
    # Signed records.
    signed: SignedPart | None = None
    """The publisher's signature when the pair is a signed record (``_signed``)."""
    # --- plain values converge (issue 16)
    published: int = 0
    """When the ``set`` that made the pair ran (ms since the Unix epoch; ``Store.published``)."""


class RecordStore(abc.ABC):
    """Where a node keeps the pairs it holds for the network.

    Every store keeps its records in memory for synchronous reads, bounded by
    a count, a total of value bytes, and a count per origin (the IP address
    that sent the STORE), so no single publisher can fill a node.
    """

    def __init__(
        self,
        max_records: int,
        *,
        max_bytes: int = sys.maxsize,
        max_per_origin: int = sys.maxsize,
        records: Iterable[Record] = (),
    ) -> None:
        self._records: dict[bytes, Record] = {}
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._max_per_origin = max_per_origin
        self._bytes = 0
        self._per_origin: Counter[str] = Counter()
        for record in records:
            self._hold(record)

    def get(self, key: bytes, now: float) -> Record | None:
        """The live record under ``key``, or ``None`` (expired records count as absent)."""
        record = self._records.get(key)
        if record is None or record.expires_at <= now:
            return None
        return record

    def admits(self, record: Record) -> bool:
        """Would ``put(record)`` be within the quotas now?"""
        old = self._records.get(record.key)
        if old is None and len(self._records) >= self._max_records:
            return False
        freed = 0 if old is None else len(old.value)
        if self._bytes - freed + len(record.value) > self._max_bytes:
            return False
        origin = record.origin
        return (
            not origin
            or (old is not None and old.origin == origin)
            or self._per_origin[origin] < self._max_per_origin
        )

    def displaceable(self, record: Record) -> list[bytes] | None:
        """Keys held for others to drop so that ``record`` fits, or ``None`` if none would do.

        For the node's own pairs, which quotas meant for others must never
        refuse: a pair this node publishes outranks a copy it holds for someone
        else (the network keeps k of those). Cached copies go first, then the
        pairs of the origin holding the most (whoever filled the store pays
        first), soonest to expire first. Own pairs are never displaced. Counts
        the record and byte quotas only: ``record`` is expected to have no origin.
        """
        old = self._records.get(record.key)
        count_over = 0 if old is not None else len(self._records) + 1 - self._max_records
        freed = 0 if old is None else len(old.value)
        bytes_over = self._bytes - freed + len(record.value) - self._max_bytes
        per_origin = self._per_origin
        others = sorted(
            (r for r in self._records.values() if not r.publisher and r.key != record.key),
            key=lambda r: (not r.cached, -per_origin[r.origin] if r.origin else 0, r.expires_at),
        )
        chosen: list[bytes] = []
        for other in others:
            if count_over <= 0 and bytes_over <= 0:
                break
            chosen.append(other.key)
            count_over -= 1
            bytes_over -= len(other.value)
        if count_over > 0 or bytes_over > 0:
            return None
        return chosen

    async def put_own(self, record: Record) -> bool:
        """``put`` one of the node's own pairs, dropping pairs held for others to make room.

        ``False`` only when the node's own pairs alone leave no room (see ``displaceable``).
        """
        # A durable store awaits its disk, so a STORE may take the room just made.
        for _ in range(_ROOM_ATTEMPTS):
            if await self.put(record):
                return True
            victims = self.displaceable(record)
            if victims is None:
                return False
            for key in victims:
                await self.remove(key)
        return False

    @property
    def value_bytes(self) -> int:
        """Bytes of values held."""
        return self._bytes

    @abc.abstractmethod
    async def put(self, record: Record) -> bool:
        """Store or replace; ``False`` when a quota refuses it. Durable on return."""

    @abc.abstractmethod
    async def remove(self, key: bytes) -> bool:
        """Forget ``key``; ``True`` if it was held."""

    @abc.abstractmethod
    async def expire(self, now: float) -> int:
        """Drop every record whose ``expires_at`` has passed; return how many."""

    def __iter__(self) -> Iterator[Record]:
        """A snapshot of every record held, expired ones included until ``expire`` runs."""
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    # Bookkeeping for subclasses: call once the record is safely kept (or gone).

    def _hold(self, record: Record) -> None:
        self._release(record.key)
        self._records[record.key] = record
        self._bytes += len(record.value)
        if record.origin:
            self._per_origin[record.origin] += 1

    def _release(self, key: bytes) -> bool:
        old = self._records.pop(key, None)
        if old is None:
            return False
        self._bytes -= len(old.value)
        if old.origin:
            self._per_origin[old.origin] -= 1
            if not self._per_origin[old.origin]:
                del self._per_origin[old.origin]
        return True

    def _expired(self, now: float) -> list[bytes]:
        return [key for key, record in self._records.items() if record.expires_at <= now]


class MemoryStore(RecordStore):
    """Records in memory only. Nothing survives the process."""

    async def put(self, record: Record) -> bool:
        if not self.admits(record):
            return False
        self._hold(record)
        return True

    async def remove(self, key: bytes) -> bool:
        return self._release(key)

    async def expire(self, now: float) -> int:
        dead = self._expired(now)
        for key in dead:
            self._release(key)
        return len(dead)
