"""The listener registry (``_listeners``): limits, renewal, expiry and the push slot."""

from __future__ import annotations

from trio_kad import Config
from trio_kad._listeners import Listeners
from trio_kad._messages import Store

KEY = bytes(32)
OTHER = bytes([1]) * 32
CONFIG = Config(
    max_listeners=4,
    max_listeners_per_key=3,
    max_listeners_per_ip=2,
    watch_push_rate=2.0,
    watch_renew_interval=10.0,
    watch_listener_ttl=30.0,
)


def node(n: int) -> bytes:
    return bytes([n]) * 32


def test_limits_per_ip_per_key_and_in_all() -> None:
    reg = Listeners(CONFIG)
    assert reg.listen(KEY, node(1), ("10.0.0.1", 1), "10.0.0.0/24", 0.0) is not None
    assert reg.listen(KEY, node(2), ("10.0.0.2", 1), "10.0.0.0/24", 0.0) is not None
    assert reg.listen(KEY, node(3), ("10.0.0.3", 1), "10.0.0.0/24", 0.0) is None  # per IP
    assert reg.listen(KEY, node(3), ("10.0.1.3", 1), "10.0.1.0/24", 0.0) is not None
    assert reg.listen(KEY, node(4), ("10.0.2.4", 1), "", 0.0) is None  # per key
    assert reg.listen(OTHER, node(4), ("10.0.2.4", 1), "", 0.0) is not None
    assert reg.listen(OTHER, node(5), ("10.0.3.5", 1), "", 0.0) is None  # in all
    assert len(reg) == 4
    assert reg.stats.listens_refused == 3


def test_a_renewal_counts_once_and_extends_the_life() -> None:
    reg = Listeners(CONFIG)
    for t in (0.0, 10.0, 20.0, 40.0):
        assert reg.listen(KEY, node(1), ("10.0.0.1", 1), "g", t) is not None
    assert len(reg) == 1
    assert len(reg.listening(KEY, 69.0)) == 1
    assert reg.listening(KEY, 70.0) == []
    assert len(reg) == 0


def test_expired_listeners_make_room() -> None:
    reg = Listeners(CONFIG)
    for n in range(4):
        assert reg.listen(bytes([n]) * 32, node(n), ("h", 1), "", 0.0) is not None
    assert reg.listen(KEY, node(9), ("h", 1), "", 29.0) is None
    assert reg.listen(KEY, node(9), ("h", 1), "", 30.0) is not None
    assert len(reg) == 1


def test_a_slow_listener_gets_the_newest_pair_at_its_rate() -> None:
    reg = Listeners(CONFIG)
    listener = reg.listen(KEY, node(1), ("h", 1), "", 0.0)
    assert listener is not None
    pairs = [Store(KEY, bytes([n]), published=n) for n in range(5)]
    assert reg.offer(pairs[0], 0.0) == [listener]  # start one task
    assert reg.offer(pairs[1], 0.0) == []  # it is running: coalesced into its slot
    assert reg.next_push(listener, 0.0) == pairs[1]
    assert reg.next_push(listener, 0.0) is None  # nothing waits: the task ends
    assert reg.offer(pairs[2], 0.0) == [listener]
    assert reg.next_push(listener, 0.0) == pairs[2]  # the burst of 2 is used up now
    reg.offer(pairs[3], 0.0)
    reg.offer(pairs[4], 0.0)
    wait = reg.next_push(listener, 0.0)
    assert isinstance(wait, float) and 0 < wait <= 0.5
    assert reg.next_push(listener, 0.5) == pairs[4]
    assert reg.stats.pushes_coalesced == 2
    assert reg.stats.pushes_sent == 3


def test_a_dropped_listener_gets_nothing_more() -> None:
    reg = Listeners(CONFIG)
    listener = reg.listen(KEY, node(1), ("h", 1), "g", 0.0)
    assert listener is not None
    reg.offer(Store(KEY, b"\x01"), 0.0)
    reg.drop(listener)
    assert reg.next_push(listener, 0.0) is None
    assert reg.listening(KEY, 0.0) == []
    assert len(reg) == 0
    assert reg.listen(KEY, node(2), ("h", 1), "g", 0.0) is not None  # its IP slot is free
