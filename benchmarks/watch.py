"""Watching a key (issue 18): push latency over TCP, fan-out to many watchers, churn.

    python benchmarks/watch.py --modes latency,fanout

Each measurement is a section of the JSON printed on stdout (a summary goes
to stderr); ``--modes`` picks some:

- ``latency``: ``--nodes`` TCP nodes in one process (real clock, loopback).
  One node watches a key; another sets it ``--ops`` times, ``--interval``
  seconds apart (slower than ``Config.watch_push_rate``, so no push waits
  for its turn). Per update: the time from ``set`` returning at the writer
  to the watcher's ``async for`` getting the value (0 when it got there
  first: holders push as they store, before the writer has every
  acknowledgement). Targets: p50 at most 2 ms, p99 at most 20 ms.
- ``fanout``: ``--fanout-nodes`` nodes on the in-memory network under
  MockClock, every one of them watching one key; a writer sets it
  ``--updates`` times, ``--update-interval`` virtual seconds apart. Counts
  the watchers that saw the last value, and any value seen twice or out of
  order (target: all saw the last, none twice or out of order); the
  listeners each holder kept; the holders' memory per listener, measured
  with ``tracemalloc`` as the bytes 10,000 listeners take in a registry.
  Then ``--churn`` of the nodes (never the writer) stop at once and the
  writer sets ``--after-updates`` more values: the share of (update,
  surviving watcher) pairs where the watcher got that value within one
  ``watch_renew_interval`` of the ``set`` (target: at least 99%).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
import tracemalloc
from typing import Any

import trio
import trio.testing
from _stats import percentiles, start
from adversary import emit

from trio_kad import Config, Dht
from trio_kad._listeners import Listeners
from trio_kad._messages import Store
from trio_kad.testing import node_of, open_simulation

MODES = ("latency", "fanout")
KEY = "watched"


async def measure_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds from ``set`` returning to the watcher holding the value, over TCP."""
    async with open_simulation(args.nodes, seed=args.seed, tcp=True) as sim:
        rng = random.Random(args.seed)
        writer, watcher = rng.sample(sim.nodes, 2)
        seen: dict[int, float] = {}
        got = trio.Event()
        after_set: list[float] = []
        after_start: list[float] = []
        async with watcher.watch(KEY) as updates, trio.open_nursery() as nursery:

            async def read() -> None:
                async for value in updates:
                    seen[value] = time.perf_counter()
                    got.set()

            nursery.start_soon(read)
            await writer.set(KEY, -1)
            with trio.fail_after(10):
                while -1 not in seen:
                    await got.wait()
                    got = trio.Event()
            for n in range(args.ops):
                await trio.sleep(args.interval)
                started = time.perf_counter()
                await writer.set(KEY, n)
                returned = time.perf_counter()
                with trio.move_on_after(5):
                    while n not in seen:
                        got = trio.Event()
                        await got.wait()
                if n in seen:
                    after_set.append(max(0.0, seen[n] - returned))
                    after_start.append(seen[n] - started)
            nursery.cancel_scope.cancel()
        return {
            "nodes": args.nodes,
            "updates": args.ops,
            "received": len(after_set),
            "polling": updates.polling,
            "from_set_return_ms": {k: v * 1000 for k, v in percentiles(after_set).items()},
            "from_set_start_ms": {k: v * 1000 for k, v in percentiles(after_start).items()},
            "arrived_before_set_returned": sum(1 for v in after_set if v == 0.0),
        }


def listener_bytes(count: int = 10_000) -> float:
    """Bytes one listener takes in a holder's registry (``tracemalloc``, ``count`` of them)."""
    registry = Listeners(Config())
    key = bytes(32)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for n in range(count):
        node_id = n.to_bytes(32, "big")
        registry.listen(
            key, node_id, (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 4000), "", 0.0
        )
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    registry.offer(Store(key, b"\x01"), 0.0)  # keeps the registry alive until measured
    return grown / count


