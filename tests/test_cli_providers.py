"""trio-kad announce and providers, as real processes over TCP on loopback."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace

import pytest
from clihelp import closed_port, run, running, serve, stop

ANNOUNCED = re.compile(r"^announced (\S+) on port (\d+): (\d+) acks$")


@contextmanager
def announcing(peer: str, port: int, topic: str) -> Iterator[SimpleNamespace]:
    with running("announce", "--bootstrap", peer, "--port", str(port), topic) as (process, line):
        assert ANNOUNCED.match(line), line
        yield SimpleNamespace(process=process)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_announce_until_a_signal_then_providers_lists_it(signum: int) -> None:
    with ExitStack() as stack:
        first = stack.enter_context(serve())
        second = stack.enter_context(serve("--bootstrap", first.peer))
        announcer = stack.enter_context(announcing(first.peer, 4242, "rendezvous"))
        found = run("providers", "--bootstrap", second.peer, "rendezvous")
        assert found.returncode == 0, found.stderr
        (line,) = found.stdout.splitlines()
        address, node_hex = line.split(" ")
        assert address == "127.0.0.1:4242" and len(bytes.fromhex(node_hex)) == 32
        assert stop(announcer, signum) == 0
        none = run("providers", "--bootstrap", second.peer, "nobody", "--limit", "5")
        assert none.returncode == 1 and none.stdout == ""


def test_bad_arguments_and_unreachable_peers_exit_2_with_one_line() -> None:
    peer = f"127.0.0.1:{closed_port()}"
    for args in (
        ("announce", "--bootstrap", peer, "--port", "0", "t"),
        ("announce", "--bootstrap", peer, "--port", "65536", "t"),
        ("providers", "--bootstrap", peer, "--limit", "0", "t"),
        ("providers", "--bootstrap", peer, "t"),
    ):
        result = run(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, (args, result.stderr)
