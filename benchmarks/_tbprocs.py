"""The testbed's processes: ``serve`` nodes, and API drivers that set and get through ``open_dht``.

A driver runs this file in one namespace:

    python benchmarks/_tbprocs.py --bootstrap 10.231.1.10:4000

It reads one JSON command a line on stdin and answers each with one JSON line
on stdout: ``{"op": "set" | "get", "keys": [...]}`` gives the acknowledgements
(stored count, 0 for a failure) or found flags (1 or 0), and milliseconds per
key; ``{"op": "probe", "peer": "H:P", "keys": [...]}`` asks that one node
directly (FIND_VALUE) and says how many of the keys it served. A key's value
is the key itself. ``Driver`` is the testbed's end of the pipe, ``Node`` its
handle on one ``serve`` process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any

import trio
from _stats import percentiles

from trio_kad import DhtError, TcpTransport, open_dht
from trio_kad._ids import key_id
from trio_kad._messages import FindValue, FoundValue
from trio_kad._persist_file import DB_FILENAME


class Lines:
    """The lines of a byte stream (a process's output)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def next(self) -> str:
        """The next line, without its newline; EOFError at the end of the stream."""
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise EOFError("the process closed its output")
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode()


@dataclass
class Node:
    """One ``serve`` process: where it lives and listens, its data_dir, its command line."""

    index: int
    namespace: str
    side: int
    host: str
    port: int
    data_dir: Path
    argv: list[str] = field(default_factory=list)
    pid: int | None = None
    process: trio.Process | None = None
    node_id: str = ""

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, env: dict[str, str], timeout: float, logs: Path) -> None:
        """Start the serve and wait (within ``timeout``) for its "listening on" line."""
        with open(logs / f"node{self.index}.log", "ab") as stderr:
            process = await trio.lowlevel.open_process(
                self.argv, stdout=PIPE, stderr=stderr, env=env
            )
        self.pid, self.process = process.pid, process
        assert process.stdout is not None
        with trio.fail_after(timeout):
            line = await Lines(process.stdout).next()
        if not line.startswith("listening on "):
            raise RuntimeError(f"node {self.index} said {line!r}")
        self.node_id = line.rsplit(" ", 1)[1]

    def saved(self) -> tuple[set[bytes], list[tuple[str, str, int]]]:
        """The pair keys and contacts (id hex, host, port) in the data_dir, read-only."""
        uri = f"file:{self.data_dir / DB_FILENAME}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
            keys = {bytes(row[0]) for row in db.execute("SELECT key FROM records")}
            rows = db.execute("SELECT node_id, host, port FROM contacts")
            contacts = [(bytes(i).hex(), h, p) for i, h, p in rows]
        return keys, contacts


def contact_stats(nodes: list[Node]) -> dict[str, Any]:
    """Contacts per node as the data_dirs hold them, and how many are at a wrong address.

    Read while nodes run, this is their last checkpoint (each refresh check
    saves the table); nodes that saved none yet are left out.
    """
    where = {n.node_id: (n.host, n.port) for n in nodes}
    taken = set(where.values())
    counts: list[float] = []
    wrong = elsewhere = 0
    for node in nodes:
        _, contacts = node.saved()
        if not contacts:
            continue
        counts.append(len(contacts))
        misplaced = [(h, p) for i, h, p in contacts if where.get(i) != (h, p)]
        wrong += len(misplaced)
        elsewhere += sum(address in taken for address in misplaced)
    total = max(1, int(sum(counts)))
    return {
        "nodes_read": len(counts),
        "per_node": percentiles(counts),
        "min": min(counts, default=0),
        "at_wrong_address_pct": 100.0 * wrong / total,
        # ... of which at an address where another node listens.
        "at_another_nodes_address_pct": 100.0 * elsewhere / total,
    }


def alive(pid: int | None) -> bool:
    """Whether our child ``pid`` still runs (reaping it if it ended)."""
    if pid is None:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


