"""One TCP connection: a plain socket driven by a reader task and the RPC endpoint (Trio).

Both halves of the TCP transport use this class: a connection we dialed and
one we accepted differ only in how they were made and which limits count
them. Either side may send requests on it (see ``_rpc``): the reader task
hands replies to the callers waiting for them, answers pings and lookups
itself, and starts a task for each STORE, which may wait on a disk.

A write that fits the socket buffer is one ``send`` call with no lock, no
cancel scope and no scheduler pass; only a write that finds the buffer full
waits (shielded, so no caller can leave half a frame on the shared stream),
and later writes queue behind it in order.
"""

from __future__ import annotations

import logging
import math
import socket
from typing import Protocol

import trio
from trio.lowlevel import (
    Abort,
    Task,
    current_task,
    reschedule,
    wait_readable,
    wait_task_rescheduled,
    wait_writable,
)

from . import _sockets
from ._address import format_address
from ._config import Config
from ._errors import PeerMisbehaved, TransportError
from ._ids import Address
from ._messages import ReplyFrame, Request
from ._rpc import (
    Endpoint,
    MustClose,
    PeerNamed,
    ReplyReceived,
    RequestReceived,
    TransportStatistics,
)
from ._transport import RequestHandler

logger = logging.getLogger("trio_kad.transport")

_RECEIVE_SIZE = 65536
# Frames handled from one read before the reader lets other tasks run.
_FRAMES_PER_TURN = 64
# Turns a pipelining peer's reader lets pass before reading again. A peer that
# sends a frame a turn has about this many waiting by then, so its frames are
# read, and their replies written, this many to a system call. Two is too few:
# a read then often holds one frame, and the reader falls back to epoll. The
# cost is at most two more scheduler passes of wait for a pipelined request.
_PIPELINE_TURNS = 3


class Owner(Protocol):
    """What a connection needs from the transport that holds it."""

    config: Config

    @property
    def stats(self) -> TransportStatistics: ...

    def spawn_handler(self, conn: Connection, request: RequestReceived) -> None:
        """Answer ``request`` (a STORE) in a task of its own."""

    def named(self, conn: Connection, peer: PeerNamed) -> None:
        """The peer said who it is: the pool may find this connection by that address."""

    def touched(self, conn: Connection) -> None:
        """We sent a request on ``conn``: it is the most recently used."""

    def gone(self, conn: Connection) -> None:
        """``conn`` is closed: forget it."""


class Waiter:
    """One caller waiting for the reply to one request, parked without an Event."""

    __slots__ = ("done", "error", "misbehaved", "reply", "task")

    def __init__(self) -> None:
        self.task: Task | None = None
        self.done = False
        self.reply: ReplyFrame | None = None
        self.error: str | None = None
        self.misbehaved = False

    async def wait(self) -> None:
        if self.done:
            return
        self.task = current_task()

        def abort(_: object) -> Abort:
            self.task = None
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def finish(self) -> None:
        self.done = True
        task = self.task
        if task is not None:
            self.task = None
            reschedule(task)


