"""What cbor2 may do with a stranger's bytes (``_values``).

Frames refuse every tag and every risky encoding; stored values keep their
tags, except the two that would make cbor2 run a parser.
"""

from __future__ import annotations

import email.parser
import re
from typing import Any

import cbor2
import pytest
from wire import SENDER, ping_fields, ping_with_extra, refused, tag_bytes, with_one_more_entry

from trio_kad._codec import decode_frame
from trio_kad._errors import ProtocolError
from trio_kad._messages import Ping, RequestFrame
from trio_kad._values import acceptable_value, decode_value, load_frame_item, well_formed_value


def test_ping_with_extra_helper_is_valid() -> None:
    assert decode_frame(ping_with_extra(b"\x01")) == RequestFrame(7, SENDER, 4000, Ping())


SEMANTIC_CASES = {
    "datetime string 0": b"\xc0" + cbor2.dumps("2020-01-01T00:00:00Z"),
    "epoch 1": b"\xc1\x00",
    "bignum 2": b"\xc2" + cbor2.dumps(b"\x01" * 20),
    "negative bignum 3": b"\xc3" + cbor2.dumps(b"\x01" * 20),
    "decimal 4": b"\xc4" + cbor2.dumps([-2, 27315]),
    "bigfloat 5": b"\xc5" + cbor2.dumps([-1, 3]),
    "shared 28": b"\xd8\x1c" + cbor2.dumps([1]),
    "cyclic shared ref 28/29": bytes.fromhex("d81c81d81d00"),
    "rational 30": b"\xd8\x1e" + cbor2.dumps([1, 3]),
    "regex 35": b"\xd8\x23" + cbor2.dumps("(a+)+$"),
    "mime 36": b"\xd8\x24" + cbor2.dumps("Content-Type: text/plain\n\nhi"),
    "uuid 37": b"\xd8\x25" + cbor2.dumps(bytes(16)),
    "ipv4 52": b"\xd8\x34" + cbor2.dumps(bytes(4)),
    "ipv6 54": b"\xd8\x36" + cbor2.dumps(bytes(16)),
    "date 100": b"\xd8\x64\x00",
    "stringref namespace 256/25": bytes.fromhex("d9010082") + cbor2.dumps("aaa") + b"\xd8\x19\x00",
    "set 258": b"\xd9\x01\x02" + cbor2.dumps([1, 2]),
    "network address 260": b"\xd9\x01\x04" + cbor2.dumps(bytes(4)),
    "network prefix 261": b"\xd9\x01\x05" + cbor2.dumps({b"\x00": 8}),
    "date string 1004": b"\xd9\x03\xec" + cbor2.dumps("2020-01-01"),
    "complex 43000": b"\xd9\xa7\xf8" + cbor2.dumps([1.0, 2.0]),
    "self-describe 55799": b"\xd9\xd9\xf7\x01",
    "unknown tag": b"\xd9\x27\x0f\x01",
}


@pytest.mark.parametrize("raw", SEMANTIC_CASES.values(), ids=SEMANTIC_CASES.keys())
def test_semantic_tags_refused(raw: bytes) -> None:
    # In an ignored extra key, so only the tag itself can cause the refusal.
    error = refused(ping_with_extra(raw))
    assert error.request_id is None  # refused by the CBOR layer, before any field is read


