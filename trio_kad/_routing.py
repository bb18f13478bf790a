"""The routing table: k-buckets over the XOR metric (paper sections 2.2, 2.4 and 4.2).

Pure bookkeeping, no I/O: when a full bucket needs its oldest contact pinged,
``update`` says so (``PingOldest``) and the caller reports the outcome with
``update`` or ``mark_failed``. Times are passed in as ``now``.

Buckets are ranges of XOR distance from the own id, ``[low, high)``: aligned
power-of-two intervals that together partition ``[0, 2**256)``, starting as one
and split as they overflow. The table picks the bucket, splits, bans and keeps
the indexes by id; each ``Bucket`` (``_bucket``) keeps its order, replacement
cache and per-subnet shares (go-libp2p-kbucket's diversity filter).
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from ._bans import BanList
from ._bucket import Bucket, ContactInfo, Entry, PingOldest
from ._diversity import SubnetGroups, subnet_group
from ._ids import ID_BYTES, ID_SPACE, Contact, check_id, id_to_int

__all__ = [
    "Added",
    "Bucket",
    "ContactInfo",
    "Ignored",
    "PingOldest",
    "RoutingTable",
    "UpdateResult",
    "Updated",
    "subnet_group",
]

_GROUP_CACHE_SIZE = 4096  # parsed hosts remembered per table; ipaddress parsing is slow


@dataclass(frozen=True, slots=True)
class Added:
    """The contact was new and went into a bucket."""


@dataclass(frozen=True, slots=True)
class Updated:
    """The contact was known; it is now the most recently seen of its bucket."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """The contact was not recorded: ``reason`` says why.

    One of ``"own id"``, ``"address conflict"`` (another address holds the id
    and still answers), ``"subnet full"`` (its /24 or /48 already has its share
    of the bucket) or ``"banned"``.
    """

    reason: str


UpdateResult = Added | Updated | PingOldest | Ignored

_ADDED = Added()
_UPDATED = Updated()
_IGNORED_SUBNET = Ignored("subnet full")


class RoutingTable:
    """k-buckets with splitting, least-recently-seen eviction and replacement caches.

    Splitting follows paper section 4.2: a full bucket splits when its range
    contains the own id, or (relaxed splitting) when the new contact would be
    among the ``k`` contacts closest to the own id, so that the own neighbourhood
    is always complete even when ids are unevenly spread.

    ``max_per_subnet`` (``None``: no limit) caps the contacts and candidates per
    bucket whose host lies in one /24 (IPv4) or /48 (IPv6); hosts in ``exempt``
    (such as ``"127.0.0.0/8"``; ``None``: none) and DNS names are not limited.
    ``max_bans`` bounds the ban list (no new ban while it is full of running ones).
    """

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = 20,
        replacement_cache_size: int = 20,
        max_failures: int = 3,
        now: float = 0.0,
        max_per_subnet: int | None = None,
        exempt: Iterable[str] | None = (),
        max_bans: int = 1024,
    ) -> None:
        check_id(own_id, "own_id")
        if k < 1:
            raise ValueError("k must be >= 1")
        if replacement_cache_size < 0:
            raise ValueError("replacement_cache_size must be >= 0")
        if max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        if max_per_subnet is not None and max_per_subnet < 1:
            raise ValueError("max_per_subnet must be >= 1 or None")
        if isinstance(exempt, str):
            raise TypeError("exempt must be an iterable of network strings, not one string")
        self._max_per_subnet = max_per_subnet
        self._groups = SubnetGroups(
            (ipaddress.ip_network(n) for n in exempt or ()), cache_size=_GROUP_CACHE_SIZE
        )
        self._bans = BanList(max_bans)
        self._own_id = own_id
        self._own_int = id_to_int(own_id)
        self._k = k
        self._max_failures = max_failures
        limits = {"capacity": k, "cache_size": replacement_cache_size}
        self._buckets = [Bucket(0, ID_SPACE, now, **limits, share=max_per_subnet)]
        self._lows: list[int] = [0]  # bucket lows, for bisection
        self._index: dict[bytes, Entry] = {}  # contacts in buckets
        self._cached: dict[bytes, Entry] = {}  # contacts in replacement caches

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
        return self._buckets[self._bucket_index(id_to_int(node_id) ^ self._own_int)]

    def get(self, node_id: bytes) -> Contact | None:
        """The contact with ``node_id`` if it is in a bucket."""
        entry = self._index.get(node_id)
        return None if entry is None else entry.contact

    def info(self, node_id: bytes) -> ContactInfo | None:
        """Last-seen time and failure count of a contact in a bucket."""
        entry = self._index.get(node_id)
        return None if entry is None else entry.info()

    def last_seen(self, node_id: bytes) -> float | None:
        """When a contact in a bucket was last seen alive (``info`` without building one)."""
        entry = self._index.get(node_id)
        return None if entry is None else entry.last_seen

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def contacts(self) -> list[Contact]:
        """Every contact in a bucket, nearest buckets first."""
        return [c for b in self._buckets for c in b.contacts]

    def banned(self, node_id: bytes, now: float) -> bool:
        """Whether ``node_id`` is banned at time ``now``."""
        return self._bans.banned(node_id, now)

    def bans_running(self, now: float) -> int:
        """How many ids are banned at time ``now`` (for status pages and metrics)."""
        return self._bans.running(now)

    def closest(
        self, target: bytes, count: int, *, exclude: Container[bytes] = frozenset()
    ) -> list[Contact]:
        """Up to ``count`` contacts nearest ``target`` by XOR distance, nearest first."""
        if count <= 0:
            return []
        if not isinstance(target, bytes) or len(target) != ID_BYTES:
            check_id(target, "target")  # raises
        t = int.from_bytes(target, "big")
        # The walk over buckets, leaves of the binary tree of paper section 2.4, with
        # distances from the own id as the tree's keys and ``dt`` the target's: the ids
        # of each subtree lie at one range of distances from the target, disjoint from
        # those of other subtrees, so whole buckets come in order. The bucket covering
        # ``dt`` comes first (distances below its size); then the sibling subtree of each
        # ancestor of that leaf, from the bottom up (distances in [size, 2 * size)),
        # until ``count`` are found. Within the sibling of size ``size`` the order is
        # the same walk again from ``dt ^ size``, its point nearest the target (it
        # differs from ``dt`` only in bits the subtree's ids share). Only the buckets
        # visited are sorted.
        dt = t ^ self._own_int
        buckets, lows = self._buckets, self._lows
        bucket = buckets[bisect_right(lows, dt) - 1]
        found = bucket.nearest(t, exclude, count)
        if len(found) >= count:
            return found
        # Frames (point, size, top): the subtree of ``size`` holding ``point`` is done;
        # its siblings of that size and up, below ``top``, are next. Last in, first out,
        # so a sibling's own frames are done before its next larger one.
        stack = [(dt, bucket.size, ID_SPACE)]
        while stack:
            point, size, top = stack.pop()
            if size >= top:
                continue
            stack.append((point, size << 1, top))
            point ^= size
            bucket = buckets[bisect_right(lows, point) - 1]  # no larger than size
            if bucket:
                found += bucket.nearest(t, exclude, count - len(found))
                if len(found) >= count:
                    break
            stack.append((point, bucket.size, size))
        return found

    # --- updates -------------------------------------------------------------

    def update(self, contact: Contact, now: float) -> UpdateResult:
        """Record that ``contact`` was just seen alive (it answered, or sent a valid request)."""
        node_id = contact.node_id
        if not isinstance(node_id, bytes) or len(node_id) != ID_BYTES:
            check_id(node_id, "contact.node_id")  # raises
        if node_id == self._own_id:
            return Ignored("own id")
        if self._bans.refuses(node_id, now):
            return Ignored("banned")
        entry = self._index.get(node_id)
        if entry is not None:
            # Identity first: the dataclass comparison is the slow part of a re-seen contact.
            if contact is not entry.contact and contact != entry.contact:
                return self._readdress(entry, contact, now)
            entry.bucket.seen(entry, now)
            entry.bucket.saw_alive(now)
            return _UPDATED

        # A re-seen replacement is treated as new: the table may have room for it now.
        cached = self._cached.get(node_id)
        if cached is not None:
            quick = self._reseen_replacement(cached, contact, now)
            if quick is not None:
                cached.bucket.saw_alive(now)
                return quick
            del self._cached[node_id]
            cached.bucket.forget_replacement(cached)
        id_int = int.from_bytes(node_id, "big")
        distance = id_int ^ self._own_int
        group = self._group(contact.host)
        split_any = False
        while True:
            index = self._bucket_index(distance)
            bucket = self._buckets[index]
            full = bucket.full
            if (
                full
                and bucket.size > 1
                and (bucket.low == 0 or self._closer_count(index, distance) < self._k)
            ):
                # A split evicts nobody; the cap is checked in the half it lands in.
                self._split(index)
                split_any = True
                continue
            if not bucket.has_room_for(group):
                # Neither a slot nor a place in the cache: a group at its share of the
                # bucket must not wait there to take more of it later.
                result: UpdateResult = _IGNORED_SUBNET
            elif not full:
                entry = Entry(contact, id_int, distance, now, group, bucket)
                bucket.add(entry)
                self._index[node_id] = entry
                result = _ADDED
            elif not bucket.cache_has_room_for(group):
                result = _IGNORED_SUBNET
            else:
                self._add_replacement(bucket, Entry(contact, id_int, distance, now, group, bucket))
                result = bucket.ping_oldest()
            if result is not _IGNORED_SUBNET:
                bucket.saw_alive(now)
            break
        if split_any:
            # Splitting may leave a half with room and cached candidates: use them.
            for bucket in self._buckets:
                while self._promote(bucket):
                    pass
        return result

    def mark_failed(self, node_id: bytes) -> Contact | None:
        """Record that an RPC to ``node_id`` failed; return the contact if it was dropped.

        One lost packet must not evict a contact: it is dropped after
        ``FAILURES_BEFORE_REPLACEMENT`` consecutive failures when its bucket has
        a replacement to take its place, or after ``max_failures``. A
        replacement-cache candidate that fails is forgotten (returns ``None``,
        it was never in a bucket).
        """
        entry = self._index.get(node_id)
        if entry is None:
            self._forget_replacement(node_id)
            return None
        entry.failures += 1
        if entry.bucket.evicts(entry, self._max_failures):
            self._drop(entry)
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
        self._drop(entry)
        return entry.contact

    def ban(self, node_id: bytes, until: float, *, now: float) -> Contact | None:
        """Drop ``node_id`` (as ``remove``) and refuse it in ``update`` until ``until``.

        For a node that answered with garbage or lied about ids. Banning again
        moves the end of the ban. The list keeps at most ``max_bans`` running
        bans, so a flood of fresh ids cannot grow it without bound: when it is
        full, bans expired by ``now`` make room, and if none has the new ban is
        not recorded (the contact is still dropped). A ban is never lifted
        early: whoever can earn many bans must not lift an older one with them.
        Returns the contact if it was in a bucket.
        """
        check_id(node_id, "node_id")
        self._bans.add(node_id, until, now)
        return self.remove(node_id)

    # --- refresh (paper section 2.3: buckets not looked up within an hour) ---

    def touch(self, target: bytes, now: float) -> None:
        """Note that a lookup of ``target`` happened, so its bucket counts as refreshed."""
        self.bucket_for(target).last_touched = now

    def touch_within(self, radius: int, now: float) -> None:
        """Note that every bucket whose whole range lies below distance ``radius`` was refreshed.

        For a lookup of the own id: it asks every node nearer than the k-th
        closest it finds, so it refreshes all the buckets in that ball at once.
        """
        for bucket in self._buckets:
            if bucket.high > radius:
                break  # sorted nearest first
            bucket.last_touched = now

    def neighbourhood_radius(self) -> int:
        """Distance from the own id past the k-th closest contact (all of it with fewer)."""
        closest = self.closest(self._own_id, self._k)
        if len(closest) < self._k:
            return ID_SPACE
        return (id_to_int(closest[-1].node_id) ^ self._own_int) + 1

    def stale_buckets(self, now: float, interval: float) -> list[tuple[int, int]]:
        """``(low, high)`` distance ranges of buckets with no activity for ``interval``.

        Activity is a lookup of an id in the range (``touch``) or, for a full
        bucket other than the own one, a contact of its range seen alive
        (``Bucket.saw_alive``): such a bucket has nothing left to discover and
        is kept by section 2.2's updates. A bucket with room, or the own
        bucket, may lack nodes only a lookup finds. A split is neither: both
        halves keep their parent's time. (docs/design.md, "Keeping data alive".)
        """
        cutoff = now - interval
        return [(b.low, b.high) for b in self._buckets if b.last_touched <= cutoff]

    # --- internals -----------------------------------------------------------

    def _bucket_index(self, distance: int) -> int:
        return bisect_right(self._lows, distance) - 1

    def _group(self, host: str) -> int | None:
        if self._max_per_subnet is None:
            return None
        return self._groups.group(host)

    def _readdress(self, entry: Entry, contact: Contact, now: float) -> UpdateResult:
        """``update`` of a known id at another address."""
        if entry.failures == 0:
            # The entry we hold answers; a stranger claiming its id must not take it over.
            return Ignored("address conflict")
        # The known address stopped answering: the node moved, within its new group's share.
        bucket = entry.bucket
        group = self._group(contact.host)
        if group != entry.group and not bucket.has_room_for(group, leaving=entry):
            return Ignored("subnet full")
        bucket.readdress(entry, contact, group)
        bucket.seen(entry, now)
        return _UPDATED

    def _reseen_replacement(
        self, cached: Entry, contact: Contact, now: float
    ) -> UpdateResult | None:
        """``update``'s result for a candidate seen again, or ``None`` to take the general path.

        The busy-network case: a stranger whose bucket is full and may not split
        asks again. The general path would take it out of the cache, find nothing
        changed, and put a fresh entry for it last in the cache with ``PingOldest``.
        This does the same in place, only when that outcome is certain.
        """
        # Whether it may split is the bucket's to say from how many contacts lie up
        # to it: all but those in farther buckets, few, as the busy buckets are the
        # far ones, last in the list.
        up_to_here = len(self._index)
        for bucket in self._buckets[bisect_right(self._lows, cached.distance) :]:
            up_to_here -= len(bucket)
        return cached.bucket.reseen_replacement(cached, contact, now, up_to_here)

    def _closer_count(self, index: int, distance: int) -> int:
        """How many contacts are nearer the own id than ``distance`` (stops counting at k)."""
        count = 0
        for bucket in self._buckets[:index]:
            count += len(bucket)
            if count >= self._k:
                return count
        return count + self._buckets[index].count_nearer(distance)

    def _split(self, index: int) -> None:
        parent = self._buckets[index]
        # A split is no lookup: both halves are as fresh as their parent was (2.3).
        near, far = parent.split(parent.last_touched)
        self._buckets[index : index + 1] = [near, far]
        self._lows[index : index + 1] = [near.low, far.low]

    def _add_replacement(self, bucket: Bucket, entry: Entry) -> None:
        self._cached[entry.node_id] = entry
        dropped = bucket.add_replacement(entry)
        if dropped is not None:
            del self._cached[dropped.node_id]

    def _forget_replacement(self, node_id: bytes) -> None:
        cached = self._cached.pop(node_id, None)
        if cached is not None:
            cached.bucket.forget_replacement(cached)

    def _drop(self, entry: Entry) -> None:
        bucket = entry.bucket
        bucket.remove(entry)
        del self._index[entry.node_id]
        self._promote(bucket)

    def _promote(self, bucket: Bucket) -> bool:
        """Move the best eligible replacement into ``bucket`` if it has room."""
        entry = bucket.promote()
        if entry is None:
            return False
        del self._cached[entry.node_id]
        self._index[entry.node_id] = entry
        return True
