"""Counting RPCs by what sent them, for the upkeep benchmarks (churn.py, idle.py).

Each maintenance task labels itself (``trio_kad._maintenance.UPKEEP_CAUSE``);
RPCs sent outside upkeep count as "other": joins' own lookups, sets and gets,
and the pings of a full bucket's oldest contact that a request sets off.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import trio
import trio.testing
from _stats import versions

import trio_kad
from trio_kad import Config, MemoryNetwork, MemoryTransport
from trio_kad._maintenance import UPKEEP_CAUSE
from trio_kad._messages import Request


class CountingTransport(trio_kad.Transport):
    """A ``MemoryTransport`` that counts each request by upkeep cause and kind of RPC."""

    def __init__(self, inner: MemoryTransport, counts: Counter[tuple[str, str]]) -> None:
        super().__init__()
        self.inner = inner
        self.counts = counts

    async def run(self, *args: Any, **kwargs: Any) -> None:
        await self.inner.run(*args, **kwargs)

    async def _request(
        self, address: Any, sender_id: bytes, sender_port: int | None, body: Request
    ) -> Any:
        self.counts[UPKEEP_CAUSE.get() or "other", type(body).__name__] += 1
        return await self.inner.request(address, sender_id, sender_port, body)


class CountingNetwork(MemoryNetwork):
    """A ``MemoryNetwork`` whose transports count what they send (``counts``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counts: Counter[tuple[str, str]] = Counter()

    def transport(self) -> Any:
        return CountingTransport(super().transport(), self.counts)


def breakdown(counts: Counter[tuple[str, str]], per: float) -> dict[str, dict[str, float]]:
    """``counts`` divided by ``per``, as {cause: {kind of RPC: n, "total": n}}."""
    table: dict[str, dict[str, float]] = {}
    for (cause, kind), n in sorted(counts.items()):
        row = table.setdefault(cause, {"total": 0.0})
        row[kind] = n / per
        row["total"] += n / per
    return table


def header(benchmark: str, config: Config, args: argparse.Namespace, **params: object) -> Any:
    """The start of a benchmark's JSON: its name, parameters (``params``, then the
    ``seed`` and ``latency`` of ``args``), ``Config`` and versions."""
    return {
        "benchmark": benchmark,
        **params,
        "seed": args.seed,
        "latency": args.latency,
        "config": asdict(config),
        "versions": versions(),
    }


def run_virtual(
    simulate: Callable[[argparse.Namespace], Awaitable[dict[str, Any]]], args: argparse.Namespace
) -> dict[str, Any]:
    """Run ``simulate(args)`` in virtual time (autojump ``MockClock``); print its JSON."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    result = trio.run(simulate, args, clock=clock)
    json.dump(result, sys.stdout, indent=2)
    print()
    return result
