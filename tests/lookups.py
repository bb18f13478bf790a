"""The scripted network the lookup state machines are tested against (no I/O, no Trio)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable

from trio_kad._disjoint import DisjointLookup
from trio_kad._ids import Contact, int_to_id
from trio_kad._lookup import Done, Lookup, Query, Wait

ReplyFn = Callable[[bytes], list[Contact]]


def contact(node_id: bytes) -> Contact:
    return Contact(node_id, "10.0.0.1", 1 + int.from_bytes(node_id[:2], "big"))


def dist(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def k_closest(target: bytes, ids: Iterable[bytes], k: int) -> list[bytes]:
    return heapq.nsmallest(k, ids, key=lambda i: dist(i, target))


class World:
    """N random nodes; each answers FIND_NODE with the k closest it knows."""

    def __init__(self, rng: random.Random, n: int, k: int, known: int | None) -> None:
        self.k = k
        self.ids = [rng.getrandbits(256).to_bytes(32, "big") for _ in range(n)]
        # known=None: every node knows the whole world (full view).
        self.knows: dict[bytes, list[bytes]] = {
            i: self.ids if known is None else rng.sample(self.ids, min(known, n)) for i in self.ids
        }

    def reply_fn(self, target: bytes, requester: bytes | None = None) -> ReplyFn:
        return replier(self.knows, target, self.k, requester)


def replier(
    knows: dict[bytes, list[bytes]], target: bytes, k: int, requester: bytes | None
) -> ReplyFn:
    """Replies of the k closest each node knows; like real nodes, leave out the requester."""

    def reply(node_id: bytes) -> list[Contact]:
        known = (i for i in knows[node_id] if i != requester)
        return [contact(i) for i in k_closest(target, known, k)]

    return reply


class Trace:
    def __init__(self) -> None:
        self.queried: list[bytes] = []
        self.answered: set[bytes] = set()
        self.failed: set[bytes] = set()
        self.learned: set[bytes] = set()
        self.steps = 0


def drive(
    lookup: Lookup | DisjointLookup,
    alpha: int,
    reply: ReplyFn,
    rng: random.Random,
    failing: frozenset[bytes] = frozenset(),
    max_steps: int = 100_000,
) -> Trace:
    """Keep up to alpha queries outstanding; answer them in random order."""
    trace = Trace()
    outstanding: list[bytes] = []
    while True:
        trace.steps += 1
        assert trace.steps <= max_steps, "lookup did not terminate"
        step = lookup.next()
        assert lookup.in_flight <= alpha
        assert lookup.in_flight == len(outstanding) + isinstance(step, Query)
        if isinstance(step, Query):
            node_id = step.contact.node_id
            assert node_id not in trace.queried, "a contact was queried twice"
            trace.queried.append(node_id)
            outstanding.append(node_id)
            continue
        if isinstance(step, Done):
            assert lookup.done
            return trace
        assert isinstance(step, Wait)
        assert not lookup.done
        assert outstanding, "Wait with nothing in flight would hang the driver"
        node_id = outstanding.pop(rng.randrange(len(outstanding)))
        if node_id in failing:
            trace.failed.add(node_id)
            lookup.on_failure(node_id)
        else:
            contacts = reply(node_id)
            trace.answered.add(node_id)
            trace.learned.update(c.node_id for c in contacts)
            lookup.on_reply(node_id, contacts)


def check_result(lookup: Lookup, target: bytes, k: int, trace: Trace, exclude: set[bytes]) -> None:
    result = [c.node_id for c in lookup.closest()]
    assert len(result) <= k
    assert len(set(result)) == len(result)
    assert result == sorted(result, key=lambda i: dist(i, target))
    assert set(result) <= trace.answered
    assert not set(result) & trace.failed
    assert not set(result) & exclude
    assert not set(trace.queried) & exclude
    stats = lookup.statistics()
    assert stats.queries == len(trace.queried)
    assert stats.replies == len(trace.answered)
    assert stats.failures == len(trace.failed)


def inventor(target: bytes, count: int = 20) -> ReplyFn:
    """A hostile peer: ``count`` fresh invented ids, each nearer the target than the one asked."""
    target_int = int.from_bytes(target, "big")

    def reply(node_id: bytes) -> list[Contact]:
        nearer = dist(node_id, target) - 1
        return [contact(int_to_id(target_int ^ (nearer - j))) for j in range(count)]

    return reply
