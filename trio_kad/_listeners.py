"""Who listens to which key at a holder: the listener registry, containing no I/O.

A holder keeps one ``Listener`` per (key, listening node): where to push, when
it expires unless renewed, its push rate and the one pair waiting for its
turn. Every limit is a ``Config`` field: listeners in all, per key and per IP
group; pushes per second per listener. Over the rate a listener is not sent
every pair: the newest one waits in a single slot and replaces any older one
still waiting, so a slow or flooded listener costs the holder one pair, never
a queue. The Trio side (``_pushing``) sends what ``next_push`` hands it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._config import Config
from ._ids import Address
from ._limits import TokenBucket
from ._messages import Store


@dataclass(slots=True)
class Listener:
    """One node listening to one key here."""

    key: bytes
    node_id: bytes
    address: Address
    """Where its pushes go: the IP its LISTEN came from, and the port it listens on."""
    group: str
    """Its IP group for the per-IP limit ("" for an exempt host, counted nowhere)."""
    expires_at: float
    bucket: TokenBucket
    pending: Store | None = None
    """The newest pair not yet pushed to it."""
    sending: bool = False
    """A push task is working for it (started by ``offer``, ended by ``next_push``)."""
    dropped: bool = False
    client_only: bool = False
    """It does not listen: ``address`` is its connection's, reached over that connection only."""


@dataclass(slots=True)
class ListenerStatistics:
    """Counters of a holder's listener registry."""

    listeners: int = 0
    """Listeners held now."""
    listens_accepted: int = 0
    listens_refused: int = 0
    """LISTENs refused over a limit (answered OVERLOADED)."""
    pushes_sent: int = 0
    pushes_coalesced: int = 0
    """Pairs replaced in a listener's slot by a newer one before their turn."""
    listeners_dropped: int = 0
    """Listeners dropped for a failed or timed-out push, or a NOT_LISTENING answer."""


class Listeners:
    """The listeners of one holder, within ``Config``'s listener limits."""

    def __init__(self, config: Config) -> None:
        self._max = config.max_listeners
        self._max_per_key = config.max_listeners_per_key
        self._max_per_group = config.max_listeners_per_ip
        self._ttl = config.watch_listener_ttl
        self._rate = config.watch_push_rate
        self._burst = max(1.0, config.watch_push_rate)
        self._by_key: dict[bytes, dict[bytes, Listener]] = {}
        self._per_group: dict[str, int] = {}
        self._count = 0
        self.stats = ListenerStatistics()

    def __len__(self) -> int:
        return self._count

    def listen(
        self,
        key: bytes,
        node_id: bytes,
        address: Address,
        group: str,
        now: float,
        *,
        client_only: bool = False,
    ) -> Listener | None:
        """Add or renew ``node_id``'s listener for ``key``; ``None`` when over a limit.

        A renewal moves the listener to ``address`` (the connection it came
        over) and its group, and counts toward no limit it already counted in.
        """
        listeners = self._by_key.get(key)
        known = None if listeners is None else listeners.get(node_id)
        if known is not None and known.group != group and not self._room_in(group):
            # Moving to a full group: refused like a newcomer would be.
            self.stats.listens_refused += 1
            return None
        if known is not None:
            self._move(known, group)
            known.address = address
            known.client_only = client_only
            known.expires_at = now + self._ttl
            self.stats.listens_accepted += 1
            return known
        if self._count >= self._max:
            self.expire(now)
        if listeners is not None and len(listeners) >= self._max_per_key:
            self._expire_key(key, now)
        if (
            self._count >= self._max
            or (listeners is not None and len(listeners) >= self._max_per_key)
            or not self._room_in(group)
        ):
            self.stats.listens_refused += 1
            return None
        bucket = TokenBucket(self._rate, self._burst, now)
        listener = Listener(
            key, node_id, address, group, now + self._ttl, bucket, client_only=client_only
        )
        self._by_key.setdefault(key, {})[node_id] = listener
        self._count += 1
        self._count_group(group)
        self.stats.listeners = self._count
        self.stats.listens_accepted += 1
        return listener

    def _room_in(self, group: str) -> bool:
        return not group or self._per_group.get(group, 0) < self._max_per_group

    def _move(self, listener: Listener, group: str) -> None:
        if listener.group == group:
            return
        self._uncount_group(listener.group)
        self._count_group(group)
        listener.group = group

    def _count_group(self, group: str) -> None:
        if group:
            self._per_group[group] = self._per_group.get(group, 0) + 1

    def _uncount_group(self, group: str) -> None:
        if not group:
            return
        left = self._per_group[group] - 1
        if left:
            self._per_group[group] = left
        else:
            del self._per_group[group]

    def listening(self, key: bytes, now: float) -> list[Listener]:
        """The live listeners of ``key`` (expired ones are dropped on the way)."""
        self._expire_key(key, now)
        return list(self._by_key.get(key, {}).values())

    def offer(self, pair: Store, now: float) -> list[Listener]:
        """A newer pair of ``pair.key`` is held: put it in each listener's slot.

        Returns the listeners that need a push task started (those without one).
        """
        start = []
        for listener in self.listening(pair.key, now):
            if listener.pending is not None:
                self.stats.pushes_coalesced += 1
            listener.pending = pair
            if not listener.sending:
                listener.sending = True
                start.append(listener)
        return start

    def next_push(self, listener: Listener, now: float) -> Store | float | None:
        """What a listener's push task does next: send a pair, wait seconds, or end (None)."""
        if listener.dropped or listener.pending is None:
            listener.sending = False
            return None
        if not listener.bucket.take(now):
            tokens = listener.bucket.tokens(now)
            return max((1.0 - tokens) / self._rate, 1e-3)
        pair, listener.pending = listener.pending, None
        self.stats.pushes_sent += 1
        return pair

    def drop(self, listener: Listener) -> None:
        """Forget ``listener`` (its push failed, or it no longer listens)."""
        listeners = self._by_key.get(listener.key)
        if listeners is None or listeners.get(listener.node_id) is not listener:
            return
        self._remove(listener, listeners)
        self.stats.listeners_dropped += 1

    def _remove(self, listener: Listener, listeners: dict[bytes, Listener]) -> None:
        del listeners[listener.node_id]
        if not listeners:
            del self._by_key[listener.key]
        listener.dropped = True
        listener.pending = None
        self._uncount_group(listener.group)
        self._count -= 1
        self.stats.listeners = self._count

    def _expire_key(self, key: bytes, now: float) -> None:
        listeners = self._by_key.get(key)
        if listeners is None:
            return
        for listener in [lst for lst in listeners.values() if lst.expires_at <= now]:
            self._remove(listener, listeners)

    def expire(self, now: float) -> int:
        """Forget every listener not renewed in time; return how many."""
        before = self._count
        for key in list(self._by_key):
            self._expire_key(key, now)
        return before - self._count
