"""Plain values converge: the newer publication wins everywhere (issue 16)."""

from __future__ import annotations

import cbor2
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_kad import Config, Dht, StoreError
from trio_kad._ids import Address, Contact, distance, key_id
from trio_kad._messages import (
    MAX_PUBLISHED,
    ErrorCode,
    ErrorReply,
    Reply,
    RequestFrame,
    Store,
    Stored,
)
from trio_kad._newer import FUTURE_TOLERANCE_MS, from_future, newer, superseded
from trio_kad._node import Node
from trio_kad._storing import store_batch
from trio_kad.testing import Simulation, node_of, open_simulation

HOUR = 3600.0

pairs = st.tuples(st.integers(0, MAX_PUBLISHED), st.binary(max_size=4))


@given(pairs, pairs)
def test_newer_picks_one_of_two_different_pairs(a: tuple[int, bytes], b: tuple[int, bytes]) -> None:
    if a == b:
        assert not newer(*a, *b)
    else:
        assert newer(*a, *b) != newer(*b, *a)


def test_newer_prefers_the_later_time_then_the_greater_bytes() -> None:
    assert newer(2, b"a", 1, b"z")
    assert newer(1, b"b", 1, b"a")
    assert not newer(1, b"a", 1, b"a")
    assert not newer(0, b"z", 1, b"a")


@pytest.mark.parametrize(
    ("refusals", "answered", "expected"),
    [(0, 0, False), (1, 1, False), (1, 2, False), (2, 2, True), (2, 4, False), (3, 5, True)],
)
def test_superseded_needs_two_refusals_and_a_majority(
    refusals: int, answered: int, expected: bool
) -> None:
    assert superseded(refusals, answered) is expected


def test_from_future_allows_an_hour_of_skew() -> None:
    assert not from_future(1000 + FUTURE_TOLERANCE_MS, 1000)
    assert from_future(1001 + FUTURE_TOLERANCE_MS, 1000)


def outsiders(sim: Simulation, key: str, k: int) -> list[Dht]:
    """The nodes not among the k closest to ``key``, farthest first."""
    ident = key_id(key)
    order = sorted(sim.nodes, key=lambda n: distance(n.node_id, ident))
    return order[k:][::-1]


def sender_and_holder(sim: Simulation) -> tuple[Node, Node, Contact]:
    """The two nodes of a two-node network, and the second as the first's contact."""
    sender, holder = (node_of(n) for n in sim.nodes)
    return sender, holder, sender.table.closest(holder.node_id, 1)[0]


def closest(sim: Simulation, key: str, k: int) -> list[Dht]:
    ident = key_id(key)
    return sorted(sim.nodes, key=lambda n: distance(n.node_id, ident))[:k]


async def test_a_later_set_wins_for_48_hours(autojump_clock: trio.testing.MockClock) -> None:
    # Node A sets X = v1, node B (outside the k closest) later sets X = v2; before
    # the fix, A's republish put v1 back at the k closest and reads flipped.
    k = 5
    async with open_simulation(30, seed=16, config=Config(k=k)) as sim:
        a, b = outsiders(sim, "X", k)[:2]
        await a.set("X", "v1")
        for reader in sim.nodes[:5]:
            assert await reader.get("X") == "v1"  # cached copies of v1 on the way
        await trio.sleep(HOUR)
        await b.set("X", "v2")
        readers = [a, b, *sim.nodes[:6], sim.nodes[-1]]
        for hour in range(48):
            await trio.sleep(HOUR)
            for reader in readers:
                assert await reader.get("X") == "v2", (hour, reader)
        # A's republish heard SUPERSEDED from the k closest: it stopped.
        assert node_of(a).records.get(key_id("X"), trio.current_time()) is None


