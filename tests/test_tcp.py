"""TcpTransport through its public interface: real sockets on loopback, port 0."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing
from transports import (
    CLIENT_ID,
    CONFIG,
    KEY,
    SERVER_ID,
    ping_bytes,
    raw_frame,
    read_frame,
    running,
    store_bytes,
    wait_closed,
)

from trio_kad import _sockets
from trio_kad._codec import FrameReader, encode_frame
from trio_kad._config import Config
from trio_kad._errors import TransportError
from trio_kad._ids import Address, Contact
from trio_kad._limits import Admission
from trio_kad._messages import (
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
)
from trio_kad._rpc import TransportStatistics
from trio_kad._tcp import TcpTransport
from trio_kad._tcp_in import Acceptor


async def test_tcp_round_trip_each_request_type() -> None:
    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(server) as address, running(client, handler=None) as none:
            assert none is None
            assert address is not None and address[0] == "127.0.0.1" and address[1] > 0
            requests: list[tuple[Request, Reply]] = [
                (Ping(), Pong()),
                (Store(KEY, b"value"), Stored()),
                (FindNode(KEY), Nodes((Contact(KEY, "127.0.0.1", 4000),))),
                (FindValue(KEY), FoundValue(KEY + b"!")),
            ]
            for request, expected in requests:
                reply = await client.request(address, CLIENT_ID, 1234, request)
                assert reply.sender_id == SERVER_ID
                assert reply.body == expected
    assert client.statistics().requests_sent == 4
    assert client.statistics().requests_failed == 0
    assert server.statistics().requests_received == 4
    assert client.statistics().connections_open == 0


async def test_tcp_reply_carries_the_serving_node_id() -> None:
    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(server) as address, running(client, handler=None):
            assert address is not None
            reply = await client.request(address, CLIENT_ID, None, Ping())
    assert reply.sender_id == SERVER_ID


async def test_tcp_concurrent_requests_share_one_connection() -> None:
    server, client = TcpTransport(), TcpTransport()
    replies: list[ReplyFrame] = []

    async def one(address: Address, index: int) -> None:
        replies.append(await client.request(address, CLIENT_ID, None, FindValue(KEY)))

    with trio.fail_after(10):
        async with running(server) as address, running(client, handler=None):
            assert address is not None
            async with trio.open_nursery() as nursery:
                for index in range(200):
                    nursery.start_soon(one, address, index)
            assert len(replies) == 200
            assert len({reply.request_id for reply in replies}) == 200
            assert client.statistics().connections_opened == 1
            assert server.statistics().connections_opened == 1
            assert client.statistics().connections_open == 1


async def test_tcp_writes_larger_than_the_socket_buffers_arrive_whole_and_in_order() -> None:
    # Frames far bigger than loopback's socket buffers: every write takes the
    # slow path, and the writes that come meanwhile queue behind it, on both
    # the client (requests) and the server (replies) side.
    size = 700_000
    config = Config(idle_timeout=5.0, io_timeout=5.0, max_frame_size=2 * size)

    async def big_echo(frame: RequestFrame, remote: Address) -> Reply:
        body = frame.body
        assert isinstance(body, Store)
        return FoundValue(body.value[::-1])

    server, client = TcpTransport(), TcpTransport()
    got: dict[int, bytes] = {}

    async def one(address: Address, index: int) -> None:
        value = bytes([index]) * (size - 1) + b"!"
        reply = await client.request(address, CLIENT_ID, None, Store(KEY, value))
        assert isinstance(reply.body, FoundValue)
        got[index] = reply.body.value

    with trio.fail_after(20):
        async with (
            running(server, config, big_echo) as address,
            running(client, config, handler=None),
        ):
            assert address is not None
            async with trio.open_nursery() as nursery:
                for index in range(12):
                    nursery.start_soon(one, address, index)
            assert client.statistics().connections_opened == 1
    assert sorted(got) == list(range(12))
    for index, value in got.items():
        assert value == b"!" + bytes([index]) * (size - 1)


async def test_tcp_connects_to_a_host_name() -> None:
    # "localhost" may resolve to ::1 first, where nothing listens: the next
    # address is tried.
    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(10):
        async with running(server) as address, running(client, handler=None):
            assert address is not None
            reply = await client.request(("localhost", address[1]), CLIENT_ID, None, Ping())
            assert isinstance(reply.body, Pong)


async def test_tcp_many_simultaneous_connects_are_all_served() -> None:
    server = TcpTransport()
    clients = [TcpTransport() for _ in range(100)]
    answered = 0

    async def ping_from(client: TcpTransport, address: Address) -> None:
        nonlocal answered
        async with running(client, handler=None):
            reply = await client.request(address, CLIENT_ID, None, Ping())
            answered += isinstance(reply.body, Pong)

    with trio.fail_after(20):
        async with running(server) as address:
            assert address is not None
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(ping_from, client, address)
    assert answered == 100


async def test_tcp_connection_refused() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    client = TcpTransport()
    with trio.fail_after(5):
        async with running(client, handler=None):
            with pytest.raises(TransportError):
                await client.request(("127.0.0.1", port), CLIENT_ID, None, Ping())
    assert client.statistics().requests_failed == 1


async def test_tcp_request_outside_run_fails() -> None:
    with pytest.raises(TransportError):
        await TcpTransport().request(("127.0.0.1", 1), CLIENT_ID, None, Ping())


async def test_tcp_oversize_prefix_closes_connection_server_keeps_serving() -> None:
    config = CONFIG.replace(max_frame_size=4096, max_value_size=1024)
    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(server, config) as address, running(client, handler=None):
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            await stream.send_all((1 << 31).to_bytes(4, "big"))
            reader = FrameReader(1 << 20)
            reply = await read_frame(stream, reader)
            assert reply is not None
            assert reply.body == ErrorReply(ErrorCode.TOO_LARGE, "frame too large")
            assert await read_frame(stream, reader) is None
            await stream.aclose()
            reply = await client.request(address, CLIENT_ID, None, Ping())
            assert reply.body == Pong()
    assert server.statistics().protocol_errors == 1


async def test_tcp_malformed_request_with_id_gets_error_and_connection_lives() -> None:
    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server) as address:
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            reader = FrameReader(1 << 20)
            # A map with a valid id but no "from": the server can still say which request failed.
            await stream.send_all(raw_frame({"v": 1, "t": "ping", "id": 77}))
            reply = await read_frame(stream, reader)
            assert reply is not None and reply.request_id == 77
            assert isinstance(reply.body, ErrorReply)
            assert reply.body.code == ErrorCode.MALFORMED
            await stream.send_all(ping_bytes(78))
            reply = await read_frame(stream, reader)
            assert reply is not None and reply.request_id == 78 and reply.body == Pong()
            # Without a usable id there is nobody to answer: the connection closes.
            await stream.send_all(raw_frame({"v": 1, "t": "ping"}))
            assert await read_frame(stream, reader) is None
            await stream.aclose()
    assert server.statistics().protocol_errors == 2


async def test_tcp_reply_frame_on_inbound_connection_closes_it() -> None:
    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server) as address:
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            await stream.send_all(encode_frame(ReplyFrame(1, CLIENT_ID, Pong())))
            await wait_closed(stream)
            await stream.aclose()


async def test_tcp_half_frame_then_silence_is_dropped_after_io_timeout() -> None:
    config = CONFIG.replace(io_timeout=0.2, idle_timeout=30.0)
    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server, config) as address:
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            frame = ping_bytes(1)
            await stream.send_all(frame[: len(frame) // 2])
            start = trio.current_time()
            await wait_closed(stream)
            assert trio.current_time() - start >= 0.15
            await stream.aclose()


async def test_tcp_idle_inbound_connection_closed_after_idle_timeout() -> None:
    config = CONFIG.replace(idle_timeout=0.2)
    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server, config) as address:
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            start = trio.current_time()
            await wait_closed(stream)
            assert trio.current_time() - start >= 0.15
            await stream.aclose()
            await trio.sleep(0.05)
            assert server.statistics().connections_open == 0


async def test_tcp_idle_outbound_connection_closed_and_reopened() -> None:
    config = CONFIG.replace(idle_timeout=0.2)
    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(server) as address, running(client, config, handler=None):
            assert address is not None
            await client.request(address, CLIENT_ID, None, Ping())
            assert client.statistics().connections_open == 1
            await trio.sleep(0.4)
            assert client.statistics().connections_open == 0
            await client.request(address, CLIENT_ID, None, Ping())
            assert client.statistics().connections_opened == 2


async def test_tcp_process_budget_closes_the_least_recently_used_idle_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # All transports of a process share one connection budget (the descriptor limit).
    monkeypatch.setattr(_sockets.PROCESS_BUDGET, "limit", 2)
    servers = [TcpTransport() for _ in range(3)]
    first, second = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with (
            running(servers[0]) as a,
            running(servers[1]) as b,
            running(servers[2]) as c,
            running(first, handler=None),
            running(second, handler=None),
        ):
            assert a is not None and b is not None and c is not None
            await first.request(a, CLIENT_ID, None, Ping())
            await second.request(b, CLIENT_ID, None, Ping())
            await first.request(a, CLIENT_ID, None, Ping())  # a is now the most recent
            await second.request(c, CLIENT_ID, None, Ping())
            await trio.testing.wait_all_tasks_blocked()
            # second's connection to b was the least recently used: it went.
            assert first.statistics().connections_open == 1
            assert second.statistics().connections_open == 1
            assert len(_sockets.PROCESS_BUDGET.conns) == 2
            await first.request(a, CLIENT_ID, None, Ping())
            assert first.statistics().connections_opened == 1
    monkeypatch.setattr(_sockets.PROCESS_BUDGET, "limit", None)
    assert _sockets.PROCESS_BUDGET.limit >= 16


async def test_tcp_extra_inbound_connections_closed_existing_served() -> None:
    config = CONFIG.replace(max_inbound_connections=2)
    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server, config) as address:
            assert address is not None
            streams = [await trio.open_tcp_stream(*address) for _ in range(2)]
            readers = [FrameReader(1 << 20) for _ in streams]
            for index, (stream, reader) in enumerate(zip(streams, readers, strict=True)):
                await stream.send_all(ping_bytes(index))
                reply = await read_frame(stream, reader)
                assert reply is not None and reply.body == Pong()
            extra = await trio.open_tcp_stream(*address)
            await wait_closed(extra)
            await extra.aclose()
            for index, (stream, reader) in enumerate(zip(streams, readers, strict=True)):
                await stream.send_all(ping_bytes(10 + index))
                reply = await read_frame(stream, reader)
                assert reply is not None and reply.request_id == 10 + index
                await stream.aclose()


async def test_tcp_requests_over_the_per_connection_limit_are_overloaded() -> None:
    config = CONFIG.replace(max_requests_per_connection=2)
    release = trio.Event()

    async def slow(frame: RequestFrame, remote: Address) -> Reply:
        # STOREs may block (a disk); pings and lookups are answered inline.
        await release.wait()
        return Stored()

    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server, config, handler=slow) as address:
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            reader = FrameReader(1 << 20)
            await stream.send_all(store_bytes(1) + store_bytes(2) + store_bytes(3))
            reply = await read_frame(stream, reader)
            assert reply is not None and reply.request_id == 3
            assert reply.body == ErrorReply(ErrorCode.OVERLOADED, "too many requests")
            release.set()
            ids = set()
            for _ in range(2):
                reply = await read_frame(stream, reader)
                assert reply is not None and reply.body == Stored()
                ids.add(reply.request_id)
            assert ids == {1, 2}
            await stream.aclose()


async def test_tcp_handler_raising_gives_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(frame: RequestFrame, remote: Address) -> Reply:
        raise RuntimeError("secret details")

    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(server, handler=broken) as address, running(client, handler=None):
            assert address is not None
            reply = await client.request(address, CLIENT_ID, None, Ping())
            assert reply.body == ErrorReply(ErrorCode.INTERNAL, "internal error")
            # The connection survives a failing handler.
            reply = await client.request(address, CLIENT_ID, None, Ping())
            assert client.statistics().connections_opened == 1
    # The details stay in our log, at error level with the traceback: a bug to fix.
    failures = [r for r in caplog.records if "handler failed" in r.getMessage()]
    assert failures and all(r.levelname == "ERROR" and r.exc_info for r in failures)


async def test_tcp_undecodable_reply_fails_caller_and_closes_connection() -> None:
    async def bad_server(stream: trio.SocketStream) -> None:
        reader = FrameReader(1 << 20)
        while reader.next_payload() is None:
            reader.feed(await stream.receive_some(65536))
        await stream.send_all(raw_frame({"v": 1, "t": "pong"}))
        await wait_closed(stream)

    client = TcpTransport()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, bad_server, 0)
            port = listeners[0].socket.getsockname()[1]
            async with running(client, handler=None):
                with pytest.raises(TransportError):
                    await client.request(("127.0.0.1", port), CLIENT_ID, None, Ping())
                await trio.sleep(0.05)
                assert client.statistics().connections_open == 0
                assert client.statistics().protocol_errors == 1
            nursery.cancel_scope.cancel()


async def test_tcp_slow_store_does_not_hold_up_pings_on_its_connection() -> None:
    release = trio.Event()

    async def disk_bound(frame: RequestFrame, remote: Address) -> Reply:
        if isinstance(frame.body, Store):
            await release.wait()
            return Stored()
        return Pong()

    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server, handler=disk_bound) as address:
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            reader = FrameReader(1 << 20)
            await stream.send_all(store_bytes(1) + ping_bytes(2) + ping_bytes(3))
            first = await read_frame(stream, reader)
            second = await read_frame(stream, reader)
            assert first is not None and second is not None
            assert (first.request_id, second.request_id) == (2, 3)
            release.set()
            last = await read_frame(stream, reader)
            assert last is not None and last.request_id == 1 and last.body == Stored()
            await stream.aclose()


async def test_tcp_a_burst_of_pipelined_requests_does_not_hold_up_other_connections() -> None:
    burst = 1000  # about 50 KB of pings: one read on the server
    config = Config(idle_timeout=5.0, io_timeout=2.0, request_rate_per_ip=1e9)
    server = TcpTransport()
    with trio.fail_after(10):
        async with running(server, config) as address:
            assert address is not None
            raw = [socket.create_connection(address) for _ in range(2)]
            # Both sent before the server runs again: plain calls, no checkpoint.
            raw[0].sendall(b"".join(ping_bytes(n) for n in range(burst)))
            raw[1].sendall(ping_bytes(burst))
            flood, honest = (trio.SocketStream(trio.socket.from_stdlib_socket(r)) for r in raw)
            reply = await read_frame(honest, FrameReader(1 << 20))
            assert reply is not None and reply.request_id == burst
            # The flood's reader let the other connection have its turn long before
            # it had answered the whole burst.
            waiting = FrameReader(1 << 20)
            raw[0].setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while data := raw[0].recv(1 << 20):
                    waiting.feed(data)
            answered = 0
            while waiting.next_payload() is not None:
                answered += 1
            assert answered < burst // 2
            for stream in (flood, honest):
                await stream.aclose()


async def test_tcp_a_peer_pipelining_a_frame_a_turn_is_answered_then_read_on_epoll() -> None:
    config = Config(idle_timeout=5.0, io_timeout=2.0, request_rate_per_ip=1e9)
    server = TcpTransport()
    with trio.fail_after(10):
        async with running(server, config) as address:
            assert address is not None
            stream = await trio.open_tcp_stream(*address)
            reader = FrameReader(1 << 20)
            for n in range(60):
                await stream.send_all(ping_bytes(n))  # a checkpoint after each frame
            for n in range(60):
                reply = await read_frame(stream, reader)
                assert reply is not None and reply.request_id == n and reply.body == Pong()
            # The peer went quiet: the reader, reading ahead a few turns at a time
            # while frames kept coming, is back to waiting on epoll, not spinning.
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(ping_bytes(60))
            reply = await read_frame(stream, reader)
            assert reply is not None and reply.request_id == 60
            await stream.aclose()
    assert server.statistics().frames_sent == 61


async def test_tcp_cancelled_caller_leaves_no_pending_entry() -> None:
    release = trio.Event()

    async def slow(frame: RequestFrame, remote: Address) -> Reply:
        # STOREs may block (a disk); pings and lookups are answered inline.
        await release.wait()
        return Stored()

    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(server, handler=slow) as address, running(client, handler=None):
            assert address is not None
            with trio.move_on_after(0.1) as scope:
                await client.request(address, CLIENT_ID, None, Store(KEY, b"\x01"))
            assert scope.cancelled_caught
            assert client.statistics().requests_pending == 0
            release.set()
            # The late reply is dropped quietly; the connection still works.
            await trio.sleep(0.05)
            assert client.statistics().connections_open == 1
            release2 = await client.request(address, CLIENT_ID, None, Store(KEY, b"\x01"))
            assert release2.body == Stored()
    assert client.statistics().requests_failed == 1


async def test_tcp_outbound_cap_closes_least_recently_used_idle_connection() -> None:
    config = CONFIG.replace(max_outbound_connections=1)
    servers = [TcpTransport() for _ in range(2)]
    client = TcpTransport()
    with trio.fail_after(5):
        async with (
            running(servers[0]) as first,
            running(servers[1]) as second,
            running(client, config, handler=None),
        ):
            assert first is not None and second is not None
            await client.request(first, CLIENT_ID, None, Ping())
            await client.request(second, CLIENT_ID, None, Ping())
            await trio.sleep(0.05)
            assert client.statistics().connections_open == 1
            # The one left is the connection to the second server.
            await client.request(second, CLIENT_ID, None, Ping())
            assert client.statistics().connections_opened == 2


async def test_tcp_leaving_run_closes_everything() -> None:
    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(client, handler=None):
            async with running(server) as address:
                assert address is not None
                raw = await trio.open_tcp_stream(*address)
                await client.request(address, CLIENT_ID, None, Ping())
            # The server's run() is over: its inbound connections are closed ...
            await wait_closed(raw)
            await raw.aclose()
            assert server.statistics().connections_open == 0
            # ... and so is its listener.
            with pytest.raises(TransportError):
                await client.request(address, CLIENT_ID, None, Ping())
        assert client.statistics().connections_open == 0
        with pytest.raises(TransportError):
            await client.request(address, CLIENT_ID, None, Ping())


# --- connections used both ways ---------------------------------------------------


async def test_tcp_the_accepting_side_sends_its_requests_over_the_dialers_connection() -> None:
    # Two listening nodes: A dials B; then B asks A over the same connection.
    a, b = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(a) as a_address, running(b) as b_address:
            assert a_address is not None and b_address is not None
            reply = await a.request(b_address, SERVER_ID, a_address[1], Ping())
            assert isinstance(reply.body, Pong)
            reply = await b.request(a_address, SERVER_ID, b_address[1], FindValue(KEY))
            assert reply.body == FoundValue(KEY + b"!")
            # One connection in all: A dialed it, B reused it.
            assert a.statistics().connections_opened == 1
            assert b.statistics().connections_opened == 1
            assert b.statistics().requests_sent == 1


async def test_tcp_a_peer_that_never_says_duplex_never_gets_a_request() -> None:
    # A plain client names a listening port but does not say it reads requests:
    # the node must keep dialing that port instead of writing requests at it.
    server = TcpTransport()
    with trio.fail_after(5):
        async with running(server) as address:
            assert address is not None
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            own_port = listeners[0].socket.getsockname()[1]
            async with listeners[0], await trio.open_tcp_stream(*address) as stream:
                ping = encode_frame(RequestFrame(1, CLIENT_ID, own_port, Ping()))
                await stream.send_all(ping)
                reader = FrameReader(CONFIG.max_frame_size)
                reply = await read_frame(stream, reader)
                assert reply is not None and isinstance(reply.body, Pong)
                # The server now asks that port: it must dial it, not use our stream.
                async with trio.open_nursery() as nursery:

                    async def ask() -> None:
                        # We close what it dialed: the request fails, as it should.
                        with trio.move_on_after(0.5), pytest.raises(TransportError):
                            await server.request(("127.0.0.1", own_port), SERVER_ID, None, Ping())

                    nursery.start_soon(ask)
                    accepted = await listeners[0].accept()
                    await accepted.aclose()
                with trio.move_on_after(0.1):
                    data = await stream.receive_some(65536)
                    pytest.fail(f"the plain client got {data!r} on its own connection")


# --- the accept loop (``_tcp_in.Acceptor``) ---------------------------------------


class _FakeConnection:
    """What ``open_connection`` returns, as far as the acceptor's counting looks."""

    def __init__(self, remote: Address) -> None:
        self.remote = remote
        self.counted = True

    async def start_reading(self) -> None:
        pass


