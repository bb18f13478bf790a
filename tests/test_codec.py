"""The codec: round trips, and hostile input raising nothing but ProtocolError."""

from __future__ import annotations

import email.parser
import re
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutation import mutate

from trio_kad._codec import (
    MAX_CONTACTS,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_HOST_LENGTH,
    MAX_REQUEST_ID,
    FrameReader,
    UnsupportedFrameError,
    decode_frame,
    encode_frame,
    encode_reply,
)
from trio_kad._errors import ProtocolError
from trio_kad._ids import Contact
from trio_kad._messages import (
    MAX_BATCH_PAIRS,
    MAX_TTL,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Frame,
    Nodes,
    Ping,
    Pong,
    ReplyFrame,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)

SENDER = bytes(range(32))
KEY = bytes(range(100, 132))

# --- strategies ----------------------------------------------------------------

ids = st.binary(min_size=32, max_size=32)
request_ids = st.integers(0, MAX_REQUEST_ID)
ports = st.integers(1, 65535)
hosts = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    min_size=1,
    max_size=MAX_HOST_LENGTH,
)
contacts = st.builds(Contact, ids, hosts, ports)
batch_pairs = st.builds(Store, ids, st.binary(min_size=1, max_size=16), st.integers(0, MAX_TTL))
batch_results = st.sampled_from([0, *ErrorCode])
requests = st.one_of(
    st.just(Ping()),
    st.builds(
        Store,
        ids,
        st.binary(min_size=1, max_size=64),
        st.none() | st.integers(0, MAX_TTL),
        st.booleans(),
    ),
    st.builds(FindNode, ids),
    st.builds(FindValue, ids),
    st.builds(StoreMany, st.lists(batch_pairs, min_size=1, max_size=4).map(tuple)),
)
replies = st.one_of(
    st.just(Pong()),
    st.just(Stored()),
    st.builds(Nodes, st.lists(contacts, max_size=8).map(tuple)),
    st.builds(FoundValue, st.binary(max_size=64), st.none() | st.integers(0, MAX_TTL)),
    st.builds(ErrorReply, st.sampled_from(ErrorCode), st.text(max_size=MAX_ERROR_MESSAGE_LENGTH)),
    st.builds(StoredMany, st.lists(batch_results, min_size=1, max_size=8).map(tuple)),
)
frames: st.SearchStrategy[Frame] = st.one_of(
    st.builds(RequestFrame, request_ids, ids, st.none() | ports, requests),
    st.builds(ReplyFrame, request_ids, ids, replies),
)

# Anything CBOR can say, including tags, floats, simple values and bignums.
cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    st.text(max_size=20),
)
cbor_items = st.recursive(
    cbor_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6) | st.binary(max_size=4), children, max_size=4),
        st.builds(cbor2.CBORTag, st.integers(0, 2**64 - 1), children),
    ),
    max_leaves=12,
)
FIELD_NAMES = [
    "v", "t", "id", "from", "port", "key", "value", "target", "nodes", "code", "message",
    "pairs", "results",
]  # fmt: skip
TYPE_NAMES = [
    "ping", "store", "find_node", "find_value", "pong", "stored", "nodes", "value",
    "store_many", "stored_many",
]  # fmt: skip


def payload_of(frame: Frame) -> bytes:
    return encode_frame(frame)[4:]


def fields_of(frame: Frame) -> dict[str, Any]:
    fields = cbor2.loads(payload_of(frame))
    assert isinstance(fields, dict)
    return fields


def decodes_or_refuses(payload: bytes) -> None:
    """The fuzzing property: a valid frame that re-encodes to itself, or ProtocolError."""
    try:
        frame = decode_frame(payload)
    except ProtocolError:
        return
    assert decode_frame(payload_of(frame)) == frame


def ping_fields(**extra: Any) -> dict[str, Any]:
    return {"v": 1, "t": "ping", "id": 7, "from": SENDER, "port": 4000, **extra}


# --- round trips ----------------------------------------------------------------


@settings(max_examples=200)
@given(frames)
def test_round_trip(frame: Frame) -> None:
    encoded = encode_frame(frame)
    assert int.from_bytes(encoded[:4], "big") == len(encoded) - 4
    assert decode_frame(encoded[4:]) == frame


