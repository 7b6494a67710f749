"""Helpers for strategy and plugin authors' tests: a strategy run through the real parts, in plain pytest.

A test in a few lines::

    from botframe.testing import StrategyHarness, book, trade

    def test_buys_when_bids_outweigh_asks() -> None:
        h = StrategyHarness(Follow, {"symbols": ["BTC/USDT"], "threshold": 0.3})

        h.feed(book("BTC/USDT", bids=[(100, 5), (99.5, 2)], asks=[(100.5, 1)]))

        assert [o.side for o in h.orders] == [Side.BUY]
        assert h.position("BTC/USDT") == Decimal("0.001")

:class:`StrategyHarness` drives the same pieces the engine wires, synchronously, on a
:class:`~botframe.clock.SimulatedClock`: the :class:`~botframe.book.L2Book` and
:class:`~botframe.signals.SignalSet` of each subscribed symbol, the :class:`~botframe.risk.RiskGate` with
the bundled ``risk_limits`` checks registered in a real pluggy plugin manager (plus any plugin objects
you pass), the paper venue's :class:`~botframe_plugins.paper.engine.FillEngine`, the
:class:`~botframe.portfolio.Portfolio` and the :class:`~botframe.orders.OrderTracker`. No network, no
event loop, no wall clock: the same inputs give the same orders, fills and PnL every run.

How it follows the engine (``botframe/engine.py``), and where it differs on purpose:

* a book event is applied to the book, then the signals, then the strategy sees it (``on_book``, only
  while the book is LIVE), then the paper venue (which may fill resting orders);
* a snapshot fed to a book that is not LIVE makes it LIVE (a venue does that once it is in sync) and
  the strategy sees that snapshot; ``set_health`` moves a book's health explicitly; a crossed book
  goes to RESYNCING unseen, as the engine has its venue re-sync it;
* order updates and fills reported while a callback runs, risk denials included, are delivered right
  after it returns; observation hooks (``botframe_on_fill`` ...) of the plugins you pass are called;
* time moves only with the clock: ``feed`` moves it to an event's timestamp when that is later, and
  ``advance`` moves it explicitly. On the way, strategy timers fire, paper reports whose latency has
  passed are released and the kill switch is evaluated every 500 ms, in time order;
* by default the paper venue answers at once (``latency_ms = 0``) so a test can assert right after
  ``feed``; pass ``paper={"latency_ms": 5, ...}`` for the realistic model;
* a strategy exception is counted and logged as in a real run, and then re-raised from the harness
  call so the test fails at the bug (``raise_errors=False`` keeps the engine's behaviour exactly:
  count, and stop the strategy after ``max_errors``);
* ``botframe_configure`` is not called (it receives the root settings, which a harness has none of).

:class:`SimulatedMarket` turns the exchange simulator's seeded order-flow model
(``botframe_plugins.sim.model``) into events without a server, for runs of many simulated minutes
that are deterministic to the last digit.

:class:`RecordingVenueContext` is the engine's side of a venue plugin for the plugin's own tests: the
whole :class:`~botframe.venues.VenueContext` protocol over real :class:`~botframe.book.L2Book` objects,
applying book events the way the engine does (``apply`` first, then ``publish`` without applying twice),
with a record of what was published, what was applied but never published, health changes and counters.
Pass a real :class:`~botframe.bus.EventBus` to see published events as the engine's subscribers would.

:class:`LocalVenue` and :class:`ScriptedVenue` are the exchange's side: a venue's WebSocket and REST
on 127.0.0.1 (one port), the second playing a script of frames to each connection and answering the
client's requests between them; :class:`ReplayScript` builds such a script from a recorded session,
keeping track of which recorded frame each scripted one is.

This module uses the bundled paper engine, risk checks and simulator model on purpose (they ship in
the same distribution); the core never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import importlib
import json
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import msgspec
import structlog
from pydantic import BaseModel
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .book import L2Book
from .bus import EventBus
from .clock import Clock, LiveClock, SimulatedClock
from .events import (
    BookDelta,
    BookHealth,
    BookSnapshot,
    Event,
    FeedStatus,
    Fill,
    HealthReason,
    OrderDenied,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Side,
    Trade,
    TradingState,
    TradingStateChanged,
)
from .log import get_logger
from .orders import ClientOrderIds, Order, OrderTracker
from .plugins import PluginSystem
from .portfolio import Portfolio
from .risk import RiskContext, RiskGate, RiskSettings, TradingStateMachine
from .signals import SignalSet, SignalSpec
from .strategy import Number, OrderRouter, PnL, Strategy, StrategyContext, StrategyRunner, StrategySettings
from .venues import Endpoints, Instrument

if TYPE_CHECKING:
    from .venues import VenueClient, VenueContext

__all__ = [
    "START_NS",
    "WAIT_FOR_REQUEST",
    "HarnessSummary",
    "LocalVenue",
    "RecordingVenueContext",
    "ReplayScript",
    "ScriptedVenue",
    "SimulatedMarket",
    "StrategyHarness",
    "book",
    "delta",
    "instrument",
    "json_response",
    "running_venue",
    "trade",
]

# The bundled plugins are imported by name, as the CLI does: they are installed as ``botframe_plugins``
# through an import hook that type checkers do not follow, and the core keeps no static import of them.
_risk_limits = importlib.import_module("botframe_plugins.risk_limits")
_paper_config: Any = importlib.import_module("botframe_plugins.paper.config")
_paper_engine: Any = importlib.import_module("botframe_plugins.paper.engine")
_sim_config: Any = importlib.import_module("botframe_plugins.sim.config")
_sim_model: Any = importlib.import_module("botframe_plugins.sim.model")

#: Where a harness clock starts (and what ``at_ms`` counts from): 2023-11-14T22:13:20Z, epoch ns.
START_NS: int = _sim_model.DEFAULT_START_NS

Report = OrderUpdate | Fill


class FillEngineLike(Protocol):
    """The part of the paper venue's ``FillEngine`` (``botframe_plugins.paper.engine``) the harness drives."""

    def submit(self, intent: OrderIntent, now_ns: int) -> list[Report]: ...

    def cancel(self, client_order_id: str, now_ns: int) -> list[Report]: ...

    def replace(self, client_order_id: str, new_client_order_id: str, *, quantity: Decimal,
                price: Decimal | None, now_ns: int) -> list[Report]: ...

    def on_book(self, event: BookSnapshot | BookDelta, now_ns: int) -> list[Report]: ...

    def on_trade(self, trade: Trade, now_ns: int) -> list[Report]: ...

    def advance(self, now_ns: int) -> list[Report]: ...

    def next_due_ns(self) -> int | None: ...

    def take_notices(self) -> list[Any]: ...

    def queue_ahead(self, client_order_id: str) -> Decimal | None: ...

