"""The test harness for plugin authors: builders, simulated time, paper latency, risk, plugins, determinism."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from botframe.book import L2Book
from botframe.events import (
    BookDelta,
    BookHealth,
    BookSnapshot,
    FeedStatus,
    Fill,
    HealthReason,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
    TradingState,
)
from botframe.hookspecs import hookimpl
from botframe.risk import Denial, RiskContext
from botframe.signals import Imbalance, SignalSpec
from botframe.strategy import Strategy, StrategySettings
from botframe.testing import START_NS, SimulatedMarket, StrategyHarness, book, delta, instrument, trade


class BuyOnce(Strategy[StrategySettings]):
    """Buys 1 at market on the first LIVE book it sees; records its timers and stop."""

    Settings = StrategySettings

    def on_start(self) -> None:
        self.bought = False
        self.timers: list[int] = []
        self.stopped_at: int | None = None

    def on_book(self, book: L2Book) -> None:
        if not self.bought:
            self.bought = self.ctx.buy(book.symbol, 1) is not None

    def on_timer(self, name: str, now_ns: int) -> None:
        self.timers.append(now_ns)

    def on_stop(self) -> None:
        self.stopped_at = self.ctx.now_ns()


class RestingBid(Strategy[StrategySettings]):
    """Keeps one bid of 1 at 99 once a book is LIVE."""

    Settings = StrategySettings

    def on_book(self, book: L2Book) -> None:
        self.ctx.quote(book.symbol, Side.BUY, 99, 1)


BOOK = book("BTC/USDT", bids=[(100, 1), (99, 2)], asks=[(100.5, 1), (101, 2)])


# -- builders ----------------------------------------------------------------------------------------------


def test_builders_make_events_with_float_levels_and_times_from_start_ns() -> None:
    snap = book("ETH/USDT", bids=[(10, "1.5")], asks=[("10.1", 2)], venue="kraken", at_ms=250)
    change = delta("ETH/USDT", asks=[(10.1, 0)], at_ms=300)
    print_ = trade("ETH/USDT", "10.1", 0.5, "sell", at_ms=301)

    assert isinstance(snap, BookSnapshot) and isinstance(change, BookDelta) and isinstance(print_, Trade)
    assert snap.bids == [(10.0, 1.5)] and snap.asks == [(10.1, 2.0)] and snap.venue == "kraken"
    assert snap.exchange_ts_ns == snap.receive_ts_ns == START_NS + 250_000_000
    assert change.asks == [(10.1, 0.0)] and change.bids == []
    assert print_.side is Side.SELL and print_.price == 10.1 and print_.exchange_ts_ns == START_NS + 301_000_000
    assert book("X/Y").exchange_ts_ns == 0  # no time: delivered whenever it is fed


def test_instrument_builder_splits_the_symbol() -> None:
    inst = instrument("BTC/USDT:USDT", tick_size="0.1", lot_size="0.001", min_notional="5")

    assert (inst.base, inst.quote, inst.venue_symbol) == ("BTC", "USDT", "BTCUSDT")
    assert (inst.tick_size, inst.lot_size, inst.min_notional) == ("0.1", "0.001", "5")


# -- time --------------------------------------------------------------------------------------------------


def test_feeding_an_event_with_a_later_time_moves_the_clock_and_fires_timers_on_the_way() -> None:
    h = StrategyHarness(BuyOnce)
    h.ctx.set_timer("t", 0.1)

    h.feed(book("BTC/USDT", bids=[(100, 1)], asks=[(101, 1)], at_ms=350))

    assert h.strategy.timers == [START_NS + k * 100_000_000 for k in (1, 2, 3)]
    assert h.clock.time_ns() == START_NS + 350_000_000
    assert h.book("BTC/USDT").receive_ts_ns == START_NS + 350_000_000


def test_an_event_without_a_time_is_stamped_with_the_clock() -> None:
    h = StrategyHarness(BuyOnce)
    h.advance(ms=1500)

    h.feed(BOOK)

    assert h.book("BTC/USDT").receive_ts_ns == START_NS + 1_500_000_000


def test_with_paper_latency_a_fill_arrives_only_once_time_has_passed() -> None:
    h = StrategyHarness(BuyOnce, paper={"latency_ms": 5, "report_latency_ms": 5})

    h.feed(BOOK)
    before = list(h.fills)
    h.advance(ms=9)
    still_before = list(h.fills)
    h.advance(ms=1)

    assert before == still_before == []
    assert [f.quantity for f in h.fills] == [Decimal(1)]
    assert h.fills[0].ts_ns == START_NS + 5_000_000  # when the order reached the venue


# -- health ------------------------------------------------------------------------------------------------


def test_a_first_snapshot_makes_the_book_live_and_a_feed_status_moves_it() -> None:
    h = StrategyHarness(BuyOnce, raise_errors=True)

    h.feed(FeedStatus(venue="binance", symbol="BTC/USDT", previous=BookHealth.CONNECTING,
                      health=BookHealth.SYNCING, reason=HealthReason.SUBSCRIBED))
    syncing = h.book("BTC/USDT").health
    h.feed(BOOK)
    live = h.book("BTC/USDT").health
    h.set_health("BTC/USDT", BookHealth.RESYNCING, HealthReason.STALE)

    assert (syncing, live, h.book("BTC/USDT").health) == (BookHealth.SYNCING, BookHealth.LIVE, BookHealth.RESYNCING)
    assert [s.health for s in h.statuses] == [BookHealth.SYNCING, BookHealth.LIVE, BookHealth.RESYNCING]


def test_events_of_symbols_the_strategy_does_not_read_are_ignored() -> None:
    h = StrategyHarness(BuyOnce)

    h.feed(book("ETH/USDT", bids=[(10, 1)], asks=[(11, 1)]), book("BTC/USDT", venue="kraken", bids=[(1, 1)]))

    assert h.events == 0 and h.ignored_events == 2
    assert h.intents == []
    with pytest.raises(KeyError, match="ETH/USDT"):
        h.book("ETH/USDT")


# -- risk and plugins --------------------------------------------------------------------------------------


def test_the_kill_switch_halts_trading_and_cancels_resting_orders() -> None:
    h = StrategyHarness(RestingBid, risk={"max_drawdown": "0.5"}, paper={"taker_fee_bps": "0"})
    h.feed(BOOK)
    h.ctx.buy("BTC/USDT", 1)  # at 100.5: any fall of the mid below 100 is a loss above 0.5

    h.feed(book("BTC/USDT", bids=[(98, 1)], asks=[(98.5, 1)]))
    h.advance(1.0)

    assert h.trading_state.state is TradingState.HALTED
    assert [c.state for c in h.state_changes] == [TradingState.HALTED]
    assert h.open_orders() == []
    assert h.ctx.buy("BTC/USDT", 1) is None
    assert h.denials[-1].code == "halted"


def test_the_bundled_risk_checks_run_and_can_be_left_out() -> None:
    checked = StrategyHarness(BuyOnce, risk={"max_order_quantity": "0.5"})
    unchecked = StrategyHarness(BuyOnce, risk={"max_order_quantity": "0.5"}, risk_checks=False)

    checked.feed(BOOK)
    unchecked.feed(BOOK)

    assert [d.code for d in checked.denials] == ["max_order_quantity"]
    assert unchecked.denials == [] and unchecked.position("BTC/USDT") == Decimal(1)


class NoSellsOnFriday:
    """A third-party plugin: a risk check and the observation hooks, as a test would register it."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.updates: list[OrderUpdate] = []
        self.statuses: list[FeedStatus] = []

    @hookimpl
    def botframe_check_order(self, intent: OrderIntent, context: RiskContext) -> Denial | None:
        if intent.side is Side.SELL:
            return Denial("no_sells", "no_sells_on_friday", "it is Friday")
        return None

    @hookimpl
    def botframe_on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    @hookimpl
    def botframe_on_order_update(self, update: OrderUpdate) -> None:
        self.updates.append(update)

    @hookimpl
    def botframe_on_feed_status(self, status: FeedStatus) -> None:
        self.statuses.append(status)


