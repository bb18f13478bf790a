"""Log output: JSON lines or text, bounded, with no line a peer can forge."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from clihelp import Server, command, read_line, stop

from trio_kad._ids import Contact
from trio_kad._logs import MAX_FIELD, MAX_MESSAGE, JsonFormatter, TextFormatter


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("trio_kad.node", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_has_time_level_logger_message_and_the_peer_and_key() -> None:
    record = _record("rpc to %s failed", "10.0.0.1:4000", peer="10.0.0.1:4000", key=b"\x01\x02")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "WARNING" and out["logger"] == "trio_kad.node"
    assert out["message"] == "rpc to 10.0.0.1:4000 failed"
    assert out["peer"] == "10.0.0.1:4000" and out["key"] == "0102"
    assert out["time"].endswith("+00:00") and "T" in out["time"]
    assert "peer" not in json.loads(JsonFormatter().format(_record("plain")))


def test_a_contact_among_the_arguments_is_the_peer() -> None:
    contact = Contact(b"\xab" * 32, "10.0.0.7", 4000)
    out = json.loads(JsonFormatter().format(_record("rpc to %r failed: %s", contact, "timeout")))
    assert out["peer"] == "ab" * 32 + "@10.0.0.7:4000"
    named = _record("rpc to %r failed", contact, peer="explicit")
    assert json.loads(JsonFormatter().format(named))["peer"] == "explicit"


def test_attacker_sized_strings_are_cut() -> None:
    huge = "x" * 100_000
    out = json.loads(JsonFormatter().format(_record("got %s", huge, peer=huge)))
    assert len(out["message"]) < MAX_MESSAGE + 100
    assert out["message"].endswith(f"({100_004 - MAX_MESSAGE} more characters)")
    assert len(out["peer"]) < MAX_FIELD + 100
    assert len(TextFormatter().format(_record("got %s", huge))) < MAX_MESSAGE + 100


def test_text_stays_as_before_and_a_peer_cannot_forge_a_line() -> None:
    text = TextFormatter()
    assert text.format(_record("hello %d", 5)) == "WARNING trio_kad.node: hello 5"
    forged = text.format(_record("host %s", "evil\nERROR trio_kad: fake", peer="a\rb"))
    assert "\n" not in forged and "\r" not in forged
    assert forged == "WARNING trio_kad.node: host evil\\x0aERROR trio_kad: fake peer=a\\x0db"


def test_a_traceback_stays_in_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "trio_kad", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    out = json.loads(JsonFormatter().format(record))
    assert out["message"].startswith("failed\nTraceback") and "ValueError: boom" in out["message"]


def test_serve_logs_json_lines_on_stderr() -> None:
    process = subprocess.Popen(
        command("-v", "serve", "--log-format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert stop(Server(process, read_line(process, 30))) == 0
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    lines = err.splitlines()
    assert lines
    records = [json.loads(line) for line in lines]
    assert any(r["message"].startswith("got signal") for r in records)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
