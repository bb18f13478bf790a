"""Charts of the runs beyond loopback: the WAN model (``wan.py``) and the testbed (``testbed.py``).

Used by ``plot.py --wan wan.json --testbed tb1.json tb2.json ...``. As there,
reading the JSON into rows (``wan_rows``, ``testbed_rows``) is plain Python and
only the ``draw_*`` functions import matplotlib.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPERATIONS = (("get_stored", "get (stored earlier)"), ("set", "set"), ("get", "get (just set)"))
"""The operations ``wan.py`` times in each phase, and their labels."""


class NetInputError(ValueError):
    """The JSON given is not the output of the benchmark it was given for."""


@dataclass(frozen=True)
class WanRow:
    """One operation in one phase of a WAN run: latency percentiles in ms."""

    label: str
    operation: str
    silent: float
    p50: float
    p95: float
    found: float


@dataclass(frozen=True)
class WanChart:
    """A WAN run's rows and what its targets are in ms."""

    title: str
    rows: list[WanRow]
    median_rtt_ms: float


@dataclass(frozen=True)
class TestbedRow:
    """One testbed run (one layout): what its targets are about."""

    label: str
    acks: float
    contacts_mean: float
    contacts_min: float
    cli_get_p50: float
    cli_get_p95: float
    heal_s: float


def _need(data: Mapping[str, Any], benchmark: str) -> None:
    if data.get("benchmark") != benchmark:
        raise NetInputError(
            f"not the output of {benchmark}.py (benchmark: {data.get('benchmark')})"
        )


def wan_chart(data: Mapping[str, Any]) -> WanChart:
    """The p50 and p95 of every operation of every phase of a ``wan.py`` run."""
    _need(data, "wan")
    rows = []
    for phase in data["phases"]:
        silent = float(phase["silent"])
        for key, name in OPERATIONS:
            op = phase.get(key)
            if not op or "latency" not in op:
                continue
            ms = op["latency"]["ms"]
            found = float(op.get("found", op.get("stored", 1.0)))
            label = f"{name}\n{silent:.0%} silent"
            rows.append(WanRow(label, key, silent, float(ms["p50"]), float(ms["p95"]), found))
    nodes = data["params"]["nodes"]
    rtt = float(data["median_rtt_ms"])
    title = f"WAN model, {nodes:,} nodes, median RTT {rtt:.0f} ms (virtual time)"
    return WanChart(title, rows, rtt)


def testbed_rows(runs: Sequence[Mapping[str, Any]]) -> list[TestbedRow]:
    """One row per ``testbed.py`` run, labelled by its layout."""
    rows = []
    for data in runs:
        _need(data, "testbed")
        layout = data["layout"]
        if layout["namespaces"] == data["nodes"]:
            label = "a namespace\nper node"
        else:
            label = f"{layout['namespaces']} ns\nx {layout['addresses_per_namespace']} addr"
        if layout["one_subnet"]:
            label += "\none /24"
        if data.get("same_port"):
            label += "\none port"
        cli = data["silent"]["cli_get_via_live_bootstrap"]["ms"]
        contacts = data["contacts_at_end"]
        rows.append(
            TestbedRow(
                label,
                float(data["set_api"]["acks"]["mean"]),
                float(contacts["per_node"]["mean"]),
                float(contacts["min"]),
                float(cli["p50"]),
                float(cli["p95"]),
                float(data["heal_to_all_found_s"]),
            )
        )
    return rows


def draw_wan(chart: WanChart, path: Path, pyplot: Callable[[Path], Any]) -> Path:
    """Bars of p50 and p95 per operation and phase, on a log axis, with the targets drawn."""
    plt = pyplot(path)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = range(len(chart.rows))
    ax.bar([x - 0.2 for x in xs], [r.p50 for r in chart.rows], 0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [r.p95 for r in chart.rows], 0.4, label="p95")
    ax.axhline(3 * chart.median_rtt_ms, color="tab:green", ls="--", label="get p50 target (3 RTT)")
    ax.axhline(1000, color="tab:red", ls="--", label="get p95 and set p50 target (1 s)")
    ax.axhline(2000, color="tab:purple", ls=":", label="get p95 target, 30% silent (2 s)")
    ax.set_yscale("log")
    ax.set_ylabel("ms")
    ax.set_xticks(list(xs), [r.label for r in chart.rows], fontsize="small")
    ax.legend(fontsize="small")
    ax.set_title(chart.title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_testbed(rows: Sequence[TestbedRow], path: Path, pyplot: Callable[[Path], Any]) -> Path:
    """Three panels per layout: acks and contacts, the CLI get past stopped nodes, the heal."""
    plt = pyplot(path)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    xs = list(range(len(rows)))
    labels = [r.label for r in rows]
    left, middle, right = axes
    left.bar([x - 0.2 for x in xs], [r.acks for r in rows], 0.4, label="acks per set")
    left.bar([x + 0.2 for x in xs], [r.contacts_mean for r in rows], 0.4, label="contacts (mean)")
    left.plot([x + 0.2 for x in xs], [r.contacts_min for r in rows], "k_", ms=14, label="min")
    left.axhline(15, color="tab:red", ls="--", label="acks target (15)")
    left.axhline(20, color="tab:green", ls=":", label="contacts target, one /24 (20)")
    left.set_ylim(0, 40)  # room above the bars for the legend
    left.set_title("acknowledgements and contacts")
    middle.bar([x - 0.2 for x in xs], [r.cli_get_p50 for r in rows], 0.4, label="p50")
    middle.bar([x + 0.2 for x in xs], [r.cli_get_p95 for r in rows], 0.4, label="p95")
    middle.axhline(1000, color="tab:red", ls="--", label="p50 target (1 s)")
    middle.set_ylabel("ms")
    middle.set_title("CLI get, 30% of nodes stopped")
    right.bar(xs, [r.heal_s for r in rows], 0.5)
    right.set_ylabel("s")
    right.set_title("heal until every key is found\nfrom both sides")
    for ax in axes:
        ax.set_xticks(xs, labels, fontsize="x-small")
        if ax is not right:
            ax.legend(fontsize="x-small", loc="upper right")
    fig.suptitle("testbed: 30 serve processes in network namespaces")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