def test_a_plugin_passed_to_the_harness_checks_orders_and_observes_fills_updates_and_statuses() -> None:
    plugin = NoSellsOnFriday()
    h = StrategyHarness(BuyOnce, plugins=[plugin])

    h.feed(BOOK)
    denied = h.ctx.sell("BTC/USDT", 1)

    assert denied is None and [(d.check, d.code) for d in h.denials] == [("no_sells_on_friday", "no_sells")]
    assert [f.quantity for f in plugin.fills] == [Decimal(1)]
    assert [u.status for u in plugin.updates] == [OrderStatus.ACCEPTED, OrderStatus.FILLED]
    assert [s.health for s in plugin.statuses] == [BookHealth.SYNCING, BookHealth.LIVE]


# -- stopping and summaries --------------------------------------------------------------------------------


def test_stop_calls_on_stop_then_cancels_open_orders_and_waits_for_the_venue() -> None:
    h = StrategyHarness(RestingBid, paper={"latency_ms": 5, "report_latency_ms": 5})
    h.feed(BOOK)
    h.advance(ms=20)
    assert len(h.open_orders()) == 1

    h.stop()

    assert h.stopped
    assert h.open_orders() == []
    assert h.orders[0].status is OrderStatus.CANCELLED
    assert h.summary().orders_by_status == {"cancelled": 1}


