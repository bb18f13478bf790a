"""A node's durable state in one SQLite file: its id, its records, its contacts.

Reads never touch the disk: every record is also kept in a dict. Writes go to
SQLite first, in a worker thread (``trio.to_thread.run_sync``) so the event
loop never blocks on ``fsync``, and only after ``COMMIT`` into the dict: a
STORE acknowledged after ``put`` returns survives a SIGKILL, and a failed
write leaves memory exactly as the disk is.

Records carry Trio-clock times, which restart near zero with every process.
On disk they are wall-clock times, converted with one offset taken at open,
so a pair with three hours left still has three hours left after a restart,
minus the time the node was down.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import trio

from ._errors import DataDirError
from ._ids import ID_BYTES, Contact, check_id
from ._persist_file import (
    DB_FILENAME,
    open_database,
    transaction,
)
from ._persist_signed import (
    delete_signed,
    load_signed,
    verified,
    write_signed,
)
from ._records import Record, RecordStore
from ._routing import ContactInfo

T = TypeVar("T")


class _Database:
    """One sqlite3 connection, used by one worker thread at a time."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_fd: int) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock_fd = lock_fd
        # Held across each worker-thread call: serializes use of the connection
        # and makes a store's check-then-write (the quota) atomic.
        self.lock = trio.Lock()

    @property
    def closed(self) -> bool:
        return self._conn is None

    async def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in a transaction in a worker thread; return once committed.

        Call with ``lock`` held. The thread call is not abandoned on cancel,
        so a write that started always finishes and reports its outcome.
        """
        conn = self._conn
        if conn is None:
            raise DataDirError(f"data dir database {self.path} is closed")
        try:
            return await trio.to_thread.run_sync(transaction, conn, body)
        except sqlite3.Error as exc:
            raise DataDirError(f"could not write to {self.path}: {exc}") from exc

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            # Shielded: a node torn down by cancellation must still close the
            # file cleanly (and wait for a write in flight to finish first).
            async with self.lock:
                conn, self._conn = self._conn, None
                if conn is not None:
                    await trio.to_thread.run_sync(conn.close)
                    os.close(self._lock_fd)  # releases the directory for another process


class SqliteStore(RecordStore):
    """Records in SQLite, mirrored in a dict for synchronous reads.

    Same semantics as ``MemoryStore``: at ``max_records`` a new key is
    refused, replacing a held key is fine. ``clock_offset`` is wall time minus
    Trio time: added to a record's times on write, subtracted on load. Records
    are held as given; do not mutate one after ``put`` (put a new one).
    """

    def __init__(
        self,
        database: _Database,
        *,
        max_records: int,
        clock_offset: float,
        records: Iterable[Record] = (),
        **quotas: int,
    ) -> None:
        super().__init__(max_records, records=records, **quotas)
        self._db = database
        self.clock_offset = clock_offset

    async def put(self, record: Record) -> bool:
        offset = self.clock_offset
        row = (
            record.key,
            record.value,
            record.stored_at + offset,
            record.expires_at + offset,
            int(record.publisher),
            int(record.cached),
            record.published,
        )

        signed = record.signed

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            write_signed(conn, record.key, signed)

        async with self._db.lock:
            # The quota is checked under the lock: two concurrent puts of new
            # keys cannot both take the last free slot.
            if not self.admits(record):
                return False
            await self._db.write(insert)
            self._hold(record)
            return True

    async def remove(self, key: bytes) -> bool:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM records WHERE key = ?", (key,))
            delete_signed(conn, [key])

        async with self._db.lock:
            if key not in self._records:
                return False
            await self._db.write(delete)
            self._release(key)
            return True

    async def expire(self, now: float) -> int:
        async with self._db.lock:
            # Delete by key, not by time: the dict decides what is expired, so
            # float rounding in the clock conversion cannot make disk and memory differ.
            dead = self._expired(now)
            if not dead:
                return 0

            def delete(conn: sqlite3.Connection) -> None:
                conn.executemany("DELETE FROM records WHERE key = ?", [(key,) for key in dead])
                delete_signed(conn, dead)

            await self._db.write(delete)
            for key in dead:
                self._release(key)
            return len(dead)


class DataDir:
    """A node's data directory, opened with ``await DataDir.open(path, ...)``.

    Holds ``node_id`` (kept across restarts), ``records`` (a ``SqliteStore``)
    and the contacts saved at the last ``save_contacts``. Close with
    ``aclose()`` or use it as an ``async with`` block.
    """

    def __init__(
        self,
        database: _Database,
        node_id: bytes,
        records: SqliteStore,
        contacts: list[Contact],
    ) -> None:
        self._db = database
        self.node_id = node_id
        """This node's id, 32 bytes: created on first open, then read back."""
        self.records = records
        """The durable record store."""
        self._contacts = contacts

    @property
    def path(self) -> Path:
        """The SQLite file inside the directory."""
        return self._db.path

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        max_records: int,
        max_bytes: int = sys.maxsize,
        max_per_origin: int = sys.maxsize,
        node_id: bytes | None = None,
        now: float | None = None,
        wall: float | None = None,
    ) -> DataDir:
        """Open (or create) the data directory at ``path``.

        ``node_id`` is used on first open; on later opens it must match the
        stored one. ``now`` (Trio clock) and ``wall`` (``time.time()``) are
        read together to convert stored times; tests pass them to simulate a
        restart later. Raises ``DataDirError`` for a path that is not a
        directory, a file that is not ours or is corrupt, or a newer schema;
        an unusable file is never modified.
        """
        if node_id is not None:
            check_id(node_id, "node_id")
        now = trio.current_time() if now is None else now
        wall = time.time() if wall is None else wall
        directory = Path(path)
        conn, lock_fd, stored_id, records, contacts = await trio.to_thread.run_sync(
            _open_sync, directory, node_id, now, wall
        )
        # No checkpoint from here on: a cancel arriving now is delivered to the
        # caller's next one, after it holds the DataDir it must close.
        database = _Database(conn, directory / DB_FILENAME, lock_fd)
        store = SqliteStore(
            database,
            max_records=max_records,
            max_bytes=max_bytes,
            max_per_origin=max_per_origin,
            clock_offset=wall - now,
            records=records,
        )
        return cls(database, stored_id, store, contacts)

    def load_contacts(self) -> list[Contact]:
        """The contacts saved last (at open: from disk), most recently seen first."""
        return list(self._contacts)

    async def save_contacts(self, contacts: Iterable[Contact | ContactInfo]) -> None:
        """Replace the saved contacts with ``contacts``.

        A ``ContactInfo`` carries its last-seen time (Trio clock); a bare
        ``Contact`` counts as seen now. Ties keep the order given.
        """
        offset = self.records.clock_offset
        wall_now = time.time()
        rows: dict[bytes, tuple[bytes, str, int, float]] = {}
        for item in contacts:
            if isinstance(item, ContactInfo):
                contact, seen = item.contact, item.last_seen + offset
            else:
                contact, seen = item, wall_now
            rows.setdefault(contact.node_id, (contact.node_id, contact.host, contact.port, seen))
        ordered = list(rows.values())

        def replace(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM contacts")
            conn.executemany("INSERT INTO contacts VALUES (?, ?, ?, ?)", ordered)

        async with self._db.lock:
            await self._db.write(replace)
            # Stable sort: equal times keep the caller's order, as on reload (rowid).
            ordered.sort(key=lambda row: -row[3])
            self._contacts = [Contact(node_id, host, port) for node_id, host, port, _ in ordered]

    async def transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one transaction in the worker thread: for the tables of other
        modules (``_persist_providers``). Raises ``DataDirError`` as the store's writes do."""
        async with self._db.lock:
            return await self._db.write(body)

    async def aclose(self) -> None:
        """Close the database. Idempotent; completes even when cancelled."""
        await self._db.aclose()

    async def __aenter__(self) -> DataDir:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _open_sync(
    directory: Path, node_id: bytes | None, now: float, wall: float
) -> tuple[sqlite3.Connection, int, bytes, list[Record], list[Contact]]:
    """Open the directory's database (``open_database``) and load what it holds."""
    conn, lock_fd, stored_id = open_database(directory, node_id)
    db_path = directory / DB_FILENAME
    try:
        records = _load_records(conn, db_path, now, wall)
        contacts = _load_contacts(conn, db_path)
    except sqlite3.Error as exc:
        conn.close()
        os.close(lock_fd)
        raise DataDirError(f"{db_path} is unusable (corrupt, locked or unreadable): {exc}") from exc
    except BaseException:
        conn.close()
        os.close(lock_fd)
        raise
    return conn, lock_fd, stored_id, records, contacts


def _load_records(conn: sqlite3.Connection, db_path: Path, now: float, wall: float) -> list[Record]:
    offset = wall - now
    live: list[Record] = []
    dead: list[tuple[bytes]] = []
    signatures = load_signed(conn)
    for key, value, stored_at, expires_at, publisher, cached, published in conn.execute(
        "SELECT key, value, stored_at, expires_at, publisher, cached, published FROM records"
    ):
        if not (
            isinstance(key, bytes)
            and isinstance(value, bytes)
            and isinstance(stored_at, float)
            and isinstance(expires_at, float)
            and isinstance(published, int)
        ):
            raise DataDirError(f"{db_path} holds a malformed record")
        if expires_at <= wall:
            dead.append((key,))  # paper 2.5: past tExpire, the pair is gone
            continue
        live.append(
            Record(
                key,
                value,
                stored_at=stored_at - offset,
                expires_at=expires_at - offset,
                publisher=bool(publisher),
                cached=bool(cached),
                published=published,
                signed=verified(key, value, signatures),
            )
        )
    if dead or signatures:

        def delete(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM records WHERE key = ?", dead)
            delete_signed(conn, signatures)  # of dead records or none, or not verified

        transaction(conn, delete)
    return live


def _load_contacts(conn: sqlite3.Connection, db_path: Path) -> list[Contact]:
    contacts: list[Contact] = []
    for node_id, host, port in conn.execute(
        "SELECT node_id, host, port FROM contacts ORDER BY last_seen DESC, rowid ASC"
    ):
        if not (
            isinstance(node_id, bytes)
            and len(node_id) == ID_BYTES
            and isinstance(host, str)
            and isinstance(port, int)
            and 0 < port < 65536
        ):
            raise DataDirError(f"{db_path} holds a malformed contact")
        contacts.append(Contact(node_id, host, port))
    return contacts
