"""The paper fill engine on hand-built books and trades: queue position, taking, flags, latency, fees."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label_example
from hypothesis import strategies as st

from botframe.book import L2Book
from botframe.events import (
    BookDelta,
    BookHealth,
    BookSnapshot,
    Fill,
    HealthReason,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    Trade,
)
from botframe_plugins.paper.engine import (
    CancelAttribution,
    EngineConfig,
    FeeSchedule,
    FillEngine,
    InstrumentRules,
    LatencyModel,
    OffGridPolicy,
    Report,
)

VENUE = "sim"
SYMBOL = "BTC/USDT"
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
RULES = InstrumentRules(tick_size=Decimal("0.1"), lot_size=Decimal("0.01"), min_notional=Decimal("5"))

D = Decimal


class Market:
    """One live book, the engine, a clock in ns and everything the engine reported."""

    def __init__(self, config: EngineConfig | None = None, rules: InstrumentRules = RULES,
                 *, live: bool = True) -> None:
        self.book = L2Book(VENUE, SYMBOL)
        if live:
            self.book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, T0)
            self.book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, T0)
        self.engine = FillEngine(
            config or EngineConfig(),
            books=lambda v, s: self.book if (v, s) == (VENUE, SYMBOL) else None,
            instruments=lambda v, s: rules,
        )
        self.now = T0
        self.out: list[Report] = []
        self._ids = 0

    # -- inputs --
    def snapshot(self, bids: Sequence[tuple[float, float]], asks: Sequence[tuple[float, float]]) -> None:
        event = BookSnapshot(venue=VENUE, symbol=SYMBOL, bids=list(bids), asks=list(asks))
        self.book.apply_snapshot(event)
        self.out += self.engine.on_book(event, self.now)

    def delta(self, bids: Sequence[tuple[float, float]] = (),
              asks: Sequence[tuple[float, float]] = ()) -> None:
        event = BookDelta(venue=VENUE, symbol=SYMBOL, bids=list(bids), asks=list(asks))
        self.book.apply_delta(event)
        self.out += self.engine.on_book(event, self.now)

    def trade(self, aggressor: Side, price: float, size: float) -> None:
        self.out += self.engine.on_trade(
            Trade(venue=VENUE, symbol=SYMBOL, price=price, size=size, side=aggressor), self.now)

    def submit(self, side: Side, quantity: str, price: str | None = None, **kw: object) -> str:
        self._ids += 1
        cid = f"o{self._ids}"
        order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
        intent = OrderIntent(client_order_id=cid, strategy="t", venue=VENUE, symbol=SYMBOL, side=side,
                             quantity=D(quantity), price=D(price) if price is not None else None,
                             order_type=order_type, ts_ns=self.now, **kw)  # type: ignore[arg-type]
        self.out += self.engine.submit(intent, self.now)
        return cid

    def cancel(self, cid: str) -> None:
        self.out += self.engine.cancel(cid, self.now)

    def replace(self, cid: str, new_cid: str, quantity: str, price: str | None) -> None:
        self.out += self.engine.replace(cid, new_cid, quantity=D(quantity),
                                        price=D(price) if price is not None else None, now_ns=self.now)

    def advance(self, ns: int) -> None:
        self.now += ns
        self.out += self.engine.advance(self.now)

    # -- reads --
    def fills(self, cid: str | None = None) -> list[Fill]:
        return [e for e in self.out if isinstance(e, Fill) and (cid is None or e.client_order_id == cid)]

    def updates(self, cid: str) -> list[OrderUpdate]:
        return [e for e in self.out if isinstance(e, OrderUpdate) and e.client_order_id == cid]

    def status(self, cid: str) -> OrderStatus | None:
        ups = self.updates(cid)
        return ups[-1].status if ups else None

    def filled(self, cid: str) -> Decimal:
        return sum((f.quantity for f in self.fills(cid)), D(0))


def resting_bid(m: Market, *, level: float = 5.0) -> str:
    """A book 100.0 bid / 100.5 ask and our 1.00 buy resting at 100.0 behind ``level``."""
    m.snapshot(bids=[(100.0, level), (99.9, 3.0)], asks=[(100.5, 2.0), (100.6, 4.0)])
    return m.submit(Side.BUY, "1", "100.0")


# -- queue position ---------------------------------------------------------------------------------


def test_limit_order_joins_behind_the_size_already_at_its_price() -> None:
    m = Market()

    cid = resting_bid(m, level=5.0)

    assert m.status(cid) is OrderStatus.ACCEPTED
    assert m.engine.queue_ahead(cid) == D("5.0")
    assert m.fills() == []


def test_trade_at_our_price_moves_us_up_without_filling_while_size_is_ahead() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)

    m.trade(Side.SELL, 100.0, 3.0)

    assert m.engine.queue_ahead(cid) == D("2.0")
    assert m.fills() == []


def test_level_decrease_explained_by_a_trade_is_not_counted_again_as_cancels() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)

    m.trade(Side.SELL, 100.0, 3.0)
    m.delta(bids=[(100.0, 2.0)])

    assert m.engine.queue_ahead(cid) == D("2.0")


def test_unexplained_level_decrease_is_cancels_attributed_pro_rata() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)
    m.delta(bids=[(100.0, 10.0)])  # 5 more join behind us

    m.delta(bids=[(100.0, 6.0)])  # 4 cancelled, 5 of 10 were ahead: half of them ahead

    assert m.engine.queue_ahead(cid) == D(3)


@pytest.mark.parametrize(("attribution", "ahead"), [
    (CancelAttribution.PRO_RATA, D(3)),
    (CancelAttribution.BACK, D(5)),
    (CancelAttribution.FRONT, D(1)),
])
def test_venue_cancel_attribution_decides_how_far_cancels_move_us(attribution: CancelAttribution,
                                                                   ahead: Decimal) -> None:
    m = Market(EngineConfig(cancel_attribution=CancelAttribution.PRO_RATA,
                            cancel_attribution_by_venue={VENUE: attribution}))
    cid = resting_bid(m, level=5.0)
    m.delta(bids=[(100.0, 10.0)])

    m.delta(bids=[(100.0, 6.0)])

    assert m.engine.queue_ahead(cid) == ahead


def test_level_removed_without_trades_puts_us_at_the_front() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)

    m.delta(bids=[(100.0, 0.0)])

    assert m.engine.queue_ahead(cid) == 0
    assert m.fills() == []


def test_fills_partly_then_fully_only_when_size_trades_through_our_place() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)
    m.trade(Side.SELL, 100.0, 4.0)  # 1 left ahead

    m.trade(Side.SELL, 100.0, 1.5)  # 1 eats the queue, 0.5 fills us
    first = m.fills(cid)
    m.trade(Side.SELL, 100.0, 2.0)  # the remaining 0.5 fills

    assert [f.quantity for f in first] == [D("0.5")]
    assert [f.quantity for f in m.fills(cid)] == [D("0.5"), D("0.5")]
    assert all(f.price == D("100.0") and f.liquidity == "maker" for f in m.fills(cid))
    assert [u.status for u in m.updates(cid)][-2:] == [OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    assert m.updates(cid)[-1].filled_quantity == D(1)


def test_trade_through_our_price_fills_us_up_to_the_traded_size() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)

    m.trade(Side.SELL, 99.9, 0.4)

    assert [(f.price, f.quantity) for f in m.fills(cid)] == [(D("100.0"), D("0.4"))]
    assert m.engine.queue_ahead(cid) == 0


def test_trade_through_fills_our_better_priced_orders_first() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 5.0), (99.9, 3.0)], asks=[(100.5, 2.0)])
    low = m.submit(Side.BUY, "1", "99.9")
    high = m.submit(Side.BUY, "1", "100.0")

    m.trade(Side.SELL, 99.8, 1.5)

    assert m.filled(high) == D(1)
    assert m.filled(low) == D("0.5")


def test_snapshot_restates_our_level_like_a_delta() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)
    m.delta(bids=[(100.0, 10.0)])

    m.snapshot(bids=[(100.0, 6.0)], asks=[(100.5, 2.0)])

    assert m.engine.queue_ahead(cid) == D(3)


def test_no_fill_from_trades_at_prices_the_book_did_not_offer_us() -> None:
    m = Market()
    cid = resting_bid(m, level=0.0001)

    m.trade(Side.SELL, 100.1, 5.0)  # a sell above our bid never reaches us
    m.trade(Side.BUY, 100.0, 5.0)  # a buyer lifting at our price is on our side, not against us
    m.trade(Side.BUY, 100.5, 5.0)

    assert m.fills(cid) == []


def test_ask_moving_onto_our_bid_fills_us_as_maker_at_our_price() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)
    m.delta(bids=[(100.0, 0.0)])  # the public bid leaves: our 100.0 bid is alone at the top

    m.delta(asks=[(100.0, 0.4)])  # a seller posts at our price

    assert [(f.price, f.quantity, f.liquidity) for f in m.fills(cid)] == [(D("100.0"), D("0.4"), "maker")]


def test_own_orders_at_one_price_keep_time_priority() -> None:
    m = Market()
    first = resting_bid(m, level=1.0)
    second = m.submit(Side.BUY, "1", "100.0")

    m.trade(Side.SELL, 100.0, 2.5)  # 1 public, 1 to the first order, 0.5 to the second

    assert m.filled(first) == D(1)
    assert m.filled(second) == D("0.5")


# -- taking liquidity -------------------------------------------------------------------------------


def test_market_order_walks_the_book_and_expires_when_depth_runs_out() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])

    cid = m.submit(Side.BUY, "5")

    assert [(f.price, f.quantity, f.liquidity) for f in m.fills(cid)] == [
        (D("100.5"), D("1.00"), "taker"), (D("100.6"), D("2.00"), "taker")]
    last = m.updates(cid)[-1]
    assert last.status is OrderStatus.EXPIRED
    assert last.filled_quantity == D(3)
    assert "depth exhausted" in last.reason


def test_two_orders_cannot_take_the_same_liquidity_in_one_book_state() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])

    a = m.submit(Side.BUY, "1")
    b = m.submit(Side.BUY, "1")

    assert [f.price for f in m.fills(a)] == [D("100.5")]
    assert [f.price for f in m.fills(b)] == [D("100.6")]


def test_taken_liquidity_comes_back_when_the_venue_restates_the_level() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])
    m.submit(Side.BUY, "1")

    m.delta(asks=[(100.5, 1.0)])
    b = m.submit(Side.BUY, "1")

    assert [f.price for f in m.fills(b)] == [D("100.5")]


def test_size_taken_by_an_order_sent_while_the_book_event_is_handled_is_remembered() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])
    event = BookDelta(venue=VENUE, symbol=SYMBOL, bids=[], asks=[(100.5, 1.0)])
    m.book.apply_delta(event)  # the engine's book has the event; strategies run before the executor
    a = m.submit(Side.BUY, "1")

    m.out += m.engine.on_book(event, m.now)  # the executor's own subscription sees the event last
    b = m.submit(Side.BUY, "1")

    assert [f.price for f in m.fills(a)] == [D("100.5")]
    assert [f.price for f in m.fills(b)] == [D("100.6")]


def test_marketable_limit_takes_within_its_price_and_rests_the_rest() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])

    cid = m.submit(Side.BUY, "3", "100.5")

    assert [(f.price, f.quantity) for f in m.fills(cid)] == [(D("100.5"), D("1.00"))]
    assert m.status(cid) is OrderStatus.PARTIALLY_FILLED
    assert m.engine.queue_ahead(cid) == 0


# -- flags ------------------------------------------------------------------------------------------


def test_ioc_remainder_expires_instead_of_resting() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])

    cid = m.submit(Side.BUY, "3", "100.5", time_in_force=TimeInForce.IOC)

    assert m.filled(cid) == D(1)
    assert m.status(cid) is OrderStatus.EXPIRED
    assert m.engine.queue_ahead(cid) is None


def test_fok_without_enough_size_expires_with_no_fill() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])

    cid = m.submit(Side.BUY, "4", "100.6", time_in_force=TimeInForce.FOK)

    assert m.fills(cid) == []
    assert m.status(cid) is OrderStatus.EXPIRED
    assert "only 3.00 of 4 available" in m.updates(cid)[-1].reason


def test_fok_with_enough_size_fills_completely() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0), (100.6, 2.0)])

    cid = m.submit(Side.BUY, "3", "100.6", time_in_force=TimeInForce.FOK)

    assert m.filled(cid) == D(3)
    assert m.status(cid) is OrderStatus.FILLED


def test_post_only_that_would_cross_is_rejected_with_the_reason() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    cid = m.submit(Side.BUY, "1", "100.5", post_only=True)

    assert m.status(cid) is OrderStatus.REJECTED
    assert "post-only buy at 100.5 would cross the best ask 100.5" in m.updates(cid)[-1].reason
    assert m.fills() == []


def test_post_only_that_does_not_cross_rests() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    cid = m.submit(Side.BUY, "1", "100.4", post_only=True)

    assert m.status(cid) is OrderStatus.ACCEPTED
    assert m.engine.queue_ahead(cid) == 0


def test_reduce_only_is_rejected_when_it_would_not_reduce() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    cid = m.submit(Side.SELL, "1", reduce_only=True)

    assert m.status(cid) is OrderStatus.REJECTED
    assert "would not reduce the position (0)" in m.updates(cid)[-1].reason


def test_reduce_only_never_fills_beyond_the_position() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 5.0)])
    m.engine.set_position(VENUE, SYMBOL, D("-2"))

    cid = m.submit(Side.BUY, "5", reduce_only=True)

    assert m.filled(cid) == D(2)
    assert m.status(cid) is OrderStatus.EXPIRED
    assert m.engine.position(VENUE, SYMBOL) == 0


def test_resting_reduce_only_order_expires_once_the_position_is_closed() -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 0.0001)], asks=[(100.5, 5.0)])
    m.engine.set_position(VENUE, SYMBOL, D("-1"))
    resting = m.submit(Side.BUY, "1", "100.0", reduce_only=True)
    m.submit(Side.BUY, "1")  # closes the short

    m.trade(Side.SELL, 100.0, 5.0)

    assert m.fills(resting) == []
    assert m.status(resting) is OrderStatus.EXPIRED
    assert m.engine.position(VENUE, SYMBOL) == 0


# -- cancel and replace -------------------------------------------------------------------------------


def test_cancel_removes_the_order_from_the_queue() -> None:
    m = Market()
    cid = resting_bid(m)

    m.cancel(cid)
    m.trade(Side.SELL, 99.0, 10.0)

    assert m.status(cid) is OrderStatus.CANCELLED
    assert m.fills(cid) == []


def test_cancel_of_an_unknown_order_is_a_notice_not_an_error() -> None:
    m = Market()

    m.cancel("nope")

    notices = m.engine.take_notices()
    assert [n.kind for n in notices] == ["unknown_order"]
    assert m.out == []


def test_replace_that_only_reduces_size_keeps_queue_priority() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)
    m.trade(Side.SELL, 100.0, 3.0)

    m.replace(cid, "r1", "0.5", None)

    assert m.status(cid) is OrderStatus.CANCELLED
    assert m.updates(cid)[-1].reason == "replaced by r1"
    assert m.status("r1") is OrderStatus.ACCEPTED
    assert m.engine.queue_ahead("r1") == D(2)


@pytest.mark.parametrize(("quantity", "price"), [("2", None), ("1", "99.9"), ("0.5", "99.9")])
def test_replace_that_grows_or_moves_loses_queue_priority(quantity: str, price: str | None) -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)
    m.trade(Side.SELL, 100.0, 3.0)
    m.delta(bids=[(100.0, 2.0)])

    m.replace(cid, "r1", quantity, price)

    expected = D("2.0") if price is None else D("3.0")  # the back of the 100.0 or the 99.9 level
    assert m.engine.queue_ahead("r1") == expected


def test_refused_replace_leaves_the_old_order_working() -> None:
    m = Market()
    cid = resting_bid(m, level=5.0)

    m.replace(cid, "r1", "0.005", None)

    assert m.status("r1") is OrderStatus.REJECTED
    assert "lot size" in m.updates("r1")[-1].reason
    assert m.status(cid) is OrderStatus.ACCEPTED
    assert m.engine.queue_ahead(cid) == D(5)


# -- latency ----------------------------------------------------------------------------------------


def test_order_reaches_the_venue_only_after_the_order_latency() -> None:
    m = Market(EngineConfig(order_latency=LatencyModel.from_ms(5)))
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    cid = m.submit(Side.BUY, "1")
    m.advance(4 * MS)
    before = list(m.out)
    m.advance(1 * MS)

    assert before == []
    assert m.fills(cid)[0].ts_ns == T0 + 5 * MS


def test_reports_come_back_after_the_report_latency() -> None:
    m = Market(EngineConfig(report_latency=LatencyModel.from_ms(3)))
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    cid = m.submit(Side.BUY, "1")
    before = list(m.out)
    m.advance(3 * MS)

    assert before == []
    assert m.status(cid) is OrderStatus.FILLED
    assert m.fills(cid)[0].ts_ns == T0  # stamped when the venue filled it


def test_requests_arrive_in_the_order_sent_whatever_the_jitter() -> None:
    m = Market(EngineConfig(order_latency=LatencyModel.from_ms(1, 20), seed=7))
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])
    ids = []
    for _ in range(20):
        ids.append(m.submit(Side.BUY, "0.1", "99.0"))
        m.cancel(ids[-1])
        m.now += MS // 10

    m.advance(100 * MS)

    assert all(m.status(cid) is OrderStatus.CANCELLED for cid in ids)
    accepted = [e.client_order_id for e in m.out if isinstance(e, OrderUpdate)
                and e.status is OrderStatus.ACCEPTED]
    assert accepted == ids


def test_a_trade_before_the_order_arrives_does_not_fill_it() -> None:
    m = Market(EngineConfig(order_latency=LatencyModel.from_ms(5)))
    m.snapshot(bids=[(100.0, 0.0001)], asks=[(100.5, 1.0)])
    cid = m.submit(Side.BUY, "1", "100.0")

    m.advance(2 * MS)
    m.trade(Side.SELL, 100.0, 5.0)
    m.advance(3 * MS)

    assert m.status(cid) is OrderStatus.ACCEPTED
    assert m.fills(cid) == []


# -- fees and rules ---------------------------------------------------------------------------------


def test_fees_are_maker_or_taker_per_venue_in_quote_currency() -> None:
    config = EngineConfig(fees=FeeSchedule(D(9), D(9)), fees_by_venue={VENUE: FeeSchedule(D("-1"), D("5"))})
    m = Market(config)
    m.snapshot(bids=[(100.0, 0.0)], asks=[(100.5, 1.0)])
    taker = m.submit(Side.BUY, "1")
    maker = m.submit(Side.BUY, "2", "100.0")

    m.trade(Side.SELL, 100.0, 2.0)

    assert m.fills(taker)[0].fee == D("100.5") * 1 * D(5) / 10_000
    assert m.fills(maker)[0].fee == D("-0.02")
    assert m.fills(maker)[0].liquidity == "maker"


@pytest.mark.parametrize(("quantity", "price", "reason"), [
    ("1", "100.05", "price 100.05 is not a multiple of the tick size 0.1"),
    ("0.015", "100.0", "quantity 0.015 is not a multiple of the lot size 0.01"),
    ("0.04", "100.0", "notional 4.000 is below the minimum notional 5"),
    ("0", "100.0", "quantity 0 must be positive"),
])
def test_orders_off_the_instrument_rules_are_rejected_saying_why(quantity: str, price: str,
                                                                   reason: str) -> None:
    m = Market()
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    cid = m.submit(Side.BUY, quantity, price)

    assert m.status(cid) is OrderStatus.REJECTED
    assert m.updates(cid)[-1].reason == reason


def test_round_policy_rounds_towards_the_passive_side() -> None:
    m = Market(EngineConfig(off_grid=OffGridPolicy.ROUND))
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    buy = m.submit(Side.BUY, "1.019", "100.09")
    sell = m.submit(Side.SELL, "1", "100.51")

    assert (m.updates(buy)[-1].price, m.updates(buy)[-1].quantity) == (D("100.0"), D("1.01"))
    assert m.updates(sell)[-1].price == D("100.6")


def test_order_on_a_book_that_is_not_live_is_rejected() -> None:
    m = Market(live=False)
    m.snapshot(bids=[(100.0, 1.0)], asks=[(100.5, 1.0)])

    cid = m.submit(Side.BUY, "1")

    assert m.status(cid) is OrderStatus.REJECTED
    assert "not live" in m.updates(cid)[-1].reason


# -- determinism ------------------------------------------------------------------------------------


def _scripted_run(seed: int) -> list[Report]:
    m = Market(EngineConfig(order_latency=LatencyModel.from_ms(1, 3),
                            report_latency=LatencyModel.from_ms(1, 3), seed=seed))
    m.snapshot(bids=[(100.0, 2.0), (99.9, 3.0)], asks=[(100.5, 1.0), (100.6, 2.0)])
    for i in range(30):
        price = None if i % 3 == 0 else ("100.0" if i % 2 else "100.5")
        m.submit(Side.BUY if i % 2 else Side.SELL, "0.3", price)
        m.advance(MS)
        m.trade(Side.SELL if i % 2 else Side.BUY, 100.0 if i % 2 else 100.5, 0.7)
        m.delta(bids=[(100.0, 2.0 + i % 3)], asks=[(100.5, 1.0 + i % 2)])
        m.advance(MS)
    m.advance(50 * MS)
    return m.out


def test_same_events_and_seed_give_the_same_fills() -> None:
    first = _scripted_run(seed=1)
    second = _scripted_run(seed=1)

    assert first == second
    assert any(isinstance(e, Fill) for e in first)


# -- property: whatever happens, fills stay within what was asked and what the book offered --------


_prices = st.integers(min_value=997, max_value=1004).map(lambda i: i / 10)
_sizes = st.integers(min_value=0, max_value=300).map(lambda i: i / 100)
_levels = st.lists(st.tuples(_prices, _sizes), max_size=6)


def _mostly(usual: object, *rare: object) -> st.SearchStrategy[object]:
    return st.sampled_from([usual] * 4 + list(rare))


_order = st.tuples(st.just("order"), st.sampled_from(Side), st.integers(1, 300),
                   st.one_of(st.none(), _prices), _mostly(TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK),
                   _mostly(False, True), _mostly(False, True))
_trade = st.tuples(st.just("trade"), st.sampled_from(Side), _prices, _sizes)
_op = st.one_of(
    st.tuples(st.just("delta"), _levels, _levels),
    _trade,
    _trade,
    _order,
    _order,
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("replace"), st.integers(0, 40), st.integers(1, 300), st.one_of(st.none(), _prices)),
    st.tuples(st.just("wait"), st.integers(0, 5)),
)


def _uncrossed(book: L2Book, bids: list[tuple[float, float]], asks: list[tuple[float, float]]
               ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The delta's levels that keep the book uncrossed, as a venue's book always is."""
    bid_book, ask_book = dict(book.bids()), dict(book.asks())
    kept_bids: list[tuple[float, float]] = []
    kept_asks: list[tuple[float, float]] = []
    for p, s in bids:
        if s == 0 or p < min(ask_book, default=float("inf")):
            kept_bids.append((p, s))
            bid_book[p] = s
    for p, s in asks:
        if s == 0 or p > max((q for q, z in bid_book.items() if z), default=0.0):
            kept_asks.append((p, s))
            ask_book[p] = s
    return kept_bids, kept_asks


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, min_size=20, max_size=80), seed=st.integers(0, 3))
def test_no_overfill_no_fill_off_the_book_and_position_is_the_sum_of_fills(ops: list[tuple[object, ...]],
                                                                            seed: int) -> None:
    m = Market(EngineConfig(order_latency=LatencyModel.from_ms(0, 2), seed=seed),
               rules=InstrumentRules(D("0.1"), D("0.01")))
    m.snapshot(bids=[(100.0, 1.0), (99.9, 2.0)], asks=[(100.1, 1.0), (100.2, 2.0)])
    quantities: dict[str, Decimal] = {}
    limits: dict[str, Decimal | None] = {}
    taken: dict[tuple[Side, Decimal], Decimal] = {}  # by our taker orders, per level, this book state
    n_ids = 0
    for op in ops:
        before = len(m.out)
        trade: Trade | None = None
        kind = op[0]
        if kind == "delta":
            bids, asks = _uncrossed(m.book, op[1], op[2])  # type: ignore[arg-type]
            for p, _s in bids:
                taken.pop((Side.SELL, D(repr(p))), None)
            for p, _s in asks:
                taken.pop((Side.BUY, D(repr(p))), None)
            m.delta(bids=bids, asks=asks)
        elif kind == "trade":
            _k, side, price, size = op
            assert isinstance(side, Side)
            assert isinstance(price, float)
            assert isinstance(size, float)
            trade = Trade(venue=VENUE, symbol=SYMBOL, price=price, size=size, side=side)
            m.out += m.engine.on_trade(trade, m.now)
        elif kind == "order":
            _k, side, lots, price, tif, post_only, reduce_only = op
            assert isinstance(side, Side)
            assert isinstance(lots, int)
            assert isinstance(tif, TimeInForce)
            qty = D(lots) / 100
            px = None if price is None else D(repr(price))
            cid = m.submit(side, str(qty), None if px is None else str(px), time_in_force=tif,
                           post_only=bool(post_only), reduce_only=bool(reduce_only))
            n_ids += 1
            quantities[cid], limits[cid] = qty, px
        elif kind == "cancel":
            m.cancel(f"o{op[1]}")
        elif kind == "replace":
            _k, target, lots, price = op
            assert isinstance(lots, int)
            n_ids += 1
            new = f"r{n_ids}"
            px = None if price is None else D(repr(price))
            m.replace(f"o{target}", new, str(D(lots) / 100), None if px is None else str(px))
            old = f"o{target}"
            quantities[new] = D(lots) / 100
            limits[new] = None if limits.get(old) is None else (px if px is not None else limits[old])
        else:
            assert isinstance(op[1], int)
            m.advance(op[1] * MS)
        asks = {D(repr(p)): D(repr(s)) for p, s in m.book.asks()}
        bids = {D(repr(p)): D(repr(s)) for p, s in m.book.bids()}
        best_ask = min(asks, default=None)
        best_bid = max(bids, default=None)
        for event in m.out[before:]:
            if not isinstance(event, Fill):
                continue
            limit = limits[event.client_order_id]
            if event.liquidity == "taker":
                levels = asks if event.side is Side.BUY else bids
                assert event.price in levels
                key = (event.side, event.price)
                taken[key] = taken.get(key, D(0)) + event.quantity
                assert taken[key] <= levels[event.price]
            else:
                assert event.price == limit
                offered = [best_ask if event.side is Side.BUY else best_bid]
                if trade is not None and trade.side is event.side.opposite:
                    offered.append(D(repr(trade.price)))
                if event.side is Side.BUY:
                    assert any(o is not None and o <= event.price for o in offered)
                else:
                    assert any(o is not None and o >= event.price for o in offered)
            if limit is not None:
                assert event.price <= limit if event.side is Side.BUY else event.price >= limit
    m.out += m.engine.settle()
    kinds = {f.liquidity for f in m.fills()}
    label_example(f"fills: {'+'.join(sorted(kinds)) or 'none'}")
    for cid, qty in quantities.items():
        assert m.filled(cid) <= qty
    signed = sum((f.side.sign * f.quantity for f in m.fills()), D(0))
    assert m.engine.position(VENUE, SYMBOL) == signed
