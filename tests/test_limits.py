"""The pure state of ``_limits``: token buckets and the bounded per-key table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_kad import Config
from trio_kad._limits import Admission, RateLimiter, TokenBucket


def test_bucket_starts_full_then_refuses() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=10.0)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]


def test_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    for _ in range(3):
        assert bucket.take(0.0)
    assert not bucket.take(0.25)  # half a token so far
    assert bucket.take(0.5)  # one whole token
    assert not bucket.take(0.5)
    assert bucket.tokens(100.0) == 3.0  # never more than burst


def test_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=5.0)
    assert bucket.take(5.0)
    assert not bucket.take(1.0)
    assert not bucket.take(5.5)
    assert bucket.take(6.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0), (1.0, 0.5)])
def test_bucket_rejects_bad_parameters(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.5, 100.0),
    burst=st.integers(1, 50),
    steps=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=200),
)
def test_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, steps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now = 0.0
    allowed = 0
    for step in steps:
        now += step
        allowed += bucket.take(now)
        assert allowed <= burst + rate * now + 1e-6


@settings(max_examples=100, deadline=None)
@given(rate=st.floats(0.5, 100.0), burst=st.integers(1, 50), seconds=st.integers(1, 20))
def test_bucket_allows_the_full_rate_to_a_patient_caller(
    rate: float, burst: int, seconds: int
) -> None:
    # One attempt every 1/(2*rate) seconds: half of them should pass once the burst is spent.
    bucket = TokenBucket(rate, burst, now=0.0)
    interval = 1.0 / (2 * rate)
    attempts = int(seconds / interval)
    allowed = sum(bucket.take(i * interval) for i in range(attempts + 1))
    assert allowed >= min(attempts + 1, burst + rate * seconds) - 2


def test_limiter_keeps_keys_apart() -> None:
    limiter = RateLimiter(rate=1.0, burst=2, max_keys=10)
    assert limiter.allow("10.0.0.1", 0.0) and limiter.allow("10.0.0.1", 0.0)
    assert not limiter.allow("10.0.0.1", 0.0)
    assert limiter.allow("10.0.0.2", 0.0)
    assert len(limiter) == 2


def test_limiter_forgets_the_least_recently_seen_key() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2)
    assert limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)
    assert not limiter.allow("a", 0.0)  # "a" is now the most recent
    assert limiter.allow("c", 0.0)  # evicts "b"
    assert "b" not in limiter and "a" in limiter and "c" in limiter
    assert not limiter.allow("a", 0.0)  # "a" was kept, still empty


def test_limiter_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate=1.0, burst=1, max_keys=0)
    with pytest.raises(ValueError):
        RateLimiter(rate=0.0, burst=1, max_keys=1)


@settings(max_examples=100, deadline=None)
@given(
    max_keys=st.integers(1, 8),
    events=st.lists(st.tuples(st.integers(0, 20), st.floats(0.0, 1.0)), max_size=300),
)
def test_limiter_table_stays_bounded(max_keys: int, events: list[tuple[int, float]]) -> None:
    limiter = RateLimiter(rate=5.0, burst=3, max_keys=max_keys)
    now = 0.0
    for key, step in events:
        now += step
        limiter.allow(str(key), now)
        assert len(limiter) <= max_keys
        assert str(key) in limiter


def test_the_request_rate_counts_an_ipv6_64_as_one_ip() -> None:
    admission = Admission(Config(request_rate_per_ip=1.0, request_burst_per_ip=2, per_ip_exempt=()))
    hosts = [f"2001:db8:1:2::{i:x}" for i in range(1, 4)]
    assert [admission.allow(admission.rate_key(h), 0.0) for h in hosts] == [True, True, False]
    # The next /64 is someone else.
    assert admission.allow(admission.rate_key("2001:db8:1:3::1"), 0.0)
