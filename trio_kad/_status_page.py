"""The status page of a node: one self-contained HTML document (no scripts, no links out).

``render_page`` is pure: it gets a ``StatusView`` (built from a ``Dht`` by
``_status``) and returns the page. Everything a peer chose (hosts above all)
is HTML-escaped; ids and numbers are formatted here.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._bucket import ContactInfo

__all__ = ["LATENCY_BUCKETS", "LookupRow", "StatusView", "render_page"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds, in seconds, of the lookup latency histogram (the page's and the metrics')."""

REFRESH_SECONDS = 10
"""The page reloads itself this often."""


@dataclass(frozen=True, slots=True)
class LookupRow:
    """One recent lookup as the page shows it."""

    target: bytes
    hops: int
    rpcs: int
    failures: int
    seconds: float
    found: bool


@dataclass(frozen=True, slots=True)
class StatusView:
    """What the page shows, read from a node at one moment."""

    node_id: bytes
    address: str
    now: float
    """The Trio clock now: contacts' last-seen times are shown as ages."""
    uptime: float
    buckets: Sequence[tuple[int, int, Sequence[ContactInfo]]]
    records: int
    record_bytes: int
    counters: Sequence[tuple[str, int]]
    rpcs: Sequence[tuple[str, str, str, int]]
    """(direction, type, outcome, count) rows."""
    lookups: Sequence[LookupRow]
    """Oldest first."""


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:70em}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;margin:.3em 0}td,th{padding:.15em .6em;text-align:left}
th{background:#eee}tr:nth-child(even) td{background:#f8f8f8}
code{font-size:.95em}
.bar{background:#4a7;height:.9em;display:inline-block;vertical-align:middle}
details{margin:.2em 0}summary{cursor:pointer}
"""


def render_page(view: StatusView) -> str:
    """The whole page for ``view``."""
    node = view.node_id.hex()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">',
        f"<title>trio-kad {node[:12]}</title><style>{_STYLE}</style></head><body>",
        "<h1>trio-kad node</h1>",
        _table(
            ("", ""),
            [
                ("node id", f"<code>{node}</code>"),
                ("address", _e(view.address)),
                ("uptime", _duration(view.uptime)),
                ("records held", f"{view.records:,} ({_size(view.record_bytes)})"),
            ],
            header=False,
        ),
        "<h2>Counters</h2>",
        _table(("counter", "value"), [(_e(n), _num(v)) for n, v in view.counters]),
        "<h2>RPCs</h2>",
        _table(
            ("direction", "type", "outcome", "count"),
            [(_e(d), _e(t), _e(o), _num(c)) for d, t, o, c in view.rpcs],
        ),
        "<h2>Lookup latency</h2>",
        _histogram(view.lookups),
        "<h2>Recent lookups</h2>",
        _lookups(view.lookups),
        f"<h2>Routing table ({sum(len(b[2]) for b in view.buckets)} contacts)</h2>",
        *(
            _bucket(i, low, high, entries, view.now)
            for i, (low, high, entries) in enumerate(view.buckets)
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _num(value: int) -> str:
    return f"{value:,}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours or days else f"{minutes}m {secs:02d}s"
    return f"{days}d {text}" if days else text


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, header: bool = True) -> str:
    """A table of cells that are HTML already (escaped by the caller)."""
    lines = ["<table>"]
    if header:
        lines.append("<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    lines += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join([*lines, "</table>"])


def _lookups(rows: Sequence[LookupRow]) -> str:
    if not rows:
        return "<p>No lookups yet.</p>"
    shown = list(reversed(rows))[:20]
    return _table(
        ("target", "hops", "RPCs", "failed", "ms", "value"),
        [
            (
                f"<code>{r.target.hex()[:16]}</code>",
                str(r.hops),
                str(r.rpcs),
                str(r.failures),
                f"{r.seconds * 1000:.1f}",
                "found" if r.found else "",
            )
            for r in shown
        ],
    )


def _histogram(rows: Sequence[LookupRow]) -> str:
    if not rows:
        return "<p>No lookups yet.</p>"
    counts = [0] * (len(LATENCY_BUCKETS) + 1)
    for r in rows:
        counts[next((i for i, b in enumerate(LATENCY_BUCKETS) if r.seconds <= b), -1)] += 1
    labels = [f"&le; {b * 1000:g} ms" for b in LATENCY_BUCKETS] + [
        f"&gt; {LATENCY_BUCKETS[-1]:g} s"
    ]
    most = max(counts)
    return (
        _table(
            ("latency", "lookups", ""),
            [
                (
                    label,
                    str(count),
                    f'<span class="bar" style="width:{count * 20 // most}em"></span>',
                )
                for label, count in zip(labels, counts, strict=True)
            ],
        )
        + f"<p>Over the last {len(rows)} lookup{'' if len(rows) == 1 else 's'}.</p>"
    )


def _power(n: int) -> str:
    """``n`` as a power of two (a split bucket's bounds may lie between two)."""
    if n == 0:
        return "0"
    exponent = n.bit_length() - 1 if n & (n - 1) == 0 else f"{math.log2(n):.2f}"
    return f"2<sup>{exponent}</sup>"


def _bucket(index: int, low: int, high: int, entries: Sequence[ContactInfo], now: float) -> str:
    span = f"distance {_power(low)} to {_power(high)}"
    rows = [
        (
            f"<code>{info.contact.node_id.hex()[:16]}</code>",
            _e(f"{info.contact.host}:{info.contact.port}"),
            f"{max(0.0, now - info.last_seen):.0f} s ago",
            str(info.failures),
        )
        for info in entries
    ]
    summary = f"bucket {index}: {span}, {len(entries)} contact{'' if len(entries) == 1 else 's'}"
    body = _table(("id", "address", "last seen", "failures"), rows) if rows else ""
    return f"<details{' open' if rows else ''}><summary>{summary}</summary>{body}</details>"
