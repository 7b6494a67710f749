"""The engine never lets a strategy read a crossed book, and asks the venue to re-sync it."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from botframe.book import L2Book
from botframe.engine import Engine
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason
from botframe.hookspecs import hookimpl
from botframe.plugins import PluginSystem, Registry
from botframe.settings import load_settings
from botframe.strategy import Strategy, StrategySettings
from botframe.streams import StreamCounters
from botframe.venues import Instrument, VenueContext


class ScriptedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    symbols: list[str] = ["BTC/USDT"]


class ScriptedVenue:
    """Publishes a good book, then a delta that crosses it; re-syncs from a good snapshot when asked."""

    def __init__(self, settings: ScriptedSettings, context: VenueContext) -> None:
        self.symbols = list(settings.symbols)
        self.context = context
        self.resyncs: list[tuple[str, HealthReason]] = []
        self.counters = StreamCounters()
        self.done = asyncio.Event()

    def _snapshot(self, symbol: str, seq: int) -> BookSnapshot:
        return BookSnapshot(venue=self.context.venue, symbol=symbol, bids=[(100.0, 1.0), (99.0, 2.0)],
                            asks=[(101.0, 1.0), (102.0, 2.0)], sequence=seq)

    async def run(self) -> None:
        ctx = self.context
        symbol = self.symbols[0]
        ctx.add_instrument(Instrument(ctx.venue, symbol, symbol.replace("/", ""), "BTC", "USDT", "0.01", "0.001"))
        ctx.set_health(symbol, BookHealth.SYNCING, HealthReason.SUBSCRIBED)
        ctx.publish(self._snapshot(symbol, 1))
        ctx.set_health(symbol, BookHealth.LIVE, HealthReason.SNAPSHOT)
        ctx.publish(BookDelta(venue=ctx.venue, symbol=symbol, bids=[(101.5, 1.0)], asks=[], first_seq=2, last_seq=2))
        await asyncio.Event().wait()

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        self.resyncs.append((symbol, reason))
        self.context.set_health(symbol, BookHealth.RESYNCING, reason, detail)
        self.context.publish(self._snapshot(symbol, 3))
        self.context.set_health(symbol, BookHealth.LIVE, HealthReason.SNAPSHOT)
        self.done.set()

    def stream_counters(self) -> list[StreamCounters]:
        return [self.counters]


class WatchSettings(StrategySettings):
    pass


class Watch(Strategy[WatchSettings]):
    """Records whether any book it was shown was crossed."""

    seen_crossed = 0
    seen = 0

    def on_book(self, book: L2Book) -> None:
        Watch.seen += 1
        Watch.seen_crossed += book.is_crossed()


class ScriptedPlugin:
    def __init__(self) -> None:
        self.venue: ScriptedVenue | None = None

    @hookimpl
    def botframe_register_venues(self, registry: Registry[Any]) -> None:
        registry.add("scripted", self._make, ScriptedSettings)

    @hookimpl
    def botframe_register_strategies(self, registry: Registry[Any]) -> None:
        registry.add("watch", Watch, WatchSettings)

    def _make(self, settings: ScriptedSettings, context: VenueContext) -> ScriptedVenue:
        self.venue = ScriptedVenue(settings, context)
        return self.venue

    @hookimpl
    def botframe_startup(self, engine: Engine) -> None:
        async def stop_when_resynced() -> None:
            assert self.venue is not None
            await self.venue.done.wait()
            engine.request_stop()

        engine.spawn(stop_when_resynced(), name="stop-when-resynced")


async def test_crossed_book_is_hidden_from_strategies_and_resynced(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('duration_secs = 30\n[journal]\nenabled = false\n[venues.scripted]\n'
                      '[strategies.watch]\nvenue = "scripted"\nsymbols = ["BTC/USDT"]\n')
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugin = ScriptedPlugin()
    plugins.register(plugin, "scripted")
    engine = Engine(load_settings(config, plugins), plugins, out=io.StringIO(), live_view=False)

    summary = await engine.run()

    assert plugin.venue is not None
    assert plugin.venue.resyncs == [("BTC/USDT", HealthReason.CROSSED)]
    assert Watch.seen >= 1
    assert Watch.seen_crossed == 0
    assert summary.venue_counters["scripted"]["crossed"] == 1
    book = engine.book("scripted", "BTC/USDT")
    assert book is not None
    assert not book.is_crossed()
    assert book.counters.crossed == 1


async def test_a_pre_applied_event_is_applied_once_and_a_failed_one_is_seen_by_nobody(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('duration_secs = 30\n[journal]\nenabled = false\n[venues.scripted]\n'
                      '[strategies.watch]\nvenue = "scripted"\nsymbols = ["BTC/USDT"]\n')
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugins.register(ScriptedPlugin(), "scripted")
    engine = Engine(load_settings(config, plugins), plugins, out=io.StringIO(), live_view=False)
    ctx = engine._venue_clients["scripted"][1]
    seen: list[BookDelta] = []
    engine.bus.subscribe(BookDelta, seen.append)
    snap = BookSnapshot(venue="scripted", symbol="BTC/USDT", bids=[(100.0, 1.0)], asks=[(101.0, 1.0)])
    ctx.publish(snap)
    good = BookDelta(venue="scripted", symbol="BTC/USDT", bids=[(100.0, 3.0)], asks=[])
    bad = BookDelta(venue="scripted", symbol="BTC/USDT", bids=[(99.0, 5.0)], asks=[])
    after = BookDelta(venue="scripted", symbol="BTC/USDT", bids=[(98.0, 1.0)], asks=[])

    book = ctx.apply(good)  # verified by the venue, then published
    ctx.publish(good)
    ctx.apply(bad)  # fails the venue's verification: never published
    ctx.publish(after)  # an ordinary event after it is applied normally

    assert book.bids() == [(100.0, 3.0), (99.0, 5.0), (98.0, 1.0)]
    assert seen == [good, after]
    assert not engine.slots[("scripted", "BTC/USDT")].pre_applied
