"""Graceful leave against a crash: how many pairs are found right after a third of the nodes go?

    python benchmarks/leave.py --nodes 30 --keys 300 --k 3 --runs 5

N nodes on the in-memory network under Trio's MockClock, all with
``Config.handoff_on_exit``. A client-only publisher stores the keys. Then a
third of the nodes stop at once, either gracefully (their ``open_dht`` block
ends, as ``trio-kad serve`` does on SIGTERM: each hands its pairs to the nodes
that take its place) or abruptly (cancelled, as on SIGKILL), and every key is
looked up at once from a node that stayed, before any replication round.
Both modes run on the same network, seed by seed.

``held_fraction`` counts the keys some staying node holds; ``found_fraction``
those a get found. A get can miss a held key right after the leave: a lookup
starts from the k closest contacts its reader knows, and when those are all
nodes that just left (likely with a small k), it has no one else to ask.

Prints one JSON object on stdout and a short summary on stderr.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import trio
from _counting import CountingNetwork, header, run_virtual

from trio_kad import Config, Dht, open_dht


@dataclass
class Running:
    """One node of the network, and the means to stop it either way."""

    dht: Dht
    leave: trio.Event = field(default_factory=trio.Event)
    """Set: the node's block ends normally (a graceful leave)."""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    """Cancelled: the node stops abruptly."""
    gone: trio.Event = field(default_factory=trio.Event)


async def one_run(args: argparse.Namespace, config: Config, seed: int, graceful: bool) -> Any:
    rng = random.Random(seed)
    network = CountingNetwork(rng=random.Random(seed), latency=args.latency)
    nodes: list[Running] = []

    async def run_node(peers: list[Any], task_status: trio.TaskStatus[None]) -> None:
        scope = trio.CancelScope()
        gone = trio.Event()
        try:
            with scope:
                async with open_dht(
                    bootstrap=peers,
                    node_id=rng.randbytes(32),
                    config=config,
                    transport=network.transport(),
                    rng=random.Random(rng.getrandbits(64)),
                ) as dht:
                    node = Running(dht, scope=scope, gone=gone)
                    nodes.append(node)
                    task_status.started()
                    await node.leave.wait()
        finally:
            gone.set()

    async with trio.open_nursery() as nursery:
        for _ in range(args.nodes):
            peers = [rng.choice(nodes).dht.address] if nodes else []
            await nursery.start(run_node, peers)
        async with open_dht(
            bootstrap=[nodes[0].dht.address],
            node_id=rng.randbytes(32),
            config=config,
            transport=network.transport(),
            client_only=True,
            rng=random.Random(rng.getrandbits(64)),
        ) as publisher:
            keys = [f"leave-{seed}-{i}" for i in range(args.keys)]
            for key in keys:
                await publisher.set(key, key)
        leaving = rng.sample(nodes, args.nodes // 3)
        staying = [n.dht for n in nodes if n not in leaving]
        before = network.statistics().requests_sent
        started = trio.current_time()
        for node in leaving:
            if graceful:
                node.leave.set()
            else:
                node.scope.cancel()
        for node in leaving:
            await node.gone.wait()
        leave_seconds = trio.current_time() - started
        leave_rpcs = network.statistics().requests_sent - before
        held = sum(any(d.get_local(key) is not None for d in staying) for key in keys)
        found = 0
        for key in keys:
            found += await rng.choice(staying).get(key) == key
        nursery.cancel_scope.cancel()
    return {
        "held_fraction": held / len(keys),
        "found_fraction": found / len(keys),
        "leave_virtual_seconds": leave_seconds,
        "leave_rpcs": leave_rpcs,
    }


async def simulate(args: argparse.Namespace) -> dict[str, Any]:
    config = Config(k=args.k, handoff_on_exit=True)
    wall = time.perf_counter()
    result = header("leave", config, args, nodes=args.nodes, keys=args.keys, runs=args.runs)
    for mode in ("graceful", "abrupt"):
        runs = [
            await one_run(args, config, args.seed + i, mode == "graceful") for i in range(args.runs)
        ]
        result[mode] = {name: [r[name] for r in runs] for name in runs[0]} | {
            "found_fraction_mean": sum(r["found_fraction"] for r in runs) / len(runs),
            "held_fraction_mean": sum(r["held_fraction"] for r in runs) / len(runs),
        }
    result["wall_seconds"] = time.perf_counter() - wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--k", type=int, default=3, help="replication factor")
    parser.add_argument("--runs", type=int, default=5, help="networks per mode (seeds)")
    parser.add_argument("--latency", type=float, default=0.005, help="one-way, seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = run_virtual(simulate, args)
    print(
        f"{args.nodes // 3} of {args.nodes} nodes leaving at once, k = {args.k}: found "
        f"{result['graceful']['found_fraction_mean']:.1%} after a graceful leave, "
        f"{result['abrupt']['found_fraction_mean']:.1%} after a crash",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
