"""Whole-server fuzzing: hostile bytes and messages cannot crash a node or alter its store.

Each hypothesis example starts a fresh node on a ``MemoryNetwork`` under an
autojump ``MockClock`` (so nothing here sleeps in real time), preloads a few
known records, then feeds it hostile input along two paths:

- raw bytes through the receiving side of the memory transport
  (``MemoryTransport._serve``: codec, handler, reply encoding, exactly what a
  peer's frame goes through);
- decoded ``RequestFrame`` objects straight into ``Node.handle_request``, for
  valid-shaped requests with hostile values and odd remote addresses.

After every input the node must: raise nothing (the codec may raise only its
own ``ProtocolError``), answer with a valid frame that carries no traceback or
local path, still answer PING and FIND_VALUE for every known key with the
right value through an honest client, and hold its records unchanged, except
the one key a well-formed, acknowledged STORE names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from typing import Any

import cbor2
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trio_kad
from trio_kad import Config, MemoryNetwork, MemoryTransport, TcpTransport, open_dht
from trio_kad._codec import (
    MAX_CONTACTS,
    MAX_HOST_LENGTH,
    MAX_REQUEST_ID,
    FrameReader,
    decode_frame,
    encode_frame,
)
from trio_kad._errors import ProtocolError
from trio_kad._ids import Address, Contact, key_id
from trio_kad._messages import (
    MAX_TTL,
    ErrorCode,
    ErrorReply,
    FindNode,
    FindValue,
    FoundValue,
    Nodes,
    Ping,
    Pong,
    Reply,
    ReplyFrame,
    Request,
    RequestFrame,
    Store,
    Stored,
    StoredMany,
    StoreMany,
)
from trio_kad._newer import from_future, newer
from trio_kad._storing import publish
from trio_kad._values import well_formed_value

NODE_ID = hashlib.sha256(b"fuzzed node").digest()
CLIENT_ID = hashlib.sha256(b"honest client").digest()
CONFIG = Config()
KNOWN: dict[bytes, bytes] = {
    key_id(name): cbor2.dumps(value)
    for name, value in [("alpha", "one"), ("beta", [1, 2, 3]), ("gamma", b"\x00" * 300)]
}
KNOWN_KEYS = list(KNOWN)
# Peers put into the table before fuzzing, so FIND_NODE has contacts to return.
PEERS = [
    Contact(hashlib.sha256(b"peer %d" % i).digest(), f"10.0.{i}.1", 4000 + i) for i in range(8)
]

# Text that must never reach the wire: tracebacks, file names, local paths.
FORBIDDEN = [
    b"Traceback",
    b'File "',
    b".py",
    b"Error(",
    os.fsencode(os.path.dirname(trio_kad.__file__)),
    os.fsencode(os.getcwd()),
]

# --- hostile values -----------------------------------------------------------

ids = st.binary(min_size=32, max_size=32)
wrong_length_ids = st.binary(max_size=64).filter(lambda b: len(b) != 32)
huge_ints = st.sampled_from(
    [-(2**64) - 1, -(2**64), -(2**63), -1, 0, 1, 2**31, 2**32, 2**63, 2**64 - 1, 2**64, 2**100]
)
deep_lists = st.integers(5, 300).map(lambda depth: _nest([], depth))
deep_maps = st.integers(5, 100).map(lambda depth: _nest({}, depth))
nested_tags = st.integers(1, 100).map(lambda depth: _tagged(b"x", depth))
huge_lists = st.sampled_from([[0] * 300, [b"\x00" * 32] * 300, [[NODE_ID, "h", 1]] * 300])
oversized = st.sampled_from(
    [b"", b"\x00" * (CONFIG.max_value_size + 1), b"v" * CONFIG.max_value_size]
)
absurd_hosts = st.sampled_from(
    [
        "",
        " ",
        "a" * (MAX_HOST_LENGTH + 1),
        "a" * MAX_HOST_LENGTH,
        "999.999.999.999",
        "0.0.0.0",
        "255.255.255.255",
        "::",
        "::ffff:10.0.0.1",
        "fe80::1%eth0",
        "localhost",
        "host\x00name",
        "héllo",
        "-",
    ]
)
cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    huge_ints,
    st.floats(allow_nan=True),
    st.binary(max_size=40),
    ids,
    st.text(max_size=20),
    absurd_hosts,
)
cbor_items = st.recursive(
    cbor_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=6) | st.binary(max_size=4), children, max_size=4),
        st.builds(cbor2.CBORTag, st.integers(0, 2**64 - 1), children),
    ),
    max_leaves=10,
)
hostile_values = st.one_of(
    cbor_items,
    huge_ints,
    wrong_length_ids,
    deep_lists,
    deep_maps,
    nested_tags,
    huge_lists,
    oversized,
    st.sampled_from([True, False, 1.0, -0.0, float("inf"), float("nan"), "1", b"1"]),
    st.sampled_from([*KNOWN_KEYS, NODE_ID, CLIENT_ID]),
    st.lists(st.tuples(ids, absurd_hosts, huge_ints).map(list), max_size=3),
)
message_types = st.sampled_from(
    [
        "ping",
        "store",
        "find_node",
        "find_value",
        "store_many",
        "pong",
        "stored",
        "nodes",
        "value",
        "error",
        "stored_many",
    ]
) | st.text(max_size=12)
FIELD_NAMES = [
    "v",
    "t",
    "id",
    "from",
    "port",
    "key",
    "value",
    "ttl",
    "cache",
    "target",
    "nodes",
    "code",
    "message",
    "pairs",
    "results",
]


def _nest(inner: Any, depth: int) -> Any:
    item = inner
    for _ in range(depth):
        item = [item] if isinstance(inner, list) else {"a": item}
    return item


def _tagged(inner: object, depth: int) -> object:
    item = inner
    for tag in range(depth):
        item = cbor2.CBORTag(tag * 7919 % 70000, item)
    return item


def _with_raw_field(item: bytes) -> bytes:
    """A PING map whose last field is ``item``, raw CBOR bytes cbor2 could not encode.

    (cbor2's encoder refuses deep items or crashes the process on them, so the
    deepest and most broken payloads are written by hand, as an attacker would.)
    """
    payload = cbor2.dumps(_base_fields("ping", 1) | {"x": 0})
    assert payload.endswith(b"\x00")
    return payload[:-1] + item


def _base_fields(kind: str, request_id: int) -> dict[str, Any]:
    """A well-formed map of message type ``kind``, to be spoiled by the strategies."""
    fields: dict[str, Any] = {"v": 1, "t": kind, "id": request_id, "from": PEERS[0].node_id}
    if kind in ("ping", "store", "find_node", "find_value", "store_many"):
        fields["port"] = 4000
    if kind == "store":
        fields |= {"key": KNOWN_KEYS[0], "value": b"\x63new", "ttl": 60, "cache": False}
    elif kind == "find_node":
        fields["target"] = NODE_ID
    elif kind == "find_value":
        fields["key"] = KNOWN_KEYS[1]
    elif kind == "nodes":
        fields["nodes"] = [[p.node_id, p.host, p.port] for p in PEERS[:3]]
    elif kind == "value":
        fields["value"] = b"\x01"
    elif kind == "error":
        fields |= {"code": 5, "message": "x"}
    elif kind == "store_many":
        fields["pairs"] = [[KNOWN_KEYS[0], b"\x63new", 60], [KNOWN_KEYS[1], b"\x01", 0]]
    elif kind == "stored_many":
        fields["results"] = [0, 5]
    return fields


@st.composite
def hostile_maps(draw: st.DrawFn) -> bytes:
    """A CBOR map of the protocol's shape with some fields spoiled, deleted or added."""
    request_id = draw(st.sampled_from([0, 1, MAX_REQUEST_ID]) | st.integers(0, MAX_REQUEST_ID))
    fields = _base_fields(draw(message_types), request_id)
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(FIELD_NAMES) | st.text(max_size=6))
        if draw(st.integers(0, 4)) == 0:
            fields.pop(name, None)
        else:
            fields[name] = draw(hostile_values)
    return cbor2.dumps(fields)


