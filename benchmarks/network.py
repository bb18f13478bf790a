"""N nodes in one process: set/get latency, RPCs and rounds per lookup, success rate.

    python benchmarks/network.py --nodes 100 --ops 200 --transport tcp

Prints one JSON object on stdout and a short summary on stderr. The gets run
twice, the second time (``get_again``) from the same nodes in the same order,
so they find their connections pooled. ``--churn F`` stops a fraction F of
the nodes after that and measures the gets again; with ``--churn-mode drop``
(memory transport) those nodes stay up but silently drop every message, so
only timeouts reveal them.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import sys
import time
from dataclasses import asdict
from typing import Any

import trio
import trio.testing
from _stats import percentiles, versions

import trio_kad
from trio_kad import Config, MemoryNetwork
from trio_kad.testing import open_simulation


class GcPauses:
    """Records how long the cyclic garbage collector stops the process, per collection."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self.full_flags: list[bool] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.pauses_ms.append((time.perf_counter() - self._started) * 1000)
        self.full_flags.append(info["generation"] == 2)

    def mark(self) -> int:
        """A bookmark: pass it to ``summary`` for the collections made since."""
        return len(self.pauses_ms)

    def summary(self, since: int = 0) -> dict[str, Any]:
        pauses = self.pauses_ms[since:]
        return {
            "collections": len(pauses),
            "full_collections": sum(self.full_flags[since:]),
            "total_s": sum(pauses) / 1000,
            "max_pause_ms": max(pauses, default=0.0),
        }


