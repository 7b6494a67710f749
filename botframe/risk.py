"""The risk gate every order intent passes before any executor sees it.

Order of work in :meth:`RiskGate.check`:

1. **Sanity** (:func:`check_sanity`, core, cannot be disabled): a well-formed client order id not
   already in use, a finite positive ``Decimal`` quantity, a known instrument, a finite positive
   price for a limit order, price on the tick, quantity on the lot, notional at least the minimum.
   A failure stops here: plugin checks may assume sane input.
2. **Trading state** (:func:`check_trading_state`, core): HALTED refuses everything, REDUCING only
   orders that reduce a position; a ``reduce_only`` order that would not reduce is refused in any state.
3. **Plugin checks**: every ``botframe_check_order`` implementation runs (the built-in limits live in
   ``botframe_plugins.risk_limits``); each may return a :class:`Denial`.

Every denial is published as one ``OrderDenied`` event, logged and counted by (check, code). A check
that raises denies the order (fail closed) with code ``check_error``. An approved intent spends one
token of the order rate limits (:class:`RateLimits`), so only orders that really go out count.

Settings (``[risk]``): each per-symbol limit has a default at the top level and may be overridden per
symbol in ``[risk.symbols."BTC/USDT"]`` (any venue) or ``[risk.symbols."binance:BTC/USDT"]`` (one
venue, looked up first). Account-wide limits (gross exposure, total open orders and rates, loss
limits) are top level only. A limit set to nothing (the default for some) is off.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Literal

import pluggy
import structlog
from pydantic import BaseModel, ConfigDict, Field

from .events import (
    Event,
    OrderDenied,
    OrderIntent,
    OrderType,
    Side,
    TradingState,
    TradingStateChanged,
)
from .orders import CLIENT_ORDER_ID_PATTERN

if TYPE_CHECKING:
    from .book import L2Book
    from .clock import Clock
    from .orders import Order, OrderTracker
    from .portfolio import Portfolio
    from .venues import Instrument

__all__ = [
    "Denial",
    "InstrumentRules",
    "RateLimits",
    "RiskCheck",
    "RiskContext",
    "RiskGate",
    "RiskSettings",
    "SymbolLimits",
    "SymbolRiskSettings",
    "TokenBucket",
    "TradingStateMachine",
    "check_sanity",
    "check_trading_state",
    "direct_risk_check",
    "evaluate_loss_limits",
    "reference_price",
    "would_reduce",
]

_log = structlog.get_logger("botframe.risk")

_ZERO = Decimal(0)
_NS_PER_DAY = 86_400 * 1_000_000_000

BookLookup = Callable[[str, str], "L2Book | None"]
InstrumentLookup = Callable[[str, str], "Instrument | None"]
SignalLookup = Callable[[str, str, str], float | None]
Publish = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class Denial:
    """Why a check refused an order: a stable ``code``, the ``check`` that said so, and a human reason."""

    code: str
    check: str
    reason: str


#: What the gate calls with each intent: normally the typed facade over ``botframe_check_order``.
RiskCheck = Callable[[OrderIntent, "RiskContext"], "list[Denial | None]"]


# -- settings ------------------------------------------------------------------------------------------

PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
PositiveRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]


class SymbolRiskSettings(BaseModel):
    """One ``[risk.symbols."<symbol>"]`` section: overrides of the per-symbol limits; unset keys inherit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_order_quantity: PositiveDecimal | None = None
    max_order_notional: PositiveDecimal | None = None
    max_position: PositiveDecimal | None = None
    max_open_orders: PositiveInt | None = None
    orders_per_sec: PositiveRate | None = None
    order_burst: PositiveInt | None = None
    cancels_per_sec: PositiveRate | None = None
    cancel_burst: PositiveInt | None = None
    price_band_bps: PositiveRate | None = None
    stale_after_ms: PositiveInt | None = None
    self_trade_prevention: bool | None = None


@dataclass(frozen=True, slots=True)
class SymbolLimits:
    """The limits that apply to one (venue, symbol), overrides merged; ``None`` means no limit."""

    max_order_quantity: Decimal | None
    max_order_notional: Decimal | None
    max_position: Decimal | None
    max_open_orders: int | None
    orders_per_sec: float | None
    order_burst: int
    cancels_per_sec: float | None
    cancel_burst: int
    price_band_bps: float | None
    stale_after_ms: int | None
    self_trade_prevention: bool


