"""A small, bounded HTTP/1.1 server for the status page and metrics (h11 on Trio).

Each connection carries one request: the response says ``Connection: close``.
A client is bounded as a peer is: the request head has a size limit, the
whole exchange a deadline, and connections beyond a cap or a request rate
are closed on accept.
Only ``GET`` of the paths given is answered; other paths get 404, other
methods 405, a malformed request the status h11 suggests (400, 431).
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import h11
import trio

from ._ids import Address
from ._limits import TokenBucket

__all__ = ["Page", "StatusLimits", "serve_http"]

log = logging.getLogger("trio_kad.status")

Page = Callable[[], tuple[str, bytes]]
"""Renders one path: its content type and body, made at request time."""

_READ_SIZE = 4096
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_RESOURCE_WAIT = 0.1


@dataclass(frozen=True, slots=True)
class StatusLimits:
    """How much one HTTP client may take of the status server."""

    max_connections: int = 16
    """Connections served at once; more are closed on accept."""
    deadline: float = 10.0
    """Seconds one connection may take, reading the request and writing the response."""
    max_head_bytes: int = 8192
    """Largest request line and headers together."""
    rate: float = 20.0
    """Requests per second served on average, all clients together; more are closed on
    accept. A Prometheus scrape every few seconds and a page refreshing itself stay far
    below; a client scraping in a loop costs the node an accept and a close per request."""
    burst: int = 40
    """Requests served at once before ``rate`` applies."""


async def serve_http(
    host: str,
    port: int,
    pages: Mapping[str, Page],
    limits: StatusLimits = StatusLimits(),
    *,
    task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``pages`` on ``host:port`` until cancelled; reports the bound address.

    Raises ``OSError`` when the address cannot be bound.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    open_now = 0
    bucket = TokenBucket(limits.rate, limits.burst, trio.current_time())

    def admit() -> bool:
        return open_now < limits.max_connections and bucket.take(trio.current_time())

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal open_now
        open_now += 1
        try:
            with trio.move_on_after(limits.deadline):
                await _exchange(stream, pages, limits.max_head_bytes)
        finally:
            open_now -= 1
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept, listener, admit, handle, nursery)
        task_status.started((bound[0], bound[1]))


async def _accept(
    listener: trio.SocketListener,
    admit: Callable[[], bool],
    handle: Callable[[trio.SocketStream], Awaitable[None]],
    nursery: trio.Nursery,
) -> None:
    """Accept connections until cancelled: each admitted gets a task, others are closed at once.

    A refused connection costs no task: a client connecting in a loop gets
    little of the node's time.
    """
    async with listener:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                # As trio.serve_listeners: out of descriptors or buffers, wait and retry.
                log.warning("status server: %s; accepting again in a moment", exc)
                await trio.sleep(_RESOURCE_WAIT)
                continue
            if admit():
                nursery.start_soon(handle, stream)
            else:
                stream.socket.close()


async def _exchange(stream: trio.SocketStream, pages: Mapping[str, Page], max_head: int) -> None:
    """Read one request from ``stream`` and write its response."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    try:
        event = await _next_request(stream, conn, max_head)
        if event is None:
            return
        status, content_type, body = respond(event, pages)
    except h11.RemoteProtocolError as exc:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status, content_type, body = exc.error_status_hint, "text/plain", b"bad request\n"
    except trio.BrokenResourceError:
        return
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        # The page is self-contained: nothing to load, no script to run.
        ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ]
    if status == 405:
        headers.append(("Allow", "GET"))
    reason = HTTPStatus(status).phrase.encode()
    data = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


async def _next_request(
    stream: trio.SocketStream, conn: h11.Connection, max_head: int
) -> h11.Request | None:
    received = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(_READ_SIZE)
            # h11 bounds a head still incomplete; one that arrives whole is bounded here.
            received += len(data)
            if received > max_head:
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            return event
        else:  # ConnectionClosed: the client left before asking
            return None


def respond(request: h11.Request, pages: Mapping[str, Page]) -> tuple[int, str, bytes]:
    """The status, content type and body answering ``request``."""
    path = request.target.split(b"?", 1)[0].decode("ascii", "replace")
    page = pages.get(path)
    if page is None:
        return 404, "text/plain; charset=utf-8", b"not found\n"
    if request.method != b"GET":
        return 405, "text/plain; charset=utf-8", b"method not allowed\n"
    try:
        content_type, body = page()
    except Exception:
        # A bug in a renderer must not take the node down; it is logged, once per request.
        log.exception("status page %s failed", path)
        return 500, "text/plain; charset=utf-8", b"internal error\n"
    return 200, content_type, body
