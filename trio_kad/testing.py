"""Helpers for tests and simulations: many nodes in one process.

    async with open_simulation(300, seed=1) as sim:
        await sim.nodes[0].set("key", "value")
        assert await sim.nodes[-1].get("key") == "value"

Nodes talk over an in-memory ``MemoryNetwork`` (which still runs the real
codec); pair it with ``trio.testing.MockClock(autojump_threshold=0)`` to run
hours of network life in seconds. Pass ``wan=WanModel()`` for internet
round-trip times, jitter, loss, handshakes and bounded connection pools
instead of an instant network (see ``trio_kad._wan`` for where its figures
come from); each node then also gets a host of its own in a subnet of its own.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from ._api import Dht
from ._config import Config
from ._errors import raise_single
from ._memory_net import MemoryNetwork
from ._node import Node
from ._open import open_dht
from ._tcp import TcpTransport
from ._transport import Transport
from ._wan import WanModel

__all__ = ["Simulation", "WanModel", "banned", "node_of", "open_simulation"]


def node_of(dht: Dht) -> Node:
    """The protocol object behind ``dht``, for white-box tests and simulations only.

    Its attributes (``table``, ``records``, ``counters``, ``rpc``, ``lookup``,
    ...) are internals: they may change between releases without notice.
    """
    return dht._node


def banned(dht: Dht, node_id: bytes) -> bool:
    """Whether ``dht`` refuses ``node_id`` now (banned, see ``Config.ban_duration``).

    For simulations that count whom an attack got banned (benchmarks/adversary.py).
    """
    return dht._node.table.banned(node_id, trio.current_time())


class Simulation:
    """A set of nodes running in one nursery; add and stop them at will."""

    def __init__(
        self,
        nursery: trio.Nursery,
        network: MemoryNetwork | None,
        config: Config,
        rng: random.Random,
        host: str,
    ) -> None:
        self.network = network
        """The in-memory network, or ``None`` when the nodes use TCP."""
        self.config = config
        self.rng = rng
        self.nodes: list[Dht] = []
        """The running nodes, in the order they started."""
        self._nursery = nursery
        self._host = host
        self._scopes: dict[bytes, trio.CancelScope] = {}

    async def add_node(
        self, bootstrap: Iterable[str | tuple[str, int]] | None = None, **kwargs: object
    ) -> Dht:
        """Start one more node; by default it joins through a random running node."""
        if bootstrap is None:
            bootstrap = [self.rng.choice(self.nodes).address] if self.nodes else []
        peers = list(bootstrap)
        node_rng = random.Random(self.rng.getrandbits(64))
        node_id = node_rng.randbytes(32)
        transport: Transport = (
            self.network.transport() if self.network is not None else TcpTransport()
        )
        host = self._host
        if self.network is not None and self.network.model is not None:
            host = self.network.model.host(node_rng)
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[Dht]) -> None:
            with scope:
                async with open_dht(
                    host,
                    0,
                    peers,
                    node_id=node_id,
                    config=self.config,
                    transport=transport,
                    rng=node_rng,
                    **kwargs,  # type: ignore[arg-type]
                ) as dht:
                    task_status.started(dht)
                    await trio.sleep_forever()

        dht: Dht = await self._nursery.start(run)
        self._scopes[dht.node_id] = scope
        self.nodes.append(dht)
        return dht

    def stop_node(self, dht: Dht) -> None:
        """Stop a node abruptly (it does not say goodbye, as in a crash)."""
        self._scopes.pop(dht.node_id).cancel()
        self.nodes.remove(dht)

    async def grow(self, count: int) -> None:
        """Add ``count`` nodes one after another."""
        for _ in range(count):
            await self.add_node()


@asynccontextmanager
async def open_simulation(
    node_count: int,
    *,
    seed: int = 0,
    config: Config | None = None,
    network: MemoryNetwork | None = None,
    tcp: bool = False,
    host: str = "127.0.0.1",
    wan: WanModel | None = None,
) -> AsyncIterator[Simulation]:
    """Start ``node_count`` nodes, each joining through a random earlier one.

    Uses an in-memory network seeded with ``seed`` unless ``tcp`` is true, in
    which case the nodes listen on ``host`` over real TCP. With ``wan`` the
    in-memory network follows that WAN model, and each node listens on a
    host the model draws instead of ``host``. Leaving the block stops every node.
    """
    if wan is not None and (tcp or network is not None):
        raise ValueError("wan builds its own in-memory network: no tcp and no network with it")
    rng = random.Random(seed)
    if not tcp and network is None:
        network = MemoryNetwork(rng=random.Random(rng.getrandbits(64)), model=wan)
    try:
        async with trio.open_nursery() as nursery:
            sim = Simulation(nursery, None if tcp else network, config or Config(), rng, host)
            try:
                await sim.grow(node_count)
                yield sim
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise_single(group)
