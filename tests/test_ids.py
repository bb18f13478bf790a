"""Ids and the XOR metric (``_ids``): the metric's axioms as properties, and the helpers."""

from __future__ import annotations

import copy
import hashlib
import pickle
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_kad._ids import (
    ID_BITS,
    ID_BYTES,
    ID_SPACE,
    Contact,
    check_id,
    count_nearer,
    distance,
    id_to_int,
    int_to_id,
    key_id,
    random_id,
    random_id_at_distance,
)

ids = st.binary(min_size=ID_BYTES, max_size=ID_BYTES)
distances = st.integers(0, ID_SPACE - 1)


# --- the XOR metric (paper section 2.1) ----------------------------------------------


@given(ids, ids)
def test_identity(x: bytes, y: bytes) -> None:
    assert distance(x, x) == 0
    assert (distance(x, y) == 0) == (x == y)
    assert distance(x, y) >= 0


@given(ids, ids)
def test_symmetry(x: bytes, y: bytes) -> None:
    assert distance(x, y) == distance(y, x)


@given(ids, ids, ids)
def test_triangle_inequality(x: bytes, y: bytes, z: bytes) -> None:
    assert distance(x, z) <= distance(x, y) + distance(y, z)


@given(ids, distances, ids)
def test_unidirectionality(x: bytes, delta: int, other: bytes) -> None:
    # Exactly one id lies at each distance from x: x XOR delta, and no other.
    y = int_to_id(id_to_int(x) ^ delta)
    assert distance(x, y) == delta
    assert (distance(x, other) == delta) == (other == y)


@given(distances)
def test_int_and_id_round_trip(value: int) -> None:
    node_id = int_to_id(value)
    assert len(node_id) == ID_BYTES
    assert id_to_int(node_id) == value


# --- helpers --------------------------------------------------------------------------


@given(st.one_of(st.text(), st.binary()))
def test_key_id_is_sha256(key: str | bytes) -> None:
    raw = key.encode("utf-8") if isinstance(key, str) else key
    assert key_id(key) == hashlib.sha256(raw).digest()
    assert len(key_id(key)) == ID_BYTES


def test_key_id_refuses_other_types() -> None:
    with pytest.raises(TypeError):
        key_id(42)  # type: ignore[arg-type]
    assert key_id("é") == key_id("é".encode())


@given(ids, st.integers(0, ID_BITS - 1), st.integers(0, 2**32 - 1))
def test_random_id_at_distance_lands_in_range(origin: bytes, bit: int, seed: int) -> None:
    rng = random.Random(seed)
    low, high = 1 << bit, 1 << (bit + 1)  # a bucket's range
    assert low <= distance(origin, random_id_at_distance(origin, low, high, rng)) < high
    # Any range, not only a bucket's.
    a, b = sorted((rng.randrange(ID_SPACE), rng.randrange(ID_SPACE)))
    b = max(b, a + 1)
    assert a <= distance(origin, random_id_at_distance(origin, a, b, rng)) < b


@pytest.mark.parametrize("low, high", [(0, 0), (5, 3), (-1, 4), (0, ID_SPACE + 1)])
def test_random_id_at_distance_refuses_empty_or_outside_ranges(low: int, high: int) -> None:
    with pytest.raises(ValueError):
        random_id_at_distance(bytes(ID_BYTES), low, high, random.Random(0))


def test_random_id_is_drawn_from_the_rng() -> None:
    first, again = random_id(random.Random(3)), random_id(random.Random(3))
    assert first == again and len(first) == ID_BYTES
    assert random_id(random.Random(4)) != first


@pytest.mark.parametrize("value", [b"", b"x" * 31, b"x" * 33, "x" * 32, None, bytearray(32)])
def test_check_id_refuses_anything_but_32_bytes(value: object) -> None:
    with pytest.raises(ValueError, match="node_id must be 32 bytes"):
        check_id(value, "node_id")


def test_check_id_returns_the_id() -> None:
    node_id = bytes(range(32))
    assert check_id(node_id) is node_id


def test_count_nearer() -> None:
    key = bytes(ID_BYTES)
    contacts = [Contact(int_to_id(d), "10.0.0.1", 1) for d in (1, 2, 3, 8)]
    assert count_nearer(contacts, key, 3) == 2
    assert count_nearer(contacts, key, 9) == 4
    assert count_nearer([], key, ID_SPACE) == 0


# --- Contact --------------------------------------------------------------------------


def test_contact_basics() -> None:
    node_id = bytes(range(32))
    c = Contact(node_id, "10.0.0.1", 4000)
    assert (c.node_id, c.host, c.port, c.address) == (node_id, "10.0.0.1", 4000, ("10.0.0.1", 4000))
    assert c == Contact(node_id, "10.0.0.1", 4000)
    assert hash(c) == hash(Contact(node_id, "10.0.0.1", 4000))
    assert c != Contact(node_id, "10.0.0.1", 4001)
    assert c != Contact(bytes(32), "10.0.0.1", 4000)
    assert repr(c) == f"Contact({node_id.hex()[:12]}…@10.0.0.1:4000)"
    with pytest.raises(AttributeError):
        c.port = 1  # type: ignore[misc]
    assert copy.copy(c) == c and copy.deepcopy(c) == c
    assert pickle.loads(pickle.dumps(c)) == c
