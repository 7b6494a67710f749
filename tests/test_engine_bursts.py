"""Under a burst the engine shows strategies each changed book once, on its latest state, and loses nothing.

A scripted venue publishes, in one go (no event-loop turn in between), book deltas, then a public trade,
then more deltas: what a connection hands over when several frames were already received. The strategy
must see the first change at once, the trade after a book that includes every delta before it, and the
final state once the loop is idle; the executor's subscription still sees every delta.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from botframe.book import L2Book
from botframe.engine import Engine
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason, Side, Trade
from botframe.hookspecs import hookimpl
from botframe.plugins import PluginSystem, Registry
from botframe.settings import load_settings
from botframe.strategy import Strategy, StrategySettings
from botframe.streams import StreamCounters
from botframe.venues import Instrument, VenueContext

SYMBOL = "BTC/USDT"


class BurstSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    symbols: list[str] = [SYMBOL]


class BurstVenue:
    """A snapshot, an idle turn, then deltas 2-4, a trade and deltas 5-6 in one burst."""

    def __init__(self, settings: BurstSettings, context: VenueContext) -> None:
        self.symbols = list(settings.symbols)
        self.context = context
        self.counters = StreamCounters()
        self.done = asyncio.Event()

    def _delta(self, seq: int) -> BookDelta:
        # The best bid's size is the sequence number, so a book shows which deltas it includes.
        return BookDelta(venue=self.context.venue, symbol=SYMBOL, bids=[(100.0, float(seq))], asks=[],
                         first_seq=seq, last_seq=seq)

    async def run(self) -> None:
        ctx = self.context
        ctx.add_instrument(Instrument(ctx.venue, SYMBOL, "BTCUSDT", "BTC", "USDT", "0.01", "0.001"))
        ctx.set_health(SYMBOL, BookHealth.SYNCING, HealthReason.SUBSCRIBED)
        ctx.publish(BookSnapshot(venue=ctx.venue, symbol=SYMBOL, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)],
                                 sequence=1))
        ctx.set_health(SYMBOL, BookHealth.LIVE, HealthReason.SNAPSHOT)
        for _ in range(3):
            await asyncio.sleep(0)  # the loop goes idle: the next change is a lone one
        for seq in (2, 3, 4):
            ctx.publish(self._delta(seq))
        ctx.publish(Trade(venue=ctx.venue, symbol=SYMBOL, price=100.0, size=0.5, side=Side.SELL, trade_id="t1"))
        for seq in (5, 6):
            ctx.publish(self._delta(seq))
        for _ in range(3):
            await asyncio.sleep(0)  # idle again: the end of the burst is flushed
        self.done.set()
        await asyncio.Event().wait()

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        raise AssertionError(f"no resync expected ({reason}: {detail})")

    def stream_counters(self) -> list[StreamCounters]:
        return [self.counters]


class RecordSettings(StrategySettings):
    pass


class Record(Strategy[RecordSettings]):
    """Notes each callback with the book state it saw."""

    seen: list[tuple[str, int]] = []

    def on_book(self, book: L2Book) -> None:
        best = book.best_bid()
        assert best is not None
        Record.seen.append(("book", int(best[1])))

    def on_trade(self, trade: Trade) -> None:
        book = self.ctx.book(trade.symbol)
        assert book is not None
        best = book.best_bid()
        assert best is not None
        Record.seen.append(("trade", int(best[1])))


class BurstPlugin:
    def __init__(self) -> None:
        self.venue: BurstVenue | None = None
        self.deltas_seen_by_subscriber: list[int] = []

    @hookimpl
    def botframe_register_venues(self, registry: Registry[Any]) -> None:
        registry.add("burst", self._make, BurstSettings)

    @hookimpl
    def botframe_register_strategies(self, registry: Registry[Any]) -> None:
        registry.add("record", Record, RecordSettings)

    def _make(self, settings: BurstSettings, context: VenueContext) -> BurstVenue:
        self.venue = BurstVenue(settings, context)
        return self.venue

    @hookimpl
    def botframe_startup(self, engine: Engine) -> None:
        # Subscribed after the engine, like an executor: it must see every delta, merged or not.
        engine.bus.subscribe(BookDelta, lambda ev: self.deltas_seen_by_subscriber.append(ev.last_seq))

        async def stop_when_done() -> None:
            assert self.venue is not None
            await self.venue.done.wait()
            engine.request_stop()

        engine.spawn(stop_when_done(), name="stop-when-done")


async def test_burst_merges_book_updates_but_keeps_every_trade_in_order(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('duration_secs = 30\n[journal]\nenabled = false\n[venues.burst]\n'
                      f'[strategies.record]\nvenue = "burst"\nsymbols = ["{SYMBOL}"]\n')
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugin = BurstPlugin()
    plugins.register(plugin, "burst")
    Record.seen = []
    engine = Engine(load_settings(config, plugins), plugins, out=io.StringIO(), live_view=False)

    summary = await engine.run()

    assert not summary.failed
    assert Record.seen == [
        ("book", 1),  # the snapshot, shown when the book went LIVE
        ("book", 2),  # the first change after the loop was idle: at once
        ("book", 4),  # deltas 3 and 4 merged, flushed before the trade that came after them
        ("trade", 4),
        ("book", 6),  # deltas 5 and 6 merged, flushed when the loop went idle
    ]
    assert plugin.deltas_seen_by_subscriber == [2, 3, 4, 5, 6]


def test_engine_driven_without_an_event_loop_shows_every_change_at_once(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[journal]\nenabled = false\n[venues.burst]\n'
                      f'[strategies.record]\nvenue = "burst"\nsymbols = ["{SYMBOL}"]\n')
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugins.register(BurstPlugin(), "burst")
    engine = Engine(load_settings(config, plugins), plugins, out=io.StringIO(), live_view=False)
    book = engine.slot("burst", SYMBOL).book
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 0)
    book.apply_snapshot(BookSnapshot(venue="burst", symbol=SYMBOL, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)]))
    book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 0)
    Record.seen = []

    for seq in (2, 3, 4):
        engine.bus.publish(BookDelta(venue="burst", symbol=SYMBOL, bids=[(100.0, float(seq))], asks=[],
                                     first_seq=seq, last_seq=seq))

    assert Record.seen == [("book", 2), ("book", 3), ("book", 4)]
