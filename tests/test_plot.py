"""benchmarks/plot.py: the JSON -> series extraction, and its exits (matplotlib not needed)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from clihelp import ROOT

PLOT_PY = ROOT / "benchmarks" / "plot.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmarks_plot", PLOT_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    # Its helper modules sit beside it, as when it runs as a script.
    sys.path.insert(0, str(PLOT_PY.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(PLOT_PY.parent))
    return module


plot = _load()


def bench(name: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def latency(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "mean": sum(ordered) / len(ordered),
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[-1],
        "p99": ordered[-1],
        "max": ordered[-1],
    }


def phase(samples: list[float], success: float = 1.0, ops_per_s: float = 10.0) -> dict[str, Any]:
    return {
        "latency_ms": latency(samples),
        "samples_ms": samples,
        "ops_per_s": ops_per_s,
        "success": success,
    }


def peer_json() -> dict[str, Any]:
    """peer_compare.py's shape: two runs per implementation, medians as the driver makes them."""
    runs = [
        {
            "impl": "trio-kad",
            "run": 0,
            "set": phase([5.0, 7.0], ops_per_s=100.0),
            "get": phase([1.0, 2.0]),
            "get_after_stop": phase([3.0, 9.0], success=0.5),
        },
        {
            "impl": "kademlia",
            "run": 0,
            "set": phase([6.0, 8.0], ops_per_s=50.0),
            "get": phase([2.0, 4.0]),
            "get_after_stop": phase([2000.0, 4.0], success=1.0),
        },
        {
            "impl": "kademlia",
            "run": 1,
            "set": phase([6.5, 8.5], ops_per_s=70.0),
            "get": phase([2.5, 4.5]),
            "get_after_stop": phase([2001.0, 5.0], success=0.9),
        },
        {
            "impl": "trio-kad",
            "run": 1,
            "set": phase([0.0, 7.5], ops_per_s=120.0),
            "get": phase([1.5, 2.5]),
            "get_after_stop": phase([3.5, 9.5], success=0.7),
        },
    ]
    median = {
        "trio-kad": {
            "get.latency_ms.p50": 2.25,
            "set.latency_ms.p50": 7.25,
            "get.ops_per_s": 10.0,
            "set.ops_per_s": 110.0,
            "get_after_stop.success": 0.6,
        },
        "kademlia": {
            "get.latency_ms.p50": 4.25,
            "set.latency_ms.p50": 8.25,
            "get.ops_per_s": 10.0,
            "set.ops_per_s": 60.0,
            "get_after_stop.success": 0.95,
        },
    }
    return {
        "benchmark": "peer_compare",
        "nodes": 50,
        "ops": 2,
        "stop": 0.3,
        "runs": 2,
        "seed": 1,
        "median": median,
        "all_runs": runs,
    }


def scale_entry(n: int, mean: float | None, p95: float = 0.0) -> dict[str, Any]:
    rounds = {} if mean is None else {"mean": mean, "p50": mean, "p95": p95, "max": p95}
    return {"nodes": n, "lookups": {"rounds": rounds, "target_rounds": plot.target_rounds(n)}}


# --- pure pieces ---------------------------------------------------------------------------


def test_cdf_sorts_and_clamps_to_the_sample_resolution() -> None:
    x, y = plot.cdf([3.0, 1.0, 0.0, 2.0])
    assert x == [plot.LATENCY_FLOOR_MS, 1.0, 2.0, 3.0]
    assert y == [0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize(
    ("n", "rounds"), [(2, 2), (4, 2), (5, 3), (20, 4), (64, 4), (65, 5), (1000, 6), (10000, 8)]
)
def test_target_rounds_is_ceil_half_log2_plus_one(n: int, rounds: int) -> None:
    assert plot.target_rounds(n) == rounds


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0.001, "0.001"),
        (0.002, "0.002"),
        (0.003, ""),
        (0.05, "0.05"),
        (1.0, "1"),
        (20.0, "20"),
        (300.0, ""),
        (1000.0, "1000"),
        (5000.0, "5000"),
        (0.0, ""),
    ],
)
def test_tick_label_names_only_1_2_5_per_decade(value: float, label: str) -> None:
    assert plot.tick_label(value) == label


