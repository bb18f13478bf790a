"""The TCP transport: length-prefixed CBOR frames over pooled, multiplexed connections (Trio).

Connections are one-directional. The side that opens a connection sends
requests on it and reads replies; the side that accepted it reads requests and
writes replies. Each peer address gets ONE outbound connection, shared by every
RPC to that peer and multiplexed by request id, so a lookup's many small RPCs
(paper section 2.3) do not pay a TCP handshake each.

Each connection end is one task and a plain socket (see ``_sockets``): a
write that fits the socket buffer is one ``send`` call with no lock, no cancel
scope and no scheduler pass; only a write that finds the buffer full waits,
and later writes queue behind it in order.

Inbound limits, all from ``Config``: frame size (from the length prefix),
read/write deadlines, idle timeout, total inbound connections and connections
per remote IP, requests in flight per connection, and a per-IP request rate.
Over a limit a peer gets an OVERLOADED or TOO_LARGE reply where the stream is
still intact, and is disconnected where it is not or where it keeps pushing.
"""

from __future__ import annotations

import logging
import math
import socket

import trio
from trio.lowlevel import wait_readable, wait_writable

from . import _sockets
from ._address import format_address as _fmt
from ._codec import (
    FrameReader,
    UnsupportedFrameError,
    decode_frame,
    encode_frame,
    encode_reply,
)
from ._config import Config
from ._diversity import NetworkSet
from ._errors import PeerMisbehaved, ProtocolError, TransportError
from ._ids import ID_BYTES, Address
from ._limits import RateLimiter
from ._messages import (
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    Ping,
    Reply,
    ReplyFrame,
    Request,
    RequestFrame,
)
from ._transport import RequestHandler, Transport

logger = logging.getLogger("trio_kad.transport")

_RECEIVE_SIZE = 65536
_REQUEST_ID_MODULUS = 2**64
_ACCEPT_BACKOFF = 0.1
# Frames handled from one read before the reader lets other tasks run.
_FRAMES_PER_TURN = 64
# Connections taken per wake-up of a listener: a storm of connects is drained
# in batches, yet one listener cannot hold the scheduler forever.
_ACCEPT_BATCH = 64
# A peer refused this many times request_burst_per_ip in a row is not slowing
# down: it ignores OVERLOADED, so answering it any further is wasted work.
_REFUSALS_BEFORE_CLOSE = 4
# Remote IPs whose request rate is tracked, per allowed inbound connection.
_TRACKED_IPS_PER_CONNECTION = 4


# How a connection's reader reads next (see TcpTransport._pump).
_READ_NOW = "now"
_READ_AFTER_TURNS = "after a few turns"
_READ_WHEN_READY = "when ready"
# Turns a pipelining peer's reader lets pass before reading again. A peer that
# sends a frame a turn has about this many waiting by then, so its frames are
# read, and their replies written, this many to a system call. Two is too few:
# a read then often holds one frame, and the reader falls back to epoll. The
# cost is at most two more scheduler passes of wait for a pipelined request.
_PIPELINE_TURNS = 3

# Requests a handler answers without waiting on anything (see RequestHandler).
_ANSWERED_INLINE = frozenset({Ping, FindNode, FindValue})


def error_reply_for(exc: ProtocolError) -> ErrorReply:
    """The short, generic error reply to a request that failed to decode."""
    if isinstance(exc, UnsupportedFrameError):
        return ErrorReply(ErrorCode.UNSUPPORTED, "unsupported version or message type")
    return ErrorReply(ErrorCode.MALFORMED, "malformed request")


class _Waiter:
    """One caller waiting for the reply to one request (and maybe reading for the others)."""

    __slots__ = ("error", "event", "misbehaved", "reply")

    def __init__(self) -> None:
        # Made only when the caller must sleep while another caller reads.
        self.event: trio.Event | None = None
        self.reply: ReplyFrame | None = None
        self.error: str | None = None
        self.misbehaved = False


class _Conn:
    """What both ends of a connection share: the socket, the frames read, the writes queued."""

    __slots__ = (
        "backlog",
        "closed",
        "end",
        "frame_started",
        "last_activity",
        "peer",
        "reader",
        "received",
        "sock",
    )

    def __init__(self, sock: socket.socket, peer: Address, now: float, max_frame: int) -> None:
        self.sock = sock
        self.peer = peer
        self.reader = FrameReader(max_frame)
        self.last_activity = now
        self.received = now  # when the last data arrived
        self.frame_started = now  # when the partly received frame began
        # Bytes a write could not hand to the socket yet; later writes queue behind them.
        self.backlog: bytearray | None = None
        self.closed = False
        self.end = "closed"  # why reading stopped


