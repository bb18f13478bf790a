"""Run the command line as real subprocesses, with cleanup."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LISTENING = re.compile(r"^listening on (\S+):(\d+) node ([0-9a-f]{64})$")
ROOT = Path(__file__).resolve().parent.parent


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_kad", *args]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args), capture_output=True, text=True, timeout=timeout, env=_env()
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line, or AssertionError when none comes in time."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return process.stdout.readline().rstrip("\n")


class Server:
    def __init__(self, process: subprocess.Popen[str], line: str) -> None:
        match = LISTENING.match(line)
        assert match, f"unexpected first line {line!r}"
        self.process = process
        self.host = match.group(1)
        self.port = int(match.group(2))
        self.node_id = match.group(3)

    @property
    def peer(self) -> str:
        return f"{self.host}:{self.port}"


@contextmanager
def serve(*args: str) -> Iterator[Server]:
    with running("serve", *args) as (process, line):
        yield Server(process, line)


@contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``trio-kad *args`` as a process, with its first line of output; killed at the end."""
    process = subprocess.Popen(
        command(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        yield process, read_line(process, 30)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def status_url(server: Server) -> str:
    """The URL of the status page, from the line after the listening one (``--status``)."""
    # Printed right after the listening line, it may already sit in the pipe's
    # buffer, where a select would not see it: read it directly, and kill a
    # server that hangs instead.
    assert server.process.stdout is not None
    timer = threading.Timer(20, server.process.kill)
    timer.start()
    try:
        line = server.process.stdout.readline().rstrip("\n")
    finally:
        timer.cancel()
    assert line.startswith("status on "), line
    return line.removeprefix("status on ")


def stop(server: Server, signum: int = signal.SIGTERM, timeout: float = 15) -> int:
    server.process.send_signal(signum)
    deadline = time.monotonic() + timeout
    while server.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    code = server.process.poll()
    assert code is not None, "server did not exit after the signal"
    return code


def closed_port() -> int:
    """A loopback port on which nothing listens (just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
