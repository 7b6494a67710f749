"""The paper executor plugin: approved orders are filled by :class:`~.engine.FillEngine`, not a venue.

The executor subscribes to book events and trades on the bus (the engine's books already include an
event when its handler runs), feeds them to the fill engine with the clock's time, and reports what
the engine returns through ``context.report``. Latency is simulated in event time: a request or a
report is released by the first market event, request or timer at or after its due time. With the
live clock a timer (``loop.call_later``, never a sleep on the event path) releases them on time when
the market is quiet; with a simulated clock (replay, tests) only events move time, so a replay gives
the same fills every run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botframe.clock import LiveClock
from botframe.events import BookDelta, BookSnapshot, OrderIntent, Trade
from botframe.hookspecs import hookimpl

from .config import PaperSettings
from .engine import FillEngine, InstrumentRules, Report

if TYPE_CHECKING:
    from botframe.execution import ExecutorContext
    from botframe.journal import Recovered
    from botframe.plugins import Registry

__all__ = ["PaperExecutor", "botframe_register_executors", "create_paper_executor"]


class PaperExecutor:
    """An :class:`~botframe.execution.Executor` that trades against a simulated venue.

    One executor serves every venue and symbol: an order is filled against the book of its own
    (venue, symbol). The engine keeps its own ledger of positions for reduce-only orders; after a
    restart, seed it with :meth:`set_position`.
    """

    #: Orders live only in this process: the journal need not commit each intent before submit.
    orders_leave_process = False

    def __init__(self, settings: PaperSettings, context: ExecutorContext) -> None:
        self.settings = settings
        self._context = context
        self._log = context.log.bind(executor="paper")
        self._rules: dict[tuple[str, str], InstrumentRules | None] = {}
        self.engine = FillEngine(settings.engine_config(), books=context.book, instruments=self._instrument)
        self._outbox: deque[Report] = deque()
        self._delivering = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due_ns: int | None = None
        self._use_timer = settings.release_on_timer and isinstance(context.clock, LiveClock)
        self._subscribed = False

    # -- Executor -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to market events; a paper venue needs no connection."""
        self._loop = asyncio.get_running_loop()
        if not self._subscribed:
            bus = self._context.bus
            bus.subscribe(BookSnapshot, self._on_book)
            bus.subscribe(BookDelta, self._on_book)
            bus.subscribe(Trade, self._on_trade)
            self._subscribed = True
        self._log.info("paper executor started", latency_ms=self.settings.latency_ms,
                       report_latency_ms=self.settings.report_latency_ms, seed=self.settings.seed)

    async def stop(self) -> None:
        """Let the simulated venue answer every request in flight, report it, then unsubscribe."""
        if self._subscribed:
            bus = self._context.bus
            bus.unsubscribe(BookSnapshot, self._on_book)
            bus.unsubscribe(BookDelta, self._on_book)
            bus.unsubscribe(Trade, self._on_trade)
            self._subscribed = False
        self._cancel_timer()
        self._use_timer = False
        self._deliver(self.engine.settle())
        self._log.info("paper executor stopped", **dict(self.engine.counters))

    def submit(self, intent: OrderIntent) -> None:
        """Send an approved order to the simulated venue."""
        self._deliver(self.engine.submit(intent, self._now()))

    def cancel(self, client_order_id: str) -> None:
        """Ask the simulated venue to cancel an order."""
        self._deliver(self.engine.cancel(client_order_id, self._now()))

    def replace(self, client_order_id: str, new_client_order_id: str, *, quantity: Decimal,
                price: Decimal | None) -> None:
        """Replace an order (priority kept only when the price is unchanged and the size does not grow)."""
        self._deliver(self.engine.replace(client_order_id, new_client_order_id, quantity=quantity,
                                          price=price, now_ns=self._now()))

    # -- extras -------------------------------------------------------------------------------------

    def restore(self, recovered: Recovered) -> Collection[str]:
        """Seed the simulated venue's positions from the journal; its resting orders died with it."""
        for (venue, symbol), quantity in recovered.positions.items():
            if quantity:
                self.engine.set_position(venue, symbol, quantity)
        return ()

    def set_position(self, venue: str, symbol: str, quantity: Decimal) -> None:
        """Tell the simulated venue the position it holds (for reduce-only orders after a restart)."""
        self.engine.set_position(venue, symbol, quantity)

    # -- market events ------------------------------------------------------------------------------

    def _on_book(self, event: BookSnapshot | BookDelta) -> None:
        # Runs for every book event: with nothing to report (the common case) skip the delivery
        # plumbing, but still arm the timer for a report the engine now holds for later.
        reports = self.engine.on_book(event, self._context.clock.time_ns())
        if reports or self.engine._notices:  # has_notices(), inline: this runs for every book event
            self._deliver(reports)
        elif self._use_timer:
            self._schedule()

    def _on_trade(self, trade: Trade) -> None:
        self._deliver(self.engine.on_trade(trade, self._now()))

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due_ns = None
        self._deliver(self.engine.advance(self._now()))

    # -- plumbing -----------------------------------------------------------------------------------

    def _now(self) -> int:
        return self._context.clock.time_ns()

    def _instrument(self, venue: str, symbol: str) -> InstrumentRules | None:
        key = (venue, symbol)
        if key in self._rules:
            return self._rules[key]
        instrument = self._context.instrument(venue, symbol)
        if instrument is None:
            return None  # not known yet; a venue may add it later, so do not cache the miss
        try:
            rules: InstrumentRules | None = InstrumentRules.from_instrument(instrument)
        except ValueError as exc:
            self._log.error("unusable instrument rules; orders on it are rejected", venue=venue,
                            symbol=symbol, error=str(exc))
            rules = None
        self._rules[key] = rules
        return rules

    def _deliver(self, reports: Iterable[Report]) -> None:
        """Report in order, also when a report makes a strategy send a new request (re-entry)."""
        self._outbox.extend(reports)
        if self._delivering:
            return  # the outer call is draining the outbox and will report these in order
        self._delivering = True
        try:
            report = self._context.report
            while self._outbox:
                report(self._outbox.popleft())
        finally:
            self._delivering = False
        for notice in self.engine.take_notices():
            self._log.warning("paper venue refused a request", kind=notice.kind,
                              client_order_id=notice.client_order_id, reason=notice.reason)
        self._schedule()

    def _schedule(self) -> None:
        if not self._use_timer or self._loop is None:
            return
        due = self.engine.next_due_ns()
        if due is None or (self._timer_due_ns is not None and self._timer_due_ns <= due):
            return
        self._cancel_timer()
        self._timer_due_ns = due
        self._timer = self._loop.call_later(max(0.0, (due - self._now()) / 1e9), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_due_ns = None


def create_paper_executor(settings: PaperSettings, context: ExecutorContext) -> PaperExecutor:
    """The factory the engine calls with the ``[executors.paper]`` settings."""
    return PaperExecutor(settings, context)


@hookimpl
def botframe_register_executors(registry: Registry[Callable[..., Any]]) -> None:
    """Register the ``paper`` executor."""
    registry.add("paper", create_paper_executor, PaperSettings)