def wire_bytes(nodes: list[trio_kad.Dht]) -> int:
    """Bytes the nodes have sent so far, all together."""
    return sum(n.statistics().transport.bytes_sent for n in nodes)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    config = Config()
    network = None
    if args.transport == "memory":
        network = MemoryNetwork(rng=random.Random(args.seed), latency=args.latency)
    result: dict[str, Any] = {
        "benchmark": "network",
        "nodes": args.nodes,
        "ops": args.ops,
        "transport": args.transport,
        "seed": args.seed,
        "churn": args.churn,
        "churn_mode": args.churn_mode,
        "gc_freeze": args.gc_freeze,
        "config": asdict(config),
        "versions": versions(),
    }
    clock = trio.current_time
    pauses = GcPauses()
    started = clock()
    async with open_simulation(
        args.nodes, seed=args.seed, config=config, network=network, tcp=args.transport == "tcp"
    ) as sim:
        result["join_seconds"] = clock() - started
        if args.gc_freeze:
            # What a long-lived many-node process can do once it is up: the
            # objects made so far leave the collector's generations for good.
            gc.collect()
            gc.freeze()
        keys = [f"bench-{args.seed}-{i}" for i in range(args.ops)]
        values = {key: {"n": i, "pad": "x" * 64} for i, key in enumerate(keys)}

        set_ms: list[float] = []
        set_rpcs: list[float] = []
        set_rounds: list[float] = []
        set_ok = 0
        bytes_before = wire_bytes(sim.nodes)
        gc_mark = pauses.mark()
        t0 = clock()
        for key in keys:
            node = rng.choice(sim.nodes)
            begin = clock()
            try:
                await node.set(key, values[key])
                set_ok += 1
            except trio_kad.StoreError:
                pass
            set_ms.append((clock() - begin) * 1000)
            report = node.last_lookup
            if report is not None:
                set_rpcs.append(report.queries)
                set_rounds.append(report.rounds)
        set_elapsed = clock() - t0
        result["set"] = {
            "latency_ms": percentiles(set_ms),
            "samples_ms": [round(ms, 3) for ms in set_ms],
            "ops_per_s": len(keys) / set_elapsed,
            "success": set_ok / len(keys),
            "lookup_rpcs": percentiles(set_rpcs),
            "lookup_rounds": percentiles(set_rounds),
            "wire_bytes_per_op": (wire_bytes(sim.nodes) - bytes_before) / len(keys),
            "gc": pauses.summary(gc_mark),
        }

        async def gets(label: str, picks: list[trio_kad.Dht]) -> None:
            """One get of every key, the i-th from ``picks[i]``."""
            get_ms: list[float] = []
            rpcs: list[float] = []
            rounds: list[float] = []
            found = 0
            bytes_before = wire_bytes(sim.nodes)
            gc_mark = pauses.mark()
            t0 = clock()
            for node, key in zip(picks, keys, strict=True):
                before = node.last_lookup
                begin = clock()
                value = await node.get(key)
                get_ms.append((clock() - begin) * 1000)
                found += value == values[key]
                report = node.last_lookup
                if report is not None and report is not before:
                    rpcs.append(report.queries)
                    rounds.append(report.rounds)
            elapsed = clock() - t0
            result[label] = {
                "latency_ms": percentiles(get_ms),
                "samples_ms": [round(ms, 3) for ms in get_ms],
                "ops_per_s": len(keys) / elapsed,
                "success": found / len(keys),
                "lookup_rpcs": percentiles(rpcs),
                "lookup_rounds": percentiles(rounds),
                "served_locally": len(keys) - len(rpcs),
                "wire_bytes_per_op": (wire_bytes(sim.nodes) - bytes_before) / len(keys),
                "gc": pauses.summary(gc_mark),
            }

        picks = [rng.choice(sim.nodes) for _ in keys]
        await gets("get", picks)
        # The same gets again, from the same nodes: each asks the contact that
        # answered it a moment ago, over the connection that get left pooled. With
        # --transport tcp the difference from "get" is what opening connections costs.
        await gets("get_again", picks)
        if args.churn > 0:
            victims = rng.sample(sim.nodes, int(len(sim.nodes) * args.churn))
            for node in victims:
                if args.churn_mode == "drop" and network is not None:
                    network.set_mode(node.address, "drop")
                else:
                    sim.stop_node(node)
            # Silent nodes are still in sim.nodes; the gets come from live ones.
            live = [n for n in sim.nodes if n not in victims]
            # Let the stopped nodes' tasks and sockets wind down before timing gets:
            # that cleanup is the cost of stopping, not of the next get.
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            await gets("get_after_churn", [rng.choice(live) for _ in keys])
        transport = [n.statistics().transport for n in sim.nodes]
        result["wire"] = {
            "frames_sent": sum(t.frames_sent for t in transport),
            "bytes_sent": sum(t.bytes_sent for t in transport),
            "connections_opened": sum(t.connections_opened for t in transport),
        }
        result["gc"] = pauses.summary()
        result["gc"]["tracked_objects_at_end"] = len(gc.get_objects())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["peak_rss_kb_per_node"] = usage.ru_maxrss / args.nodes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--transport", choices=["tcp", "memory"], default="tcp")
    parser.add_argument("--latency", type=float, default=0.0, help="memory transport only")
    parser.add_argument("--churn", type=float, default=0.0)
    parser.add_argument(
        "--churn-mode",
        choices=["stop", "drop"],
        default="stop",
        help="stopped nodes refuse connections (stop) or drop messages silently (drop, memory)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() once the nodes have joined (off by default)",
    )
    args = parser.parse_args()
    result = trio.run(measure, args)
    json.dump(result, sys.stdout, indent=2)
    print()
    for label in ("set", "get", "get_again", "get_after_churn"):
        if label in result:
            r = result[label]
            print(
                f"{label}: p50 {r['latency_ms']['p50']:.2f} ms, "
                f"p95 {r['latency_ms']['p95']:.2f} ms, "
                f"{r['ops_per_s']:.0f} ops/s, success {r['success']:.1%}, "
                f"rpcs/lookup {r['lookup_rpcs'].get('mean', 0):.1f}, "
                f"rounds/lookup {r['lookup_rounds'].get('mean', 0):.2f}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
