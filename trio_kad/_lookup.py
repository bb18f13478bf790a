"""The iterative node lookup of Kademlia as a pure state machine (paper section 2.3).

No I/O, no clock, no randomness: the caller (the Trio driver in ``_search``) asks
``next()`` what to do, sends the RPCs it is told to, and reports each outcome
with ``on_reply`` or ``on_failure``. Shaped after rust-libp2p's
``query/peers/closest.rs``, but with *strict* parallelism: never more than
``alpha`` RPCs in flight, even when progress stalls (libp2p widens to k then;
we do not, as the spec asks).
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter

from ._ids import Contact


@dataclass(frozen=True, slots=True)
class Query:
    """Send one RPC (FIND_NODE or FIND_VALUE) to ``contact`` now; it is counted in flight."""

    contact: Contact


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to send until an RPC in flight ends (with ``on_reply`` or ``on_failure``)."""


@dataclass(frozen=True, slots=True)
class Done:
    """The lookup is over; ``Lookup.closest()`` is the result. RPCs in flight may be cancelled."""


Step = Query | Wait | Done

# Steps without fields are immutable and equal to any other instance: share one each.
_WAIT = Wait()
_DONE = Done()


@dataclass(frozen=True, slots=True)
class LookupStatistics:
    """Counters describing one lookup, from ``Lookup.statistics()``."""

    queries: int
    """RPCs issued (``Query`` steps returned)."""
    replies: int
    """RPCs that were answered (``on_reply`` for a contact in flight)."""
    failures: int
    """RPCs that failed (``on_failure`` for a contact in flight)."""
    in_flight: int
    """RPCs issued that have neither answered nor failed yet."""
    rounds: int
    """Largest hop depth among contacts that answered (seeds are depth 1)."""
    candidates: int
    """Contacts currently on the shortlist (failed ones excluded)."""


class _State(enum.Enum):
    WAITING = enum.auto()  # known, never asked
    IN_FLIGHT = enum.auto()
    ANSWERED = enum.auto()


class _Candidate:
    __slots__ = ("contact", "depth", "distance", "state")

    def __init__(self, contact: Contact, distance: int, depth: int) -> None:
        self.contact = contact
        self.distance = distance
        self.depth = depth
        self.state = _State.WAITING


_distance_of = attrgetter("distance")


