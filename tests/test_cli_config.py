"""Config on the command line: the defaults as TOML, and serve's field flags."""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path

import pytest
from clihelp import run, serve, stop

from trio_kad import Config
from trio_kad._cli_config import (
    COMMON_FIELDS,
    SERVE_DEFAULTS,
    add_config_flags,
    config_from_args,
    defaults_toml,
)
from trio_kad._config_file import ConfigFileError, load_config


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_flags(parser)
    return parser.parse_args(argv)


def test_the_defaults_round_trip_through_load_config(tmp_path: Path) -> None:
    path = tmp_path / "defaults.toml"
    path.write_text(defaults_toml())
    assert load_config(path) == Config()


def test_the_defaults_name_every_field_with_a_line_of_meaning() -> None:
    text = defaults_toml()
    table = tomllib.loads(text)
    for field in dataclasses.fields(Config):
        default = getattr(Config(), field.name)
        if default is None:
            assert f"# {field.name} = []" in text
            continue
        if field.name in SERVE_DEFAULTS:
            assert f"# {field.name} = true" in text
            continue
        assert table[field.name] == (list(default) if isinstance(default, tuple) else default)
        # The line before the value is the field's meaning, taken from its docstring.
        before = text.split(f"\n{field.name} = ")[0].splitlines()[-1]
        assert before.startswith("# ") and len(before) > 10, field.name


def test_flags_apply_over_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("k = 8\nalpha = 2\nrefresh_interval = 60\n")
    serves = Config(handoff_on_exit=True)
    config = config_from_args(_args("--config", str(path), "--k", "12", "--rpc-timeout", "1.5"))
    assert config == serves.replace(k=12, alpha=2, refresh_interval=60, rpc_timeout=1.5)
    assert config_from_args(_args()) == serves
    assert config_from_args(_args("--max-value-size", "1000")) == serves.replace(
        max_value_size=1000
    )
    path.write_text("handoff_on_exit = false\n")
    assert config_from_args(_args("--config", str(path))) == Config()
    assert set(COMMON_FIELDS) >= {"k", "alpha", "max_value_size"}


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (("--k", "abc"), "--k"),
        (("--k", "2.5"), "--k"),
        (("--k", "0"), "k"),
        (("--alpha", "30"), "alpha"),
        (("--rpc-timeout", "-1"), "rpc_timeout"),
        (("--max-value-size", "99999999"), "max_value_size"),
    ],
)
def test_a_bad_flag_is_one_error_naming_it(argv: tuple[str, ...], named: str) -> None:
    with pytest.raises(ConfigFileError, match=named) as info:
        config_from_args(_args(*argv))
    assert "\n" not in str(info.value)


def test_config_defaults_command_prints_what_serve_accepts(tmp_path: Path) -> None:
    result = run("config", "--defaults", timeout=20)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "defaults.toml"
    path.write_text(result.stdout)
    assert load_config(path) == Config()
    with serve("--config", str(path), "--k", "10", "--alpha", "2") as server:
        assert stop(server) == 0


def test_serve_refuses_a_bad_flag_before_listening() -> None:
    result = run("serve", "--port", "0", "--alpha", "50", timeout=20)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "alpha" in lines[0] and "k" in lines[0], result.stderr
