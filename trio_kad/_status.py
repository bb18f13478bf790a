"""``trio-kad serve --status HOST:PORT``: the status page and metrics of a running node.

Joins a ``Dht`` to the HTTP server (``_status_http``), the page
(``_status_page``) and the metrics (``_metrics``). ``h11`` and
``prometheus-client`` are the optional extra ``status``: they are imported
only once a status server is asked for.

A status address off loopback is allowed, for a Prometheus server on another
machine, but warned about loudly: the page and metrics have no
authentication, and whoever reaches them sees the node's peers and counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ._address import Scope, address_scope, format_address
from ._ids import Address
from ._status_page import LookupRow, StatusView, render_page

if TYPE_CHECKING:
    from ._api import Dht
    from ._metrics import MeteredTransport

__all__ = ["StatusServer"]

log = logging.getLogger("trio_kad.status")

CACHE_SECONDS = 1.0
"""A page or scrape is rendered at most this often; requests in between get the same one.

Rendering takes the node's own thread: a client scraping in a loop must not
take it from the DHT.
"""


class StatusServer:
    """The ``--status`` address, checked at once: a bad one or a missing library raises.

    Raises ``ValueError`` with one line (the address's fault, or which
    package to install) before the node starts.
    """

    def __init__(self, text: str, *, cache_seconds: float = CACHE_SECONDS) -> None:
        try:
            import h11  # noqa: F401
            import prometheus_client  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"--status needs {exc.name}: pip install 'trio-kad[status]'") from None
        from ._metrics import MeteredTransport
        from ._tcp import TcpTransport

        self.address = _listen_address(text)
        self.cache_seconds = cache_seconds
        self.transport: MeteredTransport = MeteredTransport(TcpTransport())
        """The node's transport, counting RPCs by type and outcome for the metrics."""

    async def run(self, dht: Dht, *, task_status: trio.TaskStatus[str]) -> None:
        """Serve ``dht``'s page and metrics until cancelled; reports the page's URL."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from ._metrics import node_registry
        from ._status_http import serve_http

        host, port = self.address
        if address_scope(host) is not Scope.LOOPBACK and host != "localhost":
            log.warning(
                "the status page on %s is reachable beyond this host, without authentication:"
                " whoever connects sees this node's peers and counters",
                format_address(self.address),
            )
        registry = node_registry(dht, self.transport)
        started = trio.current_time()

        def page() -> tuple[str, bytes]:
            view = _view(dht, self.transport, trio.current_time(), started)
            return "text/html; charset=utf-8", render_page(view).encode()

        def metrics() -> tuple[str, bytes]:
            return CONTENT_TYPE_LATEST, generate_latest(registry)

        pages = {
            "/": _cached(page, self.cache_seconds),
            "/metrics": _cached(metrics, self.cache_seconds),
        }
        async with trio.open_nursery() as nursery:
            try:
                bound = await nursery.start(serve_http, host, port, pages)
            except OSError as exc:
                where = format_address(self.address)
                raise OSError(f"--status {where}: {exc.strerror or exc}") from None
            task_status.started(f"http://{format_address(bound)}/")


def _listen_address(text: str) -> Address:
    """``H:P`` or a port alone (loopback); port 0 picks a free one."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536 or " " in host:
        raise ValueError(f"--status must look like host:port or port, got {text!r}")
    return (host, int(port))


def _cached(
    render: Callable[[], tuple[str, bytes]], seconds: float
) -> Callable[[], tuple[str, bytes]]:
    last: tuple[float, tuple[str, bytes]] | None = None

    def cached() -> tuple[str, bytes]:
        nonlocal last
        now = trio.current_time()
        if last is None or now - last[0] >= seconds:
            last = (now, render())
        return last[1]

    return cached


def _view(dht: Dht, transport: MeteredTransport, now: float, started: float) -> StatusView:
    stats = dht.statistics()
    t = stats.transport
    host, port = dht.address
    counters = [
        ("contacts", stats.contacts),
        ("buckets", stats.buckets),
        ("lookups", stats.lookups),
        ("lookup RPCs", stats.lookup_rpcs),
        ("requests received", t.requests_received),
        ("requests sent", t.requests_sent),
        ("requests failed", t.requests_failed),
        ("stores accepted", stats.stores_accepted),
        ("stores refused", stats.stores_refused),
        ("connections open", t.connections_open),
        ("connections opened", t.connections_opened),
        ("connections refused", t.connections_refused),
        ("requests refused (rate)", t.requests_refused),
        ("protocol errors", t.protocol_errors),
        ("bans running", stats.bans),
        ("bytes sent", t.bytes_sent),
        ("bytes received", t.bytes_received),
    ]
    rpcs = [
        (direction, kind, outcome, count)
        for direction, counts in (("sent", transport.sent), ("served", transport.served))
        for (kind, outcome), count in sorted(counts.items())
    ]
    lookups = [
        LookupRow(r.target, r.rounds, r.queries, r.failures, r.duration, r.found_at is not None)
        for r in dht.recent_lookups
    ]
    return StatusView(
        node_id=dht.node_id,
        address=format_address((host, port)),
        now=now,
        uptime=now - started,
        buckets=dht.routing_table(),
        records=stats.records,
        record_bytes=stats.record_bytes,
        counters=counters,
        rpcs=rpcs,
        lookups=lookups,
    )
