"""Serving the RPCs: what a node keeps from a STORE, and what it refuses."""

from __future__ import annotations

import random

import cbor2
import pytest
import trio
import trio.testing

from trio_kad import Config, MemoryNetwork
from trio_kad._ids import distance, key_id
from trio_kad._messages import (
    ErrorCode,
    ErrorReply,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)
from trio_kad._node import Node
from trio_kad.testing import node_of, open_simulation

PEER = random.Random(50).randbytes(32)


def _node() -> Node:
    rng = random.Random(51)
    return Node(rng.randbytes(32), Config(), MemoryNetwork().transport(), rng=rng)


@pytest.mark.parametrize("value", [b"\xff\xff", b"", cbor2.dumps(1) + b"\x00"])
async def test_a_value_no_setter_could_make_is_refused_as_malformed(
    autojump_clock: trio.testing.MockClock, value: bytes
) -> None:
    node = _node()
    key = key_id("poison")
    frame = RequestFrame(1, PEER, None, Store(key, value))
    reply = await node.handle_request(frame, ("10.0.0.1", 0))
    assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.MALFORMED
    assert node.records.get(key, trio.current_time()) is None
    assert node.counters.stores_refused == 1


async def test_a_batch_refuses_only_its_undecodable_pairs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = _node()
    good, bad = key_id("good"), key_id("bad")
    pairs = (Store(good, cbor2.dumps("fine")), Store(bad, b"\xff\xff"))
    frame = RequestFrame(1, PEER, None, StoreMany(pairs))
    reply = await node.handle_request(frame, ("10.0.0.1", 0))
    assert reply == StoredMany((0, ErrorCode.MALFORMED.value))
    now = trio.current_time()
    assert node.records.get(good, now) is not None
    assert node.records.get(bad, now) is None


async def test_the_closest_nodes_refuse_a_poisoned_store_over_the_wire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(k=5)
    async with open_simulation(20, seed=52, config=config) as sim:
        attacker = node_of(sim.nodes[0])
        key = key_id("poison")
        closest = sorted(sim.nodes[1:], key=lambda n: distance(n.node_id, key))[: config.k]
        for holder in closest:
            frame = await attacker.transport.request(
                holder.address, attacker.node_id, attacker.port, Store(key, b"\xff\xff")
            )
            assert frame.body == ErrorReply(ErrorCode.MALFORMED, "value is not valid CBOR")
            assert holder.get_local("poison") is None
        # The same peer storing a value a setter could make is served as before.
        honest = Store(key, cbor2.dumps("cure"))
        holder = closest[0]
        frame = await attacker.transport.request(
            holder.address, attacker.node_id, attacker.port, honest
        )
        assert frame.body == Stored()
        assert holder.get_local("poison") == "cure"
