"""The public entry point: ``open_dht`` starts a node and yields its ``Dht`` handle."""

from __future__ import annotations

import logging
import os
import random
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial

import trio

from ._address import parse_addresses
from ._api import Dht
from ._config import Config
from ._errors import BootstrapError, raise_single
from ._ids import check_id
from ._maintenance import (
    leave,
    run_expire,
    run_handoff,
    run_join_refresh,
    run_refresh,
    run_replicate,
    run_republish,
)
from ._node import Node
from ._persist import DataDir
from ._persist_providers import load_providers, save_providers
from ._provider_ops import run_provider_upkeep, run_reannounce
from ._transport import Transport

__all__ = ["open_dht", "start_maintenance"]

log = logging.getLogger("trio_kad")


@asynccontextmanager
async def open_dht(
    host: str = "127.0.0.1",
    port: int = 0,
    bootstrap: Iterable[str | tuple[str, int]] = (),
    *,
    node_id: bytes | None = None,
    config: Config | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    transport: Transport | None = None,
    client_only: bool = False,
    rng: random.Random | None = None,
) -> AsyncIterator[Dht]:
    """Start a node, join the network through ``bootstrap``, yield a ``Dht``.

    With an empty ``bootstrap`` the node starts a new network. With peers, it
    is yielded once it has looked itself up (paper 2.3); the far buckets of its
    routing table are refreshed in the background. With peers of which none
    answers, ``BootstrapError`` is raised. ``client_only`` nodes do
    not listen and are never added to other nodes' routing tables: right for
    short-lived processes that only set and get. ``rng`` makes every random
    choice reproducible (tests, simulations). Leaving the block cancels every
    background task and closes every connection; leaving it normally with
    ``Config.handoff_on_exit`` first hands the pairs held to the nodes that
    take this one's place.
    """
    config = (config if config is not None else Config()).for_host(host)
    rng = rng if rng is not None else random.Random(secrets.randbits(64))
    peers = parse_addresses(bootstrap)
    if node_id is not None:
        check_id(node_id, "node_id")
    if transport is None:
        from ._tcp import TcpTransport

        transport = TcpTransport()
    data: DataDir | None = None
    node: Node | None = None
    if data_dir is not None:
        data = await DataDir.open(
            data_dir,
            max_records=config.max_records,
            max_bytes=config.max_store_bytes,
            max_per_origin=config.max_records_per_ip,
            node_id=node_id,
        )
        node_id = data.node_id
    try:
        node = Node(
            node_id if node_id is not None else secrets.token_bytes(32),
            config,
            transport,
            rng=rng,
            store=data.records if data is not None else None,
            client_only=client_only,
        )
        if data is not None:
            node.on_checkpoint = partial(_checkpoint, node, data)
            await load_providers(data, node.providers)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(node.run, host, port)
            if peers:
                await node.bootstrap(peers)
            elif data is not None and (saved := data.load_contacts()):
                # Rejoin through the contacts saved last time; if none of them
                # answers, carry on as the first node of a network.
                try:
                    await node.bootstrap([c.address for c in saved])
                except BootstrapError as exc:
                    log.warning("could not rejoin through saved contacts: %s", exc)
            await start_maintenance(nursery, node)
            try:
                yield Dht(node, address)
                if config.handoff_on_exit and not client_only:
                    await leave(node)  # left normally: a graceful leave
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_single(group)
    finally:
        if data is not None:
            with trio.CancelScope(shield=True):
                try:
                    if node is not None:
                        await _checkpoint(node, data)
                finally:
                    await data.aclose()


async def _checkpoint(node: Node, data: DataDir) -> None:
    await _save_contacts(node, data)
    await save_providers(data, node.providers)


async def _save_contacts(node: Node, data: DataDir) -> None:
    await data.save_contacts([e for bucket in node.table.buckets for e in bucket.entries])


async def start_maintenance(nursery: trio.Nursery, node: Node) -> None:
    """Start the paper's timers; a client-only node holds no replicas to keep."""
    tasks = [run_join_refresh, run_refresh, run_republish, run_expire]
    tasks += [run_reannounce, run_provider_upkeep]  # provider sets (issue 17)
    if not node.client_only:
        tasks += [run_replicate, run_handoff]
    for task in tasks:
        await nursery.start(task, node)
