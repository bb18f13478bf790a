"""The TCP transport: length-prefixed CBOR frames over pooled connections used both ways (Trio).

A thin join of the two halves: ``_tcp_out.Dialer`` finds or dials the
connection to a peer, ``_tcp_in.Acceptor`` accepts connections within the
inbound limits, and every connection, whoever dialed it, is a
``_tcp_conn.Connection`` driving an ``_rpc.Endpoint``. A connection has no
task: the caller waiting for a reply reads it, and while none does, the
transport's one ``_tcp_idle.Watcher`` does.

Limits, all from ``Config``: frame size (from the length prefix), read/write
deadlines, idle timeout, total inbound connections and connections per
remote IP, requests in flight per connection, a per-IP request rate, and the
connections we dial (per node and per process).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import trio

from . import _sockets
from ._config import Config
from ._contacts import ContactCache
from ._errors import TransportError
from ._ids import ID_BYTES, Address
from ._limits import Admission
from ._messages import ReplyFrame, Request
from ._rpc import Endpoint, PeerNamed, TransportStatistics
from ._tcp_call import Waiter, call
from ._tcp_conn import Connection
from ._tcp_idle import Watcher
from ._tcp_in import Acceptor
from ._tcp_out import Dialer
from ._transport import RequestHandler, Transport


class TcpTransport(Transport):
    """Kademlia frames over TCP, with connection reuse, deadlines and limits from ``Config``."""

    def __init__(self) -> None:
        super().__init__()
        self.config = Config()
        self._local_id = bytes(ID_BYTES)
        self._nursery: trio.Nursery | None = None
        self._handler: RequestHandler | None = None
        self._configure(self.config)

    def _configure(self, config: Config) -> None:
        """The state that follows from ``config``: limits, the contact cache, the halves."""
        self.config = config
        self._admission = Admission(config)
        self._contacts = ContactCache(config.contact_cache_size)
        self._dialer = Dialer(config, self._open_dialed)
        self._acceptor = Acceptor(config, self._admission, self._stats, self._open_accepted)
        self._watcher = Watcher(config)

    @property
    def handler(self) -> RequestHandler | None:
        """The node's request handler (a client-only node's ``push_handler``, or None)."""
        return self._handler if self._handler is not None else self.push_handler

    @property
    def stats(self) -> TransportStatistics:
        """The live counters (``statistics()`` gives a snapshot)."""
        return self._stats

    def statistics(self) -> TransportStatistics:
        """A snapshot of the counters, with the requests waiting for a reply now."""
        snapshot = super().statistics()
        snapshot.requests_pending = sum(
            len(conn.endpoint.pending) for conn in set(self._dialer.by_address.values())
        )
        return snapshot

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
        self._configure(config)
        # Peers record us at our connections' source IP: dial from where we listen.
        self._dialer.listen_host = host if handler is not None else None
        self._local_id = node_id
        self._handler = handler
        listeners: list[socket.socket] = []
        try:
            if handler is not None:
                listeners = await _sockets.listen(host, port)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._watcher.run)
                if handler is None:
                    task_status.started(None)
                else:
                    for listener in listeners:
                        nursery.start_soon(self._acceptor.accept_loop, listener)
                    bound_port: int = listeners[0].getsockname()[1]
                    task_status.started((host, bound_port))
                # Connections come and go as tasks of this nursery; it stays open for them.
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._dialer.close_all("transport stopped")
            self._acceptor.close_all("transport stopped")
            self._watcher.close()
            for listener in listeners:
                _sockets.close(listener)

    # --- requests ------------------------------------------------------------

    async def _request(
        self,
        address: Address,
        sender_id: bytes,
        sender_port: int | None,
        body: Request,
    ) -> ReplyFrame:
        if self._nursery is None:
            raise TransportError("transport is not running")
        conn = await self._dialer.connection(address)
        return await call(conn, sender_id, sender_port, body)

    # --- connections (the Owner interface of _tcp_conn) -----------------------

    def _open(self, remote: Address, sock: socket.socket, *, dialed: bool) -> Connection:
        nursery = self._nursery
        if nursery is None:
            sock.close()
            raise TransportError("transport is not running")
        now = trio.current_time()
        endpoint: Endpoint[Waiter] = Endpoint(
            self._local_id,
            remote,
            self.config,
            self._admission,
            self._stats,
            now,
            dialed=dialed,
            contacts=self._contacts,
        )
        conn = Connection(self, sock, remote, endpoint, dialed=dialed, now=now)
        self._stats.connections_opened += 1
        self._stats.connections_open += 1
        return conn

    def _open_dialed(self, address: Address, sock: socket.socket) -> Connection:
        return self._open(address, sock, dialed=True)

    def _open_accepted(self, remote: Address, sock: socket.socket) -> Connection:
        return self._open(remote, sock, dialed=False)

    def spawn(self, conn: Connection, job: Callable[[], Awaitable[None]]) -> None:
        nursery = self._nursery
        try:
            if nursery is None:
                raise RuntimeError("transport stopped")
            nursery.start_soon(job)
        except RuntimeError:
            # The transport is stopping (its nursery takes no new tasks).
            conn.done_with()
            conn.abort("transport stopped")

    def park(self, conn: Connection) -> None:
        self._watcher.park(conn)

    def unpark(self, conn: Connection) -> None:
        self._watcher.unpark(conn)

    def drained(self, conn: Connection) -> None:
        self._watcher.resume(conn)

    def named(self, conn: Connection, peer: PeerNamed) -> None:
        if peer.duplex and peer.port is not None and not conn.dialed:
            self._dialer.adopt(conn, (conn.remote[0], peer.port))
        elif peer.duplex and not conn.dialed:
            # A client-only peer: reachable over this connection only (pushes of a watch).
            self._dialer.adopt(conn, conn.remote)

    def holds_connection(self, address: Address) -> bool:
        conn = self._dialer.by_address.get(address)
        return conn is not None and not conn.closed

    def touched(self, conn: Connection) -> None:
        self._dialer.touched(conn)

    def released(self, conn: Connection) -> None:
        if conn.dialed:
            self._dialer.freed()

    def gone(self, conn: Connection) -> None:
        self._stats.connections_open -= 1
        self._watcher.forget(conn)
        self._dialer.forget(conn)
        self._acceptor.release(conn)
