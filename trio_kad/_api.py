"""The ``Dht`` handle ``open_dht`` (``_open``) yields: the public API of one node."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cbor2
import trio

from ._address import parse_addresses
from ._bucket import ContactInfo
from ._codec import decode_value
from ._config import Config
from ._errors import ProtocolError, StoreError, raise_single
from ._ids import Address, key_id
from ._listeners import ListenerStatistics
from ._messages import MAX_TTL, SignedPart
from ._node import LookupReport, Node
from ._provider_ops import (
    announce,
    find_providers,
    iterate_providers,
)
from ._providers import Provider
from ._records import value_fits
from ._signed import SignedRecord, SigningKey, check_signed_arguments, signed_key
from ._signed_ops import find_immutable, find_signed, publish_immutable, publish_signed
from ._storing import publish
from ._transport import TransportStatistics
from ._watching import Updates, Watch, plain_value

T = TypeVar("T")

log = logging.getLogger("trio_kad")


@dataclass(frozen=True, slots=True)
class DhtStatistics:
    """A snapshot of a node's counters."""

    contacts: int
    """Contacts in the routing table."""
    buckets: int
    records: int
    """Pairs held for the network."""
    lookups: int
    lookup_rpcs: int
    lookup_rounds: int
    requests_served: int
    stores_accepted: int
    stores_refused: int
    transport: TransportStatistics
    record_bytes: int
    """Bytes of the values held, all records together."""
    bans: int
    """Peers banned right now."""
    # --- provider sets (issue 17)
    provider_entries: int = 0
    """Provider entries held for the network, all topics together."""
    providers_refused: int = 0
    """Announcements and replicated entries refused (full topic, over quota, ...)."""
    # --- watching a key (issue 18)
    listeners: ListenerStatistics = field(default_factory=ListenerStatistics)
    """This node as a holder: listeners held, LISTENs accepted and refused, pushes."""
    watches: int = 0
    """Watches this node runs now."""
    pushes_unsolicited: int = 0
    """Pushes received for no watch of ours (answered ``NOT_LISTENING``)."""
    pushes_refused: int = 0
    """Pushed pairs that failed the checks a FIND_VALUE answer gets."""


