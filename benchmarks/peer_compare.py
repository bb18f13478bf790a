"""The same workload on trio-kad (Trio, TCP) and on PyPI's `kademlia` (asyncio, UDP).

    pip install -e '.[bench]'
    python benchmarks/peer_compare.py --nodes 300 --ops 200 --runs 2

Each implementation runs in its own subprocess (this script re-invoked with
``--impl``), the two alternating, ``--runs`` times each. One run: N nodes on
127.0.0.1 in one process, each joining through the first; S sets then S gets
from random nodes; then ``--stop`` (30%) of the nodes stop without a word and
the S gets are repeated from the survivors. Keys, values, the node chosen for
each operation and the nodes stopped are the same for both implementations.

Prints one JSON object on stdout (every run, the median of each figure per
implementation, and trio-kad/kademlia ratios) and a short summary on stderr.
Figures are measured, never asserted.

`kademlia`'s RPC timeout (rpcudp's ``wait_timeout``, 5 s by default) is set to
trio-kad's ``Config.rpc_timeout`` unless ``--kademlia-rpc-timeout`` says
otherwise, so a dead peer costs both the same wait.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

from _stats import percentiles

HOST = "127.0.0.1"
IMPLS = ("trio-kad", "kademlia")


class Plan:
    """What a run does, drawn from the seed alone so both implementations do the same."""

    def __init__(self, args: argparse.Namespace) -> None:
        rng = random.Random(args.seed)
        n = args.nodes
        self.keys = [f"peer-{args.seed}-{i}" for i in range(args.ops)]
        # Small text values: they must fit kademlia's UDP datagrams.
        self.values = {key: f"value-{i}-" + "x" * 48 for i, key in enumerate(self.keys)}
        self.set_nodes = [rng.randrange(n) for _ in self.keys]
        self.get_nodes = [rng.randrange(n) for _ in self.keys]
        self.victims = sorted(rng.sample(range(n), int(n * args.stop)))
        survivors = sorted(set(range(n)) - set(self.victims))
        self.get_after_nodes = [rng.choice(survivors) for _ in self.keys]


class Recorder:
    """Times the three passes the same way for both implementations."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.result: dict[str, Any] = {}

    def begin(self) -> float:
        return time.perf_counter()

    def record(self, label: str, ms: list[float], ok: int, elapsed: float) -> None:
        count = len(self.plan.keys)
        self.result[label] = {
            "latency_ms": percentiles(ms),
            "samples_ms": [round(x, 3) for x in ms],
            "ops_per_s": count / elapsed,
            "success": ok / count,
        }


# --- trio-kad ----------------------------------------------------------------------


