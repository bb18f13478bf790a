"""The WAN model (pure) and a smoke run of benchmarks/wan.py."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_benchmarks import bench

from trio_kad._wan import (
    CORE_RTT,
    INITIAL_RTO,
    REGIONS,
    RTO_MARGIN,
    Site,
    WanModel,
    median_rtt,
)

MODEL = WanModel()
STILL = WanModel(jitter=0.0, loss=0.0)
"""No jitter, no loss: every delay is exact."""

seeds = st.integers(min_value=0, max_value=2**32)


def test_places_by_weight_and_is_seeded() -> None:
    sites = [MODEL.place(random.Random(7)) for _ in range(3)]
    assert sites[0] == sites[1] == sites[2]
    rng = random.Random(1)
    counts = [0] * len(REGIONS)
    for _ in range(10_000):
        counts[MODEL.place(rng).region] += 1
    for region, weight in enumerate(MODEL.weights):
        assert counts[region] / 10_000 == pytest.approx(weight, abs=0.02)


@given(seeds)
def test_rtt_bands(seed: int) -> None:
    rng = random.Random(seed)
    a, b = MODEL.place(rng), MODEL.place(rng)
    rtt = MODEL.rtt(a, b)
    assert rtt == MODEL.rtt(b, a)
    if a.region == b.region:
        assert 0.005 <= rtt <= 0.040
    else:
        assert 0.075 <= rtt <= 0.300


def test_core_table_is_symmetric_and_inter_continent_in_band() -> None:
    for a, row in enumerate(CORE_RTT):
        assert row[a] == 0
        for b, rtt in enumerate(row):
            assert rtt == CORE_RTT[b][a]
            assert a == b or 0.070 <= rtt <= 0.260


def test_one_way_is_half_the_rtt_plus_jitter() -> None:
    a, b = Site(0, 0.01), Site(3, 0.02)
    assert STILL.rtt(a, b) == pytest.approx(0.120)
    assert STILL.one_way(a, b, random.Random(0)) == pytest.approx(0.060)
    rng = random.Random(0)
    delays = [MODEL.one_way(a, b, rng) for _ in range(5000)]
    assert min(delays) >= 0.060
    # Exponential jitter, mean jitter * one way (10% of 60 ms).
    assert sum(delays) / len(delays) == pytest.approx(0.066, abs=0.0005)


def test_loss_rate_and_no_draw_without_loss() -> None:
    rng = random.Random(0)
    lost = sum(WanModel(loss=0.2).lost(rng) for _ in range(5000))
    assert lost / 5000 == pytest.approx(0.2, abs=0.02)
    rng, untouched = random.Random(5), random.Random(5)
    assert not STILL.lost(rng)
    assert rng.random() == untouched.random()


def test_handshake_and_trip() -> None:
    a, b = Site(1, 0.005), Site(1, 0.015)
    rng = random.Random(0)
    assert STILL.handshake(a, b, rng) == pytest.approx(0.020)
    assert STILL.trip(a, b, rng) == pytest.approx(0.010)
    assert STILL.trip(a, b, rng, fresh=True) == pytest.approx(0.030)
    # Without a handshake (as over UDP) a new connection's first message costs no more.
    udp = dataclasses.replace(STILL, handshake_rtts=0)
    assert udp.trip(a, b, rng, fresh=True) == pytest.approx(0.010)
    # A lost leg is resent after the retransmission timeout; at worst the connect never completes.
    lossy = dataclasses.replace(STILL, loss=0.5)
    handshakes = [lossy.handshake(a, b, rng) for _ in range(400)]
    assert None in handshakes
    assert any(h is not None and h == pytest.approx(INITIAL_RTO + 0.020) for h in handshakes)
    assert any(h is not None and h == pytest.approx(0.020) for h in handshakes)
    # A lost data segment is late, not gone: TCP resends it after RTT + 200 ms, doubling.
    rto = STILL.rtt(a, b) + RTO_MARGIN
    trips = [lossy.trip(a, b, rng) for _ in range(400)]
    assert 0.010 in [pytest.approx(t) for t in trips if t is not None]
    assert 0.010 + rto in [pytest.approx(t) for t in trips if t is not None]
    assert 0.010 + 3 * rto in [pytest.approx(t) for t in trips if t is not None]
    # Only a segment lost at every attempt never arrives.
    assert lossy.trip(a, b, _Unlucky()) is None


class _Unlucky(random.Random):
    """Every draw loses the segment."""

    def random(self) -> float:
        return 0.0


def test_hosts_are_public_and_spread() -> None:
    rng = random.Random(3)
    hosts = [MODEL.host(rng) for _ in range(1000)]
    assert all(ipaddress.ip_address(host).is_global for host in hosts)
    assert len({host.rsplit(".", 1)[0] for host in hosts}) > 990  # nearly one /24 each


def test_median_rtt() -> None:
    sites = [Site(0, 0.005), Site(0, 0.005), Site(0, 0.005)]
    assert median_rtt(STILL, sites, random.Random(0), 10) == pytest.approx(0.010)
    rng = random.Random(2)
    many = [MODEL.place(rng) for _ in range(2000)]
    assert 0.100 < median_rtt(MODEL, many, rng, 5000) < 0.250
    with pytest.raises(ValueError):
        median_rtt(MODEL, sites[:1], rng, 10)


@pytest.mark.parametrize(
    "change",
    [
        {"regions": ()},
        {"weights": (1.0,)},
        {"weights": (0.0,) * len(REGIONS)},
        {"weights": (-1.0,) + (1.0,) * (len(REGIONS) - 1)},
        {"core_rtt": ((0.1,) * len(REGIONS),) * len(REGIONS)},
        {"core_rtt": ((0.0,) * len(REGIONS),) * (len(REGIONS) - 1)},
        {"core_rtt": ((0.0,) * (len(REGIONS) - 1),) * len(REGIONS)},
        {"access": (0.02, 0.01)},
        {"jitter": -0.1},
        {"loss": 1.0},
        {"handshake_rtts": 2},
    ],
)
def test_validation(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(MODEL, **change)  # type: ignore[arg-type]


def test_asymmetric_core_is_refused() -> None:
    rows = [list(row) for row in CORE_RTT]
    rows[0][1] += 0.001
    with pytest.raises(ValueError):
        WanModel(core_rtt=tuple(tuple(row) for row in rows))


def test_wan_benchmark() -> None:
    data = bench("wan", "--nodes", "40", "--ops", "4", "--batch", "10", "--silent", "0,0.3")
    assert data["median_rtt_ms"] > 0
    phases = data["phases"]
    assert [phase["silent"] for phase in phases] == [0.0, 0.3]  # type: ignore[index]
    for phase in phases:  # type: ignore[attr-defined]
        for label in ("get_stored", "set", "get"):
            figures = phase[label]
            assert figures["ops"] == 4
            assert set(figures["latency"]["rtt_units"]) >= {"p50", "p95", "p99"}
            assert figures["rpcs_per_op"]["mean"] >= 0
    assert set(data["targets"]) == {  # type: ignore[arg-type]
        "get_p50_at_most_3_rtt",
        "get_p95_under_1s",
        "set_p50_under_1s",
        "silent_30_found_99",
        "silent_30_get_p95_under_2s",
    }
