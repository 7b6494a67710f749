"""config.example.toml stays true: it validates as-is, and so does each commented section once uncommented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botframe.plugins import PluginSystem
from botframe.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"


def _commented_sections() -> dict[str, str]:
    """Each commented ``# [kind.name]`` block, uncommented, by its table name."""
    blocks: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in EXAMPLE.read_text().splitlines():
        header = re.match(r"^# \[((?:venues|executors|strategies)\.[a-z_]+)\]", line)
        if header:
            current, lines = header.group(1), [line[2:]]
            blocks[current] = ""
        elif current is not None and line.startswith("# ") and "=" in line:
            lines.append(line[2:])
        else:
            if current is not None:
                blocks[current] = "\n".join(lines)
            current = None
    if current is not None:
        blocks[current] = "\n".join(lines)
    return blocks


def _plugins() -> PluginSystem:
    plugins = PluginSystem()
    plugins.load_entry_points()
    return plugins


def test_example_config_validates_as_it_is() -> None:
    settings = load_settings(EXAMPLE, _plugins())

    assert settings.mode.value == "paper"
    assert settings.enabled_services() == ["sim"]


def test_every_venue_has_a_commented_section() -> None:
    sections = _commented_sections()

    for venue in ("kraken", "okx", "bitfinex", "coinbase", "bybit", "ccxt"):
        assert f"venues.{venue}" in sections
    assert "executors.ccxt" in sections


@pytest.mark.parametrize("table", sorted(_commented_sections()))
def test_each_commented_section_validates_once_uncommented(tmp_path: Path, table: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(EXAMPLE.read_text() + "\n" + _commented_sections()[table] + "\n")

    settings = load_settings(config, _plugins())

    kind, name = table.split(".")
    assert settings.section(kind, name) is not None
