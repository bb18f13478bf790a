"""The routing table: k-buckets over the XOR metric (paper sections 2.2, 2.4 and 4.2).

Pure bookkeeping, no I/O: when a full bucket needs its oldest contact pinged,
``update`` says so (``PingOldest``) and the caller reports the outcome with
``update`` or ``mark_failed``. Times are passed in as ``now``.

Buckets are ranges of XOR distance from the own id, ``[low, high)``: aligned
power-of-two intervals that together partition ``[0, 2**256)``. The table starts
with one bucket covering everything and splits buckets as they overflow.

Two defences against routing-table poisoning (the paper assumes honest nodes;
these follow go-libp2p-kbucket's diversity filter and common ban practice):

- Subnet diversity: with ``max_per_subnet`` set, a bucket holds at most that
  many contacts whose host lies in one /24 (IPv4) or /48 (IPv6) network, and
  its replacement cache at most that many candidates per network too, so one
  host (or one cheap block of addresses) minting many node ids cannot fill a
  bucket (see ``_diversity``).
- Bans: ``ban(node_id, until)`` drops a contact that misbehaved and refuses it
  until ``until``; the ban list is bounded, oldest ban dropped first.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

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
# closest() sorts a bucket by keys this wide: CPython compares ints of one 30-bit
# digit without the general int comparison, and hashes and XORs them cheaply.
_KEY_BITS = 30


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
    """The contact was not recorded: ``reason`` says why.

    One of ``"own id"``, ``"address conflict"`` (another address holds the id
    and still answers), ``"subnet full"`` (its /24 or /48 already has its share
    of the bucket) or ``"banned"``.
    """

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

    __slots__ = (
        "bucket",
        "contact",
        "distance",
        "failures",
        "group",
        "id_int",
        "last_seen",
        "node_id",
    )

    def __init__(
        self,
        contact: Contact,
        id_int: int,
        distance: int,
        last_seen: float,
        group: int | None,
        bucket: Bucket,
    ) -> None:
        self.contact = contact
        self.node_id = contact.node_id  # fixed, while the contact may move to a new address
        self.id_int = id_int  # parsed once: closest() XORs it with every target
        self.distance = distance  # from the own id, fixed for the entry's life
        self.last_seen = last_seen
        self.failures = 0
        self.group = group  # its host's subnet group, or None when not limited
        self.bucket = bucket  # holding it, in its entries or replacements; moves on a split

    def info(self) -> ContactInfo:
        return ContactInfo(self.contact, self.last_seen, self.failures)


_ADDED = Added()
_UPDATED = Updated()


class Bucket:
    """The contacts whose XOR distance from the own id lies in ``[low, high)``.

    Read-only from outside: the ``RoutingTable`` owns and mutates it.
    """

    __slots__ = (
        "_entries",
        "_group_counts",
        "_high",
        "_low",
        "_near",
        "_near_mask",
        "_near_shift",
        "_ping",
        "_replacements",
        "last_touched",
    )

    def __init__(self, low: int, high: int, last_touched: float) -> None:
        self._low = low
        self._high = high
        # Node id -> entry, least recently seen first: a dict so that moving a
        # re-seen contact to the end, or dropping one, does not scan the bucket.
        self._entries: dict[bytes, _Entry] = {}
        self._replacements: list[_Entry] = []  # most recently seen last
        self.last_touched = last_touched
        """When a lookup last targeted an id in this bucket, or when it was created."""
        # Views of the entries for the hot paths, built on first use and dropped by
        # _entries_changed whenever a contact joins, leaves or changes address; a
        # re-seen contact only reorders the entries and keeps them.
        self._near: dict[int, Contact] | None = None  # sort key -> contact, for closest
        self._near_mask = -1  # a sort key is (id int & mask) >> shift (see _near_view)
        self._near_shift = 0
        self._group_counts: dict[int | None, int] | None = None  # contacts per subnet group
        self._ping: PingOldest | None = None  # the last one built, reused while still oldest

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
        return [e.contact for e in self._entries.values()]

    @property
    def entries(self) -> list[ContactInfo]:
        """The bucket's contacts with their bookkeeping, least recently seen first."""
        return [e.info() for e in self._entries.values()]

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

    def _entries_changed(self) -> None:
        """Drop the views of the entries: a contact joined, left or changed address."""
        self._near = None
        self._group_counts = None

    def _nearest(self, target: int, exclude: Container[bytes], count: int) -> list[Contact]:
        """Up to ``count`` of this bucket's contacts nearest ``target`` (an int), nearest first."""
        near = self._near
        if near is None:
            near = self._near_view()
        mask, shift = self._near_mask, self._near_shift
        # The builtin ``__xor__`` of an int as key runs no Python frame per id.
        key = ((target & mask) >> shift).__xor__
        skip: Iterable[bytes] = ()
        if exclude:
            kind = type(exclude)
            if kind is not set and kind is not frozenset:
                nearest = map(near.__getitem__, sorted(near, key=key))
                return [c for c in nearest if c.node_id not in exclude][:count]
            # A set's few ids are looked up here, rather than every id here in it:
            # the requester left out of a reply is rarely in the bucket.
            skip = self._entries.keys() & cast("frozenset[bytes]", exclude)
        if count == 1 and near and not skip:
            # Often the last one missing, when the bucket before lost the excluded one.
            return [near[min(near, key=key)]]
        # k ids or fewer (20 by default): one sort beats heapq.nsmallest at any count.
        ordered = sorted(near, key=key)
        for node_id in skip:
            ordered.remove((self._entries[node_id].id_int & mask) >> shift)
        del ordered[count:]
        return list(map(near.__getitem__, ordered))

    def _near_view(self) -> dict[int, Contact]:
        """Build ``_near``: the contacts by the bits of their ids that order them from any target.

        The ids here all lie at distances ``[low, low + 2**w)`` from the own id, so they
        agree on every bit from ``w`` up and their XOR distances from a target differ
        only below: the order is that of ``(id & mask) ^ (target & mask)`` with
        ``mask = 2**w - 1``. Dropping low bits keeps the order as long as no two ids
        agree on the bits kept, which is checked: if two do (only ids made to),
        the whole ids are the keys. Distinct keys, so no ties to break either.
        """
        entries = self._entries.values()
        size = self._high - self._low
        mask, shift = size - 1, max(0, size.bit_length() - 1 - _KEY_BITS)
        near = {(e.id_int & mask) >> shift: e.contact for e in entries}
        if len(near) < len(entries):
            mask, shift = -1, 0  # x & -1 == x
            near = {e.id_int: e.contact for e in entries}
        self._near, self._near_mask, self._near_shift = near, mask, shift
        return near

    def _group_count(self, group: int | None) -> int:
        """How many of the bucket's contacts have their host in ``group``."""
        counts = self._group_counts
        if counts is None:
            counts = self._group_counts = {}
            for e in self._entries.values():
                counts[e.group] = counts.get(e.group, 0) + 1
        return counts.get(group, 0)

    def _ping_oldest(self) -> PingOldest:
        """``PingOldest`` for the least recently seen contact (the bucket is not empty)."""
        oldest = next(iter(self._entries.values())).contact
        ping = self._ping
        if ping is None or ping.oldest is not oldest:
            # Frozen, so one instance can be handed out again while it names the oldest.
            ping = self._ping = PingOldest(oldest)
        return ping


