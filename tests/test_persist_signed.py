"""Signed records in the data directory: their signatures survive a restart, stale ones do not.

Real clock (worker threads), each test under ``fail_after``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import cbor2
import trio

from trio_kad import SigningKey
from trio_kad._persist import DataDir
from trio_kad._persist_file import DB_FILENAME
from trio_kad._records import Record
from trio_kad._signed import signed_key

KEY = SigningKey.from_seed(b"\x07" * 32)
K = signed_key(KEY.public_key, b"s")
VALUE = cbor2.dumps("here")
SIGNED = KEY.sign(b"s", 4, VALUE)


async def open_dir(path: Path) -> DataDir:
    with trio.fail_after(10):
        return await DataDir.open(path, max_records=100, now=0.0, wall=1.7e9)


async def test_a_signed_record_comes_back_with_its_signature(tmp_path: Path) -> None:
    async with await open_dir(tmp_path) as first:
        await first.records.put(Record(K, VALUE, 0.0, 3600.0, publisher=True, signed=SIGNED))
        await first.records.put(Record(b"p" * 32, VALUE, 0.0, 3600.0))
    async with await open_dir(tmp_path) as second:
        kept = second.records.get(K, 0.0)
        assert kept is not None and kept.signed == SIGNED and kept.publisher
        plain = second.records.get(b"p" * 32, 0.0)
        assert plain is not None and plain.signed is None
        # Replaced by a plain pair, removed, expired: its signature goes with it.
        await second.records.put(Record(K, cbor2.dumps("plain"), 0.0, 3600.0))
    async with await open_dir(tmp_path) as third:
        kept = third.records.get(K, 0.0)
        assert kept is not None and kept.signed is None
        await third.records.put(Record(K, VALUE, 0.0, 3600.0, signed=SIGNED))
        await third.records.remove(K)
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        assert conn.execute("SELECT count(*) FROM signed").fetchone() == (0,)


async def test_a_signature_that_no_longer_proves_its_value_is_dropped(tmp_path: Path) -> None:
    async with await open_dir(tmp_path) as first:
        await first.records.put(Record(K, VALUE, 0.0, 3600.0, signed=SIGNED))
    # As a trio-kad that knows no signatures would leave it: the value replaced,
    # the signature row left behind; and a malformed row for a key with no record.
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        conn.execute("UPDATE records SET value = ? WHERE key = ?", (cbor2.dumps("evil"), K))
        conn.execute("INSERT INTO signed VALUES (?, ?, ?, ?, ?)", (b"x", b"pk", "s", 1, b"sig"))
    async with await open_dir(tmp_path) as second:
        kept = second.records.get(K, 0.0)
        assert kept is not None and kept.value == cbor2.dumps("evil") and kept.signed is None
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        assert conn.execute("SELECT count(*) FROM signed").fetchone() == (0,)


async def test_a_file_from_before_signed_records_opens_and_gains_the_table(
    tmp_path: Path,
) -> None:
    async with await open_dir(tmp_path) as first:
        await first.records.put(Record(b"p" * 32, VALUE, 0.0, 3600.0))
    with sqlite3.connect(tmp_path / DB_FILENAME) as conn:
        conn.execute("DROP TABLE signed")
    async with await open_dir(tmp_path) as second:
        assert second.records.get(b"p" * 32, 0.0) is not None
        await second.records.put(Record(K, VALUE, 0.0, 3600.0, signed=SIGNED))
    async with await open_dir(tmp_path) as third:
        kept = third.records.get(K, 0.0)
        assert kept is not None and kept.signed == SIGNED
