"""A Kademlia node: serves the four RPCs and drives lookups over a transport (Trio)."""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import trio

from ._address import format_address, valid_host
from ._codec import decode_value
from ._config import Config
from ._diversity import NetworkSet
from ._errors import BootstrapError, DataDirError, PeerMisbehaved, TransportError
from ._ids import Address, Contact, count_nearer, distance, random_id_at_distance
from ._limits import RttEstimator
from ._lookup import Done, Lookup, Query
from ._messages import (
    MAX_BATCH_PAIRS,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Nodes,
    Ping,
    Pong,
    Reply,
    Request,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)
from ._records import MemoryStore, Record, RecordStore
from ._routing import Added, PingOldest, RoutingTable
from ._transport import Transport

# A requester asking again within this many seconds from the same address is
# not recorded again: the table has just seen it. A lookup or a set sends one
# peer several requests in a burst, and a busy peer asks many times a second.
_RESEEN_INTERVAL = 1.0
# How many recent requesters are remembered for that (forgotten all at once when full).
_RECENT_REQUESTERS = 32

log = logging.getLogger("trio_kad.node")


@dataclass(frozen=True, slots=True)
class LookupReport:
    """What one iterative lookup cost and found."""

    target: bytes
    rounds: int
    """Hops: the longest chain of referrals from the routing table to an answering node."""
    queries: int
    """RPCs sent."""
    failures: int
    """RPCs that timed out, failed or were answered with an error."""
    duration: float
    """Seconds from start to end (Trio clock)."""
    found_at: Contact | None = None
    """For a value lookup: the node that returned the value."""


@dataclass(slots=True)
class NodeCounters:
    """Running totals a node keeps (see ``Dht.statistics``)."""

    lookups: int = 0
    lookup_rpcs: int = 0
    lookup_rounds: int = 0
    stores_accepted: int = 0
    stores_refused: int = 0
    requests_served: int = 0
    recent_lookups: list[LookupReport] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Outcome:
    contacts: list[Contact]
    value: bytes | None
    report: LookupReport
    ttl: int | None = None


