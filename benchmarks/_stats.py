"""Summary statistics shared by the benchmark scripts."""

from __future__ import annotations

import statistics


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
