"""The signatures of signed records in the data_dir's SQLite file, beside their records.

The ``signed`` table is created on every open (``IF NOT EXISTS``) rather than by
a schema version: a version-1 file gains it, and a trio-kad that knows nothing
of it opens the file as before. A row whose record was since replaced without
it no longer verifies on load and is dropped (``verified``). Called by
``_persist`` inside its transactions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ._messages import SignedPart
from ._signed import verify

__all__ = ["create_signed_table", "delete_signed", "load_signed", "verified", "write_signed"]


def create_signed_table(conn: sqlite3.Connection) -> None:
    """Add the table of signatures to a file that lacks it."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS signed (key BLOB PRIMARY KEY, public_key BLOB NOT NULL,"
        " salt BLOB NOT NULL, seq INTEGER NOT NULL, signature BLOB NOT NULL)"
    )


def write_signed(conn: sqlite3.Connection, key: bytes, signed: SignedPart | None) -> None:
    """Keep the signature of the record under ``key`` (none: a plain record, so drop any)."""
    if signed is None:
        conn.execute("DELETE FROM signed WHERE key = ?", (key,))
        return
    conn.execute(
        "INSERT OR REPLACE INTO signed VALUES (?, ?, ?, ?, ?)",
        (key, signed.public_key, signed.salt, signed.seq, signed.signature),
    )


def delete_signed(conn: sqlite3.Connection, keys: Iterable[bytes]) -> None:
    """Forget the signatures of ``keys``."""
    conn.executemany("DELETE FROM signed WHERE key = ?", [(key,) for key in keys])


def load_signed(conn: sqlite3.Connection) -> dict[bytes, SignedPart | None]:
    """Every stored signature by key (``None`` for a malformed row, which never verifies)."""
    found: dict[bytes, SignedPart | None] = {}
    for key, public_key, salt, seq, signature in conn.execute(
        "SELECT key, public_key, salt, seq, signature FROM signed"
    ):
        if isinstance(key, bytes):
            fields_ok = all(isinstance(b, bytes) for b in (public_key, salt, signature))
            ok = fields_ok and isinstance(seq, int)
            found[key] = SignedPart(public_key, salt, seq, signature) if ok else None
    return found


def verified(
    key: bytes, value: bytes, signatures: dict[bytes, SignedPart | None]
) -> SignedPart | None:
    """The signature of ``key`` in ``signatures`` if it still proves ``value``, else ``None``.

    A signature taken is removed from ``signatures``: what is left there is to delete.
    """
    signed = signatures.get(key)
    if signed is None or not verify(key, value, signed):
        return None
    del signatures[key]
    return signed