class _ScriptedListener:
    """A listener whose ``accept`` raises the given errors, then hands out ``sockets``.

    Readable (a byte waits on a local socket pair) until the script is over.
    """

    def __init__(self, errors: list[int], sockets: list[tuple[socket.socket, Address]]) -> None:
        self._errors = errors
        self._sockets = sockets
        self._ready, self._poke = socket.socketpair()
        self._poke.send(b"x")

    def fileno(self) -> int:
        return self._ready.fileno()

    def accept(self) -> tuple[socket.socket, Address]:
        if self._errors:
            code = self._errors.pop(0)
            raise OSError(code, os.strerror(code))
        if self._sockets:
            return self._sockets.pop(0)
        self._ready.recv(1, socket.MSG_DONTWAIT)  # the script is over: quiet from now on
        raise BlockingIOError

    def close(self) -> None:
        for sock in (self._ready, self._poke, *(s for s, _ in self._sockets)):
            sock.close()


@contextlib.contextmanager
def _accepted_sockets(remotes: list[Address]) -> Iterator[list[tuple[socket.socket, Address]]]:
    """An accepted end of one loopback TCP connection for each of ``remotes``, labelled so.

    The labels are only what ``accept`` reports: nothing is sent to them.
    """
    ends: list[socket.socket] = []
    try:
        with socket.create_server(("127.0.0.1", 0), backlog=len(remotes)) as server:
            accepted = []
            for remote in remotes:
                ends.append(socket.create_connection(server.getsockname()))
                sock, _ = server.accept()
                ends.append(sock)
                accepted.append((sock, remote))
        yield accepted
    finally:
        for sock in ends:
            sock.close()


