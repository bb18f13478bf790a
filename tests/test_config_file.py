"""Config from a TOML file: every key a Config field, every mistake named in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_kad import Config
from trio_kad._config_file import ConfigFileError, config_from_table, load_config


def test_a_table_sets_the_fields_it_names_and_keeps_the_rest() -> None:
    config = config_from_table({"k": 8, "rpc_timeout": 1.5, "per_ip_exempt": ["10.0.0.0/8"]})
    assert (config.k, config.rpc_timeout, config.per_ip_exempt) == (8, 1.5, ("10.0.0.0/8",))
    assert config.alpha == Config().alpha
    assert config_from_table({}, Config(k=5)) == Config(k=5)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"nonsense": 1}, "nonsense"),
        ({"k": "eight"}, "k"),
        ({"k": 2.5}, "k"),
        ({"k": 0}, "k"),
        ({"rpc_timeout": True}, "rpc_timeout"),
        ({"per_ip_exempt": ["not a network"]}, "per_ip_exempt"),
        ({"k": {"nested": 1}}, "k"),
    ],
)
def test_a_bad_key_type_or_range_is_refused_by_name(table: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigFileError, match=named) as caught:
        config_from_table(table)
    assert "\n" not in str(caught.value)


def test_a_file_is_read_as_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("# a node of the test network\nk = 8\nrefresh_interval = 60.0\n")
    assert load_config(path) == Config(k=8, refresh_interval=60.0)


@pytest.mark.parametrize("text", ["k = \n", "k = 1\nk = 2\n", "\xff\n"])
def test_a_file_that_is_not_toml_names_itself(tmp_path: Path, text: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigFileError, match=r"broken\.toml"):
        load_config(path)


def test_a_missing_file_is_a_config_file_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"absent\.toml"):
        load_config(tmp_path / "absent.toml")
