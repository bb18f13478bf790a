"""The watcher: one task that reads every connection no caller is reading (Trio).

A parked connection is armed in one poller of the transport's own (epoll on
Linux; a ``selectors`` selector, kqueue on the BSDs and macOS, elsewhere)
whose descriptor the watcher waits on through Trio, so a thousand idle
connections cost one task and one descriptor, not a thousand tasks. When
some become readable, the watcher reads each once and dispatches what came
(``Connection.read_ready``: a request, a late reply, the peer closing). It
also closes parked connections unused for ``Config.idle_timeout`` and those
stalled in the middle of a frame for ``io_timeout``.

On Linux a connection is armed for one event (``EPOLLONESHOT``): after the
watcher read it, re-arming it is one ``epoll_ctl``, and a caller taking it
back disarms it with one more (else the reply that caller waits for would
wake the watcher too, for nothing). Where the
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
# Turns a pipelining peer's connection waits before it is read again, without
# epoll. A peer that sends a frame a turn has about this many waiting by then,
# so its frames are read, and their replies written, this many to a system
# call (recv and send cost more than answering a FIND_NODE). The cost is at
# most this many scheduler passes of wait for such a frame: tens of
# microseconds on an idle node, nothing beside a network's round trip.
_PIPELINE_TURNS = 6
# Connections read per wake-up before the watcher lets other tasks run.
_READS_PER_TURN = 64
# While some connection is read without the poller (it pipelines), the poller is
# asked for the rest once in this many passes: asking costs a system call, and
# the others wait at most this many passes more.
_POLL_EVERY = 4


class _Poller(Protocol):
    fd: int | None

    def arm(self, conn: Connection) -> None:
        """Report ``conn`` when it becomes readable."""

    def rearm(self, conn: Connection) -> None:
        """``conn``, still parked, was reported and read: report it again."""

    def disarm(self, conn: Connection) -> None:
        """A caller reads ``conn`` now: stop reporting it (or skip what comes)."""

    def forget(self, conn: Connection) -> None:
        """``conn`` closes, parked or not: drop it for good (its descriptor is still open)."""

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
        # Else the reply its caller waits for would wake the watcher too, for nothing.
        self._epoll.modify(conn.sock.fileno(), 0)

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
        if conn.sock not in self._selector.get_map():
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    def rearm(self, conn: Connection) -> None:
        pass  # registered while parked

    def disarm(self, conn: Connection) -> None:
        if conn.sock in self._selector.get_map():
            self._selector.unregister(conn.sock)

    def forget(self, conn: Connection) -> None:
        if conn.sock in self._selector.get_map():
            self._selector.unregister(conn.sock)

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
        # The parked ones whose last read held several frames (the peer pipelines):
        # read again after _PIPELINE_TURNS turns, not through the poller.
        self._hot: dict[Connection, None] = {}
        # The sweeper's sleep, whose deadline a newly parked connection may bring forward.
        self._scope: trio.CancelScope | None = None
        self._wake_at = math.inf

    def park(self, conn: Connection) -> None:
        """Read ``conn`` from now on; it holds no frames read but not dispatched (``unread``)."""
        conn.parked = True
        parked = self.parked
        parked[conn] = None
        self._poller.arm(conn)
        self._track_stall(conn)
        if len(parked) == 1:
            self._wake_by(conn.last_activity + self._config.idle_timeout)

    def _track_stall(self, conn: Connection) -> None:
        """Half a frame held: the sweeper must wake by its ``io_timeout``."""
        if conn.endpoint.buffered:
            self._stalled[conn] = None
            self._wake_by(conn.endpoint.frame_started + self._config.io_timeout)
        elif self._stalled:
            self._stalled.pop(conn, None)

    def _wake_by(self, deadline: float) -> None:
        """Have the sweeper wake by ``deadline`` (it may wake earlier, for nothing)."""
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._scope is not None:
                self._scope.deadline = deadline

    def unpark(self, conn: Connection) -> None:
        """A caller reads ``conn`` now."""
        self._unpark(conn)
        self._poller.disarm(conn)

    def resume(self, conn: Connection) -> None:
        """``conn``, parked, has written its backlog: read it again."""
        if not conn.more:
            self._poller.arm(conn)

    def forget(self, conn: Connection) -> None:
        """``conn`` closes (parked or not); its descriptor is still open."""
        if conn.parked:
            self._unpark(conn)
        self._poller.forget(conn)

    def _unpark(self, conn: Connection) -> None:
        conn.parked = False
        del self.parked[conn]
        self._stalled.pop(conn, None)
        self._more.pop(conn, None)
        self._hot.pop(conn, None)

    def close(self) -> None:
        self._poller.close()

    async def run(self) -> None:
        """Read parked connections as they become readable, forever; and close the idle ones."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep_forever)
            await self._read_forever()

    async def _read_forever(self) -> None:
        # No cancel scope per wait: the sweeper task keeps the deadlines.
        poller = self._poller
        more = self._more
        hot = self._hot
        passes = 0
        while True:
            passes += 1
            if more:
                await checkpoint()
            elif hot:
                for _ in range(_PIPELINE_TURNS):
                    await checkpoint()
            elif poller.fd is None:  # pragma: no cover - polled
                await trio.sleep(_POLL_INTERVAL)
                passes = 0
            else:
                await wait_readable(poller.fd)
                passes = 0
            for conn in list(more):
                if conn.parked:
                    await conn.dispatch()
                    self._after_read(conn)
            for conn in list(hot):
                del hot[conn]
                if conn.parked and not conn.more:
                    if await conn.read_ready():
                        self._after_read(conn)
                    elif conn.parked:
                        poller.rearm(conn)  # quiet again: back to the poller
            if passes % _POLL_EVERY:
                continue  # woken for the busy ones only: the poller can wait a pass
            reads = 0
            for conn in poller.ready():
                if not conn.parked or conn.more or conn in hot:
                    continue  # a caller took it or it closed since; or it is read otherwise
                await conn.read_ready()
                self._after_read(conn)
                reads += 1
                if reads == _READS_PER_TURN:
                    reads = 0
                    await checkpoint()

    async def _sweep_forever(self) -> None:
        while True:
            self._wake_at = self._next_deadline()
            with trio.move_on_at(self._wake_at) as self._scope:
                await trio.sleep_forever()
            self._scope = None
            self._sweep(trio.current_time())

    def _after_read(self, conn: Connection) -> None:
        """``conn`` was just read or dispatched: it is the most recently active now."""
        if not conn.parked:
            return
        parked = self.parked
        del parked[conn]
        parked[conn] = None
        self._track_stall(conn)
        if conn.more:
            self._more[conn] = None
            return  # read more from it only once what it sent is answered
        if self._more:
            self._more.pop(conn, None)
        if conn.backlog:
            # Replies wait to be written (the peer reads slowly or not at all):
            # read no more from it until they are out (``resume``).
            self._poller.disarm(conn)
            return
        if conn.batch > 1:
            self._hot[conn] = None
        else:
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