hostile_requests: st.SearchStrategy[Request] = st.one_of(
    st.just(Ping()),
    st.builds(
        Store,
        st.sampled_from(KNOWN_KEYS) | ids,
        st.binary(min_size=1, max_size=64) | oversized.filter(bool),
        st.sampled_from([None, 0, 1, MAX_TTL]) | st.integers(0, MAX_TTL),
        st.booleans(),
    ),
    st.builds(FindNode, st.sampled_from([NODE_ID, CLIENT_ID, PEERS[0].node_id]) | ids),
    st.builds(FindValue, st.sampled_from([*KNOWN_KEYS, NODE_ID]) | ids),
)
senders = st.sampled_from([NODE_ID, CLIENT_ID, PEERS[0].node_id, PEERS[1].node_id]) | ids
sender_ports = st.sampled_from([None, 1, 65535]) | st.integers(1, 65535)
request_frames = st.builds(
    RequestFrame,
    st.sampled_from([0, MAX_REQUEST_ID]) | st.integers(0, MAX_REQUEST_ID),
    senders,
    sender_ports,
    hostile_requests,
)
hostile_replies: st.SearchStrategy[Reply] = st.one_of(
    st.just(Pong()),
    st.just(Stored()),
    st.builds(
        Nodes,
        st.lists(
            st.builds(
                Contact,
                st.sampled_from([NODE_ID, CLIENT_ID]) | ids,
                st.sampled_from(["a" * MAX_HOST_LENGTH, "0.0.0.0", "::", "~!@#$%^&*()"]),
                st.sampled_from([1, 65535]),
            ),
            max_size=MAX_CONTACTS,
        ).map(tuple),
    ),
    st.builds(FoundValue, st.binary(max_size=64), st.none() | st.just(MAX_TTL)),
    st.builds(ErrorReply, st.sampled_from(ErrorCode), st.text(max_size=40)),
)
# Replies nobody asked for, from ids the node never contacted.
unsolicited_replies = st.builds(
    ReplyFrame, st.integers(0, MAX_REQUEST_ID), senders, hostile_replies
)
remote_hosts = st.sampled_from(["127.0.0.1", "127.0.0.2", "10.9.8.7", "::1", "2001:db8::1"])
# Remote hosts a transport can report (TCP: an IP literal; memory: the peer's own host).
odd_remote_hosts = st.sampled_from(
    ["0.0.0.0", "255.255.255.255", "::", "::ffff:10.0.0.1", "fe80::1%eth0", "localhost"]
)


