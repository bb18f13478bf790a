"""Key/value records a node holds for the network, and the store interface."""

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
    """When a STORE for it last arrived (or the local set made it)."""
    expires_at: float
    """After this time the pair is gone (paper 2.5: tExpire after the last publication)."""


class RecordStore(abc.ABC):
    """Where a node keeps the pairs it is responsible for."""

    @abc.abstractmethod
    def get(self, key: bytes, now: float) -> Record | None:
        """The live record under ``key``, or ``None`` (expired records count as absent)."""

    @abc.abstractmethod
    def put(self, record: Record) -> bool:
        """Store or replace; ``False`` when a quota refuses a new key."""

    @abc.abstractmethod
    def remove(self, key: bytes) -> bool:
        """Forget ``key``; ``True`` if it was held."""

    @abc.abstractmethod
    def expire(self, now: float) -> int:
        """Drop every record whose ``expires_at`` has passed; return how many."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Record]:
        """Every record held, expired ones included until ``expire`` runs."""

    @abc.abstractmethod
    def __len__(self) -> int: ...


class MemoryStore(RecordStore):
    """Records in a dict, bounded in count."""

    def __init__(self, max_records: int) -> None:
        self._records: dict[bytes, Record] = {}
        self._max_records = max_records

    def get(self, key: bytes, now: float) -> Record | None:
        record = self._records.get(key)
        if record is None or record.expires_at <= now:
            return None
        return record

    def put(self, record: Record) -> bool:
        if record.key not in self._records and len(self._records) >= self._max_records:
            return False
        self._records[record.key] = record
        return True

    def remove(self, key: bytes) -> bool:
        return self._records.pop(key, None) is not None

    def expire(self, now: float) -> int:
        dead = [key for key, record in self._records.items() if record.expires_at <= now]
        for key in dead:
            del self._records[key]
        return len(dead)

    def __iter__(self) -> Iterator[Record]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)
