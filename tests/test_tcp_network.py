"""A real network: nodes over TCP on 127.0.0.1 with the real clock."""

from __future__ import annotations

import random
from functools import partial

import trio

from trio_kad import Config, open_dht
from trio_kad._ids import Contact
from trio_kad._messages import Ping
from trio_kad.testing import open_simulation


async def test_thirty_nodes_over_tcp() -> None:
    rng = random.Random(30)
    with trio.fail_after(60):
        async with open_simulation(30, seed=30, tcp=True) as sim:
            keys = [f"tcp-{i}" for i in range(10)]
            for key in keys:
                assert await rng.choice(sim.nodes).set(key, {"key": key}) >= 20
            for key in keys:
                for node in sim.nodes:
                    assert await node.get(key) == {"key": key}
            # Connections are reused: at most one each way per pair of nodes,
            # however many RPCs they exchanged.
            peers = len(sim.nodes) - 1
            for node in sim.nodes:
                stats = node.statistics().transport
                assert stats.connections_opened <= 2 * peers
            # A third of the nodes go away; every key is still found.
            for node in sim.nodes[::3]:
                sim.stop_node(node)
            await trio.sleep(0.1)
            for key in keys:
                assert await rng.choice(sim.nodes).get(key) == {"key": key}


async def test_leaving_closes_the_listener() -> None:
    with trio.fail_after(20):
        async with open_dht(config=Config(rpc_timeout=1.0)) as dht:
            address = dht.address
            stream = await trio.open_tcp_stream(*address)
            await stream.aclose()
        try:
            stream = await trio.open_tcp_stream(*address)
        except OSError:
            pass
        else:
            await stream.aclose()
            raise AssertionError("still listening after open_dht exited")


async def test_a_peer_answering_garbage_is_banned() -> None:
    async def garbage_server(stream: trio.SocketStream) -> None:
        async with stream:
            while await stream.receive_some(65536):
                await stream.send_all(b"\x00\x00\x00\x05hello")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, garbage_server, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            async with open_dht() as dht:
                node = dht._node
                liar = Contact(b"\x42" * 32, "127.0.0.1", port)
                # Named by nobody but itself: the table holds it at the address it speaks from.
                node.saw_alive(liar)
                assert await node.rpc(liar, Ping()) is None
                assert node.table.banned(liar.node_id, trio.current_time())
                node.saw_alive(liar)
                assert liar.node_id not in node.table
            nursery.cancel_scope.cancel()