async def _run_acceptor(
    config: Config, errors: list[int], remotes: list[Address], *, run_for: float = 0.0
) -> tuple[Acceptor, list[_FakeConnection], TransportStatistics]:
    """Run an ``Acceptor`` on a scripted listener until it waits (and ``run_for`` more)."""
    stats = TransportStatistics()
    opened: list[_FakeConnection] = []

    def open_connection(remote: Address, sock: socket.socket) -> Any:
        opened.append(_FakeConnection(remote))
        return opened[-1]

    acceptor = Acceptor(config, Admission(config), stats, open_connection)
    with _accepted_sockets(remotes) as accepted:
        listener = _ScriptedListener(errors, accepted)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(acceptor.accept_loop, listener)
                await trio.sleep(run_for)
                await trio.testing.wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
        finally:
            listener.close()
    return acceptor, opened, stats


LOCAL_PEER = ("127.0.0.1", 40000)


@pytest.mark.parametrize(
    "name",
    ["EPERM", "ECONNRESET", "ETIMEDOUT", "ENOSR", "ECONNABORTED", "EPROTO", "EHOSTUNREACH"],
)
async def test_accept_errors_trio_skips_do_not_stop_the_accept_loop(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    code = getattr(errno, name)
    _, opened, _ = await _run_acceptor(CONFIG, [code, code], [LOCAL_PEER])
    assert [c.remote for c in opened] == [LOCAL_PEER]  # served the connection after the errors


@pytest.mark.parametrize("name", ["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"])
async def test_accept_out_of_a_resource_pauses_logs_and_goes_on(
    name: str, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    code = getattr(errno, name)
    _, opened, _ = await _run_acceptor(CONFIG, [code], [LOCAL_PEER])
    assert opened == []  # backing off first, as trio.serve_listeners does
    _, opened, _ = await _run_acceptor(CONFIG, [code], [LOCAL_PEER], run_for=0.1)
    assert [c.remote for c in opened] == [LOCAL_PEER]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and errno.errorcode[code] in errors[0].getMessage()


async def test_accept_counts_one_ipv6_64_as_one_ip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # An exemption still names single hosts, inside a /64 or not.
    config = CONFIG.replace(max_connections_per_ip=2, per_ip_exempt=("2001:db8:1:3::a/128",))
    hosts = ["2001:db8:1:2::a", "2001:db8:1:2:ffff::b", "2001:db8:1:2::c"] + ["2001:db8:1:3::a"] * 3
    acceptor, opened, stats = await _run_acceptor(config, [], [(h, 40000) for h in hosts])
    assert [c.remote[0] for c in opened] == hosts[:2] + hosts[3:]
    assert stats.connections_refused == 1
    for conn in opened:
        acceptor.release(conn)  # type: ignore[arg-type]
    assert acceptor.count == 0


async def test_tcp_a_peer_that_reads_no_replies_is_not_read_until_they_are_out() -> None:
    config = Config(idle_timeout=30.0, io_timeout=2.0, request_rate_per_ip=1e9)
    server = TcpTransport()
    burst = b"".join(ping_bytes(n + 1) for n in range(2000))  # about 100 KB of pings
    with trio.fail_after(20):
        async with running(server, config) as address:
            assert address is not None
            raw = socket.create_connection(address)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.setblocking(False)
            # Send, never reading, until the server stops taking bytes.
            stalled = 0
            for _ in range(2000):
                try:
                    raw.send(burst)
                except BlockingIOError:
                    stalled += 1
                    if stalled == 20:
                        break
                    await trio.sleep(0.01)
                else:
                    stalled = 0
                    await trio.sleep(0)
            # Its replies wait, so the server reads no more from it: its backlog stays
            # small (no "reads no replies" abort at 2 x max_frame_size), and it is
            # closed once the replies have waited io_timeout.
            received = server.statistics().requests_received
            await trio.sleep(0.3)
            assert server.statistics().connections_open == 1
            assert server.statistics().requests_received == received
            await trio.sleep(config.io_timeout * 1.5)
            assert server.statistics().connections_open == 0
            raw.close()


async def _remote_seen_by_server(client_host: str) -> str:
    """The source IP a server on 127.0.0.1 sees a request from a node listening on client_host."""
    seen: list[str] = []

    async def record(frame: RequestFrame, remote: Address) -> Reply:
        seen.append(remote[0])
        return Pong()

    server, client = TcpTransport(), TcpTransport()
    with trio.fail_after(5):
        async with running(server, handler=record) as address, trio.open_nursery() as nursery:
            assert address is not None
            await nursery.start(client.run, CONFIG, CLIENT_ID, client_host, 0, record)
            await client.request(address, CLIENT_ID, 1234, Ping())
            nursery.cancel_scope.cancel()
    return seen[0]


async def test_tcp_outbound_connections_leave_from_the_listen_host() -> None:
    # Every 127/8 address is loopback on Linux: a node listening on 127.0.0.2
    # must be seen (and so recorded by its peers) at 127.0.0.2, not 127.0.0.1.
    assert await _remote_seen_by_server("127.0.0.2") == "127.0.0.2"


async def test_tcp_an_unspecified_listen_host_binds_no_source() -> None:
    assert await _remote_seen_by_server("0.0.0.0") == "127.0.0.1"


@pytest.mark.parametrize(
    ("listen", "target", "source"),
    [
        ("10.1.2.3", "10.1.2.4", "10.1.2.3"),
        ("0.0.0.0", "10.1.2.4", None),
        ("::", "fd00::1", None),
        ("fd00::2", "fd00::1", "fd00::2"),
        ("10.1.2.3", "fd00::1", None),  # another family: nothing to bind
        ("127.0.0.2", "10.1.2.4", None),  # loopback cannot reach out
        ("127.0.0.2", "127.0.0.1", "127.0.0.2"),
        ("localhost", "127.0.0.1", None),  # a name: left to the kernel
        (None, "10.1.2.4", None),
    ],
)
def test_sockets_outbound_source(listen: str | None, target: str, source: str | None) -> None:
    assert _sockets.outbound_source(listen, target) == source