def run_trio_kad(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    import trio
    import trio.testing

    import trio_kad
    from trio_kad import Config
    from trio_kad.testing import open_simulation

    config = Config()
    rec = Recorder(plan)

    async def main() -> None:
        clock = time.perf_counter
        async with open_simulation(0, seed=args.seed, config=config, tcp=True) as sim:
            started = clock()
            first = await sim.add_node(bootstrap=[])
            nodes = [first]
            for _ in range(args.nodes - 1):
                nodes.append(await sim.add_node(bootstrap=[first.address]))
            rec.result["join_seconds"] = clock() - started

            ms: list[float] = []
            ok = 0
            t0 = clock()
            for key, index in zip(plan.keys, plan.set_nodes, strict=True):
                begin = clock()
                try:
                    await nodes[index].set(key, plan.values[key])
                    ok += 1
                except trio_kad.DhtError:
                    pass
                ms.append((clock() - begin) * 1000)
            rec.record("set", ms, ok, clock() - t0)

            async def gets(label: str, chosen: list[int]) -> None:
                ms: list[float] = []
                found = 0
                t0 = clock()
                for key, index in zip(plan.keys, chosen, strict=True):
                    begin = clock()
                    try:
                        value = await nodes[index].get(key)
                    except trio_kad.DhtError:
                        value = None
                    ms.append((clock() - begin) * 1000)
                    found += value == plan.values[key]
                rec.record(label, ms, found, clock() - t0)

            await gets("get", plan.get_nodes)
            for index in plan.victims:
                sim.stop_node(nodes[index])
            # Let the stopped nodes' tasks and sockets wind down before timing gets:
            # that cleanup is the cost of stopping, not of the next get.
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            await gets("get_after_stop", plan.get_after_nodes)
            transport = [n.statistics().transport for n in sim.nodes]
            rec.result["survivors_transport"] = {
                field: sum(getattr(t, field) for t in transport)
                for field in (
                    "requests_sent",
                    "requests_failed",
                    "connections_opened",
                    "connections_refused",
                    "requests_refused",
                )
            }

    trio.run(main)
    rec.result["versions"] = {"trio": trio.__version__, "trio_kad": trio_kad.__version__}
    rec.result["config"] = {
        key: value
        for key, value in asdict(config).items()
        if key in ("k", "alpha", "rpc_timeout", "max_connections_per_ip", "request_rate_per_ip")
    }
    return rec.result


# --- kademlia (asyncio, UDP) -----------------------------------------------------------


def run_kademlia(args: argparse.Namespace, plan: Plan) -> dict[str, Any]:
    import asyncio

    import kademlia  # type: ignore[import-untyped]
    from kademlia.network import Server  # type: ignore[import-untyped]
    from kademlia.protocol import KademliaProtocol  # type: ignore[import-untyped]

    wait_timeout = args.kademlia_rpc_timeout

    class Protocol(KademliaProtocol):  # type: ignore[misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self._wait_timeout = wait_timeout

    class TimedServer(Server):  # type: ignore[misc]
        protocol_class = Protocol

    rec = Recorder(plan)

    async def main() -> None:
        clock = time.perf_counter
        started = clock()
        first = TimedServer(ksize=20, alpha=3)
        await first.listen(0, interface=HOST)
        port = first.transport.get_extra_info("sockname")[1]
        nodes = [first]
        for _ in range(args.nodes - 1):
            node = TimedServer(ksize=20, alpha=3)
            await node.listen(0, interface=HOST)
            await node.bootstrap([(HOST, port)])
            nodes.append(node)
        rec.result["join_seconds"] = clock() - started

        ms: list[float] = []
        ok = 0
        t0 = clock()
        for key, index in zip(plan.keys, plan.set_nodes, strict=True):
            begin = clock()
            ok += bool(await nodes[index].set(key, plan.values[key]))
            ms.append((clock() - begin) * 1000)
        rec.record("set", ms, ok, clock() - t0)

        async def gets(label: str, chosen: list[int]) -> None:
            ms: list[float] = []
            found = 0
            t0 = clock()
            for key, index in zip(plan.keys, chosen, strict=True):
                begin = clock()
                value = await nodes[index].get(key)
                ms.append((clock() - begin) * 1000)
                found += value == plan.values[key]
            rec.record(label, ms, found, clock() - t0)

        await gets("get", plan.get_nodes)
        for index in plan.victims:
            nodes[index].stop()
        await asyncio.sleep(0.05)  # the same settling time trio-kad gets
        await gets("get_after_stop", plan.get_after_nodes)
        for index, node in enumerate(nodes):
            if index not in plan.victims:
                node.stop()

    asyncio.run(main())
    rec.result["versions"] = {"kademlia": getattr(kademlia, "__version__", "?")}
    rec.result["config"] = {"k": 20, "alpha": 3, "rpc_timeout": wait_timeout}
    return rec.result


# --- driver ------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> dict[str, Any]:
    # Both libraries log every dead peer (rpcudp at ERROR); the figures are what matters here.
    for name in ("trio_kad", "kademlia", "rpcudp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    plan = Plan(args)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    runner = run_trio_kad if args.impl == "trio-kad" else run_kademlia
    result = runner(args, plan)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    result["impl"] = args.impl
    result["cpu_seconds"] = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    result["peak_rss_mb"] = cpu1.ru_maxrss / 1024
    return result


# Figures compared across implementations: (path, higher is better).
FIGURES: list[tuple[tuple[str, ...], bool]] = [
    (("join_seconds",), False),
    (("set", "latency_ms", "p50"), False),
    (("set", "latency_ms", "p95"), False),
    (("set", "ops_per_s"), True),
    (("set", "success"), True),
    (("get", "latency_ms", "p50"), False),
    (("get", "latency_ms", "p95"), False),
    (("get", "ops_per_s"), True),
    (("get", "success"), True),
    (("get_after_stop", "latency_ms", "p50"), False),
    (("get_after_stop", "latency_ms", "p95"), False),
    (("get_after_stop", "ops_per_s"), True),
    (("get_after_stop", "success"), True),
    (("cpu_seconds",), False),
    (("peak_rss_mb",), False),
]


def dig(result: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = result
    for part in path:
        value = value[part]
    return float(value)


def driver(args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for run in range(args.runs):
        # Alternate which goes first, so neither always gets the warmer machine.
        order = IMPLS if run % 2 == 0 else IMPLS[::-1]
        for impl in order:
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--impl",
                impl,
                "--nodes",
                str(args.nodes),
                "--ops",
                str(args.ops),
                "--stop",
                str(args.stop),
                "--seed",
                str(args.seed),
                "--kademlia-rpc-timeout",
                str(args.kademlia_rpc_timeout),
            ]
            print(f"run {run + 1}/{args.runs}: {impl} ...", file=sys.stderr, flush=True)
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
            result = json.loads(done.stdout)
            result["run"] = run
            runs.append(result)

    medians: dict[str, dict[str, float]] = {}
    for impl in IMPLS:
        mine = [r for r in runs if r["impl"] == impl]
        medians[impl] = {
            ".".join(path): statistics.median(dig(r, path) for r in mine) for path, _ in FIGURES
        }
    ratios = {
        name: (medians["trio-kad"][name] / medians["kademlia"][name])
        if medians["kademlia"][name]
        else None
        for name in medians["trio-kad"]
    }
    return {
        "benchmark": "peer_compare",
        "nodes": args.nodes,
        "ops": args.ops,
        "stop": args.stop,
        "runs": args.runs,
        "seed": args.seed,
        "kademlia_rpc_timeout": args.kademlia_rpc_timeout,
        "versions": {"python": platform.python_version()},
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "median": medians,
        "ratio_trio_kad_over_kademlia": ratios,
        "higher_is_better": {".".join(path): up for path, up in FIGURES},
        "all_runs": runs,
    }


def summary(result: dict[str, Any]) -> None:
    med = result["median"]
    for impl in IMPLS:
        m = med[impl]
        parts = [f"{impl:>8}: join {m['join_seconds']:.1f} s"]
        for label in ("set", "get", "get_after_stop"):
            parts.append(
                f"{label} p50 {m[label + '.latency_ms.p50']:.1f} / "
                f"p95 {m[label + '.latency_ms.p95']:.1f} ms, "
                f"{m[label + '.ops_per_s']:.0f}/s, ok {m[label + '.success']:.0%}"
            )
        parts.append(f"cpu {m['cpu_seconds']:.1f} s")
        print("; ".join(parts), file=sys.stderr)
    ratios = result["ratio_trio_kad_over_kademlia"]
    print(
        "trio-kad/kademlia: "
        + ", ".join(
            f"{name} x{value:.2f}"
            for name, value in ratios.items()
            if value is not None and ("p50" in name or "ops_per_s" in name)
        ),
        file=sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=300)
    parser.add_argument("--ops", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2, help="runs of each implementation")
    parser.add_argument("--stop", type=float, default=0.3, help="fraction of nodes stopped")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kademlia-rpc-timeout",
        type=float,
        default=None,
        help="kademlia's per-RPC wait (default: trio-kad's Config.rpc_timeout)",
    )
    parser.add_argument("--impl", choices=IMPLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if importlib.util.find_spec("kademlia") is None:
        print(
            "peer_compare: the `kademlia` package is not installed"
            " (pip install -e '.[bench]' or pip install kademlia)",
            file=sys.stderr,
        )
        sys.exit(2)
    if args.kademlia_rpc_timeout is None:
        from trio_kad import Config

        args.kademlia_rpc_timeout = Config().rpc_timeout
    if args.impl is not None:
        json.dump(worker(args), sys.stdout)
        print()
        return
    result = driver(args)
    json.dump(result, sys.stdout, indent=2)
    print()
    summary(result)


if __name__ == "__main__":
    main()
