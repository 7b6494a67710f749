"""The whole path: simulator on 127.0.0.1 -> Binance plugin -> book -> strategy -> risk -> paper -> portfolio."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sim_config import sim_trading_config

from botframe.engine import Engine
from botframe.events import BookHealth, FeedStatus, Fill, OrderUpdate
from botframe.hookspecs import hookimpl
from botframe.plugins import PluginSystem
from botframe.settings import load_settings

REPO = Path(__file__).resolve().parents[1]

CONFIG = sim_trading_config(seed=7, latency_ms=0, head="""
duration_secs = 120          # a safety cap only: the test plugin stops the run after enough fills

[journal]
path = "journal.sqlite"
""")


class StopAfterFills:
    """A real plugin observing the run through the observation hooks; stops it after enough fills."""

    def __init__(self, fills_wanted: int) -> None:
        self.fills_wanted = fills_wanted
        self.engine: Any = None
        self.fills: list[Fill] = []
        self.updates: list[OrderUpdate] = []
        self.statuses: list[FeedStatus] = []
        self.shutdown_called = False

    @hookimpl
    def botframe_startup(self, engine: Any) -> None:
        self.engine = engine

    @hookimpl
    def botframe_shutdown(self, engine: Any) -> None:
        self.shutdown_called = True

    @hookimpl
    def botframe_on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)
        if len(self.fills) >= self.fills_wanted:
            self.engine.request_stop()

    @hookimpl
    def botframe_on_order_update(self, update: OrderUpdate) -> None:
        self.updates.append(update)

    @hookimpl
    def botframe_on_feed_status(self, status: FeedStatus) -> None:
        self.statuses.append(status)


@pytest.mark.parametrize("transport", ["websockets", "picows"])
async def test_full_path_trades_and_pnl_adds_up(tmp_path: Path, transport: str) -> None:
    config = tmp_path / "config.toml"
    # The whole path over either WebSocket client ([venues.binance] transport).
    config.write_text(CONFIG.replace("[venues.binance]\n", f'[venues.binance]\ntransport = "{transport}"\n'))
    plugins = PluginSystem()
    plugins.load_entry_points()
    observer = StopAfterFills(fills_wanted=6)
    plugins.register(observer, "observer")
    settings = load_settings(config, plugins)
    engine = Engine(settings, plugins, out=io.StringIO(), live_view=False)

    summary = await engine.run()

    assert not summary.failed
    client = engine._venue_clients["binance"][0]
    assert [c.stream.transport for c in client._connections] == [transport]  # the client the config chose
    assert len(observer.fills) >= 6, "the strategy traded and the paper executor filled"
    assert observer.shutdown_called
    assert any(s.health is BookHealth.LIVE for s in observer.statuses)
    assert summary.messages > 0 and summary.events > 0
    assert summary.orders_by_status.get("filled", 0) >= 1
    # Position equals the signed sum of fills.
    signed = sum((f.quantity * f.side.sign for f in observer.fills), Decimal(0))
    assert engine.portfolio.position("binance", "BTC/USDT") == signed
    # The accounting identity, exact: cash + position x mark == start + realized + unrealized - fees.
    mark = engine.portfolio.mark_price("binance", "BTC/USDT")
    assert mark is not None
    cash = engine.portfolio.cash("USDT")
    total = engine.portfolio.pnl(None, None)
    assert cash + signed * mark == Decimal("10000") + total.realized + total.unrealized - total.fees
    assert total.fees == sum((f.fee for f in observer.fills), Decimal(0))
    assert summary.fees == total.fees
    # Everything the run did is in the journal.
    assert (tmp_path / "journal.sqlite").is_file()


def test_botframe_run_example_config_as_a_subprocess_exits_0_with_a_summary(tmp_path: Path) -> None:
    env = {**os.environ, "BOTFRAME_JOURNAL__PATH": str(tmp_path / "journal.sqlite")}

    proc = subprocess.run(
        [sys.executable, "-m", "botframe.cli", "run", str(REPO / "config.example.toml"), "--duration", "5"],
        capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "botframe run summary" in proc.stdout
    assert "messages processed:" in proc.stdout
    assert "BTC/USDT" in proc.stdout and "live" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_live_mode_without_the_live_flag_refuses_to_start(tmp_path: Path) -> None:
    env = {**os.environ, "BOTFRAME_MODE": "live"}

    proc = subprocess.run(
        [sys.executable, "-m", "botframe.cli", "run", str(REPO / "config.example.toml"), "--duration", "1"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )

    assert proc.returncode == 2
    assert "--live" in proc.stderr


def test_live_flag_without_live_mode_refuses_to_start(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "botframe.cli", "run", str(REPO / "config.example.toml"), "--live"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )

    assert proc.returncode == 2
    assert 'mode = "live"' in proc.stderr
