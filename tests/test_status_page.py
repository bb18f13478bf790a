"""The status page: one self-contained HTML document, peers' strings escaped."""

from __future__ import annotations

import html.parser

from trio_kad._bucket import ContactInfo
from trio_kad._ids import Contact
from trio_kad._status_page import LookupRow, StatusView, render_page

NODE = bytes(range(32))
HOSTILE = '<script>alert("x")</script>&'


def _view(**changes: object) -> StatusView:
    fields: dict[str, object] = {
        "node_id": NODE,
        "address": "127.0.0.1:4000",
        "now": 1000.0,
        "uptime": 90061.0,
        "buckets": [
            (2**255, 2**256, [ContactInfo(Contact(b"\xaa" * 32, HOSTILE, 1), 990.0, 2)]),
            (3 * 2**254, 2**256, []),
        ],
        "records": 1234,
        "record_bytes": 5 * 1024 * 1024,
        "counters": [("lookups", 7), (HOSTILE, 1)],
        "rpcs": [("sent", "find_node", "ok", 12), ("served", "store", "too_large", 1)],
        "lookups": [
            LookupRow(b"\x01" * 32, 3, 21, 1, 0.042, True),
            LookupRow(b"\x02" * 32, 2, 9, 0, 12.5, False),
        ],
    }
    fields.update(changes)
    return StatusView(**fields)  # type: ignore[arg-type]


class _Parser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Parser:
    parser = _Parser()
    parser.feed(page)
    parser.close()
    return parser


def test_the_page_shows_the_node_its_table_its_counters_and_lookups() -> None:
    page = render_page(_view())
    text = " ".join(_parse(page).text)
    assert NODE.hex() in text
    assert "127.0.0.1:4000" in text
    assert "1d 1h 01m 01s" in text  # uptime
    assert "1,234 (5.0 MiB)" in text
    assert "aaaaaaaaaaaaaaaa" in text and "10 s ago" in text
    assert "find_node" in text and "too_large" in text
    assert "42.0" in text and "12500.0" in text  # latency in ms, newest first
    assert text.index("12500.0") < text.index("42.0")
    assert "Over the last 2 lookups." in text
    assert '<meta http-equiv="refresh" content="10">' in page


def test_peer_strings_are_escaped() -> None:
    parser = _parse(render_page(_view()))
    assert "script" not in parser.tags
    assert HOSTILE + ":1" in " ".join(parser.text)  # shown as text, not as markup


def test_the_page_loads_nothing_from_elsewhere() -> None:
    parser = _parse(render_page(_view()))
    assert not {"script", "img", "link", "iframe"} & set(parser.tags)
    assert not [a for a in parser.attrs if a[0] in ("src", "href")]


def test_a_fresh_node_has_a_page_too() -> None:
    page = render_page(_view(buckets=[(0, 2**256, [])], lookups=[], rpcs=[], counters=[]))
    assert page.count("No lookups yet.") == 2
    assert "bucket 0: distance 0 to 2<sup>256</sup>, 0 contacts" in page


def test_a_bucket_between_powers_of_two_shows_where_it_starts() -> None:
    page = render_page(_view())
    assert "distance 2<sup>255</sup> to 2<sup>256</sup>, 1 contact</summary>" in page
    assert "distance 2<sup>255.58</sup> to 2<sup>256</sup>, 0 contacts" in page
