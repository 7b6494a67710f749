"""The bundled ``depth_maker``: each rule on hand-built books, then minutes of the simulator's market."""

from __future__ import annotations

import math
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from botframe.events import BookHealth, HealthReason, Side
from botframe.testing import SimulatedMarket, StrategyHarness, book, delta, trade
from botframe_strategies.depth_maker import DepthMakerSettings, DepthMakerStrategy

REPO = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, Any] = {
    "symbols": ["BTC/USDT"], "base_half_spread_bps": 1.0, "vol_multiplier": 0.0, "order_qty": "0.001",
    "max_position": "0.005", "depth_band_bps": 50.0, "min_depth_notional": 200.0,
    "requote_threshold_bps": 0.5,
}

# Microprice (100.00 x 1 + 100.02 x 3) / 4 = 100.015; bid notional within 50 bps 499.98, ask 300.08.
BOOK = book("BTC/USDT", bids=[(100.00, 3), (99.99, 2)], asks=[(100.02, 1), (100.03, 2)])


def harness(**overrides: Any) -> StrategyHarness[DepthMakerStrategy]:
    return StrategyHarness(DepthMakerStrategy, {**SETTINGS, **overrides}, name="depth_maker")


def quotes(h: StrategyHarness[DepthMakerStrategy]) -> list[tuple[Side, Decimal | None, Decimal]]:
    return sorted((o.side, o.price, o.quantity) for o in h.open_orders())


def test_quotes_both_sides_around_the_microprice_post_only() -> None:
    h = harness()

    h.feed(BOOK)

    # 100.015 -/+ 1 bps = 100.00499 / 100.02500, rounded away from the microprice to the tick.
    assert quotes(h) == [(Side.BUY, Decimal("100.00"), Decimal("0.001")),
                         (Side.SELL, Decimal("100.03"), Decimal("0.001"))]
    assert all(i.post_only for i in h.intents)


def test_a_long_position_shrinks_the_bid_and_grows_the_ask() -> None:
    h = harness()
    h.feed(BOOK)

    h.feed(trade("BTC/USDT", 100.00, 10, "sell"))  # eats the 3 ahead of our bid, then fills it
    h.feed(delta("BTC/USDT", bids=[(99.99, 2.5)]), delta("BTC/USDT", bids=[(99.99, 2)]))

    assert h.position("BTC/USDT") == Decimal("0.001")
    # q = 0.001 / 0.005 = 0.2: bid 0.001 x 0.8, ask 0.001 x 1.2.
    assert quotes(h) == [(Side.BUY, Decimal("100.00"), Decimal("0.0008")),
                         (Side.SELL, Decimal("100.03"), Decimal("0.0012"))]


def test_at_the_position_limit_only_the_reducing_side_is_quoted() -> None:
    h = harness(max_position="0.001")
    h.feed(BOOK)

    h.feed(trade("BTC/USDT", 100.00, 10, "sell"))
    h.feed(delta("BTC/USDT", bids=[(99.99, 2.5)]), delta("BTC/USDT", bids=[(99.99, 2)]))

    assert h.position("BTC/USDT") == Decimal("0.001")
    assert quotes(h) == [(Side.SELL, Decimal("100.03"), Decimal("0.002"))]  # 0.001 x 2: short 0.001 at most


def test_volatility_widens_the_spread() -> None:
    h = harness(vol_multiplier=1.0, vol_sample_ms=1000, vol_halflife_secs=1.0)
    h.feed(BOOK)
    calm = quotes(h)

    h.advance(1.0)  # first sample of the mid: 100.01
    h.feed(book("BTC/USDT", bids=[(100.10, 3), (100.09, 2)], asks=[(100.12, 1), (100.13, 2)], at_ms=1500))
    h.advance_to(h.clock.time_ns() + 500_000_000)  # second sample: 100.11
    h.feed(delta("BTC/USDT", bids=[(100.09, 2.5)]), delta("BTC/USDT", bids=[(100.09, 2)]))

    move_bps = math.log(100.11 / 100.01) * 1e4
    assert h.strategy.sigma_bps("BTC/USDT") == pytest.approx(math.sqrt(0.5 * move_bps**2))
    bid, ask = (q[1] for q in quotes(h))
    assert bid is not None and ask is not None and calm[0][1] is not None and calm[1][1] is not None
    assert ask - bid > 5 * (calm[1][1] - calm[0][1])


def test_a_small_move_of_the_microprice_keeps_the_quotes() -> None:
    h = harness()
    h.feed(BOOK)

    h.feed(delta("BTC/USDT", bids=[(100.00, 3.2)]))  # the microprice moves by about 0.05 bps

    assert len(h.intents) == 2


def test_thin_depth_within_the_band_pulls_both_quotes_until_it_returns() -> None:
    h = harness()
    h.feed(BOOK)

    h.feed(delta("BTC/USDT", bids=[(100.00, 1), (99.99, 0)]))  # bid notional 100 < 200
    pulled = quotes(h)
    h.feed(delta("BTC/USDT", bids=[(99.99, 2)]))

    assert pulled == []
    assert [q[0] for q in quotes(h)] == [Side.BUY, Side.SELL]


def test_a_book_that_is_not_live_pulls_the_quotes() -> None:
    h = harness()
    h.feed(BOOK)

    h.set_health("BTC/USDT", BookHealth.RESYNCING, HealthReason.GAP)

    assert quotes(h) == []
    assert h.summary().orders_by_status == {"cancelled": 2}


def test_the_example_config_section_is_valid_once_uncommented() -> None:
    text = (REPO / "config.example.toml").read_text()
    start = text.index("# [strategies.depth_maker]")
    lines = text[start:].split("\n\n", 1)[0].splitlines()
    section = tomllib.loads("\n".join(line.removeprefix("# ") for line in lines))

    settings = DepthMakerSettings.model_validate(section["strategies"]["depth_maker"])

    assert settings.symbols == ["ETH/USDT"]


SIM_SETTINGS: dict[str, Any] = {
    "symbols": ["BTC/USDT", "ETH/USDT"], "base_half_spread_bps": 0.01, "order_qty": "0.01",
    "max_position": "0.03", "depth_band_bps": 1.0, "min_depth_notional": 5000.0, "requote_threshold_bps": 0.1,
}


def run_minutes(minutes: float) -> StrategyHarness[DepthMakerStrategy]:
    config = tomllib.loads((REPO / "config.example.toml").read_text())
    market = SimulatedMarket(["BTC/USDT", "ETH/USDT"], seed=42)
    h = StrategyHarness(DepthMakerStrategy, SIM_SETTINGS, name="depth_maker", instruments=market.instruments,
                        paper=config["executors"]["paper"], risk=config["risk"])
    h.play(market.events(minutes * 60))
    h.stop()
    return h


def test_five_simulated_minutes_make_markets_within_the_limits_and_repeat_exactly() -> None:
    first, second = run_minutes(5), run_minutes(5)
    summary = first.summary()

    assert summary.fills > 50 and summary.maker_fills == summary.fills
    assert set(summary.volume) == {"BTC/USDT", "ETH/USDT"}
    assert all(held <= Decimal("0.03") for held in summary.max_abs_position.values())
    assert summary.errors == 0 and summary.denials_by_code == {}
    assert summary.orders_by_status.keys() <= {"filled", "cancelled"}
    assert second.summary() == summary
