"""Signed records (issue 16): verification cost, latency, compare-and-swap races, liars.

    python benchmarks/records.py --modes verify,latency,cas,adversary

Four measurements, each a section of the JSON printed on stdout (a summary
goes to stderr); ``--modes`` picks some:

- ``verify``: what a storing node's check of one signed STORE costs, in
  microseconds (``timeit`` of ``_signed.store_verdict``, which verifies the
  Ed25519 signature and applies the seq rules), beside the plain STORE's
  check and the bare signature verification.
- ``latency``: ``--nodes`` nodes in one process (``--transport tcp``, real
  clock), ``--ops`` rounds of a plain ``set`` then ``get`` (another node) and
  of a ``put_signed`` (fresh key, ``seq=None``) then ``get_signed`` (another
  node), the two kinds alternating which goes first; readers hold no copy,
  so every read goes to the network. Ratios signed / plain
  of the mean and p50 latencies (target: at most 1.2).
- ``cas``: ``--cas-nodes`` nodes on the in-memory network under MockClock
  (``--latency`` plus up to ``--jitter`` seconds per message); ``--rounds``
  rounds in which two writers (two random nodes holding the same key) race
  ``put_signed(key, value, cas=n)`` at the same moment. Counts the rounds
  with exactly one winner, the losers that got ``CasMismatch``, and whether
  a third node's ``get_signed`` then reads the winner's record.
- ``adversary``: ``--adv-nodes`` nodes on the in-memory network under
  MockClock, a ``--fraction`` of them hostile (``benchmarks/adversary.py``'s
  hostile nodes, with its ``SIGNED_BEHAVIOURS`` dealt out among them: stale,
  forged and mis-keyed signed records); a writer publishes ``--versions``
  versions (seq 0, 1, ...) of each of ``--keys`` records, then a reader's
  ``get_signed`` of each counts as right only if it returns the newest
  (target: at least 99.9%).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import timeit
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
import trio
import trio.testing
from _stats import percentiles, start
from adversary import SIGNED_BEHAVIOURS, Adversary, emit, start_hostile

from trio_kad import CasMismatch, Config, Dht, DhtError, MemoryNetwork, SigningKey
from trio_kad._ids import key_id
from trio_kad._signed import signed_key, store_verdict, verify
from trio_kad.testing import Simulation, node_of, open_simulation

MODES = ("verify", "latency", "cas", "adversary")
VALUE = {"address": "203.0.113.7:4000", "pad": "x" * 64}
"""What the records hold: a peer's current address, as in the README's example."""


def measure_verify(args: argparse.Namespace) -> dict[str, Any]:
    """Microseconds per call of a storing node's checks (best of ``--repeats`` runs)."""
    rng = random.Random(args.seed)
    key = SigningKey.from_seed(rng.randbytes(32))
    value = cbor2.dumps(VALUE)
    ident = signed_key(key.public_key)
    held = key.sign(b"", 6, value)
    signed = key.sign(b"", 7, value)
    checks: dict[str, Callable[[], object]] = {
        "signed_store_new_key": lambda: store_verdict(ident, value, signed, None, None, None),
        "signed_store_over_held_seq": lambda: store_verdict(
            ident, value, signed, None, value, held
        ),
        "signed_store_with_cas": lambda: store_verdict(ident, value, signed, 6, value, held),
        "verify_only": lambda: verify(ident, value, signed),
        "plain_store": lambda: store_verdict(ident, value, None, None, value, None),
    }
    result: dict[str, Any] = {"number": args.verify_number, "repeats": args.repeats}
    for name, check in checks.items():
        runs = timeit.repeat(check, number=args.verify_number, repeat=args.repeats)
        result[f"{name}_us"] = min(runs) / args.verify_number * 1e6
    return result