async def test_holders_keep_the_newer_pair(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulation(2, seed=17, config=Config(k=5)) as sim:
        sender, holder, to = sender_and_holder(sim)
        key = key_id("kept")
        now = holder.wall_ms()

        async def store(value: str, published: int, *, cache: bool = False) -> Reply | None:
            body = Store(key, cbor2.dumps(value), cache=cache, published=published)
            return await sender.rpc(to, body)

        assert await store("b", now - 10) == Stored()
        # Older, or as old with smaller bytes (and so a peer that sends no time): refused.
        for value, published in [("z", now - 20), ("a", now - 10), ("z", 0)]:
            assert await store(value, published) == ErrorReply(
                ErrorCode.SUPERSEDED, "a newer pair is held", published=now - 10
            )
        assert sim.nodes[1].get_local("kept") == "b"
        assert await store("c", now - 10) == Stored()  # as old, greater bytes: everywhere alike
        assert sim.nodes[1].get_local("kept") == "c"
        assert await store("d", now - 5, cache=True) == Stored()  # a cache copy: not a replica
        assert sim.nodes[1].get_local("kept") == "c"
        refused = await store("e", now + FUTURE_TOLERANCE_MS + 60_000)
        assert isinstance(refused, ErrorReply) and refused.code is ErrorCode.MALFORMED
        assert await store("e", now) == Stored()
        assert sim.nodes[1].get_local("kept") == "e"
        # The same value from an earlier publication only refreshes it.
        assert await store("e", now - 1000) == Stored()
        kept = holder.records.get(key, trio.current_time())
        assert kept is not None and kept.published == now


async def test_a_newer_cache_copy_replaces_an_older_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(2, seed=18, config=Config(k=5)) as sim:
        sender, _, to = sender_and_holder(sim)
        key = key_id("cached")
        for value, published in [("old", 10), ("new", 20), ("older", 5)]:
            body = Store(key, cbor2.dumps(value), cache=True, published=published)
            assert await sender.rpc(to, body) == Stored()
        assert sim.nodes[1].get_local("cached") == "new"


async def test_stale_cached_copies_do_not_hide_a_newer_set(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Every node but the k closest holds a cached copy of an older value: a
    # reader that meets one, or holds one, still returns the newer value.
    k = 3
    async with open_simulation(25, seed=19, config=Config(k=k)) as sim:
        writer = outsiders(sim, "C", k)[0]
        await writer.set("C", "new")
        key = key_id("C")
        sender = node_of(writer)
        for dht in outsiders(sim, "C", k):
            if dht is not writer:
                to = sender.table.closest(dht.node_id, 1)[0]
                old = Store(key, cbor2.dumps("old"), cache=True, published=1)
                assert await sender.rpc(to, old) == Stored()
        for dht in sim.nodes:
            assert await dht.get("C") == "new", dht


async def test_a_lying_peer_cannot_make_a_publishers_pair_vanish(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two of the k closest answer every STORE with SUPERSEDED, naming a pair
    # newer than anything; the other three are honest, so the publisher keeps
    # republishing and readers keep reading its value.
    k = 5
    async with open_simulation(30, seed=20, config=Config(k=k)) as sim:
        for liar in closest(sim, "L", k)[:2]:
            node = node_of(liar)
            handle = node.handle_request

            async def lie(frame: RequestFrame, remote: Address, handle=handle) -> Reply:  # type: ignore[no-untyped-def]
                if isinstance(frame.body, Store):
                    return ErrorReply(
                        ErrorCode.SUPERSEDED, "a newer pair is held", published=MAX_PUBLISHED
                    )
                return await handle(frame, remote)

            monkeypatch.setattr(node.transport, "_handler", lie)
        publisher = outsiders(sim, "L", k)[0]
        await publisher.set("L", "mine")
        for _ in range(3):
            await trio.sleep(24 * HOUR)  # a republish each day
            own = node_of(publisher).records.get(key_id("L"), trio.current_time())
            assert own is not None and own.publisher
            assert await sim.nodes[-1].get("L") == "mine"
            assert await publisher.get("L") == "mine"


async def test_last_writer_by_the_publishers_clocks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A's clock runs ten minutes ahead: B's set five minutes later is older by the
    # clocks, so it is refused everywhere (StoreError) and reads keep A's value.
    k = 5
    async with open_simulation(30, seed=21, config=Config(k=k)) as sim:
        a, b = outsiders(sim, "S", k)[:2]
        fast = node_of(a).wall_clock
        node_of(a).wall_clock = lambda: fast() + 600
        await a.set("S", "ahead")
        await trio.sleep(300)
        with pytest.raises(StoreError):
            await b.set("S", "behind")
        assert node_of(b).records.get(key_id("S"), trio.current_time()) is None
        for _ in range(48):
            await trio.sleep(HOUR)
            for reader in (a, b, sim.nodes[0], sim.nodes[-1]):
                assert await reader.get("S") == "ahead"


async def test_a_peer_holding_a_newer_pair_counts_as_holding_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Replication from a holder that missed the later set: the peer refuses the
    # older pair (SUPERSEDED) but holds the key, so it needs no stand-in.
    async with open_simulation(2, seed=22, config=Config(k=5)) as sim:
        sender, _, to = sender_and_holder(sim)
        newer_pair = Store(key_id("R"), cbor2.dumps("new"), 3600, published=200)
        assert await sender.rpc(to, newer_pair) == Stored()
        older = Store(key_id("R"), cbor2.dumps("old"), 3600, published=100)
        other = Store(key_id("O"), cbor2.dumps("o"), 3600, published=100)
        assert await store_batch(sender, to, [older, other]) == 2
        assert await store_batch(sender, to, [older]) == 1
        assert sim.nodes[1].get_local("R") == "new"
