"""Publish "my current address" under a key only its owner can change.

A peer keeps its address under its own Ed25519 key; anyone who knows the
public key reads it, checked, from any node, and no one else can overwrite it.
The peer moves, publishes again (the seq goes up by itself), and readers see
the new address. Runs five nodes in this process over TCP on 127.0.0.1.

python examples/signed_record.py
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio

from trio_kad import SigningKey, StaleSequence, open_dht


async def main() -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(open_dht())
        nodes = [first]
        for _ in range(4):
            nodes.append(await stack.enter_async_context(open_dht(bootstrap=[first.address])))
        me, reader = nodes[1], nodes[-1]

        key = SigningKey.generate()  # keep key.seed secret; key.public_key is the name
        await me.put_signed(key, {"host": "198.51.100.7", "port": 4000})
        record = await reader.get_signed(key.public_key)
        assert record is not None
        print(f"seq {record.seq}: {record.value['host']}:{record.value['port']}")

        await me.put_signed(key, {"host": "203.0.113.9", "port": 4000})  # moved
        record = await reader.get_signed(key.public_key)
        assert record is not None
        print(f"seq {record.seq}: {record.value['host']}:{record.value['port']}")

        try:  # an old copy of the record cannot come back
            await nodes[2].put_signed(key, {"host": "198.51.100.7", "port": 4000}, seq=0)
        except StaleSequence as exc:
            print(f"refused: the network holds seq {exc.seq}")


if __name__ == "__main__":
    trio.run(main)
