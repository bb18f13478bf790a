"""The ``trio-kad`` command: serve, set, get, watch, config, demo, signed-record commands."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

from ._address import format_address, parse_address
from ._cli_config import add_config_flags, config_from_args, defaults_toml
from ._cli_providers import COMMANDS as PROVIDER_COMMANDS
from ._cli_providers import add_commands as add_provider_commands
from ._cli_providers import run_command as run_provider_command
from ._cli_records import COMMANDS as RECORD_COMMANDS
from ._cli_records import add_commands as add_record_commands
from ._cli_records import run_command as run_record_command
from ._cli_watch import COMMAND as WATCH_COMMAND
from ._cli_watch import add_command as add_watch_command
from ._cli_watch import run_command as run_watch_command
from ._config import Config
from ._errors import DhtError, raise_single
from ._logs import FORMATS, configure_logging
from ._open import open_dht
from ._status import StatusServer

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_ERROR = 2


def _peer(text: str) -> str:
    for part in text.split(","):
        try:
            parse_address(part)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _peers(groups: Sequence[str] | None) -> list[str]:
    return [p for group in groups or () for p in group.split(",") if p]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-kad", description="A Kademlia distributed hash table on Trio."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeatable)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run a node until SIGINT or SIGTERM")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    serve.add_argument(
        "--bootstrap",
        action="extend",
        nargs="+",
        type=_peer,
        metavar="H:P",
        help="peers to join through",
    )
    serve.add_argument("--data-dir", help="directory for the node id and stored pairs")
    serve.add_argument(
        "--config",
        metavar="FILE.toml",
        help="set Config fields from a TOML file (keys are field names, e.g. k = 20)",
    )
    add_config_flags(serve)
    serve.add_argument(
        "--status",
        metavar="H:P",
        help="serve a status page at / and Prometheus metrics at /metrics (a port alone: loopback)",
    )
    serve.add_argument(
        "--log-format", choices=FORMATS, default="text", help="json: one object per line"
    )

    for name, text in (("set", "store a UTF-8 string value"), ("get", "print the value of KEY")):
        cmd = sub.add_parser(name, help=text)
        _network_options(cmd)
        cmd.add_argument("key", metavar="KEY")
        if name == "set":
            cmd.add_argument("value", metavar="VALUE")

    add_record_commands(sub, _network_options)
    add_provider_commands(sub, _network_options)
    add_watch_command(sub, _network_options)
    config = sub.add_parser("config", help="print every Config field with its default")
    config.add_argument(
        "--defaults", action="store_true", required=True, help="as TOML that --config accepts"
    )

    demo = sub.add_parser("demo", help="run an N-node network in this process and show it work")
    demo.add_argument("--nodes", type=int, default=20, help="how many nodes (default 20)")
    demo.add_argument(
        "--k", type=int, default=5, help="replication factor for the demo (default 5)"
    )
    return parser


def _network_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--bootstrap",
        action="append",
        type=_peer,
        required=True,
        metavar="H:P",
        help="a peer of the network (repeat or comma-separate for several)",
    )
    cmd.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used by ``python -m trio_kad``)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, getattr(args, "log_format", "text"))
    try:
        if args.command == "serve":
            return trio.run(_serve, args)
        if args.command == "set":
            return trio.run(_set, args)
        if args.command == "get":
            return trio.run(_get, args)
        if args.command == WATCH_COMMAND:
            return run_watch_command(args, _peers(args.bootstrap))
        if args.command in RECORD_COMMANDS:
            return run_record_command(args, _peers(getattr(args, "bootstrap", None)))
        if args.command in PROVIDER_COMMANDS:
            return run_provider_command(args, _peers(args.bootstrap))
        if args.command == "config":
            print(defaults_toml(), end="")
            return EXIT_OK
        from ._demo import run_demo

        if args.nodes < 1 or args.k < 1:
            print("error: --nodes and --k must be at least 1", file=sys.stderr)
            return EXIT_ERROR
        return trio.run(run_demo, args.nodes, args.k)
    except KeyboardInterrupt:
        return 130
    except trio.TooSlowError:
        print(f"error: no answer within {args.timeout} s", file=sys.stderr)
        return EXIT_ERROR
    except (DhtError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


async def _serve(args: argparse.Namespace) -> int:
    # Refused before listening: a bad key, type or range exits 2 naming it.
    config = config_from_args(args)
    status = None if args.status is None else StatusServer(args.status)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as leaving:
                await _run_node(args, config, status, signals, leaving)
                leaving.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_single(group)
    return EXIT_OK


async def _run_node(
    args: argparse.Namespace,
    config: Config,
    status: StatusServer | None,
    signals: AsyncIterator[int],
    leaving: trio.Nursery,
) -> None:
    """Serve until a signal, then leave (handing pairs over); a second signal cuts that short."""
    async with (
        open_dht(
            args.host,
            args.port,
            _peers(args.bootstrap),
            config=config,
            data_dir=args.data_dir,
            transport=None if status is None else status.transport,
        ) as dht,
        trio.open_nursery() as nursery,
    ):
        url = None if status is None else await nursery.start(status.run, dht)
        host, port = dht.address
        print(f"listening on {format_address((host, port))} node {dht.node_id.hex()}", flush=True)
        if url is not None:
            print(f"status on {url}", flush=True)
        await _next_signal(signals)
        leaving.start_soon(_cancel_on_signal, signals, leaving.cancel_scope)
        nursery.cancel_scope.cancel()


async def _next_signal(signals: AsyncIterator[int]) -> None:
    signum = await anext(signals)
    logging.getLogger("trio_kad.cli").info("got signal %d, stopping", signum)


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    await _next_signal(signals)
    scope.cancel()


async def _set(args: argparse.Namespace) -> int:
    with trio.fail_after(args.timeout):
        async with open_dht(bootstrap=_peers(args.bootstrap), client_only=True) as dht:
            stored = await dht.set(args.key, args.value)
    print(stored)
    return EXIT_OK


async def _get(args: argparse.Namespace) -> int:
    with trio.fail_after(args.timeout):
        async with open_dht(bootstrap=_peers(args.bootstrap), client_only=True) as dht:
            value = await dht.get(args.key)
    if value is None:
        print(f"not found: {args.key}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(format_value(value))
    return EXIT_OK


def format_value(value: Any) -> str:
    """A stored value as one printable text: strings as they are, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    return json.dumps(value, default=repr, ensure_ascii=False)