class Connection:
    """A socket, its endpoint, and the bookkeeping both directions share."""

    __slots__ = (
        "backlog",
        "closed",
        "counted",
        "dialed",
        "end",
        "endpoint",
        "handler_deadline",
        "handlers",
        "last_activity",
        "owner",
        "remote",
        "scope",
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
        # The reader and each STORE being handled apart; the last one out closes the socket.
        self.users = 1
        # Scopes of the STOREs handled apart, and the deadline they all get once
        # reading stopped on an error (inf while it has not).
        self.handlers: set[trio.CancelScope] = set()
        self.handler_deadline = math.inf
        # The reader's cancel scope for the current idle period (see _pump).
        self.scope: trio.CancelScope | None = None

    def __repr__(self) -> str:
        kind = "dialed" if self.dialed else "accepted"
        return f"<Connection {kind} {format_address(self.remote)}>"

    # --- what the pool asks -------------------------------------------------------

    def idle(self) -> bool:
        """Nothing in flight either way: closing it loses nothing."""
        return not self.endpoint.pending and not self.endpoint.apart and not self.closed

    def close_for_budget(self) -> None:
        self.abort("process connection budget")

    # --- requests we send ---------------------------------------------------------

    async def request(self, sender_id: bytes, sender_port: int | None, body: Request) -> ReplyFrame:
        """Send one request and wait for its reply (the reader task delivers it)."""
        if self.closed:
            raise TransportError(f"connection to {format_address(self.remote)} closed")
        waiter = Waiter()
        request_id, data = self.endpoint.send_request(sender_id, sender_port, body, waiter)
        self.last_activity = trio.current_time()
        self.owner.touched(self)
        try:
            failure = await self.send(data)
            if failure is not None:
                raise TransportError(f"connection to {format_address(self.remote)} lost: {failure}")
            await waiter.wait()
        finally:
            self.endpoint.forget(request_id)
        if waiter.reply is None:
            error = waiter.error or f"connection to {format_address(self.remote)} closed"
            raise PeerMisbehaved(error) if waiter.misbehaved else TransportError(error)
        return waiter.reply

    # --- reading ------------------------------------------------------------------

    async def serve(self, handler: RequestHandler | None) -> None:
        """Read and dispatch until the connection ends, then close it (the reader task)."""
        try:
            keep_going = await self._pump(handler)
            # Answers already made go out even when reading stops.
            await self.flush()
            clean = keep_going and self.end == "closed by peer" and not self.endpoint.buffered
            if self.end == "idle":
                logger.debug("closing idle connection %r", self)
            if not clean:
                # No more reading, but the STOREs already accepted (at most
                # max_requests_per_connection) get their replies if that is
                # quick: garbage after a valid frame must not lose its answer.
                self.hurry_handlers(trio.current_time() + self.owner.config.io_timeout)
            # Else the peer finished sending: let running handlers reply.
        finally:
            self._stop_reading(self.end)
            self.done_with()

    async def _pump(self, handler: RequestHandler | None) -> bool:
        """Read frames and dispatch each; False as soon as the connection must close.

        Returns True once the stream ended (``self.end`` says why). One cancel
        scope covers many reads: its deadline is the idle deadline when
        entered, tightened to the frame deadline only while a frame is half
        received, and re-checked when it fires. A scope per read would cost
        every frame a scope and a deadline-heap entry.
        """
        config = self.owner.config
        endpoint = self.endpoint
        sock = self.sock
        # An accepted connection's first request is usually waiting already: read
        # it without a trip through epoll (the task has just been scheduled anyway).
        read_now = not self.dialed
        while True:
            if self.closed:
                return True
            now = trio.current_time()
            if endpoint.buffered:
                deadline = endpoint.frame_started + config.io_timeout
                if deadline <= now:
                    self.owner.stats.protocol_errors += 1
                    self.end = "peer stalled mid-frame"
                    return True
            elif endpoint.pending or endpoint.apart:
                # The outstanding work has its own deadlines; wake now and then to re-check.
                deadline = now + config.idle_timeout
            else:
                deadline = self.last_activity + config.idle_timeout
                if deadline <= now:
                    self.end = "idle"
                    return True
            with trio.move_on_at(deadline) as scope:
                # Also the scope abort() cancels: no second scope per connection.
                self.scope = scope
                while True:
                    handled = 0
                    while True:
                        if handled == _FRAMES_PER_TURN:
                            # A read can hold a thousand small frames: let the other
                            # connections have a turn now and then.
                            handled = 0
                            await self.flush()
                            await trio.lowlevel.checkpoint()
                        event = endpoint.next_event()
                        if event is None:
                            break
                        handled += 1
                        if not await self._dispatch(event, handler):
                            return False
                    await self.flush()
                    if endpoint.buffered:
                        scope.deadline = min(
                            scope.deadline, endpoint.frame_started + config.io_timeout
                        )
                    try:
                        if read_now:
                            read_now = False
                        elif handled > 1:
                            # A peer that sent several frames at once (it pipelines) has
                            # likely sent more by now: read after letting the others run
                            # a few turns, without a trip through epoll.
                            for _ in range(_PIPELINE_TURNS):
                                await trio.lowlevel.checkpoint()
                        else:
                            await wait_readable(sock)
                        data = sock.recv(_RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
                    except (OSError, trio.ClosedResourceError) as exc:
                        self.end = f"read failed: {exc}"
                        return True
                    if not data:
                        self.end = "closed by peer"
                        return True
                    self.last_activity = now = trio.current_time()
                    endpoint.receive_data(data, now)

    async def _dispatch(
        self,
        event: PeerNamed | RequestReceived | ReplyReceived[Waiter] | MustClose,
        handler: RequestHandler | None,
    ) -> bool:
        """Act on one event; False when the connection must close."""
        if type(event) is RequestReceived:
            if handler is None:
                self.endpoint.send_not_serving(event)
            elif event.inline:
                # Pings and lookups are pure CPU: answered in the reader task, they
                # cost no task of their own (and pipelined ones stay in order).
                try:
                    body = await handler(event.frame, self.remote)
                except Exception:
                    logger.debug("handler failed for a request from %r", self, exc_info=True)
                    self.endpoint.send_internal_error(event)
                else:
                    self.endpoint.send_reply(event, body)
            else:
                self.owner.spawn_handler(self, event)
        elif type(event) is ReplyReceived:
            waiter = event.waiter
            waiter.reply = event.frame
            waiter.finish()
        elif type(event) is PeerNamed:
            self.owner.named(self, event)
        else:
            assert type(event) is MustClose
            logger.debug("closing %r: %s", self, event.reason)
            self.end = event.reason
            self._stop_reading(event.reason, misbehaved=event.misbehaved)
            return False
        return True

    async def handle_apart(self, request: RequestReceived, handler: RequestHandler) -> None:
        """Answer one STORE in a task of its own, cut short if the connection goes bad."""
        scope = trio.CancelScope(deadline=self.handler_deadline)
        self.handlers.add(scope)
        answered = False
        try:
            with scope:
                try:
                    body = await handler(request.frame, self.remote)
                except Exception:
                    logger.debug("handler failed for a request from %r", self, exc_info=True)
                    self.endpoint.send_internal_error(request)
                else:
                    self.endpoint.send_reply(request, body)
                answered = True
                await self.flush()
        finally:
            if not answered:
                self.endpoint.abandon(request)
            self.handlers.discard(scope)
            self.done_with()

    # --- writing ------------------------------------------------------------------

    async def flush(self) -> None:
        """Write the replies the endpoint has queued, in one piece."""
        if self.endpoint.has_data_to_send:
            data = self.endpoint.data_to_send()
            if await self.send(data) is None:
                self.last_activity = trio.current_time()

    async def send(self, data: bytes) -> str | None:
        """Write ``data`` after anything queued; why the connection failed, or None.

        A failed connection is closed (its waiting callers failed) before this returns.
        """
        if self.backlog is not None:
            # A write is waiting for room; this one goes out after it, in order.
            self.backlog += data
            return None
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            return self.abort(f"write failed: {exc}")
        if sent == len(data):
            return None
        backlog = self.backlog = bytearray(memoryview(data)[sent:])
        # Shielded: a caller giving up mid-write would leave half a frame on the
        # shared stream and break it for everyone. Still bounded by io_timeout.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.owner.config.io_timeout
            try:
                while backlog:
                    await wait_writable(sock)
                    try:
                        sent = sock.send(backlog)
                    except BlockingIOError:
                        continue
                    del backlog[:sent]
            except (OSError, trio.ClosedResourceError) as exc:
                return self.abort(f"write failed: {exc}")
        if scope.cancelled_caught:
            return self.abort("write timed out")
        self.backlog = None
        return None

    # --- closing ------------------------------------------------------------------

    def abort(self, reason: str, *, misbehaved: bool = False) -> str:
        """Close now: stop reading and answering, fail every waiting caller."""
        self.end = reason
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
        if self.scope is not None:
            self.scope.cancel()
        error = f"connection to {format_address(self.remote)} closed: {reason}"
        for waiter in self.endpoint.fail_pending():
            waiter.error = error
            waiter.misbehaved = misbehaved
            waiter.finish()
        self.owner.gone(self)

    def hurry_handlers(self, deadline: float) -> None:
        """Give every STORE still being handled at most until ``deadline``."""
        self.handler_deadline = deadline
        for scope in self.handlers:
            scope.deadline = min(scope.deadline, deadline)

    def done_with(self) -> None:
        """One user (the reader, or a STORE handled apart) is finished with the connection."""
        self.users -= 1
        if not self.users:
            _sockets.close(self.sock)
