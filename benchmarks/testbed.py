"""Real processes on distinct addresses in network namespaces: churn, a partition, restarts.

    sudo python benchmarks/testbed.py --namespaces 3 --nodes 30 --addresses 4

Linux, as root, with `ip` (iproute2); otherwise it says what is missing and
exits 2. It builds the network of ``_netns`` (private range 10.231.0.0/16,
one /24 per namespace unless ``--one-subnet``; ``--namespace-per-node`` gives
each node its own namespace), starts ``--nodes`` ``trio-kad serve`` processes
spread over the namespaces and their addresses (``--host``, ``--port``,
``--data-dir``, ``--bootstrap``, ``--config``), and then:

- sets keys through the API (a driver process on each side of the coming
  partition, using ``open_dht``) and through the CLI (``trio-kad set`` and
  ``get`` under ``ip netns exec``): acknowledgements per set, found %, latency;
- kills (SIGKILL) a fraction of the nodes and gets again;
- takes the trunk between the two halves down for ``--partition`` seconds,
  sets new keys on each side, gets from both sides, heals, and times until
  every key is found from both sides (bounded by ``--heal-timeout``);
- restarts the killed nodes from their data_dir (same command line) and asks
  each directly for the pairs its data_dir held;
- stops (SIGSTOP) ``--silent`` of the live nodes and times CLI gets through a
  live bootstrap peer;
- stops every node with SIGTERM (it saves its contacts) and reads the
  contacts per node from each data_dir, counting those at a wrong address.

Prints one JSON object on stdout, progress on stderr. Every namespace, link
and process it made is removed at the end, on failure and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from _netns import NETWORK, Layout, Testbed, missing_requirements
from _stats import percentiles, versions
from _tbprocs import Driver, Node, alive, contact_stats

from trio_kad._ids import key_id

ROOT = Path(__file__).resolve().parent.parent
BASE_PORT = 4000


def log(message: str) -> None:
    print(f"[testbed {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def toml_lines(overrides: list[str]) -> list[str]:
    """``NAME=VALUE`` overrides (JSON values) as lines of a TOML file; ValueError if bad."""
    lines = []
    for item in overrides:
        name, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--config takes NAME=VALUE, not {item!r}")
        value = json.loads(raw)
        if value is None:
            raise ValueError(f"--config {name}: TOML has no null")
        lines.append(f"{name} = {json.dumps(value)}")  # JSON scalars and arrays are TOML too
    return lines


def config_file(overrides: list[str], workdir: Path) -> list[str]:
    """``serve``'s arguments for the overrides: ``--config`` and a TOML file of them."""
    if not overrides:
        return []
    path = workdir / "config.toml"
    path.write_text("\n".join(toml_lines(overrides)) + "\n")
    return ["--config", str(path)]