def _short(data: object) -> str:
    text = repr(data)
    return text if len(text) <= 300 else f"{text[:300]}... ({len(text)} characters)"


class Raw:
    """Bytes (a length prefix is added) delivered to the node's transport from ``host``."""

    __slots__ = ("host", "payload")

    def __init__(self, payload: bytes, host: str) -> None:
        self.payload = payload
        self.host = host

    def __repr__(self) -> str:
        # Short, so a failing example with a 64 KiB value still prints usefully.
        return f"Raw({_short(self.payload)}, {self.host!r})"


class Direct:
    """A decoded request handed straight to ``Node.handle_request`` from ``remote``."""

    __slots__ = ("frame", "remote")

    def __init__(self, frame: RequestFrame, remote: Address) -> None:
        self.frame = frame
        self.remote = remote

    def __repr__(self) -> str:
        return f"Direct({_short(self.frame)}, {self.remote!r})"


Input = Raw | Direct


def _raw(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[Raw]:
    # map, not builds: hypothesis prints a builds() result as its (huge) arguments.
    return st.tuples(payloads, remote_hosts).map(lambda t: Raw(*t))


raw_bytes = _raw(st.binary(max_size=300))
raw_maps = _raw(hostile_maps())
raw_requests = _raw(request_frames.map(lambda f: encode_frame(f)[4:]))
raw_replies = _raw(unsolicited_replies.map(lambda f: encode_frame(f)[4:]))
direct_requests = st.tuples(
    request_frames,
    st.tuples(remote_hosts | odd_remote_hosts, st.sampled_from([0, 1, 65535, 40000])),
).map(lambda t: Direct(*t))
any_input = st.one_of(raw_bytes, raw_maps, raw_requests, raw_replies, direct_requests)

# --- the harness --------------------------------------------------------------

RecordState = dict[bytes, tuple[bytes, float, bool, bool, int]]


class Harness:
    """A running node with known records, an honest client, and the checks."""

    def __init__(self, dht: trio_kad.Dht, client: MemoryTransport) -> None:
        self.dht = dht
        self.node = dht._node
        transport = self.node.transport
        assert isinstance(transport, MemoryTransport)
        self.transport = transport
        self.client = client
        self.expected = dict(KNOWN)

    def records(self) -> RecordState:
        return {
            r.key: (r.value, r.expires_at, r.publisher, r.cached, r.published)
            for r in self.node.records
        }

    def contacts(self) -> set[Contact]:
        return set(self.node.table.contacts())

    def known_contacts(self) -> set[Contact]:
        """Contacts in buckets or replacement caches: those a failure may promote."""
        cached = {c for bucket in self.node.table.buckets for c in bucket.replacements}
        return self.contacts() | cached

    async def feed(self, item: Input) -> None:
        """Deliver one hostile input and check everything the node must still be."""
        records_before = self.records()
        contacts_before = self.known_contacts()
        if isinstance(item, Raw):
            frame = self._decode_expectation(item.payload)
            data = len(item.payload).to_bytes(4, "big") + item.payload
            reply = await self.transport.deliver(data, item.host)
            sender_host = item.host
        else:
            frame = item.frame
            body = await self.node.handle_request(frame, item.remote)
            reply = encode_frame(ReplyFrame(frame.request_id, NODE_ID, body))
            sender_host = item.remote[0]
        reply_body = self._check_reply(frame, reply)
        self._check_records(frame, reply_body, records_before)
        self._check_table(frame, sender_host, contacts_before)
        await self._check_serving()

    def _decode_expectation(self, payload: bytes) -> RequestFrame | ProtocolError | ReplyFrame:
        # The codec may raise its own error and nothing else, whatever the bytes.
        try:
            return decode_frame(payload)
        except ProtocolError as exc:
            return exc

    def _check_reply(
        self, frame: RequestFrame | ReplyFrame | ProtocolError, reply: bytes | None
    ) -> Reply | None:
        if isinstance(frame, ProtocolError):
            if frame.request_id is None:
                assert reply is None  # nothing to answer: the connection closes
                return None
            expected_id = frame.request_id
        elif isinstance(frame, ReplyFrame):
            assert reply is None  # a reply sent as a request is not answered
            return None
        else:
            expected_id = frame.request_id
        assert reply is not None
        assert int.from_bytes(reply[:4], "big") == len(reply) - 4
        decoded = decode_frame(reply[4:])
        assert isinstance(decoded, ReplyFrame)
        assert decoded.request_id == expected_id
        assert decoded.sender_id == NODE_ID
        assert encode_frame(decoded) == reply
        body = decoded.body
        if isinstance(frame, ProtocolError):
            assert isinstance(body, ErrorReply)
            assert body.code in (ErrorCode.MALFORMED, ErrorCode.UNSUPPORTED, ErrorCode.TOO_LARGE)
        if isinstance(body, FoundValue):
            # The value is data someone stored; only the envelope is ours.
            assert isinstance(frame, RequestFrame)
            assert isinstance(frame.body, FindValue)
            assert body.value == self.node.records.get(frame.body.key, trio.current_time()).value  # type: ignore[union-attr]
        else:
            for marker in FORBIDDEN:
                assert marker not in reply, (marker, body)
        if isinstance(body, ErrorReply):
            assert len(body.message) <= 64 and body.message.isprintable()
        if isinstance(frame, RequestFrame):
            self._check_answer(frame, body)
        return body

    def _check_answer(self, frame: RequestFrame, body: Reply) -> None:
        request = frame.body
        if isinstance(body, ErrorReply):
            if frame.sender_id == NODE_ID:
                return  # a request claiming our own id is refused
            if isinstance(request, Store) and len(request.value) > CONFIG.max_value_size:
                assert body.code is ErrorCode.TOO_LARGE
                return
            if isinstance(request, Store) and not well_formed_value(request.value):
                assert body.code is ErrorCode.MALFORMED  # a value no setter could make
                return
            if isinstance(request, Store) and from_future(request.published, self.node.wall_ms()):
                assert body.code is ErrorCode.MALFORMED  # dated too far ahead
                return
            if isinstance(request, Store) and body.code is ErrorCode.SUPERSEDED:
                # Only a newer pair held refuses a STORE, and the reply says when it was published.
                held = self.node.records.get(request.key, trio.current_time())
                assert held is not None
                assert newer(held.published, held.value, request.published, request.value)
                assert body.published == held.published
                return
            # Anything else may be refused only for load (rate, quota), never as "internal".
            assert body.code is ErrorCode.OVERLOADED, body
            return
        assert frame.sender_id != NODE_ID, "a request from our own id must be refused"
        if isinstance(request, Ping):
            assert isinstance(body, Pong)
        elif isinstance(request, Store):
            assert isinstance(body, Stored)
            assert len(request.value) <= CONFIG.max_value_size
        elif isinstance(request, FindNode):
            assert isinstance(body, Nodes)
            self._check_contacts(body, frame.sender_id)
        elif isinstance(request, FindValue):
            if isinstance(body, Nodes):
                self._check_contacts(body, frame.sender_id)
                assert self.node.records.get(request.key, trio.current_time()) is None
            else:
                assert isinstance(body, FoundValue)

    def _check_contacts(self, body: Nodes, requester: bytes) -> None:
        assert len(body.contacts) <= CONFIG.k
        ids_sent = [c.node_id for c in body.contacts]
        assert len(set(ids_sent)) == len(ids_sent)
        assert NODE_ID not in ids_sent
        assert requester not in ids_sent

    def _check_records(
        self,
        frame: RequestFrame | ReplyFrame | ProtocolError,
        body: Reply | None,
        before: RecordState,
    ) -> None:
        after = self.records()
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        # The pairs the node acknowledged: one STORE, or the accepted pairs of a STORE_MANY.
        acked: list[Store] = []
        if isinstance(frame, RequestFrame):
            if isinstance(frame.body, Store) and isinstance(body, Stored):
                acked = [frame.body]
            elif isinstance(frame.body, StoreMany) and isinstance(body, StoredMany):
                assert len(body.results) == len(frame.body.pairs)
                acked = [p for p, r in zip(frame.body.pairs, body.results, strict=True) if r == 0]
        if not acked:
            assert not changed, "only an acknowledged STORE may change the store"
            return
        assert changed <= {p.key for p in acked}, "a STORE must not touch other keys"
        # With one key twice in a batch, the last accepted pair wins.
        last = {p.key: p for p in acked}
        for request in last.values():
            held = before.get(request.key)
            if request.cache and held is not None and not held[3]:
                assert request.key not in changed, "a cache copy must never replace a replica"
            if request.key in changed and request.key in after:
                assert after[request.key][0] == request.value
                same = held is not None and held[0] == request.value
                published = max(request.published, held[4]) if same else request.published
                assert after[request.key][4] == published
            if request.key in self.expected and request.key in after:
                # A remote STORE may legitimately overwrite a pair (Kademlia has no owners).
                self.expected[request.key] = after[request.key][0]

    def _check_table(
        self,
        frame: RequestFrame | ReplyFrame | ProtocolError,
        sender_host: str,
        before: set[Contact],
    ) -> None:
        after = self.contacts()
        allowed = set(before)
        if (
            isinstance(frame, RequestFrame)
            and frame.sender_port is not None
            and frame.sender_id != NODE_ID
        ):
            # A valid request from a listening peer is the one way in (paper 2.2).
            allowed.add(Contact(frame.sender_id, sender_host, frame.sender_port))
        assert after <= allowed, "the table gained a contact from invalid input"
        assert NODE_ID not in {c.node_id for c in after}
        assert all(1 <= c.port <= 65535 for c in after)

    async def _check_serving(self) -> None:
        """The node still answers an honest client, end to end through the codec."""
        address = self.dht.address
        pong = await self.client.request(address, CLIENT_ID, None, Ping())
        assert pong.sender_id == NODE_ID
        assert isinstance(pong.body, Pong)
        for key, value in self.expected.items():
            found = await self.client.request(address, CLIENT_ID, None, FindValue(key))
            assert found.sender_id == NODE_ID
            assert isinstance(found.body, FoundValue), found
            assert found.body.value == value


def run_scenario(inputs: list[Input]) -> None:
    """Start a fresh node, feed it ``inputs`` one by one, checking after each."""

    async def scenario() -> None:
        network = MemoryNetwork(rng=random.Random(0))
        async with (
            open_dht(
                transport=network.transport(),
                node_id=NODE_ID,
                config=CONFIG,
                rng=random.Random(1),
            ) as dht,
            trio.open_nursery() as nursery,
        ):
            client = network.transport()
            await nursery.start(client.run, CONFIG, CLIENT_ID, "127.0.0.1", 0, None)
            for key, value in KNOWN.items():
                assert await publish(dht._node, key, value) == 1
            for peer in PEERS:
                dht._node.saw_alive(peer)
            harness = Harness(dht, client)
            await harness._check_serving()
            with trio.fail_after(3600):  # virtual seconds: a hang fails instead of spinning
                for item in inputs:
                    await harness.feed(item)
            nursery.cancel_scope.cancel()

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))


# --- the tests ------------------------------------------------------------------
# 100 + 150 + 150 + 60 + 120 + 30 (TCP) = 610 examples with the default profile.


def fuzz(examples: int) -> settings:
    """Settings for one fuzz test: each example starts a node, so no per-example deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz(100)
@given(st.lists(raw_bytes, min_size=1, max_size=3))
def test_random_bytes_as_frames(inputs: list[Input]) -> None:
    run_scenario(inputs)


@fuzz(150)
@given(st.lists(raw_maps, min_size=1, max_size=3))
def test_protocol_shaped_maps_with_hostile_fields(inputs: list[Input]) -> None:
    run_scenario(inputs)


@fuzz(150)
@given(st.lists(raw_requests | direct_requests, min_size=1, max_size=4))
def test_valid_requests_with_hostile_values(inputs: list[Input]) -> None:
    run_scenario(inputs)


@fuzz(60)
@given(st.lists(raw_replies, min_size=1, max_size=3))
def test_unsolicited_replies_change_nothing(inputs: list[Input]) -> None:
    run_scenario(inputs)


@fuzz(120)
@given(st.lists(any_input, min_size=2, max_size=6))
def test_mixed_sequences(inputs: list[Input]) -> None:
    run_scenario(inputs)


# --- fixed inputs hypothesis might not reach -------------------------------------


def test_named_hostile_inputs() -> None:
    """Each case the issue names, once, so a regression points at the case."""
    own = RequestFrame(5, NODE_ID, 4000, Ping())
    run_scenario(
        [
            Raw(
                encode_frame(RequestFrame(1, PEERS[2].node_id, 4000, FindNode(NODE_ID)))[4:], "::1"
            ),
            Raw(encode_frame(own)[4:], "127.0.0.1"),
            Direct(own, ("127.0.0.1", 0)),
            Raw(
                encode_frame(
                    RequestFrame(
                        2,
                        PEERS[3].node_id,
                        None,
                        Store(KNOWN_KEYS[0], b"\x00" * (CONFIG.max_value_size + 1)),
                    )
                )[4:],
                "10.0.0.1",
            ),
            Raw(
                encode_frame(
                    RequestFrame(3, PEERS[3].node_id, 7, Store(KNOWN_KEYS[1], b"\x61x", cache=True))
                )[4:],
                "10.0.0.1",
            ),
            Raw(
                encode_frame(
                    RequestFrame(4, PEERS[4].node_id, 7, Store(KNOWN_KEYS[2], b"\x61y", ttl=0))
                )[4:],
                "10.0.0.1",
            ),
            Raw(cbor2.dumps(_base_fields("nodes", 9)), "10.0.0.2"),
            Raw(_with_raw_field(b"\x81" * 100_000 + b"\x00"), "10.0.0.2"),
            Raw(_with_raw_field(b"\xd8\x30" * 10_000 + b"\x00"), "10.0.0.2"),
            Raw(_with_raw_field(b"\xbf" * 10_000), "10.0.0.2"),
            Raw(_with_raw_field(b"\x5b" + (2**64 - 1).to_bytes(8, "big")), "10.0.0.2"),
            Raw(_with_raw_field(b"\x9b" + (2**63).to_bytes(8, "big")), "10.0.0.2"),
            Raw(cbor2.dumps(_base_fields("store", 2**64)), "10.0.0.2"),
            Raw(cbor2.dumps(_base_fields("store", MAX_REQUEST_ID) | {"ttl": MAX_TTL + 1}), "h"),
            Raw(cbor2.dumps(_base_fields("store", 0) | {"port": -1}), "10.0.0.3"),
            Raw(cbor2.dumps(_base_fields("store", 0) | {"cache": 1}), "10.0.0.3"),
            Raw(cbor2.dumps(_base_fields("ping", 0) | {"port": True}), "10.0.0.3"),
            Raw(cbor2.dumps(_base_fields("find_node", 0) | {"target": b"\x00" * 31}), "10.0.0.3"),
            Raw(cbor2.dumps(_base_fields("shutdown", 1)), "10.0.0.3"),
            Raw(cbor2.dumps(_base_fields("store", 8) | {"value": b""}), "10.0.0.3"),
        ]
    )


def test_contact_with_unencodable_host_does_not_poison_replies() -> None:
    """A peer on a memory network may have any host text; the table must not echo it.

    Over TCP the remote host is always an IP literal, but ``Node.handle_request``
    takes whatever the transport reports: a contact with host "" must not enter
    the table, or every FIND_NODE whose k closest include it would fail.
    """
    run_scenario(
        [
            Direct(RequestFrame(1, PEERS[5].node_id, 4000, Ping()), ("", 0)),
            Raw(encode_frame(RequestFrame(2, CLIENT_ID, None, FindNode(NODE_ID)))[4:], "10.0.0.1"),
        ]
    )


# --- the same over real TCP ------------------------------------------------------


async def exchange(address: Address, inputs: list[Raw]) -> list[bytes]:
    """Send every payload on one connection, half-close, and collect the reply payloads.

    The node may close the connection on garbage before reading all of it: a
    write or read then fails, which is its right; the replies before count.
    """
    replies: list[bytes] = []
    reader = FrameReader(CONFIG.max_frame_size)
    async with await trio.open_tcp_stream(*address) as stream:
        data = b"".join(len(i.payload).to_bytes(4, "big") + i.payload for i in inputs)
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(data)
            await stream.send_eof()
        with contextlib.suppress(trio.BrokenResourceError):
            while chunk := await stream.receive_some():
                reader.feed(chunk)
                while (payload := reader.next_payload()) is not None:
                    replies.append(payload)
    return replies


def check_tcp_reply(payload: bytes) -> None:
    reply = decode_frame(payload)
    assert isinstance(reply, ReplyFrame)
    assert reply.sender_id == NODE_ID
    if not isinstance(reply.body, FoundValue):
        for marker in FORBIDDEN:
            assert marker not in payload, (marker, reply)
    if isinstance(reply.body, ErrorReply):
        assert reply.body.code is not ErrorCode.INTERNAL, reply


@fuzz(30)
@given(st.lists(st.one_of(raw_bytes, raw_maps, raw_requests, raw_replies), min_size=1, max_size=4))
def test_hostile_frames_over_tcp(inputs: list[Raw]) -> None:
    """All of an example's payloads on one TCP connection (garbage after valid frames too).

    Real sockets, so the real clock, bounded by ``fail_after``; nothing sleeps.
    """

    async def scenario() -> None:
        with trio.fail_after(20):
            async with (
                open_dht(node_id=NODE_ID, config=CONFIG, rng=random.Random(1)) as dht,
                trio.open_nursery() as nursery,
            ):
                client = TcpTransport()
                await nursery.start(client.run, CONFIG, CLIENT_ID, "127.0.0.1", 0, None)
                for key, value in KNOWN.items():
                    assert await publish(dht._node, key, value) == 1
                before = {r.key: r.value for r in dht._node.records}

                replies = await exchange(dht.address, inputs)
                assert len(replies) <= len(inputs)
                for payload in replies:
                    check_tcp_reply(payload)

                # Only keys named by well-formed STOREs (or store_many pairs) may have changed.
                stores = set()
                for item in inputs:
                    with contextlib.suppress(ProtocolError):
                        frame = decode_frame(item.payload)
                        if isinstance(frame, RequestFrame) and isinstance(frame.body, Store):
                            stores.add(frame.body.key)
                        if isinstance(frame, RequestFrame) and isinstance(frame.body, StoreMany):
                            stores.update(pair.key for pair in frame.body.pairs)
                after = {r.key: r.value for r in dht._node.records}
                changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
                assert changed <= stores
                pong = await client.request(dht.address, CLIENT_ID, None, Ping())
                assert isinstance(pong.body, Pong)
                for key in KNOWN:
                    found = await client.request(dht.address, CLIENT_ID, None, FindValue(key))
                    assert isinstance(found.body, FoundValue)
                    assert found.body.value == after[key]
                nursery.cancel_scope.cancel()

    trio.run(scenario)
