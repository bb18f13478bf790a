"""The outbound half of the TCP transport: finding or dialing the connection to a peer (Trio).

Each peer address has at most one connection in the pool, shared by every
RPC to that peer and multiplexed by request id, so a lookup's many small
RPCs (paper section 2.3) do not pay a TCP handshake each. The connection
may be one we dialed or one the peer dialed to us and named itself on
(``adopt``): either way requests go both ways over it, and a pair of peers
that talk in both directions holds one connection, not two.

Dialed connections count against ``Config.max_outbound_connections`` and
the process-wide descriptor budget; the least recently used idle one is
closed to make room. When every one is busy, a few more may be opened, up
to twice ``max_outbound_connections``; past that a caller waits (within its
own deadline) for one to finish.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import trio

from . import _sockets
from ._address import format_address
from ._config import Config
from ._errors import TransportError
from ._ids import Address
from ._tcp_conn import Connection

logger = logging.getLogger("trio_kad.transport")


class _Connect:
    """A connect in progress, shared by every caller that wants the same address."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: str | None = None


class Dialer:
    """The pool of connections by peer address, and the dialing of new ones.

    ``open_connection(address, sock)`` is the transport's: it wraps a freshly
    connected socket in a ``Connection``; the caller then reads its own reply.
    """

    def __init__(
        self, config: Config, open_connection: Callable[[Address, socket.socket], Connection]
    ) -> None:
        self._config = config
        self._open_connection = open_connection
        # Every usable connection by peer address (dialed, or adopted once named).
        self.by_address: dict[Address, Connection] = {}
        # The connections we dialed, least recently used first.
        self.dialed: dict[Connection, None] = {}
        self._connecting: dict[Address, _Connect] = {}
        # Where the node listens (None: client-only): connections leave from it.
        self.listen_host: str | None = None
        # Set when a dialed connection finishes its requests or closes, for the
        # callers waiting at the hard cap (made only while one waits).
        self._freed: trio.Event | None = None
        _sockets.PROCESS_BUDGET.configure(config.descriptor_share)

    async def connection(self, address: Address) -> Connection:
        """The open connection to ``address``, dialing (once, shared) if there is none.

        Dialing runs in the caller's task and cancel scope: the RPC timeout
        covers connecting.
        """
        while True:
            conn = self.by_address.get(address)
            if conn is not None and not conn.closed:
                return conn
            attempt = self._connecting.get(address)
            if attempt is None:
                break
            await attempt.done.wait()
            if attempt.error is not None:
                raise TransportError(attempt.error)
            # Connected (take it) or the dialing caller was cancelled (try again).

        attempt = _Connect()
        self._connecting[address] = attempt
        try:
            await self._make_room()
            try:
                sock = await _sockets.connect(address[0], address[1], listen_host=self.listen_host)
            except OSError as exc:
                attempt.error = f"cannot connect to {format_address(address)}: {exc}"
                raise TransportError(attempt.error) from exc
            conn = self._open_connection(address, sock)
            self.by_address[address] = conn
            self.dialed[conn] = None
            _sockets.PROCESS_BUDGET.add(conn)
            return conn
        finally:
            del self._connecting[address]
            attempt.done.set()

    def adopt(self, conn: Connection, address: Address) -> None:
        """A peer that dialed us named its listening ``address``: reach it over ``conn`` too.

        A connection the pool already holds for that address is kept: the
        peer only said where it listens, and a connection we dialed there is
        known to reach it.
        """
        held = self.by_address.get(address)
        if held is None or held.closed:
            self.by_address[address] = conn

    def touched(self, conn: Connection) -> None:
        """``conn`` carried a request: it becomes the most recently used."""
        if conn.dialed:
            dialed = self.dialed
            if conn in dialed:
                del dialed[conn]
                dialed[conn] = None
            _sockets.PROCESS_BUDGET.touch(conn)

    def forget(self, conn: Connection) -> None:
        """``conn`` closed: drop it from the pool."""
        for address in (conn.remote, _named_address(conn)):
            if address is not None and self.by_address.get(address) is conn:
                del self.by_address[address]
        if conn.dialed:
            self.dialed.pop(conn, None)
            _sockets.PROCESS_BUDGET.discard(conn)
            self.freed()

    def freed(self) -> None:
        """A dialed connection finished its requests or closed: wake who waits for one."""
        if self._freed is not None:
            self._freed.set()
            self._freed = None

    def close_all(self, reason: str) -> None:
        for conn in list(self.dialed):
            conn.abort(reason)

    async def _make_room(self) -> None:
        """Close the least recently used idle connection when at max_outbound_connections.

        With every one busy, open one more, up to twice the limit; past that,
        wait for one to finish (the caller's deadline bounds the wait).
        """
        _sockets.PROCESS_BUDGET.make_room()
        limit = self._config.max_outbound_connections
        while len(self.dialed) >= limit:
            for conn in self.dialed:
                if conn.idle():
                    conn.abort("over max_outbound_connections")
                    return
            if len(self.dialed) < 2 * limit:
                logger.debug("all %d outbound connections are busy; opening one more", limit)
                return
            if self._freed is None:
                self._freed = trio.Event()
            await self._freed.wait()


def _named_address(conn: Connection) -> Address | None:
    """The listening address the peer named on ``conn`` (None: not named, or client-only)."""
    peer = conn.endpoint.peer
    if peer is None or peer.port is None:
        return None
    return (conn.remote[0], peer.port)
