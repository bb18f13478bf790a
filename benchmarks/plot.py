"""Charts from the benchmark JSON: latency CDFs, rounds per lookup against N, peer comparison.

    pip install -e '.[plot]'
    python benchmarks/network.py --nodes 100 --ops 200 --churn 0.3 > net.json
    python benchmarks/scale.py --sizes 1000,3000,10000 > scale.json
    python benchmarks/peer_compare.py --nodes 300 --ops 200 > peer.json
    python benchmarks/plot.py --network net.json --scale scale.json --peer peer.json --out charts
    python benchmarks/plot.py --wan wan.json --testbed tb1.json tb2.json --out charts

(the charts of ``wan.py`` and ``testbed.py`` runs are ``_plot_net``'s).

Any subset of the inputs may be given; each writes its own PNGs into ``--out``
and the paths written are printed one a line. Reading the JSON into series
(``network_cdf_panels``, ``peer_cdf_panels``, ``peer_bars``, ``rounds_vs_n``)
is plain Python; only the ``draw_*`` functions import matplotlib, so the
extraction can be used and tested without it, and without matplotlib the
script exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import _plot_net

# Latency samples are rounded to 0.001 ms; a local hit can round to 0, which a
# log axis cannot show, so values are clamped up to that resolution.
LATENCY_FLOOR_MS = 0.001

INSTALL_HINT = "pip install -e '.[plot]'"


class PlotInputError(ValueError):
    """The JSON given is not the output of the benchmark it was given for."""


# --- extraction: JSON -> series (no matplotlib) --------------------------------------------


@dataclass(frozen=True)
class CdfSeries:
    """One line of a latency CDF: ``x`` in ms (ascending), ``y`` the fraction at or below it.

    ``exact`` is False when the JSON held only percentiles, so the line is a few
    points (p50, p95, p99, max) rather than every operation.
    """

    label: str
    impl: str
    phase: str
    x: list[float]
    y: list[float]
    exact: bool


@dataclass(frozen=True)
class CdfPanel:
    """One axes of a CDF chart (gets or sets) and the lines on it."""

    title: str
    series: list[CdfSeries]


@dataclass(frozen=True)
class RoundsVsN:
    """Rounds per lookup at each measured N, and the reference curves over the same range."""

    nodes: list[int]
    mean: list[float]
    p95: list[float]
    reference_nodes: list[int]
    target: list[int]
    log2_n: list[float]


@dataclass(frozen=True)
class Bar:
    """One comparison panel: the median of each implementation and its individual runs."""

    title: str
    unit: str
    higher_is_better: bool
    median: dict[str, float]
    runs: dict[str, list[float]]


def target_rounds(n: int) -> int:
    """The rounds a lookup should stay within on N nodes: ``ceil(log2(N) / 2) + 1``."""
    return math.ceil(math.log2(n) / 2) + 1


def cdf(
    samples: Sequence[float], floor: float = LATENCY_FLOOR_MS
) -> tuple[list[float], list[float]]:
    """The empirical CDF of ``samples``: sorted values (at least ``floor``) and i/n."""
    ordered = sorted(max(float(v), floor) for v in samples)
    count = len(ordered)
    return ordered, [(i + 1) / count for i in range(count)]


# The percentile keys `_stats.percentiles` writes, and the fraction each stands for.
_PERCENTILE_POINTS = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))


def _percentile_points(
    latency: Mapping[str, Any], floor: float = LATENCY_FLOOR_MS
) -> tuple[list[float], list[float]]:
    points = [(max(float(latency[k]), floor), q) for k, q in _PERCENTILE_POINTS if k in latency]
    return [x for x, _ in points], [q for _, q in points]


def _require(data: Mapping[str, Any], benchmark: str) -> None:
    found = data.get("benchmark")
    if found != benchmark:
        raise PlotInputError(f"expected the JSON of {benchmark}.py, got benchmark={found!r}")


def _phase_series(
    impl: str, phase: str, label: str, phases: Sequence[Mapping[str, Any]]
) -> CdfSeries | None:
    """One CDF line from the same phase of one or more runs, their samples pooled.

    Failed operations are timed too, so the label carries the success rate.
    """
    rates = [float(run["success"]) for run in phases if "success" in run]
    notes = [f"{sum(rates) / len(rates):.0%} ok"] if rates else []
    if all("samples_ms" in run for run in phases):
        samples = [float(v) for run in phases for v in run["samples_ms"]]
        if not samples:
            return None
        x, y = cdf(samples)
        return CdfSeries(_labelled(label, notes), impl, phase, x, y, exact=True)
    # JSON from before the benchmarks kept raw samples: the first run's percentiles.
    x, y = _percentile_points(phases[0].get("latency_ms", {}))
    if not x:
        return None
    return CdfSeries(_labelled(label, ["percentiles", *notes]), impl, phase, x, y, exact=False)


def _labelled(label: str, notes: Sequence[str]) -> str:
    return f"{label} ({', '.join(notes)})" if notes else label


def network_cdf_panels(data: Mapping[str, Any]) -> list[CdfPanel]:
    """Latency CDFs from network.py: gets (first, again, after churn) and sets."""
    _require(data, "network")
    churn = float(data.get("churn", 0.0))
    gets: list[CdfSeries] = []
    phases = (
        ("get", "get"),
        ("get_again", "the same gets again (pooled connections)"),
        ("get_after_churn", f"get after {churn:.0%} churn"),
    )
    for phase, label in phases:
        if phase in data:
            line = _phase_series("trio-kad", phase, label, [data[phase]])
            if line is not None:
                gets.append(line)
    sets: list[CdfSeries] = []
    if "set" in data:
        line = _phase_series("trio-kad", "set", "set", [data["set"]])
        if line is not None:
            sets.append(line)
    return [p for p in (CdfPanel("get", gets), CdfPanel("set", sets)) if p.series]


def network_title(data: Mapping[str, Any]) -> str:
    """A one-line description of a network.py run."""
    return (
        f"trio-kad latency: {data.get('nodes')} nodes, {data.get('ops')} ops, "
        f"{data.get('transport')} transport, seed {data.get('seed')}"
    )


def _impls(data: Mapping[str, Any]) -> list[str]:
    median = data.get("median")
    if not isinstance(median, Mapping) or not median:
        raise PlotInputError("peer_compare JSON has no 'median' figures")
    return list(median)


def peer_cdf_panels(data: Mapping[str, Any]) -> list[CdfPanel]:
    """Latency CDFs from peer_compare.py, every run of an implementation pooled.

    Gets before and after the stop share one panel, sets have the other; both
    implementations are on each.
    """
    _require(data, "peer_compare")
    stop = float(data.get("stop", 0.0))
    runs = data.get("all_runs", [])
    gets: list[CdfSeries] = []
    sets: list[CdfSeries] = []
    for impl in _impls(data):
        mine = [r for r in runs if r.get("impl") == impl]
        if not mine:
            continue
        for phase, label, panel in (
            ("get", f"{impl} get", gets),
            ("get_after_stop", f"{impl} get after {stop:.0%} stopped", gets),
            ("set", f"{impl} set", sets),
        ):
            phases = [r[phase] for r in mine if phase in r]
            if phases:
                line = _phase_series(impl, phase, label, phases)
                if line is not None:
                    panel.append(line)
    return [p for p in (CdfPanel("get", gets), CdfPanel("set", sets)) if p.series]


def peer_title(data: Mapping[str, Any]) -> str:
    """A one-line description of a peer_compare.py run."""
    return (
        f"{data.get('nodes')} nodes, {data.get('ops')} ops, {data.get('runs')} run(s) each, "
        f"{float(data.get('stop', 0.0)):.0%} stopped, seed {data.get('seed')}"
    )


# Compared figures: (key in the median table, panel title, unit, scale, higher is better).
PEER_BARS: tuple[tuple[str, str, str, float, bool], ...] = (
    ("get.latency_ms.p50", "get p50", "ms", 1.0, False),
    ("set.latency_ms.p50", "set p50", "ms", 1.0, False),
    ("get.ops_per_s", "gets/s", "ops/s", 1.0, True),
    ("set.ops_per_s", "sets/s", "ops/s", 1.0, True),
    ("get_after_stop.success", "found after stop", "%", 100.0, True),
)


def _dig(result: Mapping[str, Any], dotted: str) -> float | None:
    value: Any = result
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return float(value)


def peer_bars(data: Mapping[str, Any]) -> list[Bar]:
    """The bar panels of the peer comparison: medians, and every run's value for the spread."""
    _require(data, "peer_compare")
    impls = _impls(data)
    runs = data.get("all_runs", [])
    bars: list[Bar] = []
    for key, title, unit, scale, higher in PEER_BARS:
        median: dict[str, float] = {}
        spread: dict[str, list[float]] = {}
        for impl in impls:
            value = data["median"][impl].get(key)
            if value is None:
                continue
            median[impl] = float(value) * scale
            # Run results nest the same figure ("get.latency_ms.p50" -> r["get"]["latency_ms"]...).
            found = (_dig(r, key) for r in runs if r.get("impl") == impl)
            spread[impl] = [v * scale for v in found if v is not None]
        if median:
            bars.append(Bar(title, unit, higher, median, spread))
    return bars


