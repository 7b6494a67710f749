"""The strategy API: a class with its own settings, callbacks, and a context to read the market and trade.

A complete strategy (the tutorial in ``docs/writing-a-strategy.md`` builds and tests one)::

    class FollowSettings(StrategySettings):          # the [strategies.follow] section of the config
        threshold: float = 0.3                       # buy above this top-5 imbalance
        order_qty: Decimal = Decimal("0.001")        # base units per order

    class Follow(Strategy[FollowSettings]):
        Settings = FollowSettings
        imbalance = Imbalance(levels=5)

        def signal_specs(self) -> list[SignalSpec]:
            return [self.imbalance]                  # only declared signals are computed

        def on_book(self, book: L2Book) -> None:
            value = self.ctx.signal(book.symbol, self.imbalance)
            if value is not None and value > self.settings.threshold and not self.ctx.open_orders(book.symbol):
                self.ctx.buy(book.symbol, self.settings.order_qty)

Subscriptions are declared: ``settings.venue`` and ``settings.symbols`` name the books (every strategy
settings model inherits both from :class:`StrategySettings`), ``signal_specs()`` the signals; the
engine keeps books and computes signals only for what some strategy declared.

Callbacks run synchronously on the engine's event path: keep them short and never block. ``on_book``
is called only while that book is LIVE. Order updates and fills that arrive while a callback runs are
delivered right after it returns, so a strategy never sees its own fill before ``buy()`` returned.
An exception in a callback is caught by :class:`StrategyRunner`, logged with the callback's name and
context, and counted; after ``[engine] max_strategy_errors`` the strategy is stopped and its orders
are cancelled, while the bot keeps running.

Quantities and prices are exact ``Decimal`` on the way out (``int``, ``str`` and ``float`` are accepted
and converted exactly); :meth:`StrategyContext.submit` rounds them to the instrument's lot and tick so
a strategy can work in plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, Field

from .events import (
    FeedStatus,
    Fill,
    OrderIntent,
    OrderStatus,
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
    "ErrorCallback",
    "Number",
    "OrderRouter",
    "PnL",
    "Strategy",
    "StrategyContext",
    "StrategyRunner",
    "StrategySettings",
    "round_to_step",
    "to_decimal",
]

#: What the context accepts as a quantity or a price; converted exactly by :func:`to_decimal`.
Number = Decimal | int | float | str

_ZERO = Decimal(0)


def to_decimal(value: Number) -> Decimal:
    """Exact conversion for quantities and prices (floats go through their shortest repr: 0.1 -> 0.1)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)


def round_to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    """``value`` rounded to a whole multiple of ``step`` with a ``decimal`` rounding mode (no-op for step 0)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=rounding) * step


class StrategySettings(BaseModel):
    """Base of every strategy's settings: the ``[strategies.<name>]`` section.

    Subclass it and add fields with units in their names (``cooldown_ms``, ``max_position``,
    ``half_spread_bps``); unknown keys in the section are errors.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The venue whose books this strategy reads and trades (a ``[venues.<name>]`` section).
    venue: str = "binance"
    #: The unified symbols it subscribes to, e.g. ``["BTC/USDT"]``.
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
        """Realized plus unrealized, minus fees."""
        return self.realized + self.unrealized - self.fees


