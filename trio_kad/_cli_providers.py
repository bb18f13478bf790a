"""The ``trio-kad`` commands for provider sets: announce, providers (SPEC "Command line")."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

import trio

from ._address import format_address
from ._open import open_dht

EXIT_OK = 0
EXIT_NONE = 1

COMMANDS = ("announce", "providers")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_network_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register the two commands; ``add_network_options`` adds --bootstrap and --timeout."""
    announce = sub.add_parser(
        "announce", help="announce a service on this host as a provider of TOPIC until a signal"
    )
    add_network_options(announce)
    announce.add_argument(
        "--port", type=int, required=True, metavar="P", help="the port the service listens on"
    )
    announce.add_argument("topic", metavar="TOPIC")

    providers = sub.add_parser("providers", help="print the providers of TOPIC")
    add_network_options(providers)
    providers.add_argument("--limit", type=int, default=20, help="at most N (default 20)")
    providers.add_argument("topic", metavar="TOPIC")


def run_command(args: argparse.Namespace, peers: list[str]) -> int:
    """Run one of ``COMMANDS``; ``DhtError``, ``ValueError`` and ``OSError`` are the caller's."""
    if args.command == "announce":
        return trio.run(_announce, args, peers)
    return trio.run(_providers, args, peers)


async def _announce(args: argparse.Namespace, peers: list[str]) -> int:
    if not 1 <= args.port <= 65535:  # refused before joining
        raise ValueError("--port must be in 1..65535")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        # Client-only: holders record the host the announcement comes from. Joining is
        # bounded by Config.bootstrap_timeout, the first announcement by --timeout.
        async with open_dht(bootstrap=peers, client_only=True) as dht:
            with trio.fail_after(args.timeout):
                acks = await dht.announce(args.topic, port=args.port)
            print(f"announced {args.topic} on port {args.port}: {acks} acks", flush=True)
            await anext(signals)  # re-announced in the background meanwhile
    return EXIT_OK


async def _providers(args: argparse.Namespace, peers: list[str]) -> int:
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    with trio.fail_after(args.timeout):
        async with open_dht(bootstrap=peers, client_only=True) as dht:
            found = await dht.find_providers(args.topic, limit=args.limit)
    for provider in found:
        print(f"{format_address((provider.host, provider.port))} {provider.node_id.hex()}")
    if not found:
        print(f"no providers: {args.topic}", file=sys.stderr)
        return EXIT_NONE
    return EXIT_OK