async def measure_latency(args: argparse.Namespace) -> dict[str, Any]:
    """Plain set/get against put_signed/get_signed on the same running network."""
    rng = random.Random(args.seed)
    network = None if args.transport == "tcp" else MemoryNetwork(rng=random.Random(args.seed))
    clock = trio.current_time
    samples: dict[str, list[float]] = {"set": [], "get": [], "put_signed": [], "get_signed": []}
    rpcs: dict[str, list[float]] = {name: [] for name in samples}
    right: Counter[str] = Counter()
    started = clock()
    async with open_simulation(
        args.nodes, seed=args.seed, network=network, tcp=args.transport == "tcp"
    ) as sim:
        join_s = clock() - started

        async def timed(name: str, node: Dht, op: Awaitable[Any]) -> Any:
            begin = clock()
            sent = node.statistics().transport.requests_sent
            try:
                return await op
            except DhtError:
                return None
            finally:
                samples[name].append((clock() - begin) * 1000)
                rpcs[name].append(node.statistics().transport.requests_sent - sent)

        async def plain(i: int, writer: Dht) -> None:
            key = f"plain-{args.seed}-{i}"
            right["set"] += await timed("set", writer, writer.set(key, VALUE)) is not None
            reader = _stranger(sim, writer, key_id(key), rng)
            right["get"] += await timed("get", reader, reader.get(key)) == VALUE

        async def signed(i: int, writer: Dht) -> None:
            key = SigningKey.from_seed(rng.randbytes(32))
            put = writer.put_signed(key, VALUE)
            right["put_signed"] += await timed("put_signed", writer, put) is not None
            reader = _stranger(sim, writer, signed_key(key.public_key), rng)
            record = await timed("get_signed", reader, reader.get_signed(key.public_key))
            right["get_signed"] += record is not None and record.value == VALUE

        for i in range(args.ops):
            writer = rng.choice(sim.nodes)
            kinds = [plain, signed] if i % 2 == 0 else [signed, plain]
            for kind in kinds:
                await kind(i, writer)
    result: dict[str, Any] = {
        "nodes": args.nodes,
        "ops": args.ops,
        "transport": args.transport,
        "join_s": join_s,
    }
    for name, values in samples.items():
        result[name] = {
            "latency_ms": percentiles(values),
            "rpcs": percentiles(rpcs[name]),
            "success": right[name] / args.ops,
        }
    for signed_op, plain_op in (("put_signed", "set"), ("get_signed", "get")):
        ours, theirs = result[signed_op]["latency_ms"], result[plain_op]["latency_ms"]
        result[f"{signed_op}_vs_{plain_op}"] = {
            stat: ours[stat] / theirs[stat] for stat in ("mean", "p50", "p95") if theirs.get(stat)
        }
    return result


def _stranger(sim: Simulation, writer: Dht, ident: bytes, rng: random.Random) -> Dht:
    """A node other than ``writer`` that holds no copy of ``ident``: its read goes out."""
    now = trio.current_time()
    others = [
        n for n in sim.nodes if n is not writer and node_of(n).records.get(ident, now) is None
    ]
    return rng.choice(others or [n for n in sim.nodes if n is not writer])


async def measure_cas(args: argparse.Namespace) -> dict[str, Any]:
    """Two writers race ``put_signed(..., cas=n)`` each round: exactly one may win."""
    rng = random.Random(args.seed)
    network = MemoryNetwork(rng=random.Random(args.seed), latency=args.latency, jitter=args.jitter)
    outcomes: Counter[str] = Counter()
    wall = time.perf_counter()
    async with open_simulation(args.cas_nodes, seed=args.seed, network=network) as sim:
        key = SigningKey.from_seed(rng.randbytes(32))
        await sim.nodes[0].put_signed(key, "round 0", seq=0)
        for round_ in range(args.rounds):
            writers = rng.sample(sim.nodes, 3)
            results: dict[int, object] = {}

            async def write(
                index: int,
                cas: int = round_,
                writers: list[Dht] = writers,
                results: dict[int, object] = results,
            ) -> None:
                # Each with a fresh value: the two differ, so at most one can be held.
                value = f"round {cas + 1} by {index}"
                try:
                    results[index] = await writers[index].put_signed(key, value, cas=cas)
                except DhtError as exc:
                    results[index] = exc

            async with trio.open_nursery() as nursery:
                nursery.start_soon(write, 0)
                nursery.start_soon(write, 1)
            winners = [i for i, r in results.items() if isinstance(r, int)]
            outcomes[f"winners_{len(winners)}"] += 1
            for i, r in results.items():
                if i not in winners:
                    outcomes[f"loser_{type(r).__name__}"] += 1
                    outcomes["loser_said_seq_held"] += isinstance(r, CasMismatch) and (
                        r.seq == round_ + 1
                    )
            record = await writers[2].get_signed(key.public_key)
            read = None if record is None else (record.value, record.seq)
            expected = [(f"round {round_ + 1} by {i}", round_ + 1) for i in winners]
            outcomes["read_the_winner" if read in expected else "read_other"] += 1
            if len(winners) != 1:
                print(f"round {round_}: {results}", file=sys.stderr)
        virtual = trio.current_time()
    return {
        "nodes": args.cas_nodes,
        "rounds": args.rounds,
        "latency_s": args.latency,
        "jitter_s": args.jitter,
        "exactly_one_winner": outcomes["winners_1"] / max(1, args.rounds),
        "outcomes": dict(sorted(outcomes.items())),
        "virtual_s": virtual,
        "wall_s": time.perf_counter() - wall,
    }


