"""``trio-kad demo``: a small network on loopback that shows what a DHT does."""

from __future__ import annotations

import random
from contextlib import AsyncExitStack
from typing import Any

import trio

from ._address import format_address
from ._api import Dht
from ._config import Config
from ._ids import distance, key_id
from ._open import open_dht

DEMO_PAIRS: list[tuple[str, Any]] = [
    ("greeting", "hello, kademlia"),
    ("answer", 42),
    ("paper", {"title": "Kademlia", "year": 2002, "metric": "xor"}),
]


def _short(node_id: bytes) -> str:
    return node_id.hex()[:8]


async def run_demo(node_count: int, k: int, *, out: Any = None) -> int:
    """Start ``node_count`` nodes over TCP on 127.0.0.1, store and fetch values, narrate."""

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    config = Config(k=k, alpha=min(3, k))
    rng = random.Random(2002)
    say(f"trio-kad demo: {node_count} nodes on 127.0.0.1 over TCP, k={k}, alpha={config.alpha}")
    clock = trio.current_time
    async with AsyncExitStack() as stack:
        started = clock()
        first = await stack.enter_async_context(open_dht(config=config))
        nodes: list[Dht] = [first]
        for _ in range(node_count - 1):
            node = await stack.enter_async_context(
                open_dht(bootstrap=[first.address], config=config)
            )
            nodes.append(node)
        elapsed = clock() - started
        contacts = [n.statistics().contacts for n in nodes]
        say(
            f"network formed in {elapsed * 1000:.0f} ms: node 0 at "
            f"{format_address(first.address)}, the others joined through it"
        )
        say(
            f"  routing tables hold {min(contacts)}-{max(contacts)} contacts "
            f"(mean {sum(contacts) / len(contacts):.1f})"
        )
        index = {n.node_id: i for i, n in enumerate(nodes)}
        for key, value in DEMO_PAIRS:
            ident = key_id(key)
            say()
            writer = rng.choice(nodes)
            t0 = clock()
            acks = await writer.set(key, value)
            set_ms = (clock() - t0) * 1000
            say(
                f"set {key!r} = {value!r} from node {index[writer.node_id]}: "
                f"{acks} node(s) acknowledged in {set_ms:.1f} ms"
            )
            say(f"  key id {_short(ident)}… (SHA-256 of the key)")
            by_closeness = sorted(nodes, key=lambda n: distance(n.node_id, ident))
            holders = [n for n in nodes if n.get_local(key) is not None]
            closest = by_closeness[:k]
            say(
                "  held by nodes "
                + ", ".join(f"{index[n.node_id]} ({_short(n.node_id)})" for n in holders)
            )
            matched = sum(1 for n in closest if n in holders)
            say(f"  {matched} of the {len(closest)} nodes closest to the key (XOR metric) hold it")
            reader = next((n for n in reversed(by_closeness) if n not in holders), by_closeness[-1])
            t0 = clock()
            got = await reader.get(key)
            get_ms = (clock() - t0) * 1000
            report = reader.last_lookup
            how = "from its own store"
            if report is not None and report.target == ident:
                where = report.found_at
                source = f"node {index.get(where.node_id, '?')}" if where is not None else "?"
                how = f"in {report.rounds} hop(s), {report.queries} RPC(s), found at {source}"
            say(
                f"get {key!r} from node {index[reader.node_id]} (the farthest from the key): "
                f"{got!r} {how}, {get_ms:.1f} ms"
            )
            if got != value:
                say("  MISMATCH: the value read back differs")
                return 1
        say()
        missing = await nodes[-1].get("no such key")
        say(f"get 'no such key' -> {missing!r} (absent everywhere)")
        stats = [n.statistics() for n in nodes]
        say(
            f"traffic: {sum(s.transport.frames_sent for s in stats)} frames, "
            f"{sum(s.transport.bytes_sent for s in stats)} bytes, "
            f"{sum(s.transport.connections_opened for s in stats)} connections opened"
        )
        say("shutting down: leaving open_dht closes every connection and task")
    return 0