_KILL_SWITCH_INTERVAL_NS = 500_000_000  # as often as the engine evaluates it

Levels = Iterable[tuple[Number, Number]]
MarketEvent = BookSnapshot | BookDelta | Trade | FeedStatus

T = TypeVar("T", bound=Strategy[Any])
V = TypeVar("V", bound="VenueClient")


# -- one-line builders -------------------------------------------------------------------------------------


def _levels(levels: Levels) -> list[tuple[float, float]]:
    return [(float(p), float(s)) for p, s in levels]


def _ts(at_ms: float | None) -> int:
    return 0 if at_ms is None else START_NS + round(at_ms * 1_000_000)


def book(symbol: str, bids: Levels = (), asks: Levels = (), *, venue: str = "binance",
         at_ms: float | None = None, sequence: int = 0) -> BookSnapshot:
    """A full book, best first: ``book("BTC/USDT", bids=[(100, 1), (99.5, 2)], asks=[(100.5, 1)])``.

    ``at_ms``: when it happens, in ms after :data:`START_NS` (default: whenever it is fed).
    """
    ts = _ts(at_ms)
    return BookSnapshot(venue=venue, symbol=symbol, bids=_levels(bids), asks=_levels(asks), sequence=sequence,
                        exchange_ts_ns=ts, receive_ts_ns=ts)


def delta(symbol: str, bids: Levels = (), asks: Levels = (), *, venue: str = "binance",
          at_ms: float | None = None) -> BookDelta:
    """New absolute sizes of some levels (size 0 deletes): ``delta("BTC/USDT", asks=[(100.5, 0)])``."""
    ts = _ts(at_ms)
    return BookDelta(venue=venue, symbol=symbol, bids=_levels(bids), asks=_levels(asks),
                     exchange_ts_ns=ts, receive_ts_ns=ts)


def trade(symbol: str, price: Number, size: Number, side: Side | str = Side.BUY, *, venue: str = "binance",
          at_ms: float | None = None, trade_id: str = "") -> Trade:
    """A public trade; ``side`` is the aggressor: ``trade("BTC/USDT", 100.5, 0.2, "buy")``."""
    ts = _ts(at_ms)
    return Trade(venue=venue, symbol=symbol, price=float(price), size=float(size), side=Side(side),
                 trade_id=trade_id, exchange_ts_ns=ts, receive_ts_ns=ts)


def instrument(symbol: str, *, tick_size: str = "0.01", lot_size: str = "0.0001", min_notional: str = "0",
               venue: str = "binance") -> Instrument:
    """Trading rules of a symbol; the harness makes one with these defaults for each symbol not given."""
    base, _, quote = symbol.partition("/")
    return Instrument(venue=venue, symbol=symbol, venue_symbol=base + quote.partition(":")[0], base=base,
                      quote=quote.partition(":")[0], tick_size=tick_size, lot_size=lot_size,
                      min_notional=min_notional)


# -- the harness -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HarnessSummary:
    """What a harness run did, in plain exact values: equal runs give equal summaries (``==``)."""

    strategy: str
    events: int
    intents: int
    orders_by_status: dict[str, int]
    denials_by_code: dict[str, int]
    fills: int
    maker_fills: int
    taker_fills: int
    #: Base units bought plus sold, per symbol.
    volume: dict[str, Decimal]
    fees: Decimal
    positions: dict[str, Decimal]
    #: The largest absolute position held at any moment, per symbol.
    max_abs_position: dict[str, Decimal]
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    net_pnl: Decimal
    errors: int
    stopped: bool


class _Slot:
    __slots__ = ("book", "signals")

    def __init__(self, venue: str, symbol: str, specs: Sequence[SignalSpec]) -> None:
        self.book = L2Book(venue, symbol)
        self.signals = SignalSet(self.book, specs) if specs else None


class _Router:
    """The harness's :class:`~botframe.strategy.OrderRouter`: what the strategy's context calls."""

    def __init__(self, harness: StrategyHarness[Any]) -> None:
        self._h = harness
        self.clock: Clock = harness.clock

    def book(self, venue: str, symbol: str) -> L2Book | None:
        return self._h._book(venue, symbol)

    def signal(self, venue: str, symbol: str, name: str) -> float | None:
        return self._h._signal(venue, symbol, name)

    def instrument(self, venue: str, symbol: str) -> Instrument | None:
        return self._h._instruments.get((venue, symbol))

    def position(self, venue: str, symbol: str) -> Decimal:
        return self._h.portfolio.position(venue, symbol)

    def pnl(self, venue: str | None, symbol: str | None) -> PnL:
        self._h._mark_all()
        return self._h.portfolio.pnl(venue, symbol)

    def open_orders(self, strategy: str, venue: str | None, symbol: str | None) -> list[Order]:
        return [o for o in self._h.tracker.open_orders(venue, symbol) if o.strategy == strategy]

    def next_client_order_id(self) -> str:
        return self._h._client_ids.next()

    def submit(self, intent: OrderIntent) -> bool:
        return self._h._submit(intent)

    def cancel(self, strategy: str, client_order_id: str) -> None:
        self._h._cancel_request(strategy, client_order_id)

    def replace(self, strategy: str, client_order_id: str, quantity: Decimal | None,
                price: Decimal | None) -> str | None:
        return self._h._replace(strategy, client_order_id, quantity, price)

    def set_timer(self, strategy: str, name: str, interval_secs: float) -> None:
        self._h._set_timer(name, interval_secs)


