"""A node with a data_dir survives restarts and crashes (real clock, TCP on 127.0.0.1)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio
from clihelp import run, serve, stop

from trio_kad import DataDirError, open_dht


async def test_restart_keeps_id_and_pairs(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_dht(data_dir=tmp_path / "node") as first:
            assert await first.set("kept", {"across": "restarts"}) == 1
            node_id = first.node_id
        async with open_dht(data_dir=tmp_path / "node") as again:
            assert again.node_id == node_id
            assert again.get_local("kept") == {"across": "restarts"}
            assert await again.get("kept") == {"across": "restarts"}


async def test_restart_rejoins_through_saved_contacts(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_dht() as peer:
            async with open_dht(bootstrap=[peer.address], data_dir=tmp_path / "n"):
                pass
            # No bootstrap given: the saved contact (the peer) is used.
            async with open_dht(data_dir=tmp_path / "n") as back:
                assert back.statistics().contacts == 1
                await peer.set("seen", 1)
                assert await back.get("seen") == 1


async def test_saved_contacts_that_are_gone_do_not_stop_a_restart(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_dht() as peer:
            async with open_dht(bootstrap=[peer.address], data_dir=tmp_path / "n"):
                pass
        async with open_dht(data_dir=tmp_path / "n") as alone:
            assert await alone.set("solo", 1) == 1


async def test_corrupt_data_dir_is_an_error_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "trio-kad.sqlite3").write_bytes(b"definitely not sqlite" * 10)
    with pytest.raises(DataDirError, match="not an SQLite database"):
        async with open_dht(data_dir=tmp_path):
            pass
    assert (tmp_path / "trio-kad.sqlite3").read_bytes() == b"definitely not sqlite" * 10


def test_sigkill_after_acknowledged_set_loses_nothing(tmp_path: Path) -> None:
    data = str(tmp_path / "kill")
    with serve("--data-dir", data) as server:
        stored = run("set", "--bootstrap", server.peer, "crash", "safe")
        assert stored.returncode == 0, stored.stderr
        assert stored.stdout.strip() == "1"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        node_id = server.node_id
    with serve("--data-dir", data) as restarted:
        assert restarted.node_id == node_id
        got = run("get", "--bootstrap", restarted.peer, "crash")
        assert got.returncode == 0, got.stderr
        assert got.stdout == "safe\n"
        assert stop(restarted) == 0


def test_serve_with_corrupt_data_dir_exits_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "trio-kad.sqlite3").write_bytes(b"garbage")
    result = run("serve", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not an SQLite database" in result.stderr
