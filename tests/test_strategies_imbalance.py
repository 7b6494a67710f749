"""The bundled ``imbalance`` taker: each rule on hand-built books, then minutes of the simulator's market."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from botframe.events import OrderStatus, Side, TimeInForce
from botframe.testing import SimulatedMarket, StrategyHarness, book
from botframe_strategies.imbalance import ImbalanceSettings, ImbalanceStrategy

REPO = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, Any] = {
    "symbols": ["BTC/USDT"], "entry_threshold": 0.4, "exit_threshold": 0.1, "order_qty": "0.01",
    "max_position": "0.02", "cooldown_ms": 0,
}

BID_HEAVY = book("BTC/USDT", bids=[(100.00, 5), (99.99, 3)], asks=[(100.01, 1), (100.02, 1)])
ASK_HEAVY = book("BTC/USDT", bids=[(100.00, 1), (99.99, 1)], asks=[(100.01, 5), (100.02, 3)])


def harness(**overrides: Any) -> StrategyHarness[ImbalanceStrategy]:
    return StrategyHarness(ImbalanceStrategy, {**SETTINGS, **overrides}, name="imbalance")


def test_buys_order_qty_as_an_ioc_limit_when_bids_outweigh_asks() -> None:
    h = harness()

    h.feed(BID_HEAVY)

    [intent] = h.intents
    assert (intent.side, intent.quantity, intent.time_in_force) == (Side.BUY, Decimal("0.01"), TimeInForce.IOC)
    assert intent.price == Decimal("100.06")  # 100.01 + 5 bps, rounded down to the tick
    assert [(f.price, f.quantity, f.liquidity) for f in h.fills] == [(Decimal("100.01"), Decimal("0.01"), "taker")]


def test_sells_when_asks_outweigh_bids() -> None:
    h = harness()

    h.feed(ASK_HEAVY)

    assert [(i.side, i.price) for i in h.intents] == [(Side.SELL, Decimal("99.95"))]
    assert h.position("BTC/USDT") == Decimal("-0.01")


def test_does_not_enter_unless_the_microprice_leans_far_enough() -> None:
    # The microprice of BID_HEAVY is about 0.33 bps above its mid.
    leaning = harness(microprice_edge_bps=0.3)
    not_enough = harness(microprice_edge_bps=0.5)

    leaning.feed(BID_HEAVY)
    not_enough.feed(BID_HEAVY)

    assert len(leaning.intents) == 1
    assert not_enough.intents == []


def test_size_far_from_the_touch_counts_less() -> None:
    # Equal size at the touch; a large bid 50 bps away.
    far_bids = book("BTC/USDT", bids=[(100.00, 1), (99.50, 100)], asks=[(100.01, 1), (100.02, 0.01)])
    near_weighted = harness(weight_halflife_bps=2.0)
    flat = harness(weight_halflife_bps=1000.0)

    near_weighted.feed(far_bids)
    flat.feed(far_bids)

    assert near_weighted.intents == []
    assert [i.side for i in flat.intents] == [Side.BUY]


def test_closes_a_long_when_the_imbalance_turns_below_minus_exit_threshold() -> None:
    h = harness()
    h.feed(BID_HEAVY)

    h.feed(book("BTC/USDT", bids=[(100.00, 4)], asks=[(100.01, 6)]))  # imbalance -0.2: no entry, an exit

    assert [(i.side, i.reduce_only) for i in h.intents] == [(Side.BUY, False), (Side.SELL, True)]
    assert h.position("BTC/USDT") == 0


def test_waits_the_cooldown_after_each_order() -> None:
    h = harness(cooldown_ms=1000)

    for at_ms in (0, 500, 999, 1000):
        h.feed(book("BTC/USDT", bids=[(100.00, 5)], asks=[(100.01, 1)], at_ms=at_ms))

    assert [i.ts_ns - h.intents[0].ts_ns for i in h.intents] == [0, 1_000_000_000]


def test_never_holds_more_than_max_position() -> None:
    h = harness()

    for at_ms in range(10):
        h.feed(book("BTC/USDT", bids=[(100.00, 5)], asks=[(100.01, 1)], at_ms=at_ms))

    assert h.position("BTC/USDT") == Decimal("0.02")
    assert len(h.intents) == 2


def test_has_at_most_one_order_in_flight_per_symbol() -> None:
    h = StrategyHarness(ImbalanceStrategy, {**SETTINGS, "symbols": ["BTC/USDT", "ETH/USDT"]},
                        paper={"latency_ms": 50, "report_latency_ms": 50})

    h.feed(BID_HEAVY, book("ETH/USDT", bids=[(10.00, 5)], asks=[(10.01, 1)]))
    h.feed(book("BTC/USDT", bids=[(100.00, 6)], asks=[(100.01, 1)], at_ms=10))

    assert [i.symbol for i in h.intents] == ["BTC/USDT", "ETH/USDT"]
    assert all(o.status is OrderStatus.NEW for o in h.orders)


def test_the_example_config_section_is_valid() -> None:
    config = tomllib.loads((REPO / "config.example.toml").read_text())

    settings = ImbalanceSettings.model_validate(config["strategies"]["imbalance"])

    assert settings.max_position == Decimal("0.05")


def run_minutes(minutes: float) -> StrategyHarness[ImbalanceStrategy]:
    config = tomllib.loads((REPO / "config.example.toml").read_text())
    market = SimulatedMarket(["BTC/USDT", "ETH/USDT"], seed=42)
    h = StrategyHarness(ImbalanceStrategy, config["strategies"]["imbalance"], name="imbalance",
                        instruments=market.instruments, paper=config["executors"]["paper"], risk=config["risk"])
    h.play(market.events(minutes * 60))
    h.stop()
    return h


def test_five_simulated_minutes_trade_within_the_limits_and_repeat_exactly() -> None:
    first, second = run_minutes(5), run_minutes(5)
    summary = first.summary()

    assert summary.fills > 50 and summary.taker_fills == summary.fills
    assert set(summary.volume) == {"BTC/USDT", "ETH/USDT"}
    assert all(held <= Decimal("0.05") for held in summary.max_abs_position.values())
    assert summary.errors == 0 and summary.denials_by_code == {}
    assert second.summary() == summary
