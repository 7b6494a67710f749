"""The generic ccxt venue: ccxt's binance pointed at the simulator on 127.0.0.1, normalized to botframe events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import structlog

from botframe.book import L2Book
from botframe.clock import LiveClock
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason, Side, Trade
from botframe.venues import Endpoints, Instrument
from botframe_plugins.ccxt.config import CcxtVenueSettings
from botframe_plugins.ccxt.data import BookDiffer, CcxtVenueClient, instrument_from_market
from botframe_plugins.sim.config import SimSettings, SimSymbolSettings
from botframe_plugins.sim.server import SimServer

SYMBOL = "BTC/USDT"


class VenueContext:
    """A real VenueContext: books built from the published events, health and counters recorded."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.venue = "ccxt"
        self.clock = LiveClock()
        self.log = structlog.get_logger("test.venue")
        self.endpoints = endpoints
        self.books: dict[str, L2Book] = {}
        self.events: list[Event] = []
        self.health: list[tuple[str, BookHealth, HealthReason]] = []
        self.instruments: dict[str, Instrument] = {}
        self.counters: dict[str, int] = {}

    def book(self, symbol: str) -> L2Book:
        return self.books.setdefault(symbol, L2Book(self.venue, symbol))

    def publish(self, event: Event) -> None:
        if isinstance(event, BookSnapshot):
            self.book(event.symbol).apply_snapshot(event)
        elif isinstance(event, BookDelta):
            self.book(event.symbol).apply_delta(event)
        self.events.append(event)

    def set_health(self, symbol: str, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        self.health.append((symbol, health, reason))

    def add_instrument(self, instrument: Instrument) -> None:
        self.instruments[instrument.symbol] = instrument

    def count(self, name: str, symbol: str = "", n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


async def until(pred: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for a condition that network frames make true, bounded by ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            if pred():
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    settings = SimSettings(symbols=[SimSymbolSettings(symbol=SYMBOL, start_price=Decimal("60000"),
                                                      tick_size=Decimal("0.01"), lot_size=Decimal("0.00001"))],
                           seed=4)
    server = SimServer(settings, clock=LiveClock())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def endpoints_of(sim: SimServer) -> Endpoints:
    endpoints = Endpoints()
    endpoints.set("binance.api", sim.api_url)
    endpoints.set("binance.ws", sim.ws_url)
    return endpoints


async def test_ccxt_venue_streams_the_simulators_book_and_trades_as_botframe_events(sim: SimServer) -> None:
    ctx = VenueContext(endpoints_of(sim))
    client = CcxtVenueClient(CcxtVenueSettings(exchange_id="binance", symbols=[SYMBOL], rest_url="simulator",
                                               ws_url="simulator"), ctx)
    task = asyncio.get_running_loop().create_task(client.run())
    model = sim.model.symbol(SYMBOL)
    try:
        await until(lambda: any(isinstance(e, BookSnapshot) for e in ctx.events)
                    or sim.counters["connections"] > 0)
        for _ in range(50):
            sim.step_once()
            await asyncio.sleep(0.005)
        await until(lambda: any(isinstance(e, BookSnapshot) for e in ctx.events))
        for _ in range(100):
            sim.step_once()
            await asyncio.sleep(0.005)
        target = model.last_update_id
        await until(lambda: any(isinstance(e, BookDelta) and e.last_seq >= target for e in ctx.events))
        book = ctx.book(SYMBOL)
        top_bids = [(p / 100, q / 100_000) for p, q in model.top_bids(10)]
        top_asks = [(p / 100, q / 100_000) for p, q in model.top_asks(10)]
        await until(lambda: any(isinstance(e, Trade) for e in ctx.events))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert [(round(p, 2), round(q, 5)) for p, q in book.bids(10)] == [(round(p, 2), round(q, 5)) for p, q in top_bids]
    assert [(round(p, 2), round(q, 5)) for p, q in book.asks(10)] == [(round(p, 2), round(q, 5)) for p, q in top_asks]
    assert (SYMBOL, BookHealth.LIVE, HealthReason.SNAPSHOT) in ctx.health
    assert ctx.instruments[SYMBOL].tick_size == "0.01" and ctx.instruments[SYMBOL].lot_size == "0.00001"
    trade = next(e for e in ctx.events if isinstance(e, Trade))
    assert trade.venue == "ccxt" and trade.side in (Side.BUY, Side.SELL) and trade.size > 0
    assert client.exchange is None, "the ccxt client is closed when the venue stops"


def test_book_differ_publishes_a_snapshot_then_only_changed_levels() -> None:
    differ = BookDiffer("ccxt", SYMBOL)
    first = differ.update({"bids": [[100.0, 1.0], [99.0, 2.0]], "asks": [[101.0, 1.0]], "nonce": 5}, 1)
    second = differ.update({"bids": [[100.0, 1.5]], "asks": [[101.0, 1.0], [102.0, 3.0]], "nonce": 6}, 2)
    same = differ.update({"bids": [[100.0, 1.5]], "asks": [[101.0, 1.0], [102.0, 3.0]], "nonce": 7}, 3)
    differ.reset()
    again = differ.update({"bids": [[100.0, 1.5]], "asks": [[101.0, 1.0]], "nonce": 8}, 4)

    assert isinstance(first, BookSnapshot) and first.bids == [(100.0, 1.0), (99.0, 2.0)] and first.sequence == 5
    assert isinstance(second, BookDelta)
    assert second.bids == [(100.0, 1.5), (99.0, 0.0)] and second.asks == [(102.0, 3.0)]
    assert same is None
    assert isinstance(again, BookSnapshot)


def test_instrument_from_a_ccxt_market_keeps_exact_steps() -> None:
    market: dict[str, Any] = {"symbol": SYMBOL, "id": "BTCUSDT", "base": "BTC", "quote": "USDT",
                              "precision": {"price": 0.01, "amount": 1e-05}, "limits": {"cost": {"min": 5.0}}}

    inst = instrument_from_market("ccxt", market)

    assert (inst.tick_size, inst.lot_size, inst.min_notional) == ("0.01", "0.00001", "5")
