"""A seeded wide-area network model for the in-memory network: regions, RTTs, jitter, loss.

Pure: every draw comes from the ``random.Random`` the caller passes, so a
seeded simulation places nodes and delays messages the same way each run.

Each node gets a ``Site``: a region (drawn by population weight) and an
access delay, its last mile's share of every round trip. The round-trip time
of a pair is the core RTT between their regions plus both access delays:

- same region: no core RTT, and access delays uniform in 2.5-20 ms each, so
  5-40 ms for a pair;
- different regions: the core RTT of the table below (70-260 ms) plus 5-40 ms.

The core RTTs are rounded, representative medians between one major city per
region (New York, San Francisco, Sao Paulo, Frankfurt, Tokyo, Singapore,
Sydney), read from WonderNetwork's public city-to-city ping tables
(wondernetwork.com/pings, the successor of the WonderProxy measurements in
"Miles per Millisecond", 2011: New York-Fremont 77 ms, New York-Paris 78 ms,
Fremont-Sydney 176 ms, Paris-Milan 21 ms) and consistent with AWS's
inter-region figures (cloudping.co). The three longest routes (Sao Paulo to
Singapore about 330 ms, to Sydney about 310 ms, Frankfurt to Sydney about
290 ms) are capped at 260 ms so that, access included, an inter-continent
pair stays within 95-300 ms, the band the WAN targets are stated for.

Every message travels half its pair's RTT plus jitter (exponential, mean
``jitter`` times that half), and each of its segments is lost with
probability ``loss``. As over TCP, a lost segment is late, not gone: it is
resent after the retransmission timeout, the pair's RTT plus Linux's 200 ms
floor on the margin, doubling at each further loss, and only after
``DATA_ATTEMPTS`` losses in a row is the message gone. A new connection's
handshake costs one more RTT (a lost handshake leg is resent after TCP's
initial 1 s retransmission timeout, doubling, RFC 6298).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

REGIONS: tuple[str, ...] = (
    "north-america-east",
    "north-america-west",
    "south-america",
    "europe",
    "asia-east",
    "asia-southeast",
    "oceania",
)
"""The regions nodes are placed in, one representative city each (see the module docstring)."""

WEIGHTS: tuple[float, ...] = (0.18, 0.12, 0.06, 0.32, 0.14, 0.12, 0.06)
"""Share of the nodes in each region: roughly where public DHT peers are (Europe first)."""

_CORE_MS: dict[tuple[int, int], float] = {
    (0, 1): 70,  # New York - San Francisco
    (0, 2): 115,  # New York - Sao Paulo
    (0, 3): 90,  # New York - Frankfurt
    (0, 4): 160,  # New York - Tokyo
    (0, 5): 220,  # New York - Singapore
    (0, 6): 200,  # New York - Sydney
    (1, 2): 170,  # San Francisco - Sao Paulo
    (1, 3): 145,  # San Francisco - Frankfurt
    (1, 4): 105,  # San Francisco - Tokyo
    (1, 5): 170,  # San Francisco - Singapore
    (1, 6): 140,  # San Francisco - Sydney
    (2, 3): 190,  # Sao Paulo - Frankfurt
    (2, 4): 255,  # Sao Paulo - Tokyo
    (2, 5): 260,  # Sao Paulo - Singapore (measured about 330, capped)
    (2, 6): 260,  # Sao Paulo - Sydney (measured about 310, capped)
    (3, 4): 225,  # Frankfurt - Tokyo
    (3, 5): 160,  # Frankfurt - Singapore
    (3, 6): 260,  # Frankfurt - Sydney (measured about 290, capped)
    (4, 5): 70,  # Tokyo - Singapore
    (4, 6): 110,  # Tokyo - Sydney
    (5, 6): 95,  # Singapore - Sydney
}


def _core_table() -> tuple[tuple[float, ...], ...]:
    """The symmetric core RTT matrix of ``REGIONS``, in seconds (zero within a region)."""
    size = len(REGIONS)
    rows = [[0.0] * size for _ in range(size)]
    for (a, b), ms in _CORE_MS.items():
        rows[a][b] = rows[b][a] = ms / 1000
    return tuple(tuple(row) for row in rows)


CORE_RTT: tuple[tuple[float, ...], ...] = _core_table()
"""Round-trip seconds between the regions' core networks, ``CORE_RTT[a][b]``."""

INITIAL_RTO = 1.0
"""Seconds before TCP resends an unanswered handshake segment (RFC 6298, section 2.1)."""

HANDSHAKE_ATTEMPTS = 4
"""Handshake segments sent before a connect gives up (the caller's timeout comes first)."""

RTO_MARGIN = 0.2
"""Seconds a retransmission timeout adds to the RTT on an open connection (Linux's floor)."""

DATA_ATTEMPTS = 6
"""Sends of a data segment before the model gives it up (the caller's timeout comes first)."""


@dataclass(frozen=True, slots=True)
class Site:
    """Where one node sits: its region and its access link's share of every RTT."""

    region: int
    """Index into the model's ``regions``."""
    access: float
    """Seconds this node's last mile adds to every round trip it takes part in."""


