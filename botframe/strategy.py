"""The strategy API: a class with settings, callbacks, and a context to read the market and trade.

A complete strategy::

    class Settings(StrategySettings):
        threshold: float = 0.3
        order_qty: Decimal = Decimal("0.01")

    class Follow(Strategy[Settings]):
        Settings = Settings

        def signal_specs(self) -> list[SignalSpec]:
            return [Imbalance(levels=5)]

        def on_book(self, book: L2Book) -> None:
            imb = self.ctx.signal(book.symbol, "imbalance_5")
            if imb is not None and imb > self.settings.threshold and not self.ctx.open_orders(book.symbol):
                self.ctx.buy(book.symbol, self.settings.order_qty)

Callbacks run on the engine's event path, synchronously: keep them short and never block. ``on_book``
is called only while that book is LIVE. An exception in a callback is logged with context and counted;
after ``[engine] max_strategy_errors`` the strategy is stopped and its orders are cancelled, while the
bot keeps running.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field

from .events import (
    FeedStatus,
    Fill,
    OrderIntent,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    Trade,
)

if TYPE_CHECKING:
    from .book import L2Book
    from .clock import Clock
    from .orders import Order
    from .signals import SignalSpec
    from .venues import Instrument

__all__ = [
    "OrderRouter",
    "PnL",
    "Strategy",
    "StrategyContext",
    "StrategyRunner",
    "StrategySettings",
    "to_decimal",
]

Number = Decimal | int | float | str


def to_decimal(value: Number) -> Decimal:
    """Exact conversion for quantities and prices (floats go through their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


class StrategySettings(BaseModel):
    """Base of every strategy's settings: the ``[strategies.<name>]`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    venue: str = "binance"
    symbols: list[str] = Field(min_length=1)


S = TypeVar("S", bound=StrategySettings)


@dataclass(frozen=True, slots=True)
class PnL:
    """Profit and loss in the quote currency; exact."""

    realized: Decimal
    unrealized: Decimal
    fees: Decimal

    @property
    def net(self) -> Decimal:
        return self.realized + self.unrealized - self.fees


class OrderRouter(Protocol):
    """The engine's side of a strategy context (what it needs to read the market and route orders)."""

    clock: Clock

    def book(self, venue: str, symbol: str) -> L2Book | None: ...

    def signal(self, venue: str, symbol: str, name: str) -> float | None: ...

    def instrument(self, venue: str, symbol: str) -> Instrument | None: ...

    def position(self, venue: str, symbol: str) -> Decimal: ...

    def pnl(self, venue: str | None, symbol: str | None) -> PnL: ...

    def open_orders(self, strategy: str, venue: str | None, symbol: str | None) -> list[Order]: ...

    def next_client_order_id(self) -> str: ...

    def submit(self, intent: OrderIntent) -> bool: ...

    def cancel(self, strategy: str, client_order_id: str) -> None: ...

    def replace(self, strategy: str, client_order_id: str, quantity: Decimal | None,
                price: Decimal | None) -> str | None: ...

    def set_timer(self, strategy: str, name: str, interval_secs: float) -> None: ...


class StrategyContext:
    """What a strategy reads and does; ``self.ctx`` inside a strategy."""

    def __init__(self, name: str, venue: str, router: OrderRouter,
                 log: structlog.typing.FilteringBoundLogger | None = None) -> None:
        self.name = name
        self.venue = venue
        self._router = router
        self.log = log if log is not None else structlog.get_logger("botframe.strategy").bind(strategy=name)

    @property
    def clock(self) -> Clock:
        return self._router.clock

    def now_ns(self) -> int:
        return self._router.clock.time_ns()

    # -- reading --------------------------------------------------------------------------------------

    def book(self, symbol: str, venue: str | None = None) -> L2Book | None:
        return self._router.book(venue or self.venue, symbol)

    def signal(self, symbol: str, name: str, venue: str | None = None) -> float | None:
        """The latest value of a declared signal (by its spec's ``name``), or None while undefined."""
        return self._router.signal(venue or self.venue, symbol, name)

    def instrument(self, symbol: str, venue: str | None = None) -> Instrument | None:
        return self._router.instrument(venue or self.venue, symbol)

    def position(self, symbol: str, venue: str | None = None) -> Decimal:
        return self._router.position(venue or self.venue, symbol)

    def pnl(self, symbol: str | None = None, venue: str | None = None) -> PnL:
        return self._router.pnl(venue or self.venue if symbol else venue, symbol)

    def open_orders(self, symbol: str | None = None, venue: str | None = None) -> list[Order]:
        return self._router.open_orders(self.name, venue or self.venue, symbol)

    # -- trading --------------------------------------------------------------------------------------

    def buy(self, symbol: str, quantity: Number, price: Number | None = None, **flags: object) -> str | None:
        """Buy ``quantity``; a market order without ``price``. Returns the client order id, or None if denied."""
        return self.submit(Side.BUY, symbol, quantity, price, **flags)  # type: ignore[arg-type]

    def sell(self, symbol: str, quantity: Number, price: Number | None = None, **flags: object) -> str | None:
        """Sell ``quantity``; a market order without ``price``. Returns the client order id, or None if denied."""
        return self.submit(Side.SELL, symbol, quantity, price, **flags)  # type: ignore[arg-type]

    def submit(
        self,
        side: Side,
        symbol: str,
        quantity: Number,
        price: Number | None = None,
        *,
        time_in_force: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        reduce_only: bool = False,
        venue: str | None = None,
    ) -> str | None:
        """Send an order through the risk gate; returns its client order id, or None if it was denied.

        Quantities are rounded down to the instrument's lot; limit prices to its tick on the passive
        side (buys down, sells up), so a strategy can work in plain numbers.
        """
        venue = venue or self.venue
        qty = to_decimal(quantity)
        px = to_decimal(price) if price is not None else None
        inst = self._router.instrument(venue, symbol)
        if inst is not None:
            qty = round_to_step(qty, Decimal(inst.lot_size), ROUND_DOWN)
            if px is not None:
                px = round_to_step(px, Decimal(inst.tick_size), ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)
        intent = OrderIntent(
            client_order_id=self._router.next_client_order_id(),
            strategy=self.name,
            venue=venue,
            symbol=symbol,
            side=side,
            quantity=qty,
            order_type=OrderType.LIMIT if px is not None else OrderType.MARKET,
            price=px,
            time_in_force=time_in_force,
            post_only=post_only,
            reduce_only=reduce_only,
            ts_ns=self._router.clock.time_ns(),
        )
        return intent.client_order_id if self._router.submit(intent) else None

    def cancel(self, client_order_id: str) -> None:
        self._router.cancel(self.name, client_order_id)

    def cancel_all(self, symbol: str | None = None) -> None:
        for order in self.open_orders(symbol):
            self._router.cancel(self.name, order.client_order_id)

    def replace(self, client_order_id: str, *, quantity: Number | None = None,
                price: Number | None = None) -> str | None:
        """Change an open order's size and/or price; returns the new client order id (None if refused)."""
        return self._router.replace(
            self.name, client_order_id,
            to_decimal(quantity) if quantity is not None else None,
            to_decimal(price) if price is not None else None,
        )

    def set_timer(self, name: str, interval_secs: float) -> None:
        """Call ``on_timer(name, now_ns)`` every ``interval_secs`` of clock time (replaces a timer of that name)."""
        self._router.set_timer(self.name, name, interval_secs)


def round_to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=rounding) * step


