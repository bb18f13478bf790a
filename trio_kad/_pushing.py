"""The holder's side of watching a key: LISTENs in, pushes out (Trio).

A node near a key keeps the nodes that sent it a LISTEN (``_listeners``) and,
each time it comes to hold a newer pair of that key, pushes the pair to each
of them as a request, over the connection the listener opened when it still
has one (docs/protocol.md, "Watching a key"). One task per listener at most,
started when a pair waits for it and ended when none does; each push is
bounded by ``Config.watch_push_timeout``, so a listener that never reads
costs the holder one task for that long, and is then forgotten.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ._errors import TransportError
from ._ids import Address
from ._listeners import Listener, Listeners
from ._messages import ErrorCode, ErrorReply, Listen, Pong, Push, RequestFrame, Store
from ._records import Record

if TYPE_CHECKING:
    from ._node import Node

log = logging.getLogger("trio_kad.watch")

_CLIENT_ONLY = ErrorReply(ErrorCode.OVERLOADED, "cannot push to a node that does not listen")
_UNREACHABLE = ErrorReply(ErrorCode.OVERLOADED, "this node does not dial that address")
_TOO_MANY = ErrorReply(ErrorCode.OVERLOADED, "too many listeners")


def changed(held: Record | None, record: Record) -> bool:
    """Does keeping ``record`` where ``held`` was give listeners something new?

    A refresh of the same pair (replication, republishing) does not.
    """
    return held is None or held.cached or held.value != record.value or held.signed != record.signed


class Pusher:
    """The listeners of one node and the tasks that push to them."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._timeout = node.config.watch_push_timeout
        self.listeners = Listeners(node.config)

    def listen(
        self, frame: RequestFrame, body: Listen, remote: Address, group: str
    ) -> ErrorReply | None:
        """Keep the sender of a LISTEN as a listener; ``None`` when it is kept, else the refusal.

        Pushes go to the address its connection came from, at the port it
        listens on: never to an address a peer merely named.
        """
        port = frame.sender_port
        if port is None:
            # A client-only listener: over the connection its LISTEN came by, or not at all.
            address = remote
            if not self._node.transport.holds_connection(address):
                return _CLIENT_ONLY
        elif self._node.addresses.allows(remote[0]):
            address = (remote[0], port)
        else:
            return _UNREACHABLE
        now = trio.current_time()
        kept = self.listeners.listen(
            body.key, frame.sender_id, address, group, now, client_only=port is None
        )
        return None if kept is not None else _TOO_MANY

    def stored(self, held: Record | None, record: Record) -> None:
        """This node now holds ``record`` in place of ``held``: push it if that is news."""
        if record.cached or not changed(held, record):
            return
        self._node.watches.local(record)
        pair = Store(record.key, record.value, signed=record.signed, published=record.published)
        for listener in self.listeners.offer(pair, trio.current_time()):
            if not self._node.spawn(self._push_to, listener):
                listener.sending = False

    async def _push_to(self, listener: Listener) -> None:
        listeners = self.listeners
        while True:
            step = listeners.next_push(listener, trio.current_time())
            if step is None:
                return
            if isinstance(step, float):
                await trio.sleep(step)
                continue
            if not await self._push(listener, step):
                # Gone, too slow, or no longer listening: it renews if it still wants pushes.
                log.debug("dropped a listener of %s", listener.key.hex()[:12])
                listeners.drop(listener)
                listener.sending = False
                return

    async def _push(self, listener: Listener, pair: Store) -> bool:
        """One push, within ``Config.watch_push_timeout``; whether the listener took it.

        Sent by the transport directly, not as an RPC of the node: a listener's
        answer says nothing about the routing table (a client-only one has
        no place in it), and its silence charges no contact.
        """
        node = self._node
        transport = node.transport
        if listener.client_only and not transport.holds_connection(listener.address):
            return False  # its connection closed: never dial a client's ephemeral port
        with trio.move_on_after(self._timeout):
            try:
                reply = await transport.request(
                    listener.address, node.node_id, node.port, Push(pair)
                )
            except TransportError:
                return False
            return reply.sender_id == listener.node_id and isinstance(reply.body, Pong)
        return False
