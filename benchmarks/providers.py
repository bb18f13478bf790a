"""Provider sets (issue 17): finding announcers, churn, and memory per entry.

    python benchmarks/providers.py

Three measurements, each a section of the JSON printed on stdout (a summary
goes to stderr):

- ``find`` (``--nodes`` TCP nodes on 127.0.0.1 in one process, real clock):
  ``--topics`` topics, each announced by ``--announcers`` distinct random
  nodes; then, per topic, a node that does not announce it calls
  ``find_providers(limit=announcers)`` (latency p50/p95, RPCs per call from
  ``Dht.last_lookup``, share of calls that found every announcer), and
  another node times the first provider ``providers()`` yields.
- ``churn`` (the same sizes on the in-memory network under MockClock,
  default Config timers): after the announcements, ``--stop`` of the nodes
  stop abruptly; one ``provider_reannounce_interval`` later, the share of
  the live announcers each topic's finder finds; one ``provider_lifetime``
  after the stop, the share of stopped announcers still listed.
- ``memory``: bytes per provider entry at a holder (``tracemalloc`` around
  ``--entries`` entries in one ``ProviderTable``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import asdict
from typing import Any

import trio
import trio.testing
from _stats import percentiles, versions

from trio_kad import Config, Dht, StoreError
from trio_kad._providers import ProviderTable
from trio_kad.testing import Simulation, open_simulation

ANNOUNCE_PARALLELISM = 8
ANNOUNCE_TRIES = 3


def deal(sim: Simulation, args: argparse.Namespace, rng: random.Random) -> dict[str, list[Dht]]:
    """Each topic's announcers: distinct random nodes."""
    return {f"topic-{t}": rng.sample(sim.nodes, args.announcers) for t in range(args.topics)}


async def announce_all(topics: dict[str, list[Dht]]) -> Counter[str]:
    """Announce every topic from each of its announcers; count acks and failed tries."""
    limiter = trio.CapacityLimiter(ANNOUNCE_PARALLELISM)
    counts: Counter[str] = Counter()

    async def one(dht: Dht, topic: str, port: int) -> None:
        async with limiter:
            for _ in range(ANNOUNCE_TRIES):
                try:
                    acks = await dht.announce(topic, port=port)  # not inside +=: it awaits
                    counts["acks"] += acks
                    counts["announced"] += 1
                    return
                except StoreError:
                    counts["failed_tries"] += 1

    async with trio.open_nursery() as nursery:
        for topic, announcers in topics.items():
            for i, dht in enumerate(announcers):
                nursery.start_soon(one, dht, topic, 10_000 + i)
    return counts


def outsider(sim: Simulation, announcers: list[Dht], rng: random.Random) -> Dht:
    ids = {dht.node_id for dht in announcers}
    return rng.choice([dht for dht in sim.nodes if dht.node_id not in ids])


