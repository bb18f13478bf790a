"""The routing table: k-buckets over the XOR metric (paper sections 2.2, 2.4 and 4.2).

Pure bookkeeping, no I/O: when a full bucket needs its oldest contact pinged,
``update`` says so (``PingOldest``) and the caller reports the outcome with
``update`` or ``mark_failed``. Times are passed in as ``now``.

Buckets are ranges of XOR distance from the own id, ``[low, high)``: aligned
power-of-two intervals that together partition ``[0, 2**256)``. The table starts
with one bucket covering everything and splits buckets as they overflow.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from ._ids import ID_SPACE, Contact, check_id, id_to_int

__all__ = [
    "Added",
    "Bucket",
    "ContactInfo",
    "Ignored",
    "PingOldest",
    "RoutingTable",
    "UpdateResult",
    "Updated",
]


@dataclass(frozen=True, slots=True)
class Added:
    """The contact was new and went into a bucket."""


@dataclass(frozen=True, slots=True)
class Updated:
    """The contact was known; it is now the most recently seen of its bucket."""


@dataclass(frozen=True, slots=True)
class PingOldest:
    """The bucket is full and may not split; the new contact went to its replacement cache.

    The caller should ping ``oldest`` and then call ``update(oldest, now)`` if it
    answered or ``mark_failed(oldest.node_id)`` if not: paper section 2.2 evicts
    the least-recently-seen contact only once it fails to answer, because
    long-lived nodes are the likeliest to stay online.
    """

    oldest: Contact


@dataclass(frozen=True, slots=True)
class Ignored:
    """The contact was not recorded: it is our own id, or ``reason`` explains why."""

    reason: str


UpdateResult = Added | Updated | PingOldest | Ignored


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """A snapshot of what the table knows about one contact."""

    contact: Contact
    last_seen: float
    failures: int
    """Consecutive failed RPCs since it was last seen alive."""


class _Entry:
    """Mutable per-contact state; never handed out (``ContactInfo`` is the public view)."""

    __slots__ = ("contact", "distance", "failures", "id_int", "last_seen")

    def __init__(self, contact: Contact, distance: int, last_seen: float) -> None:
        self.contact = contact
        self.id_int = id_to_int(contact.node_id)
        self.distance = distance  # from the own id, fixed for the entry's life
        self.last_seen = last_seen
        self.failures = 0

    def info(self) -> ContactInfo:
        return ContactInfo(self.contact, self.last_seen, self.failures)


class Bucket:
    """The contacts whose XOR distance from the own id lies in ``[low, high)``.

    Read-only from outside: the ``RoutingTable`` owns and mutates it.
    """

    __slots__ = ("_entries", "_high", "_low", "_replacements", "last_touched")

    def __init__(self, low: int, high: int, last_touched: float) -> None:
        self._low = low
        self._high = high
        self._entries: list[_Entry] = []  # least recently seen first
        self._replacements: list[_Entry] = []  # most recently seen last
        self.last_touched = last_touched
        """When a lookup last targeted an id in this bucket, or when it was created."""

    @property
    def low(self) -> int:
        """Smallest distance from the own id covered (inclusive)."""
        return self._low

    @property
    def high(self) -> int:
        """End of the covered distance range (exclusive)."""
        return self._high

    @property
    def contacts(self) -> list[Contact]:
        """The bucket's contacts, least recently seen first."""
        return [e.contact for e in self._entries]

    @property
    def entries(self) -> list[ContactInfo]:
        """The bucket's contacts with their bookkeeping, least recently seen first."""
        return [e.info() for e in self._entries]

    @property
    def replacements(self) -> list[Contact]:
        """Candidates to take the place of failed contacts, most recently seen last."""
        return [e.contact for e in self._replacements]

    def covers(self, distance: int) -> bool:
        """Whether ``distance`` (from the own id) falls in this bucket's range."""
        return self._low <= distance < self._high

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        width = (self._high - self._low).bit_length() - 1
        return (
            f"Bucket(low={self._low:#x}, size=2**{width}, contacts={len(self._entries)}, "
            f"replacements={len(self._replacements)})"
        )