class OrderRouter(Protocol):
    """The engine's side of a strategy context: what it needs to read the market and route orders.

    :class:`botframe.engine.Engine` implements it for real runs, the harness in
    :mod:`botframe.testing` for tests.
    """

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
    """What a strategy reads and does: ``self.ctx`` inside a strategy.

    ``symbol`` arguments are unified symbols (``"BTC/USDT"``); ``venue`` defaults to the strategy's own.
    """

    def __init__(self, name: str, venue: str, router: OrderRouter,
                 log: structlog.typing.FilteringBoundLogger | None = None) -> None:
        self.name = name
        self.venue = venue
        self._router = router
        #: A structlog logger bound with the strategy's name: ``self.ctx.log.info("quoting", bid=...)``.
        self.log = log if log is not None else structlog.get_logger("botframe.strategy").bind(strategy=name)

    @property
    def clock(self) -> Clock:
        """The engine's clock (simulated in replays and tests)."""
        return self._router.clock

    def now_ns(self) -> int:
        """The current time, epoch nanoseconds, from the engine's clock (never ``time.time()``)."""
        return self._router.clock.time_ns()

    # -- reading --------------------------------------------------------------------------------------

    def book(self, symbol: str, venue: str | None = None) -> L2Book | None:
        """The L2 book of ``symbol`` (None when the strategy does not subscribe to it)."""
        return self._router.book(venue or self.venue, symbol)

    def signal(self, symbol: str, signal: str | SignalSpec, venue: str | None = None) -> float | None:
        """The latest value of a declared signal, by spec or by its ``name``; None while undefined."""
        name = signal if isinstance(signal, str) else signal.name
        return self._router.signal(venue or self.venue, symbol, name)

    def instrument(self, symbol: str, venue: str | None = None) -> Instrument | None:
        """Tick, lot and minimum notional of ``symbol`` as the venue reports them (None until known)."""
        return self._router.instrument(venue or self.venue, symbol)

    def position(self, symbol: str, venue: str | None = None) -> Decimal:
        """The signed position in base units (long > 0), from the fills reported so far."""
        return self._router.position(venue or self.venue, symbol)

    def pnl(self, symbol: str | None = None, venue: str | None = None) -> PnL:
        """PnL of one symbol, or of everything when ``symbol`` is None (marked at the books' mids)."""
        if symbol is None:
            return self._router.pnl(venue, None)
        return self._router.pnl(venue or self.venue, symbol)

    def open_orders(self, symbol: str | None = None, venue: str | None = None) -> list[Order]:
        """This strategy's orders that are not finished yet (any symbol when ``symbol`` is None)."""
        return self._router.open_orders(self.name, venue or self.venue, symbol)

    def round_quantity(self, symbol: str, quantity: Number, venue: str | None = None) -> Decimal:
        """``quantity`` rounded down to the instrument's lot (unchanged while the instrument is unknown)."""
        qty = to_decimal(quantity)
        inst = self._router.instrument(venue or self.venue, symbol)
        return round_to_step(qty, _step(inst.lot_size), ROUND_DOWN) if inst is not None else qty

    def round_price(self, symbol: str, price: Number, side: Side, venue: str | None = None) -> Decimal:
        """``price`` rounded to the tick on the passive side: buys down, sells up."""
        px = to_decimal(price)
        inst = self._router.instrument(venue or self.venue, symbol)
        if inst is None:
            return px
        return round_to_step(px, _step(inst.tick_size), ROUND_FLOOR if side is Side.BUY else ROUND_CEILING)

    # -- trading --------------------------------------------------------------------------------------

    def buy(self, symbol: str, quantity: Number, price: Number | None = None, *,
            time_in_force: TimeInForce = TimeInForce.GTC, post_only: bool = False,
            reduce_only: bool = False, venue: str | None = None) -> str | None:
        """Buy ``quantity``; a market order without ``price``. Returns the client order id, or None if denied."""
        return self.submit(Side.BUY, symbol, quantity, price, time_in_force=time_in_force,
                           post_only=post_only, reduce_only=reduce_only, venue=venue)

    def sell(self, symbol: str, quantity: Number, price: Number | None = None, *,
             time_in_force: TimeInForce = TimeInForce.GTC, post_only: bool = False,
             reduce_only: bool = False, venue: str | None = None) -> str | None:
        """Sell ``quantity``; a market order without ``price``. Returns the client order id, or None if denied."""
        return self.submit(Side.SELL, symbol, quantity, price, time_in_force=time_in_force,
                           post_only=post_only, reduce_only=reduce_only, venue=venue)

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
        side (buys down, sells up). A denial also reaches ``on_order_update`` as a REJECTED update whose
        ``reason`` names the check.
        """
        venue = venue or self.venue
        qty = self.round_quantity(symbol, quantity, venue)
        px = self.round_price(symbol, price, side, venue) if price is not None else None
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
        """Ask to cancel one of this strategy's orders; the outcome arrives as an order update."""
        self._router.cancel(self.name, client_order_id)

    def cancel_all(self, symbol: str | None = None, venue: str | None = None) -> None:
        """Cancel every open order of this strategy (on ``symbol`` only, when given)."""
        for order in self.open_orders(symbol, venue):
            if order.status is not OrderStatus.CANCEL_PENDING:
                self._router.cancel(self.name, order.client_order_id)

    def replace(self, client_order_id: str, *, quantity: Number | None = None,
                price: Number | None = None) -> str | None:
        """Change an open order's size and/or price; returns the new client order id (None if refused).

        The new order goes through the risk gate. The venue keeps the order's queue place only when
        the price is unchanged and the size does not grow.
        """
        return self._router.replace(
            self.name, client_order_id,
            to_decimal(quantity) if quantity is not None else None,
            to_decimal(price) if price is not None else None,
        )

    def quote(self, symbol: str, side: Side, price: Number | None, quantity: Number, *,
              tolerance: Number = 0, venue: str | None = None) -> str | None:
        """Keep exactly one resting post-only order of this strategy on one side of ``symbol``.

        The market maker's primitive, called on every book update with the wanted price and size:

        * ``price`` None, a quantity that rounds to zero lots, or a notional below the instrument's
          minimum: the side is pulled (its orders cancelled);
        * a working order within ``tolerance`` (quote currency) of ``price`` and of the same size: kept;
        * any other working order: cancelled, and the new quote goes out on a later call, once the
          cancel is confirmed, so two quotes of one side never work at once (a position limit that
          sizes the quote from the current position then always holds);
        * no open order: a GTC post-only limit order is sent. A buy priced at or above the best ask
          is moved one tick below it (a sell likewise above the best bid), so it never takes; one that
          would meet this strategy's own order on the other side waits until that order has moved.

        Returns the client order id of the working quote, or None while there is none.
        """
        venue = venue or self.venue
        orders = [o for o in self._router.open_orders(self.name, venue, symbol) if o.side is side]
        qty = self.round_quantity(symbol, quantity, venue)
        px = self._passive_price(symbol, side, price, venue) if price is not None else None
        inst = self._router.instrument(venue, symbol)
        min_notional = _step(inst.min_notional) if inst is not None else _ZERO
        if px is None or qty <= 0 or px <= 0 or qty * px < min_notional:
            for order in orders:
                if order.status is not OrderStatus.CANCEL_PENDING:
                    self._router.cancel(self.name, order.client_order_id)
            return None
        tol = to_decimal(tolerance)
        keep: str | None = None
        for order in orders:
            if order.status is OrderStatus.CANCEL_PENDING:
                continue
            if (keep is None and order.price is not None and abs(order.price - px) <= tol
                    and order.remaining_quantity == qty):
                keep = order.client_order_id
            else:
                self._router.cancel(self.name, order.client_order_id)
        if orders:
            return keep  # kept, or the old quote is on its way out: the new one goes out later
        for other in self._router.open_orders(self.name, venue, symbol):
            if other.side is not side and other.price is not None \
                    and (px >= other.price if side is Side.BUY else px <= other.price):
                return None  # it would trade with our own quote; wait until that one has moved
        return self.submit(side, symbol, qty, px, post_only=True, venue=venue)

    def _passive_price(self, symbol: str, side: Side, price: Number, venue: str) -> Decimal:
        px = self.round_price(symbol, price, side, venue)
        book = self._router.book(venue, symbol)
        inst = self._router.instrument(venue, symbol)
        if book is None or inst is None:
            return px
        tick = _step(inst.tick_size)
        if side is Side.BUY:
            ask = book.best_ask_price()
            if ask is not None and px >= to_decimal(ask):
                px = round_to_step(to_decimal(ask) - tick, tick, ROUND_FLOOR)
        else:
            bid = book.best_bid_price()
            if bid is not None and px <= to_decimal(bid):
                px = round_to_step(to_decimal(bid) + tick, tick, ROUND_CEILING)
        return px

    def set_timer(self, name: str, interval_secs: float) -> None:
        """Call ``on_timer(name, now_ns)`` every ``interval_secs`` of clock time (replaces a timer of that name)."""
        self._router.set_timer(self.name, name, interval_secs)