def scale_entries(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-size entries of scale.py's JSON (or the one entry a ``--single`` run prints)."""
    if data.get("benchmark") == "scale":
        return list(data.get("sizes", []))
    if "nodes" in data and "lookups" in data:
        return [data]
    raise PlotInputError(f"expected the JSON of scale.py, got benchmark={data.get('benchmark')!r}")


def _reference_nodes(nodes: Sequence[int], points: int = 200) -> list[int]:
    """Integer N spread evenly on a log axis over the measured range, plus each measured N
    and both sides of every step of the target (N = 4^m and 4^m + 1)."""
    low, high = min(nodes), max(nodes)
    if low == high:
        low, high = max(2, low // 2), high * 2
    low = max(2, low)
    ratio = math.log(high / low)
    grid = {round(low * math.exp(ratio * i / (points - 1))) for i in range(points)}
    grid.update(nodes)
    m = 1
    while 4**m <= high:
        grid.update(n for n in (4**m, 4**m + 1) if low <= n <= high)
        m += 1
    return sorted(n for n in grid if n >= 2)


def rounds_vs_n(data: Mapping[str, Any]) -> RoundsVsN:
    """Mean and p95 rounds per lookup against N, with ``ceil(log2 N / 2) + 1`` and ``log2 N``."""
    measured: list[tuple[int, float, float]] = []
    for entry in scale_entries(data):
        rounds = entry.get("lookups", {}).get("rounds", {})
        if "mean" not in rounds:  # no lookup got a report at this size
            continue
        measured.append((int(entry["nodes"]), float(rounds["mean"]), float(rounds["p95"])))
    if not measured:
        raise PlotInputError("scale JSON has no size with lookup rounds")
    measured.sort()
    nodes = [n for n, _, _ in measured]
    reference = _reference_nodes(nodes)
    return RoundsVsN(
        nodes=nodes,
        mean=[mean for _, mean, _ in measured],
        p95=[p95 for _, _, p95 in measured],
        reference_nodes=reference,
        target=[target_rounds(n) for n in reference],
        log2_n=[math.log2(n) for n in reference],
    )


def scale_title(data: Mapping[str, Any]) -> str:
    """A one-line description of a scale.py run."""
    params = data.get("params", {})
    config = data.get("config", {})
    return (
        f"rounds per lookup: {params.get('lookups')} lookups per size, "
        f"k={config.get('k')}, alpha={config.get('alpha')}, seed {params.get('seed')}"
    )


# --- drawing (matplotlib, imported here only) ----------------------------------------------

# One colour per implementation, one line style per phase, the same on every chart.
IMPL_COLOURS = {"trio-kad": "tab:blue", "kademlia": "tab:orange"}
PHASE_STYLES = {
    "get": "-",
    "set": "-",
    "get_again": ":",
    "get_after_churn": "--",
    "get_after_stop": "--",
}


def _pyplot(path: Path) -> Any:
    """matplotlib.pyplot on the Agg backend, and ``path``'s directory made."""
    # Agg: files only, no display needed; chosen before pyplot is first imported.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Only once matplotlib is known to be there, so a failed run leaves no empty folder.
    path.parent.mkdir(parents=True, exist_ok=True)
    return plt


def tick_label(value: float) -> str:
    """A log-axis tick as a plain number ("0.01", "20", "1000"), blank but for 1, 2 and 5 x 10^n.

    matplotlib's default labels minor ticks as "3x10^1" etc. when an axis spans
    less than a decade, and those overlap.
    """
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
    if min(abs(mantissa - m) for m in (1, 2, 5)) > 1e-6:
        return ""
    return f"{value:g}"


def short_number(value: float) -> str:
    """A bar's value label: three significant digits, whole numbers from 1000 up."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _log_ms_axis(ax: Any) -> None:
    """Log x axis with plain-number labels; call after the lines are drawn (reads the limits)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log")
    formatter = FuncFormatter(lambda value, _position: tick_label(value))
    ax.xaxis.set_major_formatter(formatter)
    low, high = ax.get_xlim()
    # Across more than two decades, labels at 2 and 5 as well would run into each other.
    wide = high / low > 100
    ax.xaxis.set_minor_formatter(NullFormatter() if wide else formatter)


def draw_cdf(panels: Sequence[CdfPanel], title: str, path: Path) -> Path:
    """Latency CDF panels side by side, log-scaled milliseconds on x."""
    plt = _pyplot(path)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for line in panel.series:
            colour = IMPL_COLOURS.get(line.impl)
            style = PHASE_STYLES.get(line.phase, "-")
            if line.exact:
                ax.step(
                    line.x, line.y, where="post", color=colour, linestyle=style, label=line.label
                )
            else:
                ax.plot(line.x, line.y, marker="o", color=colour, linestyle=style, label=line.label)
        _log_ms_axis(ax)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("fraction of operations")
        ax.set_title(panel.title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_rounds(series: RoundsVsN, title: str, path: Path) -> Path:
    """Mean and p95 rounds per lookup against N (log2 axis), with the reference curves."""
    plt = _pyplot(path)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    ax.plot(series.reference_nodes, series.log2_n, color="grey", linestyle=":", label="log2 N")
    ax.plot(
        series.reference_nodes,
        series.target,
        color="tab:red",
        linestyle="--",
        label="target ceil(log2 N / 2) + 1",
    )
    ax.plot(series.nodes, series.mean, marker="o", color="tab:blue", label="mean")
    ax.plot(series.nodes, series.p95, marker="s", color="tab:purple", label="p95")
    ax.set_xscale("log", base=2)
    ax.set_xticks(series.nodes, [str(n) for n in series.nodes])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("nodes N")
    ax.set_ylabel("rounds per lookup")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_bars(bars: Sequence[Bar], title: str, path: Path) -> Path:
    """One small panel per figure: a bar per implementation (median), dots for each run."""
    plt = _pyplot(path)
    fig, axes = plt.subplots(1, len(bars), figsize=(2.6 * len(bars), 4), squeeze=False)
    for ax, bar in zip(axes[0], bars, strict=True):
        impls = list(bar.median)
        heights = [bar.median[impl] for impl in impls]
        colours = [IMPL_COLOURS.get(impl, "tab:grey") for impl in impls]
        ax.bar(range(len(impls)), heights, color=colours)
        for i, impl in enumerate(impls):
            runs = bar.runs.get(impl, [])
            if len(runs) > 1:  # one run is the bar itself
                ax.plot([i] * len(runs), runs, "k.", alpha=0.6)
            ax.annotate(
                short_number(bar.median[impl]),
                (i, bar.median[impl]),
                ha="center",
                va="bottom",
                fontsize="small",
            )
        ax.set_xticks(range(len(impls)), impls)
        ax.set_ylabel(bar.unit)
        better = "higher" if bar.higher_is_better else "lower"
        ax.set_title(f"{bar.title}\n({better} is better)", fontsize="medium")
        ax.margins(y=0.15)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- command line --------------------------------------------------------------------------


def load(path: str) -> Mapping[str, Any]:
    """A benchmark's JSON object from ``path``."""
    with open(path) as file:
        data = json.load(file)
    if not isinstance(data, dict):
        raise PlotInputError(f"{path}: not a JSON object")
    return data


def plot(args: argparse.Namespace) -> list[Path]:
    """Read every input given, then draw its charts into ``args.out``; the paths written."""
    # Read and extract everything first, so a bad input fails before any file is written.
    jobs: list[Callable[[], Path]] = []
    out = Path(args.out)
    if args.network:
        data = load(args.network)
        panels = network_cdf_panels(data)
        if panels:
            path = out / "network_latency_cdf.png"
            jobs.append(partial(draw_cdf, panels, network_title(data), path))
    if args.peer:
        data = load(args.peer)
        panels = peer_cdf_panels(data)
        if panels:
            jobs.append(partial(draw_cdf, panels, peer_title(data), out / "peer_latency_cdf.png"))
        bars = peer_bars(data)
        if bars:
            title = f"trio-kad vs kademlia (median): {peer_title(data)}"
            jobs.append(partial(draw_bars, bars, title, out / "peer_compare.png"))
    if args.scale:
        data = load(args.scale)
        series = rounds_vs_n(data)
        jobs.append(partial(draw_rounds, series, scale_title(data), out / "scale_rounds.png"))
    if args.wan:
        chart = _plot_net.wan_chart(load(args.wan))
        jobs.append(partial(_plot_net.draw_wan, chart, out / "wan_latency.png", _pyplot))
    if args.testbed:
        rows = _plot_net.testbed_rows([load(path) for path in args.testbed])
        jobs.append(partial(_plot_net.draw_testbed, rows, out / "testbed.png", _pyplot))
    return [draw() for draw in jobs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--network", metavar="JSON", help="output of network.py")
    parser.add_argument("--scale", metavar="JSON", help="output of scale.py")
    parser.add_argument("--peer", metavar="JSON", help="output of peer_compare.py")
    parser.add_argument("--wan", metavar="JSON", help="output of wan.py")
    parser.add_argument("--testbed", metavar="JSON", nargs="+", help="outputs of testbed.py")
    parser.add_argument("--out", default="charts", help="directory for the PNGs (default: charts)")
    args = parser.parse_args()
    if not (args.network or args.scale or args.peer or args.wan or args.testbed):
        parser.error("give at least one of --network, --scale, --peer, --wan, --testbed")
    try:
        written = plot(args)
    except ImportError as exc:
        print(f"plot: matplotlib is needed ({INSTALL_HINT}): {exc}", file=sys.stderr)
        sys.exit(2)
    except (
        OSError,
        ValueError,
        KeyError,
    ) as exc:  # bad input: not JSON, wrong benchmark, a key missing
        print(f"plot: {exc}", file=sys.stderr)
        sys.exit(1)
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
