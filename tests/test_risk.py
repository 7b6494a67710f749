"""The risk gate: settings, trading state, sanity checks, and every built-in check allowing and denying.

The gate calls the checks through a real pluggy PluginManager with ``botframe_plugins.risk_limits``
registered, as the engine does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pluggy
import pydantic
import pytest
from structlog.testing import capture_logs

import botframe_plugins.risk_limits as risk_limits
from botframe import hookspecs
from botframe.book import L2Book
from botframe.clock import SimulatedClock
from botframe.events import (
    BookHealth,
    BookSnapshot,
    Event,
    Fill,
    HealthReason,
    OrderDenied,
    OrderIntent,
    OrderType,
    Side,
    TradingState,
    TradingStateChanged,
)
from botframe.hookspecs import hookimpl
from botframe.orders import OrderTracker
from botframe.portfolio import Portfolio
from botframe.risk import (
    Denial,
    RiskContext,
    RiskGate,
    RiskSettings,
    TokenBucket,
    TradingStateMachine,
)
from botframe.venues import Instrument

D = Decimal
V = "sim"
BTC = "BTC/USDT"
ETH = "ETH/USDT"
BID, ASK = 100.0, 100.2  # mid 100.1

#: Loose limits so that each test switches on only the one it is about.
OFF = {
    "max_order_notional": None, "max_open_orders": None, "orders_per_sec": None, "cancels_per_sec": None,
    "price_band_bps": None, "stale_after_ms": None, "self_trade_prevention": False,
    "max_gross_exposure": None,
    "max_open_orders_total": None, "orders_per_sec_total": None, "cancels_per_sec_total": None,
}


@pytest.fixture
def pm() -> Iterator[pluggy.PluginManager]:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(risk_limits, name="risk_limits")
    try:
        yield manager
    finally:
        manager.unregister(name="risk_limits")


@dataclass
class Desk:
    """Everything the gate reads, real parts only, with a simulated clock."""

    pm: pluggy.PluginManager
    settings: RiskSettings
    clock: SimulatedClock = field(default_factory=SimulatedClock)
    portfolio: Portfolio = field(default_factory=lambda: Portfolio(starting_cash={"USDT": D("10000")}))
    orders: OrderTracker = field(default_factory=OrderTracker)
    trading: TradingStateMachine = field(default_factory=TradingStateMachine)
    books: dict[tuple[str, str], L2Book] = field(default_factory=dict)
    instruments: dict[tuple[str, str], Instrument] = field(default_factory=dict)
    published: list[Event] = field(default_factory=list)
    counter: int = 0

    def __post_init__(self) -> None:
        for symbol in (BTC, ETH):
            self.instruments[(V, symbol)] = Instrument(V, symbol, symbol.replace("/", ""), symbol[:3], "USDT",
                                                       tick_size="0.1", lot_size="0.001", min_notional="1")
            self.books[(V, symbol)] = self.live_book(symbol)
        self.context = RiskContext(
            books=lambda venue, symbol: self.books.get((venue, symbol)),
            portfolio=self.portfolio,
            orders=self.orders,
            instruments=lambda venue, symbol: self.instruments.get((venue, symbol)),
            clock=self.clock,
            trading_state=self.trading,
            settings=self.settings,
        )
        self.gate = RiskGate(lambda i, c: self.pm.hook.botframe_check_order(intent=i, context=c),
                             self.context, self.published.append)

    def live_book(self, symbol: str, bids: list[tuple[float, float]] | None = None,
                  asks: list[tuple[float, float]] | None = None) -> L2Book:
        book = L2Book(V, symbol)
        now = self.clock.time_ns()
        book.apply_snapshot(BookSnapshot(venue=V, symbol=symbol, bids=bids or [(BID, 2.0)],
                                         asks=asks or [(ASK, 1.0)], receive_ts_ns=now))
        book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, now)
        book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, now)
        return book

    def intent(self, side: Side = Side.BUY, qty: str | Decimal = "0.01",
               price: str | Decimal | None = "100.1", *,
               symbol: str = BTC, **kw: object) -> OrderIntent:
        self.counter += 1
        return OrderIntent(
            client_order_id=f"t-{self.counter}", strategy="test", venue=V, symbol=symbol, side=side,
            quantity=qty if isinstance(qty, Decimal) else D(qty),
            order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
            price=(price if isinstance(price, Decimal) else D(price)) if price is not None else None,
            **kw,  # type: ignore[arg-type]
        )

    def check(self, *args: object, **kw: object) -> list[Denial]:
        return self.gate.check(self.intent(*args, **kw))  # type: ignore[arg-type]

    def codes(self, *args: object, **kw: object) -> list[str]:
        return [d.code for d in self.check(*args, **kw)]

    def rest(self, side: Side, qty: str, price: str | None, symbol: str = BTC) -> None:
        """Put an approved order on our book of open orders, as the engine does."""
        self.orders.add(self.intent(side, qty, price, symbol=symbol))

    def own(self, side: Side, qty: str, price: str, symbol: str = BTC) -> None:
        self.portfolio.on_fill(Fill(client_order_id="x", venue=V, symbol=symbol, side=side, price=D(price),
                                    quantity=D(qty), fee=D(0), liquidity="taker"))


def desk(pm: pluggy.PluginManager, **settings: object) -> Desk:
    return Desk(pm=pm, settings=RiskSettings.model_validate({**OFF, **settings}))


# -- settings --------------------------------------------------------------------------------------


def test_settings_from_toml_values_become_decimals_with_symbol_overrides() -> None:
    s = RiskSettings.model_validate({"max_order_notional": 1000, "symbols": {BTC: {"max_position": "0.5"}}})

    btc, eth = s.limits_for(V, BTC), s.limits_for(V, ETH)

    assert btc.max_order_notional == D(1000)
    assert isinstance(btc.max_order_notional, Decimal)
    assert btc.max_position == D("0.5")
    assert eth.max_position is None


def test_symbol_override_changes_only_the_keys_it_sets() -> None:
    s = RiskSettings.model_validate({"price_band_bps": 100, "symbols": {BTC: {"stale_after_ms": 50}}})

    limits = s.limits_for(V, BTC)

    assert limits.stale_after_ms == 50
    assert limits.price_band_bps == 100


def test_venue_qualified_override_wins_over_the_symbol_override() -> None:
    s = RiskSettings.model_validate(
        {"symbols": {BTC: {"max_position": "1"}, f"binance:{BTC}": {"max_position": "2"}}})

    assert s.limits_for("binance", BTC).max_position == D(2)
    assert s.limits_for("okx", BTC).max_position == D(1)


@pytest.mark.parametrize("bad", [{"max_order_notionl": 5}, {"max_position": "-1"}, {"orders_per_sec": 0},
                                 {"symbols": {BTC: {"max_positon": "1"}}}, {"max_order_notional": "NaN"},
                                 {"kill_switch_state": "paused"}])
def test_invalid_risk_settings_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        RiskSettings.model_validate(bad)


def test_risk_settings_are_frozen() -> None:
    s = RiskSettings()

    with pytest.raises(pydantic.ValidationError):
        s.max_position = D(1)  # type: ignore[misc]


# -- trading state ---------------------------------------------------------------------------------


def test_trading_state_moves_return_events() -> None:
    machine = TradingStateMachine(SimulatedClock(start_ns=7))

    to_reducing = machine.reduce("loss")
    to_halted = machine.halt("worse")

    assert to_reducing == TradingStateChanged(previous=TradingState.ACTIVE, state=TradingState.REDUCING,
                                              reason="loss", ts_ns=7)
    assert to_halted is not None
    assert to_halted.state is TradingState.HALTED
    assert machine.state is TradingState.HALTED


def test_moving_to_the_current_state_is_no_event() -> None:
    machine = TradingStateMachine()

    assert machine.move_to(TradingState.ACTIVE, "again") is None


@pytest.mark.parametrize("target", [TradingState.ACTIVE, TradingState.REDUCING])
def test_halted_is_left_only_by_an_explicit_resume(target: TradingState) -> None:
    machine = TradingStateMachine()
    machine.halt("kill switch")

    assert machine.move_to(target, "automatic") is None
    assert machine.state is TradingState.HALTED
    assert machine.refused == 1

    event = machine.resume("operator", to=target)

    assert event is not None
    assert event.previous is TradingState.HALTED
    assert machine.state is target


def test_reducing_may_return_to_active() -> None:
    machine = TradingStateMachine()
    machine.reduce("x")

    assert machine.move_to(TradingState.ACTIVE, "recovered") is not None


def test_restore_sets_the_recovered_state_without_an_event() -> None:
    machine = TradingStateMachine()

    machine.restore(TradingState.HALTED)

    assert machine.state is TradingState.HALTED


# -- sanity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("qty", "price", "code"), [
    ("NaN", "100.1", "invalid_quantity"),
    ("sNaN", "100.1", "invalid_quantity"),
    ("Infinity", "100.1", "invalid_quantity"),
    ("-0.01", "100.1", "invalid_quantity"),
    ("0", "100.1", "invalid_quantity"),
    ("0.0105", "100.1", "off_lot"),
    ("0.01", "100.15", "off_tick"),
    ("0.01", "NaN", "invalid_price"),
    ("0.01", "-Infinity", "invalid_price"),
    ("0.01", "-100.1", "invalid_price"),
    ("0.01", "0", "invalid_price"),
    ("0.001", "100.1", "below_min_notional"),
    ("1E+70", "100.1", "off_lot"),
    ("0.01", "1E+70", "off_tick"),
])
def test_malformed_quantity_or_price_is_denied_by_sanity(pm: pluggy.PluginManager, qty: str, price: str,
                                                         code: str) -> None:
    d = desk(pm)

    denials = d.check(Side.BUY, qty, price)

    assert [(x.code, x.check) for x in denials] == [(code, "sanity")]


def test_float_quantity_is_denied_by_sanity(pm: pluggy.PluginManager) -> None:
    d = desk(pm)

    denials = d.check(Side.BUY, D("1"), "100.1", symbol=BTC) + d.gate.check(
        OrderIntent(client_order_id="f1", strategy="t", venue=V, symbol=BTC, side=Side.BUY,
                    quantity=float("nan"), price=D("100.1")))  # type: ignore[arg-type]

    assert [x.code for x in denials][-1] == "invalid_quantity"
    assert "Decimal" in denials[-1].reason


def test_unknown_symbol_is_denied_by_sanity(pm: pluggy.PluginManager) -> None:
    d = desk(pm)

    assert d.codes(symbol="DOGE/USDT") == ["unknown_symbol"]


def test_limit_order_without_price_is_denied_by_sanity(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    intent = OrderIntent(client_order_id="p1", strategy="t", venue=V, symbol=BTC, side=Side.BUY,
                         quantity=D("0.01"), order_type=OrderType.LIMIT, price=None)

    assert [x.code for x in d.gate.check(intent)] == ["missing_price"]


def test_post_only_market_order_is_denied_by_sanity(pm: pluggy.PluginManager) -> None:
    d = desk(pm)

    assert d.codes(Side.BUY, "0.01", None, post_only=True) == ["invalid_flags"]


@pytest.mark.parametrize("coid", ["", "has space", "x" * 37, "semi;colon"])
def test_malformed_client_order_id_is_denied_by_sanity(pm: pluggy.PluginManager, coid: str) -> None:
    d = desk(pm)
    intent = OrderIntent(client_order_id=coid, strategy="t", venue=V, symbol=BTC, side=Side.BUY,
                         quantity=D("0.01"), price=D("100.1"))

    assert [x.code for x in d.gate.check(intent)] == ["invalid_client_order_id"]


def test_client_order_id_in_use_is_denied_by_sanity(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    intent = d.intent()
    d.orders.add(intent)

    assert [x.code for x in d.gate.check(intent)] == ["duplicate_client_order_id"]


def test_market_order_below_min_notional_is_judged_at_the_opposite_best(pm: pluggy.PluginManager) -> None:
    d = desk(pm)

    assert d.codes(Side.BUY, "0.009", None) == ["below_min_notional"]  # 0.009 x 100.2 < 1
    assert d.codes(Side.BUY, "0.010", None) == []


def test_sane_order_passes_sanity(pm: pluggy.PluginManager) -> None:
    d = desk(pm)

    assert d.check() == []


def test_sanity_denial_never_reaches_plugin_checks(pm: pluggy.PluginManager) -> None:
    calls: list[OrderIntent] = []

    class Spy:
        @hookimpl
        def botframe_check_order(self, intent: OrderIntent, context: RiskContext) -> Denial | None:
            calls.append(intent)
            return None

    pm.register(Spy(), name="spy")
    try:
        d = desk(pm)
        d.check(Side.BUY, "NaN")
        d.check()
    finally:
        pm.unregister(name="spy")

    assert [c.client_order_id for c in calls] == ["t-2"]


# -- trading state in the gate ---------------------------------------------------------------------


def test_halted_denies_every_order(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    d.own(Side.BUY, "1", "100")
    d.trading.halt("operator")

    assert d.codes(Side.SELL, "0.5", "100.1") == ["halted"]


def test_reducing_allows_an_order_that_reduces_the_position(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    d.own(Side.BUY, "1", "100")
    d.trading.reduce("loss")

    assert d.codes(Side.SELL, "0.5", "100.1") == []


@pytest.mark.parametrize(("side", "qty"), [(Side.BUY, "0.1"), (Side.SELL, "1.5")])
def test_reducing_denies_an_order_that_increases_or_flips_the_position(pm: pluggy.PluginManager, side: Side,
                                                                       qty: str) -> None:
    d = desk(pm)
    d.own(Side.BUY, "1", "100")
    d.trading.reduce("loss")

    assert d.codes(side, qty, "100.1") == ["reducing_only"]


def test_reducing_counts_open_reducing_orders_against_the_position(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    d.own(Side.BUY, "1", "100")
    d.rest(Side.SELL, "0.8", "100.2")
    d.trading.reduce("loss")

    assert d.codes(Side.SELL, "0.3", "100.1") == ["reducing_only"]
    assert d.codes(Side.SELL, "0.2", "100.1") == []


def test_reduce_only_order_that_would_increase_is_denied_while_active(pm: pluggy.PluginManager) -> None:
    d = desk(pm)

    assert d.codes(Side.BUY, "0.01", "100.1", reduce_only=True) == ["reduce_only_increases"]


# -- the gate itself -------------------------------------------------------------------------------


def test_approved_intent_publishes_nothing(pm: pluggy.PluginManager) -> None:
    d = desk(pm)

    assert d.check() == []
    assert d.published == []
    assert (d.gate.checked, d.gate.approved) == (1, 1)


def test_every_denial_is_published_logged_and_counted(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_order_quantity="0.5", price_band_bps=10)

    with capture_logs() as logs:
        denials = d.check(Side.BUY, "1", "110.0")

    assert {x.code for x in denials} == {"max_order_quantity", "price_band"}
    assert [(e.code, e.check) for e in d.published if isinstance(e, OrderDenied)] == [
        (x.code, x.check) for x in denials]
    assert {(log["code"], log["check"], log["symbol"]) for log in logs} == {
        ("max_order_quantity", "order_size", BTC), ("price_band", "price_band", BTC)}
    assert all(log["reason"] for log in logs)
    assert d.gate.counts == {("order_size", "max_order_quantity"): 1, ("price_band", "price_band"): 1}
    assert d.gate.counts_by_code() == {"max_order_quantity": 1, "price_band": 1}
    assert d.gate.counts_by_check() == {"order_size": 1, "price_band": 1}


def test_a_check_that_raises_denies_the_order(pm: pluggy.PluginManager) -> None:
    class Broken:
        @hookimpl
        def botframe_check_order(self, intent: OrderIntent, context: RiskContext) -> Denial | None:
            raise RuntimeError("boom")

    pm.register(Broken(), name="broken")
    try:
        d = desk(pm)
        with capture_logs():
            denials = d.check()
    finally:
        pm.unregister(name="broken")

    assert [(x.code, x.check) for x in denials] == [("check_error", "risk_gate")]
    assert "boom" in denials[0].reason


def test_a_check_returning_something_else_than_a_denial_denies_the_order(pm: pluggy.PluginManager) -> None:
    class Sloppy:
        @hookimpl
        def botframe_check_order(self, intent: OrderIntent, context: RiskContext) -> object:
            return "no"

    pm.register(Sloppy(), name="sloppy")
    try:
        d = desk(pm)
        codes = d.codes()
    finally:
        pm.unregister(name="sloppy")

    assert codes == ["bad_check_result"]


def test_cancel_rate_limit_denies_beyond_the_burst_and_refills(pm: pluggy.PluginManager) -> None:
    d = desk(pm, cancels_per_sec=2, cancel_burst=2)
    d.rest(Side.BUY, "0.01", "100.0")
    order = d.orders.open_orders()[0]

    first = [d.gate.check_cancel(order) for _ in range(3)]
    forced = d.gate.check_cancel(order, force=True)
    d.clock.advance(0.5)
    later = d.gate.check_cancel(order)

    assert [x.code if x else None for x in first] == [None, None, "cancel_rate"]
    assert forced is None
    assert later is None


def test_total_cancel_rate_limit_spans_symbols(pm: pluggy.PluginManager) -> None:
    d = desk(pm, cancels_per_sec_total=1, cancel_burst_total=1)
    d.rest(Side.BUY, "0.01", "100.0")
    d.rest(Side.BUY, "0.01", "100.0", symbol=ETH)
    btc, eth = d.orders.open_orders(V, BTC)[0], d.orders.open_orders(V, ETH)[0]

    assert d.gate.check_cancel(btc) is None
    denial = d.gate.check_cancel(eth)

    assert denial is not None
    assert denial.code == "cancel_rate_total"


def test_token_bucket_refills_at_its_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(per_sec=10, burst=2, now_ns=0)

    taken = [bucket.take(0) for _ in range(3)]
    after_100ms = bucket.take(100_000_000)
    after_10s = bucket.available(10_000_000_000)

    assert taken == [True, True, False]
    assert after_100ms
    assert after_10s == 2.0


# -- built-in checks -------------------------------------------------------------------------------


def test_all_built_in_checks_are_registered_as_separate_implementations(pm: pluggy.PluginManager) -> None:
    names = {impl.function.__name__ for impl in pm.hook.botframe_check_order.get_hookimpls()}

    assert names == set(risk_limits.__all__)


def test_order_quantity_above_maximum_is_denied(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_order_quantity="0.5")

    assert d.codes(Side.BUY, "0.5") == []
    assert d.codes(Side.BUY, "0.501") == ["max_order_quantity"]


def test_order_notional_above_maximum_is_denied(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_order_notional="100.1")

    assert d.codes(Side.BUY, "1", "100.1") == []
    assert d.codes(Side.BUY, "1.001", "100.1") == ["max_order_notional"]


def test_market_order_notional_is_judged_at_the_opposite_best(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_order_notional="100")

    assert d.codes(Side.SELL, "0.999", None) == []  # at the bid, 100.0 x 0.999
    assert d.codes(Side.BUY, "0.999", None) == ["max_order_notional"]  # at the ask, 100.2 x 0.999


def test_per_symbol_override_applies_to_that_symbol_only(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_order_quantity="1", symbols={BTC: {"max_order_quantity": "0.1"}})

    assert d.codes(Side.BUY, "0.2", symbol=BTC) == ["max_order_quantity"]
    assert d.codes(Side.BUY, "0.2", symbol=ETH) == []


def test_position_limit_denies_an_order_that_would_exceed_it(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_position="1")
    d.own(Side.BUY, "0.8", "100")

    assert d.codes(Side.BUY, "0.2") == []
    assert d.codes(Side.BUY, "0.3") == ["max_position"]


def test_position_limit_counts_open_orders_on_the_same_side(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_position="1")
    d.rest(Side.BUY, "0.7", "100.0")
    d.rest(Side.SELL, "0.5", "100.5")

    assert d.codes(Side.BUY, "0.4") == ["max_position"]
    assert d.codes(Side.BUY, "0.3") == []


def test_position_limit_applies_to_shorts_too(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_position="1")
    d.own(Side.SELL, "1", "100")

    assert d.codes(Side.SELL, "0.01", "100.1") == ["max_position"]
    assert d.codes(Side.BUY, "0.5", "100.1") == []


def test_gross_exposure_limit_denies_an_increase_beyond_it(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_gross_exposure="150")
    d.own(Side.SELL, "1", "50", symbol=ETH)

    assert d.codes(Side.BUY, "0.99", "100.1") == []  # 50 + 99.099
    assert d.codes(Side.BUY, "1", "100.1") == ["max_gross_exposure"]


def test_gross_exposure_limit_still_allows_reducing(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_gross_exposure="50")
    d.own(Side.BUY, "1", "100")

    assert d.codes(Side.SELL, "0.5", "100.1") == []


def test_open_orders_limit_per_symbol(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_open_orders=2)
    d.rest(Side.BUY, "0.01", "99.0")

    assert d.codes() == []
    d.rest(Side.BUY, "0.01", "99.1")
    assert d.codes() == ["max_open_orders"]
    assert d.codes(symbol=ETH) == []


def test_open_orders_limit_in_total(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_open_orders_total=2)
    d.rest(Side.BUY, "0.01", "99.0")
    d.rest(Side.BUY, "0.01", "99.0", symbol=ETH)

    assert d.codes() == ["max_open_orders_total"]


def test_order_rate_limit_denies_beyond_the_burst_and_refills(pm: pluggy.PluginManager) -> None:
    d = desk(pm, orders_per_sec=2, order_burst=3)

    burst = [d.codes() for _ in range(4)]
    d.clock.advance(0.5)

    assert burst == [[], [], [], ["order_rate"]]
    assert d.codes() == []
    assert d.codes() == ["order_rate"]


def test_order_rate_limit_is_per_symbol(pm: pluggy.PluginManager) -> None:
    d = desk(pm, orders_per_sec=1, order_burst=1)
    d.check(symbol=BTC)

    assert d.codes(symbol=BTC) == ["order_rate"]
    assert d.codes(symbol=ETH) == []


def test_total_order_rate_limit_spans_symbols(pm: pluggy.PluginManager) -> None:
    d = desk(pm, orders_per_sec_total=1, order_burst_total=2)
    d.check(symbol=BTC)
    d.check(symbol=ETH)

    assert d.codes(symbol=BTC) == ["order_rate_total"]


def test_denied_orders_do_not_spend_rate_limit_tokens(pm: pluggy.PluginManager) -> None:
    d = desk(pm, orders_per_sec=1, order_burst=1, max_order_quantity="1")
    d.check(Side.BUY, "5")  # denied by size

    assert d.codes(Side.BUY, "0.5") == []


@pytest.mark.parametrize(("side", "price", "allowed"), [
    (Side.BUY, "100.1", True), (Side.BUY, "105.1", True), (Side.BUY, "105.2", False),
    (Side.SELL, "95.1", True), (Side.SELL, "95.0", False),
])
def test_limit_price_outside_the_band_around_mid_is_denied(pm: pluggy.PluginManager, side: Side, price: str,
                                                           allowed: bool) -> None:
    d = desk(pm, price_band_bps=500)  # mid 100.1: 95.095 .. 105.105

    assert d.codes(side, "0.1", price) == ([] if allowed else ["price_band"])


def test_price_band_can_use_the_microprice(pm: pluggy.PluginManager) -> None:
    d = desk(pm, price_band_bps=5, price_band_reference="microprice")
    d.books[(V, BTC)] = d.live_book(BTC, bids=[(100.0, 9.0)], asks=[(100.2, 1.0)])  # microprice 100.18

    assert d.codes(Side.BUY, "0.1", "100.2") == []
    assert d.codes(Side.BUY, "0.1", "100.1") == ["price_band"]


def test_market_orders_are_outside_the_price_band_check(pm: pluggy.PluginManager) -> None:
    d = desk(pm, price_band_bps=1)

    assert d.codes(Side.BUY, "0.1", None) == []


def test_order_without_a_book_is_denied(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    del d.books[(V, BTC)]

    assert d.codes() == ["no_book"]


@pytest.mark.parametrize("health", [BookHealth.RESYNCING])
def test_order_on_a_book_that_is_not_live_is_denied(pm: pluggy.PluginManager, health: BookHealth) -> None:
    d = desk(pm)
    d.books[(V, BTC)].set_health(health, HealthReason.GAP, d.clock.time_ns())

    assert d.codes() == ["book_not_live"]


def test_order_on_a_syncing_book_is_denied(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    book = L2Book(V, BTC)
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 0)
    d.books[(V, BTC)] = book

    assert d.codes() == ["book_not_live"]


def test_order_on_a_stale_book_is_denied(pm: pluggy.PluginManager) -> None:
    d = desk(pm, stale_after_ms=1000)

    d.clock.advance(1.0)
    fresh = d.codes()
    d.clock.advance(0.001)
    stale = d.codes()

    assert fresh == []
    assert stale == ["book_stale"]


def test_order_on_a_book_with_an_empty_side_is_denied(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    book = d.books[(V, BTC)]
    book.clear()

    assert d.codes(Side.BUY, "0.1", "100.1") == ["book_empty"]


@pytest.mark.parametrize(("side", "price", "crosses"), [
    (Side.BUY, "100.5", True), (Side.BUY, "100.6", True), (Side.BUY, "100.4", False),
    (Side.BUY, None, True), (Side.SELL, "100.1", False),
])
def test_order_crossing_our_own_resting_order_is_denied(pm: pluggy.PluginManager, side: Side,
                                                        price: str | None, crosses: bool) -> None:
    d = desk(pm, self_trade_prevention=True)
    d.rest(Side.SELL, "0.1", "100.5")

    assert d.codes(side, "0.1", price) == (["self_trade"] if crosses else [])


def test_self_trade_prevention_can_be_switched_off_per_symbol(pm: pluggy.PluginManager) -> None:
    d = desk(pm, self_trade_prevention=True, symbols={BTC: {"self_trade_prevention": False}})
    d.rest(Side.SELL, "0.1", "100.1")

    assert d.codes(Side.BUY, "0.1", "100.1") == []


def test_drawdown_beyond_the_limit_halts_trading(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_drawdown="20")
    d.own(Side.BUY, "1", "100")
    d.portfolio.mark(V, BTC, 130.0)
    d.portfolio.mark(V, BTC, 115.0)  # 15 below the peak of +30: fine

    assert d.codes(Side.SELL, "0.1", "100.1") == []

    d.portfolio.mark(V, BTC, 109.0)  # 21 below the peak
    with capture_logs():
        first = d.codes(Side.SELL, "0.1", "100.1")
        second = d.codes(Side.SELL, "0.1", "100.1")

    assert first == ["max_drawdown"]
    assert second == ["halted"]
    assert d.trading.state is TradingState.HALTED
    changes = [e for e in d.published if isinstance(e, TradingStateChanged)]
    assert [(c.previous, c.state) for c in changes] == [(TradingState.ACTIVE, TradingState.HALTED)]


def test_daily_loss_beyond_the_limit_halts_trading(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_daily_loss="10")
    d.own(Side.BUY, "1", "100")
    assert d.codes() == []  # the day's baseline: PnL 0

    d.portfolio.mark(V, BTC, 89.0)

    assert d.codes() == ["max_daily_loss"]
    assert d.trading.state is TradingState.HALTED


def test_daily_loss_is_measured_from_the_start_of_each_day(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_daily_loss="10")
    d.own(Side.BUY, "1", "100")
    assert d.codes() == []
    d.portfolio.mark(V, BTC, 92.0)  # -8 today
    assert d.codes() == []

    d.clock.advance(86_400)
    d.portfolio.mark(V, BTC, 85.0)  # -15 overall, but only -7 since the new day's first look at -8

    assert d.codes() == []


def test_kill_switch_to_reducing_still_lets_the_position_be_closed(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_daily_loss="10", kill_switch_state="reducing")
    d.own(Side.BUY, "1", "100")
    assert d.codes() == []
    d.portfolio.mark(V, BTC, 80.0)

    increase = d.codes(Side.BUY, "0.1", "100.1")
    reduce = d.codes(Side.SELL, "0.5", "100.1")

    assert increase == ["max_daily_loss"]
    assert reduce == []
    assert d.trading.state is TradingState.REDUCING


def test_kill_switch_trips_on_periodic_evaluation_without_orders(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_drawdown="5")
    d.own(Side.BUY, "1", "100")
    d.portfolio.mark(V, BTC, 90.0)

    denial = d.gate.evaluate_kill_switch()

    assert denial is not None
    assert denial.code == "max_drawdown"
    assert d.trading.state is TradingState.HALTED
    assert any(isinstance(e, TradingStateChanged) for e in d.published)


def test_loss_limits_off_by_default_never_move_the_state(pm: pluggy.PluginManager) -> None:
    d = desk(pm)
    d.own(Side.BUY, "1", "100")
    d.portfolio.mark(V, BTC, 1.0)

    assert d.codes(Side.SELL, "0.5", "100.1") == []
    assert d.trading.state is TradingState.ACTIVE


def test_default_settings_approve_an_ordinary_order(pm: pluggy.PluginManager) -> None:
    d = Desk(pm=pm, settings=RiskSettings())

    assert d.check(Side.BUY, "0.05", "100.1") == []


def test_resume_after_the_kill_switch_measures_losses_from_there(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_drawdown="5")
    d.own(Side.BUY, "1", "100")
    d.portfolio.mark(V, BTC, 90.0)
    with capture_logs():
        assert d.codes(Side.SELL, "0.1", "100.1") == ["max_drawdown"]

        event = d.gate.resume("operator accepted the loss")

    assert event is not None
    assert (event.previous, event.state) == (TradingState.HALTED, TradingState.ACTIVE)
    assert event in d.published
    assert d.codes(Side.SELL, "0.1", "100.1") == []
    d.portfolio.mark(V, BTC, 84.0)
    assert d.codes(Side.SELL, "0.1", "100.1") == ["max_drawdown"]


def test_loss_verdict_is_recomputed_when_the_portfolio_changes(pm: pluggy.PluginManager) -> None:
    d = desk(pm, max_drawdown="5")
    d.own(Side.BUY, "1", "100")
    assert d.codes() == []

    d.own(Side.SELL, "1", "90")  # a realized loss of 10, no mark involved

    assert d.codes(Side.SELL, "0.1", "100.1") == ["max_drawdown"]
