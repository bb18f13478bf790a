"""One k-bucket: the contacts at one range of XOR distance from the own id (paper section 2.2).

Its contacts least recently seen first (LRS), a bounded cache of candidates to
replace ones that fail, the per-subnet share of both, and its own queries. Which
bucket, when to split, bans and the indexes by id are ``RoutingTable``'s, its
only caller (as rust-libp2p's ``kbucket/bucket.rs``, a full bucket answers
"ping this one" instead of doing I/O).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import cast

from ._ids import Contact

__all__ = ["FAILURES_BEFORE_REPLACEMENT", "Bucket", "ContactInfo", "Entry", "PingOldest"]

FAILURES_BEFORE_REPLACEMENT = 2
"""Consecutive failed RPCs after which a contact gives its place to a waiting replacement.

Paper section 2.2 prefers old contacts: the longer a node has been up, the
likelier it stays up, and one lost packet says little about that (a 1 %
loss each way fails 2 % of RPCs; 0.04 % fail twice in a row). Two in a row
keep a long-lived contact through a lost reply while a dead one is replaced
after one more timeout (its timeout backed off); section 4.1's five would
keep dead contacts in lookups' way three RPCs longer. Without a replacement
a contact stays for ``Config.max_failures``.
"""

# nearest() sorts a bucket by keys this wide: CPython compares ints of one 30-bit
# digit without the general int comparison, and hashes and XORs them cheaply.
_KEY_BITS = 30


@dataclass(frozen=True, slots=True)
class PingOldest:
    """The bucket is full and may not split; the new contact went to its replacement cache.

    The caller should ping ``oldest`` and then call ``update(oldest, now)`` if it
    answered or ``mark_failed(oldest.node_id)`` if not: paper section 2.2 evicts
    the least-recently-seen contact only once it fails to answer, because
    long-lived nodes are the likeliest to stay online (here, once it failed
    ``FAILURES_BEFORE_REPLACEMENT`` times in a row: ping it again).
    """

    oldest: Contact


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """A snapshot of what the table knows about one contact."""

    contact: Contact
    last_seen: float
    failures: int
    """Consecutive failed RPCs since it was last seen alive."""


class Entry:
    """Mutable per-contact state, shared by a bucket and the table's indexes.

    Never handed out beyond ``_routing`` (``ContactInfo`` is the public view).
    """

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
        self.id_int = id_int  # parsed once: nearest() XORs it with every target
        self.distance = distance  # from the own id, fixed for the entry's life
        self.last_seen = last_seen
        self.failures = 0
        self.group = group  # its host's subnet group, or None when not limited
        self.bucket = bucket  # holding it, in its entries or replacements; moves on a split

    def info(self) -> ContactInfo:
        """The public snapshot of this entry."""
        return ContactInfo(self.contact, self.last_seen, self.failures)


class Bucket:
    """The contacts whose XOR distance from the own id lies in ``[low, high)``.

    Holds at most ``capacity`` contacts (k) and ``cache_size`` replacement
    candidates; with ``share`` set, at most that many of each whose hosts lie
    in one subnet group. Read it freely; only the ``RoutingTable`` that owns
    it calls the mutators.
    """

    __slots__ = (
        "_cache_size",
        "_capacity",
        "_entries",
        "_group_counts",
        "_high",
        "_low",
        "_near",
        "_near_mask",
        "_near_shift",
        "_ping",
        "_replacements",
        "_share",
        "last_touched",
    )

    def __init__(
        self,
        low: int,
        high: int,
        last_touched: float,
        *,
        capacity: int = 20,
        cache_size: int = 20,
        share: int | None = None,
    ) -> None:
        self._low = low
        self._high = high
        self._capacity = capacity
        self._cache_size = cache_size
        self._share = share
        # Node id -> entry, least recently seen first: a dict so that moving a
        # re-seen contact to the end, or dropping one, does not scan the bucket.
        self._entries: dict[bytes, Entry] = {}
        self._replacements: list[Entry] = []  # most recently seen last
        self.last_touched = last_touched
        """When its range last saw activity (refresh, paper 2.3): a lookup into it, for a
        full bucket a contact of it seen alive, an ask covering the own neighbourhood;
        else when it was created (a split keeps its parent's time)."""
        # Views of the entries for the hot paths, built on first use and dropped by
        # _entries_changed whenever a contact joins, leaves or changes address; a
        # re-seen contact only reorders the entries and keeps them.
        self._near: dict[int, Contact] | None = None  # sort key -> contact, for nearest
        self._near_mask = -1  # a sort key is (id int & mask) >> shift (see _near_view)
        self._near_shift = 0
        self._group_counts: dict[int | None, int] | None = None  # contacts per subnet group
        self._ping: PingOldest | None = None  # the last one built, reused while still oldest

    # --- reading -------------------------------------------------------------

    @property
    def low(self) -> int:
        """Smallest distance from the own id covered (inclusive)."""
        return self._low

    @property
    def high(self) -> int:
        """End of the covered distance range (exclusive)."""
        return self._high

    @property
    def size(self) -> int:
        """How many distances the bucket covers: ``high - low``, a power of two."""
        return self._high - self._low

    @property
    def full(self) -> bool:
        """Whether the bucket holds its ``capacity`` (k) contacts."""
        return len(self._entries) >= self._capacity

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

    @property
    def replacement_entries(self) -> list[ContactInfo]:
        """The candidates with their bookkeeping, most recently seen last."""
        return [e.info() for e in self._replacements]

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

    def count_nearer(self, distance: int) -> int:
        """How many of the bucket's contacts lie nearer the own id than ``distance``."""
        return sum(1 for e in self._entries.values() if e.distance < distance)

    def has_room_for(self, group: int | None, leaving: Entry | None = None) -> bool:
        """Whether ``group`` is below its share of the contacts (``leaving`` not counted)."""
        share = self._share
        if group is None or share is None:
            return True
        counts = self._group_counts
        if counts is None:
            counts = self._group_counts = {}
            for e in self._entries.values():
                counts[e.group] = counts.get(e.group, 0) + 1
        count = counts.get(group, 0)
        if leaving is not None and leaving.group == group:
            count -= 1
        return count < share

    def cache_has_room_for(self, group: int | None) -> bool:
        """Whether ``group`` is below its share of the replacement cache."""
        share = self._share
        if group is None or share is None:
            return True
        return [e.group for e in self._replacements].count(group) < share

    def has_replacement_for(self, leaving: Entry) -> bool:
        """Whether a candidate could take the place of ``leaving`` (one of the contacts)."""
        return self._pick_replacement(leaving) is not None

    def evicts(self, entry: Entry, max_failures: int) -> bool:
        """Whether ``entry`` (one of the contacts), having just failed again, must leave.

        After ``max_failures`` consecutive failures, or after
        ``FAILURES_BEFORE_REPLACEMENT`` when a candidate could take its place.
        """
        failures = entry.failures
        if failures >= max_failures:
            return True
        return failures >= FAILURES_BEFORE_REPLACEMENT and self.has_replacement_for(entry)

    def ping_oldest(self) -> PingOldest:
        """``PingOldest`` for the least recently seen contact (the bucket is not empty)."""
        oldest = next(iter(self._entries.values())).contact
        ping = self._ping
        if ping is None or ping.oldest is not oldest:
            # Frozen, so one instance can be handed out again while it names the oldest.
            ping = self._ping = PingOldest(oldest)
        return ping

    def nearest(self, target: int, exclude: Container[bytes], count: int) -> list[Contact]:
        """Up to ``count`` of the contacts nearest ``target`` (an int), nearest first."""
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

    # --- changing (the table's calls) ----------------------------------------

    def add(self, entry: Entry) -> None:
        """Take ``entry`` in as the most recently seen contact (the bucket is not full)."""
        self._entries[entry.node_id] = entry
        self._entries_changed()

    def seen(self, entry: Entry, now: float) -> None:
        """``entry`` (one of the contacts) answered: it becomes the most recently seen."""
        entries = self._entries
        del entries[entry.node_id]  # re-inserted last
        entries[entry.node_id] = entry
        entry.last_seen = now
        entry.failures = 0

    def readdress(self, entry: Entry, contact: Contact, group: int | None) -> None:
        """``entry`` (one of the contacts) moved to ``contact``'s address, in ``group``."""
        entry.contact = contact
        entry.group = group
        self._entries_changed()

    def remove(self, entry: Entry) -> None:
        """Drop ``entry``, one of the contacts."""
        del self._entries[entry.node_id]
        self._entries_changed()

    def add_replacement(self, entry: Entry) -> Entry | None:
        """Cache ``entry`` as the newest candidate; return the one that fell out, if any.

        With a cache of size 0 that is ``entry`` itself.
        """
        replacements = self._replacements
        replacements.append(entry)
        if len(replacements) > self._cache_size:
            return replacements.pop(0)
        return None

    def forget_replacement(self, entry: Entry) -> None:
        """Drop ``entry``, one of the candidates."""
        self._replacements.remove(entry)

    def reseen_replacement(
        self, entry: Entry, contact: Contact, now: float, up_to_here: int
    ) -> PingOldest | None:
        """``entry`` (a candidate) seen again at ``contact``: keep it as the newest candidate.

        The busy-network short path of ``RoutingTable.update``, for a full bucket
        that may not split: the general path would take the candidate out, find
        nothing changed and cache it again last, with ``PingOldest``. Returns
        ``None``, and changes nothing, unless that outcome is certain.
        ``up_to_here`` is how many contacts the table holds in this bucket and the
        ones nearer the own id: with k (the capacity) of them nearer than this
        bucket, no newcomer here is among the k closest, so it may not split.
        """
        entries = len(self._entries)
        if (
            entries < self._capacity  # room for it
            or up_to_here - entries < self._capacity  # may split (relaxed, section 4.2)
            or self._low == 0  # the own bucket, which splits when full
            or contact.host != entry.contact.host  # maybe another subnet group
            or not self.has_room_for(entry.group)  # its group filled up: refused
        ):
            return None
        # The cache's share needs no count: a candidate joins only below its group's
        # share, so the cache holds at most the share, and fewer once this one is out.
        # Nor can the cache overflow: this one leaves and comes back.
        replacements = self._replacements
        if replacements[-1] is not entry:
            replacements.remove(entry)
            replacements.append(entry)  # most recently seen last
        entry.contact = contact  # maybe a new port
        entry.last_seen = now
        entry.failures = 0
        return self.ping_oldest()

    def promote(self) -> Entry | None:
        """Move the best eligible candidate into the bucket if it has room; return it.

        The most recently seen candidate whose group is below its share goes in,
        slotted by its last-seen time so the bucket stays least recently seen first.
        """
        if len(self._entries) >= self._capacity:
            return None
        position = self._pick_replacement()
        if position is None:
            return None
        entry = self._replacements.pop(position)
        entry.failures = 0
        ordered = list(self._entries.values())
        position = len(ordered)
        while position > 0 and ordered[position - 1].last_seen > entry.last_seen:
            position -= 1
        ordered.insert(position, entry)
        self._entries.clear()
        self._entries.update((e.node_id, e) for e in ordered)
        self._entries_changed()
        return entry

    def saw_alive(self, now: float) -> None:
        """A contact of its range was seen alive: activity, if full and not the own bucket."""
        if self.full and self._low:
            self.last_touched = now

    def split(self, now: float) -> tuple[Bucket, Bucket]:
        """Two buckets for the lower and upper half of the range, sharing out the entries.

        Order is preserved, so each half stays least recently seen first, and the
        entries learn their new bucket. Both halves count as touched at ``now``.
        """
        mid = (self._low + self._high) // 2
        near, far = self._half(self._low, mid, now), self._half(mid, self._high, now)
        for e in self._entries.values():
            e.bucket = near if e.distance < mid else far
            e.bucket._entries[e.node_id] = e
        for e in self._replacements:
            e.bucket = near if e.distance < mid else far
            e.bucket._replacements.append(e)
        return near, far

    # --- internals -----------------------------------------------------------

    def _half(self, low: int, high: int, now: float) -> Bucket:
        return Bucket(
            low, high, now, capacity=self._capacity, cache_size=self._cache_size, share=self._share
        )

    def _entries_changed(self) -> None:
        """Drop the views of the entries: a contact joined, left or changed address."""
        self._near = None
        self._group_counts = None

    def _pick_replacement(self, leaving: Entry | None = None) -> int | None:
        """Index of the most recently seen candidate whose group has room once ``leaving`` goes."""
        replacements = self._replacements
        for position in range(len(replacements) - 1, -1, -1):
            if self.has_room_for(replacements[position].group, leaving):
                return position
        return None

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
