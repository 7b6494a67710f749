"""The paper executor plugin: registration, settings, and trading from books and trades on a real bus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pydantic
import pytest
import structlog

from botframe.book import L2Book
from botframe.bus import EventBus
from botframe.clock import Clock, LiveClock, SimulatedClock
from botframe.events import (
    BookDelta,
    BookHealth,
    BookSnapshot,
    Event,
    Fill,
    HealthReason,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    Trade,
)
from botframe.plugins import Registry
from botframe.venues import Endpoints, Instrument
from botframe_plugins.paper.config import PaperSettings
from botframe_plugins.paper.engine import CancelAttribution, FeeSchedule, OffGridPolicy
from botframe_plugins.paper.plugin import PaperExecutor, botframe_register_executors

VENUE = "sim"
SYMBOL = "BTC/USDT"
MS = 1_000_000


class Context:
    """What the engine hands an executor: a real bus, real books, a clock, and the reports it got."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.bus = EventBus()
        self.log = structlog.get_logger("test")
        self.endpoints = Endpoints()
        self.books: dict[tuple[str, str], L2Book] = {}
        self.instruments: dict[tuple[str, str], Instrument] = {
            (VENUE, SYMBOL): Instrument(VENUE, SYMBOL, "BTCUSDT", "BTC", "USDT", "0.1", "0.01", "5")}
        self.reports: list[OrderUpdate | Fill] = []
        self.on_report: Callable[[OrderUpdate | Fill], None] | None = None
        book = self.books[(VENUE, SYMBOL)] = L2Book(VENUE, SYMBOL)
        book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 0)
        book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 0)

    def book(self, venue: str, symbol: str) -> L2Book | None:
        return self.books.get((venue, symbol))

    def instrument(self, venue: str, symbol: str) -> Instrument | None:
        return self.instruments.get((venue, symbol))

    def report(self, event: OrderUpdate | Fill) -> None:
        self.reports.append(event)
        if self.on_report is not None:
            self.on_report(event)

    def publish(self, event: Event) -> None:
        """As the engine does: a book event is applied to the book before subscribers see it."""
        if isinstance(event, BookSnapshot):
            self.books[(event.venue, event.symbol)].apply_snapshot(event)
        elif isinstance(event, BookDelta):
            self.books[(event.venue, event.symbol)].apply_delta(event)
        self.bus.publish(event)

    def statuses(self, cid: str) -> list[OrderStatus]:
        return [e.status for e in self.reports if isinstance(e, OrderUpdate) and e.client_order_id == cid]


def intent(cid: str, side: Side, quantity: str, price: str | None = None) -> OrderIntent:
    return OrderIntent(client_order_id=cid, strategy="t", venue=VENUE, symbol=SYMBOL, side=side,
                       quantity=Decimal(quantity), price=Decimal(price) if price is not None else None,
                       order_type=OrderType.LIMIT if price is not None else OrderType.MARKET)


def snapshot() -> BookSnapshot:
    return BookSnapshot(venue=VENUE, symbol=SYMBOL, bids=[(100.0, 2.0)], asks=[(100.5, 1.0), (100.6, 3.0)])


def test_plugin_registers_the_paper_executor_with_its_settings_model() -> None:
    registry: Registry[Any] = Registry("executor")

    botframe_register_executors(registry)

    entry = registry.get("paper")
    assert entry is not None
    assert entry.settings_model is PaperSettings
    assert isinstance(entry.factory(PaperSettings(), Context(SimulatedClock())), PaperExecutor)


@pytest.mark.parametrize("bad", [{"latency_ms": -1}, {"taker_fee_bps": 5000}, {"latencyms": 5},
                                 {"cancel_attribution": "random"}])
