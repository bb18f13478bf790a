"""Publishing and reading signed and immutable records over a ``Node`` (Trio).

The pure rules are in ``_signed``; this is the I/O around them: the lookups
that check every value they meet, and the STOREs of a signed record with the
refusals turned into ``StaleSequence`` and ``CasMismatch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from ._duties import among_closest
from ._errors import CasMismatch, StaleSequence, StoreError
from ._ids import Contact, distance
from ._messages import ErrorCode, ErrorReply, FoundValue, Reply, SignedPart, Store, Stored
from ._records import Record
from ._search import LookupOutcome, Search
from ._signed import (
    Refusal,
    SigningKey,
    content_key,
    is_content_addressed,
    judge,
    signed_key,
    verify,
)
from ._storing import keep_own, publish, send_collecting
from ._values import acceptable_value

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["find_immutable", "find_signed", "publish_immutable", "publish_signed"]

_REFUSALS = (ErrorCode.STALE_SEQUENCE, ErrorCode.CAS_MISMATCH)


async def find_signed(node: Node, key: bytes) -> tuple[bytes, SignedPart] | None:
    """The highest valid signed record under ``key``: the local copy and every holder's.

    A FIND_VALUE lookup that checks each answer (signature, key, limits) and,
    rather than stop at the first, asks on to the k closest. A forged,
    mis-keyed or unsigned answer is that holder's miss.
    """
    found, _ = await _find_signed(node, key)
    return found


async def _find_signed(
    node: Node, key: bytes
) -> tuple[tuple[bytes, SignedPart] | None, LookupOutcome]:
    def rank(reply: FoundValue) -> int | None:
        if reply.signed is None or not verify(key, reply.value, reply.signed):
            return None
        return reply.signed.seq

    outcome = await Search(node, key, want_value=True, rank=rank, collect=True).run()
    best = None
    if outcome.value is not None and outcome.signed is not None:
        best = (outcome.value, outcome.signed)
    local = node.records.get(key, trio.current_time())
    if (
        local is not None
        and local.signed is not None
        and acceptable_value(local.value, node.config.max_value_size)
        and verify(key, local.value, local.signed)
        and (best is None or local.signed.seq > best[1].seq)
    ):
        best = (local.value, local.signed)
    return best, outcome


async def publish_signed(
    node: Node,
    signing_key: SigningKey,
    value: bytes,
    *,
    salt: bytes,
    seq: int | None,
    cas: int | None,
) -> tuple[int, int]:
    """Sign ``value`` (encoded) and store it at the k closest; return (acks, seq used).

    ``seq=None``: one more than the highest seq found. With ``cas``, the
    closest node that answers decides first (see ``_arbitrate``). Raises
    ``StaleSequence`` or ``CasMismatch`` when the storing nodes refuse it.
    The caller (``Dht._put_signed``) has checked ``salt``, ``seq`` and ``cas``.
    """
    key = signed_key(signing_key.public_key, salt)
    found, outcome = await _find_signed(node, key)
    if seq is None:
        seq = 0 if found is None else found[1].seq + 1
    signed = signing_key.sign(salt, seq, value)  # checks the seq found + 1 too
    store = Store(key, value, signed=signed, cas=cas)
    k = node.config.k
    contacts = outcome.contacts[:k]
    mine = not node.client_only and among_closest(node.node_id, key, contacts, k)
    if mine:
        contacts = contacts[: k - 1]
    acks = 0
    if cas is not None:
        contacts, by_me = await _arbitrate(node, store, contacts, mine)
        acks, mine = 1, mine and not by_me
        store = Store(key, value, signed=signed)  # the rest follow the arbiter's decision
    replies = await send_collecting(node, contacts, store)
    if mine:
        replies.append(_local_verdict(node, store))
    acks += sum(isinstance(reply, Stored) for reply in replies)
    refused = [r for r in replies if isinstance(r, ErrorReply) and r.code in _REFUSALS]
    if refused and len(refused) >= acks:
        raise StaleSequence(max((r.seq for r in refused if r.seq is not None), default=None))
    if acks == 0:
        raise StoreError("no node accepted the signed record")
    await _keep_signed(node, store)
    return acks, seq


async def _arbitrate(
    node: Node, store: Store, contacts: Sequence[Contact], mine: bool
) -> tuple[list[Contact], bool]:
    """Compare-and-swap at the closest node that answers; the contacts left for the rest.

    Two writers racing with the same ``cas`` both ask the closest live node
    first, and it takes exactly one of them atomically: the loser raises
    ``CasMismatch`` before storing anywhere, the winner then stores at the
    others without ``cas``. Returns the contacts left to store at, and
    whether this node was the arbiter.
    """
    key = store.key
    order = list(contacts)
    if mine and (not order or distance(node.node_id, key) < distance(order[0].node_id, key)):
        reply = await _keep_signed(node, store)
        _raise_refusal(reply)
        if isinstance(reply, Stored):
            return order, True
    for at, contact in enumerate(order):
        answer = await node.rpc(contact, store)
        _raise_refusal(answer)
        if isinstance(answer, Stored):
            return order[at + 1 :], False
    raise StoreError("no node answered the compare-and-swap")


def _raise_refusal(reply: Reply | None) -> None:
    if isinstance(reply, ErrorReply):
        if reply.code is ErrorCode.CAS_MISMATCH:
            raise CasMismatch(reply.seq)
        if reply.code is ErrorCode.STALE_SEQUENCE:
            raise StaleSequence(reply.seq)


def _local_verdict(node: Node, store: Store) -> Reply:
    """What this node, as a storing node, answers ``store`` (``Stored`` or the refusal)."""
    verdict = judge(store, node.records.get(store.key, trio.current_time()))
    if isinstance(verdict, Refusal):
        return ErrorReply(verdict.code, verdict.message, verdict.seq)
    return Stored()


async def _keep_signed(node: Node, store: Store) -> Reply:
    """The publisher's own copy, which it republishes from: kept by the same rules as a STORE."""
    reply = _local_verdict(node, store)
    if not isinstance(reply, Stored):
        return reply
    now = trio.current_time()
    expires_at = now + node.config.expire_interval
    record = Record(store.key, store.value, now, expires_at, publisher=True, signed=store.signed)
    await keep_own(node, record)
    return Stored()


async def publish_immutable(node: Node, value: bytes) -> bytes:
    """Store ``value`` (encoded) at its SHA-256; return that key."""
    key = content_key(value)
    if await publish(node, key, value) == 0:
        raise StoreError("no node accepted the immutable record")
    return key


async def find_immutable(node: Node, key: bytes) -> bytes | None:
    """The encoded value whose SHA-256 is ``key``; a holder with another value is a miss."""
    local = node.records.get(key, trio.current_time())
    if local is not None and is_content_addressed(key, local.value):
        return local.value

    def rank(reply: FoundValue) -> int | None:
        return 0 if is_content_addressed(key, reply.value) else None

    outcome = await Search(node, key, want_value=True, rank=rank).run()
    return outcome.value
