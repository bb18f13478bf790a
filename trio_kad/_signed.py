"""Signed mutable records and immutable records, without I/O (docs/protocol.md).

A signed record lives at SHA-256(public key || salt) and carries the
publisher's Ed25519 signature of ``signing_bytes``: the canonical CBOR of
``["trio-kad/signed/1", salt, seq, value]``, where ``value`` is the CBOR
encoding of the value exactly as ``Dht.set`` stores it. Anyone can hold and
pass it on; only the key's owner can make a new one. An immutable record lives
at the SHA-256 of its encoded value, so it needs no signature.

The storing rules (``store_verdict``, ``judge``) and the reader's check
(``verify``) are pure functions: the server and the lookups apply what they decide.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ._messages import (
    MAX_SALT_BYTES,
    MAX_SEQ,
    ErrorCode,
    SignedPart,
    Store,
)
from ._records import Record

__all__ = [
    "SIGNING_CONTEXT",
    "SignedRecord",
    "SigningKey",
    "Verdict",
    "check_signed_arguments",
    "content_key",
    "is_content_addressed",
    "judge",
    "signed_key",
    "signing_bytes",
    "store_verdict",
    "verify",
]

SIGNING_CONTEXT = "trio-kad/signed/1"
"""The first item of the signed bytes: a signature made for anything else never verifies."""

SEED_BYTES = 32
"""An Ed25519 private key seed."""


class SigningKey:
    """An Ed25519 key pair that publishes signed records.

    ``SigningKey.generate()`` makes a new one; ``SigningKey.from_seed(seed)``
    the one a 32-byte ``seed`` (``key.seed``) names. ``public_key`` is the 32 raw
    bytes readers look the records up with.
    """

    __slots__ = ("_private", "public_key", "seed")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.seed: bytes = private.private_bytes_raw()
        """The 32 bytes to keep secret: ``from_seed(seed)`` gives this key back."""
        self.public_key: bytes = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        """The 32-byte public key."""

    @classmethod
    def generate(cls) -> SigningKey:
        """A new random key (from the operating system's randomness)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key whose 32-byte seed is ``seed``."""
        if not isinstance(seed, bytes) or len(seed) != SEED_BYTES:
            raise ValueError(f"a seed must be {SEED_BYTES} bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, salt: bytes, seq: int, value: bytes) -> SignedPart:
        """The signed part of the record ``value`` (encoded) at ``seq`` under ``salt``."""
        check_signed_arguments(salt, seq)
        signature = self._private.sign(signing_bytes(salt, seq, value))
        return SignedPart(self.public_key, salt, seq, signature)

    def __repr__(self) -> str:
        return f"<SigningKey {self.public_key.hex()}>"  # never the seed


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A signed record as ``Dht.get_signed`` returns it, verified."""

    value: Any
    """The value, decoded as ``Dht.get`` returns it."""
    seq: int
    public_key: bytes
    salt: bytes
    signature: bytes


def signing_bytes(salt: bytes, seq: int, value: bytes) -> bytes:
    """The exact bytes a publisher signs: canonical CBOR [context, salt, seq, value]."""
    return cbor2.dumps([SIGNING_CONTEXT, salt, seq, value], canonical=True)


def signed_key(public_key: bytes, salt: bytes = b"") -> bytes:
    """The 32-byte key a signed record lives at: SHA-256(public key || salt)."""
    return hashlib.sha256(public_key + salt).digest()


def content_key(value: bytes) -> bytes:
    """The 32-byte key an immutable record lives at: SHA-256 of its encoded value."""
    return hashlib.sha256(value).digest()


def is_content_addressed(key: bytes, value: bytes) -> bool:
    """Is ``value`` the one value an immutable record at ``key`` can have?"""
    return content_key(value) == key


def check_signed_arguments(salt: bytes, seq: int | None, cas: int | None = None) -> None:
    """Raise ``ValueError`` unless ``salt``, ``seq`` and ``cas`` are within the wire limits."""
    if not isinstance(salt, bytes) or len(salt) > MAX_SALT_BYTES:
        raise ValueError(f"salt must be bytes, at most {MAX_SALT_BYTES}")
    for name, number in (("seq", seq), ("cas", cas)):
        if number is None:
            continue
        if type(number) is not int or not 0 <= number <= MAX_SEQ:
            raise ValueError(f"{name} must be an int in 0..{MAX_SEQ}, got {number!r}")


def verify(key: bytes, value: bytes, signed: SignedPart) -> bool:
    """Is ``value`` under ``key`` a record ``signed`` proves: right key, limits, signature?"""
    if signed.problem() is not None or signed_key(signed.public_key, signed.salt) != key:
        return False
    public_key, salt, seq = signed.public_key, signed.salt, signed.seq
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signed.signature, signing_bytes(salt, seq, value)
        )
    except (InvalidSignature, ValueError):
        return False
    return True


class Verdict(enum.Enum):
    """What a storing node does with a STORE, given what it holds (``store_verdict``)."""

    STORE = "store"
    """Keep it: it replaces what is held (or nothing was)."""
    REFRESH = "refresh"
    """The same signed record again: keep it, with the later expiry of the two."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A STORE the rules refuse: the error code, a short message, the seq held if any."""

    code: ErrorCode
    message: str
    seq: int | None = None


def store_verdict(
    key: bytes,
    value: bytes,
    signed: SignedPart | None,
    cas: int | None,
    held_value: bytes | None,
    held: SignedPart | None,
) -> Verdict | Refusal:
    """The record rules of a storing node, for a STORE of ``value`` under ``key``.

    ``held_value`` and ``held`` are the live record the node holds under the
    key (``None`` when none). Signed: the signature is verified first (bad or
    mis-keyed: ``BAD_SIGNATURE``); the highest seq is kept; a lower seq, or an
    equal seq with another value, is ``STALE_SEQUENCE``; the equal seq with the
    same value refreshes. ``cas=n`` is ``CAS_MISMATCH`` unless the seq held is
    ``n``; with nothing held, ``cas`` is refused too (held seq ``None``): a
    compare-and-swap says which record it replaces, and there is none. Plain: a
    key holding a signed record, or a content-addressed value (see
    ``is_content_addressed``) that the new one is not, is ``PROTECTED``.
    """
    if signed is None:
        if held is not None:
            return Refusal(ErrorCode.PROTECTED, "key holds a signed record", held.seq)
        if held_value is not None and held_value != value and is_content_addressed(key, held_value):
            return Refusal(ErrorCode.PROTECTED, "key holds an immutable record")
        return Verdict.STORE
    if not verify(key, value, signed):
        return Refusal(ErrorCode.BAD_SIGNATURE, "bad signature or key")
    held_seq = None if held is None else held.seq
    if cas is not None and cas != held_seq:
        return Refusal(ErrorCode.CAS_MISMATCH, "cas does not match the seq held", held_seq)
    if held_seq is None:
        return Verdict.STORE
    if signed.seq < held_seq or (signed.seq == held_seq and value != held_value):
        return Refusal(ErrorCode.STALE_SEQUENCE, "a newer or different record is held", held_seq)
    if signed.seq == held_seq:
        return Verdict.REFRESH
    return Verdict.STORE


def judge(store: Store, held: Record | None) -> Verdict | Refusal:
    """``store_verdict`` of ``store`` at a node whose live record under its key is ``held``."""
    if held is None:
        return store_verdict(store.key, store.value, store.signed, store.cas, None, None)
    return store_verdict(store.key, store.value, store.signed, store.cas, held.value, held.signed)
