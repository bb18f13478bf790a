"""Storing pairs: as their publisher, at the k closest, and in batches to one peer (Trio).

The writing half of the DHT operations, on top of a ``Node``'s lookups and
RPCs: ``Dht.set`` publishes, the upkeep tasks of ``_maintenance`` republish,
replicate and hand pairs over with ``store_batch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import trio

from ._duties import among_closest, batches
from ._errors import StoreError
from ._ids import Contact
from ._messages import (
    ErrorCode,
    ErrorReply,
    Reply,
    SignedPart,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)
from ._newer import superseded
from ._records import Record

if TYPE_CHECKING:
    from ._node import Node

__all__ = [
    "keep_own",
    "publish",
    "send_collecting",
    "store_at_closest",
    "store_batch",
]


async def publish(
    node: Node,
    key: bytes,
    value: bytes,
    signed: SignedPart | None = None,
    published: int | None = None,
) -> int:
    """Store as the original publisher: at the k closest, and remembered here for republishing.

    ``published`` is the pair's publication time: ``None`` for a new ``set``
    (now, by the node's wall clock); a republish passes the pair's own.
    Returns how many of the k closest acknowledged (this node counts when
    it is among them). ``signed``: the pair is a signed record (``_signed``).
    """
    now = trio.current_time()
    when = node.wall_ms() if published is None else published
    mine = Record(
        key,
        value,
        stored_at=now,
        expires_at=now + node.config.expire_interval,
        publisher=True,
        signed=signed,
        published=when,
    )
    request = Store(key, value, signed=signed, published=when)
    return await store_at_closest(node, request, own_copy=mine)


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
    replies = await send_collecting(node, targets, request)
    if own_copy is not None and superseded(_superseding(replies, request), acks + len(replies)):
        await _drop_superseded(node, own_copy)
    return acks + sum(isinstance(reply, Stored) for reply in replies)


def _superseding(replies: list[Reply], request: Store) -> int:
    """How many ``replies`` say SUPERSEDED, naming a pair published no earlier than ``request``.

    One that names an older pair is a lie: not counted.
    """
    return sum(
        isinstance(reply, ErrorReply)
        and reply.code is ErrorCode.SUPERSEDED
        and reply.published >= request.published
        for reply in replies
    )


async def _drop_superseded(node: Node, own_copy: Record) -> None:
    """Forget ``own_copy`` unless a newer copy (or a new ``set``) replaced it meanwhile."""
    held = node.records.get(own_copy.key, trio.current_time())
    if held is not None and (held.value, held.published) == (own_copy.value, own_copy.published):
        await node.records.remove(own_copy.key)


async def keep_own(node: Node, record: Record) -> None:
    """Hold one of this node's own pairs, the one it republishes from.

    Quotas meant for others never refuse it (``RecordStore.put_own``).
    Raises ``StoreError`` when the node's own pairs alone fill the store.
    """
    held = node.records.get(record.key, trio.current_time())
    if not await node.records.put_own(record):
        raise StoreError(
            "the local store has no room for this pair: this node's own pairs fill it"
            " (Config.max_records, Config.max_store_bytes)"
        )
    node.pusher.stored(held, record)  # its listeners, if it holds the key for others too


async def send_collecting(node: Node, contacts: Iterable[Contact], request: Store) -> list[Reply]:
    """Send one STORE to each contact at once; the replies of those that answered."""
    replies: list[Reply] = []

    async def store_at(contact: Contact) -> None:
        reply = await node.rpc(contact, request)
        if reply is not None:
            replies.append(reply)

    async with trio.open_nursery() as nursery:
        for contact in contacts:
            nursery.start_soon(store_at, contact)
    return replies


async def store_batch(node: Node, contact: Contact, stores: Sequence[Store]) -> int:
    """Send ``stores`` to one contact, many pairs per message; return how many it kept.

    A pair the contact refuses as SUPERSEDED counts as kept: it holds a newer
    one of that key, so it needs no stand-in. Batches hold at most
    ``MAX_BATCH_PAIRS`` pairs and half a frame of values. A peer that does not
    know ``store_many`` gets one STORE per pair; one that fails gets nothing
    more this time.
    """
    acks = 0
    for batch in batches(stores, node.config.max_frame_size // 2):
        if len(batch) > 1:
            reply = await node.rpc(contact, StoreMany(tuple(batch)))
            if isinstance(reply, StoredMany) and len(reply.results) == len(batch):
                acks += sum(result in _HOLDS_IT for result in reply.results)
                continue
            if not (isinstance(reply, ErrorReply) and reply.code is ErrorCode.UNSUPPORTED):
                return acks
        # One pair, or a peer that does not know store_many: one STORE each.
        for store in batch:
            single = await node.rpc(contact, store)
            if single is None:
                return acks
            acks += isinstance(single, Stored) or (
                isinstance(single, ErrorReply) and single.code is ErrorCode.SUPERSEDED
            )
    return acks


_HOLDS_IT = (0, ErrorCode.SUPERSEDED)
"""``StoredMany`` results of a peer that holds the key after a ``store_batch``."""