class Run:
    """One testbed run: the processes, the keys, and what was measured."""

    def __init__(self, args: argparse.Namespace, bed: Testbed, workdir: Path) -> None:
        self.args = args
        self.bed = bed
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.env = dict(os.environ, PYTHONPATH=str(args.code), PYTHONUNBUFFERED="1")
        self.config_args = config_file(args.config, workdir)
        self.nodes: list[Node] = []
        self.drivers: dict[int, Driver] = {}
        # The peers the drivers joined through: never killed or stopped.
        self.homes: set[str] = set()
        self.keys: list[str] = []
        self.out: dict[str, Any] = {}

    # --- processes -----------------------------------------------------------

    def _exec(self, namespace: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", namespace, sys.executable, *argv]

    async def start(self, node: Node) -> None:
        await node.start(self.env, self.args.start_timeout, self.workdir)
        assert node.pid is not None
        self.bed.pids.add(node.pid)

    async def start_all(self) -> None:
        layout = self.bed.layout
        for i in range(self.args.nodes):
            ns = i % layout.namespaces
            host = layout.address(ns, (i // layout.namespaces) % layout.addresses)
            data_dir = self.workdir / f"node{i}"
            port = BASE_PORT if self.args.same_port else BASE_PORT + i
            node = Node(i, self.bed.namespace(ns), layout.side(ns), host, port, data_dir)
            serve = f"-m trio_kad serve --host {host} --port {node.port} --data-dir {data_dir}"
            node.argv = self._exec(node.namespace, *serve.split(), *self.config_args)
            if i:
                peers = {self.nodes[0].peer, self.rng.choice(self.nodes).peer}
                node.argv += ["--bootstrap", *sorted(peers)]
            self.nodes.append(node)
            if i == 0:
                await self.start(node)  # the others join through it
        limiter = trio.CapacityLimiter(4)

        async def start_one(node: Node) -> None:
            async with limiter:
                await self.start(node)

        async with trio.open_nursery() as nursery:
            for node in self.nodes[1:]:
                nursery.start_soon(start_one, node)

    async def cli(self, node: Node, *argv: str) -> tuple[int, str, float]:
        """Run ``trio-kad ARGV`` in a random namespace through ``node``: exit code, stdout, ms."""
        namespace = self.bed.namespace(self.rng.randrange(self.bed.layout.namespaces))
        command = self._exec(namespace, "-m", "trio_kad", argv[0], "--bootstrap", node.peer)
        started = time.perf_counter()
        with trio.move_on_after(self.args.op_timeout + 10):
            result = await trio.run_process(
                [*command, "--timeout", str(self.args.op_timeout), *argv[1:]],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self.env,
            )
            ms = (time.perf_counter() - started) * 1000
            return result.returncode, result.stdout.decode().strip(), ms
        return -1, "", (time.perf_counter() - started) * 1000

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.pid is not None]

    # --- measures ------------------------------------------------------------

    async def gets(self, keys: list[str]) -> dict[str, Any]:
        """Every key from both sides (API): found % and latency per side."""
        result: dict[str, Any] = {}

        async def side(number: int) -> None:
            reply = await self.drivers[number].ask({"op": "get", "keys": keys})
            found = reply["found"]
            result[f"side{number}"] = {
                "found_pct": 100.0 * sum(found) / max(1, len(found)),
                "get_ms": percentiles(reply["ms"]),
            }

        async with trio.open_nursery() as nursery:
            for number in self.drivers:
                nursery.start_soon(side, number)
        return result

    async def sets(self, side: int, keys: list[str]) -> dict[str, Any]:
        reply = await self.drivers[side].ask({"op": "set", "keys": keys})
        self.keys += [k for k, acks in zip(keys, reply["acks"], strict=True) if acks > 0]
        return {
            "acks": percentiles(reply["acks"]),
            "failed": reply["acks"].count(0),
            "set_ms": percentiles(reply["ms"]),
        }

    def new_keys(self, label: str, count: int) -> list[str]:
        return [f"tb-{self.args.seed}-{label}-{i}" for i in range(count)]

    async def cli_workload(self, count: int) -> dict[str, Any]:
        acks: list[float] = []
        set_ms: list[float] = []
        get_ms: list[float] = []
        found = 0
        keys = self.new_keys("cli", count)
        for key in keys:
            code, out, ms = await self.cli(self.rng.choice(self.live()), "set", key, key)
            acks.append(int(out) if code == 0 and out.isdigit() else 0)
            set_ms.append(ms)
        self.keys += [k for k, a in zip(keys, acks, strict=True) if a]
        for key in keys:
            code, out, ms = await self.cli(self.rng.choice(self.live()), "get", key)
            found += code == 0 and out == key
            get_ms.append(ms)
        # What a CLI run costs before any network work: starting Python and importing.
        startup: list[float] = []
        for _ in range(3):
            started = time.perf_counter()
            argv = self._exec(self.bed.namespace(0), "-m", "trio_kad", "--help")
            await trio.run_process(argv, capture_stdout=True, env=self.env)
            startup.append((time.perf_counter() - started) * 1000)
        return {
            "acks": percentiles(acks),
            "set_ms": percentiles(set_ms),
            "found_pct": 100.0 * found / max(1, count),
            "get_ms": percentiles(get_ms),
            "startup_ms": percentiles(startup),
        }

    # --- the scenario ----------------------------------------------------------

    async def scenario(self) -> None:
        args, out, bed = self.args, self.out, self.bed
        started = time.perf_counter()
        await self.start_all()
        out["join_s"] = time.perf_counter() - started
        log(f"{len(self.nodes)} nodes up in {out['join_s']:.1f} s")
        for side in (0, 1):
            home = next(n for n in self.nodes if n.side == side)
            self.drivers[side] = await Driver.open(
                self._exec(home.namespace),
                home.peer,
                args.op_timeout,
                self.env,
                str(self.workdir / f"driver{side}.log"),
            )
            self.bed.pids.add(self.drivers[side].process.pid)
            self.homes.add(home.peer)

        out["set_api"] = await self.sets(0, self.new_keys("api", args.keys))
        out["cli"] = await self.cli_workload(args.cli_keys)
        out["before"] = await self.gets(self.keys)
        out["contacts_after_workload"] = contact_stats(self.nodes)
        log(f"before: {_brief(out['before'])}")

        killable = [n for n in self.nodes[1:] if n.peer not in self.homes]
        killed = self.rng.sample(killable, min(len(killable), round(args.kill * len(self.nodes))))
        for node in killed:
            assert node.pid is not None
            bed.signal(node.pid, signal.SIGKILL)
            node.pid = None
        out["killed"] = len(killed)
        out["after_kill"] = await self.gets(self.keys)
        log(f"after kill of {len(killed)}: {_brief(out['after_kill'])}")

        bed.partition()
        cut = time.perf_counter()
        out["partition_s"] = args.partition
        out["set_during_partition"] = {
            f"side{side}": await self.sets(side, self.new_keys(f"side{side}", args.partition_keys))
            for side in (0, 1)
        }
        out["during_partition"] = await self.gets(self.keys)
        log(f"during partition: {_brief(out['during_partition'])}")
        await trio.sleep(max(0.0, args.partition - (time.perf_counter() - cut)))
        bed.heal()
        healed = time.perf_counter()
        rounds = [await self.gets(self.keys)]
        while not _all_found(rounds[-1]) and time.perf_counter() - healed < args.heal_timeout:
            await trio.sleep(args.heal_poll)
            rounds.append(await self.gets(self.keys))
        done = _all_found(rounds[-1])
        out["heal_to_all_found_s"] = time.perf_counter() - healed if done else None
        out["after_heal"] = {
            "first_round": rounds[0],
            "last_round": rounds[-1],
            "rounds": len(rounds),
        }
        log(f"after heal: all found {done} after {len(rounds)} rounds")

        restarts = []
        for node in killed:
            held, _ = node.saved()
            await self.start(node)
            restarts.append((node, held))
        out["restarted"] = len(restarts)
        served = held_total = 0
        by_id = {key_id(k): k for k in self.keys}
        for node, held in restarts:
            keys = [by_id[k] for k in held if k in by_id]
            reply = await self.drivers[0].ask({"op": "probe", "peer": node.peer, "keys": keys})
            held_total += len(keys)
            served += reply["served"]
        out["restart_serves_pairs"] = {"held_in_data_dir": held_total, "served": served}
        out["after_restart"] = await self.gets(self.keys)
        log(f"after restart: {_brief(out['after_restart'])}")

        await self.silent_mode()
        await self.stop_all()

    async def silent_mode(self) -> None:
        args, bed = self.args, self.bed
        bootstrap = self.nodes[0]
        others = [n for n in self.live() if n is not bootstrap and n.peer not in self.homes]
        count = min(len(others), round(args.silent * len(self.nodes)))
        stopped = self.rng.sample(others, count)
        for node in stopped:
            assert node.pid is not None
            bed.signal(node.pid, signal.SIGSTOP)
        try:
            keys = self.rng.sample(self.keys, min(len(self.keys), args.silent_gets))
            ms: list[float] = []
            found = 0
            for key in keys:
                code, value, took = await self.cli(bootstrap, "get", key)
                found += code == 0 and value == key
                ms.append(took)
            self.out["silent"] = {
                "stopped": count,
                "cli_get_via_live_bootstrap": {
                    "found_pct": 100.0 * found / max(1, len(keys)),
                    "ms": percentiles(ms),
                },
                "api": await self.gets(self.keys),
            }
        finally:
            for node in stopped:
                assert node.pid is not None
                bed.signal(node.pid, signal.SIGCONT)
        silent = self.out["silent"]
        log(f"silent: cli {silent['cli_get_via_live_bootstrap']}, api {_brief(silent['api'])}")

    async def stop_all(self) -> None:
        """SIGTERM every node (it saves its contacts), then read the contacts per node."""
        for driver in self.drivers.values():
            await driver.close()
        for node in self.live():
            assert node.pid is not None
            self.bed.signal(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(alive(n.pid) for n in self.live()):
            await trio.sleep(0.1)
        self.out["contacts_at_end"] = contact_stats(self.nodes)


def _brief(gets: dict[str, Any]) -> str:
    return ", ".join(
        f"{side} {r['found_pct']:.0f}% found, p50 {r['get_ms'].get('p50', 0):.0f} ms"
        for side, r in sorted(gets.items())
    )


def _all_found(gets: dict[str, Any]) -> bool:
    return all(side["found_pct"] == 100.0 for side in gets.values())


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """A stop signal arrived: the run ends and cleans up."""


async def _until_signal(run: Run) -> None:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    raise Interrupted(signum)

            nursery.start_soon(watch)
            await run.scenario()
            nursery.cancel_scope.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--addresses", type=int, default=1, help="addresses per namespace")
    parser.add_argument("--namespace-per-node", action="store_true")
    parser.add_argument("--one-subnet", action="store_true", help="every address in one /24")
    parser.add_argument(
        "--same-port",
        action="store_true",
        help=f"every node on port {BASE_PORT}, each on its own address (as on distinct hosts)",
    )
    parser.add_argument("--keys", type=int, default=40, help="keys set through the API")
    parser.add_argument("--cli-keys", type=int, default=5, help="keys set through the CLI")
    parser.add_argument("--partition-keys", type=int, default=10, help="per side")
    parser.add_argument("--kill", type=float, default=1 / 3, help="fraction of nodes killed")
    parser.add_argument("--partition", type=float, default=30.0, help="seconds apart")
    parser.add_argument("--heal-timeout", type=float, default=150.0)
    parser.add_argument("--heal-poll", type=float, default=2.0)
    parser.add_argument("--silent", type=float, default=0.3, help="fraction SIGSTOPped")
    parser.add_argument("--silent-gets", type=int, default=10)
    parser.add_argument("--op-timeout", type=float, default=30.0)
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument(
        "--config",
        action="append",
        metavar="NAME=VALUE",
        help="a Config field (JSON value) for every serve, through a TOML file"
        ' (default: refresh_interval=60; "" for none)',
    )
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout the nodes run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the logs and data_dirs")
    parser.add_argument("--check", action="store_true", help="only say whether it can run here")
    args = parser.parse_args()
    # Default: a refresh period short enough to watch a heal; --config "" for none.
    args.config = [c for c in args.config or ["refresh_interval=60"] if c]
    if args.namespace_per_node:
        args.namespaces, args.addresses = args.nodes, 1
    missing = missing_requirements()
    if missing:
        print("testbed cannot run here; it needs: " + "; ".join(missing), file=sys.stderr)
        return 2
    if args.check:
        return 0
    try:
        toml_lines(args.config)  # refused here, before anything is made
        layout = Layout(args.namespaces, args.addresses, args.one_subnet)
        if args.same_port and layout.namespaces * layout.addresses < args.nodes:
            raise ValueError("--same-port needs an address per node (--addresses)")
        bed = Testbed(layout)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="trio-kad-testbed-"))
    out: dict[str, Any] = {
        "benchmark": "testbed",
        "nodes": args.nodes,
        "layout": {
            "namespaces": layout.namespaces,
            "addresses_per_namespace": layout.addresses,
            "one_subnet": layout.one_subnet,
            "network": NETWORK,
        },
        "same_port": args.same_port,
        "config_overrides": args.config,
        "seed": args.seed,
        "versions": versions(),
    }
    # Outside Trio, any of these interrupts as Ctrl-C does (even when started
    # in the background, where SIGINT comes ignored); inside, _until_signal.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.default_int_handler)
    run = Run(args, bed, workdir)
    code = 0
    try:
        bed.create()
        log(f"{layout.namespaces} namespaces {bed.tag}-* in {NETWORK}; logs in {workdir}")
        trio.run(_until_signal, run)
    except* (KeyboardInterrupt, Interrupted):
        log("interrupted: cleaning up")
        out["error"] = "interrupted"
        code = 130
    except* Exception as group:
        log(f"failed: {group.exceptions!r}")
        out["error"] = repr(group.exceptions)
        code = 1
    finally:
        # No signal may cut the cleanup short.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        bed.cleanup()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    out.update(run.out)
    print(json.dumps(out, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
