"""Peers that find each other through a topic, then talk directly (SPEC "Finding peers").

Each peer runs a tiny TCP service, announces it under one topic, looks the
topic up, and greets every other provider it finds over its own connection:
the DHT is only the meeting place.

python examples/rendezvous.py
"""

from __future__ import annotations

from functools import partial

import trio

from trio_kad import open_dht

TOPIC = "rendezvous-example"
PEERS = 3


async def greet_back(stream: trio.SocketStream) -> None:
    """The peer's service: answer one greeting line."""
    async with stream:
        line = await stream.receive_some(1024)
        await stream.send_all(b"hello back to " + line)


class Barrier:
    """Lets ``parties`` tasks wait until all of them have arrived."""

    def __init__(self, parties: int) -> None:
        self._left = parties
        self._all_here = trio.Event()

    async def wait(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._all_here.set()
        await self._all_here.wait()


async def peer(name: str, bootstrap: tuple[str, int], announced: Barrier, greeted: Barrier) -> str:
    async with trio.open_nursery() as nursery:
        serve = partial(trio.serve_tcp, greet_back, 0, host="127.0.0.1")
        (listener,) = await nursery.start(serve)
        service_port = listener.socket.getsockname()[1]
        async with open_dht(bootstrap=[bootstrap]) as dht:
            await dht.announce(TOPIC, port=service_port)
            await announced.wait()  # everyone has announced: look the others up
            found = await dht.find_providers(TOPIC)
            others = [p for p in found if p.node_id != dht.node_id]
            answers = []
            for other in others:
                stream = await trio.open_tcp_stream(other.host, other.port)
                async with stream:
                    await stream.send_all(name.encode())
                    answers.append(await stream.receive_some(1024))
            await greeted.wait()  # stay up until the others have greeted this peer too
        nursery.cancel_scope.cancel()
    return f"{name} found {len(others)} others, {len(answers)} answered"


async def main() -> None:
    async with open_dht() as meeting_point:
        announced, greeted = Barrier(PEERS), Barrier(PEERS)
        results: dict[str, str] = {}

        async def run(name: str) -> None:
            results[name] = await peer(name, meeting_point.address, announced, greeted)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(PEERS):
                    nursery.start_soon(run, f"peer-{i}")
        for name in sorted(results):
            print(results[name])


if __name__ == "__main__":
    trio.run(main)
