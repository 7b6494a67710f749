"""Configuration mistakes stop start-up with a message naming the key, what is wrong and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from botframe.hookspecs import hookimpl
from botframe.plugins import PluginSystem, Registry
from botframe.settings import ConfigError, Mode, load_settings
from botframe.strategy import Strategy, StrategySettings


class _VenueSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ws_url: str = "simulator"
    symbols: list[str] = ["BTC/USDT"]


class _StratSettings(StrategySettings):
    threshold: float = 0.5


class _Strat(Strategy[_StratSettings]):
    Settings = _StratSettings


class _ExecSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    taker_fee_bps: float = 10.0


class _TestPlugin:
    @hookimpl
    def botframe_register_venues(self, registry: Registry[Any]) -> None:
        registry.add("testvenue", object, _VenueSettings)

    @hookimpl
    def botframe_register_strategies(self, registry: Registry[Any]) -> None:
        registry.add("teststrat", _Strat, _StratSettings)

    @hookimpl
    def botframe_register_executors(self, registry: Registry[Any]) -> None:
        registry.add("paper", object, _ExecSettings)


GOOD = """
duration_secs = 3

[venues.testvenue]
symbols = ["BTC/USDT"]

[strategies.teststrat]
venue = "testvenue"
symbols = ["BTC/USDT"]
threshold = 0.25
"""


@pytest.fixture
def plugins() -> PluginSystem:
    system = PluginSystem()
    system.register(_TestPlugin(), "testplugin")
    return system


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_good_config_validates_each_plugin_section_with_its_model(tmp_path: Path, plugins: PluginSystem) -> None:
    settings = load_settings(_write(tmp_path, GOOD), plugins)

    strat = settings.section("strategies", "teststrat")
    assert isinstance(strat, _StratSettings)
    assert strat.threshold == 0.25
    assert settings.mode is Mode.PAPER
    assert settings.duration_secs == 3


def test_unknown_key_names_the_table_the_key_and_the_allowed_keys(tmp_path: Path, plugins: PluginSystem) -> None:
    text = GOOD.replace("threshold = 0.25", "treshold = 0.25")

    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, text), plugins)

    msg = str(err.value)
    assert "[strategies.teststrat] treshold: unknown key" in msg
    assert "threshold" in msg.split("allowed keys:")[1]


def test_unknown_root_key_is_rejected_with_allowed_keys(tmp_path: Path, plugins: PluginSystem) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, "durration_secs = 3\n" + GOOD), plugins)

    assert "durration_secs: unknown key" in str(err.value)
    assert "duration_secs" in str(err.value)


def test_bad_type_names_the_key_and_the_value_given(tmp_path: Path, plugins: PluginSystem) -> None:
    text = GOOD.replace("threshold = 0.25", 'threshold = "high"')

    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, text), plugins)

    msg = str(err.value)
    assert "[strategies.teststrat] threshold:" in msg
    assert "'high'" in msg


def test_missing_venue_section_says_what_to_add(tmp_path: Path, plugins: PluginSystem) -> None:
    text = GOOD.replace('[venues.testvenue]\nsymbols = ["BTC/USDT"]\n', "")

    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, text), plugins)

    assert "no [venues.<name>] section" in str(err.value)
    assert "testvenue" in str(err.value)


def test_strategy_naming_an_unconfigured_venue_is_an_error(tmp_path: Path, plugins: PluginSystem) -> None:
    text = GOOD.replace('venue = "testvenue"', 'venue = "elsewhere"')

    with pytest.raises(ConfigError, match=r"\[strategies.teststrat\] venue = 'elsewhere'.*\[venues.elsewhere\]"):
        load_settings(_write(tmp_path, text), plugins)


def test_section_for_an_unregistered_plugin_lists_what_is_registered(tmp_path: Path,
                                                                    plugins: PluginSystem) -> None:
    with pytest.raises(ConfigError, match=r"\[venues.kraken\].*registered: testvenue"):
        load_settings(_write(tmp_path, GOOD + "\n[venues.kraken]\n"), plugins)


def test_missing_required_key_says_add_it(tmp_path: Path, plugins: PluginSystem) -> None:
    text = GOOD.replace('venue = "testvenue"\nsymbols = ["BTC/USDT"]\n', 'venue = "testvenue"\n')

    with pytest.raises(ConfigError, match=r"\[strategies.teststrat\] symbols: required key is missing"):
        load_settings(_write(tmp_path, text), plugins)


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path, plugins: PluginSystem) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(_write(tmp_path, "mode = \n"), plugins)


def test_environment_overrides_the_file(tmp_path: Path, plugins: PluginSystem,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTFRAME_DURATION_SECS", "7")

    settings = load_settings(_write(tmp_path, GOOD), plugins)

    assert settings.duration_secs == 7


def test_bad_config_exits_2_with_message_and_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "mode = \"paper\"\nbogus = 1\n")

    proc = subprocess.run([sys.executable, "-m", "botframe.cli", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)

    assert proc.returncode == 2
    assert "bogus: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr
