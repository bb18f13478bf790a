"""One TCP connection: a socket, its RPC endpoint, and whoever reads it now (Trio).

Both halves of the TCP transport use this class, and either side may send
requests on it (see ``_rpc``). It has no task of its own: a caller waiting
for a reply reads it (``_tcp_call``), and while none does, it is *parked*
with the transport's watcher (``_tcp_idle``). Whoever reads dispatches the
same way: replies go to their callers, pings and lookups are answered on
the spot, and each STORE, which may wait on a disk, gets a task.

Writes never wait: what the socket takes now goes now; the rest waits in a
backlog that one drain task writes within ``io_timeout``, and later writes
queue behind it in order, so no caller can leave half a frame on the shared
stream.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Protocol

import trio
from trio.lowlevel import wait_writable

from . import _sockets
from ._address import format_address
from ._config import Config
from ._ids import Address
from ._rpc import (
    Endpoint,
    MustClose,
    PeerNamed,
    ReplyReceived,
    RequestReceived,
    TransportStatistics,
)
from ._tcp_call import Waiter
from ._transport import RequestHandler

logger = logging.getLogger("trio_kad.transport")

_RECEIVE_SIZE = 65536
# Frames dispatched from one read before the reader lets other tasks (and, for
# the watcher, other connections) have a turn: a read can hold a thousand.
FRAMES_PER_TURN = 64


class Owner(Protocol):
    """What a connection needs from the transport that holds it."""

    config: Config

    @property
    def stats(self) -> TransportStatistics: ...

    @property
    def handler(self) -> RequestHandler | None:
        """Answers the peer's requests (None: a client-only node answers none)."""

    def spawn(self, conn: Connection, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` in a task (``conn.users`` counts it; it calls ``done_with``)."""

    def park(self, conn: Connection) -> None:
        """Nobody reads ``conn`` now: the watcher reads it until a caller takes a turn."""

    def unpark(self, conn: Connection) -> None:
        """A caller reads ``conn`` now: the watcher leaves it alone."""

    def named(self, conn: Connection, peer: PeerNamed) -> None:
        """The peer said who it is: the pool may find this connection by that address."""

    def drained(self, conn: Connection) -> None:
        """``conn``, parked, has written its backlog: the watcher may read it again."""

    def touched(self, conn: Connection) -> None:
        """We sent a request on ``conn``: it is the most recently used."""

    def released(self, conn: Connection) -> None:
        """``conn`` has no request of ours waiting any more."""

    def gone(self, conn: Connection) -> None:
        """``conn`` is closed, parked or not: forget it."""


class Connection:
    """A socket, its endpoint, and the bookkeeping both directions share."""

    __slots__ = (
        "backlog",
        "batch",
        "closed",
        "counted",
        "dialed",
        "end",
        "endpoint",
        "handler_deadline",
        "handlers",
        "last_activity",
        "more",
        "owner",
        "parked",
        "reading",
        "remote",
        "sock",
        "users",
    )

    def __init__(
        self,
        owner: Owner,
        sock: socket.socket,
        remote: Address,
        endpoint: Endpoint[Waiter],
        *,
        dialed: bool,
        now: float,
    ) -> None:
        self.owner = owner
        self.sock = sock
        self.remote = remote
        self.endpoint = endpoint
        self.dialed = dialed
        self.last_activity = now
        # Bytes a write could not hand to the socket yet; later writes queue behind them.
        self.backlog: bytearray | None = None
        self.closed = False
        self.end = "closed"  # why reading stopped
        self.counted = not dialed  # an accepted connection counts against the inbound limits
        # The caller whose turn it is to read (for everyone), if any.
        self.reading: Waiter | None = None
        # Whether the watcher reads it (nobody else does).
        self.parked = False
        # Whether frames already read wait for dispatch (see FRAMES_PER_TURN).
        self.more = False
        # Events the last dispatch handled: more than one means the peer pipelines.
        self.batch = 0
        # Being open, each STORE being answered and the drain task; the last one
        # out closes the socket.
        self.users = 1
        # Scopes of the STOREs handled apart, and the deadline they all get once
        # reading stopped on an error (inf while it has not).
        self.handlers: set[trio.CancelScope] | None = None  # made for the first STORE
        self.handler_deadline = math.inf

    def __repr__(self) -> str:
        kind = "dialed" if self.dialed else "accepted"
        return f"<Connection {kind} {format_address(self.remote)}>"

    # --- what the pool asks -------------------------------------------------------

    def idle(self) -> bool:
        """Nothing in flight either way: closing it loses nothing."""
        endpoint = self.endpoint
        return not (endpoint.pending or endpoint.apart or self.backlog or self.closed)

    def close_for_budget(self) -> None:
        self.abort("process connection budget")

    # --- nobody reading --------------------------------------------------------

    def unread(self) -> None:
        """Nobody reads it now: park it, once what was read is dispatched."""
        if self.more:
            self.users += 1
            self.owner.spawn(self, self._dispatch_rest)
        else:
            self.owner.park(self)

    async def _dispatch_rest(self) -> None:
        """Dispatch, a turn at a time, the frames a reader left (a peer that pipelines)."""
        try:
            while self.more:
                await trio.lowlevel.checkpoint()
                if not await self.dispatch():
                    return
            if not self.closed and self.reading is None and not self.parked:
                self.owner.park(self)
        finally:
            self.done_with()

    # --- reading ------------------------------------------------------------------

    async def start_reading(self) -> None:
        """A new accepted connection: read what came with it, then park it."""
        await self.read_ready()
        if not self.closed and self.reading is None and not self.parked:
            self.unread()

    async def read_ready(self) -> bool:
        """Read what the socket holds and dispatch it; whether anything came.

        For the watcher and a new connection; False also when the read found
        nothing or ended the connection.
        """
        if self.receive() <= 0:
            return False
        await self.dispatch()
        return not self.closed

    def receive(self) -> int:
        """One non-blocking read into the endpoint: bytes read, 0 for none, -1 once it ended."""
        if self.closed:
            return -1
        try:
            data = self.sock.recv(_RECEIVE_SIZE)
        except BlockingIOError:
            return 0 if self._check_stall() else -1
        except OSError as exc:
            self.end_reading(f"read failed: {exc}")
            return -1
        if not data:
            self.end_reading("closed by peer")
            return -1
        self.last_activity = now = trio.current_time()
        self.endpoint.receive_data(data, now)
        return len(data)

    def _check_stall(self) -> bool:
        """Close a connection whose half frame is older than ``io_timeout``; False if closed."""
        endpoint = self.endpoint
        if (
            endpoint.buffered
            and endpoint.frame_started + self.owner.config.io_timeout <= trio.current_time()
        ):
            self.owner.stats.protocol_errors += 1
            self.end_reading("peer stalled mid-frame")
            return False
        return True

    def check_idle(self, now: float) -> bool:
        """Close if stalled mid-frame or unused for ``idle_timeout``; whether it closed."""
        if not self._check_stall():
            return True
        if self.last_activity + self.owner.config.idle_timeout > now:
            return False
        if self.endpoint.apart or self.backlog:
            # Work in flight has deadlines of its own: not idle yet.
            self.last_activity = now
            return False
        logger.debug("closing idle connection %r", self)
        self.end_reading("idle")
        return True

    async def dispatch(self) -> bool:
        """Act on the events the bytes read so far make; False once the connection ended.

        At most ``FRAMES_PER_TURN`` of them (``more`` says whether any wait).
        Never waits (inline handlers do not block), so the watcher can read
        for many connections in one task.
        """
        endpoint = self.endpoint
        handler = self.owner.handler
        self.more = False
        handled = 0
        while handled < FRAMES_PER_TURN:
            event = endpoint.next_event()
            if event is None:
                break
            handled += 1
            if type(event) is RequestReceived:
                if handler is None:
                    endpoint.send_not_serving(event)
                elif event.inline:
                    # Pings and lookups are pure CPU: answered here, they cost no
                    # task of their own (and pipelined ones stay in order).
                    try:
                        reply = await handler(event.frame, self.remote)
                    except Exception:
                        logger.exception("the handler failed on a request from %r", self)
                        endpoint.send_internal_error(event)
                    else:
                        endpoint.send_reply(event, reply)
                else:
                    assert handler is not None
                    self.users += 1
                    self.owner.spawn(self, partial(self.handle_apart, event, handler))
            elif type(event) is ReplyReceived:
                waiter = event.waiter
                waiter.reply = event.frame
                waiter.finish()
            elif type(event) is PeerNamed:
                self.owner.named(self, event)
            else:
                assert type(event) is MustClose
                logger.debug("closing %r: %s", self, event.reason)
                self.flush()
                self.end_reading(event.reason, misbehaved=event.misbehaved)
                return False
        else:
            self.more = True
        self.batch = handled
        self.flush()
        return not self.closed

    async def handle_apart(self, request: RequestReceived, handler: RequestHandler) -> None:
        """Answer one STORE in a task of its own, cut short if the connection goes bad."""
        scope = trio.CancelScope(deadline=self.handler_deadline)
        if self.handlers is None:
            self.handlers = set()
        handlers = self.handlers
        handlers.add(scope)
        answered = False
        try:
            with scope:
                try:
                    reply = await handler(request.frame, self.remote)
                except Exception:
                    logger.exception("the handler failed on a request from %r", self)
                    self.endpoint.send_internal_error(request)
                else:
                    self.endpoint.send_reply(request, reply)
                answered = True
                self.flush()
        finally:
            if not answered:
                self.endpoint.abandon(request)
            handlers.discard(scope)
            self.done_with()

    # --- writing ------------------------------------------------------------------

    def flush(self) -> None:
        """Write the replies the endpoint has queued, in one piece."""
        if self.endpoint.has_data_to_send:
            data = self.endpoint.data_to_send()
            backlog = self.backlog
            if backlog is not None and len(backlog) > 2 * self.owner.config.max_frame_size:
                # The watcher reads no more while replies wait, but a caller waiting
                # for its own reply does: a peer that sends requests and reads no
                # replies must not grow our memory without bound.
                self.abort("the peer reads no replies", misbehaved=True)
                return
            if self.write(data) is None:
                self.last_activity = trio.current_time()

    def write(self, data: bytes) -> str | None:
        """Write ``data`` after anything queued, never waiting; why the connection failed, or None.

        A failed connection is closed (its waiting callers failed) before this returns.
        """
        if self.closed:
            return self.end
        if self.backlog is not None:
            # A write is waiting for room; this one goes out after it, in order.
            self.backlog += data
            return None
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            return self.abort(f"write failed: {exc}")
        if sent < len(data):
            self.backlog = bytearray(memoryview(data)[sent:])
            self.users += 1
            self.owner.spawn(self, self.drain)
        return None

    async def drain(self) -> None:
        """Write the backlog as the socket takes it; each bit of progress earns ``io_timeout``."""
        sock = self.sock
        timeout = self.owner.config.io_timeout
        try:
            with trio.move_on_after(timeout) as scope:
                # Later writes append to this same bytearray.
                backlog = self.backlog
                while backlog:
                    await wait_writable(sock)
                    try:
                        sent = sock.send(backlog)
                    except BlockingIOError:
                        continue
                    del backlog[:sent]
                    scope.deadline = trio.current_time() + timeout
            if scope.cancelled_caught:
                self.abort("write timed out")
        except (OSError, trio.ClosedResourceError) as exc:
            if not self.closed:
                self.abort(f"write failed: {exc}")
        finally:
            self.backlog = None
            if self.parked and not self.closed:
                self.owner.drained(self)
            self.done_with()

    # --- closing ------------------------------------------------------------------

    def end_reading(self, reason: str, *, misbehaved: bool = False) -> None:
        """Reading stopped: the STOREs already accepted still get their replies if quick."""
        clean = reason == "closed by peer" and not self.endpoint.buffered
        if not clean:
            # Garbage after a valid frame must not lose that frame's answer, but
            # a broken connection gets at most io_timeout more.
            self.hurry_handlers(trio.current_time() + self.owner.config.io_timeout)
        self._stop_reading(reason, misbehaved=misbehaved)

    def abort(self, reason: str, *, misbehaved: bool = False) -> str:
        """Close now: stop reading and answering, fail every waiting caller."""
        self._stop_reading(reason, misbehaved=misbehaved)
        self.hurry_handlers(-math.inf)
        # The socket goes now, not when the last handler notices: a budget or a
        # limit closing it wants the descriptor back.
        _sockets.close(self.sock)
        return reason

    def _stop_reading(self, reason: str, *, misbehaved: bool = False) -> None:
        """No more requests go out or replies come in: fail the callers still waiting."""
        if self.closed:
            return
        self.closed = True
        self.end = reason
        error = f"connection to {format_address(self.remote)} closed: {reason}"
        for waiter in self.endpoint.fail_pending():
            waiter.error = error
            waiter.misbehaved = misbehaved
            waiter.finish()
        self.owner.gone(self)
        self.done_with()

    def hurry_handlers(self, deadline: float) -> None:
        """Give every STORE still being handled at most until ``deadline``."""
        self.handler_deadline = deadline
        for scope in self.handlers or ():
            scope.deadline = min(scope.deadline, deadline)

    def done_with(self) -> None:
        """One user (being open, a STORE handled apart, the drain) is done with the connection."""
        self.users -= 1
        if not self.users:
            _sockets.close(self.sock)