def test_the_summary_counts_what_happened_exactly() -> None:
    h = StrategyHarness(BuyOnce, paper={"taker_fee_bps": "10"})

    h.feed(BOOK)
    summary = h.summary()

    assert summary.strategy == "BuyOnce"
    assert summary.fills == summary.taker_fills == 1 and summary.maker_fills == 0
    assert summary.orders_by_status == {"filled": 1}
    assert summary.volume == {"BTC/USDT": Decimal(1)}
    assert summary.fees == Decimal("0.1005")
    assert summary.positions == summary.max_abs_position == {"BTC/USDT": Decimal(1)}
    assert summary.unrealized_pnl == Decimal("100.25") - Decimal("100.5")
    assert summary.net_pnl == summary.unrealized_pnl - summary.fees


class Follower(Strategy[StrategySettings]):
    """Buys on bid-heavy books, sells on ask-heavy ones, within 0.02 either way: enough to trade a lot."""

    Settings = StrategySettings
    imbalance = Imbalance(levels=3)

    def signal_specs(self) -> Sequence[SignalSpec]:
        return [self.imbalance]

    def on_book(self, book: L2Book) -> None:
        value = self.ctx.signal(book.symbol, self.imbalance)
        position = self.ctx.position(book.symbol)
        if value is None or self.ctx.open_orders(book.symbol):
            return
        if value > 0.5 and position < Decimal("0.02"):
            self.ctx.buy(book.symbol, "0.01")
        elif value < -0.5 and position > Decimal("-0.02"):
            self.ctx.sell(book.symbol, "0.01")


def run_follower(seed: int) -> StrategyHarness[Follower]:
    market = SimulatedMarket(["BTC/USDT", "ETH/USDT"], seed=seed)
    h = StrategyHarness(Follower, {"symbols": ["BTC/USDT", "ETH/USDT"]}, instruments=market.instruments,
                        paper={"latency_ms": 5, "report_latency_ms": 5})
    h.play(market.events(60))
    h.stop()
    return h


def test_two_runs_over_the_same_simulated_market_give_equal_summaries() -> None:
    first, second = run_follower(seed=3), run_follower(seed=3)

    assert first.summary().fills > 10
    assert first.summary() == second.summary()
    assert [f.client_order_id for f in first.fills] == [f.client_order_id for f in second.fills]


def test_the_simulated_market_repeats_for_a_seed_and_differs_for_another() -> None:
    same_a = list(SimulatedMarket(["ETH/USDT"], seed=1).events(5))
    same_b = list(SimulatedMarket(["ETH/USDT"], seed=1).events(5))
    other = list(SimulatedMarket(["ETH/USDT"], seed=2).events(5))

    assert same_a == same_b
    assert same_a != other
    assert isinstance(same_a[0], BookSnapshot) and same_a[0].bids and same_a[0].asks
    assert {type(e) for e in same_a[1:]} == {BookDelta, Trade}
    assert same_a[-1].exchange_ts_ns == START_NS + 5_000_000_000


def test_the_simulated_market_continues_where_it_stopped() -> None:
    market = SimulatedMarket(["BTC/USDT"], seed=9)
    whole = list(SimulatedMarket(["BTC/USDT"], seed=9).events(4))

    halves = list(market.events(2)) + list(market.events(2))

    assert halves == whole


def test_the_simulated_market_names_the_symbols_it_has() -> None:
    with pytest.raises(ValueError, match="binance:BTC/USDT"):
        SimulatedMarket(["DOGE/USDT"])


def test_instruments_of_the_simulated_market_carry_the_simulator_rules() -> None:
    market = SimulatedMarket(["BTC/USDT"], sim={"symbols": [{"symbol": "BTC/USDT", "start_price": "100",
                                                              "tick_size": "0.5", "lot_size": "0.1"}]})

    first = next(iter(market.events(0)))

    assert [(i.symbol, i.tick_size, i.lot_size) for i in market.instruments] == [("BTC/USDT", "0.5", "0.1")]
    assert isinstance(first, BookSnapshot) and all(p % 0.5 == 0 for p, _ in first.bids)


def test_a_crossed_book_is_not_shown_to_the_strategy_and_goes_to_resyncing() -> None:
    h = StrategyHarness(BuyOnce)
    h.feed(book("BTC/USDT", bids=[(100, 1)], asks=[(101, 1)]))
    h.ctx.cancel_all()

    h.feed(delta("BTC/USDT", bids=[(102, 1)]))

    assert h.book("BTC/USDT").health is BookHealth.RESYNCING
    assert h.statuses[-1].reason is HealthReason.CROSSED
    assert len(h.intents) == 1  # only the order of the first, uncrossed book