def test_tick_label_survives_float_error_at_every_decade() -> None:
    for exponent in range(-4, 6):
        assert plot.tick_label(10.0**exponent) != ""
        assert plot.tick_label(2 * 10.0**exponent) != ""


def test_short_number() -> None:
    assert plot.short_number(113179.1) == "113,179"
    assert plot.short_number(1.6357) == "1.64"
    assert plot.short_number(0.01234) == "0.0123"


# --- network.py ----------------------------------------------------------------------------


def test_network_panels_from_a_real_run() -> None:
    data = bench(
        "network", "--nodes", "12", "--ops", "5", "--transport", "memory", "--churn", "0.25"
    )
    get_panel, set_panel = plot.network_cdf_panels(data)
    labels = [s.label for s in (*get_panel.series, *set_panel.series)]
    assert [re.sub(r"\d+% ok", "N% ok", label) for label in labels] == [
        "get (N% ok)",
        "the same gets again (pooled connections) (N% ok)",
        "get after 25% churn (N% ok)",
        "set (N% ok)",
    ]
    phases = ["get", "get_again", "get_after_churn", "set"]
    for line, phase_name in zip([*get_panel.series, *set_panel.series], phases, strict=True):
        assert line.exact
        assert line.phase == phase_name
        assert line.x == sorted(
            max(v, plot.LATENCY_FLOOR_MS) for v in data[phase_name]["samples_ms"]
        )
        assert len(line.x) == 5
        assert line.y[-1] == 1.0
    assert "12 nodes" in plot.network_title(data)


def test_network_json_without_samples_gives_percentile_points() -> None:
    data = {
        "benchmark": "network",
        "churn": 0.0,
        "set": {
            "latency_ms": {"mean": 2.0, "p50": 2.0, "p95": 3.0, "p99": 4.0, "max": 5.0},
            "success": 0.5,
        },
        "get": {"latency_ms": {}},  # no operation timed: no line
    }
    (panel,) = plot.network_cdf_panels(data)
    (line,) = panel.series
    assert panel.title == "set"
    assert not line.exact
    assert line.label == "set (percentiles, 50% ok)"
    assert (line.x, line.y) == ([2.0, 3.0, 4.0, 5.0], [0.5, 0.95, 0.99, 1.0])


def test_other_benchmarks_json_is_refused() -> None:
    with pytest.raises(plot.PlotInputError, match="network"):
        plot.network_cdf_panels(peer_json())
    with pytest.raises(plot.PlotInputError, match="peer_compare"):
        plot.peer_bars({"benchmark": "network"})
    with pytest.raises(plot.PlotInputError, match="scale"):
        plot.rounds_vs_n({"benchmark": "network"})


# --- peer_compare.py -----------------------------------------------------------------------


def test_peer_panels_pool_the_runs_of_each_implementation() -> None:
    get_panel, set_panel = plot.peer_cdf_panels(peer_json())
    assert [s.label for s in get_panel.series] == [
        "trio-kad get (100% ok)",
        "trio-kad get after 30% stopped (60% ok)",  # runs at 50% and 70%
        "kademlia get (100% ok)",
        "kademlia get after 30% stopped (95% ok)",
    ]
    assert [s.impl for s in set_panel.series] == ["trio-kad", "kademlia"]
    trio_get = get_panel.series[0]
    assert trio_get.x == [1.0, 1.5, 2.0, 2.5]
    assert trio_get.y == [0.25, 0.5, 0.75, 1.0]
    kademlia_stop = get_panel.series[3]
    assert kademlia_stop.x == [4.0, 5.0, 2000.0, 2001.0]
    assert set_panel.series[0].x[0] == plot.LATENCY_FLOOR_MS


def test_peer_json_without_samples_gives_the_first_runs_percentiles() -> None:
    data = peer_json()
    for run in data["all_runs"]:
        for name in ("set", "get", "get_after_stop"):
            del run[name]["samples_ms"]
    get_panel, _ = plot.peer_cdf_panels(data)
    kademlia_get = get_panel.series[2]
    assert kademlia_get.label == "kademlia get (percentiles, 100% ok)"
    assert not kademlia_get.exact
    assert kademlia_get.x == [4.0, 4.0, 4.0, 4.0]  # run 0's p50, p95, p99, max


