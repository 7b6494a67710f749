"""The engine: builds every component from settings and plugins, runs them under one TaskGroup.

Per market event the path is direct calls resolved here at start-up (no pluggy, no queues)::

    venue parser -> bus.publish(BookDelta) -> Engine._on_delta: book.apply -> signals (per event part)
                                                 -> signals (the rest) -> strategies   (see below)
                                            -> paper executor (its own subscription, every event)

Under a burst (frames the connection had already received) every event is applied at once, but the
rest of the signals and the strategies run once per changed book, on its latest state, when the event
loop would otherwise wait for the network; a lone frame goes straight through (``_flush_books``).

Orders go ``StrategyContext -> Engine.submit -> journal -> RiskGate -> OrderTracker -> executor``;
executors report back through ``Engine.report -> journal -> orders/portfolio -> bus -> strategies``.
Reports that arrive while a strategy callback is running are delivered to strategies right after it
returns, so a strategy never sees its own fill before ``buy()`` has returned.

Every task is owned: spawned tasks run inside the engine's TaskGroup through a guard that logs a
crash, marks the run failed and asks for a clean shutdown, so one failing task never hangs the bot.
"""

from __future__ import annotations

import asyncio
import gc
import heapq
import signal
import sys
from collections import Counter, defaultdict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from . import book as _book
from .book import L2Book
from .bus import EventBus
from .clock import Clock, LiveClock
from .events import (
    BookDelta,
    BookHealth,
    BookSnapshot,
    FeedStatus,
    Fill,
    HealthReason,
    OrderDenied,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    Trade,
    TradingState,
    TradingStateChanged,
)
from .journal import Journal, JournalError, JournalEvent, Recovered
from .log import get_logger
from .orders import ClientOrderIds, Order, OrderTracker
from .portfolio import Portfolio
from .risk import RiskContext, RiskGate, TradingStateMachine, direct_risk_check
from .signals import SignalSet
from .strategy import PnL, Strategy, StrategyContext, StrategyRunner, StrategySettings
from .venues import Endpoints, Instrument

if TYPE_CHECKING:
    from .execution import Executor
    from .plugins import PluginSystem
    from .services import Service
    from .settings import Settings
    from .venues import VenueClient

__all__ = ["Engine", "MarketSlot", "RunSummary"]

_RISK_EVAL_INTERVAL_NS = 500_000_000
# Finished orders kept for look-ups: the last 1,000, and any finished within the last minute (report
# time). Reports come milliseconds after an order finishes; a bound by count alone would let a busy
# bot's history grow for hours before it is reached.
_FINISHED_ORDERS_KEPT = 1_000
_FINISHED_ORDERS_RETENTION_NS = 60_000_000_000


class MarketSlot:
    """Everything attached to one (venue, symbol): its book, its signals, the strategies that read it.

    ``pending`` is True while the book has changed since its strategies last saw it (see
    ``Engine._flush_books``).
    """

    __slots__ = ("book", "pending", "pre_applied", "runners", "signals", "symbol", "venue")

    def __init__(self, venue: str, symbol: str) -> None:
        self.venue = venue
        self.symbol = symbol
        self.book = L2Book(venue, symbol)
        # Book events a venue applied early to verify them (VenueContext.apply), oldest first.
        self.pre_applied: deque[BookSnapshot | BookDelta] = deque()
        self.signals: SignalSet | None = None
        self.runners: list[StrategyRunner] = []
        self.pending = False


@dataclass(slots=True)
class RunSummary:
    """What a run did; printed at the end and returned to tests."""

    duration_secs: float = 0.0
    messages: int = 0
    events: int = 0
    books: list[dict[str, Any]] = field(default_factory=list)
    orders_by_status: dict[str, int] = field(default_factory=dict)
    denials: int = 0
    fills: int = 0
    fees: Decimal = Decimal(0)
    positions: list[dict[str, Any]] = field(default_factory=list)
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    failed: bool = False
    venue_counters: dict[str, dict[str, int]] = field(default_factory=dict)
    strategy_errors: dict[str, int] = field(default_factory=dict)


def _was_pre_applied(pre_applied: deque[BookSnapshot | BookDelta], ev: BookSnapshot | BookDelta) -> bool:
    """Whether a venue already applied ``ev`` to verify it; forgets events it applied but never published."""
    while pre_applied:
        if pre_applied.popleft() is ev:
            return True
    return False


