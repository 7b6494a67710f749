"""Both bundled strategies in a real run: simulator on 127.0.0.1 -> Binance plugin -> engine -> paper.

The harness runs over the simulator's model prove the strategies deterministic; this run proves the
same code trades through the real stream, engine, risk gate and paper executor and keeps its limits.
Its interleaving over a live WebSocket is not bit-for-bit repeatable, so it asserts rules, not figures.
"""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from botframe.engine import Engine
from botframe.events import Fill
from botframe.hookspecs import hookimpl
from botframe.plugins import PluginSystem
from botframe.settings import load_settings

CONFIG = """
duration_secs = 60          # a safety cap: the observer stops the run once both strategies traded

[journal]
enabled = false

[services.sim]
enabled = true
seed = 42
speed = 10.0                # ten simulated seconds per second

[venues.binance]
symbols = ["BTC/USDT", "ETH/USDT"]

[strategies.imbalance]
symbols = ["BTC/USDT"]
order_qty = "0.01"
max_position = "0.03"
cooldown_ms = 200

[strategies.depth_maker]
symbols = ["ETH/USDT"]
base_half_spread_bps = 0.01
order_qty = "0.01"
max_position = "0.03"
depth_band_bps = 1.0
min_depth_notional = 5000.0
requote_threshold_bps = 0.1

[risk]
stale_after_ms = 60000
"""

LIMITS = {"BTC/USDT": Decimal("0.03"), "ETH/USDT": Decimal("0.03")}


class Referee:
    """Counts each strategy's fills and the largest position held, and stops the run when both traded."""

    def __init__(self, fills_each: int) -> None:
        self.fills_each = fills_each
        self.engine: Any = None
        self.fills: dict[str, int] = {}
        self.liquidity: dict[str, set[str]] = {}
        self.max_abs_position: dict[str, Decimal] = {}

    @hookimpl
    def botframe_startup(self, engine: Any) -> None:
        self.engine = engine

    @hookimpl
    def botframe_on_fill(self, fill: Fill) -> None:
        order = self.engine.orders.get(fill.client_order_id)
        self.fills[order.strategy] = self.fills.get(order.strategy, 0) + 1
        self.liquidity.setdefault(order.strategy, set()).add(fill.liquidity)
        held = abs(self.engine.portfolio.position(fill.venue, fill.symbol))
        self.max_abs_position[fill.symbol] = max(held, self.max_abs_position.get(fill.symbol, Decimal(0)))
        if len(self.fills) == 2 and min(self.fills.values()) >= self.fills_each:
            self.engine.request_stop()


async def test_both_bundled_strategies_trade_against_the_simulator_within_their_limits(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    plugins = PluginSystem()
    plugins.load_entry_points()
    referee = Referee(fills_each=5)
    plugins.register(referee, "referee")
    engine = Engine(load_settings(config, plugins), plugins, out=io.StringIO(), live_view=False)

    summary = await engine.run()

    assert not summary.failed
    assert summary.strategy_errors == {"imbalance": 0, "depth_maker": 0}
    assert referee.fills.get("imbalance", 0) >= 5 and referee.fills.get("depth_maker", 0) >= 5
    for symbol, held in referee.max_abs_position.items():
        assert held <= LIMITS[symbol], f"{symbol} reached {held}"
    assert referee.liquidity == {"imbalance": {"taker"}, "depth_maker": {"maker"}}
    assert engine.orders.open_count() == 0
