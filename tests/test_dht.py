"""The DHT end to end on the in-memory network, in virtual time."""

from __future__ import annotations

import contextlib
import math
import random

import cbor2
import pytest
import trio
import trio.testing

from trio_kad import (
    BootstrapError,
    Config,
    Dht,
    DhtError,
    MemoryNetwork,
    ProtocolError,
    QuorumError,
    StoreError,
    open_dht,
)
from trio_kad._ids import distance, id_to_int, key_id, random_id_at_distance
from trio_kad._messages import FindValue, Ping, RequestFrame, Store, Stored
from trio_kad._records import Record
from trio_kad.testing import node_of, open_simulation


async def test_two_nodes_store_and_find(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(1))
    async with open_dht(transport=network.transport()) as first:
        async with open_dht(bootstrap=[first.address], transport=network.transport()) as second:
            assert await first.set("beep", "boop") == 2
            assert await second.get("beep") == "boop"
            assert second.get_local("beep") == "boop"
            assert await second.get("missing") is None
            assert len(first.node_id) == 32
            assert first.node_id != second.node_id


async def test_first_node_stores_locally(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(2))
    async with open_dht(transport=network.transport()) as alone:
        assert await alone.set(b"\x00bytes key", [1, 2, {"a": b"b"}]) == 1
        assert await alone.get(b"\x00bytes key") == [1, 2, {"a": b"b"}]


async def test_values_are_validated_before_any_io(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(3))
    config = Config(max_value_size=100)
    async with open_dht(transport=network.transport(), config=config) as dht:
        before = dht.statistics().transport.frames_sent
        with pytest.raises(ValueError, match="None"):
            await dht.set("k", None)
        with pytest.raises(ValueError, match="limit"):
            await dht.set("k", "x" * 200)
        with pytest.raises(ValueError, match="CBOR"):
            await dht.set("k", object())
        with pytest.raises(TypeError):
            await dht.set(42, "v")  # type: ignore[arg-type]
        assert dht.statistics().transport.frames_sent == before


async def test_bootstrap_error_names_the_peers(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(4))
    with pytest.raises(BootstrapError, match=r"127\.0\.0\.1:9"):
        async with open_dht(bootstrap=["127.0.0.1:9"], transport=network.transport()):
            pytest.fail("should not get here")


async def test_bootstrap_error_on_silent_peer(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(5))
    async with open_dht(transport=network.transport()) as silent:
        network.set_mode(silent.address, "drop")
        start = trio.current_time()
        with pytest.raises(BootstrapError):
            async with open_dht(bootstrap=[silent.address], transport=network.transport()):
                pass
        # One RPC timeout, not the whole bootstrap budget.
        assert trio.current_time() - start == pytest.approx(Config().rpc_timeout)


async def test_user_exception_is_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(6))
    with pytest.raises(KeyError):
        async with open_dht(transport=network.transport()):
            raise KeyError("mine")


async def test_leaving_closes_everything(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(7))
    async with open_dht(transport=network.transport()) as first:
        async with open_dht(bootstrap=[first.address], transport=network.transport()):
            assert len(network.addresses()) == 2
        assert len(network.addresses()) == 1
    assert network.addresses() == []