def test_peer_bars_take_medians_and_every_run() -> None:
    bars = {bar.title: bar for bar in plot.peer_bars(peer_json())}
    assert list(bars) == ["get p50", "set p50", "gets/s", "sets/s", "found after stop"]
    assert not bars["get p50"].higher_is_better
    assert bars["sets/s"].higher_is_better
    assert bars["sets/s"].median == {"trio-kad": 110.0, "kademlia": 60.0}
    assert bars["sets/s"].runs == {"trio-kad": [100.0, 120.0], "kademlia": [50.0, 70.0]}
    found = bars["found after stop"]
    assert found.unit == "%"
    assert found.median == {"trio-kad": 60.0, "kademlia": 95.0}
    assert found.runs["kademlia"] == [100.0, 90.0]
    # The run's own p50, read from its nested latency table.
    assert bars["get p50"].runs["trio-kad"] == [2.0, 2.5]


# --- scale.py ------------------------------------------------------------------------------


def test_rounds_vs_n_sorts_sizes_and_draws_the_target_steps() -> None:
    data = {
        "benchmark": "scale",
        "sizes": [scale_entry(200, 2.5, 4.0), scale_entry(20, 1.0, 1.0), scale_entry(50, None)],
    }
    series = plot.rounds_vs_n(data)
    assert series.nodes == [20, 200]  # 50 had no lookup report
    assert series.mean == [1.0, 2.5]
    assert series.p95 == [1.0, 4.0]
    ref = series.reference_nodes
    assert ref == sorted(set(ref))
    assert ref[0] == 20 and ref[-1] == 200
    # Both sides of the step at 64 -> 65 are drawn, so the line jumps where the target does.
    at = dict(zip(ref, series.target, strict=True))
    assert (at[64], at[65]) == (4, 5)
    assert series.log2_n == [math.log2(n) for n in ref]


def test_rounds_vs_n_from_a_real_run() -> None:
    data = bench("scale", "--sizes", "20", "--lookups", "5", "--in-process")
    series = plot.rounds_vs_n(data)
    assert series.nodes == [20]
    assert series.mean == [data["sizes"][0]["lookups"]["rounds"]["mean"]]
    # A single size still gets a stretch of reference line around it.
    assert series.reference_nodes[0] < 20 < series.reference_nodes[-1]
    assert data["sizes"][0]["lookups"]["target_rounds"] == plot.target_rounds(20)


def test_a_single_size_entry_is_accepted() -> None:
    series = plot.rounds_vs_n(scale_entry(40, 1.5, 2.0))
    assert series.nodes == [40]


# --- command line --------------------------------------------------------------------------


def run_plot(
    tmp_path: Path, *args: str, block_matplotlib: bool = False
) -> subprocess.CompletedProcess[str]:
    # Setting sys.modules["matplotlib"] to None makes `import matplotlib` fail, installed or not.
    prelude = "import sys; sys.modules['matplotlib'] = None; " if block_matplotlib else ""
    code = (
        prelude + "import runpy, sys; "
        f"sys.argv = ['plot.py', *{list(args)!r}]; "
        f"sys.path.insert(0, {str(PLOT_PY.parent)!r}); "  # as when run as a script
        f"runpy.run_path({str(PLOT_PY)!r}, run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )


def test_without_matplotlib_it_exits_2_with_the_install_hint(tmp_path: Path) -> None:
    (tmp_path / "peer.json").write_text(json.dumps(peer_json()))
    done = run_plot(tmp_path, "--peer", "peer.json", "--out", "charts", block_matplotlib=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "pip install -e '.[plot]'" in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "charts").exists()


def test_bad_input_exits_1_before_drawing(tmp_path: Path) -> None:
    (tmp_path / "scale.json").write_text(json.dumps({"benchmark": "network"}))
    done = run_plot(tmp_path, "--scale", "scale.json", block_matplotlib=True)
    assert done.returncode == 1
    assert "expected the JSON of scale.py" in done.stderr
    done = run_plot(tmp_path, "--network", "missing.json")
    assert done.returncode == 1
    assert "missing.json" in done.stderr


def test_no_input_is_a_usage_error(tmp_path: Path) -> None:
    done = run_plot(tmp_path, "--out", "charts")
    assert done.returncode == 2
    assert "at least one of" in done.stderr