def test_regex_and_mime_are_never_evaluated(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluated: list[str] = []
    real_compile = re.compile

    def spy_compile(*args: Any, **kwargs: Any) -> Any:
        evaluated.append("regex")
        return real_compile(*args, **kwargs)

    class SpyParser(email.parser.Parser):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            evaluated.append("mime")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(re, "compile", spy_compile)
    monkeypatch.setattr(email.parser, "Parser", SpyParser)
    refused(ping_with_extra(SEMANTIC_CASES["regex 35"]))
    refused(ping_with_extra(SEMANTIC_CASES["mime 36"]))
    assert evaluated == []
    # The spies do see what plain cbor2 evaluates, so the check above means something.
    cbor2.loads(SEMANTIC_CASES["regex 35"])
    cbor2.loads(SEMANTIC_CASES["mime 36"])
    assert evaluated == ["regex", "mime"]


def test_no_tag_number_is_evaluated() -> None:
    # Guards against a cbor2 upgrade adding built-in decoders: any tag on any
    # kind of content, in an ignored key, must be refused.
    # (The content varies with the tag number to keep this test fast.)
    contents = [b"\x01", b"\x61a", b"\x41\x01", b"\x82\x01\x02"]
    tags = [*range(2**16), 2**16, 2**32 - 1, 2**32, 2**63, 2**64 - 1]
    for tag in tags:
        with pytest.raises(ProtocolError):
            decode_frame(ping_with_extra(tag_bytes(tag) + contents[tag % 4]))


@pytest.mark.parametrize(
    "raw",
    ["5f4101ff", "7f6161ff", "9f01ff", "bf616101ff"],
    ids=["bytes", "text", "array", "map"],
)
def test_indefinite_lengths_refused(raw: str) -> None:
    refused(ping_with_extra(bytes.fromhex(raw)))


def test_indefinite_top_level_map_refused() -> None:
    body = cbor2.dumps(ping_fields())[1:]
    refused(b"\xbf" + body + b"\xff")


def test_duplicate_keys_refused() -> None:
    # Two "id" keys: which one wins would be up to the decoder.
    refused(with_one_more_entry(cbor2.dumps(ping_fields()), b"\x62id\x08"))


def test_non_text_keys_refused() -> None:
    refused(with_one_more_entry(cbor2.dumps(ping_fields()), b"\x01\x01"))


def test_nesting_limit_is_four_levels_below_the_map() -> None:
    # docs/protocol.md: items may lie at most 4 levels below the top-level map.
    assert decode_frame(ping_with_extra(b"\x81" * 3 + b"\x01")).request_id == 7
    refused(ping_with_extra(b"\x81" * 4 + b"\x01"))


@pytest.mark.parametrize("depth", [6, 50, 100_000])
def test_deep_nesting_refused(depth: int) -> None:
    refused(ping_with_extra(b"\x81" * depth + b"\x01"))


def test_trailing_bytes_refused() -> None:
    refused(cbor2.dumps(ping_fields()) + b"\x00")


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff", b"\x1b", cbor2.dumps([1, 2]), cbor2.dumps(1), cbor2.dumps("ping")],
)
def test_not_a_map(payload: bytes) -> None:
    assert refused(payload).request_id is None


def test_huge_declared_lengths_do_not_allocate() -> None:
    refused(b"\x5b" + (2**62).to_bytes(8, "big"))
    refused(b"\x9b" + (2**62).to_bytes(8, "big"))
    refused(b"\xbb" + (2**62).to_bytes(8, "big"))


def test_stored_values_keep_their_tags_but_run_no_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluated: list[str] = []
    monkeypatch.setattr(re, "compile", lambda *args, **kwargs: evaluated.append("regex"))
    monkeypatch.setattr(email.parser, "Parser", lambda *args, **kwargs: evaluated.append("mime"))
    assert decode_value(SEMANTIC_CASES["regex 35"]) == cbor2.CBORTag(35, "(a+)+$")
    assert decode_value(SEMANTIC_CASES["mime 36"]).tag == 36
    assert decode_value(SEMANTIC_CASES["bignum 2"]) == int.from_bytes(b"\x01" * 20, "big")
    assert decode_value(SEMANTIC_CASES["set 258"]) == {1, 2}
    assert evaluated == []


@pytest.mark.parametrize("data", [b"", b"\xff", b"\x01\x01", b"\x5b" + (2**62).to_bytes(8, "big")])
def test_a_stored_value_is_exactly_one_item(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_value(data)
    assert not well_formed_value(data)
    assert not acceptable_value(data, 1024)


def test_an_acceptable_value_is_well_formed_and_within_the_size_rule() -> None:
    value = cbor2.dumps("x" * 10)
    assert well_formed_value(value)
    assert acceptable_value(value, len(value))
    assert not acceptable_value(value, len(value) - 1)


def test_frame_items_are_loaded_with_every_tag_refused() -> None:
    assert load_frame_item(cbor2.dumps({"a": [1]})) == {"a": [1]}
    for raw in SEMANTIC_CASES.values():
        with pytest.raises(ProtocolError):
            load_frame_item(raw)
