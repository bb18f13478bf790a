"""Provider sets in the data_dir's SQLite file, in a table of their own.

The ``providers`` table is created on every open (``IF NOT EXISTS``), as the
``signed`` table is (``_persist_signed``): older files gain it, and a
trio-kad that knows nothing of it opens the file as before. The whole set is
written at each checkpoint and on close, with wall-clock times, and read back
through the holder's bounds (``ProviderTable.add``), so a file cannot bring in
more than the Config allows.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING

import trio

from ._ids import ID_BYTES

if TYPE_CHECKING:
    from ._persist import DataDir
    from ._providers import ProviderTable

__all__ = ["create_providers_table", "load_providers", "save_providers"]

_Row = tuple[bytes, bytes, str, int, str, float, float]


def create_providers_table(conn: sqlite3.Connection) -> None:
    """Add the table of provider sets to a file that lacks it (``_persist_file``, at open)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS providers (key BLOB NOT NULL, node_id BLOB NOT NULL,"
        " host TEXT NOT NULL, port INTEGER NOT NULL, origin TEXT NOT NULL,"
        " announced_at REAL NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (key, node_id))"
    )


async def save_providers(data: DataDir, table: ProviderTable) -> int:
    """Replace the saved provider sets with those ``table`` holds now; return the entries."""
    now, wall = trio.current_time(), time.time()
    rows: list[_Row] = []
    for key, entries in table.items(now):
        for e in entries:
            origin = table.origin_of(key, e.node_id) or ""
            rows.append((key, e.node_id, e.host, e.port, origin, wall - e.age, wall + e.ttl))

    def replace(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM providers")
        conn.executemany("INSERT INTO providers VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    await data.transaction(replace)
    return len(rows)


async def load_providers(data: DataDir, table: ProviderTable) -> int:
    """Add the saved entries still alive to ``table`` (within its bounds); return how many."""

    def read(conn: sqlite3.Connection) -> list[_Row]:
        return list(conn.execute("SELECT * FROM providers"))

    rows = await data.transaction(read)
    now, wall = trio.current_time(), time.time()
    kept = 0
    for row in rows:
        key, node_id, host, port, origin, announced_at, expires_at = row
        well_formed = (
            isinstance(key, bytes)
            and isinstance(node_id, bytes)
            and len(node_id) == ID_BYTES
            and isinstance(host, str)
            and isinstance(port, int)
            and isinstance(origin, str)
            and isinstance(announced_at, float)
            and isinstance(expires_at, float)
        )
        if not well_formed or expires_at <= wall:
            continue
        ttl, age = expires_at - wall, wall - announced_at
        kept += table.add(key, node_id, host, port, origin, now, ttl=ttl, age=age) is None
    return kept