@given(request_ids, ids, replies)
def test_encode_reply_is_encode_frame_of_a_reply(request_id: int, sender: bytes, body: Any) -> None:
    frame = ReplyFrame(request_id, sender, body)
    assert encode_reply(request_id, sender, body) == encode_frame(frame)


def test_encode_reply_refuses_what_encode_frame_refuses() -> None:
    with pytest.raises(ValueError):
        encode_reply(1, SENDER, Ping())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_reply(1, b"short", Pong())
    with pytest.raises(ValueError):
        encode_reply(MAX_REQUEST_ID + 1, SENDER, Pong())


def test_ping_frame_bytes_match_docs() -> None:
    # The worked example in docs/protocol.md.
    encoded = encode_frame(RequestFrame(1, SENDER, 4000, Ping()))
    assert encoded.hex() == (
        "0000003e"
        "a5"
        "6176" "01"
        "6174" "6470696e67"
        "626964" "01"
        "6466726f6d" "5820" + SENDER.hex() + "64706f7274" "190fa0"
    )  # fmt: skip


def test_client_only_request_has_no_port() -> None:
    frame = RequestFrame(3, SENDER, None, FindNode(KEY))
    assert "port" not in fields_of(frame)
    assert decode_frame(payload_of(frame)).sender_port is None  # type: ignore[union-attr]


def test_port_in_a_reply_is_ignored() -> None:
    fields = fields_of(ReplyFrame(3, SENDER, Pong())) | {"port": 0}
    assert decode_frame(cbor2.dumps(fields)) == ReplyFrame(3, SENDER, Pong())


def test_unknown_keys_are_ignored() -> None:
    fields = ping_fields(extra=[1, {"a": b"b"}], **{"x-future": "yes"})
    assert decode_frame(cbor2.dumps(fields)) == RequestFrame(7, SENDER, 4000, Ping())


def test_deepest_legitimate_frame_decodes() -> None:
    contact = Contact(KEY, "h" * MAX_HOST_LENGTH, 65535)
    frame = ReplyFrame(MAX_REQUEST_ID, SENDER, Nodes((contact,) * MAX_CONTACTS))
    assert decode_frame(payload_of(frame)) == frame


# --- fuzzing ------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_arbitrary_bytes(payload: bytes) -> None:
    decodes_or_refuses(payload)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(cbor_items)
def test_arbitrary_cbor(item: object) -> None:
    decodes_or_refuses(cbor2.dumps(item))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(FIELD_NAMES),
        cbor_items
        | st.sampled_from(TYPE_NAMES)
        | ids
        | st.just(1)
        | st.lists(st.tuples(ids, hosts, ports).map(list), max_size=3)
        | st.lists(
            st.tuples(ids, st.binary(max_size=3), st.integers(-1, MAX_TTL + 1)).map(list),
            max_size=3,
        )
        | st.lists(st.integers(-1, len(ErrorCode) + 1), max_size=MAX_BATCH_PAIRS + 1),
    )
)
def test_arbitrary_frame_shaped_maps(fields: dict[str, object]) -> None:
    decodes_or_refuses(cbor2.dumps(fields))


@settings(max_examples=300)
@given(frames, st.sampled_from(FIELD_NAMES), cbor_items, st.booleans())
def test_mutated_fields(frame: Frame, name: str, item: object, delete: bool) -> None:
    fields = fields_of(frame)
    if delete:
        fields.pop(name, None)
    else:
        fields[name] = item
    decodes_or_refuses(cbor2.dumps(fields))


@settings(max_examples=300)
@given(frames, st.data())
def test_mutated_bytes(frame: Frame, data: st.DataObject) -> None:
    decodes_or_refuses(mutate(payload_of(frame), data))


# --- refusals, explicitly --------------------------------------------------------


def refused(payload: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_frame(payload)
    return info.value


def tag_bytes(tag: int) -> bytes:
    if tag < 24:
        return bytes([0xC0 | tag])
    for head, size in ((0xD8, 1), (0xD9, 2), (0xDA, 4), (0xDB, 8)):
        if tag < 1 << (8 * size):
            return bytes([head]) + tag.to_bytes(size, "big")
    raise AssertionError(tag)


def ping_with_extra(raw_value: bytes) -> bytes:
    """A valid ping whose ignored extra key "x" holds ``raw_value`` (raw CBOR)."""
    return with_one_more_entry(cbor2.dumps(ping_fields()), b"\x61x" + raw_value)


def with_one_more_entry(payload: bytes, raw_entry: bytes) -> bytes:
    """Append a raw key/value pair to an encoded map of fewer than 23 entries."""
    assert 0xA0 <= payload[0] < 0xB7
    return bytes([payload[0] + 1]) + payload[1:] + raw_entry


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


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("id", True),
        ("id", -1),
        ("id", 2**64),
        ("id", 1.0),
        ("id", "7"),
        ("id", None),
    ],
)
def test_bad_request_id_leaves_request_id_unset(name: str, value: object) -> None:
    assert refused(cbor2.dumps(ping_fields(**{name: value}))).request_id is None