class Dht:
    """A running node. Get one from ``open_dht``; it is valid inside that block only."""

    def __init__(self, node: Node, address: Address | None) -> None:
        self._node = node
        self._address = address

    @property
    def node_id(self) -> bytes:
        """This node's 32-byte id."""
        return self._node.node_id

    @property
    def address(self) -> Address:
        """The ``(host, port)`` actually bound.

        Raises ``RuntimeError`` for a client-only node, which does not listen.
        """
        if self._address is None:
            raise RuntimeError("a client-only node does not listen, so it has no address")
        return self._address

    @property
    def client_only(self) -> bool:
        """True when this node only asks and is never put into others' routing tables."""
        return self._node.client_only

    @property
    def config(self) -> Config:
        return self._node.config

    async def set(self, key: str | bytes, value: Any) -> int:
        """Store ``value`` under ``key`` on the k nodes closest to the key.

        Returns how many nodes acknowledged (the local node counts when it is
        among the k closest). Raises ``ValueError`` for a ``None`` value or one
        whose CBOR encoding exceeds ``Config.max_value_size`` (before any I/O),
        and ``StoreError`` when no node accepted it or when this node cannot
        keep the copy it republishes from (its own pairs fill its store; pairs
        it holds for others make room).
        """
        ident = key_id(key)
        encoded = self._encode(value)
        acks = await publish(self._node, ident, encoded)
        if acks == 0:
            raise StoreError(f"no node accepted the value for key {key!r}")
        return acks

    async def get(self, key: str | bytes, *, quorum: int = 1) -> Any:
        """The value under ``key``, looked up locally then on the network; ``None`` if absent.

        A copy that is not valid CBOR counts as absent where it is held. With
        ``quorum=q`` above 1, returns only a value that q distinct holders
        returned byte for byte (this node's own copy counts as one), and raises
        ``QuorumError`` when the lookup found the key but fewer agreed.
        """
        if isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1:
            raise ValueError(f"quorum must be an int >= 1, got {quorum!r}")
        value, _ = await self._node.find_value(key_id(key), quorum=quorum)
        return None if value is None else _decode(value)

    async def delete(self, key: str | bytes) -> bool:
        """Stop publishing ``key`` from this node and drop the local copy.

        A DHT cannot recall copies: the nodes that hold the pair keep serving
        it until it expires, ``Config.expire_interval`` after its last
        publication. Returns whether this node held the key.
        """
        return await self._node.forget(key_id(key))

    # --- signed and immutable records (SPEC "Records") ----------------------

    async def put_signed(
        self,
        key: SigningKey,
        value: Any,
        *,
        salt: bytes = b"",
        seq: int | None = None,
        cas: int | None = None,
    ) -> int:
        """Publish ``value`` as the signed record of ``key`` under ``salt``; return the acks.

        The record lives at SHA-256(public key || salt). ``seq=None``: one more
        than the highest seq found on the network (0 when none). ``cas=n``:
        only if the seq held is n. Raises ``ValueError`` for a bad salt, seq,
        cas or value (before any I/O), ``StaleSequence`` when the storing nodes
        hold a higher seq (or this seq with another value), ``CasMismatch``
        when ``cas`` is not the seq held, ``StoreError`` when nobody answered.
        """
        acks, _ = await self._put_signed(key, value, salt=salt, seq=seq, cas=cas)
        return acks

    async def _put_signed(
        self, key: SigningKey, value: Any, *, salt: bytes, seq: int | None, cas: int | None
    ) -> tuple[int, int]:
        """``put_signed``, also returning the seq used (for the command line)."""
        if not isinstance(key, SigningKey):
            raise TypeError(f"key must be a SigningKey, not {type(key).__name__}")
        check_signed_arguments(salt, seq, cas)
        encoded = self._encode(value)
        return await publish_signed(self._node, key, encoded, salt=salt, seq=seq, cas=cas)

    async def get_signed(self, public_key: bytes, *, salt: bytes = b"") -> SignedRecord | None:
        """The signed record of ``public_key`` under ``salt`` with the highest valid seq met.

        Every holder's record is verified; forged, mis-keyed and unsigned
        answers are misses. ``None`` when no valid record was found.
        """
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise ValueError("public_key must be 32 bytes")
        check_signed_arguments(salt, None)
        found = await find_signed(self._node, signed_key(public_key, salt))
        if found is None:
            return None
        value, signed = found
        return SignedRecord(_decode(value), signed.seq, public_key, salt, signed.signature)

    async def put_immutable(self, value: Any) -> bytes:
        """Store ``value`` at the SHA-256 of its CBOR encoding; return those 32 bytes."""
        return await publish_immutable(self._node, self._encode(value))

    async def get_immutable(self, ident: bytes) -> Any:
        """The value whose encoding hashes to ``ident``, or ``None``; other values are misses."""
        if not isinstance(ident, bytes) or len(ident) != 32:
            raise ValueError("ident must be 32 bytes")
        value = await find_immutable(self._node, ident)
        return None if value is None else _decode(value)

    # --- provider sets (SPEC "Finding peers") ----------------------------------

    async def announce(self, topic: str | bytes, *, port: int | None = None) -> int:
        """Announce this node as a provider of ``topic`` at the k closest; return the acks.

        ``port``: the service's port (``None``: this node's own listening port;
        a client-only node must give one). Holders record the host the
        announcement comes from. Re-announced every
        ``Config.provider_reannounce_interval`` while the ``open_dht`` block
        runs, until ``unannounce``. Raises ``ValueError`` for a bad port
        (before any I/O), ``StoreError`` when no node accepted it.
        """
        if port is None:
            if self._address is None:
                raise ValueError("a client-only node must give the port it provides on")
            port = self._address[1]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"port must be an int in 1..65535, got {port!r}")
        node, ident = self._node, key_id(topic)
        acks = await announce(node, ident, port, node.own_host)
        interval = node.config.provider_reannounce_interval
        node.announced[ident] = (port, trio.current_time() + interval)
        return acks

    async def unannounce(self, topic: str | bytes) -> None:
        """Stop re-announcing ``topic`` and drop this node's own entry, if it holds one.

        The other holders keep the entry until it expires
        (``Config.provider_lifetime`` after the last announcement).
        """
        ident = key_id(topic)
        self._node.announced.pop(ident, None)
        self._node.providers.remove(ident, self._node.node_id)
        await trio.lowlevel.checkpoint()

    async def find_providers(self, topic: str | bytes, *, limit: int = 20) -> list[Provider]:
        """Up to ``limit`` providers of ``topic``, distinct by node id.

        A lookup toward the topic's key that merges the sets of the holders it
        meets and stops once it has ``limit`` providers each named by two
        holders (one holder's answer may be all made up). Those named by more
        holders come first, then the freshest.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        return await find_providers(self._node, key_id(topic), limit)

    def providers(self, topic: str | bytes, *, limit: int | None = None) -> AsyncIterator[Provider]:
        """Each provider of ``topic`` once, as the lookup meets it (the first one fast).

        Ends when the lookup does, or once ``limit`` providers were yielded.
        """
        bad = isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        if limit is not None and bad:
            raise ValueError(f"limit must be an int >= 1 or None, got {limit!r}")
        return iterate_providers(self._node, key_id(topic), limit or MAX_TTL)

    def get_local(self, key: str | bytes) -> Any:
        """The value under ``key`` if this node holds it, without any network traffic.

        Raises ``ProtocolError`` when the copy held is not valid CBOR (a node
        refuses such a STORE; an older data_dir may still hold one).
        """
        record = self._node.records.get(key_id(key), trio.current_time())
        return None if record is None else _decode(record.value)

    async def bootstrap(self, peers: Iterable[str | tuple[str, int]]) -> None:
        """Join (again) through ``peers``: ``"host:port"`` strings or ``(host, port)`` pairs.

        Returns once this node has looked itself up; the rest of its routing
        table fills in the background. Raises ``BootstrapError`` when none of
        them answers.
        """
        await self._node.bootstrap(parse_addresses(peers))

    @property
    def last_lookup(self) -> LookupReport | None:
        """Hops, RPCs and time of the most recent network lookup this node made."""
        recent = self._node.counters.recent_lookups
        return recent[-1] if recent else None

    def statistics(self) -> DhtStatistics:
        """Counters of this node and its transport."""
        node = self._node
        c = node.counters
        return DhtStatistics(
            contacts=len(node.table),
            buckets=len(node.table.buckets),
            records=len(node.records),
            lookups=c.lookups,
            lookup_rpcs=c.lookup_rpcs,
            lookup_rounds=c.lookup_rounds,
            requests_served=c.requests_served,
            stores_accepted=c.stores_accepted,
            stores_refused=c.stores_refused,
            transport=node.transport.statistics(),
            record_bytes=node.records.value_bytes,
            bans=node.table.bans_running(trio.current_time()),
            provider_entries=len(node.providers),
            providers_refused=sum(node.providers.refused.values()),
            listeners=dataclasses.replace(node.pusher.listeners.stats),
            watches=len(node.watches),
            pushes_unsolicited=node.watches.unsolicited,
            pushes_refused=node.watches.refused,
        )

    @property
    def recent_lookups(self) -> list[LookupReport]:
        """The most recent network lookups this node made (up to 100), oldest first."""
        return list(self._node.counters.recent_lookups)

    def routing_table(self) -> list[tuple[int, int, list[ContactInfo]]]:
        """The routing table by bucket, nearest first: distance range and contacts.

        Each bucket is ``(low, high, contacts)``: it covers distances from this
        node's id in ``[low, high)``; its contacts come least recently seen
        first, each with its last-seen time (Trio clock) and failures.
        """
        return [(b.low, b.high, b.entries) for b in self._node.table.buckets]

    def _encode(self, value: Any) -> bytes:
        if value is None:
            raise ValueError("None cannot be stored: get() returns None for a missing key")
        try:
            encoded = cbor2.dumps(value)
        except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
            raise ValueError(f"value is not CBOR-encodable: {exc}") from None
        limit = self._node.config.max_value_size
        if not value_fits(encoded, limit):
            raise ValueError(f"value is {len(encoded)} bytes encoded; the limit is {limit}")
        return encoded

    def __repr__(self) -> str:
        where = "client" if self._address is None else f"{self._address[0]}:{self._address[1]}"
        return f"<Dht {self.node_id.hex()[:12]} {where}>"

    # --- watching a key (issue 18) ------------------------------------------

    @asynccontextmanager
    async def watch(self, key: str | bytes) -> AsyncIterator[Updates[Any]]:
        """Watch ``key``: ``async with dht.watch(key) as updates: async for value in updates:``.

        Yields the current value first when one exists, then each newer one
        (a later publication) as it is stored at the nodes closest to the key,
        which push it here; never a value twice or out of order. A slow reader
        is not queued for: it gets the newest value when it next reads
        (a one-slot "latest" buffer), skipping those in between. While no
        holder accepts this node's LISTEN (a client-only node, or every holder
        at its listener limits) the watch polls every
        ``Config.watch_poll_interval`` instead. Leaving the block ends the watch.
        """
        async with self._watching(key_id(key), False, plain_value(_decode)) as updates:
            yield updates

    @asynccontextmanager
    async def watch_signed(
        self, public_key: bytes, *, salt: bytes = b""
    ) -> AsyncIterator[Updates[SignedRecord]]:
        """Watch a signed record, as ``watch`` does: ``SignedRecord``s of rising seq, verified."""
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise ValueError("public_key must be 32 bytes")
        check_signed_arguments(salt, None)

        def record(value: bytes, signed: SignedPart | None) -> SignedRecord:
            assert signed is not None  # a signed watch takes verified records only
            return SignedRecord(_decode(value), signed.seq, public_key, salt, signed.signature)

        async with self._watching(signed_key(public_key, salt), True, record) as updates:
            yield updates

    @asynccontextmanager
    async def _watching(
        self, key: bytes, signed: bool, convert: Callable[[bytes, SignedPart | None], T]
    ) -> AsyncIterator[Updates[T]]:
        watch = Watch(self._node, key, signed=signed)
        self._node.watches.add(watch)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch.run)
                try:
                    yield Updates(watch, convert)
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise_single(group)
        finally:
            self._node.watches.remove(watch)


def _decode(value: bytes) -> Any:
    try:
        return decode_value(value)
    except ValueError as exc:
        # Only a copy held before STOREs were checked can get here (``get_local``).
        raise ProtocolError("the value held is not valid CBOR") from exc
