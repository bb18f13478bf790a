"""The physical floor on this machine: bare Trio TCP echo, CBOR cost, and TcpTransport over it.

    python benchmarks/floor.py --rounds 5000 --seconds 3 [--processes]

(a) A bare Trio echo over loopback TCP of length-prefixed CBOR maps shaped like
a trio-kad ping: sequential round trips (send one, wait for its echo) and
pipelined frames/s (a writer sends back to back while a reader counts echoes).
The client encodes every frame and decodes every echo; the server only splits
frames and writes each one back, so this is the least work a ping can cost.
Server and client share one process, as in trio-kad's in-process benchmarks;
``--processes`` also runs them with the server in a subprocess.
(b) cbor2 encode + decode of a ping-sized and a 20-contact "nodes"-sized map,
and the same through trio_kad's validating codec (``encode_frame`` /
``decode_frame``).
(c) Sequential round trips through trio_kad's TcpTransport (a client-only
transport and a server transport whose handler returns Pong), and the ratio
to (a); then 4 and 16 callers sharing that one connection for ``--seconds``
(the transport multiplexes them: the server sees a peer that pipelines).
(d) One real node answering FIND_NODE (20 contacts a reply) to the same
pipelined client as (a), and its frames/s as a share of (a)'s. Then the echo
and the node again in ``--turns`` alternating one-second turns: the median of
the turns' ratios does not drift with the machine, as two runs a minute apart
may.

Prints one JSON object on stdout and a short summary on stderr. Figures are
measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial
from typing import Any

import cbor2
import trio
from _stats import percentiles, versions

from trio_kad import Config, TcpTransport
from trio_kad._codec import decode_frame, encode_frame
from trio_kad._ids import Contact
from trio_kad._messages import (
    FindNode,
    Frame,
    Nodes,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    RequestFrame,
)
from trio_kad._node import Node

HOST = "127.0.0.1"
NODE_ID = bytes(range(32))
_RECEIVE_SIZE = 65536


def ping_map(n: int) -> dict[str, object]:
    return {"v": 1, "t": "ping", "id": n, "from": NODE_ID, "port": 4000}


def nodes_map(n: int) -> dict[str, object]:
    contacts = [[bytes([i]) * 32, HOST, 4000 + i] for i in range(20)]
    return {"v": 1, "t": "nodes", "id": n, "from": NODE_ID, "nodes": contacts}


def frame(n: int) -> bytes:
    payload = cbor2.dumps(ping_map(n))
    return len(payload).to_bytes(4, "big") + payload


class Splitter:
    """Splits a byte stream into length-prefixed payloads (no size bound: a benchmark)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self.buffer += data
        out: list[bytes] = []
        start = 0
        while len(self.buffer) - start >= 4:
            length = int.from_bytes(self.buffer[start : start + 4], "big")
            end = start + 4 + length
            if len(self.buffer) < end:
                break
            out.append(bytes(self.buffer[start + 4 : end]))
            start = end
        del self.buffer[:start]
        return out


# --- (a) the bare echo ----------------------------------------------------------


async def echo_handler(stream: trio.SocketStream) -> None:
    splitter = Splitter()
    try:
        while data := await stream.receive_some(_RECEIVE_SIZE):
            # Whole frames only, written back in one send, as a server replying would.
            payloads = splitter.feed(data)
            if payloads:
                await stream.send_all(b"".join(len(p).to_bytes(4, "big") + p for p in payloads))
    except trio.BrokenResourceError:
        pass


async def serve_echo(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    listeners = await trio.open_tcp_listeners(0, host=HOST)
    port: int = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, echo_handler, listeners)
        task_status.started(port)


async def echo_sequential(port: int, rounds: int) -> dict[str, Any]:
    stream = await trio.open_tcp_stream(HOST, port)
    splitter = Splitter()
    rtts: list[float] = []
    async with stream:
        for n in range(rounds):
            begin = time.perf_counter()
            await stream.send_all(frame(n))
            payloads: list[bytes] = []
            while not payloads:
                payloads = splitter.feed(await stream.receive_some(_RECEIVE_SIZE))
            reply = cbor2.loads(payloads[0])
            rtts.append((time.perf_counter() - begin) * 1e6)
            if reply["id"] != n:
                raise RuntimeError(f"echo out of order: {reply['id']} != {n}")
    return {"rounds": rounds, "rtt_us": percentiles(rtts)}


