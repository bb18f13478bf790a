"""The interface between a node and the network that carries its frames."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Awaitable, Callable

import trio

from ._config import Config
from ._ids import Address
from ._messages import Reply, ReplyFrame, Request, RequestFrame
from ._rpc import TransportStatistics

__all__ = ["RequestHandler", "Transport", "TransportStatistics"]

RequestHandler = Callable[[RequestFrame, Address], Awaitable[Reply]]
"""Serves one request. Gets the frame and the remote (host, port) it came from.

PING, FIND_NODE and FIND_VALUE must be answered without blocking (the node's
handler only reads memory for them): transports answer them in whichever task
reads the connection (``_rpc.ANSWERED_INLINE``), for TCP often one that reads
many connections. STOREs, which may wait on
a disk, get a task each.
"""


class Transport(abc.ABC):
    """Carries request and reply frames between nodes.

    One transport serves one node. The node starts it with
    ``await nursery.start(transport.run, config, node_id, host, port, handler)``; every
    connection and task the transport owns lives inside ``run``, and
    cancelling ``run`` closes them all. ``request`` may be called only while
    ``run`` is active.
    """

    def __init__(self) -> None:
        self._stats = TransportStatistics()
        self.push_handler: RequestHandler | None = None
        """Serves the requests a client-only node (``run`` without a handler) receives on the
        connections it opened: the pushes of the keys it watches. ``None``: refuse them all."""

    @abc.abstractmethod
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
        """Bind and serve until cancelled; ``node_id`` goes into every reply sent.

        Reports the bound ``(host, port)`` through ``task_status.started``, or
        ``None`` when ``handler`` is ``None`` (a client-only node that does not
        listen).
        """

    async def request(
        self,
        address: Address,
        sender_id: bytes,
        sender_port: int | None,
        body: Request,
    ) -> ReplyFrame:
        """Send one request to ``address`` and wait for its reply.

        Raises ``TransportError`` when the peer cannot be reached or the
        connection fails before the reply arrives (``PeerMisbehaved`` when the
        peer answered with garbage). Has no timeout of its own beyond the
        transport's I/O deadlines: the caller bounds the wait with a cancel scope.
        """
        self._stats.requests_sent += 1
        try:
            return await self._request(address, sender_id, sender_port, body)
        except BaseException:
            # Cancellation counts too: for the node an RPC that timed out failed.
            self._stats.requests_failed += 1
            raise

    @abc.abstractmethod
    async def _request(
        self,
        address: Address,
        sender_id: bytes,
        sender_port: int | None,
        body: Request,
    ) -> ReplyFrame:
        """``request`` without the counting: what each transport implements."""

    def holds_connection(self, address: Address) -> bool:
        """Would a request to ``address`` go over a connection open now, without dialing?

        Pushes to a client-only watcher go only over the connection it opened
        (at its ephemeral address): never dialed. Transports that cannot say
        answer False, and client-only nodes then poll instead of listening.
        """
        return False

    def statistics(self) -> TransportStatistics:
        """A snapshot of the counters since the transport was created."""
        return dataclasses.replace(self._stats)
