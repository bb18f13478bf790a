"""Store a value on one node and read it back on another (the seeds' example).

python examples/two_nodes.py
"""

from __future__ import annotations

import trio

from trio_kad import open_dht


async def main() -> None:
    async with open_dht() as first, open_dht(bootstrap=[first.address]) as second:
        await first.set("beep", "boop")
        value = await second.get("beep")
        print(f"boop === {value}")


if __name__ == "__main__":
    trio.run(main)
