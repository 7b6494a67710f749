"""docs/plugins.md: every hook documented and exercised by a test; its three example plugins really work."""

from __future__ import annotations

import inspect
import io
import re
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_docs_blocks import DOCS, import_file, write_files

from botframe import hookspecs
from botframe.book import L2Book
from botframe.bus import EventBus
from botframe.clock import SimulatedClock
from botframe.engine import Engine
from botframe.events import (
    BookHealth,
    Fill,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)
from botframe.hookspecs import hookimpl
from botframe.journal import Recovered
from botframe.log import get_logger
from botframe.plugins import PluginSystem
from botframe.settings import ConfigError, Settings, load_settings
from botframe.strategy import Strategy, StrategySettings
from botframe.testing import StrategyHarness, book
from botframe.venues import Endpoints, Instrument

TESTS = Path(__file__).resolve().parent
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("botframe_"))


# -- the hook reference ------------------------------------------------------------------------------------


def test_every_hook_is_documented_with_when_arguments_and_return() -> None:
    text = (DOCS / "plugins.md").read_text()
    sections = re.split(r"^#### ", text, flags=re.M)[1:]
    documented = {re.match(r"`(botframe_\w+)\(", s)[1]: s for s in sections if re.match(r"`botframe_\w+\(", s)}

    assert sorted(documented) == HOOKS
    for name, section in documented.items():
        assert "**When:**" in section and "**Arguments:**" in section and "**Return:**" in section, name


def test_every_hook_is_exercised_by_a_test() -> None:
    sources = {p.name: p.read_text() for p in TESTS.glob("test_*.py")}

    unexercised = [hook for hook in HOOKS
                   if not any(re.search(rf"(def |\.){hook}\(", text) for text in sources.values())]

    assert unexercised == []


# -- the examples ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ModuleType]]:
    directory = tmp_path_factory.mktemp("plugin_examples")
    paths = write_files("plugins.md", directory)
    modules = {name: import_file(path, f"docs_example_{path.stem}") for name, path in paths.items()}
    try:
        yield modules
    finally:
        for module in modules.values():
            sys.modules.pop(module.__name__, None)


class MarketBuyer(Strategy[StrategySettings]):
    """Buys 0.1 at market on every LIVE book."""

    Settings = StrategySettings

    def on_book(self, book: L2Book) -> None:
        self.ctx.buy(book.symbol, "0.1")


def test_the_risk_example_denies_market_orders_into_a_wide_spread(examples: dict[str, ModuleType]) -> None:
    h = StrategyHarness(MarketBuyer, plugins=[examples["wide_spread.py"]])

    h.feed(book("BTC/USDT", bids=[(100.0, 1)], asks=[(100.5, 1)]))  # 50 bps
    h.feed(book("BTC/USDT", bids=[(100.0, 1)], asks=[(100.1, 1)]))  # 10 bps

    assert [(d.check, d.code) for d in h.denials] == [("wide_spread", "wide_spread")]
    assert "49.9 bps" in h.denials[0].reason
    assert h.position("BTC/USDT") == Decimal("0.1")


CONFIG = """
mode = "{mode}"
[plugins]
paths = {paths}
[journal]
enabled = false
[risk]
{risk}
[venues.{venue}]
[strategies.imbalance]
venue = "{venue}"
symbols = ["{symbol}"]
"""


def config(tmp_path: Path, *, mode: str = "paper", paths: list[str], risk: str = "", venue: str = "binance",
           symbol: str = "BTC/USDT", duration: float = 0) -> Path:
    path = tmp_path / "config.toml"
    text = CONFIG.format(mode=mode, paths=[str(p) for p in paths], risk=risk, venue=venue, symbol=symbol)
    path.write_text(f"duration_secs = {duration}\n" + text.replace("'", '"'))
    return path