class StrategyHarness(Generic[T]):
    """One strategy wired to real books, signals, risk checks, paper fills and portfolio; see the module doc.

    ``settings``: the strategy's settings model, or a mapping validated by ``strategy.Settings`` as
    the config section would be (default ``{"symbols": ["BTC/USDT"]}``). ``instruments``: trading rules
    (:func:`instrument`); symbols without one get tick 0.01, lot 0.0001. ``risk``: the ``[risk]``
    section (defaults as in a real run). ``paper``: the ``[executors.paper]`` section (default: no
    latency). ``plugins``: extra plugin objects, e.g. your own risk check. The strategy's ``on_start``
    runs when the harness is built, as the engine calls it before market data flows.

    What it did is in ``intents`` (every order the strategy tried), ``orders`` (those the risk gate
    approved, as live :class:`~botframe.orders.Order` records), ``denials``, ``updates`` (what
    ``on_order_update`` received), ``fills``, ``statuses``, ``notices`` (requests the paper venue
    refused without an order event) and ``errors``.
    """

    def __init__(
        self,
        strategy: type[T],
        settings: StrategySettings | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        instruments: Iterable[Instrument] = (),
        risk: RiskSettings | Mapping[str, Any] | None = None,
        paper: BaseModel | Mapping[str, Any] | None = None,
        plugins: Iterable[object] = (),
        risk_checks: bool = True,
        starting_cash: Mapping[str, Decimal | int | str] | None = None,
        clock: SimulatedClock | None = None,
        max_errors: int = 10,
        raise_errors: bool = True,
    ) -> None:
        self.clock = clock if clock is not None else SimulatedClock(START_NS)
        if settings is None:
            settings = {"symbols": ["BTC/USDT"]}
        self.settings = (settings if isinstance(settings, StrategySettings)
                         else strategy.Settings.model_validate(dict(settings)))
        self.name = name or strategy.__name__
        self.venue = self.settings.venue
        self.raise_errors = raise_errors
        self._instruments: dict[tuple[str, str], Instrument] = {(i.venue, i.symbol): i for i in instruments}
        for symbol in self.settings.symbols:
            self._instruments.setdefault((self.venue, symbol), instrument(symbol, venue=self.venue))
        self._rules: dict[tuple[str, str], Any] = {}

        self.plugins = PluginSystem()
        if risk_checks:
            self.plugins.register(_risk_limits, "risk_limits", source="bundled")
        for i, plugin in enumerate(plugins):
            self.plugins.register(plugin, getattr(plugin, "__name__", f"{type(plugin).__name__}-{i}"))
        self.hooks = self.plugins.hooks

        self.portfolio = Portfolio(starting_cash if starting_cash is not None else {"USDT": Decimal(10_000)},
                                   instruments=self._router_instrument)
        self.tracker = OrderTracker()
        self.trading_state = TradingStateMachine(self.clock)
        risk_settings = risk if isinstance(risk, RiskSettings) else RiskSettings.model_validate(dict(risk or {}))
        self.risk_context = RiskContext(
            books=self._book, signal=self._signal_or_none, portfolio=self.portfolio, orders=self.tracker,
            instruments=self._router_instrument, clock=self.clock, trading_state=self.trading_state,
            settings=risk_settings)
        self.gate = RiskGate(self.hooks.check_order, self.risk_context, self._publish)
        paper_model = _paper_config.PaperSettings
        paper_settings = (paper if isinstance(paper, paper_model)
                          else paper_model.model_validate({"latency_ms": 0, "report_latency_ms": 0,
                                                           **dict(paper or {})}))
        #: The paper venue's fill engine (``botframe_plugins.paper.engine.FillEngine``).
        self.fill_engine: FillEngineLike = _paper_engine.FillEngine(
            paper_settings.engine_config(), books=self._book, instruments=self._instrument_rules)
        self._client_ids = ClientOrderIds(self.clock)

        #: Every order the strategy tried, approved or denied, in order.
        self.intents: list[OrderIntent] = []
        #: The orders the risk gate approved, in order; their status is kept current.
        self.orders: list[Order] = []
        self.denials: list[OrderDenied] = []
        #: What the strategy's ``on_order_update`` received (risk denials as REJECTED included).
        self.updates: list[OrderUpdate] = []
        self.fills: list[Fill] = []
        self.statuses: list[FeedStatus] = []
        self.state_changes: list[TradingStateChanged] = []
        #: ``botframe_plugins.paper.engine.Notice`` items: requests the paper venue refused without an order event.
        self.notices: list[Any] = []
        #: Each exception a strategy callback raised: (callback name, exception).
        self.errors: list[tuple[str, Exception]] = []
        self.events = 0
        self.ignored_events = 0
        self.max_abs_position: dict[str, Decimal] = {}

        self._depth = 0
        self._pending: list[tuple[OrderUpdate | Fill, bool]] = []
        self._slots: dict[tuple[str, str], _Slot] = {}
        self._unraised: list[tuple[str, Exception]] = []
        self._outbox: deque[Report] = deque()
        self._delivering = False
        self._timers: list[tuple[int, int, str, int]] = []  # (due time ns, seq, name, interval ns)
        self._timer_seq = 0
        self._kill_switch_on = (risk_settings.max_drawdown is not None
                                or risk_settings.max_daily_loss is not None)
        self._next_kill_switch_ns = self.clock.time_ns() + _KILL_SWITCH_INTERVAL_NS
        self._hook_on_fill = self.hooks.has_observers("botframe_on_fill")
        self._hook_on_update = self.hooks.has_observers("botframe_on_order_update")
        self._hook_on_status = self.hooks.has_observers("botframe_on_feed_status")

        log = get_logger("botframe.strategy", strategy=self.name)
        #: The :class:`~botframe.strategy.OrderRouter` the strategy's context talks to.
        self.router: OrderRouter = _Router(self)
        self.ctx = StrategyContext(self.name, self.venue, self.router, log)
        self.strategy: T = strategy(self.settings, self.ctx)
        self.runner = StrategyRunner(self.name, self.strategy, max_errors, log,
                                     on_stopped=self._strategy_stopped, on_error=self._strategy_error)
        specs = list(self.strategy.signal_specs())
        self._slots.update({(self.venue, symbol): _Slot(self.venue, symbol, specs)
                            for symbol in self.settings.symbols})
        self._dispatch(self.runner.start)
        self._raise_errors()

    # -- feeding the market ------------------------------------------------------------------------------

    def feed(self, *events: MarketEvent) -> None:
        """Deliver events in order, each at its timestamp when that is later than now (else at now).

        Book events and trades go to the book, signals, strategy and paper venue; a ``FeedStatus``
        moves the book's health. Events of symbols the strategy does not subscribe to are ignored.
        """
        for event in events:
            self._feed_one(event)

    def play(self, events: Iterable[MarketEvent]) -> None:
        """Feed a whole sequence (a list, or a generator such as :meth:`SimulatedMarket.events`)."""
        for event in events:
            self._feed_one(event)

    def advance(self, seconds: float = 0.0, *, ms: float = 0.0) -> None:
        """Let clock time pass: timers fire, due paper reports are released, in time order."""
        self.advance_to(self.clock.time_ns() + round(seconds * 1e9) + round(ms * 1e6))

    def advance_to(self, ts_ns: int) -> None:
        """Move the clock to ``ts_ns`` (epoch ns), handling everything due on the way."""
        while True:
            due = self._next_due()
            if due is None or due > ts_ns:
                break
            if due > self.clock.time_ns():
                self.clock.set(due)
            self._run_due(self.clock.time_ns())
        if ts_ns > self.clock.time_ns():
            self.clock.set(ts_ns)
        self._raise_errors()

    def set_health(self, symbol: str, health: BookHealth, reason: HealthReason = HealthReason.GAP,
                   detail: str = "", venue: str | None = None) -> None:
        """Move a book's health as a venue would (``BookHealth.RESYNCING`` on a gap, ``LIVE`` once in sync)."""
        slot = self._slots.get((venue or self.venue, symbol))
        if slot is None:
            raise KeyError(f"the strategy does not subscribe to {symbol} on {venue or self.venue}")
        self._move_health(slot, health, reason, detail)
        self._raise_errors()

    def stop(self) -> None:
        """Stop as the engine does: ``on_stop``, cancel every open order, let the paper venue confirm."""
        self._dispatch(self.runner.stop)
        self._cancel_all()
        due = self.fill_engine.next_due_ns()
        while due is not None:
            self.advance_to(max(due, self.clock.time_ns()))
            due = self.fill_engine.next_due_ns()
        self._raise_errors()

    # -- reading -----------------------------------------------------------------------------------------

    def book(self, symbol: str, venue: str | None = None) -> L2Book:
        """The harness's book of a subscribed symbol."""
        slot = self._slots.get((venue or self.venue, symbol))
        if slot is None:
            raise KeyError(f"the strategy does not subscribe to {symbol} on {venue or self.venue}")
        return slot.book

    def signal(self, symbol: str, signal: str | SignalSpec, venue: str | None = None) -> float | None:
        """A declared signal's current value, as the strategy reads it."""
        return self._signal(venue or self.venue, symbol, signal if isinstance(signal, str) else signal.name)

    def position(self, symbol: str, venue: str | None = None) -> Decimal:
        """The signed position in base units, from the fills reported so far."""
        return self.portfolio.position(venue or self.venue, symbol)

    def pnl(self, symbol: str | None = None, venue: str | None = None) -> PnL:
        """PnL marked at the books' mids (of everything when ``symbol`` is None)."""
        self._mark_all()
        return self.portfolio.pnl(venue or self.venue if symbol else venue, symbol)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """The strategy's orders that are not finished."""
        return [o for o in self.tracker.open_orders(None, symbol) if o.strategy == self.name]

    @property
    def stopped(self) -> bool:
        """Whether the strategy was stopped (by :meth:`stop` or after ``max_errors`` exceptions)."""
        return self.runner.stopped

    def summary(self) -> HarnessSummary:
        """What happened so far, as exact values (compare two runs with ``==``)."""
        self._mark_all()
        by_status: dict[str, int] = {}
        for order in self.orders:
            by_status[order.status.value] = by_status.get(order.status.value, 0) + 1
        by_code: dict[str, int] = {}
        for denial in self.denials:
            by_code[denial.code] = by_code.get(denial.code, 0) + 1
        volume: dict[str, Decimal] = {}
        for fill in self.fills:
            volume[fill.symbol] = volume.get(fill.symbol, Decimal(0)) + fill.quantity
        total = self.portfolio.pnl(None, None)
        return HarnessSummary(
            strategy=self.name,
            events=self.events,
            intents=len(self.intents),
            orders_by_status=dict(sorted(by_status.items())),
            denials_by_code=dict(sorted(by_code.items())),
            fills=len(self.fills),
            maker_fills=sum(1 for f in self.fills if f.liquidity == "maker"),
            taker_fills=sum(1 for f in self.fills if f.liquidity == "taker"),
            volume=dict(sorted(volume.items())),
            fees=sum((f.fee for f in self.fills), Decimal(0)),
            positions={symbol: self.portfolio.position(venue, symbol) for venue, symbol in sorted(self._slots)},
            max_abs_position=dict(sorted(self.max_abs_position.items())),
            realized_pnl=total.realized,
            unrealized_pnl=total.unrealized,
            net_pnl=total.net,
            errors=self.runner.errors,
            stopped=self.runner.stopped,
        )

    # -- the per-event path (as engine.py) ------------------------------------------------------------

    def _feed_one(self, event: MarketEvent) -> None:
        stamp = event.ts_ns if isinstance(event, FeedStatus) else (event.receive_ts_ns or event.exchange_ts_ns)
        if stamp > self.clock.time_ns():
            self.advance_to(stamp)
        now = self.clock.time_ns()
        slot = self._slots.get((event.venue, event.symbol))
        if slot is None:
            self.ignored_events += 1
            return
        self.events += 1
        if isinstance(event, FeedStatus):
            self._move_health(slot, event.health, event.reason, event.detail)
            self._raise_errors()
            return
        if not event.receive_ts_ns:
            event = msgspec.structs.replace(event, receive_ts_ns=now)
        if isinstance(event, Trade):
            if slot.signals is not None:
                slot.signals.on_trade(event)
            self._dispatch(self.runner.trade, event)
            self._paper(self.fill_engine.on_trade(event, now))
        else:
            book = slot.book
            if isinstance(event, BookSnapshot):
                book.apply_snapshot(event)
            else:
                book.apply_delta(event)
            if book.is_crossed():
                # A crossed book is a wrong book: nobody reads it until a snapshot re-syncs it.
                self._move_health(slot, BookHealth.RESYNCING, HealthReason.CROSSED, "crossed book")
            else:
                if slot.signals is not None:
                    if isinstance(event, BookSnapshot):
                        slot.signals.on_snapshot(event)
                    else:
                        slot.signals.on_delta(event)
                if isinstance(event, BookSnapshot) and not book.is_live:
                    if book.health is BookHealth.CONNECTING:
                        self._move_health(slot, BookHealth.SYNCING, HealthReason.SUBSCRIBED)
                    self._move_health(slot, BookHealth.LIVE, HealthReason.SNAPSHOT)
                if book.is_live:
                    self._dispatch(self.runner.book, book)
            self._paper(self.fill_engine.on_book(event, now))
        self._raise_errors()

    def _move_health(self, slot: _Slot, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        status = slot.book.set_health(health, reason, self.clock.time_ns(), detail)
        if status is None:
            return
        self.statuses.append(status)
        self._dispatch(self.runner.feed_status, status)
        if self._hook_on_status:
            self.hooks.on_feed_status(status)

    def _dispatch(self, callback: Any, *args: Any) -> None:
        """Call a strategy callback; reports that arrive meanwhile wait until it returns."""
        self._depth += 1
        try:
            callback(*args)
        finally:
            self._depth -= 1
        self._deliver_pending()

    # -- orders (the OrderRouter side, as engine.py) ------------------------------------------------------

    def _submit(self, intent: OrderIntent) -> bool:
        self.intents.append(intent)
        denials = self.gate.check(intent)
        if denials:
            reason = "; ".join(f"{d.check}: {d.reason}" for d in denials)
            self._to_strategy(OrderUpdate(
                client_order_id=intent.client_order_id, venue=intent.venue, symbol=intent.symbol,
                status=OrderStatus.REJECTED, side=intent.side, quantity=intent.quantity, price=intent.price,
                reason=f"denied by risk: {reason}", ts_ns=intent.ts_ns), observed=False)
            return False
        self.orders.append(self.tracker.add(intent))
        self._paper(self.fill_engine.submit(intent, self.clock.time_ns()))
        return True

    def _cancel_request(self, strategy: str, client_order_id: str) -> None:
        order = self.tracker.get(client_order_id)
        if order is None or order.strategy != strategy:
            self.ctx.log.warning("cancel of an order this strategy does not own ignored",
                                 client_order_id=client_order_id)
            return
        self._cancel(order)

    def _cancel(self, order: Order, *, force: bool = False) -> None:
        if not order.is_open or order.status is OrderStatus.CANCEL_PENDING:
            return
        if self.gate.check_cancel(order, force=force) is not None:
            return
        now = self.clock.time_ns()
        self.tracker.request_cancel(order.client_order_id, now)
        self._paper(self.fill_engine.cancel(order.client_order_id, now))

    def _cancel_all(self) -> None:
        for order in self.tracker.open_orders(None, None):
            self._cancel(order, force=True)

    def _replace(self, strategy: str, client_order_id: str, quantity: Decimal | None,
                 price: Decimal | None) -> str | None:
        order = self.tracker.get(client_order_id)
        if order is None or order.strategy != strategy or order.status.is_terminal:
            return None
        new_id = self._client_ids.next()
        now = self.clock.time_ns()
        intent = OrderIntent(
            client_order_id=new_id, strategy=strategy, venue=order.venue, symbol=order.symbol, side=order.side,
            quantity=quantity if quantity is not None else order.quantity, order_type=order.order_type,
            price=price if price is not None else order.price, time_in_force=order.time_in_force,
            post_only=order.post_only, reduce_only=order.reduce_only, ts_ns=now)
        self.intents.append(intent)
        if self.gate.check(intent):
            return None
        self.orders.append(self.tracker.add(intent))
        self._paper(self.fill_engine.replace(client_order_id, new_id, quantity=intent.quantity,
                                             price=intent.price, now_ns=now))
        return new_id

    def _set_timer(self, name: str, interval_secs: float) -> None:
        interval_ns = max(1, int(interval_secs * 1e9))
        self._timers = [t for t in self._timers if t[2] != name]
        heapq.heapify(self._timers)
        self._timer_seq += 1
        heapq.heappush(self._timers, (self.clock.time_ns() + interval_ns, self._timer_seq, name, interval_ns))

    # -- reports from the paper venue (as engine.py and the paper executor) -----------------------------

    def _paper(self, reports: Iterable[Report]) -> None:
        """Report in order, also when a report makes the strategy send a new request (re-entry)."""
        self._outbox.extend(reports)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._outbox:
                self._report(self._outbox.popleft())
        finally:
            self._delivering = False
        self.notices.extend(self.fill_engine.take_notices())

    def _report(self, event: OrderUpdate | Fill) -> None:
        if isinstance(event, Fill):
            self.tracker.on_fill(event)
            self.portfolio.on_fill(event)
            self.fills.append(event)
            held = abs(self.portfolio.position(event.venue, event.symbol))
            if held > self.max_abs_position.get(event.symbol, Decimal(0)):
                self.max_abs_position[event.symbol] = held
        else:
            self.tracker.apply(event)
        self._to_strategy(event)

    def _to_strategy(self, event: OrderUpdate | Fill, *, observed: bool = True) -> None:
        """Deliver a report now, or right after the running callback; ``observed``: call the hooks too."""
        if self._depth:
            self._pending.append((event, observed))
        else:
            self._deliver(event, observed)

    def _deliver(self, event: OrderUpdate | Fill, observed: bool) -> None:
        self._depth += 1
        try:
            if isinstance(event, Fill):
                self.runner.fill(event)
                if observed and self._hook_on_fill:
                    self.hooks.on_fill(event)
            else:
                self.updates.append(event)
                self.runner.order_update(event)
                if observed and self._hook_on_update:
                    self.hooks.on_order_update(event)
        finally:
            self._depth -= 1
        self._deliver_pending()

    def _deliver_pending(self) -> None:
        while self._pending and not self._depth:
            pending, self._pending = self._pending, []
            for event, observed in pending:
                self._deliver(event, observed)

    def _publish(self, event: Event) -> None:
        """What the risk gate publishes: denials, and trading state changes (HALTED cancels everything)."""
        if isinstance(event, OrderDenied):
            self.denials.append(event)
        elif isinstance(event, TradingStateChanged):
            self.state_changes.append(event)
            if event.state is TradingState.HALTED:
                self._cancel_all()

    # -- time -----------------------------------------------------------------------------------------

    def _next_due(self) -> int | None:
        due = [t for t in (self.fill_engine.next_due_ns(),
                           self._timers[0][0] if self._timers else None,
                           self._next_kill_switch_ns if self._kill_switch_on else None) if t is not None]
        return min(due) if due else None

    def _run_due(self, now: int) -> None:
        self._paper(self.fill_engine.advance(now))
        while self._timers and self._timers[0][0] <= now:
            due, _seq, name, interval = heapq.heappop(self._timers)
            self._timer_seq += 1
            following = due + interval
            heapq.heappush(self._timers, (following if following > now else now + interval, self._timer_seq,
                                          name, interval))
            self._dispatch(self.runner.timer, name, now)
        if self._kill_switch_on and now >= self._next_kill_switch_ns:
            self._mark_all()
            self.gate.evaluate_kill_switch()
            self._next_kill_switch_ns = now + _KILL_SWITCH_INTERVAL_NS

    # -- lookups and errors -------------------------------------------------------------------------------

    def _book(self, venue: str, symbol: str) -> L2Book | None:
        slot = self._slots.get((venue, symbol))
        return slot.book if slot is not None else None

    def _signal(self, venue: str, symbol: str, name: str) -> float | None:
        slot = self._slots.get((venue, symbol))
        if slot is None:
            raise KeyError(f"the strategy does not subscribe to {symbol} on {venue}")
        if slot.signals is None:
            raise KeyError(f"no signal named {name!r}: the strategy's signal_specs() declares none")
        return slot.signals.value(name)

    def _signal_or_none(self, venue: str, symbol: str, name: str) -> float | None:
        slot = self._slots.get((venue, symbol))
        if slot is None or slot.signals is None or name not in slot.signals.names:
            return None
        return slot.signals.value(name)

    def _router_instrument(self, venue: str, symbol: str) -> Instrument | None:
        return self._instruments.get((venue, symbol))

    def _instrument_rules(self, venue: str, symbol: str) -> Any:
        key = (venue, symbol)
        if key not in self._rules:
            inst = self._instruments.get(key)
            self._rules[key] = _paper_engine.InstrumentRules.from_instrument(inst) if inst is not None else None
        return self._rules[key]

    def _mark_all(self) -> None:
        for (venue, symbol), slot in self._slots.items():
            mid = slot.book.mid()
            if mid is not None:
                self.portfolio.mark(venue, symbol, mid)

    def _strategy_stopped(self, strategy: str) -> None:
        self._cancel_all()

    def _strategy_error(self, callback: str, exc: Exception) -> None:
        self.errors.append((callback, exc))
        if self.raise_errors:
            self._unraised.append((callback, exc))

    def _raise_errors(self) -> None:
        if self._unraised and not self._depth:
            callback, exc = self._unraised[0]
            self._unraised.clear()
            exc.add_note(f"raised by {self.name}.{callback}; StrategyHarness re-raises strategy errors "
                         "(raise_errors=False counts them and stops the strategy as the engine does)")
            raise exc


# -- the simulator's market, without a server ------------------------------------------------------------


class SimulatedMarket:
    """The exchange simulator's seeded order-flow model as a stream of events (no server, no clock).

    ``SimulatedMarket(["BTC/USDT"], seed=42)`` steps the same model ``[services.sim]`` serves, with the
    symbols' rules from ``sim`` (default: the simulator's defaults), and yields what a venue plugin would
    publish: one snapshot per symbol, then per update interval each symbol's trades and then its depth
    change, stamped with simulated time from :data:`START_NS`. The same seed gives the same events.
    """

    def __init__(self, symbols: Sequence[str] = ("BTC/USDT",), *, seed: int = 42, venue: str = "binance",
                 update_interval_ms: int = 100, sim: BaseModel | Mapping[str, Any] | None = None) -> None:
        sim_model = _sim_config.SimSettings
        settings: Any = sim if isinstance(sim, sim_model) else sim_model.model_validate(dict(sim or {}))
        entries = []
        for symbol in symbols:
            found = [e for e in settings.symbols if e.symbol == symbol and e.venue == venue]
            if not found:
                known = ", ".join(f"{e.venue}:{e.symbol}" for e in settings.symbols)
                raise ValueError(f"the simulator settings have no {venue}:{symbol}; they have {known}")
            entries.append(found[0])
        #: The ``botframe_plugins.sim.model.SymbolSpec`` of each symbol.
        self.specs: list[Any] = [e.spec() for e in entries]
        #: The simulator's ``MarketModel``, stepped by :meth:`events`.
        self.model: Any = _sim_model.MarketModel(self.specs, seed=seed, update_interval_ms=update_interval_ms,
                                                 flows=[settings.flow_for(e) for e in entries], start_ns=START_NS)
        #: The symbols' trading rules, to pass to :class:`StrategyHarness`.
        self.instruments = [
            Instrument(venue=s.venue, symbol=s.symbol, venue_symbol=s.base + s.quote, base=s.base, quote=s.quote,
                       tick_size=str(s.tick_size), lot_size=str(s.lot_size), min_notional=str(s.min_notional))
            for s in self.specs
        ]
        self._started = False

    def events(self, duration_secs: float) -> Iterator[BookSnapshot | BookDelta | Trade]:
        """The events of the next ``duration_secs`` of simulated time (the first call starts with snapshots)."""
        model = self.model
        by_key = {(s.venue, s.symbol): s for s in self.specs}
        if not self._started:
            self._started = True
            for spec in self.specs:
                state = model[(spec.venue, spec.symbol)].state()
                yield BookSnapshot(
                    venue=spec.venue, symbol=spec.symbol,
                    bids=[(float(spec.price(p)), float(spec.qty(q))) for p, q in state.bids],
                    asks=[(float(spec.price(p)), float(spec.qty(q))) for p, q in state.asks],
                    sequence=state.update_id, exchange_ts_ns=model.ts_ns, receive_ts_ns=model.ts_ns)
        for _ in range(round(duration_secs * 1000 / model.update_interval_ms)):
            step = model.step()
            ts = step.ts_ns
            for st in step.symbols:
                spec = by_key[(st.venue, st.symbol)]
                for t in st.trades:
                    yield Trade(venue=st.venue, symbol=st.symbol, price=float(spec.price(t.price_ticks)),
                                size=float(spec.qty(t.qty_lots)), side=t.aggressor, trade_id=str(t.trade_id),
                                exchange_ts_ns=ts, receive_ts_ns=ts)
                if st.has_book_changes:
                    yield BookDelta(
                        venue=st.venue, symbol=st.symbol,
                        bids=[(float(spec.price(p)), float(spec.qty(q))) for p, q in st.bids],
                        asks=[(float(spec.price(p)), float(spec.qty(q))) for p, q in st.asks],
                        first_seq=st.first_update_id, last_seq=st.last_update_id,
                        exchange_ts_ns=ts, receive_ts_ns=ts)


# -- the engine's side of a venue plugin, for the plugin's tests ---------------------------------------------


class RecordingVenueContext:
    """A :class:`~botframe.venues.VenueContext` for venue plugins' tests, applying book events as the engine does.

    ``apply(event)`` changes the book at once and remembers the event; ``publish(event)`` of that same
    event (the same object) does not apply it again, as ``Engine._on_delta`` does not; any other book
    event is applied when published. Only published events count as seen: they are appended to
    ``events`` and handed to ``bus`` (a real :class:`~botframe.bus.EventBus`, when given), so a test can
    subscribe to ``BookDelta`` / ``BookSnapshot`` exactly as the engine's book keeper, signals, strategies
    and the paper executor do. :meth:`unpublished` lists what was applied but never published (what a
    venue withheld because it failed verification).

    Also recorded: ``statuses`` (each :class:`~botframe.events.FeedStatus` a health change produced, also
    published on ``bus``), ``instruments``, ``counts`` (per name) and ``symbol_counts`` (per symbol and
    name), and ``crossed_after_event`` (book events published onto a crossed book, which the engine would
    hide from strategies and have re-synced). Set ``client`` to the venue client under test to have the
    engine's reaction too: such a book is counted (``crossed``) and, while LIVE, re-synced through
    ``client.resync(symbol, CROSSED, ...)``. :meth:`wait_until` waits for any of these to change (and,
    with ``poll_secs``, re-checks at least that often, for state that changes elsewhere: a test server's)::

        ctx = RecordingVenueContext("kraken", bus=EventBus())
        client = KrakenDataClient(settings, ctx)
        ...
        await ctx.wait_until(lambda: ctx.book("BTC/USD").is_live)
    """

    def __init__(
        self,
        venue: str,
        *,
        clock: Clock | None = None,
        endpoints: Endpoints | None = None,
        bus: EventBus | None = None,
        log: structlog.typing.FilteringBoundLogger | None = None,
        poll_secs: float | None = None,
    ) -> None:
        self.venue = venue
        self.clock: Clock = clock if clock is not None else LiveClock()
        self.log: structlog.typing.FilteringBoundLogger = (
            log if log is not None else get_logger("botframe.venue", venue=venue))
        self.endpoints = endpoints if endpoints is not None else Endpoints()
        self.bus = bus
        self.books: dict[str, L2Book] = {}
        #: Every event published, in order (book events, trades...).
        self.events: list[Event] = []
        #: Every book event applied ahead of publishing it (``apply``), in order, published or not.
        self.applied: list[BookSnapshot | BookDelta] = []
        self.statuses: list[FeedStatus] = []
        self.instruments: dict[str, Instrument] = {}
        self.counts: Counter[str] = Counter()
        self.symbol_counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.crossed_after_event = 0
        #: The venue client whose crossed books are re-synced as the engine does (None: only counted above).
        self.client: VenueClient | None = None
        self._poll_secs = poll_secs
        self._pre_applied: defaultdict[str, deque[BookSnapshot | BookDelta]] = defaultdict(deque)
        self._published_ids: set[int] = set()  # ids of published events (``events`` keeps them alive)
        self._changed = asyncio.Event()

    # -- VenueContext ----------------------------------------------------------------------------------------

    def book(self, symbol: str) -> L2Book:
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = L2Book(self.venue, symbol)
        return book

    def apply(self, event: BookSnapshot | BookDelta) -> L2Book:
        book = self.book(event.symbol)
        _apply(book, event)
        self._pre_applied[event.symbol].append(event)
        self.applied.append(event)
        self._changed.set()
        return book

    def publish(self, event: Event) -> None:
        if isinstance(event, BookSnapshot | BookDelta):
            book = self.book(event.symbol)
            if not self._was_pre_applied(event):
                _apply(book, event)
            if book.is_crossed():
                self.crossed_after_event += 1
                if self.client is not None:
                    self._crossed(book)
        self.events.append(event)
        self._published_ids.add(id(event))
        if self.bus is not None:
            self.bus.publish(event)
        self._changed.set()

    def set_health(self, symbol: str, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        status = self.book(symbol).set_health(health, reason, self.clock.time_ns(), detail)
        if status is not None:
            self.statuses.append(status)
            if self.bus is not None:
                self.bus.publish(status)
        self._changed.set()

    def add_instrument(self, instrument: Instrument) -> None:
        self.instruments[instrument.symbol] = instrument

    def count(self, name: str, symbol: str = "", n: int = 1) -> None:
        self.counts[name] += n
        if symbol:
            self.symbol_counts[symbol][name] += n
        self._changed.set()

    # -- reading what happened -------------------------------------------------------------------------------

    def unpublished(self) -> list[BookSnapshot | BookDelta]:
        """Book events applied (``apply``) but never published: nobody downstream of the venue saw them."""
        published = self._published_ids
        return [e for e in self.applied if id(e) not in published]

    def transitions(self, symbol: str) -> list[tuple[BookHealth, HealthReason]]:
        """Each health move of ``symbol``'s book, as (new health, reason)."""
        return [(s.health, s.reason) for s in self.statuses if s.symbol == symbol]

    def trades(self) -> list[Trade]:
        """The trades published, in order."""
        return [e for e in self.events if isinstance(e, Trade)]

    def top(self, symbol: str, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """The best ``n`` bids and asks of ``symbol``'s book, best first."""
        book = self.book(symbol)
        return book.bids(n), book.asks(n)

    def live(self, *symbols: str) -> bool:
        """Whether every one of ``symbols`` has a LIVE book."""
        return all(s in self.books and self.books[s].is_live for s in symbols)

    def poke(self) -> None:
        """Wake :meth:`wait_until` (a test whose predicate reads something this context does not see change)."""
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Return once ``predicate()`` holds, checked after each change recorded here; ``TimeoutError`` after
        ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                if self._poll_secs is None:
                    await self._changed.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), self._poll_secs)

    def _crossed(self, book: L2Book) -> None:
        # As Engine._crossed: count it, and ask the venue to re-sync a book that was LIVE.
        assert self.client is not None
        self.count("crossed", book.symbol)
        if book.is_live:
            bid, ask = book.best_bid(), book.best_ask()
            detail = f"best bid {bid[0] if bid else None} >= best ask {ask[0] if ask else None}"
            self.client.resync(book.symbol, HealthReason.CROSSED, detail)

    def _was_pre_applied(self, event: BookSnapshot | BookDelta) -> bool:
        # As the engine: events applied before this one but never published are forgotten here.
        pending = self._pre_applied.get(event.symbol)
        while pending:
            if pending.popleft() is event:
                return True
        return False


def _apply(book: L2Book, event: BookSnapshot | BookDelta) -> None:
    if isinstance(event, BookDelta):
        book.apply_delta(event)
    else:
        book.apply_snapshot(event)


if TYPE_CHECKING:
    # The type checker proves the recording context implements the whole protocol the engine's does.
    _RECORDING_IS_A_VENUE_CONTEXT: type[VenueContext] = RecordingVenueContext


@contextlib.asynccontextmanager
async def running_venue(client: V) -> AsyncIterator[V]:
    """Run a venue client's ``run()`` as a task while the body runs, then cancel it.

    ``run()`` may end only by that cancellation: an error it raised meanwhile (a fatal stream error, an
    unknown symbol) is raised here, and returning at all is a bug of the client (``AssertionError``).
    """
    task = asyncio.create_task(client.run())
    try:
        yield client
    finally:
        if not task.done():
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the test itself is being cancelled (a timeout): let it go
        else:
            raise AssertionError(f"{type(client).__name__}.run() returned; it must run until cancelled")


# -- the exchange's side of a venue plugin's tests -----------------------------------------------------------

#: In a :class:`ScriptedVenue` script: wait for the client's next request and answer it.
WAIT_FOR_REQUEST = "<wait for the client's next request>"


def json_response(body: bytes | str, status: int = 200) -> Response:
    """An HTTP response carrying ``body`` as JSON (for a test server's ``process_request``)."""
    raw = body.encode() if isinstance(body, str) else body
    return Response(status, "OK" if status == 200 else "", Headers(
        {"Content-Type": "application/json", "Content-Length": str(len(raw))}), raw)


@dataclass
class LocalVenue:
    """A venue endpoint on 127.0.0.1 for a venue plugin's tests: WebSocket and REST on one port (``async with``).

    REST ``GET`` targets (path and query, as the client sends them) are answered from ``rest``, 404
    otherwise. Each WebSocket connection is served by :meth:`handler`: here it only records what the
    client sends and holds the connection open; a subclass serves its venue's protocol, and calls
    :meth:`record` for each frame received, so a test can read ``received`` (texts, in order;
    :meth:`requests` decodes them as JSON) or :meth:`wait_until` something happened.
    """

    _: KW_ONLY
    rest: Mapping[str, str] = field(default_factory=dict)
    ws_path: str = ""
    received: list[str] = field(default_factory=list)
    connections: int = 0
    server: Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    @property
    def url(self) -> str:
        """The WebSocket URL (``ws_path`` included)."""
        return f"ws://127.0.0.1:{self._port()}{self.ws_path}"

    @property
    def http_url(self) -> str:
        """The REST base URL."""
        return f"http://127.0.0.1:{self._port()}"

    def requests(self) -> list[Any]:
        """What the client sent, each frame decoded as JSON (a text that is not JSON stays text)."""
        out: list[Any] = []
        for text in self.received:
            try:
                out.append(json.loads(text))
            except ValueError:
                out.append(text)
        return out

    def record(self, message: str | bytes) -> str:
        """Note a frame the client sent; returns it as text."""
        text = message if isinstance(message, str) else message.decode()
        self.received.append(text)
        self._changed.set()
        return text

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Return once ``predicate()`` holds, checked on each connection and frame received."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        body = self.rest.get(request.path)
        if body is None:
            return conn.respond(404, "not found")
        return json_response(body)

    async def handler(self, ws: ServerConnection) -> None:
        """Serve one WebSocket connection: record what the client sends until it closes."""
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                self.record(message)

    async def __aenter__(self) -> Self:
        self.server = await serve(self._serve, "127.0.0.1", 0, process_request=self.process_request,
                                  compression=None, max_size=2**23)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, ws: ServerConnection) -> None:
        self.connections += 1
        self._changed.set()
        await self.handler(ws)

    def _port(self) -> int:
        assert self.server is not None, "use the venue inside 'async with'"
        port: int = self.server.sockets[0].getsockname()[1]
        return port


