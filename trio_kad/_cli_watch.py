"""``trio-kad watch``: print a key's value, then each new one, until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import math
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from ._errors import raise_single
from ._open import open_dht

COMMAND = "watch"


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    network_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register ``watch`` with the options every network command has."""
    cmd = sub.add_parser(
        COMMAND, help="print the value of KEY, then each new one, until SIGINT or SIGTERM"
    )
    network_options(cmd)
    cmd.add_argument("key", metavar="KEY")


def run_command(args: argparse.Namespace, peers: list[str]) -> int:
    """Run ``watch``; exit 0 on a signal (``--timeout`` bounds joining only)."""
    return trio.run(_watch, args, peers)


async def _watch(args: argparse.Namespace, peers: list[str]) -> int:
    from .cli import EXIT_OK, format_value

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope)
                await _print_updates(args, peers, format_value)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_single(group)
    return EXIT_OK


async def _print_updates(
    args: argparse.Namespace, peers: list[str], format_value: Callable[[Any], str]
) -> None:
    # --timeout bounds joining the network; the watch itself runs until a signal.
    with trio.CancelScope(deadline=trio.current_time() + args.timeout) as joining:
        async with open_dht(bootstrap=peers, client_only=True) as dht:
            joining.deadline = math.inf
            async with dht.watch(args.key) as updates:
                async for value in updates:
                    print(format_value(value), flush=True)
    if joining.cancelled_caught:
        raise trio.TooSlowError


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    async for _ in signals:
        scope.cancel()
        return
