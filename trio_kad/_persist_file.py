"""The SQLite file behind a data_dir: its lock, its checks, its schema and migrations.

A file is used only once it is known to be trio-kad's (its ``application_id``)
or brand new; a newer schema is refused, an older one migrated a step a
transaction. Blocking code, run in a worker thread by ``_persist``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ._errors import DataDirError
from ._ids import ID_BYTES
from ._persist_providers import create_providers_table
from ._persist_signed import create_signed_table

__all__ = [
    "APPLICATION_ID",
    "DB_FILENAME",
    "LOCK_FILENAME",
    "SCHEMA_VERSION",
    "open_database",
    "transaction",
]

T = TypeVar("T")

DB_FILENAME = "trio-kad.sqlite3"
LOCK_FILENAME = "trio-kad.lock"
APPLICATION_ID = 0x4B414431  # "KAD1": marks the file as ours, so a foreign db is never touched
SCHEMA_VERSION = 2
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE records (key BLOB PRIMARY KEY, value BLOB NOT NULL, stored_at REAL NOT NULL,"
    " expires_at REAL NOT NULL, publisher INTEGER NOT NULL, cached INTEGER NOT NULL,"
    " published INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE contacts (node_id BLOB PRIMARY KEY, host TEXT NOT NULL,"
    " port INTEGER NOT NULL, last_seen REAL NOT NULL)",
)
_MIGRATIONS = {
    # Version 1 to 2: plain values carry their publication time (issue 16); pairs
    # kept before count as published at 0, the oldest.
    1: ("ALTER TABLE records ADD COLUMN published INTEGER NOT NULL DEFAULT 0",),
}
"""Statements that take a database from a schema version to the next."""


def transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``body`` in one write transaction: all of it is committed, or none."""
    # The connection is in autocommit mode (isolation_level=None), so the
    # transaction boundaries are exactly these statements, nothing implicit.
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        # Suppressed: no transaction may be left to roll back (the db is gone).
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return result


def open_database(directory: Path, node_id: bytes | None) -> tuple[sqlite3.Connection, int, bytes]:
    """Take the directory's lock, then open its database: the connection, the lock, the node id.

    Blocking (a worker thread's job). Raises ``DataDirError`` for a directory
    another process holds, a file that is not trio-kad's, a newer schema, or
    a node id other than ``node_id``; a foreign file is never written to.
    """
    try:
        if directory.exists() and not directory.is_dir():
            raise DataDirError(f"data dir {directory} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(directory / LOCK_FILENAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataDirError(f"data dir {directory} is unusable: {exc}") from exc
    try:
        # Two nodes on one directory would share an id and clobber each other.
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
        raise DataDirError(f"data dir {directory} is in use by another process") from None
    try:
        conn, stored_id = _open_locked(directory, node_id)
    except BaseException:
        os.close(lock_fd)
        raise
    return conn, lock_fd, stored_id


def _open_locked(directory: Path, node_id: bytes | None) -> tuple[sqlite3.Connection, bytes]:
    """Open, validate, initialize if new or migrate; in a worker thread."""
    db_path = directory / DB_FILENAME
    try:
        if db_path.exists() and not db_path.is_file():
            raise DataDirError(f"{db_path} is not a regular file")
        # Check the header ourselves before SQLite sees the file: a
        # non-database must be reported, never opened for writing.
        header = b""
        if db_path.exists():
            with db_path.open("rb") as file:
                header = file.read(len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:
            raise DataDirError(f"{db_path} is not an SQLite database (corrupt or not ours)")
    except OSError as exc:
        raise DataDirError(f"data dir {directory} is unusable: {exc}") from exc

    try:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise DataDirError(f"cannot open {db_path}: {exc}") from exc
    try:
        stored_id = _prepare(conn, db_path, node_id)
    except sqlite3.Error as exc:
        conn.close()
        raise DataDirError(f"{db_path} is unusable (corrupt, locked or unreadable): {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn, stored_id


def _prepare(conn: sqlite3.Connection, db_path: Path, node_id: bytes | None) -> bytes:
    conn.execute("PRAGMA busy_timeout = 5000")
    # Read-only checks first: nothing is written until the file is known to
    # be ours (or brand new), so a foreign database is left exactly as it was.
    application_id = _pragma_int(conn, "application_id")
    version = _pragma_int(conn, "user_version")
    objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    fresh = application_id == 0 and version == 0 and objects == 0
    if not fresh:
        if application_id == 0:
            raise DataDirError(
                f"{db_path} is an SQLite database of another application (it has no "
                "trio-kad application_id); refusing to use it"
            )
        if application_id != APPLICATION_ID:
            raise DataDirError(
                f"{db_path} belongs to another application (application_id "
                f"{application_id:#x}, expected {APPLICATION_ID:#x}); refusing to use it"
            )
        if version > SCHEMA_VERSION:
            raise DataDirError(
                f"{db_path} has schema version {version}, newer than this trio-kad "
                f"understands ({SCHEMA_VERSION}); upgrade trio-kad"
            )
        if version not in _MIGRATIONS and version != SCHEMA_VERSION:
            raise DataDirError(f"{db_path} has unknown schema version {version}")

    # WAL: a commit appends to the log, readers never block the writer.
    # synchronous=FULL: the log is fsynced at every commit, so an acknowledged
    # STORE survives power loss too, not just a process kill.
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")

    if fresh:
        new_id = node_id if node_id is not None else secrets.token_bytes(ID_BYTES)

        def initialize(conn: sqlite3.Connection) -> None:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO meta VALUES ('node_id', ?)", (new_id,))
            # Header fields written in the same transaction: a crash leaves
            # either a complete, marked database or an empty one.
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        transaction(conn, initialize)
    else:
        _migrate(conn, version)

    transaction(conn, _create_side_tables)
    row = conn.execute("SELECT value FROM meta WHERE key = 'node_id'").fetchone()
    if row is None:
        raise DataDirError(f"{db_path} has no node id (meta row missing)")
    stored_id = row[0]
    if not isinstance(stored_id, bytes) or len(stored_id) != ID_BYTES:
        raise DataDirError(f"{db_path} holds a malformed node id (not {ID_BYTES} bytes)")
    if node_id is not None and node_id != stored_id:
        raise DataDirError(
            f"{db_path} belongs to node {stored_id.hex()}, not the requested {node_id.hex()}"
        )
    return stored_id


def _create_side_tables(conn: sqlite3.Connection) -> None:
    """The tables made on every open rather than by a schema version (``IF NOT EXISTS``)."""
    create_signed_table(conn)
    create_providers_table(conn)


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring a database of schema ``version`` up to ``SCHEMA_VERSION``, one step a transaction."""
    while version < SCHEMA_VERSION:

        def step(conn: sqlite3.Connection, version: int = version) -> None:
            for statement in _MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")

        transaction(conn, step)
        version += 1


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    assert isinstance(value, int)
    return value