async def measure_fanout(args: argparse.Namespace) -> dict[str, Any]:
    """Many watchers of one key: order, the last value, and updates after churn."""
    config = Config()
    async with open_simulation(args.fanout_nodes, seed=args.seed, config=config) as sim:
        writer = sim.nodes[0]
        seen: dict[bytes, list[tuple[int, float]]] = {}
        scopes: dict[bytes, trio.CancelScope] = {}

        async def watch(dht: Dht, *, task_status: trio.TaskStatus[None]) -> None:
            log = seen[dht.node_id] = []
            with scopes.setdefault(dht.node_id, trio.CancelScope()):
                async with dht.watch(KEY) as updates:
                    task_status.started()
                    async for value in updates:
                        log.append((value, trio.current_time()))

        async with trio.open_nursery() as nursery:
            for dht in sim.nodes:
                await nursery.start(watch, dht)
            await trio.sleep(config.watch_renew_interval / 2)  # every first LISTEN answered
            set_at: dict[int, float] = {}
            for n in range(args.updates):
                set_at[n] = trio.current_time()
                await writer.set(KEY, n)
                await trio.sleep(args.update_interval)
            await trio.sleep(config.watch_renew_interval)
            last = args.updates - 1
            disorder = sum(
                1 for log in seen.values() for (a, _), (b, _) in itertools.pairwise(log) if b <= a
            )
            saw_last = sum(1 for log in seen.values() if log and log[-1][0] == last)
            held = [len(node_of(d).pusher.listeners) for d in sim.nodes]
            # Churn: a share of the nodes stop at once, never the writer.
            rng = random.Random(args.seed)
            leaving = rng.sample(sim.nodes[1:], int(args.churn * len(sim.nodes)))
            for dht in leaving:
                scopes[dht.node_id].cancel()
                sim.stop_node(dht)
            survivors = [d.node_id for d in sim.nodes]
            later: dict[int, float] = {}
            for n in range(args.updates, args.updates + args.after_updates):
                later[n] = trio.current_time()
                await writer.set(KEY, n)
                await trio.sleep(args.update_interval)
            await trio.sleep(config.watch_renew_interval)
            within = 0
            for n, at in later.items():
                for node_id in survivors:
                    arrived = next((t for v, t in seen[node_id] if v == n), None)
                    within += arrived is not None and arrived - at <= config.watch_renew_interval
            nursery.cancel_scope.cancel()
        pairs = len(later) * len(survivors)
        return {
            "nodes": args.fanout_nodes,
            "watchers": len(seen),
            "updates": args.updates,
            "watchers_saw_last": saw_last,
            "seen_twice_or_out_of_order": disorder,
            "listeners_per_holder": percentiles([float(h) for h in held if h]),
            "holders_with_listeners": sum(1 for h in held if h),
            "bytes_per_listener": listener_bytes(),
            "churn": args.churn,
            "after_churn_updates": args.after_updates,
            "after_churn_watchers": len(survivors),
            "after_churn_received_within_renewal": within / pairs if pairs else 1.0,
            "renew_interval": config.watch_renew_interval,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {MODES}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=300, help="latency: TCP nodes")
    parser.add_argument("--ops", type=int, default=200, help="latency: updates")
    parser.add_argument("--interval", type=float, default=0.15, help="latency: seconds apart")
    parser.add_argument(
        "--fanout-nodes", type=int, default=1000, help="fanout: nodes, each watching"
    )
    parser.add_argument("--updates", type=int, default=100, help="fanout: updates before churn")
    parser.add_argument("--update-interval", type=float, default=0.5, help="virtual seconds")
    parser.add_argument("--churn", type=float, default=0.3, help="fanout: share of nodes that stop")
    parser.add_argument("--after-updates", type=int, default=20, help="fanout: updates after churn")
    args, modes, result = start("watch", parser, MODES)
    started = time.perf_counter()
    if "latency" in modes:
        result["latency"] = trio.run(measure_latency, args)
        print(f"latency: {result['latency']['from_set_return_ms']}", file=sys.stderr)
    if "fanout" in modes:
        clock = trio.testing.MockClock(autojump_threshold=0)
        result["fanout"] = trio.run(measure_fanout, args, clock=clock)
        fan = result["fanout"]
        print(
            f"fanout: {fan['watchers_saw_last']}/{fan['watchers']} saw the last value,"
            f" {fan['seen_twice_or_out_of_order']} twice or out of order;"
            f" after churn {fan['after_churn_received_within_renewal']:.2%} within renewal",
            file=sys.stderr,
        )
    emit(result, started)


if __name__ == "__main__":
    main()
