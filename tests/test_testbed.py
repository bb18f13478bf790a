"""The namespace testbed, small: 3 namespaces x 4 nodes, one kill round, one partition.

Runs only as root on Linux with ``ip netns`` (the testbed's own ``--check``
says); skipped with its reason otherwise. No timing is asserted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
from clihelp import ROOT

TESTBED = [sys.executable, str(ROOT / "benchmarks" / "testbed.py")]


def _cannot_run() -> str | None:
    check = subprocess.run([*TESTBED, "--check"], capture_output=True, text=True, timeout=60)
    return None if check.returncode == 0 else check.stderr.strip() or "testbed --check failed"


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}


def test_testbed_small_network_survives_a_kill_a_partition_and_restarts() -> None:
    reason = _cannot_run()
    if reason is not None:
        pytest.skip(reason)
    result = subprocess.run(
        [
            *TESTBED,
            *("--namespaces", "3", "--nodes", "12", "--keys", "8", "--cli-keys", "1"),
            *("--partition-keys", "3", "--partition", "4", "--heal-timeout", "30"),
            *("--silent-gets", "1", "--op-timeout", "15", "--config", "refresh_interval=20"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    # Everything it made is gone.
    tag = re.search(r"namespaces (tk\d+)-\* in", result.stderr)
    assert tag is not None, result.stderr
    assert not {name for name in _namespaces() if name.startswith(tag.group(1) + "-")}
    assert data["set_api"]["failed"] == 0
    assert data["cli"]["found_pct"] == 100.0
    for phase in ("before", "after_kill", "after_restart"):
        for side in ("side0", "side1"):
            assert data[phase][side]["found_pct"] == 100.0, (phase, side)
    assert data["killed"] == data["restarted"] == 4
    assert data["heal_to_all_found_s"] is not None
    pairs = data["restart_serves_pairs"]
    assert pairs["held_in_data_dir"] > 0 and pairs["served"] == pairs["held_in_data_dir"]
    assert data["silent"]["cli_get_via_live_bootstrap"]["found_pct"] == 100.0
    # Every node is recorded where it listens.
    for moment in ("contacts_after_workload", "contacts_at_end"):
        assert data[moment]["at_wrong_address_pct"] == 0.0
    assert data["contacts_at_end"]["nodes_read"] == 12
    assert data["contacts_at_end"]["min"] > 0


def test_testbed_says_what_it_needs_or_that_it_can_run() -> None:
    check = subprocess.run([*TESTBED, "--check"], capture_output=True, text=True, timeout=60)
    assert check.returncode in (0, 2)
    if check.returncode == 2:
        assert "testbed cannot run here; it needs:" in check.stderr


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the check as another user",
)
def test_testbed_refuses_to_run_without_root_and_says_so() -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    result = subprocess.run([*nobody, *TESTBED], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "it needs: root" in result.stderr
    assert result.stdout == ""