def test_settings_refuse_unknown_keys_and_out_of_range_values(bad: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        PaperSettings.model_validate(bad)


def test_settings_build_the_engine_config_with_venue_overrides() -> None:
    settings = PaperSettings.model_validate({
        "maker_fee_bps": "0.5", "taker_fee_bps": 4, "venue_fees": {"kraken": {"maker_fee_bps": 16,
                                                                              "taker_fee_bps": 26}},
        "latency_ms": 2.5, "latency_jitter_ms": 1, "seed": 9, "venue_cancel_attribution": {"binance": "back"},
        "off_grid": "round"})

    config = settings.engine_config()

    assert config.fees == FeeSchedule(Decimal("0.5"), Decimal(4))
    assert config.fees_by_venue["kraken"] == FeeSchedule(Decimal(16), Decimal(26))
    assert (config.order_latency.fixed_ns, config.order_latency.jitter_ns) == (2_500_000, 1_000_000)
    assert config.cancel_attribution_by_venue == {"binance": CancelAttribution.BACK}
    assert config.off_grid is OffGridPolicy.ROUND
    assert config.seed == 9


async def test_order_fills_from_the_bus_book_once_event_time_passes_the_latency() -> None:
    clock = SimulatedClock()
    ctx = Context(clock)
    executor = PaperExecutor(PaperSettings(latency_ms=5, report_latency_ms=0), ctx)
    await executor.start()
    ctx.publish(snapshot())

    executor.submit(intent("a", Side.BUY, "1.5"))
    clock.advance(ns=4 * MS)
    ctx.publish(BookDelta(venue=VENUE, symbol=SYMBOL, bids=[(100.0, 2.5)], asks=[]))
    before = list(ctx.reports)
    clock.advance(ns=1 * MS)
    ctx.publish(BookDelta(venue=VENUE, symbol=SYMBOL, bids=[(100.0, 2.0)], asks=[]))
    await executor.stop()

    assert before == []
    fills = [e for e in ctx.reports if isinstance(e, Fill)]
    assert [(f.price, f.quantity) for f in fills] == [(Decimal("100.5"), Decimal("1.00")),
                                                       (Decimal("100.6"), Decimal("0.50"))]
    assert ctx.statuses("a") == [OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]


async def test_resting_order_is_filled_by_public_trades_on_the_bus() -> None:
    clock = SimulatedClock()
    ctx = Context(clock)
    executor = PaperExecutor(PaperSettings(latency_ms=0, report_latency_ms=0), ctx)
    await executor.start()
    ctx.publish(snapshot())
    executor.submit(intent("a", Side.BUY, "1", "100.0"))

    ctx.publish(Trade(venue=VENUE, symbol=SYMBOL, price=100.0, size=2.5, side=Side.SELL))
    await executor.stop()

    fills = [e for e in ctx.reports if isinstance(e, Fill)]
    assert [(f.quantity, f.liquidity) for f in fills] == [(Decimal("0.50"), "maker")]


async def test_live_clock_timer_releases_reports_when_the_market_is_quiet() -> None:
    ctx = Context(LiveClock())
    got = asyncio.Event()
    ctx.on_report = lambda e: got.set() if isinstance(e, Fill) else None
    executor = PaperExecutor(PaperSettings(latency_ms=1, report_latency_ms=1), ctx)
    await executor.start()
    ctx.publish(snapshot())

    executor.submit(intent("a", Side.BUY, "1"))
    await asyncio.wait_for(got.wait(), timeout=5)
    await executor.stop()

    assert ctx.statuses("a") == [OrderStatus.ACCEPTED, OrderStatus.FILLED]


async def test_a_request_made_while_a_report_is_handled_is_reported_after_it() -> None:
    clock = SimulatedClock()
    ctx = Context(clock)
    executor = PaperExecutor(PaperSettings(latency_ms=0, report_latency_ms=0), ctx)
    await executor.start()
    ctx.publish(snapshot())

    def strategy(event: OrderUpdate | Fill) -> None:  # buys again on its first fill, as a strategy might
        if isinstance(event, Fill) and event.client_order_id == "a":
            executor.submit(intent("b", Side.BUY, "0.5"))

    ctx.on_report = strategy
    executor.submit(intent("a", Side.BUY, "1"))
    await executor.stop()

    order = [(e.client_order_id, type(e).__name__) for e in ctx.reports]
    assert order == [("a", "OrderUpdate"), ("a", "Fill"), ("a", "OrderUpdate"),
                     ("b", "OrderUpdate"), ("b", "Fill"), ("b", "OrderUpdate")]


async def test_stop_lets_the_venue_answer_requests_in_flight() -> None:
    clock = SimulatedClock()
    ctx = Context(clock)
    executor = PaperExecutor(PaperSettings(latency_ms=50, report_latency_ms=50), ctx)
    await executor.start()
    ctx.publish(snapshot())
    executor.submit(intent("a", Side.BUY, "1", "99.0"))

    executor.cancel("a")
    await executor.stop()

    assert ctx.statuses("a") == [OrderStatus.ACCEPTED, OrderStatus.CANCELLED]


async def test_order_on_a_symbol_without_instrument_rules_is_rejected_saying_why() -> None:
    ctx = Context(SimulatedClock())
    ctx.instruments.clear()
    executor = PaperExecutor(PaperSettings(latency_ms=0, report_latency_ms=0), ctx)
    await executor.start()
    ctx.publish(snapshot())

    executor.submit(intent("a", Side.BUY, "1"))
    await executor.stop()

    update = ctx.reports[-1]
    assert isinstance(update, OrderUpdate)
    assert update.status is OrderStatus.REJECTED
    assert update.reason == f"no instrument rules (tick, lot) for {VENUE} {SYMBOL}"
