"""A simulated day of network life with churn: does the data survive, and at what cost?

    python benchmarks/churn.py --nodes 500 --keys 1000 --hours 24 --churn 0.1

N nodes on the in-memory network under Trio's MockClock (virtual time, so a
day takes minutes). A long-lived client-only publisher stores the keys and
stays, republishing them as the paper's original publisher does. Every hour a
fraction of the nodes leaves abruptly and as many new ones join. At the end
(after tExpire has passed, so the first publication has expired everywhere)
every key is looked up from a random node.

Prints one JSON object on stdout and a short summary on stderr.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from collections import Counter
from typing import Any

import trio
import trio.testing
from _counting import CountingNetwork, breakdown, header, run_virtual
from _stats import percentiles

from trio_kad import Config, open_dht
from trio_kad.testing import open_simulation

HOUR = 3600.0


async def simulate(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    config = Config()
    network = CountingNetwork(rng=random.Random(args.seed), latency=args.latency)
    started = time.perf_counter()
    result = header(
        "churn",
        config,
        args,
        nodes=args.nodes,
        keys=args.keys,
        hours=args.hours,
        churn_per_hour=args.churn,
    )
    async with open_simulation(args.nodes, seed=args.seed, config=config, network=network) as sim:
        result["join_wall_seconds"] = time.perf_counter() - started
        async with open_dht(
            bootstrap=[sim.nodes[0].address],
            transport=network.transport(),
            config=config,
            client_only=True,
            rng=random.Random(rng.getrandbits(64)),
        ) as publisher:
            keys = [f"churn-{args.seed}-{i}" for i in range(args.keys)]
            for key in keys:
                await publisher.set(key, key)
            day_start = trio.current_time()
            before = network.statistics().requests_sent
            network.counts.clear()
            node_hours = 0.0
            left = joined = join_rpcs = 0
            for hour in range(args.hours):
                node_hours += len(sim.nodes)
                await trio.sleep(HOUR)
                churn = int(len(sim.nodes) * args.churn)
                for node in rng.sample(sim.nodes, churn):
                    sim.stop_node(node)
                    left += 1
                joining = network.statistics().requests_sent
                for _ in range(churn):
                    await sim.add_node()
                    joined += 1
                join_rpcs += network.statistics().requests_sent - joining
                print(
                    f"hour {hour + 1}: {len(sim.nodes)} nodes, "
                    f"{network.statistics().requests_sent - before} RPCs so far "
                    f"({time.perf_counter() - started:.0f} s wall)",
                    file=sys.stderr,
                )
            # Let the first publication expire everywhere: only republished
            # and replicated copies can answer now.
            end = day_start + max(config.expire_interval, args.hours * HOUR) + 600
            node_hours += len(sim.nodes) * (end - trio.current_time()) / HOUR
            await trio.sleep_until(end)
            maintenance_rpcs = network.statistics().requests_sent - before - join_rpcs
            counts = Counter(network.counts)
            virtual_hours = (trio.current_time() - day_start) / HOUR
            found = 0
            rpcs: list[float] = []
            failures: list[float] = []
            for key in keys:
                reader = rng.choice(sim.nodes)
                before_get = reader.last_lookup
                found += await reader.get(key) == key
                report = reader.last_lookup
                if report is not None and report is not before_get:
                    # How well the tables were kept: dead contacts cost failed RPCs.
                    rpcs.append(report.queries)
                    failures.append(report.failures)
            result["final_gets"] = {"rpcs": percentiles(rpcs), "failures": percentiles(failures)}
            result.update(
                {
                    "nodes_left": left,
                    "nodes_joined": joined,
                    "found_fraction": found / len(keys),
                    "maintenance_rpcs": maintenance_rpcs,
                    "join_rpcs": join_rpcs,
                    "maintenance_rpcs_per_node_hour": maintenance_rpcs / node_hours,
                    "maintenance_rpcs_per_key_hour": maintenance_rpcs / len(keys) / virtual_hours,
                    "virtual_hours": virtual_hours,
                    # Every RPC of the day (joins and the final gets excluded), by the
                    # upkeep task that sent it ("other": pings of a full bucket's
                    # oldest contact on a request, joins' own lookups): per key-hour.
                    "rpcs_per_key_hour_by_cause": breakdown(counts, len(keys) * virtual_hours),
                }
            )
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--churn", type=float, default=0.1, help="fraction replaced each hour")
    parser.add_argument("--latency", type=float, default=0.005, help="one-way, seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run_virtual(simulate, args)
    print(
        f"found {result['found_fraction']:.1%} of {args.keys} keys after {args.hours} h with "
        f"{args.churn:.0%}/h churn; {result['maintenance_rpcs_per_node_hour']:.1f} "
        f"maintenance RPCs per node per hour; {result['wall_seconds']:.0f} s wall",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
