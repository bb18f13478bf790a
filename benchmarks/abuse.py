"""A node under attack on loopback: do honest clients still get served, and at what cost?

    python benchmarks/abuse.py --seconds 60

Three processes, so no side steals the others' event loop: the node
(``trio-kad serve`` on 127.0.0.1, default Config), an attacker process whose
sockets are bound to 127.0.0.2 .. 127.0.0.12 (one kind of abuse per address,
127.0.0.9 mixing the older ones), and this process, whose honest client-only
nodes do set/get from 127.0.0.1 at a modest pace. The attacks: oversize
length prefixes, garbage, CBOR tags, deep nesting, half frames held open,
floods of valid pings, connection storms, and valid-shaped requests with
hostile values, floods of provider announcements with fresh ids, bad ports
and full topics (127.0.0.10), floods of LISTENs (127.0.0.12) and listeners
that never read their pushes (127.0.0.11, listening to every honest client's keys).
Every loop is bounded in count and in time.

Prints one JSON object on stdout (params, Config, versions, honest success
rate and latency percentiles, the node's peak RSS and open sockets, the
attackers' connection counts) and a summary line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

import cbor2
import trio
from _stats import versions

import trio_kad
from trio_kad import Config, open_dht
from trio_kad._codec import encode_frame
from trio_kad._ids import key_id
from trio_kad._messages import (
    MAX_TTL,
    AddProvider,
    FindNode,
    FindValue,
    Listen,
    Ping,
    Request,
    RequestFrame,
    Store,
)

MIXED = "mixed"
# The source address of each kind of attack (tags and nesting share one).
SOURCES = {
    "oversize": "127.0.0.2",
    "garbage": "127.0.0.3",
    "tags": "127.0.0.4",
    "nesting": "127.0.0.4",
    "half_frames": "127.0.0.5",
    "ping_flood": "127.0.0.6",
    "connection_storm": "127.0.0.7",
    "hostile_values": "127.0.0.8",
    MIXED: "127.0.0.9",
    # Provider sets (issue 17): fresh node ids, full topics, ports 0 and 65536.
    "provider_flood": "127.0.0.10",
    # Watching a key (issue 18).
    "listen_flood": "127.0.0.12",
    "deaf_listeners": "127.0.0.11",
}
WORKERS_PER_KIND = 4
MAX_ITERATIONS_PER_WORKER = 1_000_000
HALF_FRAMES_HELD = 100  # per worker of the half_frames kind
STORM_HELD = 200  # idle connections one storm worker keeps open at most
OP_TIMEOUT = 5.0  # an honest operation slower than this counts as failed
PROVIDER_BURST = 50  # announcements per provider_flood connection
HONEST_TOPIC = "honest-service"


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the attacker process ----------------------------------------------------------


class Attack:
    """State shared by the attack workers of one process."""

    def __init__(self, address: tuple[str, int], deadline: float, seed: int) -> None:
        self.address = address
        self.deadline = deadline
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()

    def running(self) -> bool:
        return trio.current_time() < self.deadline

    async def connect(self, kind: str) -> trio.SocketStream | None:
        self.counts["connections_attempted"] += 1
        sock = trio.socket.socket()
        try:
            await sock.bind((SOURCES[kind], 0))
            with trio.fail_after(5):
                await sock.connect(self.address)
        except (OSError, trio.TooSlowError):
            sock.close()
            self.counts["connections_failed"] += 1
            return None
        return trio.SocketStream(sock)

    async def drain(self, kind: str, stream: trio.SocketStream, limit: float = 15.0) -> bool:
        """Read until the server closes (True) or ``limit`` passes (False)."""
        with trio.move_on_after(limit):
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    self.counts["closed_by_server"] += 1
                    self.counts[f"{kind}_closed_by_server"] += 1
                    return True
                self.counts["reply_bytes"] += len(data)
        # Not closed in time: under a connection storm this is mostly time spent
        # in the node's accept queue, behind the storm's connections.
        self.counts[f"{kind}_not_closed_within_{limit:g}s"] += 1
        return False

    async def send_and_drain(self, kind: str, data: bytes) -> None:
        stream = await self.connect(kind)
        if stream is None:
            return
        try:
            await stream.send_all(data)
            self.counts[f"{kind}_sent"] += 1
            await self.drain(kind, stream, 2.0)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.counts["closed_by_server"] += 1
        finally:
            await trio.aclose_forcefully(stream)

    def request(self, body: Request, request_id: int | None = None) -> bytes:
        rng = self.rng
        return encode_frame(
            RequestFrame(
                rng.getrandbits(64) if request_id is None else request_id,
                rng.randbytes(32),
                rng.choice([None, 1, 65535, rng.randrange(1, 65536)]),
                body,
            )
        )

    def garbage(self) -> bytes:
        size = self.rng.randrange(1, 2048)
        payload = self.rng.randbytes(size)
        return size.to_bytes(4, "big") + payload if self.rng.random() < 0.7 else payload

    def tagged(self) -> bytes:
        rng = self.rng
        tag = rng.choice([0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 256, 258, 55799])
        inner: object = rng.choice(["(a+)+$", rng.randbytes(64), [1, 2], 10**30])
        body = {"v": 1, "t": "ping", "id": 1, "from": cbor2.CBORTag(tag, inner)}
        payload = cbor2.dumps(rng.choice([body, cbor2.CBORTag(tag, inner)]))
        if rng.random() < 0.3:
            payload = bytes([0xD8, 28, 0x81, 0xD8, 29, 0x00])  # a shared-reference cycle
        return len(payload).to_bytes(4, "big") + payload

    def nested(self) -> bytes:
        depth = self.rng.randrange(5, 20000)
        payload = self.rng.choice([b"\x81", b"\xa1\x61a", b"\x9f"]) * depth + b"\x00"
        return len(payload).to_bytes(4, "big") + payload

    def hostile_request(self) -> bytes:
        rng = self.rng
        choice = rng.randrange(8)
        if choice == 0:  # about the largest value the node accepts, under a random key
            # One CBOR item (a byte string), as a storing node now checks: random
            # bytes would be refused as MALFORMED and fill nothing.
            value = cbor2.dumps(rng.randbytes(64 * 1024 - 8))
            return self.request(Store(rng.randbytes(32), value, MAX_TTL))
        if choice == 1:
            return self.request(Store(rng.randbytes(32), b"\x00", 0, rng.random() < 0.5))
        if choice == 2:
            target = rng.randbytes(32)
            return self.request(FindNode(target) if rng.random() < 0.5 else FindValue(target))
        fields: dict[str, object] = {"v": 1, "t": "store", "id": 1, "from": rng.randbytes(32)}
        hostile: list[tuple[str, object]] = [
            ("id", 2**64),
            ("id", -1),
            ("from", rng.randbytes(31)),
            ("port", 70000),
            ("key", "not bytes"),
            ("value", rng.randbytes(70 * 1024)),
            ("ttl", 2**40),
            ("v", 99),
            ("t", "x" * 1000),
            ("extra", [None] * 3),
        ]
        for field, value in rng.sample(hostile, rng.randrange(1, 4)):
            fields[field] = value
        payload = cbor2.dumps(fields)
        return len(payload).to_bytes(4, "big") + payload

    # --- the workers, one loop per kind ---

    async def oversize(self) -> None:
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if not self.running():
                return
            length = self.rng.choice([2**32 - 1, 2**31, 1024 * 1024 + 1])
            await self.send_and_drain("oversize", length.to_bytes(4, "big"))

    async def simple(self, kind: str, make: Any, per_connection: int) -> None:
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if not self.running():
                return
            data = b"".join(make() for _ in range(per_connection))
            await self.send_and_drain(kind, data)

    async def half_frames(self) -> None:
        async def hold(rounds: int) -> None:
            for _ in range(rounds):
                if not self.running():
                    return
                stream = await self.connect("half_frames")
                if stream is None:
                    await trio.sleep(0.5)
                    continue
                try:
                    frame = self.request(Ping())
                    await stream.send_all(frame[: self.rng.randrange(1, len(frame))])
                    self.counts["half_frames_sent"] += 1
                    await self.drain("half_frames", stream)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.counts["closed_by_server"] += 1
                finally:
                    await trio.aclose_forcefully(stream)

        async with trio.open_nursery() as nursery:
            for _ in range(HALF_FRAMES_HELD):
                nursery.start_soon(hold, 1000)

    async def ping_flood(self) -> None:
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if not self.running():
                return
            stream = await self.connect("ping_flood")
            if stream is None:
                await trio.sleep(0.1)
                continue
            try:
                async with trio.open_nursery() as nursery:
                    left = max(0.0, self.deadline - trio.current_time())
                    nursery.start_soon(self.drain, "ping_flood", stream, left)
                    while self.running():
                        batch = b"".join(self.request(Ping()) for _ in range(200))
                        try:
                            await stream.send_all(batch)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            break  # disconnected for ignoring OVERLOADED; the drain counts it
                        self.counts["ping_flood_sent"] += 200
                    # Give the drain a moment to see the close, then move on.
                    nursery.cancel_scope.deadline = trio.current_time() + 1.0
            finally:
                await trio.aclose_forcefully(stream)

    async def connection_storm(self) -> None:
        held: list[trio.SocketStream] = []
        try:
            for _ in range(MAX_ITERATIONS_PER_WORKER):
                if not self.running():
                    return
                stream = await self.connect("connection_storm")
                if stream is None:
                    await trio.sleep(0.05)
                    continue
                if len(held) < STORM_HELD and self.rng.random() < 0.5:
                    held.append(stream)  # idle: it holds a slot until idle_timeout
                else:
                    await trio.aclose_forcefully(stream)
                await trio.sleep(0)
        finally:
            for stream in held:
                await trio.aclose_forcefully(stream)

    async def provider_flood(self) -> None:
        """Announcements under fresh node ids to a few topics; replies counted by outcome."""
        topics = [key_id(f"flooded-{n}") for n in range(4)] + [key_id(HONEST_TOPIC)]
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if not self.running():
                return
            stream = await self.connect("provider_flood")
            if stream is None:
                await trio.sleep(0.1)
                continue
            frames = []
            for request_id in range(PROVIDER_BURST):
                if self.rng.random() < 0.1:  # a port the decoder refuses (MALFORMED)
                    fields = {"v": 1, "t": "add_provider", "id": request_id}
                    fields |= {"from": self.rng.randbytes(32), "key": topics[0]}
                    fields["service_port"] = self.rng.choice([0, 65536, -1])
                    payload = cbor2.dumps(fields)
                    frames.append(len(payload).to_bytes(4, "big") + payload)
                else:
                    topic = self.rng.choice(topics)
                    frames.append(self.request(AddProvider(topic, 80), request_id))
            try:
                await stream.send_all(b"".join(frames))
                self.counts["provider_flood_sent"] += PROVIDER_BURST
                await self.count_replies("provider_flood", stream, PROVIDER_BURST)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.counts["closed_by_server"] += 1
            finally:
                await trio.aclose_forcefully(stream)

    async def count_replies(self, kind: str, stream: trio.SocketStream, expected: int) -> None:
        """Read up to ``expected`` reply frames; count them by type and error code."""
        buffer = b""
        seen = 0
        with trio.move_on_after(5):
            while seen < expected:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
                while len(buffer) >= 4 and len(buffer) >= 4 + (n := int.from_bytes(buffer[:4])):
                    reply, buffer = cbor2.loads(buffer[4 : 4 + n]), buffer[4 + n :]
                    seen += 1
                    outcome = reply.get("t") if reply.get("t") != "error" else reply.get("code")
                    self.counts[f"{kind}_reply_{outcome}"] += 1

    async def mixed(self) -> None:
        makers = [self.garbage, self.tagged, self.nested, self.hostile_request]
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if not self.running():
                return
            choice = self.rng.randrange(len(makers) + 1)
            if choice == len(makers):
                await self.send_and_drain(MIXED, b"\xff\xff\xff\xff")
            else:
                await self.send_and_drain(MIXED, makers[choice]())

    # --- watching a key (issue 18) ---

    async def listen_flood(self) -> None:
        """LISTENs for random keys under made-up ids: bounded by the listener limits."""
        await self.simple("listen_flood", lambda: self.request(Listen(self.rng.randbytes(32))), 200)

    async def deaf_listeners(self) -> None:
        """LISTENs to every honest client's keys over its own connection, then never reads.

        Each honest ``set`` makes the node push to it: pushes that fill the
        socket buffers and are never answered (``Config.watch_push_timeout``).
        """
        keys = [key_id(honest_key(i, n)) for i in range(HONEST_INDEXES) for n in range(50)]
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if not self.running():
                return
            stream = await self.connect("deaf_listeners")
            if stream is None:
                await trio.sleep(0.5)
                continue
            sender = self.rng.randbytes(32)
            frames = b"".join(
                encode_frame(RequestFrame(n + 1, sender, None, Listen(key), n == 0))
                for n, key in enumerate(keys)
            )
            try:
                await stream.send_all(frames)
                self.counts["deaf_listeners_sent"] += len(keys)
                # Never reads; renews with a new connection now and then.
                await trio.sleep(min(30.0, max(0.0, self.deadline - trio.current_time())))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.counts["closed_by_server"] += 1
            finally:
                await trio.aclose_forcefully(stream)


async def attack(target: tuple[str, int], seconds: float, seed: int) -> dict[str, int]:
    state = Attack(target, trio.current_time() + seconds, seed)
    workers: list[Any] = [
        state.oversize,
        lambda: state.simple("garbage", state.garbage, 4),
        lambda: state.simple("tags", state.tagged, 2),
        lambda: state.simple("nesting", state.nested, 1),
        state.half_frames,
        state.ping_flood,
        state.connection_storm,
        lambda: state.simple("hostile_values", state.hostile_request, 8),
        state.mixed,
        state.provider_flood,
        state.listen_flood,
        state.deaf_listeners,
    ]
    # A hard stop: nothing may outlive the run by more than the longest drain.
    with trio.move_on_after(seconds + 20):
        async with trio.open_nursery() as nursery:
            for worker in workers:
                for _ in range(WORKERS_PER_KIND):
                    nursery.start_soon(worker)
    return dict(state.counts)


# --- the honest side (this process) ---------------------------------------------------


def read_proc(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS in KiB, open sockets and CPU time (ms) of process ``pid``."""
    info: dict[str, int] = {}
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    info[key] = int(rest.split()[0])
        sockets = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        info["sockets"] = sockets
        with open(f"/proc/{pid}/stat") as stat:
            # Fields 14 and 15 (utime, stime), counted after the ")" that ends the name.
            fields = stat.read().rpartition(")")[2].split()
        ticks = os.sysconf("SC_CLK_TCK")
        info["cpu_ms"] = (int(fields[11]) + int(fields[12])) * 1000 // ticks
    return info


