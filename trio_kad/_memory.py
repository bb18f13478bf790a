"""The in-memory transport: one node's attachment to a simulated network (Trio).

The counterpart of the JavaScript seed's ``MockRpc``: nodes reach each other
through a ``MemoryNetwork`` (``_memory_net``) instead of sockets, with optional latency, jitter,
random loss, per-node failure modes and partitions. Every frame still goes
through the real codec and the same ``_rpc.Endpoint`` as over TCP (request
ids, refusals, rate limits, connections used both ways), so a simulation
exercises the protocol exactly as TCP does. Cheap enough for thousands of nodes under
``trio.testing.MockClock(autojump_threshold=0)``.

With a ``WanModel`` (``_wan``) the network behaves like the internet
instead: each node sits at a site, every message takes half its pair's RTT
plus jitter and may be lost, a new connection costs a handshake round trip
before its first request, connections idle for ``Config.idle_timeout`` close,
and each node keeps at most ``Config.max_outbound_connections`` connections it
dialed, closing the least recently used idle one first, as the TCP transport
does. Without a model none of that runs and nothing changes.
"""

from __future__ import annotations

import logging

import trio

from ._address import format_address
from ._config import Config
from ._contacts import ContactCache
from ._errors import PeerMisbehaved, TransportError
from ._ids import ID_BYTES, Address
from ._limits import Admission
from ._memory_net import MemoryNetwork
from ._messages import ReplyFrame, Request
from ._rpc import Endpoint, MustClose, PeerNamed, ReplyReceived, RequestReceived
from ._transport import RequestHandler, Transport
from ._wan import Site

logger = logging.getLogger("trio_kad.transport")


class _Link:
    """One simulated connection as seen from one end: our endpoint and the other end."""

    __slots__ = ("busy", "endpoint", "last_used", "named", "other", "owner", "remote")

    def __init__(
        self, owner: MemoryTransport, remote: Address, endpoint: Endpoint[None], now: float
    ) -> None:
        self.owner = owner
        self.remote = remote
        self.endpoint = endpoint
        self.other: _Link | None = None
        # The listening address the peer named, when the owner reaches it over this link.
        self.named: Address | None = None
        # Kept with a WAN model only: requests in flight either way, and when one last
        # started or ended (the connection's idle time counts from then).
        self.busy = 0
        self.last_used = now

    def use(self, now: float, change: int) -> None:
        """A request starts (``change`` 1) or ends (-1) on this connection; both ends see it."""
        for end in (self, self.other):
            if end is not None:
                end.busy += change
                end.last_used = now

    def close(self) -> None:
        """Both ends forget the connection."""
        for end in (self, self.other):
            if end is not None:
                end.owner._forget(end)


