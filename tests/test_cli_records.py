"""keygen, put-signed and get-signed as real processes on 127.0.0.1."""

from __future__ import annotations

import stat
from contextlib import ExitStack
from pathlib import Path

from clihelp import closed_port, run, serve


def test_keygen_writes_a_private_seed_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "key"
    made = run("keygen", str(path))
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip()
    assert len(bytes.fromhex(public)) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    seed = path.read_text()
    again = run("keygen", str(path))
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert path.read_text() == seed


def test_put_signed_and_get_signed_across_a_small_network(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    public = run("keygen", str(key_file)).stdout.strip()
    with ExitStack() as stack:
        first = stack.enter_context(serve())
        others = [stack.enter_context(serve("--bootstrap", first.peer)) for _ in range(2)]
        put = ("put-signed", "--bootstrap", others[0].peer, "--key-file", str(key_file))
        stored = run(*put, "10.0.0.1:4000")
        assert stored.returncode == 0, stored.stderr
        assert stored.stdout == "3 acknowledgements, seq 0\n"
        assert run(*put, "10.0.0.2:4000").stdout == "3 acknowledgements, seq 1\n"
        assert run(*put, "--salt", "web", "--seq", "7", "w").stdout.endswith("seq 7\n")
        got = run("get-signed", "--bootstrap", others[1].peer, public)
        assert got.returncode == 0, got.stderr
        assert got.stdout == "10.0.0.2:4000\n"
        salted = run("get-signed", "--bootstrap", first.peer, public, "--salt", "web")
        assert salted.stdout == "w\n"
        # Refusals: exit 3 with one line saying the seq held.
        for extra in (("--seq", "0"), ("--cas", "0")):
            refused = run(*put, *extra, "late")
            assert refused.returncode == 3, refused.stderr
            assert refused.stderr.count("\n") == 1 and "seq 1" in refused.stderr
        missing = run("get-signed", "--bootstrap", first.peer, "00" * 32)
        assert missing.returncode == 1 and missing.stdout == ""
        for bad_key in ("not hex", "00" * 31):
            bad = run("get-signed", "--bootstrap", first.peer, bad_key)
            assert bad.returncode == 2 and bad.stderr == "error: PUBKEY_HEX must be 64 hex digits\n"


def test_put_signed_fails_with_one_line_on_bad_arguments(tmp_path: Path) -> None:
    peer = f"127.0.0.1:{closed_port()}"
    key_file = tmp_path / "key"
    key_file.write_text("not a key\n")
    for args in (
        ("--key-file", str(key_file), "v"),
        ("--key-file", str(tmp_path / "missing"), "v"),
    ):
        result = run("put-signed", "--bootstrap", peer, *args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    run("keygen", str(tmp_path / "good"))
    result = run("put-signed", "--bootstrap", peer, "--key-file", str(tmp_path / "good"), "v")
    assert result.returncode == 2 and peer in result.stderr
