"""SIGTERM against SIGKILL of a third of real ``trio-kad serve`` processes: pairs still found?

    python benchmarks/leave_processes.py --nodes 30 --keys 300 --k 3 --runs 2

Starts N ``trio-kad serve --k K`` processes on 127.0.0.1, each joining
through a random earlier one, and a client-only node (in this process)
stores the keys. A third of the processes are then sent SIGTERM (serve hands
its pairs over and exits 0) or SIGKILL (gone at once), all at the same time;
once they have exited, a new client joined through a process that stayed
gets every key. Real time and real TCP: the in-memory twin is ``leave.py``.

Prints one JSON object on stdout and a short summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import signal
import subprocess
import sys
import time
from typing import Any

import trio
from _stats import versions

from trio_kad import Config, open_dht

LISTENING = "listening on "


def start(args: argparse.Namespace, bootstrap: list[str]) -> tuple[subprocess.Popen[str], str]:
    """One ``serve`` process and its address, once it has joined."""
    argv = [sys.executable, "-m", "trio_kad", "serve", "--k", str(args.k), "--alpha", "3"]
    process = subprocess.Popen(
        argv + (["--bootstrap", *bootstrap] if bootstrap else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(30):
            process.kill()
            raise RuntimeError("a serve process did not start within 30 s")
    line = process.stdout.readline()
    if not line.startswith(LISTENING):
        process.kill()
        raise RuntimeError(f"unexpected first line {line!r}")
    return process, line.split()[2]


async def publish(peer: str, keys: list[str], k: int) -> None:
    async with open_dht(bootstrap=[peer], client_only=True, config=Config(k=k)) as client:
        for key in keys:
            await client.set(key, key)


async def count_found(peer: str, keys: list[str], k: int) -> int:
    async with open_dht(bootstrap=[peer], client_only=True, config=Config(k=k)) as client:
        return sum([await client.get(key) == key for key in keys])


def one_run(args: argparse.Namespace, seed: int, signum: int) -> dict[str, Any]:
    rng = random.Random(seed)
    processes: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for _ in range(args.nodes):
            bootstrap = [rng.choice(processes)[1]] if processes else []
            processes.append(start(args, bootstrap))
        time.sleep(args.settle)  # joins refresh their far buckets in the background
        keys = [f"leave-{seed}-{i}" for i in range(args.keys)]
        trio.run(publish, processes[0][1], keys, args.k)
        leaving = rng.sample(processes, args.nodes // 3)
        staying = [p for p in processes if p not in leaving]
        started = time.perf_counter()
        for process, _ in leaving:
            process.send_signal(signum)
        codes = [process.wait(60) for process, _ in leaving]
        leave_seconds = time.perf_counter() - started
        found = trio.run(count_found, rng.choice(staying)[1], keys, args.k)
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)
            if process.stdout is not None:
                process.stdout.close()
    return {
        "found_fraction": found / len(keys),
        "leave_seconds": leave_seconds,
        "exit_codes": sorted(set(codes)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--k", type=int, default=3, help="replication factor (serve --k)")
    parser.add_argument("--runs", type=int, default=2, help="networks per signal (seeds)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after the joins")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result: dict[str, Any] = {
        "benchmark": "leave_processes",
        **{name: getattr(args, name) for name in ("nodes", "keys", "k", "runs", "seed")},
        "versions": versions(),
    }
    wall = time.perf_counter()
    for name, signum in (("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
        runs = [one_run(args, args.seed + i, signum) for i in range(args.runs)]
        result[name] = {key: [r[key] for r in runs] for key in runs[0]} | {
            "found_fraction_mean": sum(r["found_fraction"] for r in runs) / len(runs)
        }
    result["wall_seconds"] = time.perf_counter() - wall
    json.dump(result, sys.stdout, indent=2)
    print()
    print(
        f"{args.nodes // 3} of {args.nodes} serve processes stopped at once, k = {args.k}: found "
        f"{result['sigterm']['found_fraction_mean']:.1%} after SIGTERM, "
        f"{result['sigkill']['found_fraction_mean']:.1%} after SIGKILL",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
