"""A Kademlia node: its routing table's upkeep, its RPCs and the DHT operations (Trio).

Serving the four RPCs lives in ``_serve``, the lookup driver in ``_search``,
the upkeep decisions in ``_duties`` and the timers in ``_maintenance``; a
``Node`` joins them over one transport.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

from ._address import AddressPolicy, format_address, listening_scope, valid_host
from ._bucket import FAILURES_BEFORE_REPLACEMENT
from ._config import Config
from ._errors import BootstrapError, PeerMisbehaved, QuorumError, TransportError
from ._ids import Address, Contact
from ._messages import (
    Ping,
    Pong,
    Reply,
    Request,
    RequestFrame,
    Store,
)
from ._newer import newer, trusted_locally
from ._providers import ProviderTable
from ._pushing import Pusher
from ._records import MemoryStore, RecordStore
from ._routing import Added, PingOldest, RoutingTable
from ._rtt import RttTable
from ._search import LookupOutcome, LookupReport, Search
from ._serve import Server
from ._transport import Transport
from ._values import well_formed_value
from ._watching import Watches

__all__ = ["LookupOutcome", "LookupReport", "Node", "NodeCounters"]

log = logging.getLogger("trio_kad.node")


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
        wall_clock: Callable[[], float] | None = None,
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
        self.rtt = RttTable[Contact](
            config.min_rpc_timeout, config.rpc_timeout, config.rtt_tracked_contacts
        )
        """Round trips of answered RPCs, per contact and node-wide: how long a lookup waits."""
        self.port: int | None = None
        self.addresses = AddressPolicy("127.0.0.1")
        """Which hosts peers may name to us, set by ``run`` from the address it listens on.

        Nothing arrives before ``run``; until then, ``open_dht``'s default host's.
        """
        self._nursery: trio.Nursery | None = None
        self._checking: set[bytes] = set()
        # Requester id -> (until when it counts as just seen, its port, its host).
        self._recent_requesters: dict[bytes, tuple[float, int, str]] = {}
        # Newcomers to hand pairs to (paper 2.5), drained by one maintenance task;
        # bounded so a join storm cannot queue unbounded work: replication catches up.
        self.newcomers_in, self.newcomers_out = trio.open_memory_channel[Contact](
            config.handoff_queue_size
        )
        # One token per join: the far buckets are refreshed by a maintenance task, so
        # joining returns once the node has looked itself up. Two joins in a row need
        # one refresh, hence room for a single token.
        self.joined_in, self.joined_out = trio.open_memory_channel[None](1)
        self.on_checkpoint: Callable[[], Awaitable[None]] | None = None
        """Called after each refresh round (saves contacts when the node is durable)."""
        if wall_clock is None:
            # The wall clock as the Trio clock moves it, so MockClock tests move it too.
            wall_start, trio_start = time.time(), trio.current_time()
            wall_clock = lambda: wall_start + (trio.current_time() - trio_start)  # noqa: E731
        self.wall_clock: Callable[[], float] = wall_clock
        """Seconds since the Unix epoch, which dates the pairs this node publishes."""
        # --- provider sets (issue 17)
        self.providers = ProviderTable(
            lifetime=config.provider_lifetime,
            max_per_topic=config.max_providers_per_topic,
            max_topics=config.max_provider_topics,
            max_per_origin=config.max_providers_per_ip,
            max_ids_per_origin=config.max_provider_ids_per_ip,
        )
        """Provider sets held for the network (``_provider_ops.ProviderServer``)."""
        self.announced: dict[bytes, tuple[int, float]] = {}
        """Topics this node announces: key -> (port, when to announce again)."""
        self.own_host: str | None = None
        """The host this node listens on (``None`` until ``run``, and for a client-only node)."""
        # Watching a key (issue 18): this node's watches, and its listeners as a holder.
        self.watches = Watches()
        self.pusher = Pusher(self)
        if client_only:
            transport.push_handler = self.watches.serve_client
        self.server = Server(self, self._saw_requester)
        self.handle_request: Callable[[RequestFrame, Address], Awaitable[Reply]] = (
            self.server.handle_request
        )
        """The transport's handler: answers one request (see ``Server.handle_request``)."""

    def spawn(self, job: Callable[..., Awaitable[None]], *args: object) -> bool:
        """Run ``job(*args)`` in the node's nursery; False when the node is not running."""
        if self._nursery is None:
            return False
        try:
            self._nursery.start_soon(job, *args)
        except RuntimeError:  # the nursery is closing
            return False
        return True

    def wall_ms(self) -> int:
        """``wall_clock`` in whole milliseconds: a ``published`` time (``Store.published``)."""
        return int(self.wall_clock() * 1000)

    async def run(
        self, host: str, port: int, *, task_status: trio.TaskStatus[Address | None]
    ) -> None:
        """Start the transport, report the bound address, serve until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                handler = None if self.client_only else self.handle_request
                address = await nursery.start(
                    self.transport.run, self.config, self.node_id, host, port, handler
                )
                if address is not None:
                    self.port, self.own_host = address[1], address[0]
                self.addresses = AddressPolicy(host if address is None else address[0])
                task_status.started(address)
        finally:
            self.watches.close()  # a watch read elsewhere ends with the node

    # --- routing table upkeep (paper section 2.2) -----------------------------

    def _saw_requester(self, node_id: bytes, host: str, port: int) -> None:
        """A listening peer sent a valid request: record it, unless it did a moment ago."""
        if not self.addresses.allows(host):
            return  # served, but never dialed back: a local proxy must not become a contact
        now = trio.current_time()
        recent = self._recent_requesters
        seen = recent.get(node_id)
        if seen is not None and now < seen[0] and seen[1] == port and seen[2] == host:
            return
        if len(recent) >= self.config.recent_requesters:
            recent.clear()
        recent[node_id] = (now + self.config.requester_reseen_interval, port, host)
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
        elif isinstance(result, Added) and (len(self.records) or self.providers.topics):
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
        # A second ping (its timeout backed off) before the newcomer takes the place:
        # one lost packet must not evict a long-lived contact (paper section 2.2).
        try:
            for _ in range(FAILURES_BEFORE_REPLACEMENT):
                if await self.rpc(oldest, Ping(), self.rtt.timeout(oldest)) is not None:
                    return
                if not self._holds(oldest):
                    return
        finally:
            self._checking.discard(oldest.node_id)

    # --- outgoing RPCs ------------------------------------------------------

    async def rpc(
        self, contact: Contact, body: Request, timeout: float | None = None
    ) -> Reply | None:
        """Send one request to a contact under ``timeout`` (``Config.rpc_timeout``).

        A reply is a round-trip sample for the contact's and the node-wide
        estimate (``rtt``); a timeout backs the contact's timeout off.

        Returns the reply, or ``None`` when the contact failed: a timeout, a
        transport error, garbage, or a reply from another id than the one asked.
        The contact may be one another peer merely named, so a failure is held
        against an id only where the routing table holds that id at that same
        address (a peer answers for its own address, never for a pairing a
        third party made up).
        """
        reply = None
        started = trio.current_time()
        with trio.move_on_after(self.config.rpc_timeout if timeout is None else timeout) as scope:
            try:
                reply = await self.transport.request(contact.address, self.node_id, self.port, body)
            except PeerMisbehaved as exc:
                # Garbage or an unexpected frame: nothing said there can be trusted. The id
                # the table holds at that address is the one speaking there; it leaves the
                # table and may not come back for a while.
                log.debug("rpc to %r: %s", contact, exc)
                if self._holds(contact):
                    self.ban(contact)
                return None
            except TransportError as exc:
                log.debug("rpc to %r failed: %s", contact, exc)
        if reply is None:
            if scope.cancelled_caught:
                self.rtt.timed_out(contact)
            if self._holds(contact):
                self.table.mark_failed(contact.node_id)
                # Its next request must count again: it may have left the table.
                self._recent_requesters.pop(contact.node_id, None)
            return None
        if reply.sender_id != contact.node_id:
            # Another node listens there: the pairing of id and address is wrong (the
            # node moved or restarted, or a third party made it up), not the id.
            log.debug("%r answered as %s", contact, reply.sender_id.hex()[:12])
            if self._holds(contact):
                self.table.remove(contact.node_id)
                self._recent_requesters.pop(contact.node_id, None)
            return None
        if not isinstance(body, Store):
            # STOREs may wait on a disk; the others measure the network and the peer.
            self.rtt.observe(contact, trio.current_time() - started)
        self.saw_alive(contact)
        return reply.body

    def _holds(self, contact: Contact) -> bool:
        """Whether the routing table holds ``contact``'s id at ``contact``'s address.

        In a bucket, or waiting in its replacement cache.
        """
        node_id = contact.node_id
        known = self.table.get(node_id)
        if known is not None:
            return known.port == contact.port and known.host == contact.host
        return contact in self.table.bucket_for(node_id).replacements

    def ban(self, contact: Contact) -> None:
        """Drop a lying or broken contact and refuse it for ``Config.ban_duration``."""
        self._recent_requesters.pop(contact.node_id, None)
        now = trio.current_time()
        self.table.ban(contact.node_id, now + self.config.ban_duration, now=now)

    async def ping_address(self, address: Address) -> Contact | None:
        """Ping an address whose node id is not known yet (bootstrap peers)."""
        started = trio.current_time()
        with trio.move_on_after(self.config.rpc_timeout):
            try:
                reply = await self.transport.request(address, self.node_id, self.port, Ping())
            except TransportError as exc:
                log.debug("bootstrap peer %s:%d failed: %s", address[0], address[1], exc)
                return None
            if not isinstance(reply.body, Pong) or reply.sender_id == self.node_id:
                return None
            contact = Contact(reply.sender_id, address[0], address[1])
            # The first sample of a join: its lookup's timeouts adapt from here, not 2 s.
            self.rtt.observe(contact, trio.current_time() - started)
            self.saw_alive(contact)
            return contact
        return None

    # --- lookups (paper section 2.3) ------------------------------------------

    async def lookup(
        self, target: bytes, *, want_value: bool = False, quorum: int = 1, held: bytes | None = None
    ) -> LookupOutcome:
        """Iterative lookup with at most ``alpha`` RPCs in flight per path (see ``Search``)."""
        return await Search(self, target, want_value=want_value, quorum=quorum, held=held).run()

    # --- the DHT operations ----------------------------------------------

    async def find_value(
        self, key: bytes, *, quorum: int = 1
    ) -> tuple[bytes | None, LookupReport | None]:
        """The value under ``key``: from the local store, else from the network.

        With ``quorum`` above 1, only a value that many distinct holders
        returned alike (the local copy counts as one); ``QuorumError`` when
        some holders were found but too few agreed.
        """
        record = self.records.get(key, trio.current_time())
        # A copy that will not decode (kept before STOREs were checked) is a miss.
        if record is not None and not well_formed_value(record.value):
            record = None
        if record is not None and quorum == 1 and trusted_locally(record, self.table):
            return record.value, None
        held = None if record is None else record.value
        outcome = await self.lookup(key, want_value=True, quorum=quorum, held=held)
        if outcome.value is None and outcome.agreed:
            raise QuorumError(outcome.agreed, quorum)
        # The local copy, unless the network's is newer (issue 16).
        if (
            record is not None
            and quorum == 1
            and (
                outcome.value is None
                or newer(record.published, record.value, outcome.published, outcome.value)
            )
        ):
            return record.value, outcome.report
        if outcome.value is not None and outcome.contacts and self._nursery is not None:
            # Paper section 2.3: cache the pair at the closest node seen that lacked it,
            # so later lookups for a popular key end sooner. Off the caller's path.
            holder = outcome.report.found_at
            closest = next(
                (c for c in outcome.contacts if holder is None or c.node_id != holder.node_id),
                None,
            )
            if closest is not None:
                cache = Store(
                    key, outcome.value, ttl=outcome.ttl, cache=True, published=outcome.published
                )
                self._nursery.start_soon(self.rpc, closest, cache)
        return outcome.value, outcome.report

    async def forget(self, key: bytes) -> bool:
        """Drop the local copy (and with it the duty to republish); ``True`` if held."""
        return await self.records.remove(key)

    async def bootstrap(self, addresses: Sequence[Address]) -> list[Contact]:
        """Join through ``addresses``: ping them, then look up the own id (paper 2.3).

        Returns once the own-id lookup is over (or ``Config.bootstrap_timeout``
        has passed); the far buckets are refreshed afterwards by a maintenance
        task (``_maintenance.run_join_refresh``). A client-only node returns
        once a peer answered: nobody routes to it, so its own neighbourhood is
        nobody's business, and its first lookup starts from the peers that
        answered (a command-line ``get`` is one lookup, not two). Raises
        ``BootstrapError`` when none answers.
        """
        if self.client_only and addresses:
            # Listening nowhere, it belongs to the network it joins: the widest policy
            # any of the peers the user named would have, as if it listened beside them.
            host = min((a[0] for a in addresses), key=listening_scope)
            self.addresses = AddressPolicy(host)
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
        if not self.client_only:
            with trio.move_on_after(self.config.bootstrap_timeout):
                await self.lookup(self.node_id)
        with contextlib.suppress(trio.WouldBlock):
            self.joined_in.send_nowait(None)  # one refresh is already due otherwise
        return answered