class _Outbound(_Conn):
    """A connection we opened: we send requests, and the callers read the replies in turn."""

    __slots__ = ("misbehaved", "owner", "pending", "reading")

    def __init__(
        self, owner: TcpTransport, address: Address, sock: socket.socket, now: float
    ) -> None:
        super().__init__(sock, address, now, owner._config.max_frame_size)
        self.owner = owner
        self.pending: dict[int, _Waiter] = {}
        self.misbehaved = False
        # The caller whose turn it is to read replies (for everyone), if any.
        self.reading: _Waiter | None = None


class _Inbound(_Conn):
    """A connection a peer opened to us: we read requests and write replies."""

    __slots__ = (
        "active",
        "counted",
        "handler_deadline",
        "handlers",
        "outbox",
        "refused_in_row",
        "scope",
        "users",
    )

    def __init__(self, sock: socket.socket, remote: Address, now: float, max_frame: int) -> None:
        super().__init__(sock, remote, now, max_frame)
        # Replies answered in the reader task, written together before the next read.
        self.outbox: list[bytes] = []
        self.active = 0  # requests being answered
        self.refused_in_row = 0  # requests refused by the rate limit since the last allowed one
        self.counted = True  # still counted against the inbound limits
        # The reader and each STORE being handled apart; the last one out closes the socket.
        self.users = 1
        # Scopes of the STOREs handled apart, and the deadline they all get once
        # reading stopped on an error (inf while it has not).
        self.handlers: set[trio.CancelScope] = set()
        self.handler_deadline = math.inf
        # The reader's cancel scope for the current idle period (see TcpTransport._pump).
        self.scope: trio.CancelScope | None = None

    def stop(self) -> None:
        """Make the reader stop at once (or as soon as it starts)."""
        self.closed = True
        if self.scope is not None:
            self.scope.cancel()

    def busy(self) -> bool:
        """Outstanding work with deadlines of its own: silence now is not idleness."""
        return self.active > 0

    def hurry_handlers(self, deadline: float) -> None:
        """Give every STORE still being handled at most until ``deadline``."""
        self.handler_deadline = deadline
        for scope in self.handlers:
            scope.deadline = min(scope.deadline, deadline)


def _descriptor_budget() -> int:
    """Outbound connections all transports of this process may hold at once.

    Two fifths of the file-descriptor limit: when the peers live in the same
    process (simulations, tests, benchmarks) each connection costs a
    descriptor at both ends, and listeners and inbound connections from
    elsewhere need the rest.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return 1 << 16
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    return max(16, soft * 2 // 5)


class _ProcessPool:
    """Every outbound connection of every TcpTransport in this process, least recently used first.

    ``Config.max_outbound_connections`` caps one node's pool; this caps the
    sum, so a thousand nodes in one process share the descriptor limit
    instead of running into it.
    """

    __slots__ = ("_budget", "conns")

    def __init__(self) -> None:
        self.conns: dict[_Outbound, None] = {}
        self._budget: int | None = None

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = _descriptor_budget()
        return self._budget

    @budget.setter
    def budget(self, value: int | None) -> None:
        self._budget = value

    def add(self, conn: _Outbound) -> None:
        self.conns[conn] = None

    def touch(self, conn: _Outbound) -> None:
        if conn in self.conns:
            del self.conns[conn]
            self.conns[conn] = None

    def discard(self, conn: _Outbound) -> None:
        self.conns.pop(conn, None)

    def make_room(self) -> None:
        """Close the least recently used idle connection(s) while over the budget."""
        excess = len(self.conns) - self.budget + 1
        if excess <= 0:
            return
        idle: list[_Outbound] = []
        for conn in self.conns:
            if not conn.pending:
                idle.append(conn)
                if len(idle) == excess:
                    break
        for conn in idle:
            conn.owner._close_outbound(conn, "process connection budget")


_PROCESS_POOL = _ProcessPool()


class _Connect:
    """A connect in progress, shared by every caller that wants the same address."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None


