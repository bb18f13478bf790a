"""Every example runs."""

from __future__ import annotations

import configparser
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from clihelp import ROOT, read_line, serve, stop

from trio_kad import Config
from trio_kad._config_file import load_config


def _run_example(name: str) -> str:
    """Run ``examples/name`` to its end; its stdout once it exited 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_two_nodes_example() -> None:
    assert _run_example("two_nodes.py") == "boop === boop\n"


def test_peer_example_joins_and_stops_on_signal() -> None:
    with serve() as server:
        peer = subprocess.Popen(
            [
                sys.executable,
                "-u",
                str(ROOT / "examples" / "peer.py"),
                server.peer,
                "--report",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert " up on 127.0.0.1:" in read_line(peer, 30)
            report = read_line(peer, 10)
            assert report.startswith("contacts=")
            assert int(report.split()[0].split("=")[1]) >= 1
            peer.send_signal(signal.SIGINT)
            lines = peer.communicate(timeout=15)[0].splitlines()
            assert lines[-1] == "peer stopped"
            assert peer.returncode == 0
        finally:
            if peer.poll() is None:
                peer.kill()
                peer.wait(10)
            for stream in (peer.stdout, peer.stderr):
                if stream is not None:
                    stream.close()
        assert stop(server) == 0


def test_signed_record_example() -> None:
    assert _run_example("signed_record.py") == (
        "seq 0: 198.51.100.7:4000\nseq 1: 203.0.113.9:4000\nrefused: the network holds seq 1\n"
    )


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    unit.read(ROOT / "examples" / "trio-kad.service")
    return unit


def test_the_systemd_unit_runs_serve_with_the_example_config(tmp_path: Path) -> None:
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/trio-kad") and argv[1] == "serve" and argv[-1] == "$TRIO_KAD_ARGS"
    options = dict(zip(argv[2:-1:2], argv[3:-1:2], strict=True))
    assert options["--config"] == f"/etc/{service['ConfigurationDirectory']}/trio-kad.toml"
    assert options["--data-dir"] == f"/var/lib/{service['StateDirectory']}"
    assert service["KillSignal"] == "SIGTERM"
    assert load_config(ROOT / "examples" / "trio-kad.toml") == Config()
    # The same command on loopback, with the example files in place of /etc and /var/lib.
    options |= {
        "--host": "127.0.0.1",
        "--port": "0",
        "--status": "127.0.0.1:0",
        "--config": str(ROOT / "examples" / "trio-kad.toml"),
        "--data-dir": str(tmp_path),
    }
    with serve(*(word for pair in options.items() for word in pair)) as server:
        assert stop(server) == 0
    assert any(tmp_path.iterdir())  # the node kept its id there


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "trio-kad.service").read_text()
    # Verified with an executable that exists here.
    text = text.replace("/opt/trio-kad/bin/trio-kad", sys.executable + " -m trio_kad")
    (tmp_path / "trio-kad.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "trio-kad.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --- provider sets (issue 17)


def test_rendezvous_example() -> None:
    assert _run_example("rendezvous.py") == "".join(
        f"peer-{i} found 2 others, 2 answered\n" for i in range(3)
    )


# --- watching a key (issue 18)


def test_watch_example() -> None:
    assert _run_example("watch.py") == "temperature: 20\ntemperature: 21\ntemperature: 22\n"
