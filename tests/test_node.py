"""The node's own limits, each gone over: the newcomer queue and the requester memo."""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing

from trio_kad import Config, MemoryNetwork
from trio_kad._ids import Contact
from trio_kad._messages import Ping, RequestFrame
from trio_kad._node import Node
from trio_kad._records import Record


def _node(config: Config) -> Node:
    rng = random.Random(1)
    return Node(rng.randbytes(32), config, MemoryNetwork().transport(), rng=rng)


def _peers(count: int, seed: int) -> list[Contact]:
    rng = random.Random(seed)
    return [Contact(rng.randbytes(32), f"10.0.{i}.1", 4000) for i in range(count)]


def _count_updates(node: Node) -> list[bytes]:
    updates: list[bytes] = []
    update = node.table.update

    def counting_update(contact: Contact, now: float) -> Any:
        updates.append(contact.node_id)
        return update(contact, now)

    node.table.update = counting_update  # type: ignore[method-assign]
    return updates


async def test_newcomers_beyond_the_handoff_queue_are_left_to_replication(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = _node(Config(handoff_queue_size=2))
    now = trio.current_time()
    assert await node.records.put(Record(bytes(32), b"\x01", now, now + 3600))
    newcomers = _peers(5, seed=2)
    for contact in newcomers:
        node.saw_alive(contact)  # never blocks, never raises
    assert all(c.node_id in node.table for c in newcomers)
    queued = [node.newcomers_out.receive_nowait() for _ in range(2)]
    assert queued == newcomers[:2]
    assert node.newcomers_out.statistics().current_buffer_used == 0


async def test_a_full_requester_memo_is_forgotten_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = _node(Config(recent_requesters=2))
    a, b, c = _peers(3, seed=3)
    updates = _count_updates(node)

    async def request_from(peer: Contact) -> None:
        frame = RequestFrame(1, peer.node_id, peer.port, Ping())
        await node.handle_request(frame, (peer.host, 40000))

    for peer in (a, b, a):
        await request_from(peer)
    assert updates == [a.node_id, b.node_id]  # a's repeat was just seen
    await request_from(c)  # a third requester: the memo of two is full, and cleared
    await request_from(a)
    assert updates == [a.node_id, b.node_id, c.node_id, a.node_id]


async def test_a_requester_counts_again_after_the_reseen_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(requester_reseen_interval=5.0)
    node = _node(config)
    (peer,) = _peers(1, seed=4)
    updates = _count_updates(node)
    frame = RequestFrame(1, peer.node_id, peer.port, Ping())
    await node.handle_request(frame, (peer.host, 40000))
    await trio.sleep(4.0)
    await node.handle_request(frame, (peer.host, 40000))
    assert updates == [peer.node_id]
    await trio.sleep(1.0)
    await node.handle_request(frame, (peer.host, 40000))
    assert updates == [peer.node_id] * 2
