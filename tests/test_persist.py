"""The data directory: what survives a restart, and what is refused rather than wiped.

Real clock throughout (worker threads and the autojump clock do not mix), each
test under ``fail_after``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from trio_kad._errors import DataDirError
from trio_kad._ids import Contact
from trio_kad._persist import DataDir
from trio_kad._persist_file import APPLICATION_ID, DB_FILENAME, LOCK_FILENAME
from trio_kad._records import Record
from trio_kad._routing import ContactInfo

HOUR = 3600.0
WALL = 1.7e9  # a fixed "time.time()" so the simulated restart is exact


def contact(n: int) -> Contact:
    return Contact(bytes([n]) * 32, "127.0.0.1", 4000 + n)


async def open_dir(
    path: Path,
    *,
    node_id: bytes | None = None,
    now: float | None = None,
    wall: float | None = None,
) -> DataDir:
    with trio.fail_after(10):
        return await DataDir.open(path, max_records=100, node_id=node_id, now=now, wall=wall)


async def test_reopen_keeps_node_id_records_and_contacts(tmp_path: Path) -> None:
    first = await open_dir(tmp_path / "a" / "b", now=10.0, wall=WALL)
    node_id = first.node_id
    assert len(node_id) == 32
    async with first:
        # Trio time 10 = wall WALL: 3 h left, published by us.
        await first.records.put(
            Record(b"k", b"v", 10.0, 10.0 + 3 * HOUR, publisher=True, published=1234)
        )
        await first.records.put(Record(b"c", b"w", 10.0, 10.0 + HOUR / 2, cached=True))
        await first.save_contacts([contact(1), contact(2), contact(3)])

    # The process restarts an hour later: the Trio clock starts again near 0.
    async with await open_dir(tmp_path / "a" / "b", now=5.0, wall=WALL + HOUR) as second:
        assert second.node_id == node_id
        kept = second.records.get(b"k", 5.0)
        assert kept is not None
        assert (kept.value, kept.publisher, kept.cached, kept.published) == (
            b"v",
            True,
            False,
            1234,
        )
        assert kept.expires_at - 5.0 == pytest.approx(2 * HOUR)  # 3 h left minus the hour down
        assert kept.stored_at == pytest.approx(5.0 - HOUR)
        assert second.records.get(b"c", 5.0) is None  # expired while down: dropped at load
        assert len(second.records) == 1
        assert second.load_contacts() == [contact(1), contact(2), contact(3)]


async def test_expired_records_are_deleted_from_disk_at_load(tmp_path: Path) -> None:
    async with await open_dir(tmp_path, now=0.0, wall=WALL) as data_dir:
        await data_dir.records.put(Record(b"old", b"v", 0.0, 60.0))
    async with await open_dir(tmp_path, now=0.0, wall=WALL + 61.0) as data_dir:
        assert len(data_dir.records) == 0
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (0,)
    conn.close()


async def test_contacts_ordered_most_recently_seen_first(tmp_path: Path) -> None:
    async with await open_dir(tmp_path, now=0.0, wall=WALL) as data_dir:
        infos = [ContactInfo(contact(n), last_seen=float(n), failures=0) for n in (1, 3, 2)]
        await data_dir.save_contacts(infos)
        assert data_dir.load_contacts() == [contact(3), contact(2), contact(1)]
        await data_dir.save_contacts([contact(9)])  # replaces the saved set
        assert data_dir.load_contacts() == [contact(9)]
    async with await open_dir(tmp_path) as data_dir:
        assert data_dir.load_contacts() == [contact(9)]


async def test_explicit_node_id(tmp_path: Path) -> None:
    wanted = bytes(range(32))
    async with await open_dir(tmp_path, node_id=wanted) as data_dir:
        assert data_dir.node_id == wanted
    async with await open_dir(tmp_path, node_id=wanted) as data_dir:
        assert data_dir.node_id == wanted
    with pytest.raises(DataDirError, match="belongs to node"):
        await open_dir(tmp_path, node_id=bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        await open_dir(tmp_path / "other", node_id=b"short")


async def test_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    db = tmp_path / DB_FILENAME
    garbage = b"this is not a database at all\x00\xff" * 100
    db.write_bytes(garbage)
    with pytest.raises(DataDirError, match=r"not an SQLite database") as info:
        await open_dir(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert db.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([DB_FILENAME, LOCK_FILENAME])


async def test_damaged_database_is_refused(tmp_path: Path) -> None:
    async with await open_dir(tmp_path) as data_dir:
        for n in range(50):
            await data_dir.records.put(Record(bytes([n]) * 8, b"x" * 500, 0.0, 1e9))
    db = tmp_path / DB_FILENAME
    data = bytearray(db.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)  # keep the header, wreck every page
    db.write_bytes(bytes(data))
    with pytest.raises(DataDirError, match=str(db)):
        await open_dir(tmp_path)
    assert db.read_bytes() == bytes(data)


def make_foreign(db: Path, application_id: int) -> bytes:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA application_id = {application_id}")
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.commit()
    conn.close()
    return db.read_bytes()


@pytest.mark.parametrize("application_id", [0, 0x12345678])
async def test_foreign_database_is_refused_and_left_untouched(
    tmp_path: Path, application_id: int
) -> None:
    db = tmp_path / DB_FILENAME
    before = make_foreign(db, application_id)
    with pytest.raises(DataDirError, match="another application"):
        await open_dir(tmp_path)
    assert db.read_bytes() == before
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not switched to WAL
    conn.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    async with await open_dir(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(DataDirError, match="newer"):
        await open_dir(tmp_path)


async def test_schema_1_is_migrated_and_its_pairs_count_as_oldest(tmp_path: Path) -> None:
    # A data_dir written before pairs carried their publication time (schema 1).
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    for statement in (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        "CREATE TABLE records (key BLOB PRIMARY KEY, value BLOB NOT NULL, stored_at REAL NOT NULL,"
        " expires_at REAL NOT NULL, publisher INTEGER NOT NULL, cached INTEGER NOT NULL)",
        "CREATE TABLE contacts (node_id BLOB PRIMARY KEY, host TEXT NOT NULL,"
        " port INTEGER NOT NULL, last_seen REAL NOT NULL)",
        f"PRAGMA application_id = {APPLICATION_ID}",
        "PRAGMA user_version = 1",
    ):
        conn.execute(statement)
    conn.execute("INSERT INTO meta VALUES ('node_id', ?)", (bytes(32),))
    conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, 1, 0)", (b"k", b"v", WALL, WALL + HOUR))
    conn.commit()
    conn.close()
    async with await open_dir(tmp_path, now=0.0, wall=WALL) as data:
        kept = data.records.get(b"k", 0.0)
        assert kept is not None
        assert (kept.value, kept.publisher, kept.published) == (b"v", True, 0)
        await data.records.put(Record(b"n", b"w", 0.0, HOUR, published=99))
    async with await open_dir(tmp_path, now=0.0, wall=WALL) as data:
        again = data.records.get(b"n", 0.0)
        assert again is not None and again.published == 99
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    assert conn.execute("PRAGMA user_version").fetchone() == (2,)
    conn.close()


async def test_missing_meta_row_is_refused(tmp_path: Path) -> None:
    async with await open_dir(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / DB_FILENAME, isolation_level=None)
    conn.execute("DELETE FROM meta")
    conn.close()
    with pytest.raises(DataDirError, match="no node id"):
        await open_dir(tmp_path)


async def test_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"mine")
    with pytest.raises(DataDirError, match="not a directory"):
        await open_dir(path)
    assert path.read_bytes() == b"mine"


async def test_completed_put_is_committed(tmp_path: Path) -> None:
    async with await open_dir(tmp_path, now=0.0, wall=WALL) as data_dir:
        await data_dir.records.put(Record(b"k", b"v", 0.0, HOUR, publisher=True))
        # A separate connection, as another process after a SIGKILL would see it.
        conn = sqlite3.connect(tmp_path / DB_FILENAME)
        rows = conn.execute("SELECT key, value, expires_at, publisher FROM records").fetchall()
        conn.close()
        assert rows == [(b"k", b"v", WALL + HOUR, 1)]
        await data_dir.records.remove(b"k")
        conn = sqlite3.connect(tmp_path / DB_FILENAME)
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (0,)
        conn.close()


async def test_failed_write_leaves_memory_as_disk(tmp_path: Path) -> None:
    async with await open_dir(tmp_path) as data_dir:
        store = data_dir.records
        await store.put(Record(b"k", b"small", 0.0, 1e9))
        conn = sqlite3.connect(tmp_path / DB_FILENAME)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.close()
        # Simulate a full disk: the database may not grow any further.
        store._db._conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[union-attr]
        with pytest.raises(DataDirError, match="full"):
            await store.put(Record(b"k", b"x" * 200_000, 0.0, 1e9))
        with pytest.raises(DataDirError, match="full"):
            await store.put(Record(b"new", b"x" * 200_000, 0.0, 1e9))
        got = store.get(b"k", 0.0)
        assert got is not None and got.value == b"small"
        assert store.get(b"new", 0.0) is None
        await store.put(Record(b"k", b"tiny", 0.0, 1e9))  # still usable afterwards
    async with await open_dir(tmp_path) as data_dir:
        assert [(r.key, r.value) for r in data_dir.records] == [(b"k", b"tiny")]


async def test_aclose_is_idempotent_and_works_when_cancelled(tmp_path: Path) -> None:
    data_dir = await open_dir(tmp_path)
    with trio.CancelScope() as scope:
        scope.cancel()
        await data_dir.aclose()  # shielded: closes despite the cancel
    assert data_dir._db.closed
    await data_dir.aclose()
    with pytest.raises(DataDirError, match="closed"):
        await data_dir.records.put(Record(b"k", b"v", 0.0, 1e9))
    # The file is closed and complete: it reopens fine.
    async with await open_dir(tmp_path) as again:
        assert again.node_id == data_dir.node_id


async def test_cancelled_put_is_either_done_or_not(tmp_path: Path) -> None:
    async with await open_dir(tmp_path) as data_dir:
        with trio.move_on_after(0):
            await data_dir.records.put(Record(b"k", b"v", 0.0, 1e9))
        in_memory = data_dir.records.get(b"k", 0.0) is not None
    async with await open_dir(tmp_path) as data_dir:
        assert (data_dir.records.get(b"k", 0.0) is not None) == in_memory


async def test_application_id_is_ours(tmp_path: Path) -> None:
    async with await open_dir(tmp_path):
        pass
    conn = sqlite3.connect(tmp_path / DB_FILENAME)
    assert conn.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()


async def test_a_data_dir_is_used_by_one_process_at_a_time(tmp_path: Path) -> None:
    with trio.fail_after(10):
        first = await DataDir.open(tmp_path, max_records=10)
        try:
            with pytest.raises(DataDirError, match="in use"):
                await DataDir.open(tmp_path, max_records=10)
        finally:
            await first.aclose()
        again = await DataDir.open(tmp_path, max_records=10)
        assert again.node_id == first.node_id
        await again.aclose()
