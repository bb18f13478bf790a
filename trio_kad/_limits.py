"""Admission as pure state: token buckets, a bounded table of them, and a transport's limits.

No clock reads here: every call takes ``now`` (seconds, any monotonic origin),
so the transport passes ``trio.current_time()`` and tests pass plain numbers.
"""

from __future__ import annotations

from collections import OrderedDict

from ._address import ip_group
from ._config import Config
from ._diversity import NetworkSet

__all__ = ["Admission", "RateLimiter", "TokenBucket"]

_EPSILON = 1e-9


class TokenBucket:
    """Allows ``rate`` events per second on average and up to ``burst`` at once.

    The bucket starts full. Each allowed event takes one token; tokens come
    back at ``rate`` per second up to ``burst``.
    """

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"TokenBucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = self.burst
        self._updated = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (a fraction means the next one is on its way)."""
        # Brought up to ``now`` in place, so take() refills with the same arithmetic.
        # A clock that goes backwards (or a caller's stale ``now``) refills nothing.
        if now > self._updated:
            self._tokens += (now - self._updated) * self.rate
            self._updated = now
        if self._tokens > self.burst:
            self._tokens = self.burst
        return self._tokens

    def take(self, now: float) -> bool:
        """Take one token if there is one: True when the event is allowed."""
        # The epsilon forgives float rounding (0.1 * 10 refills 0.9999...), which
        # would otherwise refuse a caller arriving exactly on time.
        if self.tokens(now) >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            return True
        return False


class RateLimiter:
    """One ``TokenBucket`` per key (a remote IP), at most ``max_keys`` of them.

    The table itself must not become the resource an attacker exhausts: past
    ``max_keys`` the least recently seen key is forgotten. A forgotten key
    starts again with a full bucket, so the bound trades a little leniency
    toward keys not seen for a while for memory that cannot grow.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"RateLimiter needs max_keys >= 1, got {max_keys}")
        # Validate rate and burst once, here, rather than on first use.
        TokenBucket(rate, burst, 0.0)
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        # Insertion order is recency order: a key used is moved to the end.
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        """Count one event for ``key`` at ``now``: True when it is within the rate."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets


class Admission:
    """The decisions shared by every connection of one transport: per-IP rate, STOREs in flight.

    One token bucket per remote IP (``Config.request_rate_per_ip`` and
    ``request_burst_per_ip``), for at most ``Config.rate_tracked_ips`` IPs;
    hosts in ``Config.per_ip_exempt`` are never limited. At most
    ``Config.max_stores_in_flight`` requests are handled apart at once, over
    all connections: with 512 connections of 64 STOREs each, up to 1 MiB a
    frame, the per-connection limit alone would bound nothing useful.
    """

    __slots__ = ("_exempt", "_limiter", "_max_apart", "apart", "burst")

    def __init__(self, config: Config) -> None:
        self._limiter = RateLimiter(
            config.request_rate_per_ip, config.request_burst_per_ip, config.rate_tracked_ips
        )
        self._exempt = NetworkSet(config.per_ip_exempt)
        self.burst = config.request_burst_per_ip
        self._max_apart = config.max_stores_in_flight
        self.apart = 0
        """Requests being handled apart now, over every connection."""

    def begin_apart(self) -> bool:
        """Take a slot for one request handled apart; False when all are taken."""
        if self.apart >= self._max_apart:
            return False
        self.apart += 1
        return True

    def end_apart(self) -> None:
        """A request handled apart got its reply, or never will."""
        self.apart -= 1

    def exempt(self, ip: str) -> bool:
        """Whether ``ip`` is outside every per-IP limit."""
        return ip in self._exempt

    def rate_key(self, ip: str) -> str | None:
        """What requests from ``ip`` are charged to (its subnet group); None: exempt."""
        return None if ip in self._exempt else ip_group(ip)

    def allow(self, key: str | None, now: float) -> bool:
        """Charge one request to ``key`` (``rate_key``) at ``now``: True when within the rate."""
        return key is None or self._limiter.allow(key, now)
