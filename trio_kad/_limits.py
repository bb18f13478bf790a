"""Rate limits as pure state: a token bucket and a bounded table of them, one per key.

No clock reads here: every call takes ``now`` (seconds, any monotonic origin),
so the transport passes ``trio.current_time()`` and tests pass plain numbers.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RateLimiter", "TokenBucket"]

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