async def test_store_error_when_nobody_accepts(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork(rng=random.Random(8))
    async with (
        open_dht(transport=network.transport()) as server,
        open_dht(
            bootstrap=[server.address], transport=network.transport(), client_only=True
        ) as client,
    ):
        network.set_mode(server.address, "refuse")
        with pytest.raises(StoreError):
            await client.set("k", "v")


async def _fill_from_other_peers(dht: Dht, origins: int, per_origin: int) -> None:
    """STOREs from ``origins`` addresses, each up to its quota, as a transport delivers them."""
    node = node_of(dht)
    rng = random.Random(9)
    for origin in range(origins):
        for index in range(per_origin):
            key = key_id(f"theirs {origin} {index}")
            frame = RequestFrame(index, rng.randbytes(32), None, Store(key, cbor2.dumps(index)))
            assert await node.handle_request(frame, (f"10.0.{origin}.1", 0)) == Stored()


async def test_own_pairs_are_kept_and_republished_in_a_store_others_filled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(
        max_records=6, max_records_per_ip=2, per_ip_exempt=(), republish_interval=3000.0
    )
    async with open_simulation(5, seed=19, config=config) as sim:
        dht = sim.nodes[0]
        await _fill_from_other_peers(dht, origins=3, per_origin=2)
        assert len(node_of(dht).records) == config.max_records
        assert await dht.set("mine", "kept") >= 1
        record = node_of(dht).records.get(key_id("mine"), trio.current_time())
        assert record is not None and record.publisher
        # Past its first expiry: still held here, and elsewhere, because it was republished.
        await trio.sleep(config.expire_interval + 1)
        assert dht.get_local("mine") == "kept"
        assert [n.get_local("mine") for n in sim.nodes[1:]].count("kept") >= 1


async def test_set_raises_when_own_pairs_fill_the_store(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(max_records=2, max_records_per_ip=2, per_ip_exempt=())
    async with open_simulation(3, seed=20, config=config) as sim:
        dht = sim.nodes[0]
        await _fill_from_other_peers(dht, origins=1, per_origin=2)
        await dht.set("one", 1)
        await dht.set("two", 2)
        with pytest.raises(StoreError):
            await dht.set("three", 3)
        assert dht.get_local("three") is None
        assert [dht.get_local("one"), dht.get_local("two")] == [1, 2]


async def test_client_only_nodes_stay_out_of_routing_tables(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(10, seed=9) as sim:
        assert sim.network is not None
        async with open_dht(
            bootstrap=[sim.nodes[0].address],
            transport=sim.network.transport(),
            client_only=True,
        ) as client:
            with pytest.raises(RuntimeError):
                _ = client.address
            assert await client.set("k", "v") >= 1
            assert await client.get("k") == "v"
            for node in sim.nodes:
                assert client.node_id not in node_of(node).table


async def test_network_of_300_finds_every_key_from_every_node(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rng = random.Random(300)
    async with open_simulation(300, seed=300) as sim:
        keys = [f"key-{i}" for i in range(5)]
        for key in keys:
            writer = rng.choice(sim.nodes)
            assert await writer.set(key, key.upper()) == sim.config.k
        rounds: list[int] = []
        for key in keys:
            for node in sim.nodes:
                assert await node.get(key) == key.upper()
                report = node.last_lookup
                if report is not None and report.target == key_id(key):
                    rounds.append(report.rounds)
        assert rounds, "every get was served locally?"
        assert max(rounds) <= math.ceil(math.log2(300))
        mean = sum(rounds) / len(rounds)
        assert mean <= math.log2(300) / 2


async def test_values_land_on_the_k_closest(autojump_clock: trio.testing.MockClock) -> None:
    config = Config(k=5)
    async with open_simulation(60, seed=11, config=config) as sim:
        await sim.nodes[17].set("placed", 1)
        ident = key_id("placed")
        closest = sorted(sim.nodes, key=lambda n: distance(n.node_id, ident))[: config.k]
        for node in closest:
            assert node.get_local("placed") == 1


async def test_find_value_caches_at_closest_node_without_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(k=3)
    async with open_simulation(40, seed=12, config=config) as sim:
        await sim.nodes[0].set("popular", "yes")
        holders = {n.node_id for n in sim.nodes if n.get_local("popular") is not None}
        ident = key_id("popular")
        reader = max(
            (n for n in sim.nodes if n.node_id not in holders),
            key=lambda n: distance(n.node_id, ident),
        )
        assert await reader.get("popular") == "yes"
        await trio.sleep(5)  # the cache STORE runs in the background
        now_holding = {n.node_id for n in sim.nodes if n.get_local("popular") is not None}
        assert len(now_holding - holders) == 1


async def test_lookup_never_exceeds_alpha_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(13), latency=0.01, jitter=0.02)
    config = Config(alpha=3)
    async with open_simulation(80, seed=13, config=config, network=network) as sim:
        await sim.nodes[0].set("alpha", 1)
        reader = sim.nodes[-1]
        transport = node_of(reader).transport
        in_flight = peak = 0
        original = transport.request

        async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal in_flight, peak
            if not isinstance(args[3], FindValue):  # eviction pings are not the lookup's
                return await original(*args, **kwargs)
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await original(*args, **kwargs)
            finally:
                in_flight -= 1

        transport.request = counting  # type: ignore[method-assign]
        for i in range(20):
            await reader.get(f"absent-{i}")
        assert peak == config.alpha


async def test_value_lookup_does_not_wait_for_dead_contacts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(14), latency=0.005)
    config = Config(k=8, rpc_timeout=2.0)
    async with open_simulation(100, seed=14, config=config, network=network) as sim:
        await sim.nodes[0].set("survivor", 7)
        ident = key_id("survivor")
        holders = [n for n in sim.nodes if n.get_local("survivor") is not None]
        # Silence a third of the nodes that do not hold the value.
        others = [n for n in sim.nodes if n not in holders]
        for node in others[: len(sim.nodes) // 3]:
            network.set_mode(node.address, "drop")
        reader = others[-1]
        start = trio.current_time()
        assert await reader.get("survivor") == 7
        report = reader.last_lookup
        assert report is not None and report.target == ident
        # Found without running out the clock on every dead contact asked.
        assert trio.current_time() - start < (report.failures + 1) * config.rpc_timeout


async def test_dead_contacts_cost_an_adaptive_timeout_not_rpc_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(25), latency=0.005)
    config = Config(k=8)
    async with open_simulation(90, seed=25, config=config, network=network) as sim:
        keys = [f"key-{i}" for i in range(20)]
        for key in keys:
            await sim.nodes[0].set(key, key)
        rng = random.Random(25)
        dead = rng.sample(sim.nodes[1:], 30)
        for node in dead:
            network.set_mode(node.address, "drop")
        alive = [n for n in sim.nodes if n not in dead]
        failures = 0
        for key in keys:
            reader = rng.choice(alive)
            start = trio.current_time()
            assert await reader.get(key) == key
            report = reader.last_lookup
            failures += 0 if report is None else report.failures
            # A silent contact holds a lookup slot for the adaptive timeout only.
            assert trio.current_time() - start < config.rpc_timeout
        assert failures > 0


async def test_value_held_by_the_first_contact_costs_one_rpc(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork(rng=random.Random(25), latency=0.005)
    async with open_simulation(40, seed=25, network=network) as sim:
        await sim.nodes[0].set("popular", 1)
        queries = []
        for reader in sim.nodes[1:]:
            if reader.get_local("popular") is None:
                assert await reader.get("popular") == 1
                report = reader.last_lookup
                assert report is not None
                queries.append(report.queries)
        # k = 20 of 40 nodes hold it: the contact asked first nearly always does.
        assert queries and max(queries) == 1


@pytest.mark.parametrize("lost", [0, 1, None])
async def test_full_bucket_pings_its_oldest_before_evicting(
    autojump_clock: trio.testing.MockClock, lost: int | None
) -> None:
    # ``lost``: pings to the oldest that get no answer (None: all of them).
    config = Config(k=2, alpha=1)
    network = MemoryNetwork(rng=random.Random(15))
    async with open_simulation(30, seed=15, config=config, network=network) as sim:
        node = node_of(sim.nodes[0])
        bucket = next(b for b in node.table.buckets if b.low != 0 and len(b.contacts) == 2)
        oldest = bucket.contacts[0]
        pings = 0
        original = node.transport.request

        async def losing(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal pings
            if args[0] == oldest.address and isinstance(args[3], Ping):
                pings += 1
                if lost is None or pings <= lost:
                    await trio.sleep_forever()
            return await original(*args, **kwargs)

        node.transport.request = losing  # type: ignore[method-assign]
        # Past the liveness window, a newcomer for the same bucket must trigger a ping.
        await trio.sleep(config.liveness_window + 1)
        newcomer_id = random_id_at_distance(node.node_id, bucket.low, bucket.high, sim.rng)
        async with open_dht(
            bootstrap=[sim.nodes[0].address],
            node_id=newcomer_id,
            transport=network.transport(),
            config=config,
        ):
            await trio.sleep(2 * config.rpc_timeout + 1)
            # One lost ping is asked again: a long-lived contact keeps its place.
            assert pings == (1 if lost == 0 else 2)
            if lost is not None:
                assert oldest.node_id in node.table
                assert newcomer_id not in node.table
                assert any(
                    c.node_id == newcomer_id
                    for c in node.table.bucket_for(newcomer_id).replacements
                )
            else:
                assert oldest.node_id not in node.table
                assert newcomer_id in node.table


async def test_one_failure_does_not_evict_without_a_replacement(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(k=20, max_failures=3)
    network = MemoryNetwork(rng=random.Random(16))
    async with open_simulation(5, seed=16, config=config, network=network) as sim:
        node = node_of(sim.nodes[0])
        victim = node.table.contacts()[0]
        network.set_mode(victim.address, "drop")
        for attempt in range(config.max_failures):
            assert victim.node_id in node.table, attempt
            assert await node.rpc(victim, Ping()) is None
        assert victim.node_id not in node.table


async def test_a_peer_answering_with_another_id_drops_that_pairing_and_bans_nobody(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(10, seed=17) as sim:
        assert sim.network is not None
        node = node_of(sim.nodes[0])
        victim = sim.nodes[5]
        contact = node.table.get(victim.node_id)
        assert contact is not None
        sim.stop_node(victim)
        await trio.sleep(1)
        # Someone else takes over the address and answers under its own id.
        async with open_dht(port=contact.port, transport=sim.network.transport()) as newcomer:
            assert await node.rpc(contact, Ping()) is None
            assert contact.node_id not in node.table
            # Neither id did anything wrong: the old one may come back (from where it
            # moved to), the one speaking there is who it says it is.
            for node_id in (contact.node_id, newcomer.node_id):
                assert not node.table.banned(node_id, trio.current_time())
            node.saw_alive(contact)
            assert contact.node_id in node.table


@pytest.mark.parametrize("poisoned", [2, 3])
async def test_a_poisoned_copy_is_its_holders_miss_and_bans_nobody(
    autojump_clock: trio.testing.MockClock, poisoned: int
) -> None:
    async with open_simulation(30, seed=18, config=Config(k=3)) as sim:
        await sim.nodes[0].set("target", "real")
        ident = key_id("target")
        holders = [n for n in sim.nodes if n.get_local("target") is not None]
        assert len(holders) == 3
        holders.sort(key=lambda n: distance(n.node_id, ident))
        now = trio.current_time()
        # Copies replaced by bytes that are not CBOR, the closest first (as an old
        # data_dir could hold them: a STORE of such bytes is refused now).
        for holder in holders[:poisoned]:
            await node_of(holder).records.put(Record(ident, b"\xff\xfe", now, now + 3600))
        expected = "real" if poisoned < len(holders) else None
        readers = [n for n in sim.nodes if n not in holders and n is not sim.nodes[0]]
        for reader in [*readers[:5], holders[0]]:
            assert await reader.get("target") == expected
            now = trio.current_time()
            assert not any(node_of(reader).table.banned(h.node_id, now) for h in holders)
        with pytest.raises(ProtocolError):
            holders[0].get_local("target")


def test_values_decode_without_running_parsers() -> None:
    import datetime

    import cbor2

    from trio_kad._codec import decode_value

    when = datetime.datetime(2002, 3, 7, tzinfo=datetime.UTC)
    assert decode_value(cbor2.dumps({"when": when, "set": {1, 2}})) == {"when": when, "set": {1, 2}}
    regex = decode_value(cbor2.dumps(cbor2.CBORTag(35, "(a+)+$")))
    assert regex == cbor2.CBORTag(35, "(a+)+$")
    mime = decode_value(cbor2.dumps(cbor2.CBORTag(36, "Content-Type: text/plain\n\nhi")))
    assert isinstance(mime, cbor2.CBORTag) and mime.tag == 36
    for bad in (b"", b"\xff", cbor2.dumps(1) + b"\x00"):
        with pytest.raises(ValueError):
            decode_value(bad)


async def test_a_quorum_get_returns_only_a_value_enough_holders_agree_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(k=5)
    async with open_simulation(30, seed=47, config=config) as sim:
        assert sim.network is not None
        # A client-only setter: the k closest hold the pair, and nobody else.
        async with open_dht(
            bootstrap=[sim.nodes[0].address],
            transport=sim.network.transport(),
            config=config,
            client_only=True,
            node_id=bytes(32),
            rng=random.Random(47),
        ) as setter:
            assert await setter.set("voted", "honest") == 5
        holders = [n for n in sim.nodes if n.get_local("voted") is not None]
        assert len(holders) == 5
        now = trio.current_time()
        forged = cbor2.dumps("forged")  # a valid value, just not the one set
        for holder in holders[:2]:
            await node_of(holder).records.put(Record(key_id("voted"), forged, now, now + 3600))
        reader = next(n for n in sim.nodes if n not in holders)
        for quorum in (4, 6):
            with pytest.raises(QuorumError, match="only 3 holders agreed") as caught:
                await reader.get("voted", quorum=quorum)
            assert isinstance(caught.value, DhtError)
            assert (caught.value.agreed, caught.value.quorum) == (3, quorum)
        assert await reader.get("voted", quorum=3) == "honest"
        # A holder's own copy is one of the votes, a forged one too.
        assert await holders[2].get("voted", quorum=3) == "honest"
        with pytest.raises(QuorumError):
            await holders[0].get("voted", quorum=4)
        # Found nowhere is not a failed quorum: None, as with quorum 1.
        assert await reader.get("absent", quorum=3) is None
        for bad in (0, -1, True, 1.5):
            with pytest.raises(ValueError, match="quorum"):
                await reader.get("voted", quorum=bad)  # type: ignore[arg-type]


async def test_what_a_status_page_reads(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulation(6) as sim:
        dht = sim.nodes[-1]
        await dht.set("colour", "blue")
        assert await sim.nodes[0].get("colour") == "blue"
        table = dht.routing_table()
        assert sum(len(contacts) for _, _, contacts in table) == dht.statistics().contacts == 5
        assert [low for low, _, _ in table] == sorted(low for low, _, _ in table)
        for low, high, contacts in table:
            for info in contacts:
                assert low <= distance(dht.node_id, info.contact.node_id) < high
                assert info.last_seen <= trio.current_time() and info.failures == 0
        reports = dht.recent_lookups
        assert reports and reports[-1] == dht.last_lookup
        holders = [n for n in sim.nodes if n.get_local("colour") == "blue"]
        assert all(n.statistics().record_bytes == len(cbor2.dumps("blue")) for n in holders)
        assert dht.statistics().bans == 0


async def test_leaving_normally_hands_pairs_to_those_that_take_its_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = Config(k=3, alpha=2, lookup_max_contacts=3, handoff_on_exit=True)
    async with open_simulation(12, config=config) as sim:
        assert sim.network is not None

        def holders(key: str) -> int:
            return sum(dht.get_local(key) is not None for dht in sim.nodes)

        def knows_successor(dht: Dht, key: str) -> bool:
            target = id_to_int(key_id(key))
            others = sorted(
                (n.node_id for n in sim.nodes if n.node_id != dht.node_id),
                key=lambda node_id: id_to_int(node_id) ^ target,
            )
            known = sorted(
                (info.contact.node_id for _, _, bucket in dht.routing_table() for info in bucket),
                key=lambda node_id: id_to_int(node_id) ^ target,
            )
            # The set's lookup (3 contacts at most) may have stored the pair beyond the
            # k closest; then the k-th closest other may hold it already.
            held = {n.node_id for n in sim.nodes if n.get_local(key) is not None}
            among = id_to_int(dht.node_id) ^ target < id_to_int(others[config.k - 1]) ^ target
            return (
                among
                and known[: config.k] == others[: config.k]
                and held == set(others[: config.k - 1])
            )

        async def run(name: str, *, graceful: bool) -> list[str]:
            """The keys of which the node was one of the k holders, before it left."""
            keys = [f"{name} {i}" for i in range(40)]
            mine: list[str] = []
            with contextlib.suppress(KeyError):
                async with open_dht(
                    bootstrap=[sim.nodes[0].address],
                    config=config,
                    transport=sim.network.transport(),
                ) as dht:
                    for key in keys:
                        await dht.set(key, 1)
                    # Its own pairs are kept wherever they fall: those the others
                    # hold only k - 1 copies of are the ones it is among the k closest to.
                    mine = [key for key in keys if holders(key) == config.k - 1]
                    if graceful:
                        # The hand-off goes to the k-th closest other node the leaver
                        # knows: count the keys where that is the one taking its place
                        # (the leaver knows it, and the nearer others hold the pair).
                        mine = [key for key in mine if knows_successor(dht, key)]
                    if not graceful:
                        raise KeyError("leaving by an exception")
            return mine

        crashed = await run("crashed", graceful=False)
        assert crashed and all(holders(key) == config.k - 1 for key in crashed)
        left = await run("left", graceful=True)
        assert left and all(holders(key) == config.k for key in left)
