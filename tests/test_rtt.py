"""Round-trip estimates (``_rtt``): per contact, node-wide fallback, backoff, hedge floor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_kad._rtt import HEDGE_FLOOR, MAX_BACKOFF, RttEstimator, RttTable

FLOOR, CEILING = 0.25, 2.0


def test_rtt_estimator_waits_the_ceiling_until_it_knows_better() -> None:
    rtt = RttEstimator(FLOOR, CEILING)
    assert rtt.timeout() == CEILING
    assert rtt.hedge_delay() == FLOOR
    rtt.observe(0.001)
    # 1 ms +- 0.5 ms: the margin over it is the floor; the hedge has its own floor.
    assert rtt.timeout() == pytest.approx(0.251)
    assert rtt.hedge_delay() == HEDGE_FLOOR
    for _ in range(50):
        rtt.observe(1.0)
    assert 1.0 <= rtt.timeout() <= CEILING
    rtt.observe(-1.0)  # a clock oddity is not a sample
    assert rtt.samples == 51
    with pytest.raises(ValueError):
        RttEstimator(0.0, 1.0)
    with pytest.raises(ValueError):
        RttEstimator(2.0, 1.0)


def test_a_steady_far_path_keeps_a_margin_over_its_round_trip() -> None:
    rtt = RttEstimator(FLOOR, CEILING)
    for _ in range(100):
        rtt.observe(0.3)
    # The deviation decayed to nothing; a reply queued a little longer is not lost,
    # and not hedged either (the hedge would double the traffic on this path).
    assert rtt.rttvar < 0.001
    assert rtt.timeout() == pytest.approx(0.3 + FLOOR, abs=0.005)
    assert rtt.hedge_delay() == pytest.approx(0.375, abs=0.005)


def test_timeouts_back_off_within_bounds_and_a_reply_ends_the_backoff() -> None:
    rtt = RttEstimator(FLOOR, CEILING)
    rtt.observe(0.1)
    first = rtt.timeout()
    rtt.timed_out()
    assert rtt.timeout() == pytest.approx(2 * first)
    rtt.timed_out()
    assert rtt.timeout() == pytest.approx(MAX_BACKOFF * first)
    for _ in range(20):
        rtt.timed_out()
    assert rtt.timeout() == pytest.approx(MAX_BACKOFF * first)  # a dead peer costs no more
    assert rtt.hedge_delay() <= rtt.timeout()
    far = RttEstimator(FLOOR, CEILING)
    far.observe(0.5)
    for _ in range(3):
        far.timed_out()
    assert far.timeout() == CEILING
    rtt.observe(0.1)
    assert rtt.backoff == 1
    assert rtt.timeout() < first + 0.1


@given(
    st.lists(
        st.one_of(st.floats(min_value=0.0, max_value=100.0), st.none()), min_size=1, max_size=50
    )
)
def test_rtt_timeout_stays_within_bounds(events: list[float | None]) -> None:
    rtt = RttEstimator(FLOOR, CEILING)
    for sample in events:
        if sample is None:
            rtt.timed_out()
        else:
            rtt.observe(sample)
        assert FLOOR <= rtt.timeout() <= CEILING
        assert 0.0 < rtt.hedge_delay() <= rtt.timeout()


def test_each_contact_has_its_own_timeout_and_strangers_get_the_node_wide_one() -> None:
    table: RttTable[str] = RttTable(FLOOR, CEILING, max_contacts=8)
    assert table.timeout("near") == CEILING  # nothing heard from anyone yet
    for _ in range(20):
        table.observe("near", 0.01)
        table.observe("far", 0.3)
    assert table.timeout("near") == pytest.approx(0.01 + FLOOR, abs=0.01)
    assert table.timeout("far") == pytest.approx(0.3 + FLOOR, abs=0.01)
    assert table.hedge_delay("near") < table.hedge_delay("far")
    # A stranger gets what the node has seen of everyone.
    assert table.timeout("stranger") == table.node.timeout()
    assert table.hedge_delay("stranger") == table.node.hedge_delay()
    assert "stranger" not in table
    assert table.node.samples == 40


def test_a_silent_stranger_backs_off_from_the_node_wide_estimate_alone() -> None:
    table: RttTable[str] = RttTable(FLOOR, CEILING, max_contacts=8)
    for _ in range(20):
        table.observe("live", 0.05)
    node_wide = table.node.timeout()
    table.timed_out("silent")
    assert table.timeout("silent") == pytest.approx(2 * node_wide)
    table.timed_out("silent")
    assert table.timeout("silent") == pytest.approx(4 * node_wide)
    # The node-wide estimate and the live contact are unaffected.
    assert table.node.timeout() == node_wide
    assert table.timeout("live") == pytest.approx(node_wide, abs=0.01)
    # Its first reply is its own first sample.
    table.observe("silent", 0.2)
    estimator = table.get("silent")
    assert estimator is not None and estimator.srtt == 0.2 and estimator.backoff == 1


def test_the_table_forgets_the_least_recently_used_contact() -> None:
    table: RttTable[int] = RttTable(FLOOR, CEILING, max_contacts=3)
    for contact in range(3):
        table.observe(contact, 0.1)
    table.timeout(0)  # a use: 1 is now the least recently used
    table.timed_out(3)
    assert len(table) == 3
    assert 1 not in table and 0 in table and 3 in table
    with pytest.raises(ValueError):
        RttTable(FLOOR, CEILING, max_contacts=0)


@given(st.lists(st.integers(0, 50), max_size=200), st.integers(1, 10))
def test_the_table_stays_bounded(contacts: list[int], max_contacts: int) -> None:
    table: RttTable[int] = RttTable(FLOOR, CEILING, max_contacts=max_contacts)
    for contact in contacts:
        if contact % 2:
            table.timed_out(contact)
        else:
            table.observe(contact, contact / 100)
        assert len(table) <= max_contacts
        assert contact in table
