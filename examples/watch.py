"""Watch a key: the value now, then each new one as a holder pushes it.

python examples/watch.py
"""

from __future__ import annotations

import trio

from trio_kad import open_dht


async def main() -> None:
    async with (
        open_dht() as holder,
        open_dht(bootstrap=[holder.address]) as writer,
        open_dht(bootstrap=[holder.address], client_only=True) as reader,
    ):
        await writer.set("temperature", 20)
        async with reader.watch("temperature") as updates, trio.open_nursery() as nursery:

            async def write_more() -> None:
                for degrees in (21, 22):
                    await trio.sleep(0.2)  # a change now and then
                    await writer.set("temperature", degrees)

            nursery.start_soon(write_more)
            async for degrees in updates:  # 20 first: the value when the watch began
                print(f"temperature: {degrees}")
                if degrees == 22:
                    break


if __name__ == "__main__":
    trio.run(main)
