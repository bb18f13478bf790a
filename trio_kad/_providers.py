"""Provider sets: who announced a topic, kept bounded at a holder and merged at a finder.

``ProviderTable`` is a holder's side: per topic, one entry per node id, each
with its own expiry, under four bounds (entries per topic, topics, entries
and node ids per announcing address). ``ProviderMerge`` is a finder's side:
the entries of many holders, distinct by node id, the providers most holders
name first (one holder may lie), then the freshest. Pure code:
``now`` is always an argument.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ._messages import MAX_TTL, ErrorCode, ProviderEntry

__all__ = ["CONFIRMATIONS", "Provider", "ProviderMerge", "ProviderRefusal", "ProviderTable"]


@dataclass(frozen=True, slots=True)
class Provider:
    """A peer that announced a topic: where to reach it, and how long ago it said so."""

    node_id: bytes
    """The announcer's 32-byte node id."""
    host: str
    """The address its announcement came from (never one it claimed)."""
    port: int
    """The port it announced: its service's, or its node's listening port."""
    age: float
    """Seconds since it announced, as the holder that answered saw it."""


@dataclass(frozen=True, slots=True)
class ProviderRefusal:
    """Why a holder refused an entry: the code and message of its error reply."""

    code: ErrorCode
    message: str


TOPIC_FULL = ProviderRefusal(ErrorCode.OVERLOADED, "the topic's provider set is full")
TOPICS_FULL = ProviderRefusal(ErrorCode.OVERLOADED, "no room for another topic")
IP_ENTRIES = ProviderRefusal(ErrorCode.OVER_QUOTA, "too many provider entries from this address")
IP_IDS = ProviderRefusal(ErrorCode.OVER_QUOTA, "too many node ids from this address")
CONFLICT = ProviderRefusal(ErrorCode.PROVIDER_CONFLICT, "node id announced from another address")
BAD_PORT = ProviderRefusal(ErrorCode.MALFORMED, "port must be in 1..65535")


@dataclass(slots=True)
class _Entry:
    node_id: bytes
    host: str
    port: int
    origin: str
    """The IP group it counts against ("" for none: an exempt host)."""
    announced_at: float
    expires_at: float


class ProviderTable:
    """A holder's provider sets, each entry expiring on its own.

    ``add`` is an announcement (or a replicated entry); it refreshes the
    entry of the same node id from the same host, and otherwise takes a new
    place only within every bound. Refusals are counted by reason.
    """

    def __init__(
        self,
        *,
        lifetime: float,
        max_per_topic: int,
        max_topics: int,
        max_per_origin: int,
        max_ids_per_origin: int,
    ) -> None:
        self.lifetime = lifetime
        self._max_per_topic = max_per_topic
        self._max_topics = max_topics
        self._max_per_origin = max_per_origin
        self._max_ids_per_origin = max_ids_per_origin
        self._topics: dict[bytes, dict[bytes, _Entry]] = {}
        self._per_origin: Counter[str] = Counter()
        # Entries per (origin, node id): an origin's distinct ids are its keys.
        self._ids: dict[str, Counter[bytes]] = {}
        self.refused: Counter[str] = Counter()
        """Refusals by message (``ProviderRefusal.message``)."""

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._topics.values())

    @property
    def topics(self) -> int:
        """Topics with at least one entry (some may have expired and not been swept yet)."""
        return len(self._topics)

    def add(
        self,
        key: bytes,
        node_id: bytes,
        host: str,
        port: int,
        origin: str,
        now: float,
        *,
        ttl: float | None = None,
        age: float = 0.0,
    ) -> ProviderRefusal | None:
        """Keep ``node_id`` at ``host:port`` as a provider of ``key``; ``None`` when kept.

        ``ttl`` (at most ``lifetime``) and ``age`` come with a replicated
        entry; an announcement has the full lifetime and age 0. ``origin`` is
        what the entry counts against ("" for none).
        """
        refusal = self._check(key, node_id, host, port, origin, now)
        if refusal is not None:
            self.refused[refusal.message] += 1
            return refusal
        life = self.lifetime if ttl is None else min(ttl, self.lifetime)
        announced_at = now - max(0.0, age)
        entries = self._topics.setdefault(key, {})
        held = entries.get(node_id)
        if held is not None:
            if announced_at >= held.announced_at:
                held.port, held.announced_at = port, announced_at
            held.expires_at = max(held.expires_at, now + life)
            return None
        entries[node_id] = _Entry(node_id, host, port, origin, announced_at, now + life)
        if origin:
            self._per_origin[origin] += 1
            self._ids.setdefault(origin, Counter())[node_id] += 1
        return None

    def _check(
        self, key: bytes, node_id: bytes, host: str, port: int, origin: str, now: float
    ) -> ProviderRefusal | None:
        if not 1 <= port <= 65535:
            return BAD_PORT
        entries = self._live(key, now)
        held = None if entries is None else entries.get(node_id)
        if held is not None:
            # Same id, same host: a re-announcement. Another host may not take it over.
            return None if held.host == host else CONFLICT
        if entries is None and len(self._topics) >= self._max_topics:
            return TOPICS_FULL
        if entries is not None and len(entries) >= self._max_per_topic:
            return TOPIC_FULL
        if origin:
            if self._per_origin[origin] >= self._max_per_origin:
                return IP_ENTRIES
            ids = self._ids.get(origin)
            if ids is not None and node_id not in ids and len(ids) >= self._max_ids_per_origin:
                return IP_IDS
        return None

    def _live(self, key: bytes, now: float) -> dict[bytes, _Entry] | None:
        """The entries of ``key`` once its expired ones are dropped (``None``: no entry)."""
        entries = self._topics.get(key)
        if entries is None:
            return None
        for dead in [e for e in entries.values() if e.expires_at <= now]:
            self._drop(key, dead)
        return self._topics.get(key)

    def _drop(self, key: bytes, entry: _Entry) -> None:
        entries = self._topics[key]
        del entries[entry.node_id]
        if not entries:
            del self._topics[key]
        if entry.origin:
            self._per_origin[entry.origin] -= 1
            if not self._per_origin[entry.origin]:
                del self._per_origin[entry.origin]
            ids = self._ids[entry.origin]
            ids[entry.node_id] -= 1
            if not ids[entry.node_id]:
                del ids[entry.node_id]
                if not ids:
                    del self._ids[entry.origin]

    def get(self, key: bytes, now: float, limit: int = MAX_TTL) -> list[ProviderEntry]:
        """The live entries of ``key``, freshest first, at most ``limit``."""
        entries = self._live(key, now)
        if entries is None:
            return []
        fresh = sorted(entries.values(), key=lambda e: -e.announced_at)[:limit]
        return [_wire(e, now) for e in fresh]

    def remove(self, key: bytes, node_id: bytes) -> bool:
        """Forget ``node_id``'s entry for ``key`` (this node's own, on ``unannounce``)."""
        entry = self._topics.get(key, {}).get(node_id)
        if entry is not None:
            self._drop(key, entry)
        return entry is not None

    def expire(self, now: float) -> int:
        """Drop every expired entry; return how many."""
        before = len(self)
        for key in list(self._topics):
            self._live(key, now)
        return before - len(self)

    def items(self, now: float) -> Iterator[tuple[bytes, list[ProviderEntry]]]:
        """Every topic held with its live entries (replication, saving)."""
        for key in list(self._topics):
            entries = self.get(key, now)
            if entries:
                yield key, entries

    def origin_of(self, key: bytes, node_id: bytes) -> str | None:
        """The origin an entry counts against (``None``: not held); for saving."""
        entry = self._topics.get(key, {}).get(node_id)
        return None if entry is None else entry.origin


