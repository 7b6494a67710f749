"""The plugin system: entry points, paths, disabling, duplicate names, and `botframe plugins`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from botframe import hookspecs
from botframe.cli import main
from botframe.hookspecs import hookimpl
from botframe.plugins import DuplicateRegistrationError, PluginError, PluginSystem, Registry

THIRD_PARTY = '''
from pydantic import BaseModel
from botframe.hookspecs import hookimpl
from botframe.strategy import Strategy, StrategySettings


class EchoSettings(StrategySettings):
    pass


class Echo(Strategy[EchoSettings]):
    Settings = EchoSettings


@hookimpl
def botframe_register_strategies(registry):
    registry.add("echo", Echo, EchoSettings)
'''


@pytest.fixture
def third_party_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed-looking distribution: a module plus a dist-info declaring a `botframe` entry point."""
    (tmp_path / "botframe_echo.py").write_text(THIRD_PARTY)
    info = tmp_path / "botframe_echo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: botframe-echo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[botframe]\necho = botframe_echo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_third_party_entry_point_plugin_is_loaded_and_registers_its_strategy(third_party_dist: Path) -> None:
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugins.discover()

    entry = plugins.strategies.get("echo")
    assert entry is not None
    assert entry.plugin == "echo"
    info = plugins.infos["echo"]
    assert info.source == "entry point"
    assert info.enabled
    assert "strategy echo" in info.registers


def test_bundled_plugins_come_from_entry_points_and_say_so() -> None:
    plugins = PluginSystem()
    plugins.load_entry_points()
    infos = {i.name: i for i in plugins.plugin_infos()}

    assert infos["binance"].source == "bundled"
    assert "venue binance" in infos["binance"].registers
    assert "executor paper" in infos["paper"].registers
    assert "service sim" in infos["sim"].registers
    assert "strategy imbalance" in infos["strategies"].registers
    assert "risk check price_band" in infos["risk_limits"].registers


def test_botframe_plugins_command_lists_third_party_plugin(third_party_dist: Path) -> None:
    out = io.StringIO()

    code = main(["plugins"], out=out)

    text = out.getvalue()
    assert code == 0
    assert "echo" in text and "entry point" in text and "strategy echo" in text
    assert "bundled" in text


def test_disable_env_keeps_plugin_listed_but_not_loaded(third_party_dist: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTFRAME_DISABLE_PLUGINS", "echo, sim")
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugins.discover()

    assert plugins.strategies.get("echo") is None
    assert plugins.services.get("sim") is None
    assert plugins.infos["echo"].enabled is False
    assert plugins.infos["sim"].enabled is False


def test_plugin_file_named_by_path_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "my_plugin.py"
    path.write_text(THIRD_PARTY)
    plugins = PluginSystem()

    name = plugins.load_path("my_plugin.py", base_dir=tmp_path)
    plugins.discover()

    assert name == "my_plugin"
    assert plugins.infos["my_plugin"].source == "path"
    assert plugins.strategies.get("echo") is not None


def test_missing_plugin_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="does not exist"):
        PluginSystem().load_path("nope.py", base_dir=tmp_path)


class _Model(BaseModel):
    x: int = 1


class _VenueA:
    @hookimpl
    def botframe_register_venues(self, registry: Registry[Any]) -> None:
        registry.add("dup", object, _Model)


class _VenueB:
    @hookimpl
    def botframe_register_venues(self, registry: Registry[Any]) -> None:
        registry.add("dup", object, _Model)


def test_duplicate_registration_names_both_plugins() -> None:
    plugins = PluginSystem()
    plugins.register(_VenueA(), "a")
    plugins.register(_VenueB(), "b")
    try:
        with pytest.raises(DuplicateRegistrationError, match=r"'a'.*'b'|'b'.*'a'"):
            plugins.discover()
    finally:
        plugins.unregister("a")
        plugins.unregister("b")


def test_registry_rejects_a_settings_model_that_is_not_pydantic() -> None:
    registry: Registry[Any] = Registry("venue")
    with pytest.raises(PluginError, match="pydantic"):
        registry.add("x", object, dict)  # type: ignore[arg-type]


def test_every_hookspec_is_called_through_the_typed_facade() -> None:
    """The facade has a method for every non-discovery hook, so no core code needs pm.hook.*."""
    from botframe.plugins import Hooks

    specs = {name for name in dir(hookspecs) if name.startswith("botframe_")}
    discovery = {s for s in specs if s.startswith("botframe_register_")}
    facade = {f"botframe_{m}" for m in dir(Hooks) if not m.startswith("_")}
    assert specs - discovery <= facade

