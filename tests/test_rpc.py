"""The RPC endpoint, tested the way h11 is: two endpoints wired together, no sockets."""

from __future__ import annotations

import cbor2
import pytest

from trio_kad import Config, TransportError
from trio_kad._codec import decode_frame, encode_frame
from trio_kad._limits import Admission
from trio_kad._messages import (
    ErrorCode,
    ErrorReply,
    FindNode,
    Nodes,
    Ping,
    Pong,
    ReplyFrame,
    RequestFrame,
    Store,
    Stored,
)
from trio_kad._rpc import (
    Endpoint,
    MustClose,
    PeerNamed,
    ReplyReceived,
    RequestReceived,
    TransportStatistics,
)

A_ID = b"\x0a" * 32
B_ID = b"\x0b" * 32
KEY = b"\x03" * 32
CONFIG = Config()


def endpoint(
    local_id: bytes, *, dialed: bool, config: Config = CONFIG, host: str = "127.0.0.1"
) -> Endpoint[str]:
    return Endpoint(
        local_id,
        (host, 4000),
        config,
        Admission(config),
        TransportStatistics(),
        0.0,
        dialed=dialed,
    )


def pair(config: Config = CONFIG, host: str = "127.0.0.1") -> tuple[Endpoint[str], Endpoint[str]]:
    """A dials B: A's end and B's end of one connection."""
    return endpoint(A_ID, dialed=True, config=config), endpoint(
        B_ID, dialed=False, config=config, host=host
    )


def events(end: Endpoint[str], data: bytes, now: float = 0.0) -> list[object]:
    end.receive_data(data, now)
    out: list[object] = []
    while (event := end.next_event()) is not None:
        out.append(event)
    return out


def frames(data: bytes) -> list[object]:
    found = []
    while data:
        length = int.from_bytes(data[:4], "big")
        found.append(decode_frame(data[4 : 4 + length]))
        data = data[4 + length :]
    return found


def test_a_request_and_its_reply_find_each_other() -> None:
    a, b = pair()
    request_id, data = a.send_request(A_ID, 5000, Ping(), "caller")
    named, request = events(b, data)
    assert named == PeerNamed(A_ID, 5000, True)
    assert isinstance(request, RequestReceived) and request.inline
    assert request.frame.request_id == request_id and request.frame.body == Ping()
    b.send_reply(request, Pong())
    (reply,) = events(a, b.data_to_send())
    assert isinstance(reply, ReplyReceived)
    assert reply.waiter == "caller" and reply.frame.body == Pong()
    assert reply.frame.sender_id == B_ID
    assert a.pending == {}


def test_only_the_first_request_of_the_dialer_says_duplex() -> None:
    a, b = pair()
    first = a.send_request(A_ID, 5000, Ping(), "1")[1]
    second = a.send_request(A_ID, 5000, Ping(), "2")[1]
    assert [f.duplex for f in frames(first + second)] == [True, False]  # type: ignore[attr-defined]
    # The accepting side never claims it: the dialer said it already.
    events(b, first + second)
    assert not frames(b.send_request(B_ID, 6000, Ping(), "x")[1])[0].duplex  # type: ignore[attr-defined]


def test_requests_go_both_ways_over_one_connection() -> None:
    a, b = pair()
    a_id, data = a.send_request(A_ID, 5000, FindNode(KEY), "a-caller")
    _, a_request = events(b, data)
    # B asks A before answering: ids are per side, so the same number may be in use.
    b_id, data = b.send_request(B_ID, 6000, Ping(), "b-caller")
    assert b_id == a_id == 1
    named, b_request = events(a, data)
    assert named == PeerNamed(B_ID, 6000, False)
    assert isinstance(b_request, RequestReceived)
    a.send_reply(b_request, Pong())
    assert isinstance(a_request, RequestReceived)
    b.send_reply(a_request, Nodes(()))
    (to_b,) = events(b, a.data_to_send())
    (to_a,) = events(a, b.data_to_send())
    assert isinstance(to_b, ReplyReceived) and to_b.waiter == "b-caller"
    assert isinstance(to_a, ReplyReceived) and to_a.waiter == "a-caller"
    assert to_a.frame.body == Nodes(())


def test_a_late_reply_is_dropped_and_an_unsolicited_one_closes() -> None:
    a, b = pair()
    request_id, data = a.send_request(A_ID, 5000, Ping(), "caller")
    _, request = events(b, data)
    a.forget(request_id)  # the caller's cancel scope fired
    assert isinstance(request, RequestReceived)
    b.send_reply(request, Pong())
    assert events(a, b.data_to_send()) == []
    assert a.closed is None
    never_sent = encode_frame(ReplyFrame(7, B_ID, Pong()))
    (closing,) = events(a, never_sent)
    assert closing == MustClose("reply to a request never sent", misbehaved=True)
    assert a.next_event() is None


def test_garbage_instead_of_a_reply_closes_as_misbehaved() -> None:
    a, _ = pair()
    request_id, _ = a.send_request(A_ID, 5000, Ping(), "caller")
    payload = cbor2.dumps({"v": 1, "t": "pong", "id": request_id, "from": b"short"})
    (closing,) = events(a, len(payload).to_bytes(4, "big") + payload)
    assert isinstance(closing, MustClose) and closing.misbehaved
    assert a.fail_pending() == ["caller"]


def test_a_malformed_request_with_an_id_gets_an_error_and_the_stream_lives() -> None:
    _, b = pair()
    payload = cbor2.dumps({"v": 1, "t": "find_node", "id": 9, "from": A_ID, "target": b"x"})
    assert events(b, len(payload).to_bytes(4, "big") + payload) == []
    (reply,) = frames(b.data_to_send())
    assert reply == ReplyFrame(9, B_ID, ErrorReply(ErrorCode.MALFORMED, "malformed request"))
    assert b.closed is None


