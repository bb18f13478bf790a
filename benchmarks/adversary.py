"""Hostile peers among honest ones: how many gets still return the right value, and at what cost?

    python benchmarks/adversary.py --nodes 1000 --fractions 0,0.1,0.2,0.3 \\
        --paths 1,2,4,8 --quorums 1,3 --behaviours all

N nodes on the in-memory network under Trio's MockClock; a fraction f of them
is hostile. A hostile node is a real node (it joins, keeps a routing table and
answers PINGs and STOREs) whose transport hands requests to the adversary
instead of to its own handler. The behaviours, named for ``--behaviours``:

- ``drop``: never answers (the network's "drop" mode for its address);
- ``poison``: answers FIND_NODE and FIND_VALUE with only hostile nodes (the
  colluders closest to the target) and invented ids closer still, placed at
  hostile addresses;
- ``wrong-value``: answers FIND_VALUE with a wrong value, the same one from
  every colluder, for any key;
- ``forge``: answers FIND_NODE and FIND_VALUE with the honest ids it knows,
  each at a wrong address (a dead port or a hostile node);
- ``store-flood``: sends honest nodes STORE_MANY frames of junk keys (half of
  the values valid CBOR, half not), ``--flood-rate`` frames a second each.

The four reply behaviours are dealt out in turn among the hostile nodes;
``store-flood`` is done by every hostile node on top of its reply behaviour.

``benchmarks/records.py --modes adversary`` deals out three more, against
signed records (``SIGNED_BEHAVIOURS``; not in ``all`` here, whose gets are plain):

- ``stale-signed``: answers FIND_VALUE with the lowest-seq signed record any
  colluder was sent for that key (validly signed, but old);
- ``forged-signed``: answers FIND_VALUE with the newest record seen under a
  far higher seq, its signature left as it was or its value changed;
- ``miskeyed-signed``: answers FIND_VALUE with a record validly signed by
  the adversary's own key, at the highest seq, under the key asked for.

For each fraction: the nodes join in random order (hostile ones among them).
Then for each lookup width d (``Config.disjoint_paths``) and quorum q, fresh
client-only writers ``set`` ``--keys`` keys and fresh client-only readers
``get`` each once (``dht.get(key, quorum=q)``; ``QuorumError`` is a miss).
Per cell: the share of right values, RPCs per get (the reader's transport
counter, the cache STORE a get sends included), virtual seconds per get, wall
time per get, and the honest nodes that some honest node bans at the end of
the cell. Features the installed trio-kad lacks (``disjoint_paths``,
``quorum=``) are detected; only d = 1 and q = 1 then run, and the JSON says
what was unavailable.

Prints one JSON object on stdout and a table on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import inspect
import json
import math
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import cbor2
import trio
import trio.testing
from _stats import percentiles, versions

from trio_kad import (
    Config,
    Dht,
    DhtError,
    MemoryNetwork,
    MemoryTransport,
    SigningKey,
    Transport,
    open_dht,
)
from trio_kad._ids import Contact
from trio_kad._messages import (
    MAX_SEQ,
    FindNode,
    FindValue,
    FoundValue,
    Nodes,
    Reply,
    ReplyFrame,
    Request,
    RequestFrame,
    SignedPart,
    Store,
    StoredMany,
    StoreMany,
)
from trio_kad._transport import RequestHandler
from trio_kad.testing import Simulation, banned, open_simulation

Address = tuple[str, int]

HOST = "127.0.0.1"
REPLY_BEHAVIOURS = ("drop", "poison", "wrong-value", "forge")
BEHAVIOURS = (*REPLY_BEHAVIOURS, "store-flood")
SIGNED_BEHAVIOURS = ("stale-signed", "forged-signed", "miskeyed-signed")
"""Lies about signed records (``benchmarks/records.py``), not among ``BEHAVIOURS``."""
DEAD_PORTS = range(9000, 10000)
"""Ports nobody listens on (the memory network hands out ports from 10000 up)."""
FLOOD_BATCH = 32
"""Junk pairs per STORE_MANY frame of the flood."""


def available_features() -> dict[str, bool]:
    """Which of the lookup hardening features the installed trio-kad has."""
    return {
        "disjoint_paths": "disjoint_paths" in {f.name for f in dataclasses.fields(Config)},
        "quorum": "quorum" in inspect.signature(Dht.get).parameters,
    }


class Adversary:
    """What the colluding hostile nodes share: who they are and how they lie."""

    def __init__(self, rng: random.Random, k: int) -> None:
        self.rng = rng
        self.k = k
        self.ids: set[bytes] = set()
        self.contacts: list[tuple[int, Contact]] = []
        """The hostile nodes, with their ids as integers (for XOR distances)."""
        self.honest: list[Address] = []
        """Where honest nodes listen: the flood's targets."""
        self.lies: Counter[str] = Counter()
        self.signed_seen: dict[bytes, list[tuple[bytes, SignedPart]]] = {}
        """Every signed record a colluder was sent, by key, in the order they came."""
        self.own_key = SigningKey.from_seed(rng.randbytes(32))
        """The adversary's own key, which signs its mis-keyed records."""

    def join(self, dht: Dht) -> None:
        self.ids.add(dht.node_id)
        contact = Contact(dht.node_id, *dht.address)
        self.contacts.append((int.from_bytes(dht.node_id, "big"), contact))

    def hostile_address(self) -> Address:
        return self.rng.choice(self.contacts)[1].address

    def poisoned(self, target: bytes) -> tuple[Contact, ...]:
        """The colluders closest to ``target``, then invented ids closer than any real node."""
        t = int.from_bytes(target, "big")
        named = [c for _, c in heapq.nsmallest(self.k // 2, self.contacts, key=lambda p: p[0] ^ t)]
        while len(named) < self.k:
            invented = target[:24] + self.rng.randbytes(8)
            named.append(Contact(invented, *self.hostile_address()))
        return tuple(named)

    def forged(self, contact: Contact) -> Contact:
        """An honest id at a wrong address: a dead port or a hostile node."""
        if contact.node_id in self.ids:
            return contact
        if self.rng.random() < 0.5:
            return Contact(contact.node_id, HOST, self.rng.choice(DEAD_PORTS))
        return Contact(contact.node_id, *self.hostile_address())

    @staticmethod
    def wrong_value(key: bytes) -> bytes:
        # The same for every colluder, so that they agree on it (quorum reads).
        return cbor2.dumps(f"forged {key.hex()[:16]}")

    def watch_signed(self, body: Request) -> None:
        """Remember the signed records in a STORE or STORE_MANY, for the signed lies."""
        pairs = body.pairs if isinstance(body, StoreMany) else (body,)
        for pair in pairs:
            if isinstance(pair, Store) and pair.signed is not None:
                self.signed_seen.setdefault(pair.key, []).append((pair.value, pair.signed))

    def signed_lie(self, behaviour: str, key: bytes) -> FoundValue | None:
        """The signed-record lie of ``behaviour`` for ``key``; ``None`` when it has none."""
        seen = self.signed_seen.get(key, [])
        if behaviour == "stale-signed":
            if not seen:
                return None
            value, signed = min(seen, key=lambda record: record[1].seq)
            return FoundValue(value, 3600, signed)
        if behaviour == "forged-signed":
            if not seen:
                return None
            value, signed = max(seen, key=lambda record: record[1].seq)
            if self.rng.random() < 0.5:  # a higher seq under the old signature
                forged = SignedPart(
                    signed.public_key, signed.salt, signed.seq + 1000, signed.signature
                )
                return FoundValue(value, 3600, forged)
            # Another value under the newest signature.
            return FoundValue(cbor2.dumps(f"forged {key.hex()[:16]}"), 3600, signed)
        value = cbor2.dumps(f"mis-keyed {key.hex()[:16]}")
        return FoundValue(value, 3600, self.own_key.sign(b"", MAX_SEQ, value))

    async def answer(
        self, behaviour: str, frame: RequestFrame, remote: Address, honest: RequestHandler
    ) -> Reply:
        """A hostile node's reply to ``frame``; ``honest`` is its own node's handler."""
        body = frame.body
        if behaviour in SIGNED_BEHAVIOURS:
            if isinstance(body, FindValue):
                lie = self.signed_lie(behaviour, body.key)
                if lie is not None:
                    self.lies[behaviour] += 1
                    return lie
            self.watch_signed(body)
            return await honest(frame, remote)
        if isinstance(body, FindNode | FindValue):
            target = body.target if isinstance(body, FindNode) else body.key
            if behaviour == "poison":
                self.lies["poison"] += 1
                return Nodes(self.poisoned(target))
            if behaviour == "wrong-value" and isinstance(body, FindValue):
                self.lies["wrong-value"] += 1
                return FoundValue(self.wrong_value(body.key), 3600)
            if behaviour == "forge":
                self.lies["forge"] += 1
                find = FindNode(target)
                asked = RequestFrame(frame.request_id, frame.sender_id, frame.sender_port, find)
                reply = await honest(asked, remote)
                if isinstance(reply, Nodes):
                    return Nodes(tuple(self.forged(c) for c in reply.contacts))
                return reply
        return await honest(frame, remote)


class HostileTransport(Transport):
    """A memory transport whose node's requests are answered by the ``Adversary``."""

    def __init__(self, inner: MemoryTransport, adversary: Adversary, behaviour: str) -> None:
        super().__init__()
        self.inner = inner
        self.adversary = adversary
        self.behaviour = behaviour

    async def run(
        self,
        config: Config,
        node_id: bytes,
        host: str,
        port: int,
        handler: RequestHandler | None,
        *,
        task_status: trio.TaskStatus[Address | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        hostile: RequestHandler | None = None
        if handler is not None:
            honest = handler

            async def hostile(frame: RequestFrame, remote: Address) -> Reply:
                return await self.adversary.answer(self.behaviour, frame, remote, honest)

        await self.inner.run(config, node_id, host, port, hostile, task_status=task_status)

    async def _request(
        self, address: Address, sender_id: bytes, sender_port: int | None, body: Request
    ) -> ReplyFrame:
        return await self.inner.request(address, sender_id, sender_port, body)


async def flood(
    dht: Dht, transport: Transport, adversary: Adversary, rate: float, rng: random.Random
) -> None:
    """Send STORE_MANY frames of junk pairs to random honest nodes, ``rate`` a second."""
    port = dht.address[1]
    while True:
        await trio.sleep(rng.expovariate(rate))
        pairs = tuple(
            Store(rng.randbytes(32), cbor2.dumps(rng.randbytes(24)) if i % 2 else b"\xff" * 8, 3600)
            for i in range(FLOOD_BATCH)
        )
        adversary.lies["flood_frames"] += 1
        with trio.move_on_after(2.0):
            try:
                reply = await transport.request(
                    rng.choice(adversary.honest), dht.node_id, port, StoreMany(pairs)
                )
            except DhtError:
                continue
            if isinstance(reply.body, StoredMany):
                adversary.lies["flood_pairs_kept"] += reply.body.results.count(0)


async def start_hostile(
    nursery: trio.Nursery, sim: Simulation, adversary: Adversary, behaviour: str
) -> tuple[Dht, Transport]:
    """Start one hostile node joining through a random honest one."""
    assert sim.network is not None
    transport = HostileTransport(sim.network.transport(), adversary, behaviour)
    node_rng = random.Random(sim.rng.getrandbits(64))
    bootstrap = [sim.rng.choice(sim.nodes).address]

    async def run(task_status: trio.TaskStatus[Dht]) -> None:
        async with open_dht(
            HOST, 0, bootstrap, config=sim.config, transport=transport, rng=node_rng
        ) as dht:
            task_status.started(dht)
            await trio.sleep_forever()

    dht: Dht = await nursery.start(run)
    adversary.join(dht)
    if behaviour == "drop":
        sim.network.set_mode(dht.address, "drop")
    return dht, transport


class BanWatch:
    """Honest ids that some honest node bans, sampled more often than a ban lasts."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.seen: set[bytes] = set()

    def sample(self, extra: list[Dht] | None = None) -> None:
        nodes = self.sim.nodes + (extra or [])
        for ident in {node.node_id for node in self.sim.nodes} - self.seen:
            if any(banned(node, ident) for node in nodes):
                self.seen.add(ident)

    async def run(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.sample()

    def take(self, extra: list[Dht] | None = None) -> int:
        """How many were seen banned since the last ``take`` (a last sample first)."""
        self.sample(extra)
        count, self.seen = len(self.seen), set()
        return count


@dataclass
class Cell:
    """The outcome of one (d, q) cell: what each get returned and cost."""

    outcomes: Counter[str] = field(default_factory=Counter)
    rpcs: list[float] = field(default_factory=list)
    virtual: list[float] = field(default_factory=list)
    set_acks: list[float] = field(default_factory=list)
    set_failures: int = 0
    wall: list[float] = field(default_factory=lambda: [math.inf, -math.inf])
    """When the first get began and the last one ended (wall clock)."""


async def clients(
    sim: Simulation,
    config: Config,
    count: int,
    work: Callable[[Dht, list[int]], Awaitable[None]],
    keys: list[int],
) -> list[Dht]:
    """Run ``work(dht, share)`` on ``count`` client-only nodes at once, keys dealt out."""
    assert sim.network is not None
    network = sim.network
    done: list[Dht] = []

    async def client(share: list[int]) -> None:
        async with open_dht(
            bootstrap=[sim.rng.choice(sim.nodes).address],
            transport=network.transport(),
            config=config,
            client_only=True,
            rng=random.Random(sim.rng.getrandbits(64)),
        ) as dht:
            await work(dht, share)
            done.append(dht)

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(client, keys[i::count])
    return done


async def run_cell(
    sim: Simulation, watch: BanWatch, args: argparse.Namespace, cell_name: tuple[str, int, int]
) -> dict[str, Any]:
    """Write then read ``args.keys`` fresh keys with d paths and quorum q."""
    name, d, q = cell_name
    features = available_features()
    config = sim.config.replace(disjoint_paths=d) if features["disjoint_paths"] else sim.config
    get_options: dict[str, Any] = {"quorum": q} if features["quorum"] else {}
    cell = Cell()
    keys = list(range(args.keys))

    def key(i: int) -> str:
        return f"{name}-d{d}-q{q}-{i}"

    async def write(dht: Dht, share: list[int]) -> None:
        for i in share:
            with trio.move_on_after(args.op_timeout):
                try:
                    cell.set_acks.append(await dht.set(key(i), f"value {i}"))
                    continue
                except DhtError:
                    pass
            cell.set_failures += 1

    async def read(dht: Dht, share: list[int]) -> None:
        cell.wall[0] = min(cell.wall[0], time.perf_counter())
        for i in share:
            before = dht.statistics().transport.requests_sent
            started = trio.current_time()
            outcome = "timeout"
            with trio.move_on_after(args.op_timeout):
                try:
                    value = await dht.get(key(i), **get_options)
                    right = value == f"value {i}"
                    outcome = "right" if right else "missing" if value is None else "wrong"
                except DhtError as exc:
                    outcome = "quorum_short" if type(exc).__name__ == "QuorumError" else "error"
            cell.virtual.append(trio.current_time() - started)
            await trio.sleep(0)  # lets the get's cache STORE start, so that it is counted
            cell.rpcs.append(dht.statistics().transport.requests_sent - before)
            cell.outcomes[outcome] += 1
        cell.wall[1] = max(cell.wall[1], time.perf_counter())

    watch.take()
    wall = time.perf_counter()
    writers = await clients(sim, config, args.writers, write, keys)
    set_wall = time.perf_counter() - wall
    readers = await clients(sim, config, args.readers, read, keys)
    gets = max(1, args.keys)
    return {
        "paths": d,
        "quorum": q,
        "gets": args.keys,
        "right": cell.outcomes["right"] / gets,
        "outcomes": {k: v / gets for k, v in sorted(cell.outcomes.items())},
        "rpcs_per_get": percentiles(cell.rpcs),
        "virtual_s_per_get": percentiles(cell.virtual),
        "wall_ms_per_get": max(0.0, cell.wall[1] - cell.wall[0]) * 1000 / gets,
        "set_acks": percentiles(cell.set_acks),
        "set_failures": cell.set_failures,
        "set_wall_s": set_wall,
        "honest_banned": watch.take(writers + readers),
    }


async def run_fraction(
    fraction: float, args: argparse.Namespace, cells: list[tuple[int, int]]
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    network = MemoryNetwork(rng=random.Random(args.seed), latency=args.latency)
    hostile_count = round(fraction * args.nodes)
    # The first node starts the network, so it is honest; the rest join in random order.
    order = [False] * (args.nodes - hostile_count - 1) + [True] * hostile_count
    rng.shuffle(order)
    replies = [b for b in args.behaviours if b in REPLY_BEHAVIOURS] or ["none"]
    adversary = Adversary(random.Random(rng.getrandbits(64)), Config().k)
    assignment: Counter[str] = Counter()
    result: dict[str, Any] = {"fraction": fraction, "hostile": hostile_count}
    wall, virtual = time.perf_counter(), trio.current_time()
    async with open_simulation(1, seed=args.seed, network=network) as sim:
        async with trio.open_nursery() as nursery:
            watch = BanWatch(sim)
            # Sampled at half a ban's length, no ban goes unseen (unless max_bans lifts it).
            nursery.start_soon(watch.run, sim.config.ban_duration / 2)
            hostile: list[tuple[Dht, Transport]] = []
            for is_hostile in order:
                if not is_hostile:
                    await sim.add_node()
                    continue
                behaviour = replies[len(hostile) % len(replies)]
                assignment[behaviour] += 1
                hostile.append(await start_hostile(nursery, sim, adversary, behaviour))
            adversary.honest = [node.address for node in sim.nodes]
            result["assignment"] = dict(assignment)
            result["join"] = {
                "wall_s": time.perf_counter() - wall,
                "virtual_s": trio.current_time() - virtual,
                "honest_banned": watch.take(),
            }
            print(
                f"f={fraction:.0%}: joined in {result['join']['wall_s']:.0f} s wall",
                file=sys.stderr,
            )
            if "store-flood" in args.behaviours:
                for dht, transport in hostile:
                    flood_rng = random.Random(rng.getrandbits(64))
                    nursery.start_soon(flood, dht, transport, adversary, args.flood_rate, flood_rng)
            result["cells"] = []
            for d, q in cells:
                name = f"s{args.seed}-f{fraction}"
                entry = await run_cell(sim, watch, args, (name, d, q))
                result["cells"].append(entry)
                print(summary_line(fraction, entry), file=sys.stderr, flush=True)
            stats = [node.statistics() for node in sim.nodes]
            result["honest_stores"] = {
                "accepted": sum(s.stores_accepted for s in stats),
                "refused": sum(s.stores_refused for s in stats),
                "records_mean": sum(s.records for s in stats) / max(1, len(stats)),
            }
            result["hostile_actions"] = dict(adversary.lies)
            result["virtual_s"] = trio.current_time() - virtual
            result["wall_s"] = time.perf_counter() - wall
            nursery.cancel_scope.cancel()
    return result


def summary_line(fraction: float, cell: dict[str, Any]) -> str:
    rpcs, virtual = cell["rpcs_per_get"], cell["virtual_s_per_get"]
    return (
        f"f={fraction:4.0%} d={cell['paths']} q={cell['quorum']}: right {cell['right']:7.1%}, "
        f"RPCs/get {rpcs.get('mean', math.nan):6.1f} (p95 {rpcs.get('p95', math.nan):4.0f}), "
        f"virtual {virtual.get('mean', math.nan):6.2f} s/get, "
        f"wall {cell['wall_ms_per_get']:6.1f} ms/get, honest banned {cell['honest_banned']}"
    )


def parse_list(text: str, kind: Callable[[str], Any]) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def emit(result: dict[str, Any], started: float) -> None:
    """Add the wall time since ``started`` and the peak RSS to ``result``; print it as JSON."""
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump(result, sys.stdout, indent=2)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=200, help="keys set and read per cell")
    parser.add_argument("--fractions", default="0,0.1,0.2,0.3", help="hostile shares")
    parser.add_argument("--paths", default="1,2,4,8", help="Config.disjoint_paths values")
    parser.add_argument("--quorums", default="1,3", help="quorum values for get")
    parser.add_argument("--behaviours", default="all", help=f"'all' or some of {BEHAVIOURS}")
    parser.add_argument("--writers", type=int, default=4, help="client-only writers per cell")
    parser.add_argument("--readers", type=int, default=4, help="client-only readers per cell")
    parser.add_argument("--flood-rate", type=float, default=0.5, help="frames/s per hostile node")
    parser.add_argument("--op-timeout", type=float, default=120.0, help="virtual s per set/get")
    parser.add_argument("--latency", type=float, default=0.01, help="one-way, virtual seconds")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.behaviours = (
        list(BEHAVIOURS) if args.behaviours == "all" else parse_list(args.behaviours, str)
    )
    if unknown := set(args.behaviours) - set(BEHAVIOURS):
        parser.error(f"unknown behaviours {sorted(unknown)}; choose from {BEHAVIOURS}")
    features = available_features()
    paths, quorums = parse_list(args.paths, int), parse_list(args.quorums, int)
    unavailable: dict[str, Any] = {}
    # Without the feature only the plain lookup (d = 1) and read (q = 1) exist.
    if not features["disjoint_paths"] and (skipped := sorted(set(paths) - {1})):
        unavailable["paths"], paths = skipped, [1]
    if not features["quorum"] and (skipped := sorted(set(quorums) - {1})):
        unavailable["quorums"], quorums = skipped, [1]
    cells = [(d, q) for d in paths for q in quorums]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "adversary",
        "params": {
            **{k: v for k, v in vars(args).items() if k not in ("fractions", "paths", "quorums")},
            "fractions": parse_list(args.fractions, float),
            "paths": paths,
            "quorums": quorums,
            "transport": "memory",
            "clock": "MockClock(autojump_threshold=0)",
        },
        "features": features,
        "unavailable": unavailable,
        "config": asdict(Config()),
        "versions": versions(),
        "fractions": [],
    }
    if unavailable:
        print(f"not in this trio-kad, skipped: {unavailable}", file=sys.stderr)
    for fraction in result["params"]["fractions"]:
        clock = trio.testing.MockClock(autojump_threshold=0)
        result["fractions"].append(trio.run(run_fraction, fraction, args, cells, clock=clock))
    emit(result, started)


if __name__ == "__main__":
    main()