def _no_answer(request: str, frames_sent: int) -> list[str]:
    return []


@dataclass
class ScriptedVenue(LocalVenue):
    """A :class:`LocalVenue` that plays ``script`` to each connection once the client sent its first frame.

    ``later_script`` goes to connections after the first, when given. Between two script frames, every
    request that arrived meanwhile is answered with ``answer(request_text, frames_sent)``;
    :data:`WAIT_FOR_REQUEST` in the script waits for the next request and answers it. After the script,
    requests are answered as they come. ``replies`` answer a request at once, outside the script (OKX's
    text ``ping`` -> ``pong``).
    """

    script: list[str]
    answer: Callable[[str, int], list[str]] = _no_answer
    later_script: list[str] | None = None
    replies: Mapping[str, str] = field(default_factory=dict)

    async def handler(self, ws: ServerConnection) -> None:
        script = self.script if self.connections == 1 or self.later_script is None else self.later_script
        inbox: asyncio.Queue[str | None] = asyncio.Queue()

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    text = self.record(message)
                    reply = self.replies.get(text)
                    if reply is not None:
                        await ws.send(reply)
                    else:
                        inbox.put_nowait(text)
            inbox.put_nowait(None)  # wakes a handler waiting for a request

        async def next_request() -> str:
            text = await inbox.get()
            if text is None:
                raise ConnectionClosed(None, None)
            return text

        async def answer(request: str, sent: int) -> None:
            for frame in self.answer(request, sent):
                await ws.send(frame)

        reader = asyncio.create_task(read())
        try:
            await next_request()  # the client's first subscription
            sent = 0
            for frame in script:
                if frame == WAIT_FOR_REQUEST:
                    await answer(await next_request(), sent)
                    continue
                while not inbox.empty():
                    await answer(await next_request(), sent)
                await ws.send(frame)
                sent += 1
            while True:
                await answer(await next_request(), sent)
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