HONEST_INDEXES = 16
"""The deaf listeners listen to the keys of this many honest clients (``--honest`` at most)."""


def honest_key(index: int, n: int) -> str:
    """The ``n``-th of the 50 keys honest client ``index`` sets and gets."""
    return f"honest-{index}-{n}"


async def honest_client(
    index: int,
    bootstrap: tuple[str, int],
    deadline: float,
    pace: float,
    latencies: list[float],
    outcomes: Counter[str],
    written: dict[str, int],
) -> None:
    async with open_dht(bootstrap=[bootstrap], client_only=True) as dht:
        for step in range(MAX_ITERATIONS_PER_WORKER):
            if trio.current_time() >= deadline:
                return
            # Even steps set a key, the next step gets it back.
            key = honest_key(index, (step // 2) % 50)
            start = time.perf_counter()
            try:
                with trio.fail_after(OP_TIMEOUT):
                    if step % 2 == 0:
                        await dht.set(key, step)
                        written[key] = step
                        ok = True
                    else:
                        ok = await dht.get(key) == written.get(key)
            except (trio_kad.DhtError, trio.TooSlowError) as exc:
                outcomes[type(exc).__name__] += 1
                ok = False
            latencies.append(time.perf_counter() - start)
            outcomes["ok" if ok else "failed"] += 1
            await trio.sleep(pace)


async def honest_provider(
    bootstrap: tuple[str, int], deadline: float, latencies: list[float], outcomes: Counter[str]
) -> None:
    """One honest service announces itself; another client finds it once a second."""
    async with (
        open_dht(bootstrap=[bootstrap], client_only=True) as provider,
        open_dht(bootstrap=[bootstrap], client_only=True) as finder,
    ):
        with trio.fail_after(OP_TIMEOUT):
            await provider.announce(HONEST_TOPIC, port=7000)
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if trio.current_time() >= deadline:
                return
            start = time.perf_counter()
            try:
                with trio.fail_after(OP_TIMEOUT):
                    found = await finder.find_providers(HONEST_TOPIC, limit=64)
                ok = provider.node_id in {p.node_id for p in found}
            except (trio_kad.DhtError, trio.TooSlowError) as exc:
                outcomes[type(exc).__name__] += 1
                ok = False
            latencies.append(time.perf_counter() - start)
            outcomes["found" if ok else "missed"] += 1
            await trio.sleep(1.0)


async def honest_side(args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    node = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_kad", "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        env=env,
    )
    attacker: trio.Process | None = None
    result: dict[str, Any] = {}
    try:
        assert node.stdout is not None
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                chunk = await node.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError("the node exited before listening")
                line += chunk
        # "listening on 127.0.0.1:PORT node HEX"
        host, _, port = line.split()[2].decode().rpartition(":")
        address = (host, int(port))
        if not args.no_attack:
            attacker = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    __file__,
                    "--role",
                    "attack",
                    "--target",
                    f"{host}:{port}",
                    "--seconds",
                    str(args.seconds),
                    "--seed",
                    str(args.seed),
                ],
                stdout=subprocess.PIPE,
            )
        latencies: list[float] = []
        outcomes: Counter[str] = Counter()
        samples: list[dict[str, int]] = []
        deadline = trio.current_time() + args.seconds

        async def sample() -> None:
            while trio.current_time() < deadline:
                samples.append(read_proc(node.pid))
                await trio.sleep(0.5)

        provider_latencies: list[float] = []
        provider_outcomes: Counter[str] = Counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            nursery.start_soon(
                honest_provider, address, deadline, provider_latencies, provider_outcomes
            )
            for index in range(args.honest):
                written: dict[str, int] = {}
                nursery.start_soon(
                    honest_client,
                    index,
                    address,
                    deadline,
                    1.0 / args.honest_rate,
                    latencies,
                    outcomes,
                    written,
                )
        attack_counts: dict[str, int] = {}
        if attacker is not None:
            assert attacker.stdout is not None
            data = b""
            with trio.move_on_after(60):
                while chunk := await attacker.stdout.receive_some(65536):
                    data += chunk
            await attacker.wait()
            if attacker.returncode != 0 or not data:
                raise RuntimeError(f"the attacker process failed (exit {attacker.returncode})")
            attack_counts = json.loads(data)
        end = read_proc(node.pid)
        total = outcomes["ok"] + outcomes["failed"]
        sockets = [s.get("sockets", 0) for s in samples]
        result = {
            "honest": {
                "clients": args.honest,
                "ops_per_second_each": args.honest_rate,
                "operations": total,
                "success_rate": outcomes["ok"] / total if total else None,
                "outcomes": dict(outcomes),
                "latency_p50_ms": _ms(percentile(latencies, 0.50)),
                "latency_p99_ms": _ms(percentile(latencies, 0.99)),
                "latency_max_ms": _ms(max(latencies, default=None)),
            },
            "honest_provider": {
                "finds": len(provider_latencies),
                "outcomes": dict(provider_outcomes),
                "latency_p50_ms": _ms(percentile(provider_latencies, 0.50)),
                "latency_max_ms": _ms(max(provider_latencies, default=None)),
            },
            "node": {
                "peak_rss_kib": end.get("VmHWM"),
                "rss_end_kib": end.get("VmRSS"),
                "open_sockets_peak": max(sockets, default=None),
                "open_sockets_end": end.get("sockets"),
                "cpu_seconds": end.get("cpu_ms", 0) / 1000,
            },
            "attack": {"sources": SOURCES, "counts": attack_counts},
        }
    finally:
        for process in (attacker, node):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGINT)
        for process in (attacker, node):
            if process is None:
                continue
            with trio.move_on_after(10) as scope:
                await process.wait()
            if scope.cancelled_caught:
                process.kill()
                await process.wait()
    result["node"]["exit_code"] = node.returncode
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--honest", type=int, default=4, help="honest clients (default 4)")
    parser.add_argument(
        "--honest-rate", type=float, default=20.0, help="operations/s per honest client"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-attack", action="store_true", help="baseline: honest clients only")
    parser.add_argument(
        "--role", choices=["honest", "attack"], default="honest", help=argparse.SUPPRESS
    )
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "attack":
        host, _, port = args.target.rpartition(":")
        counts = trio.run(attack, (host, int(port)), args.seconds, args.seed)
        print(json.dumps(counts, sort_keys=True), flush=True)
        return
    started = time.perf_counter()
    measured = trio.run(honest_side, args)
    result: dict[str, Any] = {
        "benchmark": "abuse",
        "seconds": args.seconds,
        "honest_clients": args.honest,
        "honest_rate": args.honest_rate,
        "seed": args.seed,
        "attacked": not args.no_attack,
        "config": asdict(Config()),
        "versions": versions(),
        **measured,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result, indent=2))
    honest = result["honest"]
    node = result["node"]
    print(
        f"abuse: {honest['operations']} honest ops, success {honest['success_rate']},"
        f" p50 {honest['latency_p50_ms']} ms, p99 {honest['latency_p99_ms']} ms;"
        f" node peak RSS {node['peak_rss_kib']} KiB, sockets peak {node['open_sockets_peak']};"
        f" attacker connections {result['attack']['counts'].get('connections_attempted', 0)}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