class RoutingTable:
    """k-buckets with splitting, least-recently-seen eviction and replacement caches.

    Splitting follows paper section 4.2: a full bucket splits when its range
    contains the own id, or (relaxed splitting) when the new contact would be
    among the ``k`` contacts closest to the own id, so that the own neighbourhood
    is always complete even when ids are unevenly spread.

    ``max_per_subnet`` (``None``: no limit) caps the contacts per bucket, and the
    candidates per replacement cache, whose host lies in one /24 (IPv4) or /48
    (IPv6) network; hosts in ``exempt`` (network strings such as
    ``"127.0.0.0/8"``) and DNS names are not limited. ``max_bans`` bounds the
    ban list.
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
        exempt: Iterable[str] = (),
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
        if max_bans < 1:
            raise ValueError("max_bans must be >= 1")
        if isinstance(exempt, str):
            raise TypeError("exempt must be an iterable of network strings, not one string")
        self._max_per_subnet = max_per_subnet
        self._groups = SubnetGroups(
            (ipaddress.ip_network(n) for n in exempt), cache_size=_GROUP_CACHE_SIZE
        )
        self._max_bans = max_bans
        # node id -> banned until, oldest ban first
        self._bans: OrderedDict[bytes, float] = OrderedDict()
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
        return [e.contact for b in self._buckets for e in b._entries.values()]

    def banned(self, node_id: bytes, now: float) -> bool:
        """Whether ``node_id`` is banned at time ``now``."""
        until = self._bans.get(node_id)
        return until is not None and now < until

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
        found = bucket._nearest(t, exclude, count)
        if len(found) >= count:
            return found
        # Frames (point, size, top): the subtree of ``size`` holding ``point`` is done;
        # its siblings of that size and up, below ``top``, are next. Last in, first out,
        # so a sibling's own frames are done before its next larger one.
        stack = [(dt, bucket._high - bucket._low, ID_SPACE)]
        while stack:
            point, size, top = stack.pop()
            if size >= top:
                continue
            stack.append((point, size << 1, top))
            point ^= size
            bucket = buckets[bisect_right(lows, point) - 1]  # no larger than size
            if bucket._entries:
                found += bucket._nearest(t, exclude, count - len(found))
                if len(found) >= count:
                    break
            stack.append((point, bucket._high - bucket._low, size))
        return found

    # --- updates -------------------------------------------------------------

    def update(self, contact: Contact, now: float) -> UpdateResult:
        """Record that ``contact`` was just seen alive (it answered, or sent a valid request)."""
        node_id = contact.node_id
        if not isinstance(node_id, bytes) or len(node_id) != ID_BYTES:
            check_id(node_id, "contact.node_id")  # raises
        if node_id == self._own_id:
            return Ignored("own id")
        if self._bans:  # empty on an honest network: skip the lookup
            until = self._bans.get(node_id)
            if until is not None:
                if now < until:
                    return Ignored("banned")
                del self._bans[node_id]
        entry = self._index.get(node_id)
        if entry is not None:
            return self._update_known(entry, contact, now)

        # A re-seen replacement is treated as new: the table may have room for it now.
        cached = self._cached.get(node_id)
        if cached is not None:
            quick = self._reseen_replacement(cached, contact, now)
            if quick is not None:
                return quick
            del self._cached[node_id]
            cached.bucket._replacements.remove(cached)
        id_int = int.from_bytes(node_id, "big")
        distance = id_int ^ self._own_int
        group = self._group(contact.host)
        split_any = False
        while True:
            index = self._bucket_index(distance)
            bucket = self._buckets[index]
            full = len(bucket._entries) >= self._k
            splittable = (
                full
                and bucket.high - bucket.low > 1
                and (bucket.low == 0 or self._closer_count(index, distance) < self._k)
            )
            if splittable:
                # A split evicts nobody; the cap is checked in the half it lands in.
                self._split(index, now)
                split_any = True
                continue
            if self._over_cap(group, bucket._entries.values()):
                # Neither a slot nor a place in the cache: a group at its share of the
                # bucket must not wait there to take more of it later.
                result: UpdateResult = Ignored("subnet full")
                break
            if not full:
                entry = _Entry(contact, id_int, distance, now, group, bucket)
                bucket._entries[node_id] = entry
                bucket._entries_changed()
                self._index[node_id] = entry
                result = _ADDED
                break
            if self._over_cap(group, bucket._replacements):
                result = Ignored("subnet full")
                break
            self._add_replacement(bucket, _Entry(contact, id_int, distance, now, group, bucket))
            result = bucket._ping_oldest()
            break
        if split_any:
            # Splitting may leave a half with room and cached candidates: use them.
            for bucket in self._buckets:
                while len(bucket._entries) < self._k and self._promote(bucket):
                    pass
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
        bucket = entry.bucket
        if (
            entry.failures >= self._max_failures
            or self._pick_replacement(bucket, leaving=entry) is not None
        ):
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
        self._drop(entry.bucket, entry)
        return entry.contact

    def ban(self, node_id: bytes, until: float) -> Contact | None:
        """Drop ``node_id`` (as ``remove``) and refuse it in ``update`` until ``until``.

        For a node that answered with garbage or lied about ids. Banning again
        moves the end of the ban. The list keeps at most ``max_bans`` entries:
        beyond that the oldest ban is lifted early, so a flood of fresh ids
        cannot grow it without bound. Returns the contact if it was in a bucket.
        """
        check_id(node_id, "node_id")
        self._bans[node_id] = until
        self._bans.move_to_end(node_id)
        if len(self._bans) > self._max_bans:
            self._bans.popitem(last=False)
        return self.remove(node_id)

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

    def _group(self, host: str) -> int | None:
        if self._max_per_subnet is None:
            return None
        return self._groups.group(host)

    def _over_cap(
        self, group: int | None, entries: Iterable[_Entry], leaving: _Entry | None = None
    ) -> bool:
        """Whether ``entries`` (minus ``leaving``, one of them) already hold ``group``'s share."""
        cap = self._max_per_subnet
        if group is None or cap is None:
            return False
        count = [e.group for e in entries].count(group)
        if leaving is not None and leaving.group == group:
            count -= 1
        return count >= cap

    def _update_known(self, entry: _Entry, contact: Contact, now: float) -> UpdateResult:
        bucket = entry.bucket
        # Identity first: the dataclass comparison is the slow part of a re-seen contact.
        if contact is not entry.contact and contact != entry.contact:
            if entry.failures == 0:
                # The entry we hold answers; a stranger claiming its id must not take it over.
                return Ignored("address conflict")
            # The known address stopped answering: the node moved, within its new group's share.
            group = self._group(contact.host)
            if group != entry.group and self._over_cap(
                group, bucket._entries.values(), leaving=entry
            ):
                return Ignored("subnet full")
            entry.contact = contact
            entry.group = group
            bucket._entries_changed()
        entries = bucket._entries
        del entries[entry.node_id]  # re-inserted last: now the most recently seen
        entries[entry.node_id] = entry
        entry.last_seen = now
        entry.failures = 0
        return _UPDATED

    def _reseen_replacement(
        self, cached: _Entry, contact: Contact, now: float
    ) -> UpdateResult | None:
        """``update``'s result for a candidate seen again, or ``None`` to take the general path.

        The busy-network case: a stranger whose bucket is full and may not split
        asks again. The general path would take it out of the cache, find nothing
        changed, and put a fresh entry for it last in the cache with ``PingOldest``.
        This does the same in place, only when that outcome is certain.
        """
        bucket = cached.bucket  # covers its id: a split moves it along
        k = self._k
        if len(bucket._entries) < k or bucket._low == 0 or contact.host != cached.contact.host:
            # Room for it, the own bucket (splits when full), or maybe another subnet group.
            return None
        # Not splittable either when k contacts lie in nearer buckets (so before it in
        # _closer_count). Counted as all but those from this bucket on: few, as the
        # busy buckets are the far ones, last in the list.
        nearer = len(self._index)
        buckets = self._buckets
        for i in range(bisect_left(self._lows, bucket._low), len(buckets)):
            nearer -= len(buckets[i]._entries)
        if nearer < k:
            return None
        # Same host, same group (a pure function of it). A group at its share of the
        # bucket is refused and forgotten: the general path says so.
        group, cap = cached.group, self._max_per_subnet
        if group is not None and cap is not None and bucket._group_count(group) >= cap:
            return None
        # The cache's share needs no count: a candidate joins only below its group's
        # share, so the cache holds at most the share, and fewer once this one is out.
        # Nor can the cache overflow: this one leaves and comes back.
        # (``_cached`` keeps its order, which nothing reads: it is only looked up.)
        replacements = bucket._replacements
        if replacements[-1] is not cached:
            replacements.remove(cached)
            replacements.append(cached)  # most recently seen last
        cached.contact = contact  # maybe a new port
        cached.last_seen = now
        cached.failures = 0
        return bucket._ping_oldest()

    def _closer_count(self, index: int, distance: int) -> int:
        """How many contacts are nearer the own id than ``distance`` (stops counting at k)."""
        count = 0
        for bucket in self._buckets[:index]:
            count += len(bucket._entries)
            if count >= self._k:
                return count
        entries = self._buckets[index]._entries.values()
        return count + sum(1 for e in entries if e.distance < distance)

    def _split(self, index: int, now: float) -> None:
        old = self._buckets[index]
        mid = (old.low + old.high) // 2
        near, far = Bucket(old.low, mid, now), Bucket(mid, old.high, now)
        # Order is preserved, so each half stays least-recently-seen first.
        for e in old._entries.values():
            e.bucket = near if e.distance < mid else far
            e.bucket._entries[e.node_id] = e
        for e in old._replacements:
            e.bucket = near if e.distance < mid else far
            e.bucket._replacements.append(e)
        self._buckets[index : index + 1] = [near, far]
        self._lows[index : index + 1] = [near.low, far.low]

    def _add_replacement(self, bucket: Bucket, entry: _Entry) -> None:
        if self._cache_size == 0:
            return
        bucket._replacements.append(entry)
        self._cached[entry.node_id] = entry
        if len(bucket._replacements) > self._cache_size:
            dropped = bucket._replacements.pop(0)
            del self._cached[dropped.node_id]

    def _forget_replacement(self, node_id: bytes) -> None:
        cached = self._cached.pop(node_id, None)
        if cached is not None:
            cached.bucket._replacements.remove(cached)

    def _drop(self, bucket: Bucket, entry: _Entry) -> None:
        del bucket._entries[entry.node_id]
        bucket._entries_changed()
        del self._index[entry.node_id]
        self._promote(bucket)

    def _pick_replacement(self, bucket: Bucket, leaving: _Entry | None = None) -> int | None:
        """Index of the most recently seen candidate whose group has room once ``leaving`` goes."""
        replacements = bucket._replacements
        entries = bucket._entries.values()
        for position in range(len(replacements) - 1, -1, -1):
            if not self._over_cap(replacements[position].group, entries, leaving):
                return position
        return None

    def _promote(self, bucket: Bucket) -> bool:
        """Move the best eligible replacement into ``bucket`` (which has room), if any."""
        position = self._pick_replacement(bucket)
        if position is None:
            return False
        entry = bucket._replacements.pop(position)
        del self._cached[entry.node_id]
        entry.failures = 0
        # Slot it in by last-seen time so the bucket stays least-recently-seen first.
        ordered = list(bucket._entries.values())
        position = len(ordered)
        while position > 0 and ordered[position - 1].last_seen > entry.last_seen:
            position -= 1
        ordered.insert(position, entry)
        bucket._entries.clear()
        bucket._entries.update((e.node_id, e) for e in ordered)
        bucket._entries_changed()
        self._index[entry.node_id] = entry
        return True
