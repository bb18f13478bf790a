"""An idle network's upkeep: RPCs per node per minute when nobody sets or gets anything.

    python benchmarks/idle.py --nodes 1000 --settle 2 --hours 3

N nodes join one after another on the in-memory network under Trio's
MockClock (virtual time). After ``--settle`` hours (joins' own refreshes and
the first round of every timer are over) the RPCs every node sends are
counted for ``--hours`` hours, by the upkeep task that sent them and by kind
of RPC (``_counting``). No pair is stored, so replication and republishing
have nothing to do: what is left is refresh (paper 2.3) and the liveness
pings it sets off.

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

from trio_kad import Config
from trio_kad.testing import open_simulation

HOUR = 3600.0


async def simulate(args: argparse.Namespace) -> dict[str, Any]:
    config = Config()
    network = CountingNetwork(rng=random.Random(args.seed), latency=args.latency)
    started = time.perf_counter()
    result = header(
        "idle",
        config,
        args,
        nodes=args.nodes,
        settle_hours=args.settle,
        hours=args.hours,
    )
    async with open_simulation(args.nodes, seed=args.seed, config=config, network=network) as sim:
        result["join_wall_seconds"] = time.perf_counter() - started
        await trio.sleep(args.settle * HOUR)
        network.counts.clear()
        await trio.sleep(args.hours * HOUR)
        counts = Counter(network.counts)
        node_minutes = len(sim.nodes) * args.hours * 60
        contacts = sorted(n.statistics().contacts for n in sim.nodes)
    total = sum(counts.values())
    result.update(
        {
            "rpcs": total,
            "rpcs_per_node_minute": total / node_minutes,
            "rpcs_per_node_minute_by_cause": breakdown(counts, node_minutes),
            "contacts_per_node": {
                "min": contacts[0],
                "median": contacts[len(contacts) // 2],
                "max": contacts[-1],
            },
            "wall_seconds": time.perf_counter() - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=2.0, help="hours before counting")
    parser.add_argument("--hours", type=float, default=3.0, help="hours counted")
    parser.add_argument("--latency", type=float, default=0.005, help="one-way, seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run_virtual(simulate, args)
    print(
        f"{args.nodes} idle nodes: {result['rpcs_per_node_minute']:.3f} RPCs per node per "
        f"minute over {args.hours:g} h; {result['wall_seconds']:.0f} s wall",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
