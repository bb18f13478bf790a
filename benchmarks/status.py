"""Honest gets while /metrics is scraped in a loop: does the status server disturb the DHT?

    python benchmarks/status.py --nodes 20 --keys 200 --scrapers 4 --seconds 5

N nodes on real TCP (loopback) in this process, one of them with the status
server of ``trio-kad serve --status``. Gets of keys that node does not hold
are timed from it three times: with nobody scraping, with ``--scrapers``
processes fetching /metrics in a tight loop (one connection per request), and
the same with the status server's render cache off (``cache_seconds=0``: every
scrape rendered). The scrapers are other processes, as a Prometheus server
would be, so their own work is not counted here.

Prints one JSON object on stdout and a short summary on stderr. Wall-clock
figures: run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import trio
from _stats import percentiles, versions

from trio_kad import Config, Dht, open_dht
from trio_kad._status import StatusServer
from trio_kad.testing import open_simulation

SCRAPER = """
import socket, sys, time
host, port, path, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
request = f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n".encode()
end, sent, ok = time.monotonic() + seconds, 0, 0
while time.monotonic() < end:
    sent += 1
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        ok += data.startswith(b"HTTP/1.1 200")
    except OSError:
        pass
print(sent, ok)
"""


async def timed_gets(dht: Dht, keys: list[str], rng: random.Random, seconds: float) -> Any:
    """Get random ``keys`` one after another for ``seconds``; latencies in ms and misses."""
    latencies: list[float] = []
    misses = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        key = rng.choice(keys)
        started = time.perf_counter()
        misses += await dht.get(key) != key
        latencies.append((time.perf_counter() - started) * 1000)
    return {"gets": len(latencies), "misses": misses, "latency_ms": percentiles(latencies)}


async def scraped(
    args: argparse.Namespace, url: str, dht: Dht, keys: list[str], rng: random.Random
) -> Any:
    """``timed_gets`` while ``args.scrapers`` processes fetch ``url`` in a loop."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    outputs: list[bytes] = []

    async def scraper() -> None:
        argv = [sys.executable, "-c", SCRAPER, host, port, "/metrics", str(args.seconds + 1)]
        done = await trio.run_process(argv, capture_stdout=True)
        outputs.append(done.stdout)

    async with trio.open_nursery() as nursery:
        for _ in range(args.scrapers):
            nursery.start_soon(scraper)
        await trio.sleep(0.5)  # the scrapers are running
        result = await timed_gets(dht, keys, rng, args.seconds)
    sent, ok = (sum(int(out.split()[i]) for out in outputs) for i in (0, 1))
    return result | {"scrapes_per_second": sent / (args.seconds + 1), "scrapes_ok": ok / sent}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    config = Config()
    result: dict[str, Any] = {
        "benchmark": "status",
        "nodes": args.nodes,
        "keys": args.keys,
        "scrapers": args.scrapers,
        "seconds": args.seconds,
        "seed": args.seed,
        "versions": versions(),
    }
    async with open_simulation(args.nodes, seed=args.seed, tcp=True, config=config) as sim:
        status = StatusServer("127.0.0.1:0")
        async with (
            open_dht(bootstrap=[sim.nodes[0].address], transport=status.transport) as dht,
            trio.open_nursery() as nursery,
        ):
            cached = await nursery.start(status.run, dht)
            status.cache_seconds = 0.0
            uncached = await nursery.start(status.run, dht)
            keys = [f"status-{args.seed}-{i}" for i in range(args.keys)]
            for key in keys:
                await sim.nodes[rng.randrange(args.nodes)].set(key, key)
            # Keys it holds would be answered locally (all of them in a network of k or fewer).
            keys = [key for key in keys if dht.get_local(key) is None] or keys
            result["idle"] = await timed_gets(dht, keys, rng, args.seconds)
            result["scraped"] = await scraped(args, cached, dht, keys, rng)
            result["scraped_uncached"] = await scraped(args, uncached, dht, keys, rng)
            nursery.cancel_scope.cancel()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--scrapers", type=int, default=4, help="scraping processes")
    parser.add_argument("--seconds", type=float, default=5.0, help="of gets per phase")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = trio.run(main_async, args)
    json.dump(result, sys.stdout, indent=2)
    print()
    summary = ", ".join(
        f"{phase} p50 {result[phase]['latency_ms']['p50']:.2f} ms"
        f" p95 {result[phase]['latency_ms']['p95']:.2f} ms"
        + (f" ({result[phase]['scrapes_per_second']:.0f} scrapes/s)" if phase != "idle" else "")
        for phase in ("idle", "scraped", "scraped_uncached")
    )
    print(f"gets over TCP, {args.nodes} nodes: {summary}", file=sys.stderr)


if __name__ == "__main__":
    main()
