"""The ``trio-kad`` commands for signed records: keygen, put-signed, get-signed."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import trio

from ._errors import CasMismatch, StaleSequence
from ._messages import PUBLIC_KEY_BYTES
from ._open import open_dht
from ._signed import SEED_BYTES, SigningKey

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_REFUSED = 3
"""``put-signed``: the storing nodes refused the seq (``StaleSequence``, ``CasMismatch``)."""

COMMANDS = ("keygen", "put-signed", "get-signed")


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_network_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Register the three commands; ``add_network_options`` adds --bootstrap and --timeout."""
    keygen = sub.add_parser("keygen", help="write a new Ed25519 seed to FILE (mode 0600)")
    keygen.add_argument("file", metavar="FILE")

    put = sub.add_parser("put-signed", help="publish VALUE as the signed record of a key")
    add_network_options(put)
    put.add_argument("--key-file", required=True, metavar="FILE", help="written by keygen")
    put.add_argument("--salt", default="", help="UTF-8 text: one key, many records")
    put.add_argument("--seq", type=int, help="sequence number (default: highest found + 1)")
    put.add_argument("--cas", type=int, help="store only if the seq held is this one")
    put.add_argument("value", metavar="VALUE")

    get = sub.add_parser("get-signed", help="print the newest valid signed record of PUBKEY")
    add_network_options(get)
    get.add_argument("public_key", metavar="PUBKEY_HEX")
    get.add_argument("--salt", default="", help="UTF-8 text, as given to put-signed")


def run_command(args: argparse.Namespace, peers: list[str]) -> int:
    """Run one of ``COMMANDS``; ``ValueError`` and ``OSError`` are left to the caller."""
    if args.command == "keygen":
        return keygen(Path(args.file))
    if args.command == "put-signed":
        return trio.run(_put_signed, args, peers)
    return trio.run(_get_signed, args, peers)


def keygen(path: Path) -> int:
    """Write a new seed as hex to ``path``, never over an existing file; print the public key."""
    key = SigningKey.generate()
    # O_EXCL: an existing file (someone's key) is never overwritten. Mode 0600
    # from creation, so the seed is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)  # whatever the umask
        file.write(key.seed.hex() + "\n")
    print(key.public_key.hex())
    return EXIT_OK


def load_key(path: Path) -> SigningKey:
    """The key in a file ``keygen`` wrote (64 hex digits; 32 raw bytes are taken too)."""
    data = path.read_bytes()
    if len(data) == SEED_BYTES:
        return SigningKey.from_seed(data)
    try:
        seed = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{path} does not hold a key written by keygen") from None
    if len(seed) != SEED_BYTES:
        raise ValueError(f"{path} does not hold a key written by keygen")
    return SigningKey.from_seed(seed)


async def _put_signed(args: argparse.Namespace, peers: list[str]) -> int:
    key = load_key(Path(args.key_file))
    salt = args.salt.encode("utf-8")
    try:
        with trio.fail_after(args.timeout):
            async with open_dht(bootstrap=peers, client_only=True) as dht:
                acks, seq = await dht._put_signed(
                    key, args.value, salt=salt, seq=args.seq, cas=args.cas
                )
    except (StaleSequence, CasMismatch) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"{acks} acknowledgement{'' if acks == 1 else 's'}, seq {seq}")
    return EXIT_OK


async def _get_signed(args: argparse.Namespace, peers: list[str]) -> int:
    from .cli import format_value

    try:
        public_key = bytes.fromhex(args.public_key)
    except ValueError:
        public_key = b""
    if len(public_key) != PUBLIC_KEY_BYTES:  # refused before joining
        raise ValueError("PUBKEY_HEX must be 64 hex digits")
    with trio.fail_after(args.timeout):
        async with open_dht(bootstrap=peers, client_only=True) as dht:
            record = await dht.get_signed(public_key, salt=args.salt.encode("utf-8"))
    if record is None:
        print(f"not found: {args.public_key}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(format_value(record.value))
    return EXIT_OK