async def measure_find(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    started = time.perf_counter()
    async with open_simulation(args.nodes, seed=args.seed, tcp=True) as sim:
        grown = time.perf_counter()
        topics = deal(sim, args, rng)
        announcements = await announce_all(topics)
        announced = time.perf_counter()
        latencies, rpcs, complete, first = [], [], 0, []
        for topic, announcers in topics.items():
            finder = outsider(sim, announcers, rng)
            t0 = time.perf_counter()
            found = await finder.find_providers(topic, limit=args.announcers)
            latencies.append(time.perf_counter() - t0)
            report = finder.last_lookup
            rpcs.append(0 if report is None else report.queries)
            complete += {p.node_id for p in found} == {d.node_id for d in announcers}
            reader = outsider(sim, announcers, rng)
            t0 = time.perf_counter()
            async for _ in reader.providers(topic):
                first.append(time.perf_counter() - t0)
                break
        return {
            "transport": "tcp",
            "announcements": dict(announcements),
            "found_all_share": complete / len(topics),
            "find_latency_ms": _ms(percentiles(latencies)),
            "rpcs_per_find": percentiles([float(n) for n in rpcs]),
            "first_provider_latency_ms": _ms(percentiles(first)),
            "setup_seconds": {
                "grow": round(grown - started, 1),
                "announce": round(announced - grown, 1),
            },
        }


async def measure_churn(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed + 1)
    config = Config()
    async with open_simulation(args.nodes, seed=args.seed, config=config) as sim:
        topics = deal(sim, args, rng)
        announcements = await announce_all(topics)
        stopped = rng.sample(sim.nodes, int(args.stop * len(sim.nodes)))
        for dht in stopped:
            sim.stop_node(dht)
        gone = {dht.node_id for dht in stopped}
        stopped_at = trio.current_time()
        await trio.sleep(config.provider_reannounce_interval)
        live_found = live_total = 0
        finders = {t: rng.choice(sim.nodes) for t in topics}
        for topic, announcers in topics.items():
            found = {p.node_id for p in await finders[topic].find_providers(topic, limit=64)}
            live = {d.node_id for d in announcers} - gone
            live_found += len(found & live)
            live_total += len(live)
        await trio.sleep(stopped_at + config.provider_lifetime - trio.current_time())
        stale = stale_total = 0
        for topic, announcers in topics.items():
            found = {p.node_id for p in await finders[topic].find_providers(topic, limit=64)}
            dead = {d.node_id for d in announcers} & gone
            stale += len(found & dead)
            stale_total += len(dead)
        return {
            "transport": "memory, MockClock",
            "announcements": dict(announcements),
            "stopped_nodes": len(stopped),
            "live_found_share_after_one_interval": live_found / max(1, live_total),
            "live_announcers": live_total,
            "stopped_still_listed_share_after_one_lifetime": stale / max(1, stale_total),
            "stopped_announcers": stale_total,
            "interval_seconds": config.provider_reannounce_interval,
            "lifetime_seconds": config.provider_lifetime,
        }


def measure_memory(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    ids = [rng.randbytes(32) for _ in range(args.entries)]
    hosts = [f"198.51.{n // 250}.{n % 250 + 1}" for n in range(args.entries)]
    keys = [rng.randbytes(32) for _ in range(max(1, args.entries // 20))]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = ProviderTable(
        lifetime=2700.0,
        max_per_topic=64,
        max_topics=len(keys),
        max_per_origin=10**9,
        max_ids_per_origin=10**9,
    )
    for n in range(args.entries):
        table.add(keys[n % len(keys)], ids[n], hosts[n], 4000, hosts[n].rsplit(".", 1)[0], 0.0)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(table) == args.entries
    return {
        "entries": args.entries,
        "topics": len(keys),
        "bytes_per_entry": round((after - before) / args.entries, 1),
        "note": "ids and host strings are allocated before measuring (they arrive on the wire)",
    }


def _ms(stats: dict[str, float]) -> dict[str, float]:
    return {name: round(value * 1000, 2) for name, value in stats.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--announcers", type=int, default=20)
    parser.add_argument("--stop", type=float, default=0.3, help="share of nodes that stop")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="find,churn,memory")
    args = parser.parse_args()
    modes = args.modes.split(",")
    result: dict[str, Any] = {
        "benchmark": "providers",
        "params": {k: v for k, v in vars(args).items() if k != "modes"},
        "config": asdict(Config()),
        "versions": versions(),
    }
    started = time.perf_counter()
    if "find" in modes:
        result["find"] = trio.run(measure_find, args)
    if "churn" in modes:
        clock = trio.testing.MockClock(autojump_threshold=0)
        result["churn"] = trio.run(measure_churn, args, clock=clock)
    if "memory" in modes:
        result["memory"] = measure_memory(args)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    summary = []
    if "find" in result:
        find = result["find"]
        summary.append(
            f"find: all found {find['found_all_share']:.3f}, p50"
            f" {find['find_latency_ms'].get('p50')} ms, p95 {find['find_latency_ms'].get('p95')}"
            f" ms, {find['rpcs_per_find'].get('mean')} RPCs, first provider p50"
            f" {find['first_provider_latency_ms'].get('p50')} ms"
        )
    if "churn" in result:
        churn = result["churn"]
        summary.append(
            f"churn: live found {churn['live_found_share_after_one_interval']:.4f},"
            f" stopped listed {churn['stopped_still_listed_share_after_one_lifetime']:.4f}"
        )
    if "memory" in result:
        summary.append(f"memory: {result['memory']['bytes_per_entry']} B/entry")
    print("providers: " + "; ".join(summary), file=sys.stderr)


if __name__ == "__main__":
    main()
