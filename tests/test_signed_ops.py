"""Signed and immutable records end to end on the in-memory network, in virtual time."""

from __future__ import annotations

import cbor2
import pytest
import trio
import trio.testing

from trio_kad import CasMismatch, Config, Dht, SigningKey, StaleSequence
from trio_kad._messages import (
    ErrorCode,
    ErrorReply,
    FindValue,
    FoundValue,
    RequestFrame,
    SignedPart,
    Store,
    Stored,
)
from trio_kad._records import Record
from trio_kad._signed import content_key, signed_key
from trio_kad.testing import node_of, open_simulation

CONFIG = Config(k=5)


def _holders(sim_nodes: list[Dht], key: bytes) -> list[Dht]:
    now = trio.current_time()
    return [n for n in sim_nodes if node_of(n).records.get(key, now) is not None]


async def _ask(dht: Dht, body: Store | FindValue) -> object:
    """``body`` as a peer's request to ``dht``, answered by its server."""
    frame = RequestFrame(1, b"\xee" * 32, None, body)
    return await node_of(dht).handle_request(frame, ("10.9.9.9", 0))


async def test_a_signed_record_is_published_read_and_superseded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=161, config=CONFIG) as sim:
        key = SigningKey.generate()
        assert await sim.nodes[0].put_signed(key, {"addr": "10.0.0.1:4000"}) >= 3
        record = await sim.nodes[-1].get_signed(key.public_key)
        assert record is not None
        assert (record.value, record.seq, record.salt) == ({"addr": "10.0.0.1:4000"}, 0, b"")
        assert record.public_key == key.public_key
        # seq=None: one more than the highest found. Another salt is another record.
        await sim.nodes[3].put_signed(key, {"addr": "10.0.0.2:4000"})
        await sim.nodes[3].put_signed(key, "other", salt=b"manifest")
        for reader in sim.nodes[5:8]:
            newest = await reader.get_signed(key.public_key)
            assert newest is not None and (newest.value, newest.seq) == (
                {"addr": "10.0.0.2:4000"},
                1,
            )
        salted = await sim.nodes[9].get_signed(key.public_key, salt=b"manifest")
        assert salted is not None and (salted.value, salted.seq) == ("other", 0)
        assert await sim.nodes[9].get_signed(SigningKey.generate().public_key) is None


async def test_stale_seq_and_cas_mismatch_raise_saying_the_seq_held(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=162, config=CONFIG) as sim:
        key = SigningKey.generate()
        writer = sim.nodes[1]
        await writer.put_signed(key, "v5", seq=5)
        with pytest.raises(StaleSequence) as stale:
            await sim.nodes[2].put_signed(key, "v4", seq=4)
        assert stale.value.seq == 5
        with pytest.raises(StaleSequence):
            await sim.nodes[2].put_signed(key, "another v5", seq=5)
        assert await sim.nodes[2].put_signed(key, "v5", seq=5) >= 3  # the same: a refresh
        with pytest.raises(CasMismatch) as mismatch:
            await sim.nodes[3].put_signed(key, "v6", cas=4)
        assert mismatch.value.seq == 5
        assert await sim.nodes[3].put_signed(key, "v6", cas=5) >= 3
        newest = await sim.nodes[4].get_signed(key.public_key)
        assert newest is not None and (newest.value, newest.seq) == ("v6", 6)
        with pytest.raises(CasMismatch) as nothing:
            await writer.put_signed(key, "x", salt=b"new", cas=0)
        assert nothing.value.seq is None


