"""The watcher: one task that reads every connection no caller is reading (Trio).

A parked connection is armed in one poller of the transport's own (epoll on
Linux; a ``selectors`` selector, kqueue on the BSDs and macOS, elsewhere)
whose descriptor the watcher waits on through Trio, so a thousand idle
connections cost one task and one descriptor, not a thousand tasks. When
some become readable, the watcher reads each once and dispatches what came
(``Connection.read_ready``: a request, a late reply, the peer closing). It
also closes parked connections unused for ``Config.idle_timeout`` and those
stalled in the middle of a frame for ``io_timeout``.

On Linux a connection is armed for one event (``EPOLLONESHOT``): parking it
again is one ``epoll_ctl``, and a caller taking it back costs no system call
(an event that fires meanwhile is skipped, and disarms it). Where the
selector has no descriptor to wait on (``select`` on Windows), the watcher
polls it every ``_POLL_INTERVAL`` instead.
"""

from __future__ import annotations

import math
import select
import selectors
from typing import Protocol

import trio
from trio.lowlevel import checkpoint, wait_readable

from ._config import Config
from ._tcp_conn import Connection

_POLL_INTERVAL = 0.01
# Connections read per wake-up before the watcher lets other tasks run.
_READS_PER_TURN = 64


class _Poller(Protocol):
    fd: int | None

    def arm(self, conn: Connection) -> None:
        """Report ``conn`` when it becomes readable."""

    def rearm(self, conn: Connection) -> None:
        """``conn``, still parked, was reported and read: report it again."""

    def disarm(self, conn: Connection) -> None:
        """A caller reads ``conn`` now: stop reporting it (or skip what comes)."""

    def forget(self, conn: Connection) -> None:
        """``conn`` closes: drop it for good (its descriptor is still open)."""

    def ready(self) -> list[Connection]:
        """The armed connections readable now, without waiting."""

    def close(self) -> None: ...


class _OneShotEpoll:
    """Linux: each connection armed for one event, re-armed with one ``epoll_ctl``."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.fd: int | None = self._epoll.fileno()
        self._conns: dict[int, Connection] = {}

    def arm(self, conn: Connection) -> None:
        fd = conn.sock.fileno()
        if self._conns.get(fd) is conn:
            self._epoll.modify(fd, select.EPOLLIN | select.EPOLLONESHOT)
        else:
            self._conns[fd] = conn
            self._epoll.register(fd, select.EPOLLIN | select.EPOLLONESHOT)

    def rearm(self, conn: Connection) -> None:
        self._epoll.modify(conn.sock.fileno(), select.EPOLLIN | select.EPOLLONESHOT)

    def disarm(self, conn: Connection) -> None:
        pass  # fires at most once more, and the watcher skips a connection not parked

    def forget(self, conn: Connection) -> None:
        fd = conn.sock.fileno()
        if self._conns.get(fd) is conn:
            del self._conns[fd]
            self._epoll.unregister(fd)

    def ready(self) -> list[Connection]:
        conns = self._conns
        return [conns[fd] for fd, _ in self._epoll.poll(0) if fd in conns]

    def close(self) -> None:
        self._epoll.close()


class _Selector:
    """Elsewhere: a ``selectors`` selector, registered while parked."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        try:
            self.fd: int | None = self._selector.fileno()
        except AttributeError:  # pragma: no cover - a selector without a descriptor
            self.fd = None

    def arm(self, conn: Connection) -> None:
        self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def rearm(self, conn: Connection) -> None:
        pass  # registered while parked

    def disarm(self, conn: Connection) -> None:
        self._selector.unregister(conn.sock)

    def forget(self, conn: Connection) -> None:
        pass  # disarmed when it was unparked

    def ready(self) -> list[Connection]:
        return [key.data for key, _ in self._selector.select(0)]

    def close(self) -> None:
        self._selector.close()


class Watcher:
    """The parked connections of one transport, in order of last activity."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._poller: _Poller = _OneShotEpoll() if hasattr(select, "epoll") else _Selector()
        # Least recently active first: the idle sweep looks at the front only.
        self.parked: dict[Connection, None] = {}
        # The parked ones holding half a frame (few): each has an io_timeout deadline.
        self._stalled: dict[Connection, None] = {}
        # The parked ones with frames read but not yet dispatched (Connection.more).
        self._more: dict[Connection, None] = {}
        # The watcher's wait, whose deadline a newly parked connection may bring forward.
        self._scope: trio.CancelScope | None = None

    def park(self, conn: Connection) -> None:
        conn.parked = True
        self.parked[conn] = None
        if conn.endpoint.buffered:
            self._stalled[conn] = None
        if conn.more:
            self._more[conn] = None
        self._poller.arm(conn)
        scope = self._scope
        if scope is not None:
            if conn.more:
                scope.cancel()  # frames wait: no waiting for the descriptor
            elif len(self.parked) == 1 or conn.endpoint.buffered:
                scope.deadline = min(scope.deadline, self._next_deadline())

    def unpark(self, conn: Connection) -> None:
        conn.parked = False
        del self.parked[conn]
        self._stalled.pop(conn, None)
        self._more.pop(conn, None)
        self._poller.disarm(conn)

    def forget(self, conn: Connection) -> None:
        """``conn`` closes (unparked already); its descriptor is still open."""
        self._poller.forget(conn)

    def close(self) -> None:
        self._poller.close()

    async def run(self) -> None:
        """Read parked connections as they become readable, and close the idle ones, forever."""
        poller = self._poller
        more = self._more
        while True:
            if more:
                await checkpoint()
            else:
                with trio.move_on_at(self._next_deadline()) as self._scope:
                    if poller.fd is None:  # pragma: no cover - polled
                        await trio.sleep(_POLL_INTERVAL)
                    else:
                        await wait_readable(poller.fd)
                self._scope = None
            for conn in list(more):
                if conn.parked:
                    await conn.dispatch()
                    self._after_read(conn)
            reads = 0
            for conn in poller.ready():
                if not conn.parked or conn.more:
                    continue  # a caller took it or it closed since; or it has enough to do
                await conn.read_ready()
                self._after_read(conn)
                reads += 1
                if reads == _READS_PER_TURN:
                    reads = 0
                    await checkpoint()
            self._sweep(trio.current_time())

    def _after_read(self, conn: Connection) -> None:
        """``conn`` was just read or dispatched: it is the most recently active now."""
        if not conn.parked:
            return
        parked = self.parked
        del parked[conn]
        parked[conn] = None
        for subset, member in ((self._stalled, conn.endpoint.buffered), (self._more, conn.more)):
            if member:
                subset[conn] = None
            else:
                subset.pop(conn, None)
        if not conn.more:
            # Read more from it only once what it sent is answered.
            self._poller.rearm(conn)

    def _next_deadline(self) -> float:
        """When the least recently active connection goes idle, or a half frame times out."""
        deadline = math.inf
        for conn in self.parked:
            deadline = conn.last_activity + self._config.idle_timeout
            break
        io_timeout = self._config.io_timeout
        for conn in self._stalled:
            deadline = min(deadline, conn.endpoint.frame_started + io_timeout)
        return deadline

    def _sweep(self, now: float) -> None:
        """Close the parked connections idle for ``idle_timeout`` or stalled mid-frame."""
        for conn in list(self._stalled):
            conn.check_idle(now)
        parked = self.parked
        while parked:
            conn = next(iter(parked))
            if conn.last_activity + self._config.idle_timeout > now:
                return
            if not conn.check_idle(now):
                # Busy with work of its own: look again an idle_timeout later.
                del parked[conn]
                parked[conn] = None
