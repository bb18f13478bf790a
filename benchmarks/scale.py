"""Scale: memory per node, join time and lookup hops for N nodes on the in-memory network.

    python benchmarks/scale.py --sizes 1000,3000,10000 --lookups 200

Runs under ``trio.testing.MockClock(autojump_threshold=0)``: virtual time
jumps whenever every task waits, so joins and lookups cost CPU only. Each size
runs in a fresh child process (its own ``trio.run``) so that the RSS growth
it reports belongs to that size alone. ``--batch B`` joins nodes ``B`` at a
time in parallel (each through a node already running) instead of one after
another. With zero latency the run is CPU-bound, so this does not save time
(measured: 1000 nodes took 72 s with --batch 50 against 52 s one at a time,
on a loaded machine); it exists to compare the routing tables parallel joins
build.

Prints one JSON object on stdout and a short summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

import trio
import trio.testing
from _stats import percentiles, versions

from trio_kad import Config, MemoryNetwork
from trio_kad.testing import Simulation, open_simulation


def rss_kb() -> int:
    """Current resident set size in KiB (``VmRSS``), or the peak if /proc is unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def grow(sim: Simulation, count: int, batch: int) -> None:
    """Add ``count`` nodes: one after another (``batch <= 1``) or ``batch`` at a time."""
    if batch <= 1:
        await sim.grow(count)
        return
    if not sim.nodes:
        await sim.add_node()
        count -= 1
    while count > 0:
        size = min(batch, count, len(sim.nodes))  # never more joiners than nodes to join through
        running = list(sim.nodes)
        async with trio.open_nursery() as nursery:
            for _ in range(size):
                peer = sim.rng.choice(running).address
                nursery.start_soon(sim.add_node, [peer])
        count -= size


async def measure_size(n: int, args: argparse.Namespace, config: Config) -> dict[str, Any]:
    rng = random.Random(args.seed)
    network = MemoryNetwork(rng=random.Random(args.seed), latency=args.latency)
    result: dict[str, Any] = {"nodes": n}
    rss_before = rss_kb()
    wall0 = time.perf_counter()
    virtual0 = trio.current_time()
    async with open_simulation(0, seed=args.seed, config=config, network=network) as sim:
        await grow(sim, n, args.batch)
        join_wall = time.perf_counter() - wall0
        join_virtual = trio.current_time() - virtual0
        rss_after = rss_kb()
        result["join"] = {
            "wall_s": join_wall,
            "virtual_s": join_virtual,
            "wall_ms_per_node": join_wall * 1000 / n,
            "batch": args.batch,
        }
        result["memory"] = {
            "rss_before_mb": rss_before / 1024,
            "rss_after_join_mb": rss_after / 1024,
            "kb_per_node": (rss_after - rss_before) / n,
        }
        contacts = [node.statistics().contacts for node in sim.nodes]
        result["routing_table_contacts"] = percentiles([float(c) for c in contacts])

        rounds: list[float] = []
        rpcs: list[float] = []
        failures: list[float] = []
        lookup_virtual: list[float] = []
        wall1 = time.perf_counter()
        for i in range(args.lookups):
            node = rng.choice(sim.nodes)
            before = node.last_lookup
            value = await node.get(f"absent-{args.seed}-{n}-{i}")
            assert value is None
            report = node.last_lookup
            if report is None or report is before:
                continue
            rounds.append(report.rounds)
            rpcs.append(report.queries)
            failures.append(report.failures)
            lookup_virtual.append(report.duration)
        lookup_wall = time.perf_counter() - wall1
        log2n = math.log2(n)
        target = math.ceil(log2n / 2) + 1
        result["lookups"] = {
            "count": len(rounds),
            "wall_s": lookup_wall,
            "wall_ms_per_lookup": lookup_wall * 1000 / max(1, args.lookups),
            "rounds": percentiles(rounds),
            "rpcs": percentiles(rpcs),
            "failures": percentiles(failures),
            "virtual_s": percentiles(lookup_virtual),
            "log2_n": log2n,
            "target_rounds": target,
            "within_target": sum(r <= target for r in rounds) / max(1, len(rounds)),
        }
    result["memory"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["total_wall_s"] = time.perf_counter() - wall0
    return result


def run_one(n: int, args: argparse.Namespace) -> dict[str, Any]:
    config = Config()
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(measure_size, n, args, config, clock=clock)


def child_argv(n: int, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--single",
        str(n),
        "--lookups",
        str(args.lookups),
        "--seed",
        str(args.seed),
        "--latency",
        str(args.latency),
        "--batch",
        str(args.batch),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,3000,10000", help="comma-separated node counts")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0, help="one-way, virtual seconds")
    parser.add_argument(
        "--batch", type=int, default=1, help="nodes joining in parallel (1: one after another)"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="run every size in this process (RSS less exact)"
    )
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.single is not None:
        json.dump(run_one(args.single, args), sys.stdout)
        return

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    result: dict[str, Any] = {
        "benchmark": "scale",
        "params": {
            "sizes": sizes,
            "lookups": args.lookups,
            "seed": args.seed,
            "latency": args.latency,
            "batch": args.batch,
            "transport": "memory",
            "clock": "MockClock(autojump_threshold=0)",
            "process_per_size": not args.in_process,
        },
        "config": asdict(Config()),
        "versions": versions(),
        "sizes": [],
    }
    for n in sizes:
        if args.in_process:
            entry = run_one(n, args)
        else:
            proc = subprocess.run(child_argv(n, args), capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr)
                raise SystemExit(f"size {n} failed with exit status {proc.returncode}")
            entry = json.loads(proc.stdout)
        result["sizes"].append(entry)
        j, m, lk = entry["join"], entry["memory"], entry["lookups"]
        print(
            f"N={n}: join {j['wall_s']:.1f} s wall ({j['wall_ms_per_node']:.1f} ms/node, "
            f"{j['virtual_s']:.1f} s virtual, batch {j['batch']}), "
            f"{m['kb_per_node']:.1f} KiB/node, "
            f"rounds mean {lk['rounds']['mean']:.2f} p95 {lk['rounds']['p95']:.0f} "
            f"max {lk['rounds']['max']:.0f} (log2 N {lk['log2_n']:.1f}, "
            f"target {lk['target_rounds']}, {lk['within_target']:.0%} within), "
            f"rpcs/lookup {lk['rpcs']['mean']:.1f}, "
            f"total {entry['total_wall_s']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