class Strategy(Generic[S]):
    """Base class of strategies. Override the callbacks you need; all default to doing nothing."""

    #: The pydantic model of this strategy's ``[strategies.<name>]`` section.
    Settings: ClassVar[type[StrategySettings]] = StrategySettings

    def __init__(self, settings: S, ctx: StrategyContext) -> None:
        self.settings = settings
        self.ctx = ctx

    def signal_specs(self) -> Sequence[SignalSpec]:
        """The signals this strategy reads; only declared signals are computed."""
        return ()

    def on_start(self) -> None:
        """Called once when market data starts flowing (books may not be LIVE yet)."""

    def on_stop(self) -> None:
        """Called once at shutdown, before open orders are cancelled."""

    def on_book(self, book: L2Book) -> None:
        """Called after each update of a subscribed book that is LIVE."""

    def on_trade(self, trade: Trade) -> None:
        """Called for each public trade of a subscribed symbol."""

    def on_fill(self, fill: Fill) -> None:
        """Called for each fill of one of this strategy's orders."""

    def on_order_update(self, update: OrderUpdate) -> None:
        """Called when one of this strategy's orders changes status (including risk denials: REJECTED)."""

    def on_feed_status(self, status: FeedStatus) -> None:
        """Called when a subscribed book changes health."""

    def on_timer(self, name: str, now_ns: int) -> None:
        """Called when a timer set with ``ctx.set_timer`` fires."""


