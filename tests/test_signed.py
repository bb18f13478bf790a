"""The signed-record core: keys, the signed bytes, verification, the storing rules."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_kad import SigningKey
from trio_kad._messages import MAX_SEQ, ErrorCode, SignedPart
from trio_kad._signed import (
    Refusal,
    Verdict,
    content_key,
    signed_key,
    signing_bytes,
    store_verdict,
    verify,
)

SEED = bytes(range(32))
KEY = SigningKey.from_seed(SEED)


def test_a_key_comes_back_from_its_seed_and_never_shows_it() -> None:
    fresh = SigningKey.generate()
    again = SigningKey.from_seed(fresh.seed)
    assert again.public_key == fresh.public_key and len(fresh.public_key) == 32
    assert fresh.seed.hex() not in repr(fresh)
    for bad in (b"", SEED[:31], SEED + b"x", "x" * 32):
        with pytest.raises(ValueError):
            SigningKey.from_seed(bad)  # type: ignore[arg-type]


def test_the_signed_bytes_are_exactly_the_documented_ones() -> None:
    # docs/protocol.md: canonical CBOR ["trio-kad/signed/1", salt, seq, value].
    value = cbor2.dumps("here")
    expected = (
        b"\x84"  # array of 4
        + b"\x71trio-kad/signed/1"  # text of 17
        + b"\x43abc"  # salt: bytes of 3
        + b"\x18\x2a"  # seq 42
        + b"\x45"  # value: bytes of 5
        + value
    )
    assert signing_bytes(b"abc", 42, value) == expected
    assert signed_key(KEY.public_key, b"abc") == hashlib.sha256(KEY.public_key + b"abc").digest()
    assert content_key(value) == hashlib.sha256(value).digest()


def test_verify_takes_only_the_right_record_at_the_right_key() -> None:
    value = cbor2.dumps({"addr": "10.0.0.1:4000"})
    signed = KEY.sign(b"s", 3, value)
    key = signed_key(KEY.public_key, b"s")
    assert verify(key, value, signed)
    assert not verify(signed_key(KEY.public_key), value, signed)  # mis-keyed
    assert not verify(key, cbor2.dumps("other"), signed)  # another value
    forged = SignedPart(signed.public_key, b"s", 4, signed.signature)  # seq bumped
    assert not verify(key, value, forged)
    other = SigningKey.from_seed(b"\x01" * 32)
    # Someone else's signature of the same record at the same key never verifies.
    stolen = SignedPart(KEY.public_key, b"s", 3, other.sign(b"s", 3, value).signature)
    assert not verify(key, value, stolen)
    for part in (
        SignedPart(KEY.public_key[:31], b"s", 3, signed.signature),
        SignedPart(KEY.public_key, b"s" * 65, 3, signed.signature),
        SignedPart(KEY.public_key, b"s", -1, signed.signature),
        SignedPart(KEY.public_key, b"s", MAX_SEQ + 1, signed.signature),
        SignedPart(KEY.public_key, b"s", 3, signed.signature[:63]),
    ):
        assert not verify(key, value, part)


@pytest.mark.parametrize(
    ("salt", "seq", "cas"),
    [(b"x" * 65, 0, None), (b"", -1, None), (b"", MAX_SEQ + 1, None), (b"", 0, -1), ("s", 0, None)],
)
def test_signing_refuses_arguments_outside_the_limits(salt: bytes, seq: int, cas: int) -> None:
    from trio_kad._signed import check_signed_arguments

    with pytest.raises(ValueError):
        check_signed_arguments(salt, seq, cas)


# --- the storing rules, as a model ------------------------------------------

K = signed_key(KEY.public_key)
VALUES = [cbor2.dumps(v) for v in ("a", "b", "c")]


def _store(seq: int, value: bytes) -> SignedPart:
    return KEY.sign(b"", seq, value)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(VALUES),
            st.none() | st.integers(0, 5),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_a_storing_node_keeps_the_highest_seq_and_refuses_the_rest(
    stores: list[tuple[int, bytes, int | None, bool]],
) -> None:
    held: tuple[bytes, SignedPart] | None = None
    for seq, value, cas, forge in stores:
        signed = _store(seq, value)
        if forge:
            signed = SignedPart(signed.public_key, b"", seq, bytes(64))
        verdict = store_verdict(
            K, value, signed, cas, None if held is None else held[0], held and held[1]
        )
        held_seq = None if held is None else held[1].seq
        if forge:
            assert verdict == Refusal(ErrorCode.BAD_SIGNATURE, "bad signature or key")
        elif cas is not None and cas != held_seq:
            assert isinstance(verdict, Refusal) and verdict.code is ErrorCode.CAS_MISMATCH
            assert verdict.seq == held_seq
        elif held is None or seq > held[1].seq:
            assert verdict is Verdict.STORE
        elif seq == held[1].seq and value == held[0]:
            assert verdict is Verdict.REFRESH
        else:
            assert isinstance(verdict, Refusal) and verdict.code is ErrorCode.STALE_SEQUENCE
            assert verdict.seq == held_seq
        if not isinstance(verdict, Refusal):
            held = (value, signed)
        # The seq held never goes down, and what is held always verifies.
        if held is not None:
            assert held_seq is None or held[1].seq >= held_seq
            assert verify(K, held[0], held[1])


def test_a_plain_store_cannot_replace_a_signed_or_content_addressed_record() -> None:
    value = VALUES[0]
    signed = _store(7, value)
    refusal = store_verdict(K, VALUES[1], None, None, value, signed)
    assert refusal == Refusal(ErrorCode.PROTECTED, "key holds a signed record", 7)
    ident = content_key(value)
    assert isinstance(store_verdict(ident, VALUES[1], None, None, value, None), Refusal)
    assert store_verdict(ident, value, None, None, value, None) is Verdict.STORE
    # A plain pair that is not content-addressed is replaced as always.
    assert store_verdict(K, VALUES[1], None, None, value, None) is Verdict.STORE
    # A signed record replaces a plain squatter at its key.
    assert store_verdict(K, value, signed, None, VALUES[1], None) is Verdict.STORE


def test_cas_with_nothing_held_is_refused() -> None:
    refusal = store_verdict(K, VALUES[0], _store(1, VALUES[0]), 0, None, None)
    assert isinstance(refusal, Refusal) and refusal.code is ErrorCode.CAS_MISMATCH
    assert refusal.seq is None