def _step(text: str) -> Decimal:
    """A tick, lot or minimum notional from the venue's text; 0 (no constraint) when unreadable."""
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        return _ZERO
    return value if value.is_finite() and value > 0 else _ZERO


class Strategy(Generic[S]):
    """Base class of strategies. Override the callbacks you need; all default to doing nothing.

    The engine builds one instance per ``[strategies.<name>]`` section: ``Strategy(settings, ctx)``.
    """

    #: The pydantic model of this strategy's ``[strategies.<name>]`` section.
    Settings: ClassVar[type[StrategySettings]] = StrategySettings

    def __init__(self, settings: S, ctx: StrategyContext) -> None:
        self.settings = settings
        self.ctx = ctx

    def signal_specs(self) -> Sequence[SignalSpec]:
        """The signals this strategy reads (for every symbol it subscribes to); only these are computed."""
        return ()

    def on_start(self) -> None:
        """Called once before market data flows (books are not LIVE yet): set timers here."""

    def on_stop(self) -> None:
        """Called once at shutdown, before the engine cancels the strategy's open orders."""

    def on_book(self, book: L2Book) -> None:
        """Called after each update of a subscribed book, only while it is LIVE."""

    def on_trade(self, trade: Trade) -> None:
        """Called for each public trade of a subscribed symbol (``trade.side`` is the aggressor)."""

    def on_fill(self, fill: Fill) -> None:
        """Called for each fill of one of this strategy's orders, after the position includes it."""

    def on_order_update(self, update: OrderUpdate) -> None:
        """Called when one of this strategy's orders changes status (risk denials arrive as REJECTED)."""

    def on_feed_status(self, status: FeedStatus) -> None:
        """Called when a subscribed book changes health (``status.health``: LIVE, RESYNCING...)."""

    def on_timer(self, name: str, now_ns: int) -> None:
        """Called when a timer set with ``ctx.set_timer(name, interval_secs)`` fires."""


