"""Positions, PnL, fees and cash, kept exactly in ``Decimal``.

Accounting model:

* A position is held per (venue, symbol) in the base currency, signed (long > 0, short < 0).
* Cash is a ledger per currency with starting balances; a fill moves ``quantity x price + fee`` of
  the *quote* currency (fees are in the quote currency, as ``events.Fill`` says). The base currency is
  the position itself, so it is not also counted as cash.
* Realized PnL is first-in, first-out over the lots a position was built from. FIFO (rather than an
  average cost) is chosen because every step is a multiplication or an addition of exact decimals,
  never a division, so nothing is ever rounded: after any number of fills, for every quote currency,

      cash + sum(position x mark) == starting cash + realized + unrealized - fees

  holds to the last digit. The average entry price shown is the cost of the open lots divided by the
  open quantity, for display only.
* Marks may arrive as floats (book mids); they are converted through their shortest repr and, when
  the instrument is known, rounded to a hundredth of its tick, so float noise never reaches money.
  Until a market mark arrives, a position is marked at its last fill price.

Computation runs in a private decimal context with 60 significant digits, enough for any realistic
price x quantity product and sum without rounding, whatever the caller's context is.
"""

from __future__ import annotations

import decimal
import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

import structlog

from .events import Fill, Side
from .strategy import PnL
from .venues import Instrument

__all__ = ["Lot", "Portfolio", "Position", "split_symbol"]

_log = structlog.get_logger("botframe.portfolio")

_ZERO = Decimal(0)
_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)

InstrumentLookup = Callable[[str, str], Instrument | None]


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTC/USDT"`` -> ``("BTC", "USDT")``; ccxt's ``"BTC/USDT:USDT"`` settles in ``USDT`` too."""
    base, sep, rest = symbol.partition("/")
    if not sep:
        return symbol, ""
    quote = rest.partition(":")[0]
    return base, quote


@dataclass(slots=True)
class Lot:
    """An open piece of a position: unsigned remaining quantity at its entry price."""

    quantity: Decimal
    price: Decimal


@dataclass(slots=True)
class Position:
    """One (venue, symbol) position and its PnL, all in the quote currency except ``quantity``."""

    venue: str
    symbol: str
    base: str
    quote: str
    quantity: Decimal = _ZERO  # signed, base currency
    cost: Decimal = _ZERO  # signed sum of quantity x entry price over the open lots
    realized_pnl: Decimal = _ZERO
    fees: Decimal = _ZERO
    mark: Decimal | None = None
    marked_by_market: bool = False
    fills: int = 0
    volume: Decimal = _ZERO  # traded notional, quote currency
    lots: deque[Lot] = field(default_factory=deque)

    @property
    def avg_entry_price(self) -> Decimal | None:
        """Average entry of the open lots (display only; PnL never divides)."""
        if not self.quantity:
            return None
        with decimal.localcontext(_CONTEXT):
            return self.cost / self.quantity

    @property
    def unrealized_pnl(self) -> Decimal:
        """``quantity x mark - cost`` of the open lots; zero while flat or unmarked."""
        if self.mark is None or not self.quantity:
            return _ZERO
        with decimal.localcontext(_CONTEXT):
            return self.quantity * self.mark - self.cost

    @property
    def exposure(self) -> Decimal:
        """``|quantity| x mark`` (zero while unmarked)."""
        if self.mark is None or not self.quantity:
            return _ZERO
        return _CONTEXT.multiply(abs(self.quantity), self.mark)

    @property
    def market_value(self) -> Decimal:
        """Signed ``quantity x mark`` (zero while unmarked)."""
        if self.mark is None:
            return _ZERO
        with decimal.localcontext(_CONTEXT):
            return self.quantity * self.mark


@dataclass(slots=True)
class _Account:
    """Totals of one quote currency, kept incrementally so marking stays cheap."""

    start: Decimal = _ZERO
    cash: Decimal = _ZERO
    realized: Decimal = _ZERO
    unrealized: Decimal = _ZERO
    fees: Decimal = _ZERO
    gross: Decimal = _ZERO  # sum of |position| x mark
    peak_pnl: Decimal = _ZERO

    @property
    def pnl(self) -> Decimal:
        # Explicit context methods: exact whatever the caller's context, and cheaper than localcontext.
        return _CONTEXT.subtract(_CONTEXT.add(self.realized, self.unrealized), self.fees)