class RoutingTable:
    """k-buckets with splitting, least-recently-seen eviction and replacement caches.

    Splitting follows paper section 4.2: a full bucket splits when its range
    contains the own id, or (relaxed splitting) when the new contact would be
    among the ``k`` contacts closest to the own id, so that the own neighbourhood
    is always complete even when ids are unevenly spread.
    """

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = 20,
        replacement_cache_size: int = 20,
        max_failures: int = 3,
        now: float = 0.0,
    ) -> None:
        check_id(own_id, "own_id")
        if k < 1:
            raise ValueError("k must be >= 1")
        if replacement_cache_size < 0:
            raise ValueError("replacement_cache_size must be >= 0")
        if max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        self._own_id = own_id
        self._own_int = id_to_int(own_id)
        self._k = k
        self._cache_size = replacement_cache_size
        self._max_failures = max_failures
        self._buckets: list[Bucket] = [Bucket(0, ID_SPACE, now)]
        self._lows: list[int] = [0]  # bucket lows, for bisection
        self._index: dict[bytes, _Entry] = {}  # contacts in buckets
        self._cached: dict[bytes, _Entry] = {}  # contacts in replacement caches

    # --- introspection -------------------------------------------------------

    @property
    def own_id(self) -> bytes:
        """The id of the node this table belongs to."""
        return self._own_id

    @property
    def k(self) -> int:
        """Bucket capacity."""
        return self._k

    @property
    def buckets(self) -> Sequence[Bucket]:
        """All buckets, sorted by distance range, nearest to the own id first."""
        return tuple(self._buckets)

    def bucket_for(self, node_id: bytes) -> Bucket:
        """The bucket whose range covers ``node_id``."""
        return self._buckets[self._bucket_index(self._distance(node_id))]

    def get(self, node_id: bytes) -> Contact | None:
        """The contact with ``node_id`` if it is in a bucket."""
        entry = self._index.get(node_id)
        return None if entry is None else entry.contact

    def info(self, node_id: bytes) -> ContactInfo | None:
        """Last-seen time and failure count of a contact in a bucket."""
        entry = self._index.get(node_id)
        return None if entry is None else entry.info()

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def contacts(self) -> list[Contact]:
        """Every contact in a bucket, nearest buckets first."""
        return [e.contact for b in self._buckets for e in b._entries]

    def closest(
        self, target: bytes, count: int, *, exclude: Container[bytes] = frozenset()
    ) -> list[Contact]:
        """Up to ``count`` contacts nearest ``target`` by XOR distance, nearest first."""
        if count <= 0:
            return []
        t = id_to_int(check_id(target, "target"))
        entries: Iterable[_Entry] = self._index.values()
        if exclude:
            entries = [e for e in entries if e.contact.node_id not in exclude]
        # A few hundred entries: a heap over precomputed ints beats walking buckets.
        best = heapq.nsmallest(count, entries, key=lambda e: e.id_int ^ t)
        return [e.contact for e in best]

    # --- updates -------------------------------------------------------------

    def update(self, contact: Contact, now: float) -> UpdateResult:
        """Record that ``contact`` was just seen alive (it answered, or sent a valid request)."""
        node_id = check_id(contact.node_id, "contact.node_id")
        if node_id == self._own_id:
            return Ignored("own id")
        entry = self._index.get(node_id)
        if entry is not None:
            return self._update_known(entry, contact, now)

        distance = self._distance(node_id)
        # A re-seen replacement is treated as new: the table may have room for it now.
        cached = self._cached.pop(node_id, None)
        if cached is not None:
            bucket = self._buckets[self._bucket_index(distance)]
            bucket._replacements.remove(cached)
        entry = _Entry(contact, distance, now)
        split_any = False
        while True:
            index = self._bucket_index(distance)
            bucket = self._buckets[index]
            if len(bucket._entries) < self._k:
                bucket._entries.append(entry)
                self._index[node_id] = entry
                result: UpdateResult = Added()
                break
            if bucket.high - bucket.low > 1 and (
                bucket.low == 0 or self._closer_count(index, distance) < self._k
            ):
                self._split(index, now)
                split_any = True
                continue
            self._add_replacement(bucket, entry)
            result = PingOldest(bucket._entries[0].contact)
            break
        if split_any:
            # Splitting may leave a half with room and cached candidates: use them.
            for bucket in self._buckets:
                while bucket._replacements and len(bucket._entries) < self._k:
                    self._promote(bucket)
        return result

    def mark_failed(self, node_id: bytes) -> Contact | None:
        """Record that an RPC to ``node_id`` failed; return the contact if it was dropped.

        One lost packet must not evict a contact: it is dropped only when its
        bucket has a replacement to take its place, or after ``max_failures``
        consecutive failures. A replacement-cache candidate that fails is
        forgotten (returns ``None``, it was never in a bucket).
        """
        entry = self._index.get(node_id)
        if entry is None:
            self._forget_replacement(node_id)
            return None
        entry.failures += 1
        bucket = self._buckets[self._bucket_index(entry.distance)]
        if bucket._replacements or entry.failures >= self._max_failures:
            self._drop(bucket, entry)
            return entry.contact
        return None

    def remove(self, node_id: bytes) -> Contact | None:
        """Drop ``node_id`` now, promoting a replacement; return it if it was in a bucket.

        Also forgets it from the replacement caches.
        """
        entry = self._index.get(node_id)
        if entry is None:
            self._forget_replacement(node_id)
            return None
        self._drop(self._buckets[self._bucket_index(entry.distance)], entry)
        return entry.contact

    # --- refresh (paper section 2.3: buckets not looked up within an hour) ---

    def touch(self, target: bytes, now: float) -> None:
        """Note that a lookup of ``target`` happened, so its bucket counts as refreshed."""
        self.bucket_for(target).last_touched = now

    def stale_buckets(self, now: float, interval: float) -> list[tuple[int, int]]:
        """``(low, high)`` distance ranges of buckets not touched for ``interval``."""
        cutoff = now - interval
        return [(b.low, b.high) for b in self._buckets if b.last_touched <= cutoff]

    # --- internals -----------------------------------------------------------

    def _distance(self, node_id: bytes) -> int:
        return id_to_int(node_id) ^ self._own_int

    def _bucket_index(self, distance: int) -> int:
        return bisect_right(self._lows, distance) - 1

    def _update_known(self, entry: _Entry, contact: Contact, now: float) -> UpdateResult:
        bucket = self._buckets[self._bucket_index(entry.distance)]
        if contact != entry.contact:
            if entry.failures == 0:
                # The entry we hold answers; a stranger claiming its id must not take it over.
                return Ignored("address conflict")
            entry.contact = contact  # the known address stopped answering: the node moved
        bucket._entries.remove(entry)
        bucket._entries.append(entry)
        entry.last_seen = now
        entry.failures = 0
        return Updated()

    def _closer_count(self, index: int, distance: int) -> int:
        """How many contacts are nearer the own id than ``distance`` (stops counting at k)."""
        count = 0
        for bucket in self._buckets[:index]:
            count += len(bucket._entries)
            if count >= self._k:
                return count
        return count + sum(1 for e in self._buckets[index]._entries if e.distance < distance)

    def _split(self, index: int, now: float) -> None:
        old = self._buckets[index]
        mid = (old.low + old.high) // 2
        near, far = Bucket(old.low, mid, now), Bucket(mid, old.high, now)
        # Order is preserved, so each half stays least-recently-seen first.
        for e in old._entries:
            (near if e.distance < mid else far)._entries.append(e)
        for e in old._replacements:
            (near if e.distance < mid else far)._replacements.append(e)
        self._buckets[index : index + 1] = [near, far]
        self._lows[index : index + 1] = [near.low, far.low]

    def _add_replacement(self, bucket: Bucket, entry: _Entry) -> None:
        if self._cache_size == 0:
            return
        bucket._replacements.append(entry)
        self._cached[entry.contact.node_id] = entry
        if len(bucket._replacements) > self._cache_size:
            dropped = bucket._replacements.pop(0)
            del self._cached[dropped.contact.node_id]

    def _forget_replacement(self, node_id: bytes) -> None:
        cached = self._cached.pop(node_id, None)
        if cached is not None:
            self._buckets[self._bucket_index(cached.distance)]._replacements.remove(cached)

    def _drop(self, bucket: Bucket, entry: _Entry) -> None:
        bucket._entries.remove(entry)
        del self._index[entry.contact.node_id]
        if bucket._replacements:
            self._promote(bucket)

    def _promote(self, bucket: Bucket) -> None:
        """Move the most recently seen replacement into ``bucket`` (which has room)."""
        entry = bucket._replacements.pop()
        del self._cached[entry.contact.node_id]
        entry.failures = 0
        # Slot it in by last-seen time so the bucket stays least-recently-seen first.
        entries = bucket._entries
        position = len(entries)
        while position > 0 and entries[position - 1].last_seen > entry.last_seen:
            position -= 1
        entries.insert(position, entry)
        self._index[entry.contact.node_id] = entry