def test_missing_id() -> None:
    fields = ping_fields()
    del fields["id"]
    assert refused(cbor2.dumps(fields)).request_id is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("v", True),
        ("v", 1.0),
        ("v", None),
        ("t", b"ping"),
        ("t", 1),
        ("from", SENDER[:31]),
        ("from", SENDER + b"\x00"),
        ("from", SENDER.hex()),
        ("from", list(SENDER)),
        ("port", 0),
        ("port", 65536),
        ("port", -1),
        ("port", True),
        ("port", None),
        ("port", "4000"),
        ("port", 4000.0),
    ],
)
def test_bad_field_sets_request_id(name: str, value: object) -> None:
    error = refused(cbor2.dumps(ping_fields(**{name: value})))
    assert error.request_id == 7
    assert not isinstance(error, UnsupportedFrameError)


@pytest.mark.parametrize("name", ["v", "t", "from"])
def test_missing_field_sets_request_id(name: str) -> None:
    fields = ping_fields()
    del fields[name]
    assert refused(cbor2.dumps(fields)).request_id == 7


@pytest.mark.parametrize(("name", "value"), [("v", 2), ("v", 0), ("t", "store_all"), ("t", "")])
def test_unsupported_version_or_type(name: str, value: object) -> None:
    error = refused(cbor2.dumps(ping_fields(**{name: value})))
    assert isinstance(error, UnsupportedFrameError)
    assert error.request_id == 7


def test_max_request_id_accepted() -> None:
    frame = decode_frame(cbor2.dumps(ping_fields(id=MAX_REQUEST_ID)))
    assert frame.request_id == MAX_REQUEST_ID


@pytest.mark.parametrize(
    ("frame", "name", "value"),
    [
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "key", KEY[:31]),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "value", b""),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "value", "v"),
        (RequestFrame(7, SENDER, 1, FindNode(KEY)), "target", None),
        (RequestFrame(7, SENDER, 1, FindValue(KEY)), "key", KEY + KEY),
        (ReplyFrame(7, SENDER, FoundValue(b"v")), "value", ["v"]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", {}),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 1]] * (MAX_CONTACTS + 1)),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 1, 2]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h"]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY[:1], "h", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h" * 254, 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "a b", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h\n", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "hé", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, b"h", 1]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 0]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", 65536]]),
        (ReplyFrame(7, SENDER, Nodes(())), "nodes", [[KEY, "h", True]]),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "code", 99),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "code", True),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "code", "5"),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "message", b"x"),
        (ReplyFrame(7, SENDER, ErrorReply(ErrorCode.INTERNAL, "x")), "message", "x" * 257),
    ],
)
def test_bad_body_field(frame: Frame, name: str, value: object) -> None:
    fields = fields_of(frame) | {name: value}
    assert refused(cbor2.dumps(fields)).request_id == 7
    del fields[name]
    assert refused(cbor2.dumps(fields)).request_id == 7


@pytest.mark.parametrize(
    ("frame", "name", "value"),
    [
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "ttl", -1),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "ttl", MAX_TTL + 1),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "ttl", True),
        (RequestFrame(7, SENDER, 1, Store(KEY, b"v")), "cache", 1),
        (ReplyFrame(7, SENDER, FoundValue(b"v")), "ttl", 1.5),
    ],
)
def test_bad_optional_field(frame: Frame, name: str, value: object) -> None:
    fields = fields_of(frame) | {name: value}
    assert refused(cbor2.dumps(fields)).request_id == 7
    del fields[name]
    assert decode_frame(cbor2.dumps(fields)) == frame