async def test_two_writers_racing_with_the_same_cas_one_wins_each_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(30, seed=163, config=CONFIG) as sim:
        key = SigningKey.generate()
        await sim.nodes[0].put_signed(key, "start")
        writers = [sim.nodes[7], sim.nodes[21]]

        async def write(index: int, cas: int, outcomes: dict[int, object]) -> None:
            try:
                outcomes[index] = await writers[index].put_signed(key, f"{index}@{cas}", cas=cas)
            except CasMismatch as exc:
                outcomes[index] = exc

        for round_ in range(8):
            outcomes: dict[int, object] = {}
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write, 0, round_, outcomes)
                nursery.start_soon(write, 1, round_, outcomes)
            winners = [i for i, o in outcomes.items() if isinstance(o, int)]
            assert len(winners) == 1, outcomes
            loser = outcomes[1 - winners[0]]
            assert isinstance(loser, CasMismatch) and loser.seq == round_ + 1
            got = await sim.nodes[11].get_signed(key.public_key)
            assert got is not None and (got.value, got.seq) == (
                f"{winners[0]}@{round_}",
                round_ + 1,
            )


async def test_put_signed_checks_its_arguments_before_any_io(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(3, seed=164, config=Config(max_value_size=100)) as sim:
        dht = sim.nodes[0]
        key = SigningKey.generate()
        before = dht.statistics().transport.frames_sent
        for kwargs in (
            {"salt": b"x" * 65},
            {"seq": -1},
            {"seq": 2**63},
            {"cas": -1},
            {"seq": True},
            {"salt": "text"},
        ):
            with pytest.raises(ValueError):
                await dht.put_signed(key, "v", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit"):
            await dht.put_signed(key, "x" * 200)
        with pytest.raises(ValueError):
            await dht.get_signed(b"short")
        with pytest.raises(TypeError):
            await dht.put_signed(key.seed, "v")  # type: ignore[arg-type]
        assert dht.statistics().transport.frames_sent == before


# --- attacks at a storing node (written as a peer's STOREs) -----------------


async def test_a_storing_node_refuses_forged_miskeyed_stale_and_plain_overwrites(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(2, seed=165, config=CONFIG) as sim:
        holder = sim.nodes[1]
        key = SigningKey.generate()
        k = signed_key(key.public_key)
        value = cbor2.dumps("mine")
        good = key.sign(b"", 3, value)
        assert await _ask(holder, Store(k, value, signed=good)) == Stored()
        refused = holder.statistics().stores_refused
        forged = SignedPart(key.public_key, b"", 9, good.signature)
        attacker = SigningKey.generate()
        attacks = [
            (Store(k, cbor2.dumps("evil"), signed=forged), ErrorCode.BAD_SIGNATURE, None),
            # Signed right, but by the attacker for the owner's key: mis-keyed.
            (
                Store(k, cbor2.dumps("evil"), signed=attacker.sign(b"", 9, cbor2.dumps("evil"))),
                ErrorCode.BAD_SIGNATURE,
                None,
            ),
            (
                Store(k, cbor2.dumps("old"), signed=key.sign(b"", 2, cbor2.dumps("old"))),
                ErrorCode.STALE_SEQUENCE,
                3,
            ),
            (Store(k, cbor2.dumps("evil")), ErrorCode.PROTECTED, 3),
            (Store(k, cbor2.dumps("evil"), cache=True), ErrorCode.PROTECTED, 3),
        ]
        for store, code, seq in attacks:
            reply = await _ask(holder, store)
            assert isinstance(reply, ErrorReply) and reply.code == code and reply.seq == seq
        assert holder.statistics().stores_refused == refused + len(attacks)
        answer = await _ask(holder, FindValue(k))
        assert answer == FoundValue(value, CONFIG.expire_interval, good)


async def test_readers_take_the_newest_valid_record_whatever_holders_serve(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=166, config=CONFIG) as sim:
        key = SigningKey.generate()
        k = signed_key(key.public_key)
        await sim.nodes[0].put_signed(key, "v1", seq=1)
        await sim.nodes[0].put_signed(key, "v2", seq=2)
        holders = _holders(sim.nodes[1:], k)
        assert len(holders) >= 4
        # Hostile holders (written straight into their stores, as a liar would serve):
        # a forged higher seq, the right seq signed by another key, a stale record,
        # and an unsigned value.
        now = trio.current_time()
        attacker = SigningKey.generate()
        evil = cbor2.dumps("evil")
        stale = cbor2.dumps("v1")
        served = [
            (evil, SignedPart(key.public_key, b"", 99, bytes(64))),
            (evil, SignedPart(key.public_key, b"", 50, attacker.sign(b"", 50, evil).signature)),
            (stale, key.sign(b"", 1, stale)),
            (evil, None),
        ]
        for holder, (value, signed) in zip(holders, served, strict=False):
            store = node_of(holder).records
            await store.put(Record(k, value, now, now + 3600, signed=signed))
        for reader in sim.nodes:
            if reader in holders:
                continue
            record = await reader.get_signed(key.public_key)
            assert record is not None and (record.value, record.seq) == ("v2", 2)


async def test_signed_records_replicate_with_their_signature_and_expire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(k=5, expire_interval=7200.0, republish_interval=3600.0)
    async with open_simulation(15, seed=167, config=config) as sim:
        key = SigningKey.generate()
        k = signed_key(key.public_key)
        publisher = sim.nodes[0]
        await publisher.put_signed(key, "here")
        # Newcomers are handed the record with its signature (no private key needed).
        await sim.grow(10)
        await trio.sleep(config.replicate_interval + 60)
        now = trio.current_time()
        held = [node_of(n).records.get(k, now) for n in sim.nodes[1:]]
        copies = [r for r in held if r is not None]
        assert len(copies) >= 4
        assert all(r.signed is not None and r.signed.seq == 0 for r in copies)
        # The publisher republishes: still there after several expiry intervals.
        await trio.sleep(3 * config.expire_interval)
        record = await sim.nodes[-1].get_signed(key.public_key)
        assert record is not None and record.value == "here"
        # Without its publisher, the record expires like any pair.
        sim.stop_node(publisher)
        await trio.sleep(config.expire_interval + config.replicate_interval + 60)
        assert await sim.nodes[-1].get_signed(key.public_key) is None


async def test_immutable_records_are_checked_against_their_hash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=168, config=CONFIG) as sim:
        ident = await sim.nodes[0].put_immutable({"manifest": [1, 2, 3]})
        value = cbor2.dumps({"manifest": [1, 2, 3]})
        assert ident == content_key(value)
        assert await sim.nodes[-1].get_immutable(ident) == {"manifest": [1, 2, 3]}
        holders = _holders(sim.nodes[1:], ident)
        # A plain STORE cannot replace it at a holder...
        reply = await _ask(holders[0], Store(ident, cbor2.dumps("evil")))
        assert isinstance(reply, ErrorReply) and reply.code is ErrorCode.PROTECTED
        # ...and a holder serving another value anyway is a miss: the lookup goes on.
        now = trio.current_time()
        for liar in holders[:-1]:
            await node_of(liar).records.put(Record(ident, cbor2.dumps("evil"), now, now + 3600))
        for reader in sim.nodes[-5:]:
            if reader not in holders:
                assert await reader.get_immutable(ident) == {"manifest": [1, 2, 3]}
        assert await sim.nodes[3].get_immutable(content_key(b"\x01")) is None
        with pytest.raises(ValueError):
            await sim.nodes[3].get_immutable(b"short")


async def test_a_client_that_knows_only_a_holder_still_reaches_the_k_closest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A holder's value reply names no contacts: the lookup asks it again for them.
    async with open_simulation(6, seed=169, config=CONFIG) as sim:
        key = SigningKey.generate()
        await sim.nodes[0].put_signed(key, "v0")
        holder = _holders(sim.nodes, signed_key(key.public_key))[0]
        client = await sim.add_node(bootstrap=[holder.address], client_only=True)
        # The k closest of the six nodes all acknowledge, not just the one it knew.
        assert await client.put_signed(key, "v1") == CONFIG.k