class Driver:
    """The testbed's handle on one driver process."""

    def __init__(self, process: trio.Process, timeout: float) -> None:
        assert process.stdout is not None and process.stdin is not None
        self.process = process
        self._lines = Lines(process.stdout)
        self._stdin = process.stdin
        self._timeout = timeout

    @classmethod
    async def open(
        cls, prefix: list[str], peer: str, op_timeout: float, env: dict[str, str], log: str
    ) -> Driver:
        """Start a driver with ``prefix`` (``ip netns exec NS python``) through ``peer``."""
        argv = [*prefix, __file__, "--bootstrap", peer, "--op-timeout", str(op_timeout)]
        with open(log, "ab") as stderr:
            process = await trio.lowlevel.open_process(
                argv, stdin=PIPE, stdout=PIPE, stderr=stderr, env=env
            )
        # Room for a batch of operations that each run into the op timeout.
        driver = cls(process, op_timeout * 4 + 60)
        await driver.ask({"op": "probe", "peer": peer, "keys": []})
        return driver

    async def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command and wait for its reply."""
        with trio.fail_after(self._timeout):
            await self._stdin.send_all(json.dumps(command).encode() + b"\n")
            reply: dict[str, Any] = json.loads(await self._lines.next())
        return reply

    async def close(self) -> None:
        """End of input: the driver leaves its nodes and exits."""
        await self._stdin.aclose()
        with trio.move_on_after(10):
            await self.process.wait()


async def _batch(
    op: str, keys: list[str], writer: Any, reader: Any, op_timeout: float
) -> dict[str, Any]:
    ms = [0.0] * len(keys)
    results = [0] * len(keys)
    limiter = trio.CapacityLimiter(8)

    async def one(i: int, key: str) -> None:
        async with limiter:
            started = trio.current_time()
            with trio.move_on_after(op_timeout):
                try:
                    if op == "set":
                        results[i] = await writer.set(key, key)
                    else:
                        results[i] = int(await reader.get(key) == key)
                except DhtError:
                    pass
            ms[i] = (trio.current_time() - started) * 1000

    async with trio.open_nursery() as nursery:
        for i, key in enumerate(keys):
            nursery.start_soon(one, i, key)
    return {"ms": ms, ("acks" if op == "set" else "found"): results}


async def _probe(peer: str, keys: list[str], reader: Any, op_timeout: float) -> dict[str, Any]:
    host, _, port = peer.rpartition(":")
    served = 0
    transport = TcpTransport()
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run, reader.config, reader.node_id, host, 0, None)
        for key in keys:
            with trio.move_on_after(op_timeout):
                frame = await transport.request(
                    (host, int(port)), reader.node_id, None, FindValue(key_id(key))
                )
                served += isinstance(frame.body, FoundValue)
        nursery.cancel_scope.cancel()
    return {"served": served}


async def drive(bootstrap: str, op_timeout: float) -> None:
    """Answer commands from stdin until it closes."""
    lines = Lines(trio.lowlevel.FdStream(os.dup(0)))
    # Two client nodes: one sets, the other gets, so a get never finds the
    # pair in the publisher's own store.
    async with (
        open_dht(bootstrap=[bootstrap], client_only=True) as writer,
        open_dht(bootstrap=[bootstrap], client_only=True) as reader,
    ):
        while True:
            try:
                command = json.loads(await lines.next())
            except EOFError:
                return
            if command["op"] == "probe":
                reply = await _probe(command["peer"], command["keys"], reader, op_timeout)
            else:
                reply = await _batch(command["op"], command["keys"], writer, reader, op_timeout)
            print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the testbed's API driver (JSON lines)")
    parser.add_argument("--bootstrap", required=True, metavar="H:P")
    parser.add_argument("--op-timeout", type=float, default=30.0)
    args = parser.parse_args()
    trio.run(drive, args.bootstrap, args.op_timeout)
    sys.exit(0)
