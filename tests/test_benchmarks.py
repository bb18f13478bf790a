"""Every benchmark runs and prints its JSON (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from clihelp import ROOT


def bench(name: str, *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("transport", "mode"), [("memory", "stop"), ("memory", "drop"), ("tcp", "stop")]
)
def test_network_benchmark(transport: str, mode: str) -> None:
    data = bench(
        "network",
        *("--nodes", "12", "--ops", "5", "--transport", transport),
        *("--churn", "0.25", "--churn-mode", mode),
    )
    assert data["set"]["success"] == 1.0  # type: ignore[index]
    assert data["get"]["success"] == 1.0  # type: ignore[index]
    assert data["get_again"]["success"] == 1.0  # type: ignore[index]
    assert data["get_after_churn"]["success"] == 1.0  # type: ignore[index]
    assert data["set"]["wire_bytes_per_op"] > 0  # type: ignore[index]


def test_churn_benchmark() -> None:
    data = bench("churn", "--nodes", "20", "--keys", "10", "--hours", "2", "--churn", "0.1")
    assert data["found_fraction"] == 1.0
    assert data["nodes_left"] == data["nodes_joined"] == 4
    by_cause = data["rpcs_per_key_hour_by_cause"]
    assert isinstance(by_cause, dict) and "replicate" in by_cause


def test_leave_benchmark() -> None:
    data = bench("leave", "--nodes", "9", "--keys", "10", "--runs", "1")
    graceful, abrupt = data["graceful"], data["abrupt"]
    assert isinstance(graceful, dict) and isinstance(abrupt, dict)
    assert graceful["held_fraction_mean"] >= abrupt["held_fraction_mean"]
    assert sum(graceful["leave_rpcs"]) > 0 and sum(abrupt["leave_rpcs"]) == 0


def test_leave_processes_benchmark() -> None:
    data = bench(
        "leave_processes", *("--nodes", "6", "--keys", "10", "--runs", "1", "--settle", "0.2")
    )
    sigterm, sigkill = data["sigterm"], data["sigkill"]
    assert isinstance(sigterm, dict) and isinstance(sigkill, dict)
    assert sigterm["exit_codes"] == [[0]] and sigkill["exit_codes"] == [[-9]]


def test_status_benchmark() -> None:
    data = bench("status", *("--nodes", "5", "--keys", "10", "--scrapers", "1", "--seconds", "0.5"))
    for phase in ("idle", "scraped", "scraped_uncached"):
        result = data[phase]
        assert isinstance(result, dict) and result["gets"] > 0 and result["misses"] == 0
    scraped = data["scraped"]
    assert isinstance(scraped, dict) and scraped["scrapes_per_second"] > 0


def test_idle_benchmark() -> None:
    data = bench("idle", "--nodes", "30", "--settle", "1", "--hours", "1")
    by_cause = data["rpcs_per_node_minute_by_cause"]
    assert isinstance(by_cause, dict)
    total = sum(row["total"] for row in by_cause.values())
    assert total == pytest.approx(data["rpcs_per_node_minute"])


def test_abuse_benchmark() -> None:
    data = bench("abuse", "--seconds", "3")
    assert data["honest"]["success_rate"] == 1.0  # type: ignore[index]
    # Provider sets (issue 17): the flood is refused, the honest provider still found.
    provider = data["honest_provider"]
    assert provider["outcomes"] == {"found": provider["finds"]}  # type: ignore[index]
    counts = data["attack"]["counts"]  # type: ignore[index]
    assert counts["provider_flood_reply_11"] > 0  # OVER_QUOTA


def test_floor_benchmark() -> None:
    data = bench(
        "floor", "--rounds", "200", "--seconds", "0.3", "--repeats", "1",
        "--turns", "2", "--turn-seconds", "0.2",
    )  # fmt: skip
    assert data["node_find_node_pipelined"]["replies"] > 0  # type: ignore[index]
    shared = data["transport_in_process"]["callers_sharing_the_connection"]  # type: ignore[index]
    assert set(shared) == {"4", "16"}
    assert all(figures["rpcs_per_s"] > 0 for figures in shared.values())
    turns = data["find_node_vs_echo_alternating"]
    assert len(turns["ratios"]) == 2  # type: ignore[index]
    assert all(rate > 0 for rate in turns["node_replies_per_s"])  # type: ignore[index]


def test_scale_benchmark() -> None:
    data = bench("scale", "--sizes", "40", "--lookups", "10")
    assert data


def test_adversary_benchmark() -> None:
    data = bench(
        "adversary", "--nodes", "40", "--keys", "6", "--fractions", "0.2",
        "--paths", "1,2", "--quorums", "1,3", "--behaviours", "all",
    )  # fmt: skip
    features, unavailable = data["features"], data["unavailable"]
    assert isinstance(features, dict) and isinstance(unavailable, dict)
    paths = [1, 2] if features["disjoint_paths"] else [1]
    quorums = [1, 3] if features["quorum"] else [1]
    assert unavailable.get("paths", []) == ([] if features["disjoint_paths"] else [2])
    assert unavailable.get("quorums", []) == ([] if features["quorum"] else [3])
    (run,) = data["fractions"]  # type: ignore[misc]
    assert run["hostile"] == 8
    assert sum(run["assignment"].values()) == 8
    cells = run["cells"]
    assert [(c["paths"], c["quorum"]) for c in cells] == [(d, q) for d in paths for q in quorums]
    for cell in cells:
        assert 0.0 <= cell["right"] <= 1.0
        assert all(0.0 <= share <= 1.0 for share in cell["outcomes"].values())
        assert sum(cell["outcomes"].values()) == pytest.approx(1.0)
        assert cell["rpcs_per_get"]["mean"] >= 0
        assert cell["honest_banned"] >= 0


def test_records_benchmark() -> None:
    data = bench(
        "records", "--verify-number", "20", "--repeats", "1", "--nodes", "12", "--ops", "3",
        "--cas-nodes", "12", "--rounds", "3", "--adv-nodes", "20", "--keys", "5",
    )  # fmt: skip
    assert data["verify"]["signed_store_new_key_us"] > 0  # type: ignore[index]
    latency = data["latency"]
    for op in ("set", "get", "put_signed", "get_signed"):
        assert latency[op]["success"] == 1.0  # type: ignore[index]
    assert data["cas"]["outcomes"]["winners_1"] == 3  # type: ignore[index]
    adversary = data["adversary"]
    assert adversary["hostile"] == 4  # type: ignore[index]
    assert 0.0 <= adversary["newest_share"] <= 1.0  # type: ignore[index]


# --- provider sets (issue 17)


def test_providers_benchmark() -> None:
    data = bench(
        "providers", *("--nodes", "24", "--topics", "3", "--announcers", "4", "--entries", "500")
    )
    find, churn, memory = data["find"], data["churn"], data["memory"]
    assert isinstance(find, dict) and find["found_all_share"] == 1.0
    assert find["rpcs_per_find"]["mean"] >= 0
    assert isinstance(churn, dict) and churn["stopped_still_listed_share_after_one_lifetime"] == 0
    assert isinstance(memory, dict) and memory["bytes_per_entry"] > 0


# --- watching a key (issue 18)


def test_watch_benchmark() -> None:
    data = bench(
        "watch",
        *("--nodes", "8", "--ops", "3", "--interval", "0.05"),
        *("--fanout-nodes", "20", "--updates", "4", "--after-updates", "2"),
    )
    latency, fanout = data["latency"], data["fanout"]
    assert isinstance(latency, dict) and isinstance(fanout, dict)
    assert latency["received"] == 3
    assert fanout["watchers_saw_last"] == fanout["watchers"] == 20
    assert fanout["seen_twice_or_out_of_order"] == 0
    assert fanout["bytes_per_listener"] > 0