class RecordsSettings:
    """A plugin that keeps what ``botframe_configure`` was given."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    @hookimpl
    def botframe_configure(self, settings: Settings) -> None:
        self.calls.append(settings)


def test_configure_is_called_once_with_the_validated_settings_before_anything_runs(tmp_path: Path) -> None:
    plugins = PluginSystem()
    plugins.load_entry_points()
    recorder = RecordsSettings()
    plugins.register(recorder, "recorder")
    settings = load_settings(config(tmp_path, paths=[], risk='max_drawdown = "7"'), plugins)

    Engine(settings, plugins, out=io.StringIO(), live_view=False)

    assert recorder.calls == [settings]
    assert recorder.calls[0].risk.max_drawdown == Decimal(7)
    assert "imbalance" in recorder.calls[0].plugin_sections["strategies"]


def test_the_risk_example_configure_hook_refuses_live_without_a_drawdown_limit(
        examples: dict[str, ModuleType], tmp_path: Path) -> None:
    module = Path(examples["wide_spread.py"].__file__ or "")
    refused, allowed = PluginSystem(), PluginSystem()
    for plugins in (refused, allowed):
        plugins.load_entry_points()
    live = load_settings(config(tmp_path, mode="live", paths=[module]), refused)
    live_with_limit = load_settings(config(tmp_path, mode="live", paths=[module], risk='max_drawdown = "100"'),
                                    allowed)

    with pytest.raises(ConfigError, match=r"\[risk\] max_drawdown"):
        Engine(live, refused, out=io.StringIO(), live_view=False)
    engine = Engine(live_with_limit, allowed, out=io.StringIO(), live_view=False)

    assert engine.settings.risk.max_drawdown == Decimal(100)


async def test_the_venue_example_streams_a_live_book_through_a_real_engine(
        examples: dict[str, ModuleType], tmp_path: Path) -> None:
    module = Path(examples["walk_venue.py"].__file__ or "")
    plugins = PluginSystem()
    plugins.load_entry_points()
    settings = load_settings(config(tmp_path, paths=[module], venue="walk", symbol="WALK/USD", duration=1.0),
                             plugins)

    summary = await Engine(settings, plugins, out=io.StringIO(), live_view=False).run()

    assert not summary.failed
    [walk] = summary.books
    assert (walk["venue"], walk["symbol"], walk["health"]) == ("walk", "WALK/USD", BookHealth.LIVE.value)
    assert walk["levels"] == 20 and summary.events > 5


class _ExecutorContext:
    """The engine's side of an executor, with a real book, bus and clock."""

    def __init__(self) -> None:
        self.clock = SimulatedClock()
        self.bus = EventBus()
        self.log = get_logger("test.executor")
        self.endpoints = Endpoints()
        self.reports: list[OrderUpdate | Fill] = []
        self._book = L2Book("binance", "BTC/USDT")
        self._book.apply_snapshot(book("BTC/USDT", bids=[(100.0, 1)], asks=[(100.5, 1)]))

    def book(self, venue: str, symbol: str) -> L2Book | None:
        return self._book if (venue, symbol) == ("binance", "BTC/USDT") else None

    def instrument(self, venue: str, symbol: str) -> Instrument | None:
        return None

    def report(self, event: OrderUpdate | Fill) -> None:
        self.reports.append(event)


def intent(order_id: str, side: Side, price: str | None = None) -> OrderIntent:
    return OrderIntent(client_order_id=order_id, strategy="s", venue="binance", symbol="BTC/USDT", side=side,
                       quantity=Decimal("0.5"), order_type=OrderType.LIMIT if price else OrderType.MARKET,
                       price=Decimal(price) if price else None)


async def test_the_execution_example_fills_at_the_touch_and_reports_every_step(
        examples: dict[str, ModuleType]) -> None:
    module: Any = examples["instant_executor.py"]
    plugins = PluginSystem()
    plugins.register(module, "instant")
    plugins.discover()
    entry = plugins.executors.get("instant")
    assert entry is not None
    ctx = _ExecutorContext()
    executor = entry.factory(entry.settings_model.model_validate({"fee_bps": "10"}), ctx)
    await executor.start()

    executor.submit(intent("a", Side.BUY))
    executor.submit(intent("b", Side.SELL, "101"))  # above the best bid: nothing to fill at
    await executor.stop()

    updates = [(r.client_order_id, r.status) for r in ctx.reports if isinstance(r, OrderUpdate)]
    fills = [(r.client_order_id, r.price, r.quantity, r.fee) for r in ctx.reports if isinstance(r, Fill)]
    assert updates == [("a", OrderStatus.ACCEPTED), ("a", OrderStatus.FILLED), ("b", OrderStatus.REJECTED)]
    assert fills == [("a", Decimal("100.5"), Decimal("0.5"), Decimal("0.05025"))]
    # The rest of the Executor protocol, as the engine calls it: restore() with what a journal recovered.
    recovered = Recovered(open_orders=[], intents={}, fills=[], trading_state=None, max_client_order_counter=0)
    assert list(executor.restore(recovered)) == []
    for name in ("restore", "start", "stop", "submit", "cancel", "replace"):
        assert callable(getattr(executor, name)), name
