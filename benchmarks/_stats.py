"""Summary statistics shared by the benchmark scripts."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import statistics
from dataclasses import asdict
from typing import Any

import trio

import trio_kad
from trio_kad import Config


def versions() -> dict[str, str]:
    """What ran: Python's, Trio's, cbor2's and trio-kad's versions, for every benchmark's JSON."""
    return {
        "python": platform.python_version(),
        "trio": trio.__version__,
        "cbor2": importlib.metadata.version("cbor2"),
        "trio_kad": trio_kad.__version__,
    }


def percentiles(values: list[float]) -> dict[str, float]:
    """Mean, p50, p95, p99 and max of ``values`` (nearest-rank); empty for no values."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "mean": statistics.fmean(ordered),
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "max": ordered[-1],
    }


def start(
    name: str, parser: argparse.ArgumentParser, modes: tuple[str, ...]
) -> tuple[argparse.Namespace, list[str], dict[str, Any]]:
    """Parse a ``--modes`` benchmark's arguments: the args, the modes asked, the JSON's head.

    The head names the benchmark and holds its params, the default Config and
    the versions; each mode adds its section to it.
    """
    args = parser.parse_args()
    chosen = [mode for mode in args.modes.split(",") if mode]
    if unknown := set(chosen) - set(modes):
        parser.error(f"unknown modes {sorted(unknown)}; choose from {modes}")
    head = {
        "benchmark": name,
        "params": vars(args),
        "config": asdict(Config()),
        "versions": versions(),
    }
    return args, chosen, head
