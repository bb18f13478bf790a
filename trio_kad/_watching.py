"""The watcher's side of watching a key: LISTEN at the closest nodes, take their pushes (Trio).

A ``Watch`` looks the key up, sends LISTEN to the k closest nodes it finds
and takes what they answer and push, keeping only what is newer than what it
has offered its reader (a later ``published`` for a plain pair, a higher
seq for a signed record). Every ``Config.watch_renew_interval`` it looks the
key up again and listens at whichever nodes are closest now, so churn and
newcomers are followed. When no node accepts its LISTEN it polls with a
value lookup every ``Config.watch_poll_interval`` until the next renewal.

A push is taken only from a node this watch listens at, for its key, and is
checked as a FIND_VALUE answer is (size, CBOR form, no date from the far
future; a signed record's key and signature). Anything else is answered
``NOT_LISTENING`` and counted (``Watches.unsolicited``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from ._ids import Address, Contact
from ._messages import (
    ErrorCode,
    ErrorReply,
    FoundValue,
    Listen,
    Nodes,
    Pong,
    Push,
    Reply,
    RequestFrame,
    SignedPart,
)
from ._newer import from_future
from ._records import Record
from ._signed import verify
from ._signed_ops import find_signed
from ._values import acceptable_value

if TYPE_CHECKING:
    from ._node import Node

log = logging.getLogger("trio_kad.watch")

T = TypeVar("T")

_NOT_SERVING = ErrorReply(ErrorCode.UNSUPPORTED, "this node answers no requests")
_NOT_LISTENING = ErrorReply(ErrorCode.NOT_LISTENING, "not listening to this key")


class Watches:
    """The watches of one node, by key: where its pushes go."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, set[Watch]] = {}
        self.unsolicited = 0
        """Pushes dropped: for a key not watched, or from a node not listened at."""
        self.refused = 0
        """Pushes dropped because their pair failed a check (form, size, date, signature)."""

    def __len__(self) -> int:
        """Watches running now."""
        return sum(len(watches) for watches in self._by_key.values())

    def add(self, watch: Watch) -> None:
        self._by_key.setdefault(watch.key, set()).add(watch)

    def close(self) -> None:
        """The node stopped: every watch's reader ends its ``async for``."""
        for watches in list(self._by_key.values()):
            for watch in watches:
                watch.close()

    def remove(self, watch: Watch) -> None:
        watches = self._by_key.get(watch.key)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._by_key[watch.key]

    def push(self, frame: RequestFrame, body: Push) -> Reply:
        """Answer a PUSH: hand its pair to the watches of its key that listen at its sender."""
        pair = body.pair
        taken = False
        for watch in self._by_key.get(pair.key, ()):
            if frame.sender_id in watch.listening_at:
                taken = True
                if not watch.offer(pair.value, pair.published, pair.signed):
                    self.refused += 1
        if not taken:
            self.unsolicited += 1
            return _NOT_LISTENING
        return Pong()

    def listening_ids(self, key: bytes) -> set[bytes]:
        """The ids of the nodes the watches of key id ``key`` listen at (tests, statistics)."""
        ids: set[bytes] = set()
        for watch in self._by_key.get(key, ()):
            ids.update(watch.listening_at)
        return ids

    async def serve_client(self, frame: RequestFrame, remote: Address) -> Reply:
        """A client-only node's ``Transport.push_handler``: pushes only."""
        if isinstance(frame.body, Push):
            return self.push(frame, frame.body)
        return _NOT_SERVING

    def local(self, record: Record) -> None:
        """This node itself came to hold ``record`` (it is one of the holders)."""
        for watch in self._by_key.get(record.key, ()):
            watch.offer(record.value, record.published, record.signed)


