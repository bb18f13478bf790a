"""Watching a key: LISTEN, pushes, renewal, churn, limits and the attacks (issue 18)."""

from __future__ import annotations

import trio
import trio.testing

from trio_kad import Config, Dht
from trio_kad.testing import node_of, open_simulation

CONFIG = Config(k=4, watch_renew_interval=60.0, watch_listener_ttl=180.0)


async def collect(dht: Dht, key: str, into: list[object], limit: int) -> None:
    async with dht.watch(key) as updates:
        async for value in updates:
            into.append(value)
            if len(into) >= limit:
                return


async def test_a_watcher_gets_the_current_value_then_each_new_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulation(20, seed=1, config=CONFIG) as sim:
        writer, watcher = sim.nodes[0], sim.nodes[-1]
        await writer.set("k", "v0")
        seen: list[object] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, watcher, "k", seen, 4)
            await trio.sleep(1)
            assert seen == ["v0"]
            for value in ("v1", "v2", "v3"):
                await writer.set("k", value)
                await trio.sleep(1)
        assert seen == ["v0", "v1", "v2", "v3"]
        assert node_of(watcher).watches.unsolicited == 0