class Portfolio:
    """Positions, PnL, fees and a cash ledger per currency, fed by fills and marks.

    ``Portfolio(starting_cash={"USDT": Decimal("10000")}, instruments=lookup)``; ``instruments`` is
    optional and only used to read base/quote and to round float marks to the tick.
    """

    def __init__(self, starting_cash: Mapping[str, Decimal | int | str] | None = None, *,
                 instruments: InstrumentLookup | None = None) -> None:
        self._instruments = instruments
        self._positions: dict[tuple[str, str], Position] = {}
        self._accounts: dict[str, _Account] = {}
        self._mark_exponents: dict[tuple[str, str], Decimal | None] = {}
        self._fill_ids: set[tuple[str, str, str]] = set()
        #: Goes up on every fill and mark that is applied; readers may cache what they derive from it.
        self.version = 0
        #: Inputs refused (malformed fills, bad marks), by reason.
        self.problems: dict[str, int] = {}
        for currency, amount in (starting_cash or {}).items():
            value = Decimal(amount)
            if not value.is_finite():
                raise ValueError(f"starting cash of {currency} must be a finite number, got {amount!r}")
            self._accounts[currency] = _Account(start=value, cash=value)

    # -- inputs -------------------------------------------------------------------------------------

    def on_fill(self, fill: Fill) -> Position | None:
        """Book one fill: position, FIFO realized PnL, fees and cash. Malformed fills are refused."""
        if not (fill.quantity.is_finite() and fill.price.is_finite() and fill.fee.is_finite()) \
                or fill.quantity <= 0 or fill.price <= 0:
            self._problem("malformed_fill", client_order_id=fill.client_order_id, symbol=fill.symbol,
                          quantity=str(fill.quantity), price=str(fill.price), fee=str(fill.fee))
            return None
        if fill.fill_id:
            key = (fill.venue, fill.client_order_id, fill.fill_id)
            if key in self._fill_ids:
                self._problem("duplicate_fill", client_order_id=fill.client_order_id, fill_id=fill.fill_id)
                return None
            self._fill_ids.add(key)
        pos = self._position_for(fill.venue, fill.symbol)
        acct = self._account(pos.quote)
        self.version += 1
        with decimal.localcontext(_CONTEXT):
            before, before_gross = pos.unrealized_pnl, pos.exposure
            qty, price = fill.quantity, fill.price
            sign = 1 if fill.side is Side.BUY else -1
            notional = qty * price
            acct.cash -= sign * notional + fill.fee
            acct.fees += fill.fee
            pos.fees += fill.fee
            pos.fills += 1
            pos.volume += notional
            realized = self._trade(pos, sign, qty, price)
            pos.realized_pnl += realized
            acct.realized += realized
            if not pos.marked_by_market:
                pos.mark = price
            acct.unrealized += pos.unrealized_pnl - before
            acct.gross += pos.exposure - before_gross
            if acct.pnl > acct.peak_pnl:
                acct.peak_pnl = acct.pnl
        return pos

    def mark(self, venue: str, symbol: str, price: float | Decimal | str) -> None:
        """Set the market price of a position (a book mid or microprice). Unknown symbols are ignored."""
        pos = self._positions.get((venue, symbol))
        if pos is None:
            return
        value = self._mark_value(venue, symbol, price)
        if value is None:
            return
        acct = self._accounts[pos.quote]
        self.version += 1
        with decimal.localcontext(_CONTEXT):
            before, before_gross = pos.unrealized_pnl, pos.exposure
            pos.mark = value
            pos.marked_by_market = True
            acct.unrealized += pos.unrealized_pnl - before
            acct.gross += pos.exposure - before_gross
            if acct.pnl > acct.peak_pnl:
                acct.peak_pnl = acct.pnl

    # -- reading ------------------------------------------------------------------------------------

    def position(self, venue: str, symbol: str) -> Decimal:
        """Signed position in the base currency (0 when none)."""
        pos = self._positions.get((venue, symbol))
        return pos.quantity if pos is not None else _ZERO

    def get(self, venue: str, symbol: str) -> Position | None:
        """The full position record (read it; the portfolio changes it)."""
        return self._positions.get((venue, symbol))

    def positions(self) -> list[Position]:
        return list(self._positions.values())

    def __iter__(self) -> Iterator[Position]:
        return iter(self._positions.values())

    def avg_entry_price(self, venue: str, symbol: str) -> Decimal | None:
        pos = self._positions.get((venue, symbol))
        return pos.avg_entry_price if pos is not None else None

    def mark_price(self, venue: str, symbol: str) -> Decimal | None:
        pos = self._positions.get((venue, symbol))
        return pos.mark if pos is not None else None

    def currencies(self) -> list[str]:
        """Every currency with a cash balance (starting or from trading), sorted."""
        return sorted(self._accounts)

    def cash(self, currency: str) -> Decimal:
        acct = self._accounts.get(currency)
        return acct.cash if acct is not None else _ZERO

    def starting_cash(self, currency: str) -> Decimal:
        acct = self._accounts.get(currency)
        return acct.start if acct is not None else _ZERO

    def realized_pnl(self, currency: str | None = None) -> Decimal:
        """Realized PnL in ``currency`` (all currencies added when None: only meaningful with one)."""
        return self._total(currency, "realized")

    def unrealized_pnl(self, currency: str | None = None) -> Decimal:
        return self._total(currency, "unrealized")

    def fees(self, currency: str | None = None) -> Decimal:
        return self._total(currency, "fees")

    def net_pnl(self, currency: str | None = None) -> Decimal:
        """Realized + unrealized - fees in ``currency`` (all currencies added when None)."""
        return self._total(currency, "pnl")

    def pnl(self, venue: str | None = None, symbol: str | None = None) -> PnL:
        """PnL of the positions matching ``venue`` and ``symbol`` (everything when both are None).

        Amounts of different quote currencies are simply added; with one quote currency (the usual
        case) that is the total. Use :meth:`currency_pnl` to keep currencies apart.
        """
        realized = unrealized = fees = _ZERO
        with decimal.localcontext(_CONTEXT):
            for pos in self._positions.values():
                if (venue is None or pos.venue == venue) and (symbol is None or pos.symbol == symbol):
                    realized += pos.realized_pnl
                    unrealized += pos.unrealized_pnl
                    fees += pos.fees
        return PnL(realized=realized, unrealized=unrealized, fees=fees)

    def currency_pnl(self, currency: str) -> PnL:
        """Realized, unrealized and fees of every position quoted in ``currency``."""
        acct = self._accounts.get(currency)
        if acct is None:
            return PnL(realized=_ZERO, unrealized=_ZERO, fees=_ZERO)
        return PnL(realized=acct.realized, unrealized=acct.unrealized, fees=acct.fees)

    def equity(self, currency: str) -> Decimal:
        """Cash plus the marked value of the positions quoted in ``currency``."""
        acct = self._accounts.get(currency)
        if acct is None:
            return _ZERO
        with decimal.localcontext(_CONTEXT):
            return acct.start + acct.pnl

    def peak_pnl(self, currency: str) -> Decimal:
        """The highest PnL seen so far in ``currency`` (updated on every fill and mark), at least 0."""
        acct = self._accounts.get(currency)
        return acct.peak_pnl if acct is not None else _ZERO

    def reset_peak(self, currency: str | None = None) -> None:
        """Make the current PnL the new peak (an operator accepted the loss and resumed trading)."""
        for name, acct in self._accounts.items():
            if currency is None or name == currency:
                acct.peak_pnl = acct.pnl
        self.version += 1

    def drawdown(self, currency: str) -> Decimal:
        """How far PnL is below its peak, in ``currency`` (0 at a new high)."""
        acct = self._accounts.get(currency)
        if acct is None:
            return _ZERO
        return _CONTEXT.subtract(acct.peak_pnl, acct.pnl)

    def gross_exposure(self, currency: str | None = None) -> Decimal:
        """Sum of ``|position| x mark`` over positions quoted in ``currency`` (all when None)."""
        if currency is not None:
            acct = self._accounts.get(currency)
            return acct.gross if acct is not None else _ZERO
        total = _ZERO
        for acct in self._accounts.values():
            total = _CONTEXT.add(total, acct.gross)
        return total

    def summary(self) -> list[dict[str, str]]:
        """Plain rows for an end-of-run table: one per position, then one total per currency.

        Every row has the same keys: venue, symbol, currency, position, avg_entry, mark, realized_pnl,
        unrealized_pnl, fees, fills, cash (cash only on the currency rows).
        """
        rows: list[dict[str, str]] = []
        for pos in sorted(self._positions.values(), key=lambda p: (p.venue, p.symbol)):
            rows.append({
                "venue": pos.venue,
                "symbol": pos.symbol,
                "currency": pos.quote,
                "position": _fmt(pos.quantity),
                "avg_entry": _fmt(pos.avg_entry_price),
                "mark": _fmt(pos.mark),
                "realized_pnl": _fmt(pos.realized_pnl),
                "unrealized_pnl": _fmt(pos.unrealized_pnl),
                "fees": _fmt(pos.fees),
                "fills": str(pos.fills),
                "cash": "",
            })
        for currency in self.currencies():
            acct = self._accounts[currency]
            rows.append({
                "venue": "",
                "symbol": f"total {currency}",
                "currency": currency,
                "position": "",
                "avg_entry": "",
                "mark": "",
                "realized_pnl": _fmt(acct.realized),
                "unrealized_pnl": _fmt(acct.unrealized),
                "fees": _fmt(acct.fees),
                "fills": str(sum(p.fills for p in self._positions.values() if p.quote == currency)),
                "cash": _fmt(acct.cash),
            })
        return rows

    # -- internals ----------------------------------------------------------------------------------

    @staticmethod
    def _trade(pos: Position, sign: int, qty: Decimal, price: Decimal) -> Decimal:
        """Apply a signed trade to the lots; returns the realized PnL (runs in ``_CONTEXT``)."""
        realized = _ZERO
        remaining = qty
        if pos.quantity and (pos.quantity > 0) != (sign > 0):
            # Closing against the oldest lots first; the position's own sign is -sign.
            lots = pos.lots
            while remaining and lots:
                lot = lots[0]
                take = remaining if remaining < lot.quantity else lot.quantity
                # Long closed by a sell: (exit - entry) x qty; short closed by a buy: (entry - exit) x qty.
                realized += (lot.price - price) * take * sign
                pos.cost += sign * take * lot.price
                pos.quantity += sign * take
                lot.quantity -= take
                remaining -= take
                if not lot.quantity:
                    lots.popleft()
        if remaining:
            # Opening or adding (what is left after a flip opens the other side at this price).
            lots = pos.lots
            if lots and lots[-1].price == price:
                lots[-1].quantity += remaining
            else:
                lots.append(Lot(remaining, price))
            pos.cost += sign * remaining * price
            pos.quantity += sign * remaining
        return realized

    def _position_for(self, venue: str, symbol: str) -> Position:
        pos = self._positions.get((venue, symbol))
        if pos is None:
            base, quote = split_symbol(symbol)
            inst = self._instruments(venue, symbol) if self._instruments is not None else None
            if inst is not None:
                base, quote = inst.base, inst.quote
            pos = Position(venue=venue, symbol=symbol, base=base, quote=quote or "?")
            self._positions[(venue, symbol)] = pos
            self._account(pos.quote)
        return pos

    def _account(self, currency: str) -> _Account:
        acct = self._accounts.get(currency)
        if acct is None:
            acct = self._accounts[currency] = _Account()
        return acct

    def _mark_value(self, venue: str, symbol: str, price: float | Decimal | str) -> Decimal | None:
        try:
            if isinstance(price, float):
                if not math.isfinite(price):
                    raise ValueError("not finite")
                value = Decimal(repr(price))
            else:
                value = Decimal(price)
        except (ValueError, decimal.InvalidOperation):
            self._problem("bad_mark", venue=venue, symbol=symbol, price=str(price))
            return None
        if not value.is_finite() or value <= 0:
            self._problem("bad_mark", venue=venue, symbol=symbol, price=str(price))
            return None
        exponent = self._mark_exponent(venue, symbol)
        if exponent is not None and value.as_tuple().exponent < exponent.as_tuple().exponent:  # type: ignore[operator]
            value = value.quantize(exponent, context=_CONTEXT)
        return value

    def _mark_exponent(self, venue: str, symbol: str) -> Decimal | None:
        key = (venue, symbol)
        if key in self._mark_exponents:
            return self._mark_exponents[key]
        exponent: Decimal | None = None
        inst = self._instruments(venue, symbol) if self._instruments is not None else None
        if inst is not None:
            try:
                tick = Decimal(inst.tick_size)
            except decimal.InvalidOperation:
                tick = _ZERO
            if tick.is_finite() and tick > 0:
                # A hundredth of the tick: half-tick mids stay exact, float noise (1e-15 relative) goes.
                exponent = Decimal(1).scaleb(tick.normalize().as_tuple().exponent - 2)  # type: ignore[operator]
        self._mark_exponents[key] = exponent
        return exponent

    def _total(self, currency: str | None, attr: str) -> Decimal:
        if currency is not None:
            acct = self._accounts.get(currency)
            return getattr(acct, attr) if acct is not None else _ZERO
        total = _ZERO
        for acct in self._accounts.values():
            total = _CONTEXT.add(total, getattr(acct, attr))
        return total

    def _problem(self, kind: str, **details: str) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        _log.warning("portfolio input refused", problem=kind, **details)


def _fmt(value: Decimal | None) -> str:
    if value is None:
        return ""
    if not value:
        return "0"
    return f"{value.normalize():f}"
