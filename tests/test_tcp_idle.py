"""The watcher's pollers (_tcp_idle): what is armed is reported once readable, and nothing else.

The watcher itself is exercised through ``TcpTransport`` (test_tcp.py,
test_tcp_conn.py); these tests hold its two pollers to the same contract
with plain socket pairs, so the one Linux does not use is tested too.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from typing import Any, cast

import pytest

from trio_kad._tcp_conn import Connection
from trio_kad._tcp_idle import _OneShotEpoll, _Poller, _Selector


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


def _pollers() -> list[Any]:
    return [_Selector, *([_OneShotEpoll] if hasattr(select, "epoll") else [])]


@pytest.fixture(params=_pollers(), ids=lambda cls: cls.__name__)
def poller(request: pytest.FixtureRequest) -> Iterator[_Poller]:
    made: _Poller = request.param()
    yield made
    made.close()


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_an_armed_connection_is_reported_once_readable(
    poller: _Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    conn = cast(Connection, _Conn(pair[0]))
    poller.arm(conn)
    assert poller.ready() == []
    pair[1].send(b"x")
    assert poller.ready() == [conn]
    poller.disarm(conn)
    poller.forget(conn)


def test_a_disarmed_connection_is_not_reported_until_armed_again(
    poller: _Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    conn = cast(Connection, _Conn(pair[0]))
    poller.arm(conn)
    poller.disarm(conn)
    pair[1].send(b"x")
    # A caller reads it now: nothing reports it, so its reply wakes only that caller.
    assert poller.ready() == []
    poller.arm(conn)  # parked again, with the byte still unread
    assert poller.ready() == [conn]
    poller.disarm(conn)
    poller.forget(conn)


@pytest.mark.parametrize("disarmed_first", [False, True])
def test_a_forgotten_connection_is_never_reported(
    poller: _Poller, pair: tuple[socket.socket, socket.socket], disarmed_first: bool
) -> None:
    conn = cast(Connection, _Conn(pair[0]))
    poller.arm(conn)
    if disarmed_first:  # a caller read it, then it closed; else it closed while parked
        poller.disarm(conn)
    poller.forget(conn)
    pair[1].send(b"x")
    assert poller.ready() == []


def test_a_parked_connection_read_and_rearmed_is_reported_again(
    poller: _Poller, pair: tuple[socket.socket, socket.socket]
) -> None:
    conn = cast(Connection, _Conn(pair[0]))
    poller.arm(conn)
    pair[1].send(b"x")
    assert poller.ready() == [conn]
    pair[0].recv(1)
    poller.rearm(conn)
    assert poller.ready() == []
    pair[1].send(b"y")
    assert poller.ready() == [conn]
    poller.disarm(conn)
    poller.forget(conn)