def test_bytes_with_no_id_close_the_connection() -> None:
    _, b = pair()
    (closing,) = events(b, b"\x00\x00\x00\x02\xff\xff")
    assert isinstance(closing, MustClose)
    assert b.data_to_send() == b""


def test_an_oversized_prefix_is_answered_too_large_then_closes() -> None:
    _, b = pair(CONFIG.replace(max_frame_size=70_000))
    (closing,) = events(b, (70_001).to_bytes(4, "big"))
    assert isinstance(closing, MustClose)
    (reply,) = frames(b.data_to_send())
    assert reply == ReplyFrame(0, B_ID, ErrorReply(ErrorCode.TOO_LARGE, "frame too large"))


def test_a_request_over_the_frame_limit_is_refused_before_it_is_pending() -> None:
    a, _ = pair(CONFIG.replace(max_frame_size=70_000, max_value_size=1000))
    with pytest.raises(TransportError, match="exceeds max_frame_size"):
        a.send_request(A_ID, 5000, Store(KEY, b"x" * 80_000), "caller")
    assert a.pending == {}


def test_stores_are_answered_apart_within_the_per_connection_limit() -> None:
    a, b = pair(CONFIG.replace(max_requests_per_connection=2))
    data = b"".join(a.send_request(A_ID, 5000, Store(KEY, b"v"), str(i))[1] for i in range(3))
    got = events(b, data)
    apart = [e for e in got if isinstance(e, RequestReceived)]
    assert [e.inline for e in apart] == [False, False]
    assert b.apart == 2
    (busy,) = frames(b.data_to_send())
    assert busy == ReplyFrame(3, B_ID, ErrorReply(ErrorCode.OVERLOADED, "too many requests"))
    b.send_reply(apart[0], Stored())
    b.abandon(apart[1])
    assert b.apart == 0


def test_stores_in_flight_are_bounded_over_every_connection_of_a_transport() -> None:
    config = CONFIG.replace(max_stores_in_flight=3)
    shared = Admission(config)  # one transport: its connections share one admission
    ends = [
        Endpoint(
            B_ID, ("127.0.0.1", 4000 + n), config, shared, TransportStatistics(), 0.0, dialed=False
        )
        for n in range(2)
    ]
    dialer = endpoint(A_ID, dialed=True)
    store = b"".join(dialer.send_request(A_ID, 5000, Store(KEY, b"v"), str(i))[1] for i in range(2))
    apart = [e for end in ends for e in events(end, store) if isinstance(e, RequestReceived)]
    # Two each came, three of the four are handled; the last connection's second is refused.
    assert len(apart) == 3 and shared.apart == 3
    (busy,) = frames(ends[1].data_to_send())
    assert isinstance(busy, ReplyFrame) and isinstance(busy.body, ErrorReply)
    assert busy.body.code is ErrorCode.OVERLOADED
    ends[0].send_reply(apart[0], Stored())
    ends[0].abandon(apart[1])
    assert shared.apart == 1
    again = dialer.send_request(A_ID, 5000, Store(KEY, b"v"), "again")[1]
    assert [e for e in events(ends[0], again) if isinstance(e, RequestReceived)]
    assert shared.apart == 2


def test_a_failed_handler_is_answered_internal_error() -> None:
    a, b = pair()
    _, request = events(b, a.send_request(A_ID, 5000, Ping(), "c")[1])
    assert isinstance(request, RequestReceived)
    b.send_internal_error(request)
    (reply,) = frames(b.data_to_send())
    assert reply == ReplyFrame(1, B_ID, ErrorReply(ErrorCode.INTERNAL, "internal error"))


def test_an_ip_over_its_rate_is_refused_then_cut_off() -> None:
    config = CONFIG.replace(request_rate_per_ip=1.0, request_burst_per_ip=2)
    a, b = pair(config, host="192.0.2.7")
    data = b"".join(a.send_request(A_ID, 5000, Ping(), str(i))[1] for i in range(12))
    got = events(b, data)
    assert sum(isinstance(e, RequestReceived) for e in got) == 2
    assert isinstance(got[-1], MustClose)
    refused = [f for f in frames(b.data_to_send()) if isinstance(f, ReplyFrame)]
    assert refused and all(
        f.body == ErrorReply(ErrorCode.OVERLOADED, "rate limited") for f in refused
    )


def test_loopback_is_exempt_from_the_rate_by_default_on_a_node_listening_there() -> None:
    config = CONFIG.replace(request_rate_per_ip=1.0, request_burst_per_ip=2)
    for own_host, allowed in (("127.0.0.1", 12), ("0.0.0.0", 2)):
        a, b = pair(config.for_host(own_host))
        data = b"".join(a.send_request(A_ID, 5000, Ping(), str(i))[1] for i in range(12))
        assert sum(isinstance(e, RequestReceived) for e in events(b, data)) == allowed


def test_a_request_frame_keeps_its_meaning_when_split_anywhere() -> None:
    a, b = pair()
    _, data = a.send_request(A_ID, 5000, FindNode(KEY), "c")
    got: list[object] = []
    for index, byte in enumerate(data):
        got += events(b, bytes([byte]), now=float(index))
        if index < len(data) - 1:
            # The frame's read deadline runs from its first byte, not its latest.
            assert b.buffered == index + 1
            assert b.frame_started == 0.0
    assert [type(e) for e in got] == [PeerNamed, RequestReceived]


def test_request_frames_the_endpoint_reads_are_real_frames() -> None:
    a, _ = pair()
    frame = frames(a.send_request(A_ID, None, Ping(), "c")[1])[0]
    assert frame == RequestFrame(1, A_ID, None, Ping(), True)
