"""One suite for every RecordStore: the in-memory one and the SQLite one behave alike."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import hypothesis.strategies as st
import pytest
import trio
from hypothesis import HealthCheck, given, settings

from trio_kad._persist import DataDir
from trio_kad._records import MemoryStore, Record, RecordStore

MAX_RECORDS = 4
MAX_BYTES = 16
MAX_PER_ORIGIN = 2


def record(
    key: bytes, expires_at: float = 100.0, value: bytes = b"v", origin: str = "", **flags: bool
) -> Record:
    return Record(
        key, value, stored_at=expires_at - 50.0, expires_at=expires_at, origin=origin, **flags
    )


def snapshot(store: RecordStore) -> list[tuple[bytes, bytes, float, float, bool, bool]]:
    return sorted((r.key, r.value, r.stored_at, r.expires_at, r.publisher, r.cached) for r in store)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecordStore]:
    if request.param == "memory":
        yield MemoryStore(MAX_RECORDS, max_bytes=MAX_BYTES, max_per_origin=MAX_PER_ORIGIN)
        return
    with trio.fail_after(10):
        data_dir = await DataDir.open(
            tmp_path / "data",
            max_records=MAX_RECORDS,
            max_bytes=MAX_BYTES,
            max_per_origin=MAX_PER_ORIGIN,
        )
    try:
        yield data_dir.records
    finally:
        await data_dir.aclose()


async def test_put_get_replace(store: RecordStore) -> None:
    assert store.get(b"a", 0.0) is None
    assert await store.put(record(b"a", value=b"one"))
    got = store.get(b"a", 0.0)
    assert got is not None and got.value == b"one"
    assert await store.put(record(b"a", value=b"two", expires_at=200.0))
    got = store.get(b"a", 0.0)
    assert got is not None and (got.value, got.expires_at) == (b"two", 200.0)
    assert len(store) == 1


async def test_byte_quota_counts_replacements_and_removals(store: RecordStore) -> None:
    assert await store.put(record(b"a", value=b"x" * 10))
    assert not await store.put(record(b"b", value=b"y" * 7))  # 17 > 16 bytes
    assert await store.put(record(b"b", value=b"y" * 6))
    assert store.value_bytes == 16
    assert await store.put(record(b"a", value=b"z" * 10))  # replacing frees the old bytes
    assert not await store.put(record(b"a", value=b"z" * 11))
    held = store.get(b"a", 0.0)
    assert held is not None and held.value == b"z" * 10
    await store.remove(b"a")
    assert store.value_bytes == 6
    assert await store.put(record(b"c", value=b"w" * 10))


async def test_one_origin_gets_its_share_only(store: RecordStore) -> None:
    assert await store.put(record(b"a", origin="192.0.2.1"))
    assert await store.put(record(b"b", origin="192.0.2.1"))
    assert not await store.put(record(b"c", origin="192.0.2.1"))
    assert await store.put(record(b"a", origin="192.0.2.1", value=b"w"))  # a replacement is fine
    assert await store.put(record(b"c", origin="198.51.100.9"))
    assert await store.put(record(b"d"))  # local records have no origin
    await store.expire(1000.0)
    assert await store.put(record(b"e", origin="192.0.2.1", expires_at=2000.0))
    assert [r.key for r in store] == [b"e"]


async def test_get_returns_none_for_expired(store: RecordStore) -> None:
    await store.put(record(b"a", expires_at=100.0))
    assert store.get(b"a", 99.9) is not None
    assert store.get(b"a", 100.0) is None  # expires_at is the first instant it is gone
    assert len(store) == 1  # still held until expire() runs


async def test_expire_drops_exactly_the_expired(store: RecordStore) -> None:
    for key, expires_at in [(b"a", 10.0), (b"b", 20.0), (b"c", 30.0)]:
        await store.put(record(key, expires_at=expires_at))
    assert await store.expire(20.0) == 2
    assert [r.key for r in store] == [b"c"]
    assert await store.expire(20.0) == 0


async def test_quota_refuses_new_keys_but_allows_replacing(store: RecordStore) -> None:
    for index in range(MAX_RECORDS):
        assert await store.put(record(bytes([index])))
    assert not await store.put(record(b"new"))
    assert store.get(b"new", 0.0) is None
    assert await store.put(record(bytes([0]), value=b"replaced"))
    got = store.get(bytes([0]), 0.0)
    assert got is not None and got.value == b"replaced"
    assert len(store) == MAX_RECORDS


async def test_concurrent_puts_respect_the_quota(store: RecordStore) -> None:
    async with trio.open_nursery() as nursery:
        for index in range(MAX_RECORDS * 3):
            nursery.start_soon(store.put, record(bytes([index])))
    assert len(store) == MAX_RECORDS


async def test_remove(store: RecordStore) -> None:
    await store.put(record(b"a"))
    assert await store.remove(b"a")
    assert not await store.remove(b"a")
    assert store.get(b"a", 0.0) is None
    assert len(store) == 0


async def test_iteration_is_a_snapshot(store: RecordStore) -> None:
    for key in (b"a", b"b", b"c"):
        await store.put(record(key))
    seen = []
    for item in store:  # mutating while iterating must not raise
        seen.append(item.key)
        await store.remove(item.key)
        await store.put(record(item.key + b"2"))
    assert sorted(seen) == [b"a", b"b", b"c"]
    assert sorted(r.key for r in store) == [b"a2", b"b2", b"c2"]


async def test_flags_round_trip(store: RecordStore) -> None:
    await store.put(record(b"p", publisher=True))
    await store.put(record(b"c", cached=True))
    p, c = store.get(b"p", 0.0), store.get(b"c", 0.0)
    assert p is not None and (p.publisher, p.cached) == (True, False)
    assert c is not None and (c.publisher, c.cached) == (False, True)


# --- room for the node's own pairs (issue 14, hole 3) ---------------------------------


async def test_own_pairs_displace_pairs_held_for_others(store: RecordStore) -> None:
    await store.put(record(b"a", origin="192.0.2.1", expires_at=300.0))
    await store.put(record(b"b", origin="192.0.2.1", expires_at=200.0))
    await store.put(record(b"c", origin="198.51.100.9", expires_at=100.0))
    await store.put(record(b"d", cached=True, expires_at=400.0))
    mine = record(b"m", publisher=True)
    assert not store.admits(mine)
    # Cached copies first, then the origin holding most, soonest to expire first.
    assert store.displaceable(mine) == [b"d"]
    await store.remove(b"d")
    await store.put(record(b"e", expires_at=50.0))  # from an exempt host: no origin
    assert store.displaceable(mine) == [b"b"]
    # The byte quota too: 16 bytes, 4 held, so 13 more need all but one pair gone.
    big = record(b"m", value=b"x" * 15, publisher=True)
    assert store.displaceable(big) == [b"b", b"a", b"c"]
    # Replacing a pair of its own needs no room, and own pairs are never displaced.
    for key in store.displaceable(big) or []:
        await store.remove(key)
    assert await store.put(big)
    assert store.displaceable(record(b"m", value=b"y" * 16, publisher=True)) == [b"e"]
    assert store.displaceable(record(b"n", value=b"yy", publisher=True)) is None
    assert store.displaceable(record(b"m", publisher=True)) == []


async def test_put_own_makes_room_among_pairs_held_for_others_only(store: RecordStore) -> None:
    for index in range(MAX_RECORDS):
        assert await store.put(record(bytes([index]), origin=f"192.0.2.{index % 2}"))
    for index in range(MAX_RECORDS):
        assert await store.put_own(record(b"own %d" % index, publisher=True))
    assert sorted(r.key for r in store) == [b"own %d" % i for i in range(MAX_RECORDS)]
    assert store.displaceable(record(b"new", publisher=True)) is None
    assert not await store.put_own(record(b"new", publisher=True))
    assert len(store) == MAX_RECORDS


# --- the two implementations agree on any sequence of operations -----------------------

keys = st.sampled_from([b"k0", b"k1", b"k2", b"k3", b"k4", b"k5"])
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            keys,
            st.binary(max_size=8),
            st.integers(0, 20).map(float),
            st.booleans(),
            st.booleans(),
        ),
        st.tuples(st.just("remove"), keys),
        st.tuples(st.just("expire"), st.integers(0, 20).map(float)),
    ),
    max_size=15,
)


async def apply_to_both(ops: list[tuple[object, ...]], directory: Path) -> None:
    memory = MemoryStore(MAX_RECORDS)
    data_dir = await DataDir.open(directory, max_records=MAX_RECORDS, now=0.0, wall=1.7e9)
    try:
        for op in ops:
            results: list[int] = []
            for store in (memory, data_dir.records):
                if op[0] == "put":
                    _, key, value, expires_at, publisher, cached = op
                    assert isinstance(key, bytes) and isinstance(value, bytes)
                    assert isinstance(expires_at, float)
                    item = Record(key, value, 0.0, expires_at, bool(publisher), bool(cached))
                    results.append(await store.put(item))
                elif op[0] == "remove":
                    assert isinstance(op[1], bytes)
                    results.append(await store.remove(op[1]))
                else:
                    assert isinstance(op[1], float)
                    results.append(await store.expire(op[1]))
            assert results[0] == results[1], op
            assert snapshot(memory) == snapshot(data_dir.records), op
    finally:
        await data_dir.aclose()
    # What is on disk is what was in memory (live at load time 0: expires_at > 0).
    # Whole-second times plus a whole-second offset convert exactly, so compare exactly.
    reopened = await DataDir.open(directory, max_records=MAX_RECORDS, now=0.0, wall=1.7e9)
    async with reopened:
        expected = [row for row in snapshot(memory) if row[3] > 0.0]
        assert snapshot(reopened.records) == expected


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_memory_and_sqlite_stores_agree(ops: list[tuple[object, ...]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as directory, trio.fail_after(20):
            await apply_to_both(ops, Path(directory))

    trio.run(main)
