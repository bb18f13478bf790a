"""The node's table upkeep: known senders, the requester memo, the newcomer queue, their limits."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from trio_kad import Config, MemoryNetwork, PeerMisbehaved, TransportError
from trio_kad._ids import Address, Contact
from trio_kad._memory import MemoryTransport
from trio_kad._messages import (
    FindNode,
    Nodes,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    Request,
    RequestFrame,
)
from trio_kad._node import Node
from trio_kad._records import Record
from trio_kad._routing import PingOldest
from trio_kad.testing import node_of, open_simulation

RESEEN = Config().requester_reseen_interval


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


# --- senders of requests (paper 2.2), in a running network -----------------------------


async def test_a_known_sender_keeps_its_contact_object(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(30, seed=35) as sim:
        node = node_of(sim.nodes[0])
        known = node.table.contacts()[0]
        bucket = node.table.bucket_for(known.node_id)
        # Past the interval within which a repeated request is not recorded again.
        await trio.sleep(RESEEN)
        frame = RequestFrame(1, known.node_id, known.port, Ping())
        await node.handle_request(frame, (known.host, 40000))
        assert node.table.get(known.node_id) is known
        # Seen last: the most recently seen of its bucket.
        assert bucket.contacts[-1] is known


async def test_a_burst_of_requests_updates_the_table_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(30, seed=37) as sim:
        node = node_of(sim.nodes[0])
        await trio.sleep(RESEEN)
        updates = _count_updates(node)
        known = node.table.contacts()[0]
        frame = RequestFrame(1, known.node_id, known.port, FindNode(bytes(32)))
        for _ in range(3):
            await node.handle_request(frame, (known.host, 40000))
        assert updates == [known.node_id]
        # From another address, it counts again (and is checked as before).
        moved = RequestFrame(2, known.node_id, known.port + 1, Ping())
        await node.handle_request(moved, (known.host, 40000))
        assert updates == [known.node_id] * 2
        # Once the interval is over, it counts again.
        await trio.sleep(RESEEN)
        await node.handle_request(frame, (known.host, 40000))
        assert updates == [known.node_id] * 3
        # And at once after an RPC to it failed: it may have left the table.
        await node.handle_request(frame, (known.host, 40000))
        assert updates == [known.node_id] * 3
        sim.stop_node(next(d for d in sim.nodes if d.node_id == known.node_id))
        await trio.testing.wait_all_tasks_blocked()
        assert await node.rpc(known, Ping()) is None
        await node.handle_request(frame, (known.host, 40000))
        assert updates == [known.node_id] * 4


async def test_a_sender_at_a_new_address_is_still_checked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(30, seed=36) as sim:
        node = node_of(sim.nodes[0])
        known = node.table.contacts()[0]
        # Another port under a known id while the known one answers: refused.
        frame = RequestFrame(1, known.node_id, known.port + 1, FindNode(bytes(32)))
        reply: Any = await node.handle_request(frame, (known.host, 40000))
        assert reply.contacts
        assert node.table.get(known.node_id) is known
        # A stranger is added (or waits for a ping), as before.
        stranger = Contact(random.Random(36).randbytes(32), "127.0.0.1", 4242)
        frame = RequestFrame(2, stranger.node_id, stranger.port, Ping())
        await node.handle_request(frame, ("127.0.0.1", 40000))
        result = node.table.update(stranger, trio.current_time())
        assert stranger.node_id in node.table or isinstance(result, PingOldest)


# --- forged contacts (issue 14, hole 1): a peer answers for its own address only ------


_GARBAGE = "garbage"
_SILENT = "silent"


class _Scripted(MemoryTransport):
    """A network the test scripts: who speaks at each address, and what it answers.

    An address maps to the id that answers there (with ``replies[address]`` or
    an empty ``Nodes``), to ``_GARBAGE`` (the peer breaks the protocol) or to
    ``_SILENT``; any other address refuses the connection.
    """

    def __init__(self) -> None:
        super().__init__(MemoryNetwork())
        self.speakers: dict[Address, bytes | str] = {}
        self.replies: dict[Address, Reply] = {}
        self.delays: dict[Address, float] = {}
        """Seconds a reply from an address takes (none by default)."""
        self.dialed: list[Address] = []

    async def _request(
        self, address: Address, sender_id: bytes, sender_port: int | None, body: Request
    ) -> ReplyFrame:
        self.dialed.append(address)
        speaker = self.speakers.get(address)
        if speaker == _SILENT:
            await trio.sleep_forever()
        if speaker == _GARBAGE:
            raise PeerMisbehaved("undecodable reply")
        if not isinstance(speaker, bytes):
            raise TransportError("connection refused")
        await trio.sleep(self.delays.get(address, 0.0))
        reply = Pong() if isinstance(body, Ping) else self.replies.get(address, Nodes(()))
        return ReplyFrame(1, speaker, reply)


def _scripted_node(config: Config, peers: list[Contact]) -> tuple[Node, _Scripted]:
    """A node knowing ``peers``, each answering at its own address."""
    transport = _Scripted()
    rng = random.Random(1)
    node = Node(rng.randbytes(32), config, transport, rng=rng)
    for peer in peers:
        transport.speakers[peer.address] = peer.node_id
        node.saw_alive(peer)
    return node, transport


def _forged(honest: Contact, address: Address) -> Contact:
    return Contact(honest.node_id, *address)


@pytest.mark.parametrize("elsewhere", ["another id", _GARBAGE, _SILENT, "refused"])
async def test_a_named_contact_at_the_wrong_address_costs_the_honest_id_nothing(
    autojump_clock: trio.testing.MockClock, elsewhere: str
) -> None:
    peers = _peers(3, seed=40)
    node, transport = _scripted_node(Config(), peers)
    honest, other, _ = peers
    wrong = ("10.9.9.9", 4000)
    if elsewhere == "another id":
        wrong = other.address  # a live node, answering as itself
    elif elsewhere != "refused":
        transport.speakers[wrong] = elsewhere
    for _ in range(Config().max_failures + 1):
        assert await node.rpc(_forged(honest, wrong), Ping()) is None
    now = trio.current_time()
    assert not node.table.banned(honest.node_id, now)
    assert node.table.get(honest.node_id) == honest
    assert node.table.info(honest.node_id).failures == 0  # type: ignore[union-attr]
    assert await node.rpc(honest, Ping()) == Pong()


async def test_a_dead_named_address_does_not_evict_even_when_a_replacement_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node, transport = _scripted_node(Config(k=2, alpha=2), _peers(40, seed=41))
    bucket = next(b for b in node.table.buckets if b.full and b.replacements)
    honest = bucket.contacts[0]
    assert await node.rpc(_forged(honest, ("10.9.9.9", 4000)), Ping()) is None
    assert node.table.get(honest.node_id) == honest
    # Failures at the address the table holds evict it for the replacement: two in a
    # row, so that one lost reply does not (paper section 2.2 keeps old contacts).
    del transport.speakers[honest.address]
    assert await node.rpc(honest, Ping()) is None
    assert node.table.get(honest.node_id) == honest
    assert await node.rpc(honest, Ping()) is None
    assert honest.node_id not in node.table


async def test_the_speaker_at_the_tables_own_address_answers_for_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = _peers(3, seed=42)
    node, transport = _scripted_node(Config(), peers)
    liar, moved, _ = peers
    # Garbage from where the table holds it: that id is the one speaking there.
    transport.speakers[liar.address] = _GARBAGE
    assert await node.rpc(liar, Ping()) is None
    assert node.table.banned(liar.node_id, trio.current_time())
    # Another id at the address the table holds: that pairing is wrong, and
    # dropped, but its id did nothing wrong and may come back at once.
    transport.speakers[moved.address] = random.Random(42).randbytes(32)
    assert await node.rpc(moved, Ping()) is None
    assert moved.node_id not in node.table
    assert not node.table.banned(moved.node_id, trio.current_time())
    node.saw_alive(moved)
    assert moved.node_id in node.table


async def test_a_lookup_through_a_liar_bans_and_evicts_nobody(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = _peers(40, seed=43)
    node, transport = _scripted_node(Config(k=4), peers)
    liar = peers[0]
    target = liar.node_id
    # The others first asked have left: the liar's referrals are all that is left to ask.
    gone = {c.node_id for c in node.table.closest(target, 4)} - {liar.node_id}
    for contact in node.table.contacts():
        if contact.node_id in gone:
            del transport.speakers[contact.address]
    honest = [c for c in node.table.contacts() if c.node_id not in gone | {liar.node_id}]
    # The liar names contacts the table holds, at addresses where they are not.
    forged = [_forged(c, (f"10.8.{i}.1", 4000)) for i, c in enumerate(honest[:4])]
    transport.replies[liar.address] = Nodes(tuple(forged))
    for i, contact in enumerate(forged):
        transport.speakers[contact.address] = [_SILENT, _GARBAGE][i % 2]
    await node.lookup(target)
    assert set(transport.dialed) >= {c.address for c in forged}
    now = trio.current_time()
    for contact in honest:
        assert not node.table.banned(contact.node_id, now)
        assert node.table.get(contact.node_id) == contact


# --- round trips (issue 15): per contact, backing off, from the first ping --------------


async def test_near_and_far_contacts_get_timeouts_of_their_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = _peers(2, seed=44)
    node, transport = _scripted_node(Config(), peers)
    near, far = peers
    transport.delays[near.address] = 0.01
    transport.delays[far.address] = 0.6
    for _ in range(10):
        assert await node.rpc(near, Ping(), node.rtt.timeout(near)) == Pong()
    # Never heard, the far contact gets the node-wide estimate (the near one's) and
    # misses it; each timeout doubles its next one until its reply comes in time.
    replies = []
    for _ in range(6):
        replies.append(await node.rpc(far, Ping(), node.rtt.timeout(far)))
    assert replies == [None, None, Pong(), Pong(), Pong(), Pong()]
    assert node.rtt.timeout(near) < 0.3 < 0.6 < node.rtt.timeout(far) <= Config().rpc_timeout
    assert node.rtt.hedge_delay(near) < node.rtt.hedge_delay(far)
    # Two timeouts with nothing waiting to replace it: the far contact stays.
    assert node.table.get(far.node_id) == far


async def test_the_bootstrap_ping_is_the_joins_first_round_trip_sample(
    autojump_clock: trio.testing.MockClock,
) -> None:
    peers = _peers(1, seed=45)
    node, transport = _scripted_node(Config(), [])
    transport.speakers[peers[0].address] = peers[0].node_id
    transport.delays[peers[0].address] = 0.1
    assert node.rtt.timeout(peers[0]) == Config().rpc_timeout  # nothing known yet
    assert await node.ping_address(peers[0].address) == peers[0]
    estimator = node.rtt.get(peers[0])
    assert estimator is not None and estimator.srtt == pytest.approx(0.1)
    # Any other contact of the join's lookup now waits a fraction of rpc_timeout.
    assert node.rtt.timeout(_peers(2, seed=46)[1]) < Config().rpc_timeout / 2