class Watch:
    """One ``watch`` or ``watch_signed``: the newest pair seen, in a one-slot buffer.

    ``signed`` watches take only signed records valid for ``key`` and order
    them by seq; plain ones take only plain pairs, ordered by ``published``
    (``_newer``). ``offer`` keeps a pair only when it is newer than every
    pair offered before, so the reader never sees one twice or out of order;
    a reader slower than the pairs skips to the newest.
    """

    def __init__(self, node: Node, key: bytes, *, signed: bool) -> None:
        self.key = key
        self._node = node
        self._signed = signed
        self._best: tuple[int, bytes] | None = None
        self._slot: tuple[bytes, SignedPart | None] | None = None
        self._ready = trio.Event()
        self.listening_at: dict[bytes, Contact] = {}
        """Nodes that accepted this watch's LISTEN at its last renewal (and since)."""
        self.polling = False
        """No node accepted the LISTEN at the last renewal: polling until the next."""
        self.closed = False
        """The node stopped: ``next_pair`` raises ``StopAsyncIteration``."""

    def close(self) -> None:
        """End the reader's ``async for`` once it took the pair waiting, if any."""
        self.closed = True
        self._ready.set()

    def offer(self, value: bytes, published: int, signed: SignedPart | None) -> bool:
        """A pair heard for the key; False when it fails a check (older is not a failure)."""
        config = self._node.config
        if not acceptable_value(value, config.max_value_size):
            return False
        if self._signed:
            if signed is None or not verify(self.key, value, signed):
                return False
            rank = (signed.seq, b"")  # a seq names one value: the first valid one is it
        else:
            if signed is not None or from_future(published, self._node.wall_ms()):
                return False
            rank = (published, value)
        if self._best is None or rank > self._best:
            self._best = rank
            self._slot = (value, signed)
            self._ready.set()
        return True

    async def next_pair(self) -> tuple[bytes, SignedPart | None]:
        """Wait for a pair newer than the last one returned; the newest one if several came."""
        while self._slot is None:
            if self.closed:
                raise StopAsyncIteration
            self._ready = trio.Event()
            await self._ready.wait()
        pair, self._slot = self._slot, None
        return pair

    async def run(self) -> None:
        """Listen at the closest nodes, renew, follow churn; poll while nobody accepts."""
        node = self._node
        config = node.config
        # A client-only watcher is pushed to over the connections it opened, which
        # close after idle_timeout: it LISTENs again (no lookup) before they do.
        keepalive = config.idle_timeout / 2 if node.client_only else math.inf
        while True:
            deadline = trio.current_time() + config.watch_renew_interval
            self.polling = not await self._listen_round()
            while trio.current_time() < deadline:
                if self.polling:
                    await self._poll()
                    wait = config.watch_poll_interval
                else:
                    wait = keepalive
                await trio.sleep(min(wait, deadline - trio.current_time()))
                if not self.polling and trio.current_time() < deadline:
                    await self._listen_again()

    async def _listen_round(self) -> bool:
        """LISTEN at the k closest nodes found now; whether any accepted."""
        node = self._node
        self._offer_held()
        outcome = await node.lookup(self.key)
        accepted = await self._listen_at(outcome.contacts[: node.config.k])
        # Nodes no longer among the closest get NOT_LISTENING for their next push.
        self.listening_at = accepted
        return bool(accepted)

    def _offer_held(self) -> None:
        """Offer the pair this node holds itself for the key, if any (not a cached copy)."""
        record = self._node.records.get(self.key, trio.current_time())
        if record is not None and not record.cached:
            self.offer(record.value, record.published, record.signed)

    async def _listen_again(self) -> None:
        """Renew at the nodes listened at, without a lookup (keeps connections open)."""
        self.listening_at = await self._listen_at(list(self.listening_at.values()))

    async def _listen_at(self, contacts: list[Contact]) -> dict[bytes, Contact]:
        """Send LISTEN to ``contacts`` at once; those that accepted, by id."""
        node = self._node
        accepted: dict[bytes, Contact] = {}

        async def listen_at(contact: Contact) -> None:
            reply = await node.rpc(contact, Listen(self.key))
            if isinstance(reply, FoundValue | Nodes):
                accepted[contact.node_id] = contact
                self.listening_at[contact.node_id] = contact  # its pushes count from now on
            if isinstance(reply, FoundValue) and not reply.cached:
                self.offer(reply.value, reply.published, reply.signed)

        async with trio.open_nursery() as nursery:
            for contact in contacts:
                nursery.start_soon(listen_at, contact)
        return accepted

    async def _poll(self) -> None:
        """One value lookup, as ``get`` or ``get_signed`` would make it."""
        if self._signed:
            found = await find_signed(self._node, self.key)
            if found is not None:
                self.offer(found[0], 0, found[1])
            return
        self._offer_held()
        outcome = await self._node.lookup(self.key, want_value=True)
        if outcome.value is not None:
            self.offer(outcome.value, outcome.published, None)


class Updates(Generic[T]):
    """What ``Dht.watch`` yields: ``async for value in updates`` (see ``Dht.watch``)."""

    def __init__(self, watch: Watch, convert: Callable[[bytes, SignedPart | None], T]) -> None:
        self._watch = watch
        self._convert = convert

    def __aiter__(self) -> Updates[T]:
        return self

    async def __anext__(self) -> T:
        return self._convert(*await self._watch.next_pair())

    @property
    def polling(self) -> bool:
        """True while no holder accepted this watch's LISTEN: it polls instead."""
        return self._watch.polling


def plain_value(decode: Callable[[bytes], Any]) -> Callable[[bytes, SignedPart | None], Any]:
    """The converter of a plain watch: the decoded value."""
    return lambda value, _signed: decode(value)
