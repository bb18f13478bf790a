"""An in-process simulated network for tests and simulations (Trio).

The counterpart of the JavaScript seed's ``MockRpc``: nodes reach each other
through a ``MemoryNetwork`` instead of sockets, with optional latency, jitter,
random loss, per-node failure modes and partitions. Every frame still goes
through the real codec, so a simulation exercises the same encoding and
validation as TCP. Cheap enough for thousands of nodes under
``trio.testing.MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import random
from collections.abc import Iterable
from typing import Literal

import trio

from ._codec import decode_frame, encode_frame, encode_reply
from ._config import Config
from ._errors import PeerMisbehaved, ProtocolError, TransportError
from ._ids import ID_BYTES, Address
from ._messages import ErrorCode, ErrorReply, Reply, ReplyFrame, Request, RequestFrame
from ._tcp import error_reply_for
from ._transport import RequestHandler, Transport, TransportStatistics

logger = logging.getLogger("trio_kad.transport")

Mode = Literal["up", "refuse", "drop"]
"""How a simulated node treats requests: answer, refuse at once, or never answer."""

FIRST_PORT = 10000
"""Ports the network assigns for ``port=0`` count up from here."""

_MODES: frozenset[str] = frozenset({"up", "refuse", "drop"})


class MemoryNetwork:
    """A simulated network joining ``MemoryTransport`` instances.

    Each direction of an RPC takes ``latency + rng.uniform(0, jitter)`` seconds;
    a request is lost with probability ``drop_rate`` (the caller then waits
    until its own cancel scope gives up, as with a silent peer).
    """

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        drop_rate: float = 0.0,
    ) -> None:
        if latency < 0 or jitter < 0:
            raise ValueError("latency and jitter must be >= 0")
        if not 0.0 <= drop_rate <= 1.0:
            raise ValueError("drop_rate must be in [0, 1]")
        self.rng = rng if rng is not None else random.Random()
        self.latency = latency
        self.jitter = jitter
        self.drop_rate = drop_rate
        self._nodes: dict[Address, MemoryTransport] = {}
        self._modes: dict[Address, Mode] = {}
        self._groups: dict[Address, int] | None = None
        self._transports: list[MemoryTransport] = []
        self._next_port = FIRST_PORT

    def transport(self) -> MemoryTransport:
        """A new transport attached to this network (pass it to ``open_dht``)."""
        transport = MemoryTransport(self)
        self._transports.append(transport)
        return transport

    def addresses(self) -> list[Address]:
        """The addresses of the transports currently listening."""
        return list(self._nodes)

    def set_mode(self, address: Address, mode: Mode) -> None:
        """Make ``address`` answer ("up"), refuse connections ("refuse") or go silent ("drop")."""
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, not {mode!r}")
        if mode == "up":
            self._modes.pop(address, None)
        else:
            self._modes[address] = mode

    def partition(self, groups: Iterable[Iterable[Address]]) -> None:
        """Split the network: addresses in different groups cannot reach each other.

        Addresses listed in no group (including client-only transports, which
        have none) form one more group together. Replaces any earlier partition.
        """
        mapping: dict[Address, int] = {}
        for index, group in enumerate(groups):
            for address in group:
                mapping[address] = index
        self._groups = mapping

    def heal(self) -> None:
        """Undo ``partition``: every address can reach every other again."""
        self._groups = None

    def statistics(self) -> TransportStatistics:
        """The counters of every transport of this network, summed."""
        total = TransportStatistics()
        names = [field.name for field in dataclasses.fields(total)]
        for transport in self._transports:
            stats = transport._stats
            for name in names:
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    # --- used by MemoryTransport ----------------------------------------------

    def _register(self, host: str, port: int, transport: MemoryTransport) -> Address:
        if port == 0:
            while (host, self._next_port) in self._nodes:
                self._next_port += 1
            port = self._next_port
            self._next_port += 1
        address = (host, port)
        if address in self._nodes:
            raise OSError(errno.EADDRINUSE, f"address {host}:{port} is already in use")
        self._nodes[address] = transport
        return address

    def _unregister(self, address: Address, transport: MemoryTransport) -> None:
        if self._nodes.get(address) is transport:
            del self._nodes[address]

    def _reachable(self, source: Address | None, target: Address) -> bool:
        groups = self._groups
        if groups is None:
            return True
        source_group = None if source is None else groups.get(source)
        return source_group == groups.get(target)

    def _lost(self) -> bool:
        # No rng draw when there is no loss, so a seeded run's other draws do not shift.
        return bool(self.drop_rate) and self.rng.random() < self.drop_rate

    async def _delay(self) -> None:
        # No rng draw without jitter, so seeded runs without it draw nothing here.
        delay = self.latency
        if self.jitter:
            delay += self.rng.uniform(0.0, self.jitter)
        if delay:
            await trio.sleep(delay)
        else:
            # Still a checkpoint, as for any Trio I/O: a caller whose deadline
            # passed while a shielded handler ran must see its cancellation.
            await trio.lowlevel.checkpoint()


class MemoryTransport(Transport):
    """One node's attachment to a ``MemoryNetwork``; create it with ``network.transport()``."""

    def __init__(self, network: MemoryNetwork) -> None:
        super().__init__()
        self.network = network
        self.address: Address | None = None
        self._config = Config()
        self._host = "127.0.0.1"
        self._local_id = bytes(ID_BYTES)
        self._handler: RequestHandler | None = None
        self._running = False
        self._next_request_id = 0

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
        self._config = config
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
        where = f"{address[0]}:{address[1]}"
        request_id = self._next_request_id = (self._next_request_id + 1) % 2**64
        data = encode_frame(RequestFrame(request_id, sender_id, sender_port, body))
        if len(data) - 4 > self._config.max_frame_size:
            raise TransportError(
                f"request of {len(data)} bytes exceeds max_frame_size"
                f" ({self._config.max_frame_size})"
            )

        # Like a TCP connect: an unknown or refusing address fails at once.
        target = network._nodes.get(address)
        mode = network._modes.get(address, "up")
        if target is None or mode == "refuse":
            raise TransportError(f"connection to {where} refused")
        self._stats.frames_sent += 1
        self._stats.bytes_sent += len(data)
        if mode == "drop" or not network._reachable(self.address, address) or network._lost():
            # A silent peer: only the caller's cancel scope ends the wait.
            await trio.sleep_forever()

        await network._delay()
        # The target may have left while the request travelled (a reset connection).
        if network._nodes.get(address) is not target:
            raise TransportError(f"connection to {where} closed")
        reply_data = await target._serve(data, self._host)
        if reply_data is None:
            raise TransportError(f"connection to {where} closed by the peer")
        await network._delay()

        self._stats.frames_received += 1
        self._stats.bytes_received += len(reply_data)
        if len(reply_data) - 4 > self._config.max_frame_size:
            self._stats.protocol_errors += 1
            raise PeerMisbehaved(f"reply from {where} exceeds max_frame_size")
        try:
            reply = decode_frame(reply_data[4:])
        except ProtocolError as exc:
            self._stats.protocol_errors += 1
            raise PeerMisbehaved(f"undecodable reply from {where}: {exc}") from exc
        if not isinstance(reply, ReplyFrame) or reply.request_id != request_id:
            self._stats.protocol_errors += 1
            raise PeerMisbehaved(f"unexpected frame from {where}")
        return reply

    async def _serve(self, data: bytes, sender_host: str) -> bytes | None:
        """The receiving side: decode, handle, encode the reply (None: close the connection)."""
        stats = self._stats
        stats.frames_received += 1
        stats.bytes_received += len(data)
        handler = self._handler
        if handler is None:
            return None
        if len(data) - 4 > self._config.max_frame_size:
            stats.protocol_errors += 1
            return self._encode_reply(0, ErrorReply(ErrorCode.TOO_LARGE, "frame too large"))
        try:
            frame = decode_frame(data[4:])
        except ProtocolError as exc:
            stats.protocol_errors += 1
            logger.debug("bad request from %s: %s", sender_host, exc)
            if exc.request_id is None:
                return None
            return self._encode_reply(exc.request_id, error_reply_for(exc))
        if not isinstance(frame, RequestFrame):
            stats.protocol_errors += 1
            return None
        stats.requests_received += 1
        # A remote server finishes its work even if the caller gives up waiting.
        with trio.CancelScope(shield=True):
            try:
                body: Reply = await handler(frame, (sender_host, 0))
            except Exception:
                # Never a traceback on the wire; the details stay in our log.
                logger.debug("handler failed on a request from %s", sender_host, exc_info=True)
                body = ErrorReply(ErrorCode.INTERNAL, "internal error")
        return self._encode_reply(frame.request_id, body)

    def _encode_reply(self, request_id: int, body: Reply) -> bytes:
        try:
            data = encode_reply(request_id, self._local_id, body)
        except ValueError:
            logger.debug("handler returned an unencodable reply: %r", body, exc_info=True)
            internal = ErrorReply(ErrorCode.INTERNAL, "internal error")
            data = encode_reply(request_id, self._local_id, internal)
        self._stats.frames_sent += 1
        self._stats.bytes_sent += len(data)
        return data
