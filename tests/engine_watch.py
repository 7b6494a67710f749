"""One real engine run of a venue plugin, watched: what strategies were shown and what the bus carried.

Venue tests use it to prove botframe's promise end to end: a book state the venue's own checks refute
never reaches a strategy nor any subscriber of book events on the engine's bus.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botframe.book import L2Book
from botframe.engine import Engine, RunSummary
from botframe.events import BookDelta, BookSnapshot, FeedStatus, Level
from botframe.hookspecs import hookimpl
from botframe.plugins import PluginSystem, Registry
from botframe.settings import load_settings
from botframe.strategy import Strategy, StrategyContext, StrategySettings

__all__ = ["Watcher", "run_engine"]

Seen = tuple[str, list[Level], list[Level]]


class Watcher:
    """A plugin for one engine run, stopping it once ``done(watcher)`` holds.

    It registers a strategy ``watch`` that records every book it is shown (``shown``: symbol, top 10
    bids, top 10 asks), subscribes to the engine's bus after the engine's own book keeper, as the paper
    executor does, to record the book each book event leaves (``on_bus``: event type, symbol, top 10s),
    and records feed statuses (``statuses``).
    """

    def __init__(self, done: Callable[[Watcher], bool]) -> None:
        self.done = done
        self.shown: list[Seen] = []
        self.on_bus: list[tuple[type, str, list[Level], list[Level]]] = []
        self.statuses: list[FeedStatus] = []
        self.changed = asyncio.Event()

    def deltas_on_bus(self, symbol: str) -> list[tuple[list[Level], list[Level]]]:
        """The book after each ``BookDelta`` of ``symbol`` the bus carried."""
        return [(bids, asks) for kind, s, bids, asks in self.on_bus if kind is BookDelta and s == symbol]

    def snapshots_on_bus(self, symbol: str) -> int:
        return sum(1 for kind, s, _, _ in self.on_bus if kind is BookSnapshot and s == symbol)

    @hookimpl
    def botframe_register_strategies(self, registry: Registry[Any]) -> None:
        registry.add("watch", self._strategy, StrategySettings)

    def _strategy(self, settings: StrategySettings, ctx: StrategyContext) -> Strategy[StrategySettings]:
        watcher = self

        class Watch(Strategy[StrategySettings]):
            def on_book(self, book: L2Book) -> None:
                watcher.shown.append((book.symbol, book.bids(10), book.asks(10)))
                watcher.changed.set()

        return Watch(settings, ctx)

    @hookimpl
    def botframe_on_feed_status(self, status: FeedStatus) -> None:
        self.statuses.append(status)
        self.changed.set()

    @hookimpl
    def botframe_startup(self, engine: Engine) -> None:
        def see(event: BookSnapshot | BookDelta) -> None:
            book = engine.book(event.venue, event.symbol)
            assert book is not None
            self.on_bus.append((type(event), event.symbol, book.bids(10), book.asks(10)))

        engine.bus.subscribe(BookSnapshot, see)
        engine.bus.subscribe(BookDelta, see)

        async def stop_when_done() -> None:
            while not self.done(self):
                self.changed.clear()
                await self.changed.wait()
            engine.request_stop()

        engine.spawn(stop_when_done(), name="stop-when-done")


async def run_engine(config: Path, watcher: Watcher, timeout: float = 30.0) -> RunSummary:
    """Run the engine of ``config`` (bundled plugins plus ``watcher``) until the watcher stops it."""
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugins.register(watcher, "watcher")
    engine = Engine(load_settings(config, plugins), plugins, out=io.StringIO(), live_view=False)
    async with asyncio.timeout(timeout):
        return await engine.run()