_SYMBOL_FIELDS = tuple(SymbolRiskSettings.model_fields)


class RiskSettings(BaseModel):
    """The ``[risk]`` section. Quantities are in the base currency, notionals and losses in the quote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Per-symbol limits (defaults; override in [risk.symbols."BTC/USDT"]).
    max_order_quantity: PositiveDecimal | None = None
    max_order_notional: PositiveDecimal | None = Decimal("10000")
    max_position: PositiveDecimal | None = None
    max_open_orders: PositiveInt | None = 20
    orders_per_sec: PositiveRate | None = 10.0
    order_burst: PositiveInt = 20
    cancels_per_sec: PositiveRate | None = 20.0
    cancel_burst: PositiveInt = 40
    price_band_bps: PositiveRate | None = 500.0
    stale_after_ms: PositiveInt | None = 5_000
    self_trade_prevention: bool = True
    # Account-wide limits.
    price_band_reference: Literal["mid", "microprice"] = "mid"
    max_gross_exposure: PositiveDecimal | None = Decimal("100000")
    max_open_orders_total: PositiveInt | None = 100
    orders_per_sec_total: PositiveRate | None = 50.0
    order_burst_total: PositiveInt = 100
    cancels_per_sec_total: PositiveRate | None = 100.0
    cancel_burst_total: PositiveInt = 200
    # Kill switch: a loss beyond these (per quote currency) moves trading to kill_switch_state.
    max_drawdown: PositiveDecimal | None = None
    max_daily_loss: PositiveDecimal | None = None
    kill_switch_state: Literal["reducing", "halted"] = "halted"
    symbols: dict[str, SymbolRiskSettings] = Field(default_factory=dict)

    def limits_for(self, venue: str, symbol: str) -> SymbolLimits:
        """Merge the defaults with ``symbols["<venue>:<symbol>"]`` or else ``symbols["<symbol>"]``."""
        values = {name: getattr(self, name) for name in _SYMBOL_FIELDS}
        override = self.symbols.get(f"{venue}:{symbol}") or self.symbols.get(symbol)
        if override is not None:
            for name in _SYMBOL_FIELDS:
                value = getattr(override, name)
                if value is not None:
                    values[name] = value
        return SymbolLimits(**values)


# -- trading state ---------------------------------------------------------------------------------------


class TradingStateMachine:
    """ACTIVE, REDUCING or HALTED; each move returns the ``TradingStateChanged`` event to publish.

    Any state may move to a more restrictive one and REDUCING may return to ACTIVE, but HALTED is
    left only by an explicit :meth:`resume` (an operator's command). Other attempts to leave HALTED
    return None and are counted in ``refused``.
    """

    def __init__(self, clock: Clock | None = None, state: TradingState = TradingState.ACTIVE) -> None:
        self._clock = clock
        self._state = state
        self.refused = 0

    @property
    def state(self) -> TradingState:
        return self._state

    def move_to(self, state: TradingState, reason: str,
                ts_ns: int | None = None) -> TradingStateChanged | None:
        """Move to ``state``; None when already there or when leaving HALTED without :meth:`resume`."""
        if state is self._state:
            return None
        if self._state is TradingState.HALTED:
            self.refused += 1
            _log.warning("trading state stays halted; resume() is needed to leave it",
                         requested=state.value, reason=reason)
            return None
        return self._move(state, reason, ts_ns)

    def reduce(self, reason: str, ts_ns: int | None = None) -> TradingStateChanged | None:
        """Allow only position-reducing orders from now on."""
        return self.move_to(TradingState.REDUCING, reason, ts_ns)

    def halt(self, reason: str, ts_ns: int | None = None) -> TradingStateChanged | None:
        """Allow nothing from now on (the engine cancels every open order on this event)."""
        return self.move_to(TradingState.HALTED, reason, ts_ns)

    def resume(self, reason: str = "resumed by operator", *, to: TradingState = TradingState.ACTIVE,
               ts_ns: int | None = None) -> TradingStateChanged | None:
        """The explicit command that leaves HALTED (or REDUCING), to ACTIVE or to REDUCING."""
        if to is self._state:
            return None
        return self._move(to, reason, ts_ns)

    def restore(self, state: TradingState) -> None:
        """Set the state recovered from the journal at start-up, without an event."""
        self._state = state

    def _move(self, state: TradingState, reason: str, ts_ns: int | None) -> TradingStateChanged:
        if ts_ns is None:
            ts_ns = self._clock.time_ns() if self._clock is not None else 0
        event = TradingStateChanged(previous=self._state, state=state, reason=reason, ts_ns=ts_ns)
        self._state = state
        return event


# -- rate limits -----------------------------------------------------------------------------------------


class TokenBucket:
    """A token bucket on a monotonic ns clock: ``burst`` tokens, refilled at ``per_sec``."""

    __slots__ = ("capacity", "last_ns", "rate_per_ns", "tokens")

    def __init__(self, per_sec: float, burst: int, now_ns: int) -> None:
        self.rate_per_ns = per_sec / 1e9
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.last_ns = now_ns

    def available(self, now_ns: int) -> float:
        """Tokens available at ``now_ns`` (refills first)."""
        elapsed = now_ns - self.last_ns
        if elapsed > 0:
            tokens = self.tokens + elapsed * self.rate_per_ns
            self.tokens = tokens if tokens < self.capacity else self.capacity
            self.last_ns = now_ns
        return self.tokens

    def take(self, now_ns: int, n: float = 1.0) -> bool:
        """Spend ``n`` tokens if there are enough; returns whether it did."""
        if self.available(now_ns) >= n:
            self.tokens -= n
            return True
        return False


class RateLimits:
    """Order and cancel token buckets per (venue, symbol) and in total, built lazily from settings.

    Checks ask ``order_blocked`` (no token spent); the gate calls ``record_order`` for approved
    orders only, so denied intents do not use up the budget a venue counts.
    """

    def __init__(self, settings: RiskSettings) -> None:
        self._settings = settings
        self._orders: dict[tuple[str, str], TokenBucket | None] = {}
        self._cancels: dict[tuple[str, str], TokenBucket | None] = {}
        self._orders_total: TokenBucket | None = None
        self._cancels_total: TokenBucket | None = None
        self._started = False

    def _ensure_totals(self, now_ns: int) -> None:
        s = self._settings
        if s.orders_per_sec_total is not None:
            self._orders_total = TokenBucket(s.orders_per_sec_total, s.order_burst_total, now_ns)
        if s.cancels_per_sec_total is not None:
            self._cancels_total = TokenBucket(s.cancels_per_sec_total, s.cancel_burst_total, now_ns)
        self._started = True

    def _bucket(self, table: dict[tuple[str, str], TokenBucket | None], key: tuple[str, str],
                limits: SymbolLimits, now_ns: int, *, cancels: bool) -> TokenBucket | None:
        if key in table:
            return table[key]
        rate = limits.cancels_per_sec if cancels else limits.orders_per_sec
        burst = limits.cancel_burst if cancels else limits.order_burst
        bucket = TokenBucket(rate, burst, now_ns) if rate is not None else None
        table[key] = bucket
        return bucket

    def order_blocked(self, key: tuple[str, str], limits: SymbolLimits, now_ns: int) -> str | None:
        """``"symbol"`` or ``"total"`` when that bucket has no token for one more order, else None."""
        if not self._started:
            self._ensure_totals(now_ns)
        bucket = self._bucket(self._orders, key, limits, now_ns, cancels=False)
        if bucket is not None and bucket.available(now_ns) < 1.0:
            return "symbol"
        total = self._orders_total
        if total is not None and total.available(now_ns) < 1.0:
            return "total"
        return None

    def record_order(self, key: tuple[str, str], limits: SymbolLimits, now_ns: int) -> None:
        if not self._started:
            self._ensure_totals(now_ns)
        bucket = self._bucket(self._orders, key, limits, now_ns, cancels=False)
        if bucket is not None:
            bucket.take(now_ns)
        if self._orders_total is not None:
            self._orders_total.take(now_ns)

    def cancel_blocked(self, key: tuple[str, str], limits: SymbolLimits, now_ns: int) -> str | None:
        if not self._started:
            self._ensure_totals(now_ns)
        bucket = self._bucket(self._cancels, key, limits, now_ns, cancels=True)
        if bucket is not None and bucket.available(now_ns) < 1.0:
            return "symbol"
        total = self._cancels_total
        if total is not None and total.available(now_ns) < 1.0:
            return "total"
        return None

    def record_cancel(self, key: tuple[str, str], limits: SymbolLimits, now_ns: int) -> None:
        if not self._started:
            self._ensure_totals(now_ns)
        bucket = self._bucket(self._cancels, key, limits, now_ns, cancels=True)
        if bucket is not None:
            bucket.take(now_ns)
        if self._cancels_total is not None:
            self._cancels_total.take(now_ns)


# -- context ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstrumentRules:
    """An instrument's tick, lot and minimum notional as Decimals (0 = no constraint)."""

    tick: Decimal
    lot: Decimal
    min_notional: Decimal

    @classmethod
    def from_instrument(cls, inst: Instrument) -> InstrumentRules:
        return cls(_step(inst.tick_size), _step(inst.lot_size), _step(inst.min_notional))


def _step(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except (decimal.InvalidOperation, TypeError, ValueError):
        return _ZERO
    return value if value.is_finite() and value > 0 else _ZERO


class RiskContext:
    """What risk checks may read: books, signals, instruments, portfolio, open orders, time, state.

    ``book``, ``instrument`` and ``signal`` are the engine's lookups (plain callables). ``limits``
    and ``rules`` are cached per (venue, symbol). ``move_trading_state`` is how a check (the kill
    switch) changes the trading state; the event goes out through ``publish`` (set by the gate).
    """

    def __init__(
        self,
        *,
        books: BookLookup,
        portfolio: Portfolio,
        orders: OrderTracker,
        instruments: InstrumentLookup,
        clock: Clock,
        trading_state: TradingStateMachine,
        settings: RiskSettings,
        signal: SignalLookup | None = None,
        publish: Publish | None = None,
    ) -> None:
        self.book: BookLookup = books
        self.instrument: InstrumentLookup = instruments
        self.signal: SignalLookup = signal if signal is not None else _no_signal
        self.portfolio = portfolio
        self.orders = orders
        self.clock = clock
        self.trading_state = trading_state
        self.settings = settings
        self.publish: Publish | None = publish
        self.rate_limits = RateLimits(settings)
        self._limits: dict[tuple[str, str], SymbolLimits] = {}
        # One-entry memo by identity: the checks of one intent pass the very same strings.
        self._last_limits: tuple[str, str, SymbolLimits] = ("", "", settings.limits_for("", ""))
        self._rules: dict[tuple[str, str], tuple[Instrument, InstrumentRules]] = {}
        # (UTC day number, net PnL at the first look that day) per quote currency, for the daily loss.
        self.day_start_pnl: dict[str, tuple[int, Decimal]] = {}
        # The last loss-limit verdict and what it was computed from (portfolio version, UTC day):
        # PnL only changes with fills and marks, so most intents reuse it.
        self.loss_verdict: tuple[int, int, Denial | None] | None = None

    @property
    def state(self) -> TradingState:
        return self.trading_state.state

    def limits(self, venue: str, symbol: str) -> SymbolLimits:
        """The merged limits of one (venue, symbol); every check of an intent asks for the same ones."""
        last = self._last_limits
        if last[0] is venue and last[1] is symbol:
            return last[2]
        key = (venue, symbol)
        found = self._limits.get(key)
        if found is None:
            found = self._limits[key] = self.settings.limits_for(venue, symbol)
        self._last_limits = (venue, symbol, found)
        return found

    def rules(self, venue: str, symbol: str) -> InstrumentRules | None:
        """The instrument's rules as Decimals, or None when the instrument is unknown."""
        inst = self.instrument(venue, symbol)
        if inst is None:
            return None
        key = (venue, symbol)
        cached = self._rules.get(key)
        if cached is not None and cached[0] is inst:
            return cached[1]
        rules = InstrumentRules.from_instrument(inst)
        self._rules[key] = (inst, rules)
        return rules

    def reset_loss_limits(self) -> None:
        """Measure drawdown and today's loss from the current PnL again (after an operator's resume)."""
        self.portfolio.reset_peak()
        self.day_start_pnl.clear()
        self.loss_verdict = None

    def move_trading_state(self, state: TradingState, reason: str) -> TradingStateChanged | None:
        """Move the trading state and publish the event (None when nothing changed)."""
        event = self.trading_state.move_to(state, reason, self.clock.time_ns())
        if event is not None:
            _log.warning("trading state changed by risk", previous=event.previous.value,
                         state=event.state.value, reason=reason)
            if self.publish is not None:
                self.publish(event)
        return event


def _no_signal(venue: str, symbol: str, name: str) -> float | None:
    return None


# -- core checks -----------------------------------------------------------------------------------------

_SANITY = "sanity"
_STATE = "trading_state"


def check_sanity(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Refuse malformed intents: bad id, bad quantity or price, unknown symbol, off tick/lot, too small."""
    coid = intent.client_order_id
    if not isinstance(coid, str) or CLIENT_ORDER_ID_PATTERN.fullmatch(coid) is None:
        return Denial("invalid_client_order_id", _SANITY,
                      f"client order id {coid!r} must be 1 to 36 characters of [A-Za-z0-9_-]")
    if coid in context.orders:
        return Denial("duplicate_client_order_id", _SANITY, f"client order id {coid!r} is already in use")
    qty = intent.quantity
    if not isinstance(qty, Decimal):
        return Denial("invalid_quantity", _SANITY,
                      f"quantity must be a Decimal, got {type(qty).__name__} {qty!r}")
    if not qty.is_finite():
        return Denial("invalid_quantity", _SANITY, f"quantity is {qty}, not a finite number")
    if qty <= 0:
        return Denial("invalid_quantity", _SANITY, f"quantity must be positive, got {qty}")
    rules = context.rules(intent.venue, intent.symbol)
    if rules is None:
        return Denial("unknown_symbol", _SANITY,
                      f"no instrument known for {intent.symbol} on {intent.venue}")
    if rules.lot and _off_step(qty, rules.lot):
        return Denial("off_lot", _SANITY, f"quantity {qty} is not a multiple of the lot size {rules.lot}")
    price = intent.price
    if intent.order_type is OrderType.LIMIT:
        if price is None:
            return Denial("missing_price", _SANITY, "a limit order needs a price")
        if not isinstance(price, Decimal):
            return Denial("invalid_price", _SANITY,
                          f"price must be a Decimal, got {type(price).__name__} {price!r}")
        if not price.is_finite():
            return Denial("invalid_price", _SANITY, f"price is {price}, not a finite number")
        if price <= 0:
            return Denial("invalid_price", _SANITY, f"price must be positive, got {price}")
        if rules.tick and _off_step(price, rules.tick):
            return Denial("off_tick", _SANITY,
                          f"price {price} is not a multiple of the tick size {rules.tick}")
    elif intent.post_only:
        return Denial("invalid_flags", _SANITY, "a market order cannot be post-only")
    if rules.min_notional:
        ref = reference_price(intent, context)
        if ref is not None and qty * ref < rules.min_notional:
            return Denial("below_min_notional", _SANITY,
                          f"notional {qty * ref} is below the minimum {rules.min_notional}")
    return None


_STEP_CONTEXT = decimal.Context(prec=60, traps=[decimal.InvalidOperation])


def _off_step(value: Decimal, step: Decimal) -> bool:
    """Whether ``value`` is not a whole multiple of ``step`` (absurdly large values count as off)."""
    try:
        return bool(_STEP_CONTEXT.remainder(value, step))
    except decimal.InvalidOperation:
        return True


def would_reduce(intent: OrderIntent, context: RiskContext) -> bool:
    """Whether the intent, together with our other open orders on its side, only reduces the position.

    Counting the open orders on the same side keeps several reducing orders from flipping the
    position once they all fill.
    """
    position = context.portfolio.position(intent.venue, intent.symbol)
    if not position or (position > 0) == (intent.side is Side.BUY):
        return False
    pending = context.orders.open_quantity(intent.venue, intent.symbol, intent.side)
    return intent.quantity + pending <= abs(position)


def check_trading_state(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """HALTED refuses all; REDUCING and ``reduce_only`` accept only position-reducing orders."""
    state = context.trading_state.state
    if state is TradingState.HALTED:
        return Denial("halted", _STATE, "trading is halted; nothing is sent until an operator resumes")
    if (state is TradingState.REDUCING or intent.reduce_only) and not would_reduce(intent, context):
        position = context.portfolio.position(intent.venue, intent.symbol)
        if state is TradingState.REDUCING:
            return Denial("reducing_only", _STATE,
                          f"trading is reducing only; a {intent.side.value} of {intent.quantity} does not "
                          f"reduce the position {position}")
        return Denial("reduce_only_increases", _STATE,
                      f"reduce-only {intent.side.value} of {intent.quantity} does not reduce the "
                      f"position {position}")
    return None


def reference_price(intent: OrderIntent, context: RiskContext) -> Decimal | None:
    """The price an order's notional is judged at: its limit price, else the opposite best, else the mark."""
    if intent.order_type is OrderType.LIMIT and intent.price is not None:
        return intent.price
    book = context.book(intent.venue, intent.symbol)
    if book is not None:
        level = book.best_ask() if intent.side is Side.BUY else book.best_bid()
        if level is not None and math.isfinite(level[0]) and level[0] > 0:
            return Decimal(repr(level[0]))
    return context.portfolio.mark_price(intent.venue, intent.symbol)


def evaluate_loss_limits(context: RiskContext) -> Denial | None:
    """The kill switch: drawdown from peak PnL or today's loss beyond its limit moves the trading state.

    Checked per quote currency. Today's loss is measured from the PnL at the first look after UTC
    midnight (or after start-up). Returns a denial naming the limit while a limit is exceeded.
    """
    s = context.settings
    if s.max_drawdown is None and s.max_daily_loss is None:
        return None
    portfolio = context.portfolio
    day = context.clock.time_ns() // _NS_PER_DAY
    verdict = context.loss_verdict
    if verdict is not None and verdict[0] == portfolio.version and verdict[1] == day:
        return verdict[2]
    denial = _loss_limit_denial(context, day)
    context.loss_verdict = (portfolio.version, day, denial)
    if denial is not None:
        target = TradingState.HALTED if s.kill_switch_state == "halted" else TradingState.REDUCING
        context.move_trading_state(target, f"kill switch: {denial.reason}")
    return denial


def _loss_limit_denial(context: RiskContext, day: int) -> Denial | None:
    s = context.settings
    portfolio = context.portfolio
    for currency in portfolio.currencies():
        pnl = portfolio.net_pnl(currency)
        denial: Denial | None = None
        if s.max_drawdown is not None:
            drawdown = portfolio.peak_pnl(currency) - pnl
            if drawdown > s.max_drawdown:
                denial = Denial("max_drawdown", "loss_limits",
                                f"drawdown {drawdown} {currency} exceeds {s.max_drawdown}")
        if denial is None and s.max_daily_loss is not None:
            start = context.day_start_pnl.get(currency)
            if start is None or start[0] != day:
                start = context.day_start_pnl[currency] = (day, pnl)
            loss = start[1] - pnl
            if loss > s.max_daily_loss:
                denial = Denial("max_daily_loss", "loss_limits",
                                f"today's loss {loss} {currency} exceeds {s.max_daily_loss}")
        if denial is not None:
            return denial
    return None


# -- the gate --------------------------------------------------------------------------------------------


def direct_risk_check(hook: pluggy.HookCaller) -> RiskCheck:
    """The ``botframe_check_order`` hook as a plain loop over its implementations, for the gate.

    Same results as calling ``hook``: every implementation in pluggy's order (last registered and
    ``tryfirst`` first), called with the arguments it names, non-None results collected, an
    exception propagated at once. The implementations are read once, here (plugins are all
    registered before the engine is built); pluggy's per-call argument checks, list copies and
    result bookkeeping cost about as much as the eight built-in checks themselves. A hook with
    wrappers or ``firstresult`` keeps pluggy's call.
    """
    impls = hook.get_hookimpls()
    firstresult = hook.spec is not None and hook.spec.opts.get("firstresult", False)
    if firstresult or any(i.hookwrapper or i.wrapper for i in impls):
        def via_pluggy(intent: OrderIntent, context: RiskContext) -> list[Denial | None]:
            result: list[Denial | None] = hook(intent=intent, context=context)
            return result
        return via_pluggy
    calls: list[Callable[[OrderIntent, RiskContext], Denial | None]] = []
    for impl in reversed(impls):
        calls.append(_positional(impl.function, tuple(impl.argnames)))

    def check(intent: OrderIntent, context: RiskContext) -> list[Denial | None]:
        results: list[Denial | None] = []
        for call in calls:
            result = call(intent, context)
            if result is not None:
                results.append(result)
        return results

    return check


def _positional(function: Callable[..., object],
                argnames: tuple[str, ...]) -> Callable[[OrderIntent, RiskContext], Denial | None]:
    if argnames == ("intent", "context"):
        return function  # type: ignore[return-value]  # a check returns a Denial or None, like the hook

    def call(intent: OrderIntent, context: RiskContext) -> Denial | None:
        given = {"intent": intent, "context": context}
        return function(*[given[name] for name in argnames])  # type: ignore[return-value]

    return call



class RiskGate:
    """Runs the core checks and every plugin check on each intent; publishes, logs and counts denials.

    ``check`` is the hook caller (the plugin facade's ``check_order``); ``publish`` puts
    ``OrderDenied`` and ``TradingStateChanged`` events on the bus.
    """

    def __init__(self, check: RiskCheck, context: RiskContext, publish: Publish) -> None:
        self._check = check
        self.context = context
        self._publish = publish
        if context.publish is None:
            context.publish = publish
        self._counts: dict[tuple[str, str], int] = {}
        self.checked = 0
        self.approved = 0

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        """Denials so far by (check, code)."""
        return dict(self._counts)

    def counts_by_code(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_check, code), n in self._counts.items():
            out[code] = out.get(code, 0) + n
        return out

    def counts_by_check(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (check, _code), n in self._counts.items():
            out[check] = out.get(check, 0) + n
        return out

    def check(self, intent: OrderIntent) -> list[Denial]:
        """All denials for ``intent`` (empty: approved, and it spent an order rate token)."""
        self.checked += 1
        ctx = self.context
        denials: list[Denial]
        try:
            first = check_sanity(intent, ctx) or check_trading_state(intent, ctx)
            if first is not None:
                denials = [first]
            else:
                denials = []
                for result in self._check(intent, ctx):
                    if result is None:
                        continue
                    if isinstance(result, Denial):
                        denials.append(result)
                    else:
                        denials.append(Denial("bad_check_result", "risk_gate",
                                              f"a risk check returned {type(result).__name__}, not a Denial"))
        except Exception as exc:
            _log.exception("risk check failed; order denied", client_order_id=intent.client_order_id,
                           symbol=intent.symbol, venue=intent.venue)
            denials = [Denial("check_error", "risk_gate", f"a risk check raised {type(exc).__name__}: {exc}")]
        if not denials:
            self.approved += 1
            key = (intent.venue, intent.symbol)
            limits = ctx.limits(intent.venue, intent.symbol)
            ctx.rate_limits.record_order(key, limits, ctx.clock.monotonic_ns())
            return denials
        ts_ns = ctx.clock.time_ns()
        for denial in denials:
            pair = (denial.check, denial.code)
            self._counts[pair] = self._counts.get(pair, 0) + 1
            _log.warning("order denied", code=denial.code, check=denial.check, reason=denial.reason,
                         venue=intent.venue, symbol=intent.symbol, strategy=intent.strategy,
                         client_order_id=intent.client_order_id)
            self._publish(OrderDenied(intent=intent, code=denial.code, check=denial.check,
                                      reason=denial.reason, ts_ns=ts_ns))
        return denials

    def check_cancel(self, order: Order, *, force: bool = False) -> Denial | None:
        """Whether a cancel of ``order`` may go out now under the cancel rate limits (spends a token).

        ``force`` skips the limit (the halt's cancel-everything must not be throttled by us).
        """
        ctx = self.context
        key = (order.venue, order.symbol)
        limits = ctx.limits(order.venue, order.symbol)
        now = ctx.clock.monotonic_ns()
        if not force:
            blocked = ctx.rate_limits.cancel_blocked(key, limits, now)
            if blocked is not None:
                code = "cancel_rate" if blocked == "symbol" else "cancel_rate_total"
                denial = Denial(code, "rate_limit",
                                f"cancel rate limit ({blocked}) reached for {order.symbol}")
                pair = (denial.check, denial.code)
                self._counts[pair] = self._counts.get(pair, 0) + 1
                _log.warning("cancel denied", code=code, check="rate_limit", reason=denial.reason,
                             venue=order.venue, symbol=order.symbol, client_order_id=order.client_order_id)
                return denial
        ctx.rate_limits.record_cancel(key, limits, now)
        return None

    def resume(self, reason: str = "resumed by operator", *,
               to: TradingState = TradingState.ACTIVE) -> TradingStateChanged | None:
        """The operator's command: leave HALTED (or REDUCING) and measure losses from here again.

        Without the reset, a kill switch whose limit is still exceeded would trip again at once.
        """
        ctx = self.context
        ctx.reset_loss_limits()
        event = ctx.trading_state.resume(reason, to=to, ts_ns=ctx.clock.time_ns())
        if event is not None:
            _log.warning("trading resumed", previous=event.previous.value, state=event.state.value,
                         reason=reason)
            self._publish(event)
        return event

    def evaluate_kill_switch(self) -> Denial | None:
        """Run the loss limits now (call it periodically so the switch trips without new orders)."""
        return evaluate_loss_limits(self.context)