class StrategyRunner:
    """Calls one strategy's callbacks, isolating its exceptions from the rest of the bot."""

    def __init__(self, name: str, strategy: Strategy[StrategySettings], max_errors: int,
                 log: structlog.typing.FilteringBoundLogger, on_stopped: _StopCallback | None = None) -> None:
        self.name = name
        self.strategy = strategy
        self.max_errors = max_errors
        self.errors = 0
        self.stopped = False
        self._log = log
        self._on_stopped = on_stopped

    def _failed(self, callback: str, exc: BaseException, **context: object) -> None:
        self.errors += 1
        self._log.error("strategy callback failed", callback=callback, errors=self.errors,
                        max_errors=self.max_errors, error=repr(exc), exc_info=exc, **context)
        if self.errors >= self.max_errors and not self.stopped:
            self.stopped = True
            self._log.error("strategy stopped after too many errors; cancelling its orders",
                            errors=self.errors)
            if self._on_stopped is not None:
                self._on_stopped(self.name)

    def start(self) -> None:
        try:
            self.strategy.on_start()
        except Exception as exc:
            self._failed("on_start", exc)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        try:
            self.strategy.on_stop()
        except Exception as exc:
            self._failed("on_stop", exc)

    def book(self, book: L2Book) -> None:
        if self.stopped:
            return
        try:
            self.strategy.on_book(book)
        except Exception as exc:
            self._failed("on_book", exc, symbol=book.symbol)

    def trade(self, trade: Trade) -> None:
        if self.stopped:
            return
        try:
            self.strategy.on_trade(trade)
        except Exception as exc:
            self._failed("on_trade", exc, symbol=trade.symbol)

    def fill(self, fill: Fill) -> None:
        if self.stopped:
            return
        try:
            self.strategy.on_fill(fill)
        except Exception as exc:
            self._failed("on_fill", exc, symbol=fill.symbol, client_order_id=fill.client_order_id)

    def order_update(self, update: OrderUpdate) -> None:
        if self.stopped:
            return
        try:
            self.strategy.on_order_update(update)
        except Exception as exc:
            self._failed("on_order_update", exc, symbol=update.symbol, client_order_id=update.client_order_id)

    def feed_status(self, status: FeedStatus) -> None:
        if self.stopped:
            return
        try:
            self.strategy.on_feed_status(status)
        except Exception as exc:
            self._failed("on_feed_status", exc, symbol=status.symbol)

    def timer(self, name: str, now_ns: int) -> None:
        if self.stopped:
            return
        try:
            self.strategy.on_timer(name, now_ns)
        except Exception as exc:
            self._failed("on_timer", exc, timer=name)


class _StopCallback(Protocol):
    def __call__(self, strategy: str) -> None: ...
