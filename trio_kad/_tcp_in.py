"""The inbound half of the TCP transport: accepting connections within the limits (Trio).

Accepted connections are bounded in total (``Config.max_inbound_connections``)
and per remote IP (``max_connections_per_ip``). When full, a newcomer takes
the slot of the host holding the most connections, if it holds clearly more,
so a few hosts that came first cannot lock everyone else out.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable

import trio
from trio.lowlevel import wait_readable

from . import _sockets
from ._address import format_address, ip_group
from ._config import Config
from ._ids import Address
from ._limits import Admission
from ._rpc import TransportStatistics
from ._tcp_conn import Connection

logger = logging.getLogger("trio_kad.transport")

_ACCEPT_BACKOFF = 0.1
# Connections taken per wake-up of a listener: a storm of connects is drained
# in batches, yet one listener cannot hold the scheduler forever.
_ACCEPT_BATCH = 64


class Acceptor:
    """Accepts connections and keeps count of them, per IP and in all.

    ``open_connection(remote, sock)`` is the transport's: it wraps an admitted
    socket in a ``Connection``. Its first request is usually there already:
    it is read at once, and the connection then parked with the watcher.
    """

    def __init__(
        self,
        config: Config,
        admission: Admission,
        stats: TransportStatistics,
        open_connection: Callable[[Address, socket.socket], Connection],
    ) -> None:
        self._config = config
        self._admission = admission
        self._stats = stats
        self._open_connection = open_connection
        self.count = 0
        # Open accepted connections by remote IP; each inner dict is in accept order.
        self._by_ip: dict[str, dict[Connection, None]] = {}

    async def accept_loop(self, listener: socket.socket) -> None:
        """Accept forever; errors about one connection or a passing shortage do not stop it."""
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
                    # As trio.serve_listeners: the node is out of descriptors or
                    # memory, which its operator must hear about; it pauses, then goes on.
                    logger.error(
                        "accept returned %s (%s); retrying in %s seconds",
                        errno.errorcode.get(exc.errno or 0, exc.errno),
                        exc.strerror,
                        _ACCEPT_BACKOFF,
                    )
                    await trio.sleep(_ACCEPT_BACKOFF)
                    break
                conn = self._accepted(sock, (str(peer[0]), int(peer[1])))
                if conn is not None:
                    await conn.start_reading()

    def close_all(self, reason: str) -> None:
        for same_ip in list(self._by_ip.values()):
            for conn in list(same_ip):
                conn.abort(reason)

    def _accepted(self, sock: socket.socket, remote: Address) -> Connection | None:
        try:
            _sockets.prepare(sock)
        except OSError:
            # Reset before we got to it: nothing to serve.
            sock.close()
            return None
        refusal = self._make_room(remote[0])
        if refusal is not None:
            logger.debug("refusing connection from %s: %s", format_address(remote), refusal)
            self._stats.connections_refused += 1
            sock.close()
            return None
        conn = self._open_connection(remote, sock)
        self.count += 1
        self._by_ip.setdefault(ip_group(remote[0]), {})[conn] = None
        return conn

    def _make_room(self, host: str) -> str | None:
        """Make room for a connection from ``host``; why it must be refused, or None."""
        config = self._config
        own = len(self._by_ip.get(ip_group(host), ()))  # an IPv6 /64 counts as one IP
        if own >= config.max_connections_per_ip and not self._admission.exempt(host):
            return "at max_connections_per_ip"
        if self.count < config.max_inbound_connections:
            return None
        # Full: take a slot from the host holding the most, when it holds clearly
        # more than the newcomer's host would (as go-libp2p's connection manager
        # trims the heaviest peers first).
        heaviest = max(self._by_ip.values(), key=len)
        if len(heaviest) <= own + 1:
            return "at max_inbound_connections"
        # Its least recently active connection, preferring one with nothing in flight.
        victim = min(heaviest, key=lambda c: (not c.idle(), c.last_activity))
        logger.debug("evicting %r for a fairer share", victim)
        self._stats.connections_refused += 1
        self.release(victim)
        victim.abort("evicted for a fairer share")
        return None

    def release(self, conn: Connection) -> None:
        """Stop counting ``conn`` against the inbound limits (once)."""
        if not conn.counted:
            return
        conn.counted = False
        self.count -= 1
        ip = ip_group(conn.remote[0])
        same_ip = self._by_ip.get(ip)
        if same_ip is not None:
            same_ip.pop(conn, None)
            if not same_ip:
                del self._by_ip[ip]
