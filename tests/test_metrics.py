"""Prometheus metrics of a node: a registry of its own, read at scrape time."""

from __future__ import annotations

import trio
import trio.testing
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trio_kad import MemoryNetwork, open_dht
from trio_kad._metrics import MeteredTransport, node_registry
from trio_kad.testing import node_of, open_simulation


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


async def test_metrics_count_rpcs_by_type_and_outcome_and_lookups(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    async with open_simulation(8, network=network) as sim:
        transport = MeteredTransport(network.transport())
        async with open_dht(bootstrap=[sim.nodes[0].address], transport=transport) as dht:
            registry = node_registry(dht, transport)
            await dht.set("colour", "blue")
            assert await dht.get("colour") == "blue"
            assert await node_of(sim.nodes[3]).ping_address(dht.address) is not None
            first = _samples(generate_latest(registry))
            assert first["trio_kad_rpcs_sent_total", (("outcome", "ok"), ("type", "find_node"))] > 0
            assert first["trio_kad_rpcs_sent_total", (("outcome", "ok"), ("type", "store"))] > 0
            served = sum(v for (n, labels), v in first.items() if n == "trio_kad_rpcs_served_total")
            assert served == dht.statistics().requests_served > 0
            assert first["trio_kad_rpcs_served_total", (("outcome", "ok"), ("type", "ping"))] == 1
            lookups = dht.statistics().lookups
            assert first["trio_kad_lookups_total", ()] == lookups
            assert first["trio_kad_lookup_duration_seconds_count", ()] == lookups
            assert first["trio_kad_lookup_hops_count", ()] == lookups
            assert first["trio_kad_records", ()] == dht.statistics().records
            assert first["trio_kad_contacts", ()] == 8
            # Lookups are taken into the histograms once each.
            again = _samples(generate_latest(registry))
            assert again["trio_kad_lookup_duration_seconds_count", ()] == lookups
            await dht.get("absent")
            later = _samples(generate_latest(registry))
            assert later["trio_kad_lookup_hops_count", ()] == lookups + 1


async def test_each_node_has_a_registry_of_its_own(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(3) as sim:
        for key in ("a", "b", "c"):
            await sim.nodes[0].set(key, 1)
        texts = [generate_latest(node_registry(dht)) for dht in sim.nodes]
        lookups = [_samples(text)["trio_kad_lookups_total", ()] for text in texts]
        assert lookups == [dht.statistics().lookups for dht in sim.nodes]
        assert len(set(lookups)) > 1
        # Nothing lands in the process-wide registry.
        assert b"trio_kad" not in generate_latest()


async def test_a_failed_rpc_is_counted_as_failed(autojump_clock: trio.testing.MockClock) -> None:
    network = MemoryNetwork()
    async with open_simulation(4, network=network) as sim:
        transport = MeteredTransport(network.transport())
        async with open_dht(bootstrap=[sim.nodes[0].address], transport=transport) as dht:
            for node in list(sim.nodes[1:]):
                sim.stop_node(node)
            await dht.get("anything")
            samples = _samples(generate_latest(node_registry(dht, transport)))
            failed = sum(
                v
                for (n, labels), v in samples.items()
                if n == "trio_kad_rpcs_sent_total" and ("outcome", "failed") in labels
            )
            assert failed > 0


async def test_provider_sets_and_watches_are_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(6) as sim:
        holder, watcher = sim.nodes[0], sim.nodes[1]
        await sim.nodes[2].announce("topic", port=8000)
        await holder.set("key", 1)
        async with watcher.watch("key") as updates:
            assert await updates.__anext__() == 1
            await holder.set("key", 2)
            assert await updates.__anext__() == 2
            stats = [dht.statistics() for dht in sim.nodes]
            assert watcher.statistics().watches == 1
            assert sum(s.listeners.listeners for s in stats) >= 1
            assert sum(s.listeners.pushes_sent for s in stats) >= 1
            totals: dict[str, float] = {}
            for dht in sim.nodes:
                for (name, _), value in _samples(generate_latest(node_registry(dht))).items():
                    totals[name] = totals.get(name, 0.0) + value
        assert watcher.statistics().watches == 0
    assert totals["trio_kad_watches"] == 1
    assert totals["trio_kad_listeners"] >= 1
    assert totals["trio_kad_pushes_sent_total"] >= 1
    assert totals["trio_kad_provider_entries"] == sum(s.provider_entries for s in stats) > 0