@dataclass(frozen=True, slots=True)
class WanModel:
    """Per-pair round-trip times, jitter and loss for nodes placed in regions.

    The defaults are the model the module docstring describes; every field
    may be replaced (``dataclasses.replace``) to study another network.
    """

    regions: tuple[str, ...] = REGIONS
    """Region names."""
    weights: tuple[float, ...] = WEIGHTS
    """Relative share of the nodes placed in each region."""
    core_rtt: tuple[tuple[float, ...], ...] = CORE_RTT
    """Symmetric matrix of round-trip seconds between regions (zero on the diagonal)."""
    access: tuple[float, float] = (0.0025, 0.020)
    """Range (seconds) a node's access delay is drawn from, uniformly."""
    jitter: float = 0.1
    """Mean extra delay of a message, as a fraction of its one-way delay (exponential)."""
    loss: float = 0.005
    """Probability that one message (request or reply) is lost."""
    handshake_rtts: int = 1
    """Round trips a new connection costs before its first request: 1 for TCP; 0 models
    a transport whose first packet carries the request (UDP, as Mainline DHT uses)."""

    def __post_init__(self) -> None:
        size = len(self.regions)
        if size == 0 or len(self.weights) != size or len(self.core_rtt) != size:
            raise ValueError("regions, weights and core_rtt must have one entry per region")
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError("weights must be >= 0 and not all zero")
        for a, row in enumerate(self.core_rtt):
            if len(row) != size or row[a] != 0:
                raise ValueError("core_rtt must be square with a zero diagonal")
            for b, rtt in enumerate(row):
                if rtt < 0 or rtt != self.core_rtt[b][a]:
                    raise ValueError("core_rtt must be symmetric and >= 0")
        low, high = self.access
        if not 0 <= low <= high:
            raise ValueError("access must be a range 0 <= low <= high")
        if self.jitter < 0:
            raise ValueError("jitter must be >= 0")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss must be in [0, 1)")
        if self.handshake_rtts not in (0, 1):
            raise ValueError("handshake_rtts must be 0 or 1")

    def place(self, rng: random.Random) -> Site:
        """A new node's site: a region by weight, an access delay in ``access``."""
        (region,) = rng.choices(range(len(self.regions)), weights=self.weights)
        return Site(region, rng.uniform(*self.access))

    def host(self, rng: random.Random) -> str:
        """A random public-looking IPv4 address for a simulated node (one /24 of 2**24).

        Distinct nodes then sit in distinct subnets, as peers across the
        internet mostly do, so the per-IP limits and the subnet-diversity cap
        apply as for nodes on public addresses. Never contacted: the
        in-memory network only uses it as a name.
        """
        # 20.0.0.0-99.255.255.255 holds no special-purpose block (RFC 6890).
        octets = (rng.randrange(20, 100), rng.randrange(256), rng.randrange(256))
        return ".".join(map(str, octets)) + f".{rng.randrange(1, 255)}"

    def rtt(self, a: Site, b: Site) -> float:
        """The round-trip seconds between ``a`` and ``b`` without jitter."""
        # Access delays summed first: the same float either way round.
        return self.core_rtt[a.region][b.region] + (a.access + b.access)

    def one_way(self, a: Site, b: Site, rng: random.Random) -> float:
        """Seconds one message from ``a`` to ``b`` takes: half the RTT plus jitter."""
        half = self.rtt(a, b) / 2
        if self.jitter and half:
            # No draw without jitter, so such a model's other draws do not shift.
            half += rng.expovariate(1.0 / (self.jitter * half))
        return half

    def lost(self, rng: random.Random) -> bool:
        """Whether one message is lost (no draw when ``loss`` is zero)."""
        return bool(self.loss) and rng.random() < self.loss

    def trip(self, a: Site, b: Site, rng: random.Random, *, fresh: bool = False) -> float | None:
        """Seconds one message from ``a`` to ``b`` takes, ``None`` when it never arrives.

        On a ``fresh`` connection the handshake comes first (``handshake``). A
        lost segment costs a retransmission timeout, doubling (TCP resends it).
        """
        delay = self.one_way(a, b, rng)
        for _ in range(self.handshake_rtts if fresh else 0):
            handshake = self.handshake(a, b, rng)
            if handshake is None:
                return None
            delay += handshake
        timeout = self.rtt(a, b) + RTO_MARGIN
        for _ in range(DATA_ATTEMPTS):
            if not self.lost(rng):
                return delay
            delay += timeout
            timeout *= 2
        return None

    def handshake(self, a: Site, b: Site, rng: random.Random) -> float | None:
        """Seconds a new connection from ``a`` to ``b`` takes before its first request.

        One round trip, plus a retransmission timeout for each lost leg.
        ``None`` when every attempt is lost (the connect never completes).
        """
        waited = 0.0
        timeout = INITIAL_RTO
        for _ in range(HANDSHAKE_ATTEMPTS):
            if not (self.lost(rng) or self.lost(rng)):
                return waited + self.one_way(a, b, rng) + self.one_way(b, a, rng)
            waited += timeout
            timeout *= 2
        return None


def median_rtt(model: WanModel, sites: Sequence[Site], rng: random.Random, pairs: int) -> float:
    """The median RTT (seconds, no jitter) over ``pairs`` random pairs of distinct ``sites``."""
    if len(sites) < 2 or pairs < 1:
        raise ValueError("need at least two sites and one pair")
    samples = []
    for _ in range(pairs):
        a, b = rng.sample(range(len(sites)), 2)
        samples.append(model.rtt(sites[a], sites[b]))
    # Not statistics.median: importing that module (fractions, decimal) measurably slows
    # every in-memory request of a process, WAN model or not.
    samples.sort()
    middle = len(samples) // 2
    return (samples[middle] + samples[~middle]) / 2