async def measure_adversary(args: argparse.Namespace) -> dict[str, Any]:
    """The share of ``get_signed`` returning the newest record with a hostile fraction."""
    rng = random.Random(args.seed)
    network = MemoryNetwork(rng=random.Random(args.seed), latency=args.latency)
    hostile_count = round(args.fraction * args.adv_nodes)
    order = [False] * (args.adv_nodes - hostile_count - 1) + [True] * hostile_count
    rng.shuffle(order)
    adversary = Adversary(random.Random(rng.getrandbits(64)), Config().k)
    assignment: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    get_rpcs: list[float] = []
    get_virtual: list[float] = []
    wall = time.perf_counter()
    async with open_simulation(1, seed=args.seed, network=network) as sim:
        async with trio.open_nursery() as nursery:
            for is_hostile in order:
                if not is_hostile:
                    await sim.add_node()
                    continue
                behaviour = SIGNED_BEHAVIOURS[sum(assignment.values()) % len(SIGNED_BEHAVIOURS)]
                assignment[behaviour] += 1
                await start_hostile(nursery, sim, adversary, behaviour)
            join_wall = time.perf_counter() - wall
            keys = [SigningKey.from_seed(rng.randbytes(32)) for _ in range(args.keys)]
            for i, key in enumerate(keys):
                writer = rng.choice(sim.nodes)
                for seq in range(args.versions):
                    try:
                        await writer.put_signed(key, {"n": i, "seq": seq}, seq=seq)
                    except DhtError:
                        outcomes["put_failed"] += 1
            for i, key in enumerate(keys):
                reader = rng.choice(sim.nodes)
                before = reader.statistics().transport.requests_sent
                started = trio.current_time()
                try:
                    record = await reader.get_signed(key.public_key)
                except DhtError:
                    outcomes["error"] += 1
                    continue
                get_virtual.append(trio.current_time() - started)
                get_rpcs.append(reader.statistics().transport.requests_sent - before)
                newest = args.versions - 1
                if record is None:
                    outcomes["missing"] += 1
                elif (record.value, record.seq) == ({"n": i, "seq": newest}, newest):
                    outcomes["newest"] += 1
                elif record.value == {"n": i, "seq": record.seq}:
                    outcomes["stale"] += 1
                else:
                    outcomes["wrong"] += 1
            nursery.cancel_scope.cancel()
    return {
        "nodes": args.adv_nodes,
        "hostile": hostile_count,
        "assignment": dict(assignment),
        "keys": args.keys,
        "versions": args.versions,
        "newest_share": outcomes["newest"] / max(1, args.keys),
        "outcomes": dict(sorted(outcomes.items())),
        "hostile_lies": dict(adversary.lies),
        "rpcs_per_get_signed": percentiles(get_rpcs),
        "virtual_s_per_get_signed": percentiles(get_virtual),
        "join_wall_s": join_wall,
        "wall_s": time.perf_counter() - wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("--modes", default=",".join(MODES), help=f"some of {MODES}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verify-number", type=int, default=2000, help="calls per timing run")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs; the best counts")
    parser.add_argument("--nodes", type=int, default=300, help="latency: nodes")
    parser.add_argument("--ops", type=int, default=100, help="latency: rounds of each kind")
    parser.add_argument("--transport", choices=["tcp", "memory"], default="tcp")
    parser.add_argument("--cas-nodes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1000, help="cas: racing rounds")
    parser.add_argument("--latency", type=float, default=0.01, help="one-way, virtual seconds")
    parser.add_argument("--jitter", type=float, default=0.01, help="cas: extra per message, up to")
    parser.add_argument("--adv-nodes", type=int, default=300)
    parser.add_argument("--fraction", type=float, default=0.2, help="adversary: hostile share")
    parser.add_argument("--keys", type=int, default=1000, help="adversary: signed records read")
    parser.add_argument("--versions", type=int, default=3, help="adversary: seqs per record")
    args, modes, result = start("records", parser, MODES)
    started = time.perf_counter()
    if "verify" in modes:
        result["verify"] = measure_verify(args)
        print(f"verify: {result['verify']}", file=sys.stderr)
    if "latency" in modes:
        clock = None if args.transport == "tcp" else trio.testing.MockClock(autojump_threshold=0)
        result["latency"] = trio.run(measure_latency, args, clock=clock)
        ratios = {k: v for k, v in result["latency"].items() if "_vs_" in k}
        print(f"latency: {ratios}", file=sys.stderr)
    if "cas" in modes:
        clock = trio.testing.MockClock(autojump_threshold=0)
        result["cas"] = trio.run(measure_cas, args, clock=clock)
        print(f"cas: {result['cas']['outcomes']}", file=sys.stderr)
    if "adversary" in modes:
        clock = trio.testing.MockClock(autojump_threshold=0)
        result["adversary"] = trio.run(measure_adversary, args, clock=clock)
        adv = result["adversary"]
        print(f"adversary: newest {adv['newest_share']:.2%} {adv['outcomes']}", file=sys.stderr)
    emit(result, started)


if __name__ == "__main__":
    main()
