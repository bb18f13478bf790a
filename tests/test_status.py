"""``serve --status``: a node's page and metrics over real TCP, and the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import trio
from clihelp import command, serve, status_url, stop
from prometheus_client.parser import text_string_to_metric_families
from test_status_http import fetch, get, status_of

from trio_kad import open_dht
from trio_kad._status import StatusServer
from trio_kad.testing import open_simulation


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return host, int(port)


async def test_the_page_and_metrics_of_a_running_node() -> None:
    with trio.fail_after(30):
        async with open_simulation(4, tcp=True) as sim:
            status = StatusServer("127.0.0.1:0", cache_seconds=0)
            async with (
                open_dht(bootstrap=[sim.nodes[0].address], transport=status.transport) as dht,
                trio.open_nursery() as nursery,
            ):
                address = _address(await nursery.start(status.run, dht))
                await dht.set("colour", "blue")
                page = await fetch(address, get("/"))
                assert status_of(page) == 200
                assert dht.node_id.hex().encode() in page
                for node in sim.nodes:
                    assert node.node_id.hex()[:16].encode() in page  # in the routing table
                metrics = await fetch(address, get("/metrics"))
                assert status_of(metrics) == 200
                body = metrics.split(b"\r\n\r\n", 1)[1].decode()
                names = {f.name for f in text_string_to_metric_families(body)}
                assert {"trio_kad_rpcs_sent", "trio_kad_lookup_duration_seconds"} <= names
                assert status_of(await fetch(address, get("/other"))) == 404
                nursery.cancel_scope.cancel()


async def test_scraping_in_a_loop_leaves_the_dht_working() -> None:
    with trio.fail_after(60):
        async with open_simulation(5, tcp=True) as sim:
            status = StatusServer("127.0.0.1:0")
            async with (
                open_dht(bootstrap=[sim.nodes[0].address], transport=status.transport) as dht,
                trio.open_nursery() as nursery,
            ):
                address = _address(await nursery.start(status.run, dht))
                scrapes: list[bytes] = []

                async def scrape() -> None:
                    for _ in range(100):
                        scrapes.append(await fetch(address, get("/metrics")))

                async with trio.open_nursery() as scrapers:
                    for _ in range(4):
                        scrapers.start_soon(scrape)
                    for i in range(20):
                        assert await dht.set(f"key {i}", i) >= 1
                        assert await sim.nodes[i % 5].get(f"key {i}") == i
                # Answered up to the status server's rate; the rest closed on accept.
                answered = [status_of(r) for r in scrapes if r]
                assert answered and set(answered) == {200}
                nursery.cancel_scope.cancel()


def test_status_address_checks() -> None:
    assert StatusServer("9100").address == ("127.0.0.1", 9100)
    assert StatusServer("[::1]:0").address == ("::1", 0)
    for bad in ("nonsense", "127.0.0.1:99999", "host:"):
        with pytest.raises(ValueError, match="--status"):
            StatusServer(bad)


def test_serve_status_on_the_command_line() -> None:
    with serve("--status", "127.0.0.1:0") as server:
        url = status_url(server)
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert server.node_id in response.read().decode()
        with urllib.request.urlopen(url + "metrics", timeout=10) as response:
            assert b"trio_kad_contacts 0.0" in response.read()
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + "favicon.ico", timeout=10)
        assert info.value.code == 404
        info.value.close()
        assert stop(server) == 0


def test_serve_status_without_the_libraries_exits_2_with_a_hint() -> None:
    code = (
        "import sys; sys.modules['h11'] = None\n"
        "from trio_kad.cli import main\n"
        "sys.exit(main(['serve', '--port', '0', '--status', '127.0.0.1:0']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "error: --status needs h11: pip install 'trio-kad[status]'"
    ]


def test_serve_status_on_an_address_not_of_this_host_exits_2() -> None:
    result = subprocess.run(
        command("serve", "--port", "0", "--status", "192.0.2.1:0"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    warning, error = result.stderr.strip().splitlines()
    assert "reachable beyond this host" in warning
    assert error.startswith("error: --status 192.0.2.1:0: "), error


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium installed")
def test_the_page_in_a_headless_browser(tmp_path: object) -> None:  # pragma: no cover
    with serve("--status", "127.0.0.1:0") as server:
        url = status_url(server)
        result = subprocess.run(
            ["chromium", "--headless", "--disable-gpu", "--no-sandbox", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert server.node_id in result.stdout
        assert stop(server) == 0
