"""Node and key identifiers in the 256-bit XOR metric space (paper section 2.1)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

ID_BYTES = 32
ID_BITS = ID_BYTES * 8
ID_SPACE = 1 << ID_BITS

Address = tuple[str, int]


def key_id(key: str | bytes) -> bytes:
    """The 256-bit id a key is stored under: SHA-256 of its UTF-8 bytes."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    elif not isinstance(key, bytes):
        raise TypeError(f"key must be str or bytes, not {type(key).__name__}")
    return hashlib.sha256(key).digest()


def id_to_int(node_id: bytes) -> int:
    return int.from_bytes(node_id, "big")


def int_to_id(value: int) -> bytes:
    return value.to_bytes(ID_BYTES, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance between two ids, as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def count_nearer(contacts: Iterable[Contact], key: bytes, than: int) -> int:
    """How many of ``contacts`` are nearer to ``key`` than the distance ``than``."""
    target = int.from_bytes(key, "big")
    return sum(1 for c in contacts if int.from_bytes(c.node_id, "big") ^ target < than)


def random_id(rng: random.Random) -> bytes:
    """A uniformly random id drawn from ``rng``."""
    return int_to_id(rng.getrandbits(ID_BITS))


def random_id_at_distance(origin: bytes, low: int, high: int, rng: random.Random) -> bytes:
    """A random id whose distance from ``origin`` lies in ``[low, high)``."""
    if not 0 <= low < high <= ID_SPACE:
        raise ValueError("need 0 <= low < high <= 2**256")
    return int_to_id(id_to_int(origin) ^ rng.randrange(low, high))


def check_id(value: object, what: str = "id") -> bytes:
    """Return ``value`` if it is a 32-byte id, else raise ``ValueError``."""
    if not isinstance(value, bytes) or len(value) != ID_BYTES:
        raise ValueError(f"{what} must be {ID_BYTES} bytes")
    return value


@dataclass(frozen=True, init=False)
class Contact:
    """A node as others know it: its id and the address it listens on."""

    __slots__ = ("host", "node_id", "port")

    node_id: bytes
    host: str
    port: int

    def __init__(self, node_id: bytes, host: str, port: int) -> None:
        # The generated frozen __init__ goes through object.__setattr__ for
        # each field; the slot descriptors are about twice as fast, and
        # contacts are built for every request and every decoded contact.
        _set_node_id(self, node_id)
        _set_host(self, host)
        _set_port(self, port)

    def __reduce__(self) -> tuple[type[Contact], tuple[bytes, str, int]]:
        # copy and pickle would otherwise restore the slots with setattr,
        # which a frozen dataclass refuses.
        return (Contact, (self.node_id, self.host, self.port))

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"Contact({self.node_id.hex()[:12]}…@{self.host}:{self.port})"


_set_node_id: Callable[[Contact, bytes], None] = Contact.__dict__["node_id"].__set__
_set_host: Callable[[Contact, str], None] = Contact.__dict__["host"].__set__
_set_port: Callable[[Contact, int], None] = Contact.__dict__["port"].__set__
