"""Config validates every field at construction."""

from __future__ import annotations

import dataclasses

import pytest

from trio_kad import Config

NETWORKS = ("diversity_exempt", "per_ip_exempt")
PRIVATE_RANGES = ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
FLAGS = [f.name for f in dataclasses.fields(Config) if f.type == "bool"]
NUMERIC = [f.name for f in dataclasses.fields(Config) if f.name not in (*NETWORKS, *FLAGS)]


def test_defaults_follow_the_paper() -> None:
    config = Config()
    assert (config.k, config.alpha) == (20, 3)
    assert config.refresh_interval == config.replicate_interval == 3600
    assert config.republish_interval == config.expire_interval == 86400
    assert config.max_frame_size == 1024 * 1024
    assert config.max_value_size == 64 * 1024


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("bad", [0, -1])
def test_every_number_must_be_positive(name: str, bad: int) -> None:
    with pytest.raises(ValueError, match=name):
        Config(**{name: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NUMERIC)
def test_every_number_must_be_a_number(name: str) -> None:
    with pytest.raises(TypeError, match=name):
        Config(**{name: True})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=name):
        Config(**{name: "3"})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", FLAGS)
def test_flags_must_be_true_or_false(name: str) -> None:
    assert getattr(Config(**{name: True}), name) is True  # type: ignore[arg-type]
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match=name):
            Config(**{name: bad})  # type: ignore[arg-type]


def test_int_fields_refuse_floats() -> None:
    with pytest.raises(TypeError, match="k"):
        Config(k=2.5)  # type: ignore[arg-type]


def test_cross_field_rules() -> None:
    with pytest.raises(ValueError, match="alpha"):
        Config(k=2, alpha=3)
    with pytest.raises(ValueError, match="max_frame_size"):
        Config(max_value_size=1024 * 1024)


@pytest.mark.parametrize("name", NETWORKS)
def test_exemptions_take_networks(name: str) -> None:
    config = Config(**{name: ("10.0.0.0/8", "fd00::/8")})  # type: ignore[arg-type]
    assert getattr(config, name)[0] == "10.0.0.0/8"
    with pytest.raises(ValueError, match=name):
        Config(**{name: ("not a network",)})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=name):
        Config(**{name: ["127.0.0.0/8"]})  # type: ignore[arg-type]


def test_replace_validates_again() -> None:
    assert Config().replace(k=5).k == 5
    with pytest.raises(ValueError):
        Config().replace(k=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().k = 3  # type: ignore[misc]


@pytest.mark.parametrize("name", NETWORKS)
def test_exemptions_follow_the_listening_host_unless_set(name: str) -> None:
    loopback = {
        "diversity_exempt": ("127.0.0.0/8", "::1/128"),
        "per_ip_exempt": ("127.0.0.1/32", "::1/128"),
    }
    assert getattr(Config(), name) is None  # decided by the host the node listens on
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.9"):
        assert getattr(Config().for_host(host), name) == loopback[name]
    for host in ("0.0.0.0", "::", "2606:4700::1", "dht.example.org"):
        assert getattr(Config().for_host(host), name) == ()
    # On a private address, the diversity cap spares private contacts (a LAN in one /24).
    private = {"diversity_exempt": PRIVATE_RANGES, "per_ip_exempt": ()}
    for host in ("10.0.0.1", "192.168.1.5", "fd00::7"):
        assert getattr(Config().for_host(host), name) == private[name]
    chosen = Config(**{name: ("10.0.0.0/8",)})  # type: ignore[arg-type]
    for host in ("127.0.0.1", "0.0.0.0"):
        assert getattr(chosen.for_host(host), name) == ("10.0.0.0/8",)
    resolved = Config().for_host("0.0.0.0")
    assert resolved.for_host("127.0.0.1") is resolved  # nothing left to decide


def test_lookup_bounds_and_paths_follow_k() -> None:
    assert Config(k=8, lookup_max_contacts=8, disjoint_paths=8).disjoint_paths == 8
    with pytest.raises(ValueError, match="lookup_max_contacts"):
        Config(k=30, lookup_max_contacts=20)
    with pytest.raises(ValueError, match="disjoint_paths"):
        Config(k=4, disjoint_paths=5)
    for name in ("lookup_max_rpcs", "lookup_max_contacts", "disjoint_paths"):
        with pytest.raises(ValueError, match=name):
            Config(**{name: 0})  # type: ignore[arg-type]


def test_a_listener_outlives_a_renewal_interval() -> None:
    with pytest.raises(ValueError, match="watch_listener_ttl"):
        Config(watch_renew_interval=60.0, watch_listener_ttl=60.0)
    assert Config(watch_renew_interval=10.0, watch_listener_ttl=11.0).watch_listener_ttl == 11.0
