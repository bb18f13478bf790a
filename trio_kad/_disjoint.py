"""Disjoint-path lookups (S/Kademlia, Baumgart & Mies 2007, section 4.4), as a pure state machine.

``d`` plain ``Lookup``\\ s that share their claimed ids, so no node is asked by
two paths: an adversary on one path can stall that path only. The driver
(``_search``) drives it exactly as it drives one ``Lookup``.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._ids import Contact
from ._lookup import Done, Lookup, LookupStatistics, Query, Step, Wait

_WAIT = Wait()
_DONE = Done()


class DisjointLookup:
    """A lookup over ``d`` disjoint paths (S/Kademlia, Baumgart & Mies 2007, section 4.4).

    The seeds, nearest first, are dealt out to ``paths`` ``Lookup``\\ s in
    turn; each runs its own alpha-parallel lookup, and an id that one path has
    seen is never asked nor returned by another (they share their claims).
    One adversary on a path can stall that path only. The same driving
    interface as ``Lookup``; ``closest()`` merges the answered contacts of all
    paths. ``max_candidates`` and ``max_queries`` bound each path.
    """

    def __init__(
        self,
        target: bytes,
        seeds: Iterable[Contact],
        *,
        paths: int,
        k: int,
        alpha: int,
        exclude: Iterable[bytes] = (),
        max_candidates: int | None = None,
        max_queries: int | None = None,
    ) -> None:
        if paths < 1:
            raise ValueError(f"paths must be >= 1, got {paths}")
        self._target = target
        self._k = k
        self._claims: dict[bytes, int] = {}
        failed: set[Contact] = set()
        target_int = int.from_bytes(target, "big")
        ordered = sorted(seeds, key=lambda c: int.from_bytes(c.node_id, "big") ^ target_int)
        excluded = set(exclude)
        unique = list({c.node_id: c for c in ordered if c.node_id not in excluded}.values())
        self._paths = [
            Lookup(
                target,
                unique[path::paths],
                k=k,
                alpha=alpha,
                exclude=excluded,
                max_candidates=max_candidates,
                max_queries=max_queries,
                claims=self._claims,
                failed=failed,
                path=path,
            )
            for path in range(paths)
        ]
        self._turn = 0

    def next(self) -> Step:
        """The next ``Query`` of any path (taking turns), else ``Wait``, else ``Done``."""
        paths = self._paths
        waiting = False
        for offset in range(len(paths)):
            index = (self._turn + offset) % len(paths)
            step = paths[index].next()
            if isinstance(step, Query):
                self._turn = index + 1
                return step
            waiting = waiting or isinstance(step, Wait)
        return _WAIT if waiting else _DONE

    def on_reply(self, node_id: bytes, contacts: Iterable[Contact]) -> None:
        """As ``Lookup.on_reply``, on the path that asked ``node_id``."""
        self._owner(node_id).on_reply(node_id, contacts)

    def on_failure(self, node_id: bytes) -> None:
        """As ``Lookup.on_failure``, on the path that asked ``node_id``."""
        self._owner(node_id).on_failure(node_id)

    def retry(self, node_id: bytes) -> None:
        """As ``Lookup.retry``, on the path that asked ``node_id``."""
        self._owner(node_id).retry(node_id)

    def finish(self) -> None:
        """End every path now."""
        for path in self._paths:
            path.finish()

    def path_of(self, node_id: bytes) -> int | None:
        """The path that holds ``node_id`` (0..d-1), or ``None``."""
        path = self._claims.get(node_id)
        return None if path is None or path < 0 else path

    def _owner(self, node_id: bytes) -> Lookup:
        # An id no path holds goes to the first, which ignores it as any unknown id.
        return self._paths[self.path_of(node_id) or 0]

    @property
    def target(self) -> bytes:
        """The id being looked up."""
        return self._target

    @property
    def parallelism(self) -> int:
        """Most RPCs in flight per path (see ``Lookup.parallelism``); set on every path."""
        return self._paths[0].parallelism

    @parallelism.setter
    def parallelism(self, value: int) -> None:
        for path in self._paths:
            path.parallelism = value

    @property
    def in_flight(self) -> int:
        """RPCs in flight over all paths."""
        return sum(path.in_flight for path in self._paths)

    @property
    def done(self) -> bool:
        """Whether every path is over."""
        return all(path.done for path in self._paths)

    def closest(self) -> list[Contact]:
        """Up to k contacts that answered on any path, nearest to the target first."""
        target_int = int.from_bytes(self._target, "big")
        merged = [contact for path in self._paths for contact in path.closest()]
        merged.sort(key=lambda c: int.from_bytes(c.node_id, "big") ^ target_int)
        return merged[: self._k]

    def statistics(self) -> LookupStatistics:
        """The paths' counters summed (``rounds``: the most of any path)."""
        each = [path.statistics() for path in self._paths]
        return LookupStatistics(
            queries=sum(s.queries for s in each),
            replies=sum(s.replies for s in each),
            failures=sum(s.failures for s in each),
            in_flight=sum(s.in_flight for s in each),
            rounds=max(s.rounds for s in each),
            candidates=sum(s.candidates for s in each),
        )
