"""The status HTTP server on real TCP (127.0.0.1, port 0): answers, refusals and bounds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from trio_kad._ids import Address
from trio_kad._status_http import StatusLimits, serve_http

LIMITS = StatusLimits(max_connections=3, deadline=0.3, max_head_bytes=1024)


def _boom() -> tuple[str, bytes]:
    raise RuntimeError("renderer bug")


PAGES = {"/": lambda: ("text/html", b"<p>hi</p>"), "/boom": _boom}


@asynccontextmanager
async def running(limits: StatusLimits = LIMITS) -> AsyncIterator[Address]:
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_http, "127.0.0.1", 0, PAGES, limits)
        yield address
        nursery.cancel_scope.cancel()


async def _read_all(stream: trio.SocketStream) -> bytes:
    chunks = []
    try:
        while data := await stream.receive_some(65536):
            chunks.append(data)
    except trio.BrokenResourceError:  # reset by the server
        pass
    return b"".join(chunks)


async def fetch(address: Address, raw: bytes) -> bytes:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(raw)
        return await _read_all(stream)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


async def test_get_answers_the_page_and_closes() -> None:
    with trio.fail_after(10):
        async with running() as address:
            response = await fetch(address, get("/?refresh=1"))
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close" in head.lower()
    assert b"content-security-policy: default-src 'none'" in head.lower()
    assert body == b"<p>hi</p>"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (get("/nope"), 404),
        (get("/metrics"), 404),
        (get("/", "POST"), 405),
        (get("/", "DELETE"), 405),
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4000 + b"\r\n\r\n", 431),
        (get("/boom"), 500),
    ],
)
async def test_other_requests_are_refused_with_a_status(raw: bytes, status: int) -> None:
    with trio.fail_after(10):
        async with running() as address:
            assert status_of(await fetch(address, raw)) == status
            # ... and the server goes on serving.
            assert status_of(await fetch(address, get("/"))) == 200


async def test_405_names_the_allowed_method() -> None:
    with trio.fail_after(10):
        async with running() as address:
            response = await fetch(address, get("/", "PUT"))
    assert b"\r\nallow: GET\r\n" in response.lower().replace(b"get", b"GET")


async def test_a_client_sending_headers_slowly_is_cut_off_at_the_deadline() -> None:
    with trio.fail_after(10):
        async with running() as address:
            slow = await trio.open_tcp_stream(*address)
            start = trio.current_time()
            await slow.send_all(b"GET / HTTP/1.1\r\nHo")
            # Others are served meanwhile.
            assert status_of(await fetch(address, get("/"))) == 200
            for _ in range(3):
                try:
                    await slow.send_all(b"s")
                except trio.BrokenResourceError:
                    break
                await trio.sleep(0.05)
            assert await _read_all(slow) == b""
            assert trio.current_time() - start >= LIMITS.deadline * 0.9
            await slow.aclose()


async def test_connections_beyond_the_cap_are_closed_on_accept() -> None:
    with trio.fail_after(10):
        async with running() as address:
            held = [await trio.open_tcp_stream(*address) for _ in range(LIMITS.max_connections)]
            await trio.sleep(0.05)  # accepted by now
            assert await fetch(address, get("/")) == b""
            for stream in held:
                assert await _read_all(stream) == b""  # closed at the deadline
                await stream.aclose()
            assert status_of(await fetch(address, get("/"))) == 200


async def test_requests_beyond_the_rate_are_closed_on_accept() -> None:
    limits = StatusLimits(rate=2.0, burst=3)
    with trio.fail_after(10):
        async with running(limits) as address:
            answers = [await fetch(address, get("/")) for _ in range(5)]
            assert [status_of(a) for a in answers[:3]] == [200] * 3
            assert answers[3:] == [b"", b""]
            await trio.sleep(0.6)  # a token is back
            assert status_of(await fetch(address, get("/"))) == 200


async def test_an_unbindable_address_raises_oserror() -> None:
    with trio.fail_after(10), pytest.raises(OSError):
        await serve_http("192.0.2.1", 0, PAGES)  # TEST-NET-1: not an address of this host