@dataclass
class ReplayScript:
    """Frames for a :class:`ScriptedVenue` made from a recorded session, each knowing its recorded frame.

    ``original`` is what the exchange sent. A test takes recorded frames (leaving some out: they still
    happened on the exchange), puts altered ones in their place, adds extra ones, and waits for requests;
    ``origin`` keeps, per scripted frame (waits aside), the index of the recorded frame it is or follows,
    so :meth:`happened` gives what the exchange had sent once ``sent`` scripted frames went out (what a
    fresh snapshot must show).
    """

    original: list[str]
    frames: list[str] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)

    def take(self, indexes: Iterable[int]) -> Self:
        """The recorded frames at ``indexes``, as they were."""
        for i in indexes:
            self.frames.append(self.original[i])
            self.origin.append(i)
        return self

    def altered(self, index: int, frame: str) -> Self:
        """``frame`` in place of recorded frame ``index`` (what the exchange did is the recorded one)."""
        self.frames.append(frame)
        self.origin.append(index)
        return self

    def extra(self, frame: str) -> Self:
        """A frame the recording does not have, after the last one taken."""
        self.frames.append(frame)
        self.origin.append(self.origin[-1] if self.origin else -1)
        return self

    def wait(self, requests: int = 1) -> Self:
        """Wait for (and answer) the client's next ``requests`` requests."""
        self.frames += [WAIT_FOR_REQUEST] * requests
        return self

    def happened(self, sent: int) -> list[str]:
        """The recorded frames the exchange had sent once ``sent`` scripted frames went out."""
        return self.original[: self.origin[sent - 1] + 1] if sent else []
