"""``trio-kad watch``, driven as a real process on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
from contextlib import ExitStack

import pytest
from clihelp import _env, command, read_line, run, serve

WATCH_LINE_TIMEOUT = 30


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_watch_prints_the_value_then_each_new_one_until_a_signal(signum: int) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(serve())
        others = [stack.enter_context(serve("--bootstrap", first.peer)) for _ in range(3)]
        assert run("set", "--bootstrap", others[0].peer, "colour", "blue").returncode == 0
        watcher = subprocess.Popen(
            command("watch", "--bootstrap", others[-1].peer, "colour"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            assert read_line(watcher, WATCH_LINE_TIMEOUT) == "blue"
            for colour in ("green", "red — ünïcode"):
                assert run("set", "--bootstrap", first.peer, "colour", colour).returncode == 0
                assert read_line(watcher, WATCH_LINE_TIMEOUT) == colour
            watcher.send_signal(signum)
            assert watcher.wait(15) == 0
            assert watcher.stderr is not None
            assert "Traceback" not in watcher.stderr.read()
        finally:
            if watcher.poll() is None:
                watcher.kill()
            watcher.wait(10)
            for stream in (watcher.stdout, watcher.stderr):
                if stream is not None:
                    stream.close()