class Lookup:
    """One iterative lookup of ``target``: which contacts to ask, and when it is over.

    ``seeds`` are the starting contacts (usually the routing table's k closest
    to ``target``); ``exclude`` holds ids never queried nor returned (the own
    id). The shortlist keeps at most ``max_candidates`` contacts (default
    ``4 * k``): beyond that, the farthest contacts never asked are dropped
    (never one of the k closest; contacts asked are kept, so the list can
    exceed the bound by the number of RPCs issued).

    The lookup ends (paper section 2.3) when the k closest contacts that have
    not failed have all answered, or when nothing is in flight and nothing is
    left to ask, or after ``finish()``. Peers can name fresh, ever-closer ids
    for as long as they like, so ``max_queries`` (default: no bound) caps the
    RPCs: once that many were issued, the lookup ends when the last one in
    flight does. The ids it remembers (shortlist, failed ones) then stay under
    ``max_candidates + max_queries``.

    ``claims`` lets several lookups of one target share who owns which id
    (``DisjointLookup``): an id claimed by one is neither asked nor returned
    by another. ``path`` is this lookup's key in it. ``failed`` (shared the
    same way) holds the contacts that failed: never asked again, while the
    same id at another address may be (a peer may have named it at a
    forged address, and the honest node must stay within reach).
    """

    def __init__(
        self,
        target: bytes,
        seeds: Iterable[Contact],
        *,
        k: int,
        alpha: int,
        exclude: Iterable[bytes] = (),
        max_candidates: int | None = None,
        max_queries: int | None = None,
        claims: dict[bytes, int] | None = None,
        failed: set[Contact] | None = None,
        path: int = 0,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if alpha < 1:
            raise ValueError(f"alpha must be >= 1, got {alpha}")
        if max_candidates is None:
            max_candidates = 4 * k
        if max_candidates < k:
            raise ValueError(f"max_candidates ({max_candidates}) must be >= k ({k})")
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        self._target = target
        self._target_int = int.from_bytes(target, "big")
        self._k = k
        self._alpha = alpha
        self._parallelism = alpha
        self._max_candidates = max_candidates
        self._max_queries = max_queries
        # Every id this lookup holds (on the shortlist, or failed: never asked
        # again), those of the lookups sharing ``claims``, and the excluded ones
        # (claimed by path -1), so one membership test decides whether a contact is new.
        self._claims: dict[bytes, int] = {} if claims is None else claims
        self._failed: set[Contact] = set() if failed is None else failed
        self._path = path
        for node_id in exclude:
            self._claims.setdefault(node_id, -1)
        # Candidates sorted by XOR distance to the target (bisected on the
        # distance). XOR with a fixed target is a bijection, so distinct ids
        # never tie. The candidates themselves rather than (distance, id)
        # pairs: next() walks the first k on every step, and this spares it a
        # dict lookup per candidate (and _add a tuple per contact).
        self._order: list[_Candidate] = []
        self._by_id: dict[bytes, _Candidate] = {}
        self._finished = False
        self._in_flight = 0
        self._queries = 0
        self._replies = 0
        self._failures = 0
        self._rounds = 0
        self._add(seeds, depth=1)

    # --- driving -------------------------------------------------------------

    def next(self) -> Step:
        """What to do now: ``Query`` one contact, ``Wait`` for a reply, or ``Done``.

        Call repeatedly until it returns ``Wait`` or ``Done``: each ``Query``
        marks its contact in flight, so one call sequence may start up to
        ``alpha`` RPCs.
        """
        if self._finished:
            return _DONE
        # Only the k closest non-failed candidates matter (section 2.3: the
        # lookup ends once the k closest seen have all answered). Failed ones
        # are not in self._order, so these are just its first k entries.
        all_answered = True
        closest_unasked: _Candidate | None = None
        answered = _State.ANSWERED
        for candidate in self._order[: self._k]:
            state = candidate.state
            if state is not answered:
                all_answered = False
                if state is _State.WAITING:
                    closest_unasked = candidate
                    break
        if all_answered:
            return _DONE
        if closest_unasked is None:
            # The k closest are answered or in flight: only a reply can change that.
            return _WAIT
        if self._in_flight >= self._parallelism:
            # Strict parallelism: never more than alpha RPCs in flight.
            return _WAIT
        if self._max_queries is not None and self._queries >= self._max_queries:
            # Out of RPCs: the answers on their way still count, then it is over.
            if self._in_flight:
                return _WAIT
            self._finished = True
            return _DONE
        closest_unasked.state = _State.IN_FLIGHT
        self._in_flight += 1
        self._queries += 1
        return Query(closest_unasked.contact)

    def on_reply(self, node_id: bytes, contacts: Iterable[Contact]) -> None:
        """``node_id`` answered, naming ``contacts``; those join the shortlist.

        Ignored unless ``node_id`` is in flight, so a late, duplicate or
        unsolicited reply cannot corrupt the lookup.
        """
        candidate = self._by_id.get(node_id)
        if candidate is None or candidate.state is not _State.IN_FLIGHT:
            return
        candidate.state = _State.ANSWERED
        self._in_flight -= 1
        self._replies += 1
        self._rounds = max(self._rounds, candidate.depth)
        self._add(contacts, depth=candidate.depth + 1)

    def on_failure(self, node_id: bytes) -> None:
        """``node_id`` did not answer (timeout, error, wrong id): drop it for good.

        Ignored unless ``node_id`` is in flight (a failure reported after a
        reply, or for a contact never asked, changes nothing).
        """
        candidate = self._by_id.get(node_id)
        if candidate is None or candidate.state is not _State.IN_FLIGHT:
            return
        self._in_flight -= 1
        self._failures += 1
        # Section 2.3: contacts that fail to respond are removed from consideration.
        # The id is released: only this address is never asked again.
        self._failed.add(candidate.contact)
        if self._claims.get(node_id) == self._path:
            del self._claims[node_id]
        del self._by_id[node_id]
        index = bisect.bisect_left(self._order, candidate.distance, key=_distance_of)
        del self._order[index]

    def retry(self, node_id: bytes) -> None:
        """``node_id``'s RPC was dropped unanswered (the caller gave up waiting, it did not fail).

        The contact goes back among those to ask; the dropped RPC still counts
        as a query. Ignored unless ``node_id`` is in flight.
        """
        candidate = self._by_id.get(node_id)
        if candidate is None or candidate.state is not _State.IN_FLIGHT:
            return
        candidate.state = _State.WAITING
        self._in_flight -= 1

    def finish(self) -> None:
        """End the lookup now (e.g. a value was found): ``next()`` returns ``Done`` from now on."""
        self._finished = True

    # --- results and introspection -------------------------------------------

    @property
    def target(self) -> bytes:
        """The id being looked up."""
        return self._target

    @property
    def parallelism(self) -> int:
        """Most RPCs in flight from now on: ``alpha`` unless lowered (1..alpha).

        A value lookup may start with 1 and widen to ``alpha`` when the first
        contact is slow to answer (a hedged request), so a value the first
        contact holds costs one RPC, not alpha.
        """
        return self._parallelism

    @parallelism.setter
    def parallelism(self, value: int) -> None:
        if not 1 <= value <= self._alpha:
            raise ValueError(f"parallelism must be in 1..{self._alpha}, got {value}")
        self._parallelism = value

    @property
    def in_flight(self) -> int:
        """RPCs issued that have neither answered nor failed yet."""
        return self._in_flight

    @property
    def done(self) -> bool:
        """Whether ``next()`` would return ``Done`` (without changing anything)."""
        if self._finished:
            return True
        if self._max_queries is not None and self._queries >= self._max_queries:
            return not self._in_flight
        return all(candidate.state is _State.ANSWERED for candidate in self._order[: self._k])

    def closest(self) -> list[Contact]:
        """Up to k contacts that answered, nearest to the target first."""
        result: list[Contact] = []
        for candidate in self._order:
            if candidate.state is _State.ANSWERED:
                result.append(candidate.contact)
                if len(result) == self._k:
                    break
        return result

    def statistics(self) -> LookupStatistics:
        """Counters for this lookup so far."""
        return LookupStatistics(
            queries=self._queries,
            replies=self._replies,
            failures=self._failures,
            in_flight=self._in_flight,
            rounds=self._rounds,
            candidates=len(self._order),
        )

    # --- internals -----------------------------------------------------------

    def _add(self, contacts: Iterable[Contact], *, depth: int) -> None:
        id_length = len(self._target)
        by_id, claims, path, failed = self._by_id, self._claims, self._path, self._failed
        target_int = self._target_int
        added = []
        for contact in contacts:
            node_id = contact.node_id
            if node_id in claims or len(node_id) != id_length or contact in failed:
                continue
            candidate = _Candidate(contact, int.from_bytes(node_id, "big") ^ target_int, depth)
            by_id[node_id] = candidate
            claims[node_id] = path
            added.append(candidate)
        if added:
            self._order += added
            # Seeds and replies come nearest first, so this is a merge of two sorted
            # runs (linear), cheaper than an insort per contact.
            self._order.sort(key=_distance_of)
        if len(self._order) > self._max_candidates:
            self._prune()

    def _prune(self) -> None:
        # Bound memory against peers that flood us with contacts: drop the
        # farthest never-asked ones, but never one of the k closest (those are
        # the lookup's progress). Asked ones stay, to keep in_flight and the
        # answered set exact, so the list may stay a little over the bound.
        excess = len(self._order) - self._max_candidates
        kept: list[_Candidate] = []
        for index in range(len(self._order) - 1, -1, -1):
            candidate = self._order[index]
            if excess > 0 and index >= self._k and candidate.state is _State.WAITING:
                # Released: another path (or this one, later) may take it up.
                del self._by_id[candidate.contact.node_id]
                del self._claims[candidate.contact.node_id]
                excess -= 1
            else:
                kept.append(candidate)
        kept.reverse()
        self._order = kept
