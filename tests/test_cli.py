"""The command line, driven as real processes on 127.0.0.1."""

from __future__ import annotations

import signal
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from clihelp import closed_port, run, serve, status_url, stop
from prometheus_client.parser import text_string_to_metric_families

from trio_kad._ids import distance, key_id


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_announces_itself_and_exits_cleanly_on_signal(signum: int) -> None:
    with serve("--port", "0") as server:
        assert server.host == "127.0.0.1"
        assert 0 < server.port < 65536
        assert stop(server, signum) == 0
        assert server.process.stderr is not None
        assert "Traceback" not in server.process.stderr.read()


def test_set_and_get_across_a_small_network() -> None:
    with ExitStack() as stack:
        first = stack.enter_context(serve())
        others = [stack.enter_context(serve("--bootstrap", first.peer)) for _ in range(4)]
        stored = run("set", "--bootstrap", others[0].peer, "colour", "blue — ünïcode")
        assert stored.returncode == 0, stored.stderr
        assert int(stored.stdout.strip()) == 5
        got = run("get", "--bootstrap", others[-1].peer, "colour")
        assert got.returncode == 0, got.stderr
        assert got.stdout == "blue — ünïcode\n"
        missing = run("get", "--bootstrap", first.peer, "no such key")
        assert missing.returncode == 1
        assert missing.stdout == ""
        # Two thirds of the network stop; the value is still there.
        for server in (first, others[0], others[1]):
            assert stop(server) == 0
        again = run("get", "--bootstrap", others[2].peer, "colour")
        assert again.returncode == 0, again.stderr
        assert again.stdout == "blue — ünïcode\n"


def test_get_and_set_fail_with_one_line_when_no_peer_answers() -> None:
    peer = f"127.0.0.1:{closed_port()}"
    got = run("get", "--bootstrap", peer, "k")
    assert got.returncode == 2
    assert got.stderr.count("\n") == 1 and peer in got.stderr
    stored = run("set", "--bootstrap", peer, "k", "v")
    assert stored.returncode != 0
    assert stored.stderr.count("\n") == 1 and peer in stored.stderr


def test_bad_arguments_exit_2() -> None:
    assert run("get", "--bootstrap", "nonsense", "k").returncode == 2
    assert run("frobnicate").returncode == 2


def test_demo_runs() -> None:
    result = run("demo", "--nodes", "8", "--k", "3")
    assert result.returncode == 0, result.stderr
    assert "get 'greeting'" in result.stdout
    assert "hello, kademlia" in result.stdout


def test_serve_takes_a_toml_config_and_refuses_a_bad_one_before_listening(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.toml"
    good.write_text('refresh_interval = 60\nk = 8\nper_ip_exempt = ["127.0.0.1/32"]\n')
    with serve("--config", str(good)) as server:
        assert stop(server) == 0
    for name, text, named in (
        ("unknown.toml", "nonsense = 1\n", "nonsense"),
        ("type.toml", 'k = "eight"\n', "k"),
        ("range.toml", "k = 0\n", "k"),
        ("syntax.toml", "k = \n", "syntax.toml"),
    ):
        path = tmp_path / name
        path.write_text(text)
        result = run("serve", "--port", "0", "--config", str(path), timeout=20)
        assert result.returncode == 2, name
        assert result.stdout == ""  # never listened
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0], result.stderr
    missing = run("serve", "--config", str(tmp_path / "absent.toml"), timeout=20)
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr


def _stores_served(url: str) -> float:
    with urllib.request.urlopen(url + "metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "trio_kad_rpcs_served_total" and "store" in sample.labels["type"]
    )


def test_serve_hands_its_pairs_over_on_sigterm() -> None:
    with ExitStack() as stack:
        args = ("--k", "2", "--alpha", "2", "--status", "127.0.0.1:0")
        first = stack.enter_context(serve(*args))
        servers = [first] + [
            stack.enter_context(serve(*args, "--bootstrap", first.peer)) for _ in range(3)
        ]
        urls = [status_url(server) for server in servers]
        for i in range(12):
            assert run("set", "--bootstrap", first.peer, f"key {i}", "v").returncode == 0
        before = sum(map(_stores_served, urls[1:]))  # the first scrapes: rendered now
        # Among the 2 closest to about half the keys, it hands those to the next closest.
        assert stop(first) == 0
        # A scrape is rendered at most once a second: ask until the new one comes.
        deadline = time.monotonic() + 10
        while sum(map(_stores_served, urls[1:])) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(map(_stores_served, urls[1:])) > before


def test_a_second_signal_cuts_the_hand_off_short() -> None:
    with ExitStack() as stack:
        args = ("--k", "1", "--alpha", "1")
        first = stack.enter_context(serve(*args))
        heirs = [first, stack.enter_context(serve(*args, "--bootstrap", first.peer))]
        leaver = stack.enter_context(serve(*args, "--bootstrap", first.peer))
        ids = [bytes.fromhex(s.node_id) for s in (leaver, *heirs)]
        # A key the leaver is the closest to: it hands that one over when it leaves.
        key = next(
            k
            for k in (f"key {i}" for i in range(1000))
            if min(ids, key=lambda i: distance(i, key_id(k))) == ids[0]
        )
        assert run("set", "--bootstrap", leaver.peer, key, "v").returncode == 0
        for heir in heirs:
            heir.process.send_signal(signal.SIGSTOP)  # frozen: the hand-off waits on them
        try:
            leaver.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert leaver.process.poll() is None  # still handing over
            assert stop(leaver, signal.SIGTERM, timeout=3) == 0
        finally:
            for heir in heirs:
                heir.process.send_signal(signal.SIGCONT)
        for heir in heirs:
            assert stop(heir) == 0
