"""Provider sets kept in the data_dir across restarts (real clock, in-memory network)."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import trio

from trio_kad import MemoryNetwork, open_dht
from trio_kad._persist import DataDir
from trio_kad._persist_providers import load_providers, save_providers
from trio_kad._providers import ProviderTable

KEY = b"k" * 32


def table(max_per_topic: int = 8) -> ProviderTable:
    return ProviderTable(
        lifetime=600.0,
        max_per_topic=max_per_topic,
        max_topics=10,
        max_per_origin=100,
        max_ids_per_origin=100,
    )


async def test_a_holder_keeps_its_provider_sets_across_a_restart(tmp_path: Path) -> None:
    network = MemoryNetwork(rng=random.Random(1))
    with trio.fail_after(20):
        async with open_dht(transport=network.transport(), data_dir=tmp_path / "h") as holder:
            address = holder.address
            async with open_dht(
                "10.0.0.9", bootstrap=[address], transport=network.transport(), client_only=True
            ) as client:
                assert await client.announce("svc", port=4444) == 1
        async with open_dht(transport=network.transport(), data_dir=tmp_path / "h") as again:
            (found,) = await again.find_providers("svc")
            assert (found.host, found.port, found.node_id) == ("10.0.0.9", 4444, client.node_id)


async def test_saved_entries_are_read_back_within_the_bounds_and_alive_only(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with await DataDir.open(tmp_path, max_records=10) as data:
            held = table()
            now = trio.current_time()
            for n in range(5):
                held.add(KEY, bytes([n]) * 32, f"198.51.100.{n}", 80 + n, "g", now, age=n)
            assert await save_providers(data, held) == 5

            def expire_one(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "UPDATE providers SET expires_at = ? WHERE node_id = ?",
                    (time.time() - 1, bytes([0]) * 32),
                )
                conn.execute(
                    "INSERT INTO providers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (KEY, b"short", "x", 1, "", 0.0, time.time() + 99),
                )

            await data.transaction(expire_one)
            small = table(max_per_topic=3)
            assert await load_providers(data, small) == 3
            entries = small.get(KEY, trio.current_time())
            assert [e.port for e in entries] == [81, 82, 83]
            assert 2 <= entries[1].age <= 4  # rounded up at each save and read