async def pipelined(
    stream: trio.SocketStream, frames: list[bytes], seconds: float
) -> dict[str, Any]:
    """Send ``frames`` (round robin) back to back for ``seconds`` while counting the answers.

    The one client shape behind every pipelined figure: a writer with one
    frame per ``send_all`` and no window (TCP's buffers bound what is in
    flight), a reader that splits the stream and decodes every answer with
    cbor2. The echo and the node get exactly the same client, so their
    frames/s differ only by what the server does.
    """
    counted = 0
    sent = 0
    last: bytes = b""

    async def writer() -> None:
        nonlocal sent
        while True:
            await stream.send_all(frames[sent % len(frames)])
            sent += 1

    async def reader() -> None:
        nonlocal counted, last
        splitter = Splitter()
        while True:
            for payload in splitter.feed(await stream.receive_some(_RECEIVE_SIZE)):
                cbor2.loads(payload)
                counted += 1
                last = payload

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(writer)
        begin = time.perf_counter()
        await trio.sleep(seconds)
        elapsed = time.perf_counter() - begin
        answered = counted
        nursery.cancel_scope.cancel()
    return {
        "seconds": elapsed,
        "frames_sent": sent,
        "answers": answered,
        "frames_per_s": answered / elapsed,
        "last_answer": last,
    }


async def echo_pipelined(port: int, seconds: float) -> dict[str, Any]:
    stream = await trio.open_tcp_stream(HOST, port)
    async with stream:
        result = await pipelined(stream, [frame(n) for n in range(1024)], seconds)
    del result["last_answer"]
    return result


async def run_echo(port: int, args: argparse.Namespace) -> dict[str, Any]:
    await echo_sequential(port, min(args.rounds, 200))  # warm-up
    return {
        "sequential": await echo_sequential(port, args.rounds),
        "pipelined": await echo_pipelined(port, args.seconds),
    }


async def echo_in_process(args: argparse.Namespace) -> dict[str, Any]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_echo)
        result = await run_echo(port, args)
        nursery.cancel_scope.cancel()
    return result


