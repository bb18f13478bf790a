"""The RPC endpoint: one connection's protocol state, containing no networking code.

Modelled on h11's ``Connection``: a transport feeds it the bytes it read
(``receive_data``), takes typed events out (``next_event``), and writes the
bytes it is given (``send_request``'s frame, then ``data_to_send()`` after
answering). Request ids, the table of requests waiting for a reply, matching
a reply to its request, refusals over a limit, error replies and the choice
of answering a request at once or apart all live here, once, so the TCP
transport and the in-memory one behave alike and the protocol is tested by
wiring two endpoints together, without sockets.

A connection is between two peers, not two roles: either side may send
requests on it (docs/protocol.md, "Connections"). Request ids are chosen by
each side for its own requests, so a reply is matched within its connection,
that is, by id and by the peer it was sent to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from ._codec import FrameReader, UnsupportedFrameError, decode_frame, encode_frame, encode_reply
from ._config import Config
from ._contacts import ContactCache
from ._errors import ProtocolError, TransportError
from ._ids import Address
from ._limits import Admission
from ._messages import (
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    Listen,
    Ping,
    Push,
    Reply,
    ReplyFrame,
    Request,
    RequestFrame,
)

W = TypeVar("W")
"""Whatever a transport keeps for a caller waiting on a reply (an event, a future...)."""

ANSWERED_INLINE = frozenset({Ping, FindNode, FindValue, Listen, Push})
"""Requests answered before the next frame is read: the node only reads memory for them.

(LISTEN and PUSH too: the one notes a listener, the other hands a pair to a watch.)

