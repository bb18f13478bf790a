"""Answering the four RPCs and keeping the pairs STOREs bring (paper section 2.3).

``Server.handle_request`` is the handler a node gives its transport. It reads
the routing table and the record store; the one thing it asks of the node is
to note each valid requester (``saw_requester``), which keeps the table fresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._address import ip_group
from ._diversity import NetworkSet
from ._duties import CACHE_HORIZON, cache_ttl, ttl_left
from ._errors import DataDirError
from ._ids import Address, Contact
from ._messages import (
    AddProvider,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    GetProviders,
    Listen,
    Nodes,
    Ping,
    Pong,
    Push,
    Reply,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
    StoreProviders,
)
from ._newer import from_future, newer
from ._provider_ops import ProviderServer
from ._records import Record, value_fits
from ._signed import Refusal, Verdict, judge
from ._values import well_formed_value

if TYPE_CHECKING:
    from ._node import Node

log = logging.getLogger("trio_kad.node")


class Server:
    """The serving side of one node."""

    def __init__(self, node: Node, saw_requester: Callable[[bytes, str, int], None]) -> None:
        # Held directly rather than through the node: every request reads them.
        self._node_id = node.node_id
        self._config = node.config
        self._table = node.table
        self._records = node.records
        self._counters = node.counters
        self._saw_requester = saw_requester
        self._per_ip_exempt = NetworkSet(node.config.per_ip_exempt)
        self._wall_ms = node.wall_ms
        self._pusher = node.pusher
        self._watches = node.watches
        # Held from a STORE's verdict to its put: a durable put awaits the disk,
        # and compare-and-set (signed records' cas) must see no STORE in between.
        self._store_lock = trio.Lock()
        self._providers = ProviderServer(node)

    async def handle_request(self, frame: RequestFrame, remote: Address) -> Reply:
        """Answer one request; every valid request from a listening peer updates the table."""
        self._counters.requests_served += 1
        if frame.sender_id == self._node_id:
            return ErrorReply(ErrorCode.MALFORMED, "sender id is the receiver's own id")
        if frame.sender_port is not None:
            self._saw_requester(frame.sender_id, remote[0], frame.sender_port)
        body = frame.body
        # Most frequent first: lookups send FIND_NODE and FIND_VALUE.
        if isinstance(body, FindNode):
            return Nodes(self._closest_for(body.target, frame.sender_id))
        if isinstance(body, Ping):
            return Pong()
        if isinstance(body, FindValue):
            return self._value_or_nodes(body.key, frame.sender_id)
        # Pairs from an exempt host count toward no per-IP quota.
        origin = "" if remote[0] in self._per_ip_exempt else ip_group(remote[0])
        if isinstance(body, Store):
            return await self.accept_store(body, origin)
        if isinstance(body, StoreMany):
            results = []
            for pair in body.pairs:
                reply = await self.accept_store(pair, origin)
                results.append(reply.code.value if isinstance(reply, ErrorReply) else 0)
            return StoredMany(tuple(results))
        if isinstance(body, AddProvider | GetProviders | StoreProviders):
            return self._providers.serve(frame, remote)
        # Watching a key (issue 18): a LISTEN is answered as a FIND_VALUE once kept.
        if isinstance(body, Listen):
            refusal = self._pusher.listen(frame, body, remote, origin)
            return refusal or self._value_or_nodes(body.key, frame.sender_id)
        if isinstance(body, Push):
            return self._watches.push(frame, body)
        return ErrorReply(ErrorCode.UNSUPPORTED, "unknown request")

    def _value_or_nodes(self, key: bytes, requester: bytes) -> Reply:
        """The FIND_VALUE answer: the pair held under ``key``, else the closest contacts."""
        now = trio.current_time()
        record = self._records.get(key, now)
        if record is not None:
            return FoundValue(
                record.value,
                ttl_left(record, now),
                record.signed,
                published=record.published,
                cached=record.cached,
            )
        return Nodes(self._closest_for(key, requester))

    def _closest_for(self, target: bytes, requester: bytes) -> tuple[Contact, ...]:
        # The requester knows itself; leaving it out leaves room for one more useful contact.
        return tuple(self._table.closest(target, self._config.k, exclude={requester}))

    async def accept_store(self, body: Store, origin: str) -> Reply:
        """Keep one pair a peer sent from ``origin`` ("" for none), if the rules allow it."""
        async with self._store_lock:
            return await self._accept_store(body, origin)

    async def _accept_store(self, body: Store, origin: str) -> Reply:
        config = self._config
        counters = self._counters
        if not value_fits(body.value, config.max_value_size):
            counters.stores_refused += 1
            return ErrorReply(ErrorCode.TOO_LARGE, "value too large")
        if not well_formed_value(body.value):
            # A value this node would never serve: readers would take it for a miss.
            counters.stores_refused += 1
            return ErrorReply(ErrorCode.MALFORMED, "value is not valid CBOR")
        if from_future(body.published, self._wall_ms()):
            counters.stores_refused += 1
            return ErrorReply(ErrorCode.MALFORMED, "published is too far in the future")
        now = trio.current_time()
        ttl = config.expire_interval if body.ttl is None else body.ttl
        ttl = min(ttl, config.expire_interval)
        held = self._records.get(body.key, now)
        verdict = judge(body, held)
        if isinstance(verdict, Refusal):
            counters.stores_refused += 1
            return ErrorReply(verdict.code, verdict.message, verdict.seq)
        if (
            body.signed is None
            and held is not None
            and held.signed is None
            and held.value != body.value
            and newer(held.published, held.value, body.published, body.value)
        ):
            # Plain pairs: holders keep the newer publication (_newer), so values converge.
            if body.cache:
                return Stored()  # a cache copy is best effort: nothing to say
            counters.stores_refused += 1
            return ErrorReply(
                ErrorCode.SUPERSEDED, "a newer pair is held", published=held.published
            )
        if body.cache:
            if held is not None and not held.cached:
                return Stored()  # a cache copy never replaces a replica
            known = self._table.closest(body.key, config.k + CACHE_HORIZON)
            ttl = cache_ttl(self._node_id, body.key, ttl, known, config.k)
        if ttl <= 0:
            return Stored()  # already expired at the sender: nothing to keep
        expires_at = now + ttl
        same = verdict is Verdict.REFRESH or (held is not None and held.signed is None)
        if held is not None and same and held.value == body.value and not held.cached:
            expires_at = max(expires_at, held.expires_at)
        record = Record(
            body.key,
            body.value,
            stored_at=now,
            expires_at=expires_at,
            publisher=held is not None and held.publisher and held.value == body.value,
            cached=body.cache,
            origin=origin,
            # The same value again only refreshes it, keeping the later publication.
            published=max(body.published, held.published)
            if held is not None and held.value == body.value
            else body.published,
            signed=body.signed,
        )
        # Acknowledged only once the store says it is kept (committed, when durable).
        try:
            kept = await self._records.put(record)
        except DataDirError as exc:
            log.warning("could not store a pair: %s", exc)
            return ErrorReply(ErrorCode.INTERNAL, "storage failed")
        if not kept:
            counters.stores_refused += 1
            return ErrorReply(ErrorCode.OVERLOADED, "storage full")
        counters.stores_accepted += 1
        self._pusher.stored(held, record)
        return Stored()
