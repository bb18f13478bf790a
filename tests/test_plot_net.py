"""benchmarks/_plot_net.py: WAN and testbed JSON -> chart rows (matplotlib not needed)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from clihelp import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import _plot_net
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def _op(p50: float, p95: float, **extra: float) -> dict[str, Any]:
    return {"latency": {"ms": {"p50": p50, "p95": p95}}, **extra}


def wan_json() -> dict[str, Any]:
    return {
        "benchmark": "wan",
        "params": {"nodes": 1000},
        "median_rtt_ms": 160.0,
        "phases": [
            {
                "silent": 0.0,
                "get_stored": _op(400, 900, found=1.0),
                "set": _op(3000, 5000, stored=1.0),
                "get": _op(420, 950, found=1.0),
            },
            {"silent": 0.3, "get_stored": _op(900, 2500, found=0.99)},
        ],
    }


def bed_json(namespaces: int, *, one_subnet: bool = False) -> dict[str, Any]:
    return {
        "benchmark": "testbed",
        "nodes": 30,
        "layout": {
            "namespaces": namespaces,
            "addresses_per_namespace": 1,
            "one_subnet": one_subnet,
        },
        "same_port": False,
        "set_api": {"acks": {"mean": 20.0}},
        "contacts_at_end": {"per_node": {"mean": 26.5}, "min": 21},
        "silent": {"cli_get_via_live_bootstrap": {"ms": {"p50": 200.0, "p95": 300.0}}},
        "heal_to_all_found_s": 1.5,
    }


def test_a_wan_run_gives_a_row_per_operation_and_phase() -> None:
    chart = _plot_net.wan_chart(wan_json())
    assert [(r.operation, r.silent) for r in chart.rows] == [
        ("get_stored", 0.0),
        ("set", 0.0),
        ("get", 0.0),
        ("get_stored", 0.3),
    ]
    assert (chart.rows[1].p50, chart.rows[1].p95) == (3000.0, 5000.0)
    assert chart.rows[3].found == 0.99
    assert chart.median_rtt_ms == 160.0
    assert "1,000 nodes" in chart.title


def test_testbed_runs_are_labelled_by_layout() -> None:
    rows = _plot_net.testbed_rows([bed_json(3), bed_json(30), bed_json(3, one_subnet=True)])
    assert [r.label for r in rows] == [
        "3 ns\nx 1 addr",
        "a namespace\nper node",
        "3 ns\nx 1 addr\none /24",
    ]
    assert (rows[0].acks, rows[0].contacts_min, rows[0].cli_get_p50, rows[0].heal_s) == (
        20.0,
        21.0,
        200.0,
        1.5,
    )


@pytest.mark.parametrize("bad", [{"benchmark": "network"}, {}])
def test_another_benchmarks_json_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(_plot_net.NetInputError):
        _plot_net.wan_chart(bad)
    with pytest.raises(_plot_net.NetInputError):
        _plot_net.testbed_rows([bad])