class _StopCallback(Protocol):
    def __call__(self, strategy: str) -> None: ...


#: Told of every exception a strategy callback raised: (callback name, exception).
ErrorCallback = Callable[[str, Exception], None]


class StrategyRunner:
    """Calls one strategy's callbacks, isolating its exceptions from the rest of the bot.

    Each exception is logged with the callback's name and its context (symbol, order id, timer) and
    counted in ``errors``; at ``max_errors`` the runner stops calling the strategy and calls
    ``on_stopped(name)`` (the engine cancels the strategy's orders). ``on_error`` hears of each
    exception too (the test harness uses it to re-raise).
    """

    def __init__(self, name: str, strategy: Strategy[StrategySettings], max_errors: int,
                 log: structlog.typing.FilteringBoundLogger, on_stopped: _StopCallback | None = None,
                 on_error: ErrorCallback | None = None) -> None:
        self.name = name
        self.strategy = strategy
        self.max_errors = max_errors
        self.errors = 0
        self.stopped = False
        self._log = log
        self._on_stopped = on_stopped
        self._on_error = on_error

    def _failed(self, callback: str, exc: Exception, **context: object) -> None:
        self.errors += 1
        self._log.error("strategy callback failed", callback=callback, errors=self.errors,
                        max_errors=self.max_errors, error=repr(exc), exc_info=exc, **context)
        if self._on_error is not None:
            self._on_error(callback, exc)
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
