"""Prometheus metrics of one node, read at scrape time (``prometheus-client``).

Each node gets a ``CollectorRegistry`` of its own, never the global one, so
several nodes in one process do not mix. Almost everything is read from
``Dht.statistics()`` when scraped; the one hook on the hot path is
``MeteredTransport``, which counts RPCs by type and outcome with a dict
increment per RPC, both the ones sent and the ones served.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ._api import Dht
from ._config import Config
from ._ids import Address
from ._messages import ErrorReply, Reply, ReplyFrame, Request, RequestFrame
from ._status_page import LATENCY_BUCKETS
from ._transport import RequestHandler, Transport, TransportStatistics

__all__ = ["MeteredTransport", "kind", "node_registry", "outcome"]

HOP_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
"""Upper bounds of the lookup hops histogram."""


def kind(message: object) -> str:
    """A message's type as a label: ``FindNode`` -> ``find_node``."""
    return _label(type(message).__name__)


@functools.cache
def _label(name: str) -> str:
    # Once per message type: kind() runs on every RPC, each way.
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def outcome(reply: Reply) -> str:
    """``ok``, or an error reply's code as a label (``overloaded``, ``too_large`` ...)."""
    return reply.code.name.lower() if isinstance(reply, ErrorReply) else "ok"


class MeteredTransport(Transport):
    """Another transport, with RPCs counted by (type, outcome) each way.

    ``sent`` counts requests this node made: outcome ``ok``, an error code, or
    ``failed``: no reply (unreachable, garbage, timed out, or no longer awaited
    by a lookup that had finished). ``served`` counts the
    requests the node's handler answered (refusals the transport makes itself,
    such as the per-IP rate, are in its statistics instead).
    """

    def __init__(self, inner: Transport) -> None:
        super().__init__()
        self._inner = inner
        self.sent: Counter[tuple[str, str]] = Counter()
        self.served: Counter[tuple[str, str]] = Counter()

    async def run(
        self,
        config: Config,
        node_id: bytes,
        host: str,
        port: int,
        handler: RequestHandler | None,
        *,
        task_status: trio.TaskStatus[Address | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the inner transport with the handler counted."""
        counted = None
        if handler is not None:
            served = self.served

            async def counted_handler(frame: RequestFrame, remote: Address) -> Reply:
                reply = await handler(frame, remote)
                served[kind(frame.body), outcome(reply)] += 1
                return reply

            counted = counted_handler
        self._inner.push_handler = self.push_handler  # a client-only watcher's pushes
        await self._inner.run(config, node_id, host, port, counted, task_status=task_status)

    async def request(
        self, address: Address, sender_id: bytes, sender_port: int | None, body: Request
    ) -> ReplyFrame:
        """The inner transport's ``request``, counted."""
        try:
            frame = await self._inner.request(address, sender_id, sender_port, body)
        except BaseException:
            self.sent[kind(body), "failed"] += 1
            raise
        self.sent[kind(body), outcome(frame.body)] += 1
        return frame

    async def _request(
        self, address: Address, sender_id: bytes, sender_port: int | None, body: Request
    ) -> ReplyFrame:
        return await self.request(address, sender_id, sender_port, body)  # pragma: no cover

    def statistics(self) -> TransportStatistics:
        """The inner transport's counters."""
        return self._inner.statistics()

    def holds_connection(self, address: Address) -> bool:
        """The inner transport's answer."""
        return self._inner.holds_connection(address)


class _Histogram:
    """Cumulative bucket counts and a sum, as Prometheus wants them."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        index = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[index] += 1
        self.total += value

    def family(self, name: str, doc: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=self.total)


class DhtCollector:
    """Reads a node's counters at each scrape (see ``node_registry``)."""

    def __init__(self, dht: Dht, transport: MeteredTransport | None, clock: Callable[[], float]):
        self._dht = dht
        self._transport = transport
        self._clock = clock
        self._started = clock()
        self._lookups_seen = 0
        self._latency = _Histogram(LATENCY_BUCKETS)
        self._hops = _Histogram(HOP_BUCKETS)

    def collect(self) -> Iterable[Metric]:
        """Every metric of the node, as of now."""
        dht = self._dht
        stats = dht.statistics()
        t = stats.transport
        self._take_lookups(stats.lookups)
        yield _gauge(
            "trio_kad_uptime_seconds",
            "Seconds since the node started.",
            self._clock() - self._started,
        )
        yield _gauge("trio_kad_contacts", "Contacts in the routing table.", stats.contacts)
        yield _gauge("trio_kad_buckets", "Buckets of the routing table.", stats.buckets)
        yield _gauge("trio_kad_records", "Pairs held for the network.", stats.records)
        yield _gauge("trio_kad_record_bytes", "Bytes of the values held.", stats.record_bytes)
        yield _gauge("trio_kad_bans", "Peers banned right now.", stats.bans)
        yield _gauge(
            "trio_kad_provider_entries",
            "Provider entries held, all topics.",
            stats.provider_entries,
        )
        yield _gauge("trio_kad_listeners", "Listeners held as a holder.", stats.listeners.listeners)
        yield _gauge("trio_kad_watches", "Watches this node runs.", stats.watches)
        yield _gauge("trio_kad_connections_open", "TCP connections open.", t.connections_open)
        yield _gauge(
            "trio_kad_requests_pending", "Our RPCs waiting for a reply.", t.requests_pending
        )
        for name, doc, value in (
            ("lookups", "Network lookups made.", stats.lookups),
            ("lookup_rpcs", "RPCs sent by lookups.", stats.lookup_rpcs),
            ("requests_received", "Requests received.", t.requests_received),
            ("connections_opened", "TCP connections opened, both ways.", t.connections_opened),
            ("bytes_sent", "Bytes written to peers.", t.bytes_sent),
            ("bytes_received", "Bytes read from peers.", t.bytes_received),
            ("frames_sent", "Frames written to peers.", t.frames_sent),
            ("frames_received", "Frames read from peers.", t.frames_received),
            ("stores_accepted", "Pairs kept from STOREs.", stats.stores_accepted),
            ("pushes_sent", "New values pushed to listeners.", stats.listeners.pushes_sent),
            (
                "pushes_coalesced",
                "Values a newer one replaced before their push.",
                stats.listeners.pushes_coalesced,
            ),
            (
                "pushes_unsolicited",
                "Pushes received for no watch of ours.",
                stats.pushes_unsolicited,
            ),
        ):
            yield _counter(f"trio_kad_{name}", doc, value)
        refusals = CounterMetricFamily(
            "trio_kad_refusals",
            "Peers' connections and requests refused, by reason.",
            labels=["reason"],
        )
        for reason, value in (
            ("connection_limit", t.connections_refused),
            ("request_rate", t.requests_refused),
            ("store", stats.stores_refused),
            ("protocol_error", t.protocol_errors),
            ("provider", stats.providers_refused),
            ("listen", stats.listeners.listens_refused),
            ("push", stats.pushes_refused),
        ):
            refusals.add_metric([reason], value)
        yield refusals
        yield from self._rpcs(stats.transport)
        yield self._latency.family("trio_kad_lookup_duration_seconds", _SAMPLED.format("Seconds"))
        yield self._hops.family("trio_kad_lookup_hops", _SAMPLED.format("Hops"))

    def _rpcs(self, t: TransportStatistics) -> Iterable[Metric]:
        sent = CounterMetricFamily(
            "trio_kad_rpcs_sent",
            "RPCs this node sent, by type and outcome.",
            labels=["type", "outcome"],
        )
        served = CounterMetricFamily(
            "trio_kad_rpcs_served",
            "Requests this node answered, by type and outcome.",
            labels=["type", "outcome"],
        )
        if self._transport is not None:
            for family, counts in ((sent, self._transport.sent), (served, self._transport.served)):
                for labels, value in sorted(counts.items()):
                    family.add_metric(list(labels), value)
        else:  # no metered transport: what the plain counters tell
            sent.add_metric(["any", "ok"], t.requests_sent - t.requests_failed)
            sent.add_metric(["any", "failed"], t.requests_failed)
        yield sent
        yield served

    def _take_lookups(self, total: int) -> None:
        # The node keeps its last 100 lookups: those made since the last scrape go
        # into the histograms (all of them when scrapes come at least that often).
        new = total - self._lookups_seen
        self._lookups_seen = total
        if new <= 0:
            return
        for report in self._dht.recent_lookups[-new:]:
            self._latency.observe(report.duration)
            self._hops.observe(report.rounds)


_SAMPLED = "{} per network lookup (the last 100 lookups between two scrapes at most)."


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def node_registry(
    dht: Dht,
    transport: MeteredTransport | None = None,
    clock: Callable[[], float] = trio.current_time,
) -> CollectorRegistry:
    """A registry of its own holding ``dht``'s metrics, read at each scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DhtCollector(dht, transport, clock))
    return registry