class TcpTransport(Transport):
    """Kademlia frames over TCP, with connection reuse, deadlines and limits from ``Config``."""

    def __init__(self) -> None:
        super().__init__()
        self._config = Config()
        self._local_id = bytes(ID_BYTES)
        self._nursery: trio.Nursery | None = None
        self._next_request_id = 0
        # Insertion order is recency order: a used connection is moved to the end.
        self._outbound: dict[Address, _Outbound] = {}
        self._connecting: dict[Address, _Connect] = {}
        self._inbound_count = 0
        # Open inbound connections by remote IP; each inner dict is in accept order.
        self._inbound_by_ip: dict[str, dict[_Inbound, None]] = {}
        self._rate_limiter = RateLimiter(1.0, 1.0, 1)
        self._per_ip_exempt = NetworkSet(())

    # --- lifetime ------------------------------------------------------------

    async def run(
        self,
        config: Config,
        node_id: bytes,
        host: str,
        port: int,
        handler: RequestHandler | None,
        *,
        task_status: trio.TaskStatus[Address | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen (unless ``handler`` is ``None``) and hold every connection until cancelled."""
        if self._nursery is not None:
            raise RuntimeError("TcpTransport.run() is already running")
        self._config = config
        self._local_id = node_id
        self._rate_limiter = RateLimiter(
            config.request_rate_per_ip,
            config.request_burst_per_ip,
            config.max_inbound_connections * _TRACKED_IPS_PER_CONNECTION,
        )
        self._per_ip_exempt = NetworkSet(config.per_ip_exempt)
        listeners: list[socket.socket] = []
        try:
            if handler is not None:
                listeners = await _sockets.listen(host, port)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if handler is None:
                    task_status.started(None)
                else:
                    for listener in listeners:
                        nursery.start_soon(self._accept_loop, listener, handler)
                    bound_port: int = listeners[0].getsockname()[1]
                    task_status.started((host, bound_port))
                await self._close_idle_outbound()
        finally:
            self._nursery = None
            for conn in list(self._outbound.values()):
                self._close_outbound(conn, "transport stopped")
            for listener in listeners:
                _sockets.close(listener)

    async def _close_idle_outbound(self) -> None:
        """Forever close the outbound connections unused for ``idle_timeout``.

        They have no task of their own to notice it (callers read replies).
        """
        idle = self._config.idle_timeout
        while True:
            now = trio.current_time()
            wake = now + idle
            for conn in list(self._outbound.values()):
                if conn.pending:
                    continue
                expires = conn.last_activity + idle
                if expires <= now:
                    logger.debug("closing idle outbound connection to %s", _fmt(conn.peer))
                    self._close_outbound(conn, "idle")
                else:
                    wake = min(wake, expires)
            await trio.sleep_until(wake)

    # --- reading requests ------------------------------------------------

    async def _pump(self, conn: _Inbound, handler: RequestHandler) -> bool:
        """Read requests and dispatch each.

        Returns False as soon as a frame says the connection must close, True
        once the stream ended (``conn.end`` says why). Raises ProtocolError
        (already counted) on an oversized frame: the framing is lost.

        One cancel scope covers many reads: its deadline is the idle deadline
        when entered, tightened to the frame deadline only while a frame is
        half received, and re-checked when it fires. A scope per read would
        cost every frame a scope and a deadline-heap entry.
        """
        config = self._config
        stats = self._stats
        reader = conn.reader
        sock = conn.sock
        # An accepted connection's first request is usually waiting already: read
        # it without a trip through epoll (the task has just been scheduled anyway).
        read = _READ_NOW
        while True:
            if conn.closed:
                return True
            now = trio.current_time()
            if reader.buffered:
                deadline = conn.frame_started + config.io_timeout
                if deadline <= now:
                    stats.protocol_errors += 1
                    logger.debug("%s stalled in the middle of a frame", _fmt(conn.peer))
                    conn.end = "peer stalled mid-frame"
                    return True
            elif conn.busy():
                # The outstanding work has its own deadlines; just wake now and then to re-check.
                deadline = now + config.idle_timeout
            else:
                deadline = conn.last_activity + config.idle_timeout
                if deadline <= now:
                    conn.end = "idle"
                    return True
            with trio.move_on_at(deadline) as scope:
                # Also the scope stop() cancels: no second scope per connection.
                conn.scope = scope
                while True:
                    handled = 0
                    while True:
                        if handled == _FRAMES_PER_TURN:
                            # A read can hold a thousand small frames: let the other
                            # connections have a turn now and then (before taking the
                            # next frame, so a deadline firing here loses none).
                            handled = 0
                            if conn.outbox:
                                await self._flush(conn)
                            await trio.lowlevel.checkpoint()
                        try:
                            payload = reader.next_payload()
                        except ProtocolError:
                            stats.protocol_errors += 1
                            raise
                        if payload is None:
                            break
                        handled += 1
                        # Anything still buffered is a frame that began in the last read.
                        conn.frame_started = conn.received
                        if not await self._dispatch(conn, payload, handler):
                            return False
                    if conn.outbox:
                        await self._flush(conn)
                    if reader.buffered:
                        scope.deadline = min(scope.deadline, conn.frame_started + config.io_timeout)
                    if read is not _READ_NOW:
                        # A peer that sent several frames at once (it pipelines) has
                        # likely sent more by now: read after letting the others run
                        # a few turns, without a trip through epoll. Anyone else:
                        # wait for data.
                        read = _READ_AFTER_TURNS if handled > 1 else _READ_WHEN_READY
                    try:
                        if read is _READ_WHEN_READY:
                            await wait_readable(sock)
                        elif read is _READ_AFTER_TURNS:
                            for _ in range(_PIPELINE_TURNS):
                                await trio.lowlevel.checkpoint()
                        read = _READ_WHEN_READY
                        data = sock.recv(_RECEIVE_SIZE)
                    except BlockingIOError:
                        continue
                    except (OSError, trio.ClosedResourceError) as exc:
                        conn.end = f"read failed: {exc}"
                        return True
                    if not data:
                        conn.end = "closed by peer"
                        return True
                    self._received(conn, data)

    def _received(self, conn: _Inbound | _Outbound, data: bytes) -> None:
        """Take ``data`` just read from ``conn`` into its frame reader."""
        self._stats.bytes_received += len(data)
        conn.last_activity = conn.received = trio.current_time()
        if not conn.reader.buffered:
            conn.frame_started = conn.received
        conn.reader.feed(data)

    # --- writing, either direction ------------------------------------------------

    async def _send(self, conn: _Inbound | _Outbound, data: bytes) -> str | None:
        """Write ``data`` after anything queued; why the connection failed, or None.

        A failed connection is closed (its waiting callers failed) before this returns.
        """
        if conn.closed:
            return "closed"
        if conn.backlog is not None:
            # A write is waiting for room; this one goes out after it, in order.
            conn.backlog += data
            return None
        sock = conn.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            return self._write_failed(conn, f"write failed: {exc}")
        if sent == len(data):
            return None
        backlog = conn.backlog = bytearray(memoryview(data)[sent:])
        # Shielded: a caller giving up mid-write would leave half a frame on the
        # shared stream and break it for everyone. Still bounded by io_timeout.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self._config.io_timeout
            try:
                while backlog:
                    await wait_writable(sock)
                    try:
                        sent = sock.send(backlog)
                    except BlockingIOError:
                        continue
                    del backlog[:sent]
            except (OSError, trio.ClosedResourceError) as exc:
                return self._write_failed(conn, f"write failed: {exc}")
        if scope.cancelled_caught:
            return self._write_failed(conn, "write timed out")
        conn.backlog = None
        return None

    def _write_failed(self, conn: _Inbound | _Outbound, reason: str) -> str:
        logger.debug("%s: %s", _fmt(conn.peer), reason)
        if isinstance(conn, _Outbound):
            self._close_outbound(conn, reason)
        else:
            self._abort(conn)
        return reason

    # --- client side -----------------------------------------------------------

    async def _request(
        self,
        address: Address,
        sender_id: bytes,
        sender_port: int | None,
        body: Request,
    ) -> ReplyFrame:
        request_id = self._next_request_id = (self._next_request_id + 1) % _REQUEST_ID_MODULUS
        data = encode_frame(RequestFrame(request_id, sender_id, sender_port, body))
        if len(data) - 4 > self._config.max_frame_size:
            raise TransportError(
                f"request of {len(data)} bytes exceeds max_frame_size"
                f" ({self._config.max_frame_size})"
            )
        conn = await self._get_connection(address)
        # No checkpoint between _get_connection's last check and registering
        # the waiter, so the idle reaper cannot close the connection under us.
        waiter = _Waiter()
        conn.pending[request_id] = waiter
        self._touch(conn)
        try:
            failure = await self._send(conn, data)
            if failure is not None:
                raise TransportError(f"connection to {_fmt(address)} lost: {failure}")
            self._stats.frames_sent += 1
            self._stats.bytes_sent += len(data)
            await self._await_reply(conn, waiter)
        finally:
            conn.pending.pop(request_id, None)
            if conn.reading is waiter:
                self._pass_reading(conn)
        if waiter.reply is None:
            error = waiter.error or f"connection to {_fmt(address)} closed"
            raise PeerMisbehaved(error) if waiter.misbehaved else TransportError(error)
        return waiter.reply

    def _touch(self, conn: _Outbound) -> None:
        conn.last_activity = trio.current_time()
        _PROCESS_POOL.touch(conn)
        # Move to the end: the dict's order is least to most recently used.
        if self._outbound.get(conn.peer) is conn:
            del self._outbound[conn.peer]
            self._outbound[conn.peer] = conn

    async def _get_connection(self, address: Address) -> _Outbound:
        """The open connection to ``address``, connecting (once, shared) if there is none."""
        while True:
            conn = self._outbound.get(address)
            if conn is not None and not conn.closed and (conn.pending or self._reusable(conn)):
                return conn
            attempt = self._connecting.get(address)
            if attempt is None:
                break
            await attempt.done.wait()
            if attempt.error is not None:
                raise TransportError(attempt.error)
            # Connected (take it) or the connecting caller was cancelled (try again).

        if self._nursery is None:
            raise TransportError("transport is not running")
        attempt = _Connect()
        self._connecting[address] = attempt
        try:
            self._make_room()
            try:
                # In the caller's task and cancel scope: the RPC timeout covers connecting.
                sock = await _sockets.connect(address[0], address[1])
            except OSError as exc:
                attempt.error = f"cannot connect to {_fmt(address)}: {exc}"
                raise TransportError(attempt.error) from exc
            return self._register(address, sock)
        finally:
            del self._connecting[address]
            attempt.done.set()

    def _register(self, address: Address, sock: socket.socket) -> _Outbound:
        conn = _Outbound(self, address, sock, trio.current_time())
        nursery = self._nursery
        if nursery is None:
            sock.close()
            raise TransportError("transport is not running")
        self._outbound[address] = conn
        _PROCESS_POOL.add(conn)
        self._stats.connections_opened += 1
        self._stats.connections_open += 1
        return conn

    def _reusable(self, conn: _Outbound) -> bool:
        """Whether an idle pooled connection is still good; closes it if not.

        Nobody reads a connection with no request in flight, so a peer that
        closed it meanwhile (its idle timeout, a restart) is noticed here,
        with one non-blocking peek, rather than by a failed request.
        """
        if (
            conn.reader.buffered
            and conn.frame_started + self._config.io_timeout <= trio.current_time()
        ):
            self._close_stalled(conn)
            return False
        try:
            data = conn.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError as exc:
            self._close_outbound(conn, f"read failed: {exc}")
            return False
        if data:
            return True  # late replies: the next caller to read takes them
        self._close_outbound(conn, "closed by peer")
        return False

    def _close_stalled(self, conn: _Outbound) -> None:
        """Close ``conn``: half a reply came and the rest not within ``io_timeout``."""
        self._stats.protocol_errors += 1
        logger.debug("%s stalled in the middle of a frame", _fmt(conn.peer))
        self._close_outbound(conn, "peer stalled mid-frame")

    def _make_room(self) -> None:
        """Close the least recently used idle connection when at max_outbound_connections."""
        _PROCESS_POOL.make_room()
        if len(self._outbound) < self._config.max_outbound_connections:
            return
        for conn in self._outbound.values():
            if not conn.pending:
                self._close_outbound(conn, "over max_outbound_connections")
                return
        logger.debug("all %d outbound connections are busy; opening one more", len(self._outbound))

    def _close_outbound(self, conn: _Outbound, reason: str) -> None:
        """Close ``conn`` and fail every caller still waiting on it."""
        if conn.closed:
            return
        conn.closed = True
        _PROCESS_POOL.discard(conn)
        if self._outbound.get(conn.peer) is conn:
            del self._outbound[conn.peer]
        error = f"connection to {_fmt(conn.peer)} closed: {reason}"
        for waiter in conn.pending.values():
            if waiter.reply is None:
                waiter.error = error
                waiter.misbehaved = conn.misbehaved
                if waiter.event is not None:
                    waiter.event.set()
        self._stats.connections_open -= 1
        # Wakes a caller reading it, if any (it sees ClosedResourceError).
        _sockets.close(conn.sock)

    async def _await_reply(self, conn: _Outbound, waiter: _Waiter) -> None:
        """Wait until ``waiter`` has its reply or its error, reading replies when it is its turn.

        The callers waiting on a connection take turns at reading it, for
        everyone, instead of a task of the connection's own: the usual RPC,
        alone on its connection, then wakes for its reply straight from epoll,
        one scheduler pass instead of two, and a connection costs no task.
        """
        while waiter.reply is None and waiter.error is None:
            if conn.closed:
                # Closing fails every waiter it finds; this covers one it did not.
                waiter.error = f"connection to {_fmt(conn.peer)} closed"
                return
            if conn.reading is None:
                conn.reading = waiter
            if conn.reading is waiter:
                await self._read_replies(conn, waiter)
            else:
                waiter.event = trio.Event()
                await waiter.event.wait()

    def _pass_reading(self, conn: _Outbound) -> None:
        """The reading caller leaves: the turn goes to a caller still waiting, if any."""
        conn.reading = None
        for waiter in conn.pending.values():
            if waiter.reply is None and waiter.error is None:
                conn.reading = waiter
                if waiter.event is not None:
                    waiter.event.set()
                return

    async def _read_replies(self, conn: _Outbound, waiter: _Waiter) -> None:
        """Hand out replies read from ``conn`` until ``waiter`` has one or the connection ends."""
        reader = conn.reader
        sock = conn.sock
        while True:
            try:
                while (payload := reader.next_payload()) is not None:
                    # Anything still buffered is a frame that began in the last read.
                    conn.frame_started = conn.received
                    if not self._deliver_reply(conn, payload):
                        self._close_outbound(conn, conn.end)
                        return
                    if waiter.reply is not None:
                        return
            except ProtocolError as exc:
                logger.debug("reply stream from %s: %s", _fmt(conn.peer), exc)
                self._stats.protocol_errors += 1
                conn.misbehaved = True
                self._close_outbound(conn, "oversized reply")
                return
            if conn.closed:
                return
            try:
                if reader.buffered:
                    # Half a frame: the rest must follow within io_timeout.
                    with trio.move_on_at(conn.frame_started + self._config.io_timeout) as stall:
                        await wait_readable(sock)
                    if stall.cancelled_caught:
                        self._close_stalled(conn)
                        return
                else:
                    await wait_readable(sock)
                data = sock.recv(_RECEIVE_SIZE)
            except BlockingIOError:
                continue
            except (OSError, trio.ClosedResourceError) as exc:
                self._close_outbound(conn, f"read failed: {exc}")
                return
            if not data:
                self._close_outbound(conn, "closed by peer")
                return
            self._received(conn, data)

    def _deliver_reply(self, conn: _Outbound, payload: bytes) -> bool:
        """Hand one reply to its caller; False (``conn.end`` says why) to close the connection."""
        self._stats.frames_received += 1
        try:
            frame = decode_frame(payload)
        except ProtocolError as exc:
            # The peer is broken: nothing else it sends can be trusted.
            self._stats.protocol_errors += 1
            logger.debug("bad reply from %s: %s", _fmt(conn.peer), exc)
            conn.misbehaved = True
            conn.end = f"undecodable reply: {exc}"
            return False
        if not isinstance(frame, ReplyFrame):
            self._stats.protocol_errors += 1
            logger.debug("request from %s on an outbound connection", _fmt(conn.peer))
            conn.misbehaved = True
            conn.end = "peer sent a request on our connection"
            return False
        waiter = conn.pending.pop(frame.request_id, None)
        if waiter is None:
            # The caller gave up (its cancel scope fired) before the reply came.
            logger.debug("late reply %d from %s", frame.request_id, _fmt(conn.peer))
        else:
            waiter.reply = frame
            if waiter.event is not None:
                waiter.event.set()
        return True

    # --- server side -----------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket, handler: RequestHandler) -> None:
        while True:
            await wait_readable(listener)
            for _ in range(_ACCEPT_BATCH):
                try:
                    sock, peer = listener.accept()
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in _sockets.ACCEPT_SKIP_ERRNOS:
                        continue
                    if exc.errno not in _sockets.ACCEPT_CAPACITY_ERRNOS:
                        raise
                    logger.debug("accept failed (%s); retrying shortly", exc)
                    await trio.sleep(_ACCEPT_BACKOFF)
                    break
                self._accepted(sock, (str(peer[0]), int(peer[1])), handler)

    def _accepted(self, sock: socket.socket, remote: Address, handler: RequestHandler) -> None:
        nursery = self._nursery
        assert nursery is not None
        try:
            _sockets.prepare(sock)
        except OSError:
            # Reset before we got to it: nothing to serve.
            sock.close()
            return
        now = trio.current_time()
        conn = _Inbound(sock, remote, now, self._config.max_frame_size)
        refusal = self._admit_connection(conn)
        if refusal is not None:
            logger.debug("refusing inbound connection from %s: %s", _fmt(remote), refusal)
            self._stats.connections_refused += 1
            sock.close()
            return
        self._inbound_count += 1
        self._inbound_by_ip.setdefault(remote[0], {})[conn] = None
        self._stats.connections_opened += 1
        self._stats.connections_open += 1
        nursery.start_soon(self._serve_inbound, conn, handler)

    def _admit_connection(self, conn: _Inbound) -> str | None:
        """Make room for a new inbound connection; why it must be refused, or None."""
        config = self._config
        ip = conn.peer[0]
        own = len(self._inbound_by_ip.get(ip, ()))
        if own >= config.max_connections_per_ip and ip not in self._per_ip_exempt:
            return "at max_connections_per_ip"
        if self._inbound_count < config.max_inbound_connections:
            return None
        # Full. Refusing the newcomer would let a few hosts that opened
        # connections first lock everyone else out, so take a slot from the
        # host holding the most instead, when it holds clearly more than the
        # newcomer's host would (as go-libp2p's connection manager trims the
        # heaviest peers first).
        heaviest = max(self._inbound_by_ip.values(), key=len)
        if len(heaviest) <= own + 1:
            return "at max_inbound_connections"
        # Its least recently active connection, preferring one with no request in flight.
        victim = min(heaviest, key=lambda c: (c.active > 0, c.last_activity))
        logger.debug("evicting inbound connection from %s for a fairer share", _fmt(victim.peer))
        self._stats.connections_refused += 1
        self._release(victim)
        self._abort(victim)
        return None

    def _release(self, conn: _Inbound) -> None:
        """Stop counting ``conn`` against the inbound limits (once)."""
        if not conn.counted:
            return
        conn.counted = False
        self._inbound_count -= 1
        ip = conn.peer[0]
        same_ip = self._inbound_by_ip.get(ip)
        if same_ip is not None:
            same_ip.pop(conn, None)
            if not same_ip:
                del self._inbound_by_ip[ip]

    def _abort(self, conn: _Inbound) -> None:
        """Stop reading and answering on ``conn`` now; the last user closes the socket."""
        conn.stop()
        conn.hurry_handlers(-math.inf)

    def _done_with(self, conn: _Inbound) -> None:
        """One user (the reader, or a STORE handled apart) is finished with ``conn``."""
        conn.users -= 1
        if conn.users:
            return
        conn.closed = True
        self._release(conn)
        self._stats.connections_open -= 1
        _sockets.close(conn.sock)

    async def _serve_inbound(self, conn: _Inbound, handler: RequestHandler) -> None:
        """Read and dispatch requests until the connection ends, then close it."""
        try:
            clean = False
            try:
                keep_going = await self._pump(conn, handler)
                # Answers already made go out even when reading stops.
                await self._flush(conn)
                clean = keep_going and conn.end == "closed by peer" and not conn.reader.buffered
            except ProtocolError as exc:
                logger.debug("from %s: %s", _fmt(conn.peer), exc)
                # The framing is lost; say why (id 0: we cannot know the id), then close.
                reply = ErrorReply(ErrorCode.TOO_LARGE, "frame too large")
                await self._send_reply(conn, 0, reply)
            if conn.end == "idle":
                logger.debug("closing idle inbound connection from %s", _fmt(conn.peer))
            if not clean:
                # No more reading, but the requests already accepted (at most
                # max_requests_per_connection) get their replies if that is
                # quick: garbage after a valid frame must not lose its answer.
                conn.hurry_handlers(trio.current_time() + self._config.io_timeout)
            # Else the peer finished sending: let running handlers reply.
        finally:
            self._done_with(conn)

    async def _dispatch(self, conn: _Inbound, payload: bytes, handler: RequestHandler) -> bool:
        """Start handling one request frame; False when the connection must close."""
        stats = self._stats
        stats.frames_received += 1
        try:
            frame = decode_frame(payload)
        except ProtocolError as exc:
            stats.protocol_errors += 1
            logger.debug("bad request from %s: %s", _fmt(conn.peer), exc)
            if exc.request_id is None:
                return False
            if not self._within_rate(conn):
                return self._refuse_over_rate(conn, exc.request_id)
            # The id is known, so the peer can match the error; the stream is intact.
            self._queue_reply(conn, exc.request_id, error_reply_for(exc))
            return True
        if not isinstance(frame, RequestFrame):
            stats.protocol_errors += 1
            logger.debug("reply frame from %s on an inbound connection", _fmt(conn.peer))
            return False
        stats.requests_received += 1
        if not self._within_rate(conn):
            return self._refuse_over_rate(conn, frame.request_id)
        if conn.active >= self._config.max_requests_per_connection:
            overloaded = ErrorReply(ErrorCode.OVERLOADED, "too many requests")
            self._queue_reply(conn, frame.request_id, overloaded)
            return True
        if type(frame.body) in _ANSWERED_INLINE:
            # Pings and lookups are pure CPU: answered in the reader task, they
            # cost no task of their own (and pipelined ones stay in order). The
            # handler does not wait, so nobody sees it among conn.active.
            try:
                body: Reply = await handler(frame, conn.peer)
            except Exception:
                body = self._internal_error(conn)
            self._queue_reply(conn, frame.request_id, body)
            return True
        # A STORE may wait on a disk: its own task, so it holds up no one.
        assert self._nursery is not None
        conn.active += 1
        conn.users += 1
        self._nursery.start_soon(self._handle_apart, conn, frame, handler)
        return True

    def _within_rate(self, conn: _Inbound) -> bool:
        """Charge one request to the remote IP's token bucket: True when it is allowed."""
        ip = conn.peer[0]
        # Charged at arrival: every frame of one read arrived at conn.received.
        if ip in self._per_ip_exempt or self._rate_limiter.allow(ip, conn.received):
            conn.refused_in_row = 0
            return True
        conn.refused_in_row += 1
        return False

    def _refuse_over_rate(self, conn: _Inbound, request_id: int) -> bool:
        """Answer OVERLOADED without calling the handler; False once the peer must go."""
        self._stats.requests_refused += 1
        limit = _REFUSALS_BEFORE_CLOSE * self._config.request_burst_per_ip
        if conn.refused_in_row > limit:
            logger.debug("closing %s: it ignores the request rate limit", _fmt(conn.peer))
            return False
        self._queue_reply(conn, request_id, ErrorReply(ErrorCode.OVERLOADED, "rate limited"))
        return True

    async def _handle_apart(
        self, conn: _Inbound, frame: RequestFrame, handler: RequestHandler
    ) -> None:
        """Handle one request in a task of its own, cut short if the connection goes bad."""
        scope = trio.CancelScope(deadline=conn.handler_deadline)
        conn.handlers.add(scope)
        try:
            with scope:
                try:
                    body: Reply = await handler(frame, conn.peer)
                except Exception:
                    body = self._internal_error(conn)
                await self._send_reply(conn, frame.request_id, body)
        finally:
            conn.active -= 1
            conn.handlers.discard(scope)
            self._done_with(conn)

    def _internal_error(self, conn: _Inbound) -> ErrorReply:
        """The reply when the handler raised: never a traceback on the wire, only in our log."""
        logger.debug("handler failed for a request from %s", _fmt(conn.peer), exc_info=True)
        return ErrorReply(ErrorCode.INTERNAL, "internal error")

    def _reply_bytes(self, request_id: int, body: Reply) -> bytes:
        try:
            return encode_reply(request_id, self._local_id, body)
        except ValueError:
            logger.debug("handler returned an unencodable reply: %r", body, exc_info=True)
            internal = ErrorReply(ErrorCode.INTERNAL, "internal error")
            return encode_reply(request_id, self._local_id, internal)

    def _queue_reply(self, conn: _Inbound, request_id: int, body: Reply) -> None:
        """Queue a reply made in the reader task, to be written with the others.

        The reader writes its replies together before it reads again, so a burst
        of pipelined requests (or of refused ones) costs one write, not one each.
        """
        conn.outbox.append(self._reply_bytes(request_id, body))

    async def _send_reply(self, conn: _Inbound, request_id: int, body: Reply) -> None:
        """Write one reply now (after any waiting in the outbox)."""
        self._queue_reply(conn, request_id, body)
        await self._flush(conn)

    async def _flush(self, conn: _Inbound) -> None:
        """Write the outbox in one piece; a failed write closes the connection."""
        frames = len(conn.outbox)
        if not frames:
            return
        data = conn.outbox[0] if frames == 1 else b"".join(conn.outbox)
        conn.outbox.clear()
        if await self._send(conn, data) is None:
            self._stats.frames_sent += frames
            self._stats.bytes_sent += len(data)
            conn.last_activity = trio.current_time()