def _wire(entry: _Entry, now: float) -> ProviderEntry:
    # Rounded so that a copy never looks fresher or lives longer than the entry:
    # replicated along a chain of holders, rounding the other way would add up.
    age = min(MAX_TTL, max(0, math.ceil(now - entry.announced_at)))
    ttl = min(MAX_TTL, max(0, math.floor(entry.expires_at - now)))
    return ProviderEntry(entry.node_id, entry.host, entry.port, age, ttl)


CONFIRMATIONS = 2
"""Holders that must name a provider before a finder may stop early on it.

One holder's answer may be all made up (ids, hosts, ages of 0): an honest
provider is held at k nodes, so a second holder naming it costs a finder
one more answer, while a liar's inventions stay unconfirmed.
"""


class _Sighting:
    """Where holders say one provider is: which holders said so, and the freshest age given."""

    __slots__ = ("age", "holders")

    def __init__(self, age: float) -> None:
        self.age = age
        self.holders: set[bytes] = set()


class ProviderMerge:
    """A finder's merge of the entries holders return, distinct by node id.

    Every peer may lie, so a provider's place is decided by how many holders
    name it at that host and port, then by freshness: a liar can neither move
    an honest provider to its own host nor crowd the honest ones out with
    invented entries of age 0, unless its entries are all the finder meets.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._found: dict[bytes, dict[tuple[str, int], _Sighting]] = {}
        self._confirmed = 0

    def add(self, entries: Iterable[ProviderEntry], holder: bytes) -> list[Provider]:
        """Take ``holder``'s entries; return the node ids not seen before, in its order."""
        new = []
        for entry in entries:
            places = self._found.get(entry.node_id)
            if places is None:
                places = self._found[entry.node_id] = {}
                new.append(Provider(entry.node_id, entry.host, entry.port, float(entry.age)))
            sighting = places.get((entry.host, entry.port))
            if sighting is None:
                sighting = places[entry.host, entry.port] = _Sighting(float(entry.age))
            sighting.age = min(sighting.age, float(entry.age))
            if holder not in sighting.holders:
                sighting.holders.add(holder)
                if len(sighting.holders) == CONFIRMATIONS and not _confirmed_elsewhere(
                    places, sighting
                ):
                    self._confirmed += 1
        return new

    @property
    def full(self) -> bool:
        """Whether ``limit`` providers are known, each named by ``CONFIRMATIONS`` holders."""
        return self._confirmed >= self.limit

    def result(self) -> list[Provider]:
        """At most ``limit`` providers: most confirmed first, then freshest."""
        ranked = []
        for node_id, places in self._found.items():
            (host, port), best = max(places.items(), key=lambda p: (len(p[1].holders), -p[1].age))
            ranked.append((-len(best.holders), best.age, Provider(node_id, host, port, best.age)))
        ranked.sort(key=lambda r: (r[0], r[1]))
        return [provider for _, _, provider in ranked[: self.limit]]


def _confirmed_elsewhere(places: dict[tuple[str, int], _Sighting], sighting: _Sighting) -> bool:
    # A provider counts once toward ``full``, however many places reach the bar.
    return any(len(s.holders) >= CONFIRMATIONS for s in places.values() if s is not sighting)