class Node:
    """The protocol logic of one node. Created and run by ``open_dht``."""

    def __init__(
        self,
        node_id: bytes,
        config: Config,
        transport: Transport,
        *,
        rng: random.Random,
        store: RecordStore | None = None,
        client_only: bool = False,
    ) -> None:
        self.node_id = node_id
        self.config = config
        self.transport = transport
        self.rng = rng
        self.client_only = client_only
        self.table = RoutingTable(
            node_id,
            k=config.k,
            replacement_cache_size=config.replacement_cache_size,
            max_failures=config.max_failures,
            now=trio.current_time(),
            # One host (one /24 or /48) may hold only a few places per bucket,
            # so it cannot fill the table with ids it made up.
            max_per_subnet=config.max_contacts_per_subnet,
            exempt=config.diversity_exempt,
            max_bans=config.max_bans,
        )
        self.records: RecordStore = (
            store
            if store is not None
            else MemoryStore(
                config.max_records,
                max_bytes=config.max_store_bytes,
                max_per_origin=config.max_records_per_ip,
            )
        )
        self.counters = NodeCounters()
        self._per_ip_exempt = NetworkSet(config.per_ip_exempt)
        self.rtt = RttEstimator(config.min_rpc_timeout, config.rpc_timeout)
        """Round trips of answered RPCs: how long a lookup waits for a contact."""
        self.port: int | None = None
        self._nursery: trio.Nursery | None = None
        self._checking: set[bytes] = set()
        # Requester id -> (until when it counts as just seen, its port, its host).
        self._recent_requesters: dict[bytes, tuple[float, int, str]] = {}
        # Newcomers to hand pairs to (paper 2.5), drained by one maintenance task;
        # bounded so a join storm cannot queue unbounded work: replication catches up.
        self.newcomers_in, self.newcomers_out = trio.open_memory_channel[Contact](64)
        self.on_checkpoint: Callable[[], Awaitable[None]] | None = None
        """Called after each refresh round (saves contacts when the node is durable)."""

    # --- running ---------------------------------------------------------

    async def run(
        self, host: str, port: int, *, task_status: trio.TaskStatus[Address | None]
    ) -> None:
        """Start the transport, report the bound address, serve until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            handler = None if self.client_only else self.handle_request
            address = await nursery.start(
                self.transport.run, self.config, self.node_id, host, port, handler
            )
            if address is not None:
                self.port = address[1]
            task_status.started(address)

    # --- serving (paper section 2.3) ----------------------------------------

    async def handle_request(self, frame: RequestFrame, remote: Address) -> Reply:
        """Answer one request; every valid request from a listening peer updates the table."""
        self.counters.requests_served += 1
        if frame.sender_id == self.node_id:
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
            now = trio.current_time()
            record = self.records.get(body.key, now)
            if record is not None:
                return FoundValue(record.value, _ttl_left(record, now))
            return Nodes(self._closest_for(body.key, frame.sender_id))
        # Pairs from an exempt host count toward no per-IP quota.
        origin = "" if remote[0] in self._per_ip_exempt else remote[0]
        if isinstance(body, Store):
            return await self._accept_store(body, origin)
        if isinstance(body, StoreMany):
            results = []
            for pair in body.pairs:
                reply = await self._accept_store(pair, origin)
                results.append(reply.code.value if isinstance(reply, ErrorReply) else 0)
            return StoredMany(tuple(results))
        return ErrorReply(ErrorCode.UNSUPPORTED, "unknown request")

    def _closest_for(self, target: bytes, requester: bytes) -> tuple[Contact, ...]:
        # The requester knows itself; leaving it out leaves room for one more useful contact.
        return tuple(self.table.closest(target, self.config.k, exclude={requester}))

    async def _accept_store(self, body: Store, origin: str) -> Reply:
        if len(body.value) > self.config.max_value_size:
            self.counters.stores_refused += 1
            return ErrorReply(ErrorCode.TOO_LARGE, "value too large")
        now = trio.current_time()
        ttl = self.config.expire_interval if body.ttl is None else body.ttl
        ttl = min(ttl, self.config.expire_interval)
        held = self.records.get(body.key, now)
        if body.cache:
            if held is not None and not held.cached:
                return Stored()  # a cache copy never replaces a replica
            ttl = self.cache_ttl(body.key, ttl)
        if ttl <= 0:
            return Stored()  # already expired at the sender: nothing to keep
        expires_at = now + ttl
        if held is not None and held.value == body.value and not held.cached:
            expires_at = max(expires_at, held.expires_at)
        record = Record(
            body.key,
            body.value,
            stored_at=now,
            expires_at=expires_at,
            publisher=held is not None and held.publisher and held.value == body.value,
            cached=body.cache,
            origin=origin,
        )
        # Acknowledged only once the store says it is kept (committed, when durable).
        try:
            kept = await self.records.put(record)
        except DataDirError as exc:
            log.warning("could not store a pair: %s", exc)
            return ErrorReply(ErrorCode.INTERNAL, "storage failed")
        if not kept:
            self.counters.stores_refused += 1
            return ErrorReply(ErrorCode.OVERLOADED, "storage full")
        self.counters.stores_accepted += 1
        return Stored()

    def cache_ttl(self, key: bytes, ttl: float) -> float:
        """How long to keep a cached copy (paper 2.3).

        Exponentially inversely proportional to the number of nodes between
        this one and the closest to the key: each contact beyond the k that
        hold the pair halves the time, and a cached copy always lives at most
        half as long as the original.
        """
        own = distance(self.node_id, key)
        k = self.config.k
        nearer = count_nearer(self.table.closest(key, k + 32), key, own)
        return ttl * 0.5 ** (1 + max(0, nearer - k))

    # --- routing table upkeep (paper section 2.2) -----------------------------

    def _saw_requester(self, node_id: bytes, host: str, port: int) -> None:
        """A listening peer sent a valid request: record it, unless it did a moment ago."""
        now = trio.current_time()
        recent = self._recent_requesters
        seen = recent.get(node_id)
        if seen is not None and now < seen[0] and seen[1] == port and seen[2] == host:
            return
        if len(recent) >= _RECENT_REQUESTERS:
            recent.clear()
        recent[node_id] = (now + _RESEEN_INTERVAL, port, host)
        # A peer the table holds at this address keeps its contact object.
        known = self.table.get(node_id)
        if known is None or known.port != port or known.host != host:
            known = Contact(node_id, host, port)
        self._record_alive(known, now)

    def saw_alive(self, contact: Contact) -> None:
        """A contact answered us or sent a valid request: record it in the table."""
        self._record_alive(contact, trio.current_time())

    def _record_alive(self, contact: Contact, now: float) -> None:
        if contact.node_id == self.node_id or not valid_host(contact.host):
            # A contact we could never pass on in a reply must not enter the table.
            return
        result = self.table.update(contact, now)
        if isinstance(result, PingOldest):
            self._check_oldest(result.oldest, now)
        elif isinstance(result, Added) and len(self.records):
            with contextlib.suppress(trio.WouldBlock):
                self.newcomers_in.send_nowait(contact)

    def _check_oldest(self, oldest: Contact, now: float) -> None:
        # Least-recently-seen eviction: the oldest contact keeps its place if it still
        # answers (old contacts are the likeliest to stay up); the pending newcomer waits
        # in the replacement cache. One check per contact at a time.
        if self._nursery is None or oldest.node_id in self._checking:
            return
        last_seen = self.table.last_seen(oldest.node_id)
        if last_seen is not None and now - last_seen < self.config.liveness_window:
            # Heard from it a moment ago: a ping would only confirm that, and pinging
            # on every newcomer to a full bucket is how idle networks drown in traffic.
            return
        self._checking.add(oldest.node_id)
        self._nursery.start_soon(self._ping_oldest, oldest)

    async def _ping_oldest(self, oldest: Contact) -> None:
        try:
            await self.rpc(oldest, Ping())
        finally:
            self._checking.discard(oldest.node_id)

    # --- outgoing RPCs ------------------------------------------------------

    async def rpc(
        self, contact: Contact, body: Request, timeout: float | None = None
    ) -> Reply | None:
        """Send one request to a known contact under ``timeout`` (``Config.rpc_timeout``).

        Returns the reply, or ``None`` when the contact failed (timeout, transport
        error, or a reply from another id than the one asked), which counts
        against it in the routing table.
        """
        reply = None
        started = trio.current_time()
        with trio.move_on_after(self.config.rpc_timeout if timeout is None else timeout):
            try:
                reply = await self.transport.request(contact.address, self.node_id, self.port, body)
            except PeerMisbehaved as exc:
                # Garbage or an unexpected frame: nothing it says can be trusted, so
                # it leaves the table and may not come back for a while.
                log.debug("rpc to %r: %s; banned", contact, exc)
                self.ban(contact)
                return None
            except TransportError as exc:
                log.debug("rpc to %r failed: %s", contact, exc)
        if reply is None:
            self.table.mark_failed(contact.node_id)
            # Its next request must count again: it may have left the table.
            self._recent_requesters.pop(contact.node_id, None)
            return None
        if reply.sender_id != contact.node_id:
            # Whoever answers there is not who it claimed to be (or no longer is).
            log.debug("%r answered as %s; banned", contact, reply.sender_id.hex()[:12])
            self.ban(contact)
            return None
        if not isinstance(body, Store):
            # STOREs may wait on a disk; the others measure the network and the peer.
            self.rtt.observe(trio.current_time() - started)
        self.saw_alive(contact)
        return reply.body

    def _acceptable_value(self, value: bytes) -> bool:
        if not value or len(value) > self.config.max_value_size:
            return False
        try:
            decode_value(value)
        except ValueError:
            return False
        return True

    def ban(self, contact: Contact) -> None:
        """Drop a lying or broken contact and refuse it for ``Config.ban_duration``."""
        self._recent_requesters.pop(contact.node_id, None)
        self.table.ban(contact.node_id, trio.current_time() + self.config.ban_duration)

    async def ping_address(self, address: Address) -> Contact | None:
        """Ping an address whose node id is not known yet (bootstrap peers)."""
        with trio.move_on_after(self.config.rpc_timeout):
            try:
                reply = await self.transport.request(address, self.node_id, self.port, Ping())
            except TransportError as exc:
                log.debug("bootstrap peer %s:%d failed: %s", address[0], address[1], exc)
                return None
            if not isinstance(reply.body, Pong) or reply.sender_id == self.node_id:
                return None
            contact = Contact(reply.sender_id, address[0], address[1])
            self.saw_alive(contact)
            return contact
        return None

    # --- lookups (paper section 2.3) ------------------------------------------

    async def lookup(self, target: bytes, *, want_value: bool = False) -> _Outcome:
        """Iterative lookup with at most ``alpha`` RPCs in flight.

        Each RPC waits at most the adaptive timeout of ``self.rtt``, so a dead
        contact holds a slot for a moment, not ``rpc_timeout``. A value lookup
        asks one contact at a time, each the closest known, and widens to
        ``alpha`` once a contact fails or is slower than the hedge delay (a
        hedged request: the value is usually held by the first or second
        contact asked, and then costs one or two RPCs rather than alpha per
        round). The slow contact's RPC is dropped and it is asked again among
        the alpha. Outstanding RPCs are cancelled the moment a value arrives.
        """
        config = self.config
        started = trio.current_time()
        self.table.touch(target, started)
        state = Lookup(
            target,
            self.table.closest(target, config.k),
            k=config.k,
            alpha=config.alpha,
            exclude=(self.node_id,),
        )
        request: Request = FindValue(target) if want_value else FindNode(target)
        alpha = config.alpha
        value: bytes | None = None
        found_at: Contact | None = None
        ttl: int | None = None
        timeout = self.rtt.timeout()

        def absorb(contact: Contact, reply: Reply | None) -> bool:
            """Apply one RPC's outcome to the lookup; True once a value ends it."""
            nonlocal value, found_at, ttl
            if not isinstance(reply, Nodes | FoundValue):
                # A failure: the network may be unhealthy here, so widen too.
                state.parallelism = alpha
            if isinstance(reply, Nodes):
                state.on_reply(contact.node_id, reply.contacts)
            elif isinstance(reply, FoundValue) and want_value:
                if not self._acceptable_value(reply.value):
                    # A value no setter could have made: the peer is lying.
                    self.ban(contact)
                    state.on_failure(contact.node_id)
                    return False
                value, found_at, ttl = reply.value, contact, reply.ttl
                state.on_reply(contact.node_id, ())
                state.finish()
                return True
            else:
                state.on_failure(contact.node_id)
            return False

        if want_value:
            state.parallelism = 1
            # One contact at a time, asked from this task: the usual get is one RPC,
            # and a task, a channel and a nursery for it would cost three scheduler
            # passes more than the RPC itself. A contact slower than the hedge delay
            # has its RPC dropped and is asked again among alpha, below.
            while state.parallelism == 1:
                step = state.next()
                if not isinstance(step, Query):
                    break  # Done: nothing in flight, so never Wait
                reply: Reply | None = None
                # With alpha 1 there is nobody to hedge with: wait out the RPC.
                hedge_delay = self.rtt.hedge_delay() if alpha > 1 else math.inf
                with trio.move_on_after(hedge_delay) as hedge:
                    reply = await self.rpc(step.contact, request, timeout)
                if hedge.cancelled_caught:
                    state.retry(step.contact.node_id)
                    state.parallelism = alpha
                elif absorb(step.contact, reply):
                    break

        if not state.done:
            await self._lookup_in_parallel(state, request, timeout, absorb)

        stats = state.statistics()
        report = LookupReport(
            target=target,
            rounds=stats.rounds,
            queries=stats.queries,
            failures=stats.failures,
            duration=trio.current_time() - started,
            found_at=found_at,
        )
        counters = self.counters
        counters.lookups += 1
        counters.lookup_rpcs += stats.queries
        counters.lookup_rounds += stats.rounds
        counters.recent_lookups.append(report)
        del counters.recent_lookups[:-100]
        return _Outcome(state.closest(), value, report, ttl)

    async def _lookup_in_parallel(
        self,
        state: Lookup,
        request: Request,
        timeout: float,
        absorb: Callable[[Contact, Reply | None], bool],
    ) -> None:
        """Drive ``state`` with up to ``state.parallelism`` RPCs at once, each its own task."""
        send, receive = trio.open_memory_channel[tuple[Contact, Reply | None]](self.config.alpha)

        async def ask(contact: Contact) -> None:
            await send.send((contact, await self.rpc(contact, request, timeout)))

        # Closed synchronously at the end: `async with` on the channels would cost
        # two checkpoints per lookup for nothing.
        with send, receive:
            async with trio.open_nursery() as nursery:
                while True:
                    step = state.next()
                    while isinstance(step, Query):
                        nursery.start_soon(ask, step.contact)
                        step = state.next()
                    if isinstance(step, Done):
                        break
                    if absorb(*await receive.receive()):
                        break
                nursery.cancel_scope.cancel()

    # --- the DHT operations ----------------------------------------------

    async def find_value(self, key: bytes) -> tuple[bytes | None, LookupReport | None]:
        """The value under ``key``: from the local store, else from the network."""
        record = self.records.get(key, trio.current_time())
        if record is not None:
            return record.value, None
        outcome = await self.lookup(key, want_value=True)
        if outcome.value is not None and outcome.contacts and self._nursery is not None:
            # Paper section 2.3: cache the pair at the closest node seen that lacked it,
            # so later lookups for a popular key end sooner. Off the caller's path.
            holder = outcome.report.found_at
            closest = next(
                (c for c in outcome.contacts if holder is None or c.node_id != holder.node_id),
                None,
            )
            if closest is not None:
                cache = Store(key, outcome.value, ttl=outcome.ttl, cache=True)
                self._nursery.start_soon(self.rpc, closest, cache)
        return outcome.value, outcome.report

    async def publish(self, key: bytes, value: bytes) -> int:
        """Store as the original publisher: at the k closest, and remembered here for republishing.

        Returns how many of the k closest acknowledged (this node counts when
        it is among them).
        """
        now = trio.current_time()
        mine = Record(
            key,
            value,
            stored_at=now,
            expires_at=now + self.config.expire_interval,
            publisher=True,
        )
        return await self.store_at_closest(Store(key, value), own_copy=mine)

    async def store_at_closest(self, request: Store, *, own_copy: Record | None = None) -> int:
        """Find the k closest to the key and send them ``request``.

        ``own_copy`` is kept locally (it counts as an acknowledgement when this
        node is among the k closest).
        """
        outcome = await self.lookup(request.key)
        targets = outcome.contacts
        acks = 0
        if own_copy is not None and await self.records.put(own_copy):
            own = distance(self.node_id, request.key)
            if count_nearer(targets, request.key, own) < self.config.k and not self.client_only:
                targets = targets[: self.config.k - 1]
                acks += 1
        return acks + await self.send_stores(targets, request)

    async def send_stores(self, contacts: Iterable[Contact], request: Store) -> int:
        """Send one STORE to each contact at once; return how many acknowledged."""
        acks = 0

        async def store_at(contact: Contact) -> None:
            nonlocal acks
            # Await first: `acks += await ...` would read acks before the await.
            reply = await self.rpc(contact, request)
            acks += isinstance(reply, Stored)

        async with trio.open_nursery() as nursery:
            for contact in contacts:
                nursery.start_soon(store_at, contact)
        return acks

    async def store_batch(self, contact: Contact, stores: Sequence[Store]) -> int:
        """Send ``stores`` to one contact, many pairs per message; return how many it kept.

        Batches hold at most ``MAX_BATCH_PAIRS`` pairs and half a frame of
        values. A peer that does not know ``store_many`` gets one STORE per pair;
        one that fails gets nothing more this time.
        """
        acks = 0
        for batch in _batches(stores, self.config.max_frame_size // 2):
            if len(batch) > 1:
                reply = await self.rpc(contact, StoreMany(tuple(batch)))
                if isinstance(reply, StoredMany) and len(reply.results) == len(batch):
                    acks += reply.results.count(0)
                    continue
                if not (isinstance(reply, ErrorReply) and reply.code is ErrorCode.UNSUPPORTED):
                    return acks
            # One pair, or a peer that does not know store_many: one STORE each.
            for store in batch:
                single = await self.rpc(contact, store)
                if single is None:
                    return acks
                acks += isinstance(single, Stored)
        return acks

    async def forget(self, key: bytes) -> bool:
        """Drop the local copy (and with it the duty to republish); ``True`` if held."""
        return await self.records.remove(key)

    async def bootstrap(self, addresses: Sequence[Address]) -> list[Contact]:
        """Join through ``addresses``: ping them, then look up the own id (paper 2.3).

        Raises ``BootstrapError`` when none answers.
        """
        answered: list[Contact] = []

        async def try_peer(address: Address) -> None:
            contact = await self.ping_address(address)
            if contact is not None:
                answered.append(contact)

        with trio.move_on_after(self.config.bootstrap_timeout):
            async with trio.open_nursery() as nursery:
                for address in addresses:
                    nursery.start_soon(try_peer, address)
        if not answered:
            tried = ", ".join(format_address(a) for a in addresses) or "(none)"
            raise BootstrapError(f"no bootstrap peer answered; tried {tried}")
        with trio.move_on_after(self.config.bootstrap_timeout):
            await self.lookup(self.node_id)
            await self.refresh_far_buckets()
        return answered

    async def refresh_far_buckets(self) -> None:
        """Look up a random id in every bucket but the own one (joining, paper 2.3)."""
        for bucket in list(self.table.buckets):
            if bucket.low == 0:
                continue
            target = random_id_at_distance(self.node_id, bucket.low, bucket.high, self.rng)
            await self.lookup(target)


def _batches(stores: Sequence[Store], max_bytes: int) -> list[list[Store]]:
    """``stores`` cut into runs of at most ``MAX_BATCH_PAIRS`` pairs and about ``max_bytes``."""
    batches: list[list[Store]] = []
    batch: list[Store] = []
    size = 0
    for store in stores:
        # 64 bytes covers a pair's key, ttl and CBOR framing.
        cost = len(store.value) + 64
        if batch and (len(batch) == MAX_BATCH_PAIRS or size + cost > max_bytes):
            batches.append(batch)
            batch, size = [], 0
        batch.append(store)
        size += cost
    if batch:
        batches.append(batch)
    return batches


def _ttl_left(record: Record, now: float) -> int:
    return max(0, math.ceil(record.expires_at - now))
