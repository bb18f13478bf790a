"""A long-running peer: joins the network given on the command line and stays.

    python examples/peer.py 127.0.0.1:4000 [more peers ...] [--port P] [--report SECONDS]

With no peers it starts a new network. It prints its address once it is up,
then every --report seconds how many contacts and pairs it holds, until
SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal

import trio

from trio_kad import open_dht


async def run(peers: list[str], host: str, port: int, report: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_dht(host, port, peers) as dht:
            h, p = dht.address
            print(f"peer {dht.node_id.hex()[:16]} up on {h}:{p}", flush=True)
            async with trio.open_nursery() as nursery:

                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                while True:
                    stats = dht.statistics()
                    print(
                        f"contacts={stats.contacts} pairs={stats.records} "
                        f"served={stats.requests_served}",
                        flush=True,
                    )
                    await trio.sleep(report)
    print("peer stopped", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    parser.add_argument("peers", nargs="*", metavar="HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--report", type=float, default=60.0)
    args = parser.parse_args()
    trio.run(run, args.peers, args.host, args.port, args.report)


if __name__ == "__main__":
    main()
