"""Storing pairs: as their publisher, at the k closest, and in batches to one peer (Trio).

The writing half of the DHT operations, on top of a ``Node``'s lookups and
RPCs: ``Dht.set`` publishes, the upkeep tasks of ``_maintenance`` republish,
replicate and hand pairs over with ``store_batch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import trio

from ._duties import among_closest, batches
from ._errors import StoreError
from ._ids import Contact
from ._messages import ErrorCode, ErrorReply, Store, Stored, StoredMany, StoreMany
from ._newer import superseded
from ._records import Record

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["StoresSent", "keep_own", "publish", "send_stores", "store_at_closest", "store_batch"]


async def publish(node: Node, key: bytes, value: bytes, published: int | None = None) -> int:
    """Store as the original publisher: at the k closest, and remembered here for republishing.

    ``published`` is the pair's publication time: ``None`` for a new ``set``
    (now, by the node's wall clock); a republish passes the pair's own.
    Returns how many of the k closest acknowledged (this node counts when
    it is among them).
    """
    now = trio.current_time()
    when = node.wall_ms() if published is None else published
    mine = Record(
        key,
        value,
        stored_at=now,
        expires_at=now + node.config.expire_interval,
        publisher=True,
        published=when,
    )
    return await store_at_closest(node, Store(key, value, published=when), own_copy=mine)


async def store_at_closest(node: Node, request: Store, *, own_copy: Record | None = None) -> int:
    """Find the k closest to the key and send them ``request``.

    ``own_copy`` is kept locally first (see ``keep_own``; it counts as an
    acknowledgement when this node is among the k closest). When most of
    the k closest say a newer pair is out (``_newer.superseded``), the own
    copy is dropped: this node stops republishing it.
    """
    if own_copy is not None:
        await keep_own(node, own_copy)
    outcome = await node.lookup(request.key)
    targets = outcome.contacts
    acks = 0
    k = node.config.k
    mine = own_copy is not None and not node.client_only
    if mine and among_closest(node.node_id, request.key, targets, k):
        targets = targets[: k - 1]
        acks += 1
    sent = await send_stores(node, targets, request)
    if own_copy is not None and superseded(sent.superseded, acks + sent.answered):
        await _drop_superseded(node, own_copy)
    return acks + sent.acks


async def _drop_superseded(node: Node, own_copy: Record) -> None:
    """Forget ``own_copy`` unless a newer copy (or a new ``set``) replaced it meanwhile."""
    held = node.records.get(own_copy.key, trio.current_time())
    if held is not None and (held.value, held.published) == (own_copy.value, own_copy.published):
        await node.records.remove(own_copy.key)


class StoresSent(NamedTuple):
    """What the peers sent one STORE answered (``send_stores``)."""

    acks: int
    """Peers that stored it."""
    answered: int
    """Peers that answered at all, with anything."""
    superseded: int
    """Peers that refused it because they hold a pair published no earlier (SUPERSEDED)."""


async def keep_own(node: Node, record: Record) -> None:
    """Hold one of this node's own pairs, the one it republishes from.

    Quotas meant for others never refuse it (``RecordStore.put_own``).
    Raises ``StoreError`` when the node's own pairs alone fill the store.
    """
    if not await node.records.put_own(record):
        raise StoreError(
            "the local store has no room for this pair: this node's own pairs fill it"
            " (Config.max_records, Config.max_store_bytes)"
        )


async def send_stores(node: Node, contacts: Iterable[Contact], request: Store) -> StoresSent:
    """Send one STORE to each contact at once; say how they answered."""
    acks = answered = refusals = 0

    async def store_at(contact: Contact) -> None:
        nonlocal acks, answered, refusals
        # Await first: `acks += await ...` would read acks before the await.
        reply = await node.rpc(contact, request)
        answered += reply is not None
        acks += isinstance(reply, Stored)
        # A SUPERSEDED that names an older pair than this one is a lie: not counted.
        refusals += (
            isinstance(reply, ErrorReply)
            and reply.code is ErrorCode.SUPERSEDED
            and reply.published >= request.published
        )

    async with trio.open_nursery() as nursery:
        for contact in contacts:
            nursery.start_soon(store_at, contact)
    return StoresSent(acks, answered, refusals)


async def store_batch(node: Node, contact: Contact, stores: Sequence[Store]) -> int:
    """Send ``stores`` to one contact, many pairs per message; return how many it kept.

    Batches hold at most ``MAX_BATCH_PAIRS`` pairs and half a frame of
    values. A peer that does not know ``store_many`` gets one STORE per pair;
    one that fails gets nothing more this time.
    """
    acks = 0
    for batch in batches(stores, node.config.max_frame_size // 2):
        if len(batch) > 1:
            reply = await node.rpc(contact, StoreMany(tuple(batch)))
            if isinstance(reply, StoredMany) and len(reply.results) == len(batch):
                acks += reply.results.count(0)
                continue
            if not (isinstance(reply, ErrorReply) and reply.code is ErrorCode.UNSUPPORTED):
                return acks
        # One pair, or a peer that does not know store_many: one STORE each.
        for store in batch:
            single = await node.rpc(contact, store)
            if single is None:
                return acks
            acks += isinstance(single, Stored)
    return acks
