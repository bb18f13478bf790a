"""Key/value records a node holds for the network, and the store interface.

Reads are synchronous (every store keeps its records in memory); writes are
``async`` so that a durable store can commit to disk off the event loop and
return only once the record is safe: a STORE is acknowledged after ``put``
returns.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass


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


class RecordStore(abc.ABC):
    """Where a node keeps the pairs it holds for the network."""

    @abc.abstractmethod
    def get(self, key: bytes, now: float) -> Record | None:
        """The live record under ``key``, or ``None`` (expired records count as absent)."""

    @abc.abstractmethod
    async def put(self, record: Record) -> bool:
        """Store or replace; ``False`` when a quota refuses a new key. Durable on return."""

    @abc.abstractmethod
    async def remove(self, key: bytes) -> bool:
        """Forget ``key``; ``True`` if it was held."""

    @abc.abstractmethod
    async def expire(self, now: float) -> int:
        """Drop every record whose ``expires_at`` has passed; return how many."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Record]:
        """A snapshot of every record held, expired ones included until ``expire`` runs."""

    @abc.abstractmethod
    def __len__(self) -> int: ...


class MemoryStore(RecordStore):
    """Records in a dict, bounded in count. Nothing survives the process."""

    def __init__(self, max_records: int) -> None:
        self._records: dict[bytes, Record] = {}
        self._max_records = max_records

    def get(self, key: bytes, now: float) -> Record | None:
        record = self._records.get(key)
        if record is None or record.expires_at <= now:
            return None
        return record

    def admits(self, key: bytes) -> bool:
        """Would ``put`` accept a record under ``key`` now?"""
        return key in self._records or len(self._records) < self._max_records

    async def put(self, record: Record) -> bool:
        return self.put_now(record)

    def put_now(self, record: Record) -> bool:
        """``put`` without waiting: memory needs no commit."""
        if not self.admits(record.key):
            return False
        self._records[record.key] = record
        return True

    async def remove(self, key: bytes) -> bool:
        return self.remove_now(key)

    def remove_now(self, key: bytes) -> bool:
        return self._records.pop(key, None) is not None

    async def expire(self, now: float) -> int:
        return len(self.expire_now(now))

    def expire_now(self, now: float) -> list[bytes]:
        """Drop expired records; return their keys."""
        dead = [key for key, record in self._records.items() if record.expires_at <= now]
        for key in dead:
            del self._records[key]
        return dead

    def __iter__(self) -> Iterator[Record]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)
