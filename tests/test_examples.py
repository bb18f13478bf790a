"""Every example runs."""

from __future__ import annotations

import signal
import subprocess
import sys

from clihelp import ROOT, read_line, serve, stop


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