# --- encoding refuses what decoding would refuse ------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        RequestFrame(-1, SENDER, 1, Ping()),
        RequestFrame(2**64, SENDER, 1, Ping()),
        RequestFrame(True, SENDER, 1, Ping()),
        RequestFrame(1, SENDER[:31], 1, Ping()),
        RequestFrame(1, SENDER, 0, Ping()),
        RequestFrame(1, SENDER, 65536, Ping()),
        RequestFrame(1, SENDER, 1, Store(KEY, b"")),
        RequestFrame(1, SENDER, 1, Store(KEY[:1], b"v")),
        RequestFrame(1, SENDER, 1, FindNode(b"")),
        RequestFrame(1, SENDER, 1, FindValue(KEY.hex().encode())),
        RequestFrame(1, SENDER, 1, Pong()),  # type: ignore[arg-type]
        ReplyFrame(1, SENDER, Ping()),  # type: ignore[arg-type]
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "h", 1),) * (MAX_CONTACTS + 1))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "", 1),))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "a b", 1),))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY, "h", 0),))),
        ReplyFrame(1, SENDER, Nodes((Contact(KEY[:4], "h", 1),))),
        ReplyFrame(1, SENDER, ErrorReply(5, "x")),  # type: ignore[arg-type]
        ReplyFrame(1, SENDER, ErrorReply(ErrorCode.INTERNAL, "x" * 257)),
        Ping(),
    ],
)
def test_encode_refuses_invalid_frames(frame: Any) -> None:
    with pytest.raises(ValueError):
        encode_frame(frame)


# --- FrameReader ------------------------------------------------------------------


def test_reader_byte_at_a_time() -> None:
    frames_in: list[Frame] = [
        RequestFrame(1, SENDER, 4000, Store(KEY, b"value" * 50)),
        ReplyFrame(1, SENDER, Stored()),
    ]
    stream = b"".join(encode_frame(frame) for frame in frames_in)
    reader = FrameReader(1024)
    out = []
    for index in range(len(stream)):
        reader.feed(stream[index : index + 1])
        payload = reader.next_payload()
        if payload is not None:
            out.append(decode_frame(payload))
            assert reader.buffered == 0
        else:
            assert reader.buffered > 0
        assert reader.next_payload() is None
    assert out == frames_in
    assert reader.buffered == 0


def test_reader_several_frames_in_one_feed() -> None:
    frames_in: list[Frame] = [ReplyFrame(n, SENDER, FoundValue(bytes([n]) * n)) for n in range(50)]
    stream = b"".join(encode_frame(frame) for frame in frames_in)
    reader = FrameReader(1024)
    reader.feed(stream + b"\x00\x00")  # and the start of a 51st frame
    out = []
    while (payload := reader.next_payload()) is not None:
        out.append(decode_frame(payload))
    assert out == frames_in
    assert reader.buffered == 2
    reader.feed(b"\x00\x01\xa0")
    assert reader.next_payload() == b"\xa0"
    assert reader.buffered == 0


def test_reader_empty_payload() -> None:
    reader = FrameReader(10)
    reader.feed(b"\x00\x00\x00\x00")
    assert reader.next_payload() == b""
    assert reader.buffered == 0


def test_reader_exact_limit_accepted() -> None:
    reader = FrameReader(5)
    reader.feed(b"\x00\x00\x00\x05" + b"x" * 5)
    assert reader.next_payload() == b"xxxxx"


def test_reader_oversize_prefix_raises_before_body() -> None:
    reader = FrameReader(1024)
    reader.feed(b"\x00\x00\x04")
    assert reader.next_payload() is None
    reader.feed(b"\x01")  # 1025: the prefix alone is enough to refuse
    with pytest.raises(ProtocolError) as info:
        reader.next_payload()
    assert info.value.request_id is None
    with pytest.raises(ProtocolError):  # the stream has no framing any more
        reader.next_payload()


def test_reader_huge_prefix() -> None:
    reader = FrameReader(1024 * 1024)
    reader.feed(b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError):
        reader.next_payload()


@pytest.mark.parametrize("size", [0, -1, True, 1.5])
def test_reader_rejects_bad_limit(size: Any) -> None:
    with pytest.raises(ValueError):
        FrameReader(size)


@settings(max_examples=100)
@given(st.lists(frames, max_size=5), st.data())
def test_reader_any_chunking(frames_in: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(frame) for frame in frames_in)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    reader = FrameReader(1024 * 1024)
    out = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        reader.feed(stream[start:end])
        while (payload := reader.next_payload()) is not None:
            out.append(decode_frame(payload))
    assert out == frames_in
    assert reader.buffered == 0