def serve_forever() -> None:
    """The --serve mode: an echo server in its own process; prints its port, then serves."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_echo)
            print(port, flush=True)

    trio.run(main)


def echo_in_subprocess(args: argparse.Namespace) -> dict[str, Any]:
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        return trio.run(run_echo, port, args)
    finally:
        server.terminate()
        server.wait()


# --- (b) CBOR cost --------------------------------------------------------------


REPEATS = 5


def time_us(fn: Callable[[], object]) -> float:
    """Best of ``REPEATS`` runs, microseconds per call."""
    timer = timeit.Timer(fn)
    number = timer.autorange()[0] if REPEATS > 1 else 100
    return min(timer.repeat(REPEATS, number)) / number * 1e6


def cbor_roundtrip(item: object) -> object:
    return cbor2.loads(cbor2.dumps(item))


def codec_roundtrip(kad_frame: Frame) -> Frame:
    return decode_frame(encode_frame(kad_frame)[4:])


def cbor_costs() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, item in (("ping", ping_map(12345)), ("nodes20", nodes_map(12345))):
        encoded = cbor2.dumps(item)
        out[name] = {
            "bytes": len(encoded),
            "encode_us": time_us(partial(cbor2.dumps, item)),
            "decode_us": time_us(partial(cbor2.loads, encoded)),
            "roundtrip_us": time_us(partial(cbor_roundtrip, item)),
        }
    contacts = tuple(Contact(bytes([i]) * 32, HOST, 4000 + i) for i in range(20))
    frames: tuple[tuple[str, Frame], ...] = (
        ("ping", RequestFrame(12345, NODE_ID, 4000, Ping())),
        ("nodes20", ReplyFrame(12345, NODE_ID, Nodes(contacts))),
    )
    for name, kad_frame in frames:
        payload = encode_frame(kad_frame)[4:]
        out[name]["trio_kad_codec"] = {
            "encode_us": time_us(partial(encode_frame, kad_frame)),
            "decode_us": time_us(partial(decode_frame, payload)),
            "roundtrip_us": time_us(partial(codec_roundtrip, kad_frame)),
        }
    return out


# --- (c) the same round trip through TcpTransport --------------------------------


async def transport_sequential(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    async def handler(frame: RequestFrame, remote: tuple[str, int]) -> Reply:
        return Pong()

    server, client = TcpTransport(), TcpTransport()
    async with trio.open_nursery() as nursery:
        address = await nursery.start(server.run, config, bytes(32), HOST, 0, handler)
        await nursery.start(client.run, config, NODE_ID, HOST, 0, None)

        async def once() -> float:
            begin = time.perf_counter()
            reply = await client.request(address, NODE_ID, 4000, Ping())
            elapsed = (time.perf_counter() - begin) * 1e6
            if not isinstance(reply.body, Pong):
                raise RuntimeError(f"unexpected reply {reply.body!r}")
            return elapsed

        for _ in range(min(args.rounds, 200)):  # warm-up, and the connection is opened
            await once()
        rtts = [await once() for _ in range(args.rounds)]
        stats = {"client": asdict(client.statistics()), "server": asdict(server.statistics())}
        shared = {
            str(callers): await shared_connection(once, callers, args.seconds)
            for callers in (4, 16)
        }
        nursery.cancel_scope.cancel()
    return {
        "rounds": args.rounds,
        "rtt_us": percentiles(rtts),
        "statistics": stats,
        "callers_sharing_the_connection": shared,
    }


async def shared_connection(
    once: Callable[[], Awaitable[float]], callers: int, seconds: float
) -> dict[str, Any]:
    """``callers`` tasks sending pings back to back for ``seconds``, all on one pooled connection.

    The transport multiplexes them, so the server sees a peer that pipelines.
    """
    rtts: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            rtts.append(await once())

    begin = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    elapsed = time.perf_counter() - begin
    return {"rpcs_per_s": len(rtts) / elapsed, "rtt_us": percentiles(rtts)}


# --- (d) one node answering FIND_NODE, pipelined ------------------------------------


def find_node_server(config: Config) -> tuple[Node, list[bytes]]:
    """A node whose table was offered 10,000 ids, and 1,024 FIND_NODE requests for it."""
    rng = random.Random(1)
    node = Node(rng.randbytes(32), config, TcpTransport(), rng=rng)
    now = trio.current_time()
    for i in range(10_000):
        host = f"10.{i // 250 % 250}.{i % 250}.{1 + i // 62500}"
        node.table.update(Contact(rng.randbytes(32), host, 4000), now)
    requests = [
        encode_frame(RequestFrame(n, NODE_ID, 4000, FindNode(rng.randbytes(32))))
        for n in range(1024)
    ]
    return node, requests


def check_find_node_answer(answer: bytes) -> int:
    """Raise unless ``answer`` is a real FIND_NODE reply; its number of contacts."""
    reply = decode_frame(answer)
    if not isinstance(reply, ReplyFrame) or not isinstance(reply.body, Nodes):
        raise RuntimeError(f"unexpected reply {reply!r}")
    return len(reply.body.contacts)


async def node_find_node_pipelined(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """A real node (its table filled from 10,000 ids) answering FIND_NODE as fast as it can.

    Driven by the same pipelined client as the echo floor, so the ratio of the
    two is what the node's work costs on top of a bare Trio server.
    """
    node, requests = find_node_server(config)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(node.run, HOST, 0)
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            result = await pipelined(stream, requests, args.seconds)
        nursery.cancel_scope.cancel()
    # Checked once, outside the timing: the answers were real FIND_NODE replies.
    result["contacts_per_reply"] = check_find_node_answer(result.pop("last_answer"))
    result["table_contacts"] = len(node.table)
    result["replies"] = result.pop("answers")
    return result


async def find_node_vs_echo_alternating(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """The echo and the node in turns of one second, ``--turns`` each, same client.

    The machine's speed drifts by tens of percent over a minute (other tenants),
    so a ratio of two runs made a minute apart says as much about the drift as
    about the node. Turns a second apart see the same machine; the median of
    their ratios is the figure to quote.
    """
    node, requests = find_node_server(config)
    echo_frames = [frame(n) for n in range(1024)]
    echo_rates: list[float] = []
    node_rates: list[float] = []
    async with trio.open_nursery() as nursery:
        echo_port = await nursery.start(serve_echo)
        address = await nursery.start(node.run, HOST, 0)
        for _ in range(args.turns):
            async with await trio.open_tcp_stream(HOST, echo_port) as stream:
                echo = await pipelined(stream, echo_frames, args.turn_seconds)
            async with await trio.open_tcp_stream(*address) as stream:
                answered = await pipelined(stream, requests, args.turn_seconds)
            check_find_node_answer(answered["last_answer"])
            echo_rates.append(echo["frames_per_s"])
            node_rates.append(answered["frames_per_s"])
        nursery.cancel_scope.cancel()
    ratios = [n / e for n, e in zip(node_rates, echo_rates, strict=True)]
    return {
        "turns": args.turns,
        "turn_seconds": args.turn_seconds,
        "echo_frames_per_s": echo_rates,
        "node_replies_per_s": node_rates,
        "ratios": ratios,
        "ratio_median": statistics.median(ratios),
    }


# --- main --------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    # The default per-IP rate (1000/s) would refuse a tight loop from one client;
    # the point here is the transport's cost, not its limits. ``for_host`` gives
    # the node on loopback what ``open_dht`` would: loopback is exempt from
    # per-IP limits there, as on every node listening on loopback.
    config = Config(request_rate_per_ip=1e9, request_burst_per_ip=10**9).for_host(HOST)
    result: dict[str, Any] = {
        "benchmark": "floor",
        "rounds": args.rounds,
        "seconds": args.seconds,
        "processes": args.processes,
        "transport_config": {
            "request_rate_per_ip": config.request_rate_per_ip,
            "request_burst_per_ip": config.request_burst_per_ip,
        },
        "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg()},
    }
    result["echo_in_process"] = trio.run(echo_in_process, args)
    if args.processes:
        result["echo_subprocess"] = echo_in_subprocess(args)
    result["cbor"] = cbor_costs()
    transport = trio.run(transport_sequential, args, config)
    floor = result["echo_in_process"]["sequential"]["rtt_us"]
    transport["ratio_to_floor"] = {
        q: transport["rtt_us"][q] / floor[q] for q in ("mean", "p50", "p99")
    }
    result["transport_in_process"] = transport
    find_node = trio.run(node_find_node_pipelined, args, config)
    echo_rate = result["echo_in_process"]["pipelined"]["frames_per_s"]
    find_node["ratio_to_floor"] = find_node["frames_per_s"] / echo_rate
    result["node_find_node_pipelined"] = find_node
    if args.turns:
        result["find_node_vs_echo_alternating"] = trio.run(
            find_node_vs_echo_alternating, args, config
        )
    result["machine"]["loadavg_after"] = os.getloadavg()
    return result


def summary(result: dict[str, Any]) -> None:
    def line(label: str, echo: dict[str, Any]) -> None:
        rtt = echo["sequential"]["rtt_us"]
        print(
            f"{label}: rtt p50 {rtt['p50']:.1f} us, p99 {rtt['p99']:.1f} us; "
            f"pipelined {echo['pipelined']['frames_per_s']:.0f} frames/s",
            file=sys.stderr,
        )

    line("echo, one process", result["echo_in_process"])
    if "echo_subprocess" in result:
        line("echo, server in subprocess", result["echo_subprocess"])
    for name, cost in result["cbor"].items():
        kad = cost["trio_kad_codec"]
        print(
            f"cbor {name} ({cost['bytes']} B): encode {cost['encode_us']:.2f} us, "
            f"decode {cost['decode_us']:.2f} us; trio_kad codec encode {kad['encode_us']:.2f} us, "
            f"decode {kad['decode_us']:.2f} us",
            file=sys.stderr,
        )
    t = result["transport_in_process"]
    print(
        f"TcpTransport, one process: rtt p50 {t['rtt_us']['p50']:.1f} us, "
        f"p99 {t['rtt_us']['p99']:.1f} us; x{t['ratio_to_floor']['p50']:.2f} the floor at p50",
        file=sys.stderr,
    )
    for callers, shared in t["callers_sharing_the_connection"].items():
        print(
            f"  {callers} callers sharing its connection: {shared['rpcs_per_s']:.0f} RPCs/s, "
            f"rtt p50 {shared['rtt_us']['p50']:.0f} us, p99 {shared['rtt_us']['p99']:.0f} us",
            file=sys.stderr,
        )
    f = result["node_find_node_pipelined"]
    print(
        "one node answering FIND_NODE (pipelined, same client as the echo): "
        f"{f['frames_per_s']:.0f} replies/s, {f['ratio_to_floor']:.0%} of the echo floor",
        file=sys.stderr,
    )
    if "find_node_vs_echo_alternating" in result:
        a = result["find_node_vs_echo_alternating"]
        print(
            f"  the same in {a['turns']} alternating turns with the echo: median "
            f"{statistics.median(a['node_replies_per_s']):.0f} replies/s against "
            f"{statistics.median(a['echo_frames_per_s']):.0f} frames/s, "
            f"median ratio {a['ratio_median']:.0%} "
            f"(turns {min(a['ratios']):.0%}..{max(a['ratios']):.0%})",
            file=sys.stderr,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=3.0, help="pipelined test duration")
    parser.add_argument(
        "--processes", action="store_true", help="also run the echo with the server in a subprocess"
    )
    parser.add_argument(
        "--turns",
        type=int,
        default=9,
        help="alternating echo/FIND_NODE turns for the drift-free ratio (0: skip)",
    )
    parser.add_argument("--turn-seconds", type=float, default=1.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timing runs per CBOR figure (best is kept)"
    )
    args = parser.parse_args()
    global REPEATS
    REPEATS = args.repeats
    if args.serve:
        serve_forever()
        return
    result = measure(args)
    json.dump(result, sys.stdout, indent=2)
    print()
    summary(result)


if __name__ == "__main__":
    main()
