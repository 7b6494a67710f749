"""The strategy API: what a strategy's context does with orders, signals and time, and how errors are isolated.

Every test runs a small strategy through ``botframe.testing.StrategyHarness``: the real book, signals,
risk gate (with the bundled risk checks), paper fill engine and portfolio, on a simulated clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from botframe.book import L2Book
from botframe.events import (
    BookHealth,
    FeedStatus,
    Fill,
    HealthReason,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    Trade,
)
from botframe.signals import Imbalance, Microprice, SignalSpec
from botframe.strategy import Strategy, StrategyContext, StrategySettings, round_to_step, to_decimal
from botframe.testing import StrategyHarness, book, delta, instrument, trade

Action = Callable[["Probe", L2Book], object]


class Probe(Strategy[StrategySettings]):
    """Records every callback and runs what a test puts in ``on_book_do``."""

    Settings = StrategySettings
    imbalance = Imbalance(levels=1)

    def signal_specs(self) -> Sequence[SignalSpec]:
        return [self.imbalance, Microprice()]

    def on_start(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.on_book_do: Action | None = None
        self.results: list[object] = []

    def on_book(self, book: L2Book) -> None:
        self.calls.append(("book", book.symbol))
        if self.on_book_do is not None:
            self.results.append(self.on_book_do(self, book))

    def on_trade(self, trade: Trade) -> None:
        self.calls.append(("trade", trade.price))

    def on_fill(self, fill: Fill) -> None:
        self.calls.append(("fill", fill.client_order_id))

    def on_order_update(self, update: OrderUpdate) -> None:
        self.calls.append(("update", update.status))

    def on_feed_status(self, status: FeedStatus) -> None:
        self.calls.append(("status", status.health))

    def on_timer(self, name: str, now_ns: int) -> None:
        self.calls.append(("timer", now_ns))


def probe(*, symbols: Sequence[str] = ("BTC/USDT",), **harness: Any) -> StrategyHarness[Probe]:
    return StrategyHarness(Probe, {"symbols": list(symbols)}, **harness)


BOOK = book("BTC/USDT", bids=[(100.0, 2.0), (99.9, 1.0)], asks=[(100.5, 1.0), (100.6, 3.0)])


def once(action: Action) -> Action:
    """Run ``action`` on the first book only."""
    done: list[bool] = []

    def run(s: Probe, b: L2Book) -> object:
        if done:
            return None
        done.append(True)
        return action(s, b)

    return run


# -- orders --------------------------------------------------------------------------------------------


def test_buy_without_price_is_a_market_order_with_quantity_rounded_down_to_the_lot() -> None:
    h = probe()
    h.strategy.on_book_do = once(lambda s, b: s.ctx.buy(b.symbol, 0.123456789))

    h.feed(BOOK)

    intent = h.intents[0]
    assert intent.order_type is OrderType.MARKET
    assert intent.quantity == Decimal("0.1234")
    assert h.position("BTC/USDT") == Decimal("0.1234")


def test_limit_prices_round_to_the_tick_on_the_passive_side() -> None:
    h = probe()

    def two_orders(s: Probe, b: L2Book) -> object:
        return s.ctx.buy(b.symbol, "0.1", 100.019), s.ctx.sell(b.symbol, "0.1", "100.511")

    h.strategy.on_book_do = once(two_orders)

    h.feed(BOOK)

    assert [(i.side, i.price) for i in h.intents] == [(Side.BUY, Decimal("100.01")), (Side.SELL, Decimal("100.52"))]
    assert all(o.status is OrderStatus.ACCEPTED for o in h.orders)


def test_order_flags_reach_the_intent() -> None:
    h = probe()
    h.strategy.on_book_do = once(lambda s, b: s.ctx.sell(b.symbol, 1, 99.5, time_in_force=TimeInForce.IOC))

    h.feed(BOOK)

    assert h.intents[0].time_in_force is TimeInForce.IOC
    assert h.orders[0].status is OrderStatus.FILLED
    assert h.fills[0].price == Decimal("100")


def test_fill_is_delivered_after_the_callback_that_caused_it_returns() -> None:
    h = probe()

    def buy_and_mark(s: Probe, b: L2Book) -> object:
        s.calls.append(("buy sent", None))
        order_id = s.ctx.buy(b.symbol, "0.5")
        s.calls.append(("buy returned", order_id))
        return order_id

    h.strategy.on_book_do = once(buy_and_mark)

    h.feed(BOOK)

    names = [c[0] for c in h.strategy.calls]
    assert names.index("buy returned") < names.index("fill")
    assert ("update", OrderStatus.FILLED) in h.strategy.calls


def test_risk_denial_returns_none_and_arrives_as_rejected_after_the_callback() -> None:
    h = probe(risk={"max_order_notional": "50"})

    def big_buy(s: Probe, b: L2Book) -> object:
        result = s.ctx.buy(b.symbol, 1)
        s.calls.append(("buy returned", result))
        return result

    h.strategy.on_book_do = once(big_buy)

    h.feed(BOOK)

    assert h.strategy.results == [None]
    assert h.orders == []
    assert [d.code for d in h.denials] == ["max_order_notional"]
    assert h.strategy.calls[-2:] == [("buy returned", None), ("update", OrderStatus.REJECTED)]
    assert "order_size" in h.updates[-1].reason


def test_cancel_all_cancels_only_the_named_symbol() -> None:
    h = probe(symbols=("BTC/USDT", "ETH/USDT"))
    h.feed(BOOK, book("ETH/USDT", bids=[(10.0, 1.0)], asks=[(10.1, 1.0)]))
    h.ctx.buy("BTC/USDT", 1, 99)
    h.ctx.buy("ETH/USDT", 1, 9.9)

    h.ctx.cancel_all("BTC/USDT")

    assert [o.symbol for o in h.open_orders()] == ["ETH/USDT"]


def test_replace_moves_an_open_order_to_a_new_price() -> None:
    h = probe()
    h.feed(BOOK)
    old = h.ctx.buy("BTC/USDT", 1, 99)
    assert old is not None

    new = h.ctx.replace(old, price=99.5)

    assert new is not None and new != old
    assert [(o.client_order_id, o.price) for o in h.open_orders()] == [(new, Decimal("99.5"))]
    assert h.tracker.get(old) is not None
    assert h.tracker.get(old).status is OrderStatus.CANCELLED  # type: ignore[union-attr]


def test_cancel_of_an_order_of_another_strategy_is_ignored() -> None:
    h = probe()
    h.feed(BOOK)
    order_id = h.ctx.buy("BTC/USDT", 1, 99)
    assert order_id is not None
    other = StrategyContext("other", "binance", h.router)  # another strategy trading through the same engine

    h.strategy.ctx.cancel("no-such-order")
    other.cancel(order_id)

    assert [o.client_order_id for o in h.open_orders()] == [order_id]


# -- quote: one resting order per side -------------------------------------------------------------------


def test_quote_places_one_post_only_order_and_keeps_it_while_nothing_changes() -> None:
    h = probe()
    h.feed(BOOK)

    first = h.ctx.quote("BTC/USDT", Side.BUY, 100.1, "0.5")
    again = h.ctx.quote("BTC/USDT", Side.BUY, 100.1, "0.5")

    assert first is not None and again == first
    assert len(h.intents) == 1
    assert h.intents[0].post_only and h.intents[0].price == Decimal("100.1")


def test_quote_within_tolerance_is_kept_and_beyond_it_is_cancelled_then_replaced() -> None:
    h = probe()
    h.feed(BOOK)
    first = h.ctx.quote("BTC/USDT", Side.SELL, 100.8, "0.5")

    kept = h.ctx.quote("BTC/USDT", Side.SELL, 100.82, "0.5", tolerance="0.05")
    moving = h.ctx.quote("BTC/USDT", Side.SELL, 101.0, "0.5", tolerance="0.05")
    moved = h.ctx.quote("BTC/USDT", Side.SELL, 101.0, "0.5", tolerance="0.05")

    assert kept == first
    assert moving is None  # the old quote is being cancelled; no second quote works meanwhile
    assert moved is not None and moved != first
    assert [(o.client_order_id, o.price) for o in h.open_orders()] == [(moved, Decimal("101.0"))]


def test_quote_of_nothing_pulls_the_side() -> None:
    h = StrategyHarness(Probe, {"symbols": ["BTC/USDT"]},
                        instruments=[instrument("BTC/USDT", min_notional="10")])
    h.feed(BOOK)
    h.ctx.quote("BTC/USDT", Side.BUY, 99, 1)

    rounds_to_zero = h.ctx.quote("BTC/USDT", Side.BUY, 99, "0.00001")
    too_small = h.ctx.quote("BTC/USDT", Side.BUY, 99, "0.05")
    no_price = h.ctx.quote("BTC/USDT", Side.BUY, None, 1)

    assert rounds_to_zero is None and too_small is None and no_price is None
    assert h.open_orders() == []
    assert len(h.intents) == 1


def test_quote_through_the_book_is_moved_one_tick_behind_the_opposite_best() -> None:
    buyer, seller = probe(), probe()
    buyer.feed(BOOK)
    seller.feed(BOOK)

    buyer.ctx.quote("BTC/USDT", Side.BUY, 101, "0.1")
    seller.ctx.quote("BTC/USDT", Side.SELL, 99, "0.1")

    assert [(i.side, i.price) for i in buyer.intents + seller.intents] == [
        (Side.BUY, Decimal("100.49")), (Side.SELL, Decimal("100.01"))]
    assert buyer.fills == seller.fills == []


def test_quote_that_would_meet_our_own_opposite_quote_waits() -> None:
    h = probe()
    h.feed(BOOK)
    h.ctx.quote("BTC/USDT", Side.SELL, 100.3, "0.1")

    waiting = h.ctx.quote("BTC/USDT", Side.BUY, 100.4, "0.1")

    assert waiting is None
    assert h.denials == []
    assert [o.side for o in h.open_orders()] == [Side.SELL]


# -- reading -----------------------------------------------------------------------------------------------


def test_signals_are_read_by_spec_or_by_name() -> None:
    h = probe()

    h.feed(BOOK)

    by_spec = h.ctx.signal("BTC/USDT", Imbalance(levels=1))
    by_name = h.ctx.signal("BTC/USDT", "imbalance_1")
    assert by_spec == by_name == pytest.approx((2.0 - 1.0) / 3.0)
    assert h.ctx.signal("BTC/USDT", Microprice()) == pytest.approx((100.0 * 1.0 + 100.5 * 2.0) / 3.0)


def test_a_signal_that_was_not_declared_is_an_error_that_says_so() -> None:
    h = probe()
    h.feed(BOOK)

    with pytest.raises(KeyError, match="imbalance_5"):
        h.ctx.signal("BTC/USDT", Imbalance(levels=5))


def test_position_and_pnl_follow_fills_and_the_mid() -> None:
    h = probe(paper={"taker_fee_bps": "10"})
    h.feed(BOOK)
    h.ctx.buy("BTC/USDT", 1)

    h.feed(book("BTC/USDT", bids=[(101.0, 1.0)], asks=[(101.2, 1.0)]))

    assert h.ctx.position("BTC/USDT") == Decimal(1)
    pnl = h.ctx.pnl("BTC/USDT")
    assert pnl.unrealized == Decimal("101.1") - Decimal("100.5")
    assert pnl.fees == Decimal("0.1005")
    assert pnl.net == pnl.unrealized - pnl.fees
    assert h.ctx.pnl() == pnl


def test_instrument_and_rounding_helpers_use_the_venue_rules() -> None:
    h = StrategyHarness(Probe, {"symbols": ["ETH/USDT"]},
                        instruments=[instrument("ETH/USDT", tick_size="0.05", lot_size="0.001")])

    assert h.ctx.round_quantity("ETH/USDT", "1.23456") == Decimal("1.234")
    assert h.ctx.round_price("ETH/USDT", "10.02", Side.BUY) == Decimal("10.00")
    assert h.ctx.round_price("ETH/USDT", "10.02", Side.SELL) == Decimal("10.05")
    assert h.ctx.round_quantity("XRP/USDT", "1.23456") == Decimal("1.23456")  # unknown: unchanged


def test_to_decimal_is_exact_for_floats_strings_and_ints() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal("1e-8") == Decimal("1e-8")
    assert to_decimal(3) == Decimal(3)
    assert round_to_step(Decimal("1.2399"), Decimal("0.01"), "ROUND_DOWN") == Decimal("1.23")
    assert round_to_step(Decimal("1.2399"), Decimal(0), "ROUND_DOWN") == Decimal("1.2399")


# -- callbacks and time ------------------------------------------------------------------------------------


def test_on_book_is_called_only_while_the_book_is_live() -> None:
    h = probe()
    h.feed(BOOK)

    h.set_health("BTC/USDT", BookHealth.RESYNCING, HealthReason.GAP)
    h.feed(delta("BTC/USDT", bids=[(100.0, 3.0)]))
    h.feed(book("BTC/USDT", bids=[(100.0, 1.0)], asks=[(100.5, 1.0)]))

    assert h.strategy.calls == [
        ("status", BookHealth.SYNCING), ("status", BookHealth.LIVE), ("book", "BTC/USDT"),
        ("status", BookHealth.RESYNCING),
        ("status", BookHealth.LIVE), ("book", "BTC/USDT"),
    ]


def test_trades_reach_on_trade() -> None:
    h = probe()

    h.feed(BOOK, trade("BTC/USDT", 100.5, 0.1, "buy"))

    assert h.strategy.calls[-1] == ("trade", 100.5)


def test_a_timer_fires_every_interval_of_clock_time() -> None:
    h = probe()
    start = h.clock.time_ns()
    h.ctx.set_timer("tick", 0.25)

    h.advance(1.0)

    assert [c for c in h.strategy.calls if c[0] == "timer"] == [
        ("timer", start + k * 250_000_000) for k in (1, 2, 3, 4)
    ]


def test_setting_a_timer_again_replaces_it() -> None:
    h = probe()
    h.ctx.set_timer("tick", 0.1)
    h.ctx.set_timer("tick", 0.5)

    h.advance(1.0)

    assert len([c for c in h.strategy.calls if c[0] == "timer"]) == 2


# -- errors ------------------------------------------------------------------------------------------------


class Faulty(Probe):
    """Raises on every book after the first, which places a resting order."""

    def on_book(self, book: L2Book) -> None:
        super().on_book(book)
        if len(self.calls) > 3:
            raise ZeroDivisionError("strategy bug")
        self.ctx.buy(book.symbol, 1, 99)


def test_a_strategy_exception_is_logged_with_context_and_counted_and_the_strategy_keeps_running() -> None:
    h = StrategyHarness(Faulty, {"symbols": ["BTC/USDT"]}, raise_errors=False, max_errors=5)
    h.feed(BOOK)

    with capture_logs() as logs:
        h.feed(delta("BTC/USDT", bids=[(100.0, 1.5)]))
    h.feed(delta("BTC/USDT", bids=[(100.0, 1.0)]))

    failed = [e for e in logs if e["event"] == "strategy callback failed"]
    assert failed and failed[0]["callback"] == "on_book" and failed[0]["symbol"] == "BTC/USDT"
    assert "ZeroDivisionError" in failed[0]["error"]
    assert h.summary().errors == 2
    assert not h.stopped
    assert [c[0] for c in h.strategy.calls].count("book") == 3


def test_after_max_errors_the_strategy_is_stopped_and_its_orders_cancelled() -> None:
    h = StrategyHarness(Faulty, {"symbols": ["BTC/USDT"]}, raise_errors=False, max_errors=2)
    h.feed(BOOK)
    assert len(h.open_orders()) == 1

    for size in (1.1, 1.2, 1.3, 1.4):
        h.feed(delta("BTC/USDT", bids=[(100.0, size)]))

    assert h.stopped
    assert h.open_orders() == []
    assert h.orders[0].status is OrderStatus.CANCELLED
    assert [c[0] for c in h.strategy.calls].count("book") == 3  # nothing after the stop


def test_the_harness_reraises_a_strategy_exception_by_default() -> None:
    h = StrategyHarness(Faulty, {"symbols": ["BTC/USDT"]})
    h.feed(BOOK)

    with pytest.raises(ZeroDivisionError, match="strategy bug") as raised:
        h.feed(delta("BTC/USDT", bids=[(100.0, 1.5)]))

    assert any("Faulty.on_book" in note for note in raised.value.__notes__)
    assert len(h.errors) == 1