The rest (STOREs, which may wait on a disk) are handled apart, at most
``Config.max_requests_per_connection`` at once per connection.
"""

# A peer refused this many times request_burst_per_ip in a row is not slowing
# down: it ignores OVERLOADED, so answering it any further is wasted work.
_REFUSALS_BEFORE_CLOSE = 4

_TOO_LARGE = ErrorReply(ErrorCode.TOO_LARGE, "frame too large")
_INTERNAL = ErrorReply(ErrorCode.INTERNAL, "internal error")
_BUSY = ErrorReply(ErrorCode.OVERLOADED, "too many requests")
_RATE_LIMITED = ErrorReply(ErrorCode.OVERLOADED, "rate limited")
_NOT_SERVING = ErrorReply(ErrorCode.UNSUPPORTED, "this node answers no requests")


@dataclass(slots=True)
class TransportStatistics:
    """Counters a transport keeps, for tests, benchmarks and ``Dht.statistics()``."""

    requests_sent: int = 0
    requests_failed: int = 0
    requests_received: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    connections_opened: int = 0
    connections_open: int = 0
    protocol_errors: int = 0
    connections_refused: int = 0
    """Inbound connections closed at accept (a total or per-IP limit) or evicted to make room."""
    requests_refused: int = 0
    """Inbound requests answered OVERLOADED because their IP was over its rate."""
    requests_pending: int = 0
    """Our requests waiting for a reply right now."""


# --- events --------------------------------------------------------------------


# Events are slotted but not frozen: a frozen dataclass's __init__ goes through
# object.__setattr__ per field, and one event is made for every request.
@dataclass(slots=True)
class PeerNamed:
    """The peer's first request said who it is: its node id and listening port.

    ``port`` is ``None`` for a client-only peer. Comes once per connection,
    just before that request's ``RequestReceived``.
    """

    node_id: bytes
    port: int | None
    duplex: bool
    """The peer reads requests on this connection: ours may go over it too."""


@dataclass(slots=True)
class RequestReceived:
    """A request to answer with ``Endpoint.send_reply``.

    ``inline``: answer it before taking the next event (it only reads memory);
    otherwise answer it apart (a task of its own) and the endpoint counts it
    as in flight until its reply is sent or ``abandon`` is called.
    """

    frame: RequestFrame
    inline: bool


@dataclass(slots=True)
class ReplyReceived(Generic[W]):
    """The reply to one of our requests, with what ``send_request`` was given for it."""

    frame: ReplyFrame
    waiter: W


@dataclass(slots=True)
class MustClose:
    """The connection must close, after writing ``data_to_send()``.

    ``misbehaved``: the peer broke the protocol (its replies cannot be
    trusted); callers still waiting should hear that, not a plain failure.
    """

    reason: str
    misbehaved: bool


Event = PeerNamed | RequestReceived | ReplyReceived[W] | MustClose


def error_reply_for(exc: ProtocolError) -> ErrorReply:
    """The short, generic error reply to a request that failed to decode."""
    if isinstance(exc, UnsupportedFrameError):
        return ErrorReply(ErrorCode.UNSUPPORTED, "unsupported version or message type")
    return ErrorReply(ErrorCode.MALFORMED, "malformed request")


class Endpoint(Generic[W]):
    """One end of one connection: bytes in, events out; requests and replies in, bytes out.

    ``remote`` is the address the bytes come from (for a connection we
    accepted, the peer's ephemeral port); ``dialed``: we opened the
    connection, so our first request says we read requests on it too.
    ``stats`` and ``contacts`` (the transport's one ``ContactCache``) are
    shared with the rest of the transport. Time comes in as
    ``now`` with the received bytes.
    """

    __slots__ = (
        "_admission",
        "_announce",
        "_contacts",
        "_held",
        "_last_id",
        "_local_id",
        "_max_apart",
        "_max_frame_size",
        "_outbox",
        "_rate_key",
        "_reader",
        "_refused_in_row",
        "_stats",
        "apart",
        "closed",
        "frame_started",
        "peer",
        "pending",
        "received",
        "remote",
    )

    def __init__(
        self,
        local_id: bytes,
        remote: Address,
        config: Config,
        admission: Admission,
        stats: TransportStatistics,
        now: float,
        *,
        dialed: bool,
        contacts: ContactCache | None = None,
    ) -> None:
        self._local_id = local_id
        self._contacts = contacts
        self._announce = dialed
        self.remote = remote
        self._admission = admission
        self._rate_key = admission.rate_key(remote[0])  # one remote a connection
        self._stats = stats
        self._max_frame_size = config.max_frame_size
        self._max_apart = config.max_requests_per_connection
        self._reader = FrameReader(config.max_frame_size)
        self._outbox: list[bytes] = []
        self._last_id = 0  # our requests are numbered 1, 2, ... on this connection
        self._refused_in_row = 0
        self._held: RequestReceived | None = None
        self.pending: dict[int, W] = {}
        """Our requests waiting for their reply, by request id."""
        self.apart = 0
        """Requests received and being answered apart (not inline)."""
        self.peer: PeerNamed | None = None
        """Who the peer said it is, once it sent a valid request."""
        self.closed: MustClose | None = None
        """Why the connection must close, once it must."""
        self.received = now
        """When bytes last arrived."""
        self.frame_started = now
        """When the frame still incomplete began to arrive (see ``buffered``)."""

    # --- receiving -------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Take bytes read from the connection at ``now``; then call ``next_event``."""
        self._stats.bytes_received += len(data)
        self.received = now
        if not self._reader.buffered:
            self.frame_started = now
        self._reader.feed(data)

    @property
    def buffered(self) -> int:
        """Bytes of a frame begun but not complete (its deadline runs from ``frame_started``)."""
        return self._reader.buffered

    def next_event(self) -> PeerNamed | RequestReceived | ReplyReceived[W] | MustClose | None:
        """The next thing that happened on the connection, or None until more bytes come.

        After a ``MustClose`` there are no more events.
        """
        held = self._held
        if held is not None:
            self._held = None
            return held
        stats = self._stats
        while self.closed is None:
            try:
                payload = self._reader.next_payload()
            except ProtocolError:
                # The framing is lost: say why (id 0, the id is unknown), then close.
                stats.protocol_errors += 1
                self._queue(0, _TOO_LARGE)
                return self._close("frame too large", misbehaved=True)
            if payload is None:
                return None
            # Whatever is still buffered is a frame that began in the last read.
            self.frame_started = self.received
            stats.frames_received += 1
            try:
                frame = decode_frame(payload, self._contacts)
            except ProtocolError as exc:
                stats.protocol_errors += 1
                request_id = exc.request_id
                if request_id is None:
                    return self._close(f"undecodable frame: {exc}", misbehaved=True)
                if request_id in self.pending:
                    # Garbage where our reply should be: nothing the peer says is sure.
                    return self._close(f"undecodable reply: {exc}", misbehaved=True)
                # A bad request whose id is known: answer it, the stream is intact.
                if not self._within_rate():
                    if self._refuse(request_id):
                        continue
                    return self.closed
                self._queue(request_id, error_reply_for(exc))
                continue
            if type(frame) is ReplyFrame:
                if frame.request_id in self.pending:
                    return ReplyReceived(frame, self.pending.pop(frame.request_id))
                if 0 < frame.request_id <= self._last_id:
                    continue  # the caller gave up before the reply came
                if frame.request_id == 0 and self._last_id:
                    # Id 0: the peer could not read a frame of ours and is closing.
                    return self._close("the peer lost the framing", misbehaved=False)
                return self._close("reply to a request never sent", misbehaved=True)
            assert type(frame) is RequestFrame
            stats.requests_received += 1
            if not self._within_rate():
                if self._refuse(frame.request_id):
                    continue
                return self.closed
            if type(frame.body) in ANSWERED_INLINE:
                event = RequestReceived(frame, True)
            elif self.apart < self._max_apart and self._admission.begin_apart():
                self.apart += 1
                event = RequestReceived(frame, False)
            else:
                self._queue(frame.request_id, _BUSY)
                continue
            if self.peer is None:
                # Said once per connection, before the request that said it.
                self.peer = PeerNamed(frame.sender_id, frame.sender_port, frame.duplex)
                self._held = event
                return self.peer
            return event
        return None

    def _within_rate(self) -> bool:
        # Charged at arrival: every frame of one read arrived at self.received.
        if self._admission.allow(self._rate_key, self.received):
            self._refused_in_row = 0
            return True
        self._refused_in_row += 1
        return False

    def _refuse(self, request_id: int) -> bool:
        """Answer OVERLOADED; False (and closed) once the peer ignores it for too long."""
        self._stats.requests_refused += 1
        if self._refused_in_row > _REFUSALS_BEFORE_CLOSE * self._admission.burst:
            self._close("ignores the request rate limit", misbehaved=False)
            return False
        self._queue(request_id, _RATE_LIMITED)
        return True

    def _close(self, reason: str, *, misbehaved: bool) -> MustClose:
        self.closed = MustClose(reason, misbehaved)
        return self.closed

    # --- sending ---------------------------------------------------------------

    def send_request(
        self, sender_id: bytes, sender_port: int | None, body: Request, waiter: W
    ) -> tuple[int, bytes]:
        """Number a request and encode it; ``waiter`` comes back with its reply.

        Returns the request id and the bytes to write. Raises ``TransportError``
        when the request is over ``max_frame_size`` (nothing is registered then).
        """
        request_id = self._last_id + 1
        # The first request on a connection we opened says we read requests on it too.
        duplex = self._announce and request_id == 1
        data = encode_frame(RequestFrame(request_id, sender_id, sender_port, body, duplex))
        if len(data) - 4 > self._max_frame_size:
            raise TransportError(
                f"request of {len(data)} bytes exceeds max_frame_size ({self._max_frame_size})"
            )
        self._last_id = request_id
        self.pending[request_id] = waiter
        stats = self._stats
        stats.frames_sent += 1
        stats.bytes_sent += len(data)
        return request_id, data

    def forget(self, request_id: int) -> None:
        """The caller of ``request_id`` gave up: a late reply is dropped quietly."""
        self.pending.pop(request_id, None)

    def fail_pending(self) -> list[W]:
        """Every waiter still pending, removed (the connection is closing)."""
        waiters = list(self.pending.values())
        self.pending.clear()
        return waiters

    def send_reply(self, request: RequestReceived, body: Reply) -> None:
        """Queue the reply to ``request`` (``data_to_send`` returns it)."""
        if not request.inline:
            self.apart -= 1
            self._admission.end_apart()
        self._queue(request.frame.request_id, body)

    def send_internal_error(self, request: RequestReceived) -> None:
        """Queue the reply to a request whose handler failed: never a traceback on the wire."""
        self.send_reply(request, _INTERNAL)

    def send_not_serving(self, request: RequestReceived) -> None:
        """Queue the reply of a node that answers no requests (a client-only one)."""
        self.send_reply(request, _NOT_SERVING)

    def abandon(self, request: RequestReceived) -> None:
        """A request handled apart will get no reply (its handler was cancelled)."""
        if not request.inline:
            self.apart -= 1
            self._admission.end_apart()

    def _queue(self, request_id: int, body: Reply) -> None:
        try:
            data = encode_reply(request_id, self._local_id, body, self._contacts)
        except ValueError:
            # A handler's reply that breaks a wire rule is our bug; the peer gets INTERNAL.
            data = encode_reply(request_id, self._local_id, _INTERNAL)
        self._outbox.append(data)

    @property
    def has_data_to_send(self) -> bool:
        """Whether replies are queued."""
        return bool(self._outbox)

    def data_to_send(self) -> bytes:
        """The queued replies as one write (b"" if none), counted as sent."""
        outbox = self._outbox
        count = len(outbox)
        if not count:
            return b""
        data = outbox[0] if count == 1 else b"".join(outbox)
        outbox.clear()
        stats = self._stats
        stats.frames_sent += count
        stats.bytes_sent += len(data)
        return data