class MemoryTransport(Transport):
    """One node's attachment to a ``MemoryNetwork``; create it with ``network.transport()``."""

    def __init__(self, network: MemoryNetwork) -> None:
        super().__init__()
        self.network = network
        self.address: Address | None = None
        self._configure(Config())
        self._host = "127.0.0.1"
        self._local_id = bytes(ID_BYTES)
        self._handler: RequestHandler | None = None
        self._running = False
        # Connections by the peer's listening address: dialed, or named by the peer.
        self._links: dict[Address, _Link] = {}
        self.site: Site | None = None
        """Where the WAN model placed this node (``None`` without a model)."""
        # With a model: the connections we dialed, least recently used first.
        self._dialed: dict[_Link, None] = {}

    def _configure(self, config: Config) -> None:
        """The state that follows from ``config``: limits and the contact cache."""
        self._config = config
        self._admission = Admission(config)
        self._contacts = ContactCache(config.contact_cache_size)

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
        """Register on the network (unless ``handler`` is ``None``) and stay until cancelled."""
        if self._running:
            raise RuntimeError("MemoryTransport.run() is already running")
        self._configure(config)
        self._host = host
        self._local_id = node_id
        self._running = True
        address: Address | None = None
        try:
            if handler is not None:
                address = self.network._register(host, port, self)
                self.address = address
                self._handler = handler
            task_status.started(address)
            await trio.sleep_forever()
        finally:
            if address is not None:
                self.network._unregister(address, self)
            for link in list(self._links.values()):
                link.close()
            self.address = None
            self._handler = None
            self._running = False

    async def _request(
        self,
        address: Address,
        sender_id: bytes,
        sender_port: int | None,
        body: Request,
    ) -> ReplyFrame:
        if not self._running:
            raise TransportError("transport is not running")
        network = self.network
        model = network.model
        where = format_address(address)
        # Like a TCP connect: an unknown or refusing address fails at once.
        target = network._nodes.get(address)
        mode = network._modes.get(address, "up")
        if target is None or mode == "refuse":
            raise TransportError(f"connection to {where} refused")
        silent = mode == "drop" or not network._reachable(self.address, address)
        if model is None:
            # The plain network's path, kept as lean as before the WAN model came.
            link = self._links.get(address)
            if link is None or link.other is None or link.other.owner is not target:
                link = self._dial(target, address)
        else:
            link, fresh = self._connection(target, address)
        endpoint = link.endpoint
        request_id, data = endpoint.send_request(sender_id, sender_port, body, None)
        if model is not None:
            link.use(trio.current_time(), 1)
        try:
            if silent or (model is None and network._lost()):
                # A silent peer (the connect's segments too): only the caller's scope ends the wait.
                await trio.sleep_forever()
            if model is None:
                await network._delay()
            else:
                await network._travel(model, self, target, fresh=fresh)
            other = link.other
            # The target may have left while the request travelled (a reset connection).
            if network._nodes.get(address) is not target or other is None:
                raise TransportError(f"connection to {where} closed")
            reply_data = await target._serve(other, data)
            if model is None:
                await network._delay()
            else:
                await network._travel(model, target, self, reply=True)
            endpoint.receive_data(reply_data, trio.current_time())
            event = endpoint.next_event()
        finally:
            endpoint.forget(request_id)
            if model is not None:
                link.use(trio.current_time(), -1)
        if type(event) is ReplyReceived:
            return event.frame
        link.close()
        if type(event) is MustClose:
            error = f"connection to {where} closed: {event.reason}"
            raise PeerMisbehaved(error) if event.misbehaved else TransportError(error)
        raise TransportError(f"connection to {where} closed by the peer")

    def _connection(self, target: MemoryTransport, address: Address) -> tuple[_Link, bool]:
        """With a model: the connection to ``address``, pooled or newly dialed; whether it is new.

        As over TCP, a connection unused for ``idle_timeout`` has closed, and one
        that carries a request becomes the most recently used.
        """
        link = self._links.get(address)
        if link is not None and link.other is not None and link.other.owner is target:
            if link.busy or trio.current_time() - link.last_used < self._config.idle_timeout:
                if link in self._dialed:
                    del self._dialed[link]
                    self._dialed[link] = None
                return link, False
            link.close()
        return self._dial(target, address), True

    def _dial(self, target: MemoryTransport, address: Address) -> _Link:
        now = trio.current_time()
        model = self.network.model
        if model is not None and len(self._dialed) >= self._config.max_outbound_connections:
            # Close the least recently used idle one. With every one busy the new
            # one opens anyway (TCP opens up to twice the limit before callers wait).
            idle = next((link for link in self._dialed if not link.busy), None)
            if idle is not None:
                idle.close()
        ours = _Link(self, address, self._endpoint(address, now, dialed=True), now)
        # The target sees the connection come from our host (and no port of ours yet).
        remote = (self._host, 0)
        theirs = _Link(target, remote, target._endpoint(remote, now, dialed=False), now)
        ours.other, theirs.other = theirs, ours
        self._links[address] = ours
        if model is not None:
            self._dialed[ours] = None
        self._stats.connections_opened += 1
        target._stats.connections_opened += 1
        return ours

    def _endpoint(self, remote: Address, now: float, *, dialed: bool) -> Endpoint[None]:
        config, admission, stats = self._config, self._admission, self._stats
        return Endpoint(
            self._local_id,
            remote,
            config,
            admission,
            stats,
            now,
            dialed=dialed,
            contacts=self._contacts,
        )

    def _forget(self, link: _Link) -> None:
        # A link is held under the address it was dialed at or the one its peer named.
        links = self._links
        for address in (link.remote, link.named):
            if address is not None and links.get(address) is link:
                del links[address]
        self._dialed.pop(link, None)

    async def deliver(self, data: bytes, host: str) -> bytes | None:
        """Bytes a peer at ``host`` sent on a new connection; the bytes it gets back.

        ``None`` when the connection closed without an answer. For tests that
        play a hostile peer: the bytes go through the endpoint and the handler
        exactly as a request from the network would.
        """
        remote = (host, 0)
        now = trio.current_time()
        link = _Link(self, remote, self._endpoint(remote, now, dialed=False), now)
        reply = await self._serve(link, data)
        return None if not reply and link.endpoint.closed is not None else reply

    async def _serve(self, link: _Link, data: bytes) -> bytes:
        """The receiving end: take ``data``, answer what it holds, return the answer's bytes."""
        endpoint = link.endpoint
        endpoint.receive_data(data, trio.current_time())
        while (event := endpoint.next_event()) is not None:
            if type(event) is RequestReceived:
                await self._answer(endpoint, event)
            elif type(event) is PeerNamed:
                if event.duplex and event.port is not None:
                    named = (link.remote[0], event.port)
                    if self._links.setdefault(named, link) is link:
                        link.named = named
            elif type(event) is MustClose:
                logger.debug("closing a connection from %s: %s", link.remote[0], event.reason)
                link.close()
            # A ReplyReceived cannot come here: replies travel back inside _request.
        return endpoint.data_to_send()

    async def _answer(self, endpoint: Endpoint[None], request: RequestReceived) -> None:
        handler = self._handler
        if handler is None:
            endpoint.send_not_serving(request)
            return
        # A remote server finishes its work even if the caller gives up waiting.
        with trio.CancelScope(shield=True):
            try:
                body = await handler(request.frame, (endpoint.remote[0], 0))
            except Exception:
                # Never a traceback on the wire; the details stay in our log.
                logger.exception("the handler failed on a request from %s", endpoint.remote[0])
                endpoint.send_internal_error(request)
            else:
                endpoint.send_reply(request, body)