class _VenueContext:
    """The engine's implementation of :class:`botframe.venues.VenueContext` for one venue."""

    def __init__(self, engine: Engine, venue: str) -> None:
        self._engine = engine
        self.venue = venue
        self.clock = engine.clock
        self.log = get_logger("botframe.venue", venue=venue)
        self.endpoints = engine.endpoints
        self.publish = engine.bus.publish  # bound once: the hot path
        self.counters: Counter[str] = Counter()
        self.symbol_counters: dict[str, Counter[str]] = defaultdict(Counter)

    def set_health(self, symbol: str, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        slot = self._engine.slot(self.venue, symbol)
        status = slot.book.set_health(health, reason, self.clock.time_ns(), detail)
        if status is not None:
            self.log.info("book health", symbol=symbol, health=health.value, reason=reason.value,
                          previous=status.previous.value, detail=detail)
            self._engine.bus.publish(status)

    def book(self, symbol: str) -> L2Book:
        return self._engine.slot(self.venue, symbol).book

    def apply(self, event: BookSnapshot | BookDelta) -> L2Book:
        slot = self._engine.slot(self.venue, event.symbol)
        if isinstance(event, BookDelta):
            slot.book.apply_delta(event)
        else:
            slot.book.apply_snapshot(event)
        slot.pre_applied.append(event)
        return slot.book

    def add_instrument(self, instrument: Instrument) -> None:
        self._engine.instruments[(instrument.venue, instrument.symbol)] = instrument

    def count(self, name: str, symbol: str = "", n: int = 1) -> None:
        self.counters[name] += n
        if symbol:
            self.symbol_counters[symbol][name] += n


class _ExecutorContext:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.clock = engine.clock
        self.bus = engine.bus
        self.log = get_logger("botframe.executor")
        self.endpoints = engine.endpoints

    def book(self, venue: str, symbol: str) -> L2Book | None:
        slot = self._engine.slots.get((venue, symbol))
        return slot.book if slot is not None else None

    def instrument(self, venue: str, symbol: str) -> Instrument | None:
        return self._engine.instruments.get((venue, symbol))

    def report(self, event: OrderUpdate | Fill) -> None:
        self._engine.report(event)


class _ServiceContext:
    def __init__(self, engine: Engine, name: str) -> None:
        self._engine = engine
        self.clock = engine.clock
        self.log = get_logger("botframe.service", service=name)
        self.endpoints = engine.endpoints

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        return self._engine.spawn(coro, name=name)


class Engine:
    """Builds and runs one bot from validated settings and loaded plugins."""

    def __init__(self, settings: Settings, plugins: PluginSystem, *, clock: Clock | None = None,
                 out: TextIO | None = None, live_view: bool | None = None) -> None:
        self.settings = settings
        self.plugins = plugins
        self.hooks = plugins.hooks
        self.clock: Clock = clock if clock is not None else LiveClock()
        self.out = out if out is not None else sys.stdout
        self.live_view = self.out.isatty() if live_view is None else live_view
        self.log = get_logger("botframe.engine")
        self.bus = EventBus()
        self.endpoints = Endpoints()
        self.slots: dict[tuple[str, str], MarketSlot] = {}
        self.instruments: dict[tuple[str, str], Instrument] = {}
        self.failed = False
        self.summary: RunSummary | None = None
        self._stop = asyncio.Event()
        self._journal_failed = False
        self._orders_closed = asyncio.Event()  # set whenever the last open order finishes
        self._tasks: list[asyncio.Task[None]] = []
        self._tg: asyncio.TaskGroup | None = None
        self._services: list[tuple[str, Service]] = []
        self._venues: list[tuple[str, VenueClient, _VenueContext]] = []
        self._venue_clients: dict[str, tuple[VenueClient, _VenueContext]] = {}
        self._runners: dict[str, StrategyRunner] = {}
        # Strategy of each denied intent until its REJECTED update is delivered (tracked orders carry
        # their own strategy; a map of every order ever sent would grow for the whole run).
        self._denied_strategy: dict[str, str] = {}
        self._timers: list[tuple[int, str, str, int]] = []  # (due_ns, strategy, name, interval_ns)
        self._dispatch_depth = 0
        # Reports waiting for the running strategy callback to return: (event, from an executor).
        self._pending: list[tuple[OrderUpdate | Fill, bool]] = []
        # Books changed since their strategies last saw them, in the order they changed, and whether
        # a flush is scheduled on the event loop (see _flush_books).
        self._pending_books: deque[MarketSlot] = deque()
        self._flush_scheduled = False
        self._heap_frozen = False
        self._started_ns = 0
        self._health_at_stop: dict[tuple[str, str], BookHealth] = {}
        self._fills = 0
        self._fees = Decimal(0)
        self._hook_on_fill = False
        self._hook_on_update = False
        self._hook_on_status = False
        self._build()

    # -- building -------------------------------------------------------------------------------------

    def _build(self) -> None:
        s = self.settings
        self.hooks.configure(s)
        self.journal: Journal | None = None
        if s.journal.enabled:
            self.journal = Journal(s.resolve_path(s.journal.path), fsync=s.journal.fsync)
        self.portfolio = Portfolio(starting_cash=dict(s.portfolio.starting_cash), instruments=self.instrument)
        self.orders = OrderTracker(max_finished=_FINISHED_ORDERS_KEPT, retention_ns=_FINISHED_ORDERS_RETENTION_NS)
        self.trading_state = TradingStateMachine()
        start_counter = 0
        recovered: Recovered | None = None
        if self.journal is not None:
            recovered = self.journal.recover()
            start_counter = recovered.max_client_order_counter
            for fill in recovered.fills:
                self.portfolio.on_fill(fill)
                self._fills += 1
                self._fees += fill.fee
            if recovered.trading_state is TradingState.REDUCING:
                self.trading_state.restore(TradingState.REDUCING)
                self.log.warning("trading state restored from the journal", state="reducing")
            elif recovered.trading_state is TradingState.HALTED:
                # A restart is one of the two ways out of HALTED (the other is an explicit resume).
                self.log.warning("trading was halted before the restart; the restart resumes it")
        self.client_ids = ClientOrderIds(self.clock, start_counter=start_counter)
        self.risk_context = RiskContext(
            books=self._book_or_none,
            signal=self.signal,
            portfolio=self.portfolio,
            orders=self.orders,
            instruments=self.instrument,
            clock=self.clock,
            trading_state=self.trading_state,
            settings=s.risk,
        )
        self.gate = RiskGate(direct_risk_check(self.plugins.pm.hook.botframe_check_order), self.risk_context,
                             self.bus.publish)
        self._hook_on_fill = self.hooks.has_observers("botframe_on_fill")
        self._hook_on_update = self.hooks.has_observers("botframe_on_order_update")
        self._hook_on_status = self.hooks.has_observers("botframe_on_feed_status")

        # Order of subscription is order of delivery: books and strategies first, executors after.
        self.bus.subscribe(BookSnapshot, self._on_snapshot)
        self.bus.subscribe(BookDelta, self._on_delta)
        self.bus.subscribe(Trade, self._on_trade)
        self.bus.subscribe(FeedStatus, self._on_feed_status)
        self.bus.subscribe(OrderDenied, self._on_denied)
        self.bus.subscribe(TradingStateChanged, self._on_trading_state)

        for name in s.enabled_services():
            entry = self.plugins.services.get(name)
            assert entry is not None  # load_settings validated every section against the registry
            self._services.append((name, entry.factory(s.section("services", name), _ServiceContext(self, name))))
        for name in s.venues:
            entry = self.plugins.venues.get(name)
            assert entry is not None
            ctx = _VenueContext(self, name)
            client: VenueClient = entry.factory(s.section("venues", name), ctx)
            for symbol in client.symbols:
                self.slot(name, symbol)
            self._venues.append((name, client, ctx))
            self._venue_clients[name] = (client, ctx)
        executor_entry = self.plugins.executors.get(s.executor)
        assert executor_entry is not None
        executor_settings = (s.plugin_sections["executors"].get(s.executor)
                             or executor_entry.settings_model())
        self.executor: Executor = executor_entry.factory(executor_settings, _ExecutorContext(self))
        if self.journal is not None and not getattr(self.executor, "orders_leave_process", True):
            # Paper: an intent needs no commit of its own before the order is handed over (see
            # botframe.journal, "batch"); it is committed with the next fill or tick.
            self.journal.commit_intents_at_once = False
        if recovered is not None:
            self._restore_orders(recovered)
        for name in s.strategies:
            self._build_strategy(name)

    def _restore_orders(self, recovered: Recovered) -> None:
        """Open orders from the journal: tracked again if the executor still works them, else expired."""
        assert self.journal is not None
        kept = set(self.executor.restore(recovered))
        for update in recovered.open_orders:
            cid = update.client_order_id
            intent = recovered.intents.get(cid)
            if cid in kept and intent is not None:
                order = self.orders.add(intent)
                order.filled_quantity = update.filled_quantity
                if update.status is not OrderStatus.NEW:
                    self.orders.apply(update)
                continue
            self.journal.record(OrderUpdate(
                client_order_id=cid, venue=update.venue, symbol=update.symbol, status=OrderStatus.EXPIRED,
                side=update.side, quantity=update.quantity, filled_quantity=update.filled_quantity,
                price=update.price, reason="expired at restart: the executor no longer works it",
                ts_ns=self.clock.time_ns()))
        if kept:
            self.log.info("open orders recovered from the journal", orders=len(kept))

    def _build_strategy(self, name: str) -> None:
        entry = self.plugins.strategies.get(name)
        assert entry is not None
        settings = self.settings.section("strategies", name)
        assert isinstance(settings, StrategySettings)
        log = get_logger("botframe.strategy", strategy=name)
        ctx = StrategyContext(name, settings.venue, self, log)
        strategy: Strategy[Any] = entry.factory(settings, ctx)
        runner = StrategyRunner(name, strategy, self.settings.engine.max_strategy_errors, log,
                                on_stopped=self._strategy_stopped)
        self._runners[name] = runner
        specs = list(strategy.signal_specs())
        for symbol in settings.symbols:
            slot = self.slot(settings.venue, symbol)
            slot.runners.append(runner)
            if specs:
                existing = list(slot.signals.specs) if slot.signals is not None else []
                merged = existing + [sp for sp in specs if sp not in existing]
                slot.signals = SignalSet(slot.book, merged)

    def slot(self, venue: str, symbol: str) -> MarketSlot:
        key = (venue, symbol)
        slot = self.slots.get(key)
        if slot is None:
            slot = self.slots[key] = MarketSlot(venue, symbol)
        return slot

    # -- the per-event path ---------------------------------------------------------------------------

    def _on_snapshot(self, ev: BookSnapshot) -> None:
        slot = self.slots.get((ev.venue, ev.symbol))
        if slot is None:
            return
        book = slot.book
        if not (slot.pre_applied and _was_pre_applied(slot.pre_applied, ev)):
            book.apply_snapshot(ev)
        if book.is_crossed():
            self._crossed(slot)
            return
        if slot.signals is not None:
            slot.signals.on_snapshot(ev)
        self._book_changed(slot)

    def _on_delta(self, ev: BookDelta) -> None:
        slot = self.slots.get((ev.venue, ev.symbol))
        if slot is None:
            return
        book = slot.book
        if not (slot.pre_applied and _was_pre_applied(slot.pre_applied, ev)):
            book.apply_delta(ev)
        bids = book._bid_prices  # book.is_crossed(), inline: this runs for every delta
        asks = book._ask_prices
        if bids and asks and bids[-1] >= -asks[-1]:
            self._crossed(slot)
            return
        signals = slot.signals
        if signals is not None:
            signals.note_delta(ev)  # what each event must do (event time, order-flow terms); the rest at flush
        if not slot.pending:
            slot.pending = True
            self._pending_books.append(slot)
            if not self._flush_scheduled:
                self._start_burst()

    def _book_changed(self, slot: MarketSlot) -> None:
        """Queue ``slot`` for its strategies (``_on_delta`` inlines this)."""
        if not slot.pending:
            slot.pending = True
            self._pending_books.append(slot)
            if not self._flush_scheduled:
                self._start_burst()

    def _start_burst(self) -> None:
        """The first book change since the event loop was last idle: show it now, defer the rest.

        A lone frame reaches its strategies at once (no loop turn on its latency); the book changes
        that follow while the loop is still busy wait for one flush when it is idle again.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven synchronously (no event loop): there is no burst to wait for
            self._flush_books()
            return
        self._flush_scheduled = True  # first: book events that this flush causes are deferred
        try:
            self._flush_books()
        finally:
            loop.call_soon(self._on_flush_due)  # after the decision, not on its latency

    def _on_flush_due(self) -> None:
        self._flush_scheduled = False
        self._flush_books()

    def flush_books(self) -> None:
        """Bring every changed book's signals up to date and show it to its strategies now.

        The engine does this by itself once the event loop has nothing more to hand over (the end of
        a burst); a replay driver that feeds frames without yielding to the loop may call it.
        """
        self._flush_books()

    def _flush_books(self) -> None:
        """Refresh the signals of every changed book and call its strategies, once, on the latest state.

        A burst of frames (everything the connection had already received) is applied to the books one
        event at a time, as it arrives: book, crossed check, the per-event part of the signals, and the
        paper executor, which must see every change for its queue positions. Only then, when the event
        loop would otherwise wait for the network, are the remaining signals computed and strategies
        called, once per changed book. Any other delivery to strategies (a trade, a fill, an order
        update, a feed status, a timer) first flushes the changed books, so each strategy still sees
        every event in the order it happened; only consecutive book updates are merged. Re-entrant:
        a nested call continues with the books the outer call has not reached.
        """
        pending = self._pending_books
        while pending:
            slot = pending.popleft()
            if not slot.pending:
                continue  # dispatched already (a feed status took it)
            slot.pending = False
            if slot.signals is not None:
                slot.signals.refresh()
            self._dispatch_book(slot)

    def _check_stale_books(self) -> None:
        """Re-sync LIVE books that have not changed within ``book_stale_after_ms``."""
        limit_ms = self.settings.engine.book_stale_after_ms
        if not limit_ms:
            return
        now = self.clock.time_ns()
        for (venue, symbol), slot in self.slots.items():
            book = slot.book
            if book.health is not BookHealth.LIVE or not book.receive_ts_ns:
                continue
            silent_ms = (now - book.receive_ts_ns) / 1e6
            if silent_ms > limit_ms:
                client = self._venue_clients.get(venue)
                if client is not None:
                    client[1].count("stale", symbol)
                    self._resync(venue, symbol, HealthReason.STALE, f"no update for {silent_ms:.0f} ms")

    def _crossed(self, slot: MarketSlot) -> None:
        """A crossed book is a wrong book: nobody reads it, and its venue re-syncs it from a snapshot."""
        bid, ask = slot.book.best_bid(), slot.book.best_ask()
        detail = f"best bid {bid[0] if bid else None} >= best ask {ask[0] if ask else None}"
        self.log.warning("crossed book; resyncing", venue=slot.venue, symbol=slot.symbol, detail=detail)
        client = self._venue_clients.get(slot.venue)
        if client is None:
            return
        client[1].count("crossed", slot.symbol)
        if slot.book.health is BookHealth.LIVE:
            self._resync(slot.venue, slot.symbol, HealthReason.CROSSED, detail)

    def _resync(self, venue: str, symbol: str, reason: HealthReason, detail: str) -> None:
        """Ask a venue to re-sync one book; a venue that fails to is logged and counted, never fatal."""
        client, ctx = self._venue_clients[venue]
        try:
            client.resync(symbol, reason, detail)
        except Exception as exc:
            ctx.count("resync_errors", symbol)
            self.log.error("venue failed to resync a book", venue=venue, symbol=symbol, reason=reason.value,
                           error=repr(exc))

    def _dispatch_book(self, slot: MarketSlot) -> None:
        book = slot.book
        # A crossed book is never shown (a burst may leave one that _crossed could not re-sync).
        if slot.runners and book.is_live and not book.is_crossed():
            self._dispatch_depth += 1
            try:
                for runner in slot.runners:
                    runner.book(book)
            finally:
                self._dispatch_depth -= 1
            if self._pending and not self._dispatch_depth:
                self._deliver_pending()

    def _on_trade(self, ev: Trade) -> None:
        slot = self.slots.get((ev.venue, ev.symbol))
        if slot is None:
            return
        if self._pending_books:
            self._flush_books()  # book updates before this trade reach strategies first
        if slot.signals is not None:
            slot.signals.on_trade(ev)
        if slot.runners:
            self._dispatch_depth += 1
            try:
                for runner in slot.runners:
                    runner.trade(ev)
            finally:
                self._dispatch_depth -= 1
            if self._pending and not self._dispatch_depth:
                self._deliver_pending()

    def _on_feed_status(self, ev: FeedStatus) -> None:
        slot = self.slots.get((ev.venue, ev.symbol))
        if slot is not None:
            if slot.pending:
                # Its own pending update is settled here: shown after the status when LIVE, else never.
                slot.pending = False
                if slot.signals is not None:
                    slot.signals.refresh()
            if self._pending_books:
                self._flush_books()
            self._dispatch_depth += 1
            try:
                for runner in slot.runners:
                    runner.feed_status(ev)
            finally:
                self._dispatch_depth -= 1
            if self._pending and not self._dispatch_depth:
                self._deliver_pending()
            if ev.health is BookHealth.LIVE:
                if slot.book.is_crossed():  # buffered updates can leave a freshly synced book crossed
                    self._crossed(slot)
                else:
                    self._dispatch_book(slot)  # the book strategies could not see until now
        if self._hook_on_status:
            self.hooks.on_feed_status(ev)

    def _record(self, event: JournalEvent) -> bool:
        """Journal one event; False when the journal cannot be written (then trading halts, once).

        The state in memory stays right (a fill is still applied), but nothing new may be sent while
        the source of truth for a restart is failing.
        """
        if self.journal is None:
            return True
        try:
            self.journal.record(event)
        except JournalError as exc:
            self._journal_unavailable(exc, type(event).__name__)
            return False
        return True

    def _journal_unavailable(self, exc: JournalError, what: str) -> None:
        """The journal cannot be written: halt trading, once (the source of truth is failing)."""
        if not self._journal_failed:
            self._journal_failed = True
            self.log.critical("journal write failed; halting trading", error=str(exc), event_type=what)
            self.risk_context.move_trading_state(TradingState.HALTED, f"journal unavailable: {exc}")

    def _on_denied(self, ev: OrderDenied) -> None:
        self._record(ev)

    def _on_trading_state(self, ev: TradingStateChanged) -> None:
        self._record(ev)
        self.log.warning("trading state changed", previous=ev.previous.value, state=ev.state.value,
                         reason=ev.reason)
        if ev.state is TradingState.HALTED:
            self._cancel_all()

    # -- orders (the OrderRouter protocol of StrategyContext) -----------------------------------------

    def _book_or_none(self, venue: str, symbol: str) -> L2Book | None:
        slot = self.slots.get((venue, symbol))
        return slot.book if slot is not None else None

    def book(self, venue: str, symbol: str) -> L2Book | None:
        return self._book_or_none(venue, symbol)

    def signal(self, venue: str, symbol: str, name: str) -> float | None:
        slot = self.slots.get((venue, symbol))
        if slot is None or slot.signals is None:
            return None
        return slot.signals.value(name)

    def instrument(self, venue: str, symbol: str) -> Instrument | None:
        return self.instruments.get((venue, symbol))

    def position(self, venue: str, symbol: str) -> Decimal:
        return self.portfolio.position(venue, symbol)

    def pnl(self, venue: str | None, symbol: str | None) -> PnL:
        self._mark_all()
        return self.portfolio.pnl(venue, symbol)

    def open_orders(self, strategy: str, venue: str | None, symbol: str | None) -> list[Order]:
        return [o for o in self.orders.open_orders(venue, symbol) if o.strategy == strategy]

    def next_client_order_id(self) -> str:
        return self.client_ids.next()

    def submit(self, intent: OrderIntent) -> bool:
        # Journaled before anything acts on it, so a crash cannot lose it (committed at once when the
        # order leaves the process); unjournaled, it is not sent (the halt that follows makes the gate
        # deny it and tell the strategy why).
        self._record(intent)
        denials = self.gate.check(intent)
        if denials:
            reason = "; ".join(f"{d.check}: {d.reason}" for d in denials)
            self._denied_strategy[intent.client_order_id] = intent.strategy
            rejected = OrderUpdate(
                client_order_id=intent.client_order_id, venue=intent.venue, symbol=intent.symbol,
                status=OrderStatus.REJECTED, side=intent.side, quantity=intent.quantity,
                price=intent.price, reason=f"denied by risk: {reason}", ts_ns=intent.ts_ns)
            # Like every report: never delivered inside the strategy's own buy()/sell().
            if self._dispatch_depth:
                self._pending.append((rejected, False))
            else:
                self._deliver(rejected, from_executor=False)
            return False
        self.orders.add(intent)
        self.executor.submit(intent)
        return True

    def cancel(self, strategy: str, client_order_id: str) -> None:
        order = self.orders.get(client_order_id)
        if order is None or order.strategy != strategy:
            self.log.warning("cancel of an order this strategy does not own ignored", strategy=strategy,
                             client_order_id=client_order_id)
            return
        self._cancel(order)

    def _cancel(self, order: Order, *, force: bool = False) -> bool:
        """Send one cancel, within the cancel rate limits unless ``force`` (halt, shutdown)."""
        if not order.is_open or order.status is OrderStatus.CANCEL_PENDING:
            return False
        if self.gate.check_cancel(order, force=force) is not None:
            return False
        self.orders.request_cancel(order.client_order_id, self.clock.time_ns())
        self.executor.cancel(order.client_order_id)
        return True

    def _cancel_all(self, strategy: str | None = None) -> None:
        for order in self.orders.open_orders(None, None):
            if strategy is None or order.strategy == strategy:
                self._cancel(order, force=True)

    def resume_trading(self, reason: str = "resumed by operator") -> None:
        """The operator's command to leave HALTED or REDUCING (also resets the loss baselines)."""
        self.gate.resume(reason)

    def replace(self, strategy: str, client_order_id: str, quantity: Decimal | None,
                price: Decimal | None) -> str | None:
        order = self.orders.get(client_order_id)
        if order is None or order.strategy != strategy or order.status.is_terminal:
            return None
        new_id = self.client_ids.next()
        intent = OrderIntent(
            client_order_id=new_id, strategy=strategy, venue=order.venue, symbol=order.symbol,
            side=order.side, quantity=quantity if quantity is not None else order.quantity,
            order_type=order.order_type, price=price if price is not None else order.price,
            time_in_force=order.time_in_force, post_only=order.post_only, reduce_only=order.reduce_only,
            ts_ns=self.clock.time_ns())
        self._record(intent)
        if self.gate.check(intent):
            return None
        self.orders.add(intent)
        self.executor.replace(client_order_id, new_id, quantity=intent.quantity, price=intent.price)
        return new_id

    def set_timer(self, strategy: str, name: str, interval_secs: float) -> None:
        interval_ns = max(1, int(interval_secs * 1e9))
        self._timers = [t for t in self._timers if not (t[1] == strategy and t[2] == name)]
        heapq.heapify(self._timers)
        heapq.heappush(self._timers, (self.clock.monotonic_ns() + interval_ns, strategy, name, interval_ns))

    # -- executor reports -----------------------------------------------------------------------------

    def report(self, event: OrderUpdate | Fill) -> None:
        """Record, apply and publish an executor's report (journal first: it is the source of truth)."""
        self._record(event)
        if isinstance(event, Fill):
            self.orders.on_fill(event)
            self.portfolio.on_fill(event)
            self._fills += 1
            self._fees += event.fee
        else:
            self.orders.apply(event)
            if event.status.is_terminal and not self.orders.open_count():
                self._orders_closed.set()
        self.bus.publish(event)
        if self._dispatch_depth:
            self._pending.append((event, True))
        else:
            self._deliver(event)

    def _deliver_pending(self) -> None:
        pending, self._pending = self._pending, []
        for event, from_executor in pending:
            self._deliver(event, from_executor=from_executor)

    def _deliver(self, event: OrderUpdate | Fill, *, from_executor: bool = True) -> None:
        """Hand a report to its strategy, and (executor reports only) to the observation hooks."""
        if self._pending_books:
            self._flush_books()  # the book updates that came before this report, first
        cid = event.client_order_id
        order = self.orders.get(cid)
        if order is not None:
            strategy = order.strategy
        else:
            strategy = self._denied_strategy.pop(cid, "") if not from_executor else ""
        runner = self._runners.get(strategy)
        self._dispatch_depth += 1
        try:
            if isinstance(event, Fill):
                if runner is not None:
                    runner.fill(event)
                if self._hook_on_fill and from_executor:
                    self.hooks.on_fill(event)
            else:
                if runner is not None:
                    runner.order_update(event)
                if self._hook_on_update and from_executor:
                    self.hooks.on_order_update(event)
        finally:
            self._dispatch_depth -= 1
        if self._pending:
            self._deliver_pending()

    def _strategy_stopped(self, strategy: str) -> None:
        self._cancel_all(strategy)

    # -- running --------------------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as an owned task; a crash is logged and stops the run cleanly."""
        if self._tg is None:
            coro.close()
            raise RuntimeError("the engine is not running")
        task = self._tg.create_task(self._guard(coro, name), name=name)
        self._tasks.append(task)
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed = True
            self.log.error("task failed; shutting down", task=name, error=repr(exc), exc_info=exc)
            self.request_stop()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> RunSummary:
        """Run until ``duration_secs`` elapses, a stop is requested, or a task fails; return the summary."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_stop)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests) or not supported
        self._started_ns = self.clock.monotonic_ns()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    await self._start()
                    await self._wait_for_stop()
                except Exception as exc:
                    self.failed = True
                    self.log.error("start-up failed; shutting down", error=repr(exc), exc_info=exc)
                await self._wind_down()
                for task in self._tasks:
                    task.cancel()
        finally:
            self._tg = None
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self._close()
        self.summary = self._make_summary()
        return self.summary

    async def _start(self) -> None:
        # Which book loops this run uses (same results either way); a missing build is worth a look.
        self.log.info("book loops", speedups="C" if _book._c_apply_side is not None else "pure Python")
        for name, service in self._services:
            self.log.info("starting service", service=name)
            await service.start()
        self.hooks.startup(self)
        await self.executor.start()
        for runner in self._runners.values():
            runner.start()
        for name, client, _ctx in self._venues:
            for symbol in client.symbols:
                self.slot(name, symbol)
            self.spawn(client.run(), name=f"venue:{name}")
        self.spawn(self._timer_loop(), name="timers")
        self.spawn(self._status_loop(), name="status")
        if self.journal is not None:
            self.spawn(self._journal_flush_loop(), name="journal-flush")
        for sub in self.bus.slow_subscribers:
            self.spawn(sub.drain_forever(), name=f"slow:{sub.name}")
        self._freeze_startup_heap()

    def _freeze_startup_heap(self) -> None:
        """Keep the cycle collector off what start-up built (modules, plugins, settings, ccxt).

        A full collection walks every tracked object: about 60 ms with the 240,000 objects of 100
        Binance symbols, a pause a strategy would see whenever the collector decides to run one.
        Frozen objects are never walked again; they are unfrozen when the run ends.
        """
        gc.collect()
        gc.freeze()
        self._heap_frozen = True

    async def _wait_for_stop(self) -> None:
        duration = self.settings.duration_secs
        if duration <= 0:
            await self._stop.wait()
            return
        deadline_ns = self._started_ns + int(duration * 1e9)
        while not self._stop.is_set():
            remaining = (deadline_ns - self.clock.monotonic_ns()) / 1e9
            if remaining <= 0:
                break
            stop_wait = asyncio.ensure_future(self._stop.wait())
            sleeper = asyncio.ensure_future(self.clock.sleep(min(remaining, 0.5)))
            _done, pending = await asyncio.wait({stop_wait, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _wind_down(self) -> None:
        """Stop strategies, cancel every open order and give the executor a moment to confirm."""
        self.log.info("stopping strategies and cancelling open orders")
        # The summary reports books as they were while trading, not as the venues leave them.
        self._health_at_stop = {key: slot.book.health for key, slot in self.slots.items()}
        for runner in self._runners.values():
            runner.stop()
        self._cancel_all()
        if self.orders.open_count():
            self._orders_closed.clear()
            try:
                async with asyncio.timeout(self.settings.engine.shutdown_timeout_secs):
                    await self._orders_closed.wait()
            except TimeoutError:
                self.log.warning("open orders not confirmed cancelled before the shutdown timeout",
                                 open_orders=[o.client_order_id for o in self.orders.open_orders(None, None)])

    async def _close(self) -> None:
        if self._heap_frozen:
            gc.unfreeze()  # what start-up built may be collected again once this run is over
            self._heap_frozen = False
        try:
            await self.executor.stop()
        except Exception as exc:
            self.log.error("executor stop failed", error=repr(exc))
        for name, service in reversed(self._services):
            try:
                await service.stop()
            except Exception as exc:
                self.log.error("service stop failed", service=name, error=repr(exc))
        try:
            self.hooks.shutdown(self)
        except Exception as exc:
            self.log.error("shutdown hook failed", error=repr(exc))
        if self.journal is not None:
            self.journal.close()

    async def _timer_loop(self) -> None:
        next_risk_ns = 0
        while True:
            await self.clock.sleep(0.05)
            now = self.clock.monotonic_ns()
            if now >= next_risk_ns:
                # Losses move with marks, not only with orders: the kill switch must trip by itself.
                self._mark_all()
                self.gate.evaluate_kill_switch()
                self._check_stale_books()
                next_risk_ns = now + _RISK_EVAL_INTERVAL_NS
            while self._timers and self._timers[0][0] <= now:
                due, strategy, name, interval = heapq.heappop(self._timers)
                next_due = due + interval
                if next_due <= now:  # late (a long callback, a paused loop): skip, never fire twice in a row
                    next_due = now + interval
                heapq.heappush(self._timers, (next_due, strategy, name, interval))
                runner = self._runners.get(strategy)
                if runner is not None:
                    if self._pending_books:
                        self._flush_books()
                    self._dispatch_depth += 1
                    try:
                        runner.timer(name, self.clock.time_ns())
                    finally:
                        self._dispatch_depth -= 1
                    if self._pending:
                        self._deliver_pending()

    async def _journal_flush_loop(self) -> None:
        assert self.journal is not None
        while True:
            await asyncio.sleep(0.05)
            try:
                self.journal.flush()
            except JournalError as exc:
                self._journal_unavailable(exc, "flush")

    async def _status_loop(self) -> None:
        from .status import StatusView

        view = StatusView(self, self.out, live=self.live_view)
        try:
            await view.run(self.settings.engine.status_interval_secs)
        finally:
            view.close()

    # -- reporting ------------------------------------------------------------------------------------

    def _mark_all(self) -> None:
        for (venue, symbol), slot in self.slots.items():
            mid = slot.book.mid()
            if mid is not None:
                self.portfolio.mark(venue, symbol, mid)

    def counters(self) -> dict[str, dict[str, int]]:
        return {name: dict(ctx.counters) for name, _c, ctx in self._venues}

    def messages(self) -> int:
        """Frames received from every venue so far (live connection counters)."""
        return sum(c.messages for _n, client, _ctx in self._venues for c in client.stream_counters())

    def _make_summary(self) -> RunSummary:
        self._mark_all()
        summary = RunSummary(
            duration_secs=(self.clock.monotonic_ns() - self._started_ns) / 1e9,
            messages=self.messages(),
            events=self.bus.published,
            orders_by_status={k.value: v for k, v in self.orders.counts_by_status().items()},
            denials=sum(self.gate.counts.values()),
            fills=self._fills,
            fees=self._fees,
            failed=self.failed,
            venue_counters=self.counters(),
            strategy_errors={name: r.errors for name, r in self._runners.items()},
        )
        for (venue, symbol), slot in sorted(self.slots.items()):
            book = slot.book
            bid, ask = book.best_bid(), book.best_ask()
            summary.books.append({
                "venue": venue, "symbol": symbol,
                "health": self._health_at_stop.get((venue, symbol), book.health).value,
                "best_bid": bid[0] if bid else None, "best_ask": ask[0] if ask else None,
                "levels": book.bid_count + book.ask_count,
                "gaps": book.counters.gaps, "checksum_failures": book.counters.checksum_failures,
                "crossed": book.counters.crossed, "stale": book.counters.stale,
                "resyncs": book.counters.resyncs,
                "not_live_secs": round(book.not_live_ns(self.clock.time_ns()) / 1e9, 3),
            })
        for row in self.portfolio.summary():
            summary.positions.append(row)
        total = self.portfolio.pnl(None, None)
        summary.realized_pnl = total.realized
        summary.unrealized_pnl = total.unrealized
        return summary
