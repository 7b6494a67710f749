"""The paper fill engine: a simulated venue that fills our orders against the live L2 book and trades.

It is sans-I/O: plain synchronous methods take inputs with the time they happen at (epoch ns) and return
the reports that are due by then. It owns no clock, task or socket, so a replay gives the same fills
every run, and tests drive it with hand-built books and trades.

Inputs: our requests (:meth:`FillEngine.submit`, :meth:`~FillEngine.cancel`, :meth:`~FillEngine.replace`),
book events (:meth:`~FillEngine.on_book`, called after the ``L2Book`` that ``books(venue, symbol)``
returns has applied the event), public trades (:meth:`~FillEngine.on_trade`) and the passing of time
(:meth:`~FillEngine.advance`). Outputs: ``OrderUpdate`` and ``Fill`` events, in the order a venue would
send them, plus :class:`Notice` items for requests a venue would answer with an error and no order
event (a cancel of an unknown id), taken with :meth:`~FillEngine.take_notices`.

The model
---------

**Latency.** A request reaches the simulated venue ``order_latency`` after it is made; a report reaches
us ``report_latency`` after the venue produced it. Each is fixed or fixed plus a uniform jitter drawn
from a generator seeded by ``seed``. Requests to one venue arrive in the order they were sent, and its
reports come back in the order they were produced (one ordered connection each), whatever the jitter.
Time moves only with the ``now_ns`` the caller passes, never with a wall clock.

**Taking liquidity.** A market order, or a limit order whose price reaches the other side, walks the
book best price first and fills at each level's price (as taker) up to the level's size. What our
orders took is remembered per level until the book next changes that level (or a snapshot replaces the
book), so two of our orders cannot take the same size from one book state. A market order's or an
IOC's remainder expires; a GTC limit order's remainder rests at its price.

**Queue position.** A resting limit order joins behind the size the book shows at its price (``ahead``).
Then, at its price level only:

* a public trade at our price (the aggressor on the other side) eats the queue front first: ``ahead``
  goes down by the traded size, and only the part of the trade beyond ``ahead`` fills us;
* a public trade at a price *through* ours (a sell printed below our bid) means our level was emptied:
  ``ahead`` becomes 0 and the trade's size fills our orders in price then time priority;
* a decrease of the level not explained by trades seen at that price since the last change is
  cancellations, attributed pro rata over the level by default (``ahead`` shrinks by the same
  fraction as the level), or all behind us (``back``: pessimistic) or all in front (``front``:
  optimistic), per venue; an increase joins behind us;
* if the other side's best price moves to or through our price (a seller posts at or below our
  bid), that seller would have met our order first: we fill as maker at our price, up to the crossing
  size, and that size is marked as taken.

Maker fills are at our limit price, taker fills at the book level's price, both ``Decimal``: a book
price (a float from the wire) becomes the tick multiple it was written as. Fill sizes are whole lots.
Our own orders at one price keep their time priority among themselves.

**Order types and checks.** Market and limit; GTC, IOC and FOK (all or nothing, against the size
within the limit); post-only (rejected if it would take); reduce-only (rejected when it would not
reduce the position, and never filled beyond it: a reduce-only order whose position closes expires).
Tick, lot and minimum notional come from :class:`InstrumentRules`; an order off the grid is rejected
with a reason that names the rule (or rounded towards the passive side with ``off_grid="round"``).
Replace keeps the order's place in the queue only when the price is unchanged and the size does not
grow; otherwise the old order is cancelled and the new one joins the back of the queue (or takes).
Fees are per venue, maker and taker, in basis points of notional, in the quote currency.

Limits of the model (each is a choice, said plainly):

* the engine reads the book *after* the event it is handed, so a request that reached the venue
  between two book events is matched against the later state; for queue position that error is
  always pessimistic (the order joins behind size that was added after it arrived);
* a trade is attributed to the book change that follows it; a venue that sends the depth change
  before the trade makes the same volume count as a cancellation and then as a trade (optimistic);
* our simulated orders are invisible to the market: they never move prices or trade with each other;
* liquidity our taker orders took is forgotten when the venue next reports that level.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
import random
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING

from botframe.events import (
    BookDelta,
    BookSnapshot,
    Fill,
    Level,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    Trade,
)

if TYPE_CHECKING:
    from botframe.book import L2Book
    from botframe.venues import Instrument

__all__ = [
    "MAKER",
    "TAKER",
    "CancelAttribution",
    "EngineConfig",
    "FeeSchedule",
    "FillEngine",
    "InstrumentRules",
    "LatencyModel",
    "Notice",
    "OffGridPolicy",
    "Report",
]

MAKER = "maker"
TAKER = "taker"

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
# Finished orders kept for late cancels and replaces: the last 1,000, and any finished within the last
# minute of event time; older ones are forgotten first (a cancel of one is then an ``unknown_order``
# notice, a replace is rejected). Requests arrive milliseconds after a finish; a bound by count alone
# would let a busy bot's history grow for hours.
_MAX_FINISHED = 1_000
_FINISHED_RETENTION_NS = 60_000_000_000

#: What the engine reports: order status changes and fills.
Report = OrderUpdate | Fill


class CancelAttribution(enum.StrEnum):
    """Where in the queue an unexplained decrease of our price level is assumed to come from."""

    PRO_RATA = "pro_rata"  # spread over the level: ahead of us in proportion to what is ahead
    BACK = "back"  # from behind us first (pessimistic: we move up only when the level shrinks below us)
    FRONT = "front"  # from ahead of us first (optimistic)


class OffGridPolicy(enum.StrEnum):
    """What to do with a price off the tick or a quantity off the lot."""

    REJECT = "reject"  # as a venue does: the strategy must round
    ROUND = "round"  # price towards the passive side (buy down, sell up), quantity down


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Maker and taker fees of one venue in basis points of notional (negative is a rebate)."""

    maker_bps: Decimal = _ZERO
    taker_bps: Decimal = _ZERO

    def fee(self, notional: Decimal, liquidity: str) -> Decimal:
        """The fee in the quote currency for a fill of ``notional``; exact, never rounded."""
        bps = self.maker_bps if liquidity == MAKER else self.taker_bps
        return notional * bps / _BPS


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """A delay of ``fixed_ns`` plus a uniform draw in ``[0, jitter_ns]``."""

    fixed_ns: int = 0
    jitter_ns: int = 0

    def __post_init__(self) -> None:
        if self.fixed_ns < 0 or self.jitter_ns < 0:
            raise ValueError(f"latency must not be negative: fixed_ns={self.fixed_ns}, "
                             f"jitter_ns={self.jitter_ns}")

    @classmethod
    def from_ms(cls, fixed_ms: float, jitter_ms: float = 0.0) -> LatencyModel:
        return cls(round(fixed_ms * 1_000_000), round(jitter_ms * 1_000_000))

    def sample(self, rng: random.Random) -> int:
        if self.jitter_ns == 0:
            return self.fixed_ns
        return self.fixed_ns + rng.randint(0, self.jitter_ns)


@dataclass(frozen=True, slots=True)
class InstrumentRules:
    """Tick, lot and minimum notional of one symbol, exact."""

    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal = _ZERO

    def __post_init__(self) -> None:
        if not (self.tick_size > 0 and self.lot_size > 0 and self.min_notional >= 0):
            raise ValueError(f"invalid instrument rules: tick {self.tick_size}, lot {self.lot_size}, "
                             f"min notional {self.min_notional}")

    @classmethod
    def from_instrument(cls, instrument: Instrument) -> InstrumentRules:
        """Rules from a venue's :class:`~botframe.venues.Instrument` (its strings kept exact)."""
        try:
            return cls(Decimal(instrument.tick_size), Decimal(instrument.lot_size),
                       Decimal(instrument.min_notional or "0"))
        except InvalidOperation as exc:
            raise ValueError(f"{instrument.venue} {instrument.symbol}: unreadable tick/lot/min notional "
                             f"{instrument.tick_size!r}/{instrument.lot_size!r}/{instrument.min_notional!r}"
                             ) from exc

    def floor_lot(self, qty: Decimal) -> Decimal:
        """``qty`` rounded down to a whole number of lots (never negative)."""
        if qty <= 0:
            return _ZERO
        lot = self.lot_size
        return ((qty / lot).to_integral_value(ROUND_FLOOR) * lot).quantize(lot)

    def book_price(self, price: float) -> Decimal:
        """A book price (float from the wire) as the exact tick-multiple Decimal the venue meant."""
        return self.to_tick(Decimal(repr(price)), ROUND_HALF_EVEN)

    def to_tick(self, price: Decimal, rounding: str) -> Decimal:
        """``price`` rounded to a multiple of the tick size with ``rounding`` (a ``decimal`` mode)."""
        tick = self.tick_size
        return ((price / tick).to_integral_value(rounding) * tick).quantize(tick)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything that shapes the simulation; the same config, inputs and seed give the same fills."""

    fees: FeeSchedule = FeeSchedule()
    fees_by_venue: Mapping[str, FeeSchedule] = field(default_factory=dict)
    order_latency: LatencyModel = LatencyModel()
    report_latency: LatencyModel = LatencyModel()
    seed: int = 0
    cancel_attribution: CancelAttribution = CancelAttribution.PRO_RATA
    cancel_attribution_by_venue: Mapping[str, CancelAttribution] = field(default_factory=dict)
    off_grid: OffGridPolicy = OffGridPolicy.REJECT
    venue_order_id_prefix: str = "paper"


@dataclass(frozen=True, slots=True)
class Notice:
    """A request the venue answered with an error and no order event (logged by the executor).

    ``kind``: ``unknown_order`` (cancel or replace of an id the venue never saw), ``too_late`` (cancel of
    a finished order), ``duplicate_id`` (a client order id already in use), ``bad_trade`` (a public
    trade with a size or price that cannot be used).
    """

    kind: str
    client_order_id: str
    reason: str
    ts_ns: int


# -- internal state -------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Order:
    """One order at the simulated venue."""

    intent: OrderIntent
    quantity: Decimal
    price: Decimal | None
    price_f: float
    rules: InstrumentRules
    venue_order_id: str
    status: OrderStatus = OrderStatus.NEW
    filled: Decimal = _ZERO
    ahead: Decimal = _ZERO  # public size ahead of us in the queue at our price
    resting: bool = False
    fill_count: int = 0

    @property
    def client_order_id(self) -> str:
        return self.intent.client_order_id

    @property
    def side(self) -> Side:
        return self.intent.side

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal


@dataclass(slots=True, eq=False)
class _Level:
    """Our resting orders at one price, with what we know of the public queue there."""

    price_f: float
    seen: Decimal  # the public size at this price when we last looked
    credit: Decimal = _ZERO  # traded here since the level last changed: explains a decrease
    orders: list[_Order] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Taken:
    """Size our taker orders took from one side of the book, per price, in the book state it was in.

    The state is the book's version (snapshots + deltas applied) at the time of taking, so a take by
    an order that a strategy sent from inside the handling of book event k (the book already includes
    k, the engine has not seen k yet) is not forgotten when the engine then sees k.
    """

    sizes: dict[float, Decimal] = field(default_factory=dict)
    versions: dict[float, int] = field(default_factory=dict)

    def get(self, price: float) -> Decimal:
        return self.sizes.get(price, _ZERO)

    def add(self, price: float, qty: Decimal, version: int) -> None:
        self.sizes[price] = self.sizes.get(price, _ZERO) + qty
        self.versions[price] = version

    def forget(self, price: float, version: int) -> None:
        """The book changed ``price`` in ``version``: what was taken from an older state is history."""
        if self.versions.get(price, version) < version:
            del self.sizes[price]
            del self.versions[price]

    def forget_all(self, version: int) -> None:
        for price in [p for p, v in self.versions.items() if v < version]:
            del self.sizes[price]
            del self.versions[price]


def _version(book: L2Book) -> int:
    """A number that grows with every book event applied (the state ``_Taken`` refers to)."""
    return book.counters.snapshots + book.counters.deltas


@dataclass(slots=True, eq=False)
class _Market:
    """Per (venue, symbol): our resting orders by price, and liquidity our taker orders took."""

    venue: str
    symbol: str
    rules: InstrumentRules | None
    buys: dict[float, _Level] = field(default_factory=dict)
    sells: dict[float, _Level] = field(default_factory=dict)
    taken_bids: _Taken = field(default_factory=_Taken)  # by our sells
    taken_asks: _Taken = field(default_factory=_Taken)  # by our buys


@dataclass(frozen=True, slots=True)
class _Submit:
    intent: OrderIntent


@dataclass(frozen=True, slots=True)
class _Cancel:
    client_order_id: str


@dataclass(frozen=True, slots=True)
class _Replace:
    client_order_id: str
    new_intent: OrderIntent


_Action = _Submit | _Cancel | _Replace


def _dec(x: float) -> Decimal:
    """A wire float as the decimal it was written as (repr is the shortest round-trip text)."""
    return Decimal(repr(x))


def _levels(book: L2Book, bids: bool) -> Iterator[Level]:
    """One side of the book best first, read in growing chunks (most walks stop near the touch)."""
    n, start = 16, 0
    while True:
        chunk = book.bids(n) if bids else book.asks(n)
        yield from chunk[start:]
        if len(chunk) < n:
            return
        start, n = n, n * 8


class FillEngine:
    """A simulated venue for any number of (venue, symbol) markets; see the module docstring.

    ``books(venue, symbol)`` returns the live book (already updated by the event being handled),
    ``instruments(venue, symbol)`` the trading rules. ``position(venue, symbol)``, when given, is the
    position as the caller has booked it from the fills reported so far; the engine adds the fills it
    produced that are not reported yet. Without it the engine keeps its own ledger (set a starting
    position with :meth:`set_position`).
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        books: Callable[[str, str], L2Book | None],
        instruments: Callable[[str, str], InstrumentRules | None],
        position: Callable[[str, str], Decimal] | None = None,
    ) -> None:
        self.config = config
        self._books = books
        self._instruments = instruments
        self._position_lookup = position
        # Two generators, so changing one latency model does not shift the other's draws.
        self._order_rng = random.Random(f"{config.seed}/order")
        self._report_rng = random.Random(f"{config.seed}/report")
        self._seq = itertools.count()
        self._now = 0
        self._arrivals: list[tuple[int, int, _Action]] = []
        self._reports: list[tuple[int, int, Report]] = []
        self._last_arrival: dict[str, int] = {}
        self._last_report: dict[str, int] = {}
        self._in_flight: dict[str, OrderIntent] = {}  # sent, not arrived yet
        self._orders: dict[str, _Order] = {}  # at the venue and open
        self._finished: OrderedDict[str, _Order] = OrderedDict()
        self._finished_at: deque[int] = deque()  # finish times, in the order of _finished
        self._markets: dict[tuple[str, str], _Market] = {}
        self._ledger: dict[tuple[str, str], Decimal] = {}
        self._unreported: dict[tuple[str, str], Decimal] = {}
        self._notices: list[Notice] = []
        #: What happened, by name: accepted, rejected, fills, maker_fills, taker_fills, cancelled...
        self.counters: Counter[str] = Counter()

    # -- requests -----------------------------------------------------------------------------------

    def submit(self, intent: OrderIntent, now_ns: int) -> list[Report]:
        """Send a new order; it reaches the venue after the order latency."""
        now = self._tick(now_ns)
        cid = intent.client_order_id
        if cid in self._orders or cid in self._finished or cid in self._in_flight:
            self._notice("duplicate_id", cid, f"client order id {cid!r} is already in use", now)
            return self._release(now)
        self._in_flight[cid] = intent
        self._send(intent.venue, _Submit(intent), now)
        return self.advance(now)

    def cancel(self, client_order_id: str, now_ns: int) -> list[Report]:
        """Ask to cancel an order; the answer comes after the order latency (and the report latency)."""
        now = self._tick(now_ns)
        venue = self._venue_of(client_order_id)
        if venue is None:
            self._notice("unknown_order", client_order_id, "cancel of an order the venue never saw", now)
            return self._release(now)
        self._send(venue, _Cancel(client_order_id), now)
        return self.advance(now)

    def replace(self, client_order_id: str, new_client_order_id: str, *, quantity: Decimal,
                price: Decimal | None, now_ns: int) -> list[Report]:
        """Replace an order by a new one with id ``new_client_order_id`` of ``quantity`` at ``price``.

        ``quantity`` is the new order's whole size (what the old one filled stays with the old one);
        ``price`` None keeps the old price. Priority is kept only when the price is unchanged and
        ``quantity`` is not above the old order's remaining size.
        """
        now = self._tick(now_ns)
        old = self._orders.get(client_order_id) or self._finished.get(client_order_id)
        base = old.intent if old is not None else self._in_flight.get(client_order_id)
        if base is None:
            self._notice("unknown_order", client_order_id, "replace of an order the venue never saw", now)
            return self._release(now)
        if (new_client_order_id in self._orders or new_client_order_id in self._finished
                or new_client_order_id in self._in_flight):
            self._notice("duplicate_id", new_client_order_id,
                         f"client order id {new_client_order_id!r} is already in use", now)
            return self._release(now)
        new_intent = OrderIntent(
            client_order_id=new_client_order_id, strategy=base.strategy, venue=base.venue,
            symbol=base.symbol, side=base.side, quantity=quantity, order_type=base.order_type,
            price=price if price is not None else base.price, time_in_force=base.time_in_force,
            post_only=base.post_only, reduce_only=base.reduce_only, ts_ns=now)
        self._in_flight[new_client_order_id] = new_intent
        self._send(base.venue, _Replace(client_order_id, new_intent), now)
        return self.advance(now)

    # -- market data --------------------------------------------------------------------------------

    def on_book(self, event: BookSnapshot | BookDelta, now_ns: int) -> list[Report]:
        """Handle a book event; the book from ``books(...)`` must already include it."""
        # This runs for every book event of every venue: the common "nothing of ours here" path
        # is kept to a few dict lookups (and ``_tick`` written inline).
        if now_ns > self._now:
            self._now = now_ns
        now = self._now
        key = (event.venue, event.symbol)
        market = self._markets.get(key)
        if market is not None:
            bids, asks = market.taken_bids, market.taken_asks
            # The book is looked up only when something of ours needs it (a market we once traded in
            # stays in _markets, and the look-up would otherwise run on each of its events).
            book = self._books(event.venue, event.symbol) if bids.sizes or asks.sizes else None
            if book is not None:
                # The venue restated these levels: what our taker orders took from them is history.
                version = _version(book)
                if isinstance(event, BookSnapshot):
                    bids.forget_all(version)
                    asks.forget_all(version)
                else:
                    for p, _s in event.bids:
                        bids.forget(p, version)
                    for p, _s in event.asks:
                        asks.forget(p, version)
        if self._arrivals and self._arrivals[0][0] <= now:
            self._process_arrivals(now)
            market = self._markets.get(key)
        if market is not None and (market.buys or market.sells):
            attribution = self.config.cancel_attribution_by_venue.get(event.venue,
                                                                       self.config.cancel_attribution)
            self._restate_levels(market, event, attribution)
            book = self._books(event.venue, event.symbol)
            if book is not None:
                self._fill_crossed(market, book, now)
        if self._reports and self._reports[0][0] <= now:
            return self._release(now)
        return []

    def on_trade(self, trade: Trade, now_ns: int) -> list[Report]:
        """Handle a public trade (``side`` is the aggressor): it may fill our resting orders."""
        now = self._tick(now_ns)
        self._process_arrivals(now)
        market = self._markets.get((trade.venue, trade.symbol))
        if market is not None and (market.sells if trade.side is Side.BUY else market.buys):
            if not (trade.size > 0 and trade.price > 0 and math.isfinite(trade.size + trade.price)):
                self._notice("bad_trade", "", f"trade {trade.trade_id!r} has price {trade.price} and "
                             f"size {trade.size}; ignored", now)
            else:
                self._trade_fills(market, trade, now)
        return self._release(now)

    def advance(self, now_ns: int) -> list[Report]:
        """Let time pass: process requests that reached the venue and return reports now due."""
        now = self._tick(now_ns)
        self._process_arrivals(now)
        return self._release(now)

    def settle(self) -> list[Report]:
        """Let time run until nothing is in flight; return every report (for a clean stop)."""
        out: list[Report] = []
        due = self.next_due_ns()
        while due is not None:
            out += self.advance(due)
            due = self.next_due_ns()
        return out

    # -- reads --------------------------------------------------------------------------------------

    def next_due_ns(self) -> int | None:
        """When the next request arrives or the next report is due (for a timer), or None."""
        due = [h[0][0] for h in (self._arrivals, self._reports) if h]
        return min(due) if due else None

    def has_notices(self) -> bool:
        """Whether notices are waiting for :meth:`take_notices`."""
        return bool(self._notices)

    def take_notices(self) -> list[Notice]:
        """The notices since the last call."""
        out, self._notices = self._notices, []
        return out

    def position(self, venue: str, symbol: str) -> Decimal:
        """The signed position the venue sees: every fill produced, reported or not."""
        key = (venue, symbol)
        if self._position_lookup is not None:
            return self._position_lookup(venue, symbol) + self._unreported.get(key, _ZERO)
        return self._ledger.get(key, _ZERO)

    def set_position(self, venue: str, symbol: str, quantity: Decimal) -> None:
        """Set the engine's own ledger (a starting position, or one recovered after a restart)."""
        self._ledger[(venue, symbol)] = quantity

    def queue_ahead(self, client_order_id: str) -> Decimal | None:
        """Public size ahead of a resting order at its price; None when it is not resting."""
        order = self._orders.get(client_order_id)
        return order.ahead if order is not None and order.resting else None

    def open_order_ids(self) -> list[str]:
        """Ids of the orders open at the venue, in arrival order."""
        return list(self._orders)

    # -- time and transport -------------------------------------------------------------------------

    def _tick(self, now_ns: int) -> int:
        if now_ns > self._now:
            self._now = now_ns
        return self._now

    def _send(self, venue: str, action: _Action, now: int) -> None:
        delay = self.config.order_latency.sample(self._order_rng)
        arrival = max(now + delay, self._last_arrival.get(venue, 0))
        self._last_arrival[venue] = arrival
        heapq.heappush(self._arrivals, (arrival, next(self._seq), action))

    def _emit(self, event: Report, venue: str, ts: int) -> None:
        due = max(ts + self.config.report_latency.sample(self._report_rng), self._last_report.get(venue, 0))
        self._last_report[venue] = due
        heapq.heappush(self._reports, (due, next(self._seq), event))

    def _release(self, now: int) -> list[Report]:
        out: list[Report] = []
        reports = self._reports
        while reports and reports[0][0] <= now:
            event = heapq.heappop(reports)[2]
            if isinstance(event, Fill):
                key = (event.venue, event.symbol)
                self._unreported[key] = self._unreported.get(key, _ZERO) - event.side.sign * event.quantity
            out.append(event)
        return out

    def _notice(self, kind: str, client_order_id: str, reason: str, ts: int) -> None:
        self.counters[f"notice_{kind}"] += 1
        self._notices.append(Notice(kind, client_order_id, reason, ts))

    def _venue_of(self, client_order_id: str) -> str | None:
        order = self._orders.get(client_order_id) or self._finished.get(client_order_id)
        if order is not None:
            return order.intent.venue
        intent = self._in_flight.get(client_order_id)
        return intent.venue if intent is not None else None

    def _process_arrivals(self, now: int) -> None:
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= now:
            t, _seq, action = heapq.heappop(arrivals)
            if isinstance(action, _Submit):
                self._in_flight.pop(action.intent.client_order_id, None)
                self._arrive_new(action.intent, t)
            elif isinstance(action, _Cancel):
                self._arrive_cancel(action.client_order_id, t)
            else:
                self._in_flight.pop(action.new_intent.client_order_id, None)
                self._arrive_replace(action, t)

    # -- order events -------------------------------------------------------------------------------

    def _update(self, order: _Order, status: OrderStatus, ts: int, reason: str = "") -> None:
        order.status = status
        intent = order.intent
        self._emit(OrderUpdate(
            client_order_id=intent.client_order_id, venue=intent.venue, symbol=intent.symbol, status=status,
            side=intent.side, quantity=order.quantity, filled_quantity=order.filled, price=order.price,
            venue_order_id=order.venue_order_id, reason=reason, ts_ns=ts), intent.venue, ts)
        if status.is_terminal:
            self._orders.pop(intent.client_order_id, None)
            finished = self._finished
            at = self._finished_at
            if intent.client_order_id not in finished:
                at.append(ts)
            finished[intent.client_order_id] = order
            if len(finished) > _MAX_FINISHED:
                horizon = self._now - _FINISHED_RETENTION_NS
                while len(finished) > _MAX_FINISHED and at[0] < horizon:
                    finished.popitem(last=False)
                    at.popleft()
            self.counters[status.value] += 1

    def _reject(self, intent: OrderIntent, reason: str, ts: int) -> None:
        self.counters["rejected"] += 1
        self._emit(OrderUpdate(
            client_order_id=intent.client_order_id, venue=intent.venue, symbol=intent.symbol,
            status=OrderStatus.REJECTED, side=intent.side, quantity=intent.quantity, price=intent.price,
            reason=reason, ts_ns=ts), intent.venue, ts)

    def _market(self, venue: str, symbol: str, rules: InstrumentRules) -> _Market:
        key = (venue, symbol)
        market = self._markets.get(key)
        if market is None:
            market = self._markets[key] = _Market(venue, symbol, rules)
        else:
            market.rules = rules
        return market

    # -- arrival of a new order ---------------------------------------------------------------------

    def _validate(self, intent: OrderIntent, rules: InstrumentRules | None, book: L2Book | None
                  ) -> tuple[Decimal, Decimal | None] | str:
        """The order's (quantity, price) as the venue takes them, or why it is rejected."""
        where = f"{intent.venue} {intent.symbol}"
        if rules is None:
            return f"no instrument rules (tick, lot) for {where}"
        if book is None:
            return f"no market data for {where}"
        if not book.is_live:
            return f"the {where} book is {book.health.value}, not live"
        qty = intent.quantity
        if not qty.is_finite() or qty <= 0:
            return f"quantity {qty} must be positive"
        is_market = intent.order_type is OrderType.MARKET
        price = None if is_market else intent.price
        if not is_market:
            if price is None:
                return "a limit order needs a price"
            if not price.is_finite() or price <= 0:
                return f"price {price} must be positive"
        if intent.post_only:
            if is_market:
                return "post-only needs a limit order"
            if intent.time_in_force is not TimeInForce.GTC:
                return f"post-only needs time in force GTC, not {intent.time_in_force.value.upper()}"
        round_off = self.config.off_grid is OffGridPolicy.ROUND
        if price is not None and price % rules.tick_size != 0:
            if not round_off:
                return f"price {price} is not a multiple of the tick size {rules.tick_size}"
            mode = ROUND_FLOOR if intent.side is Side.BUY else ROUND_CEILING
            price = rules.to_tick(price, mode)
            if price <= 0:
                return f"price {intent.price} rounds to zero at the tick size {rules.tick_size}"
        if qty % rules.lot_size != 0:
            if not round_off:
                return f"quantity {qty} is not a multiple of the lot size {rules.lot_size}"
            qty = rules.floor_lot(qty)
            if qty <= 0:
                return f"quantity {intent.quantity} rounds to zero at the lot size {rules.lot_size}"
        if price is not None:
            ref = price
        else:
            best = book.best_ask_price() if intent.side is Side.BUY else book.best_bid_price()
            if best is None:
                side = "ask" if intent.side is Side.BUY else "bid"
                return f"no liquidity: the {where} book has no {side}s for a market order"
            ref = rules.book_price(best)
        if rules.min_notional > 0 and qty * ref < rules.min_notional:
            return f"notional {qty * ref} is below the minimum notional {rules.min_notional}"
        return qty, price

    def _arrive_new(self, intent: OrderIntent, t: int, *, queue_from: _Order | None = None) -> None:
        book = self._books(intent.venue, intent.symbol)
        rules = self._instruments(intent.venue, intent.symbol)
        checked = self._validate(intent, rules, book)
        if isinstance(checked, str):
            self._reject(intent, checked, t)
            return
        assert rules is not None  # _validate said so
        assert book is not None
        qty, price = checked
        market = self._market(intent.venue, intent.symbol, rules)
        order = _Order(intent=intent, quantity=qty, price=price,
                       price_f=float(price) if price is not None else 0.0, rules=rules,
                       venue_order_id=f"{self.config.venue_order_id_prefix}-{intent.client_order_id}")
        if intent.reduce_only and self._reducible(order) <= 0:
            pos = self.position(intent.venue, intent.symbol)
            self._reject(intent, f"reduce-only {intent.side.value} would not reduce the position ({pos})", t)
            return
        takes = self._takeable(market, book, order)
        if intent.post_only and takes:
            best = book.best_ask_price() if order.side is Side.BUY else book.best_bid_price()
            other = "ask" if order.side is Side.BUY else "bid"
            self._reject(intent, f"post-only {order.side.value} at {price} would cross the best {other} "
                                 f"{best and rules.book_price(best)}", t)
            return
        self._orders[intent.client_order_id] = order
        self.counters["accepted"] += 1
        self._update(order, OrderStatus.ACCEPTED, t)
        if queue_from is not None:
            self._inherit_queue(market, queue_from, order)
            return
        tif = intent.time_in_force
        if intent.order_type is OrderType.MARKET or takes:
            if tif is TimeInForce.FOK:
                available = self._available(market, book, order)
                if available < order.quantity:
                    self._update(order, OrderStatus.EXPIRED, t,
                                 f"fill-or-kill: only {available} of {order.quantity} available"
                                 + (f" at {price} or better" if price is not None else ""))
                    return
            self._take(market, book, order, t)
        if not order.is_open:
            return
        if intent.order_type is OrderType.MARKET:
            self._update(order, OrderStatus.EXPIRED, t,
                         f"market order: book depth exhausted with {order.remaining} unfilled")
        elif tif is not TimeInForce.GTC:
            self._update(order, OrderStatus.EXPIRED, t,
                         f"{tif.value.upper()}: {order.remaining} unfilled at {price} or better")
        else:
            self._rest(market, book, order)

    def _takeable(self, market: _Market, book: L2Book, order: _Order) -> bool:
        """Whether some untaken size on the other side is at or better than the order's limit."""
        if order.intent.order_type is OrderType.MARKET:
            return True
        for _p, _avail in self._other_side(market, book, order):
            return True
        return False

    def _other_side(self, market: _Market, book: L2Book, order: _Order) -> Iterator[tuple[float, Decimal]]:
        """(price, untaken size) of the levels an order may take from, best first, within its limit."""
        buy = order.side is Side.BUY
        taken = market.taken_asks if buy else market.taken_bids
        limit = order.price_f if order.price is not None else None
        for p, s in _levels(book, bids=not buy):
            if limit is not None and (p > limit if buy else p < limit):
                return
            avail = _dec(s) - taken.get(p) if taken.sizes else _dec(s)
            if avail > 0:
                yield p, avail

    def _available(self, market: _Market, book: L2Book, order: _Order) -> Decimal:
        total = _ZERO
        for _p, avail in self._other_side(market, book, order):
            total += order.rules.floor_lot(avail)
            if total >= order.quantity:
                break
        return min(total, self._reducible(order)) if order.intent.reduce_only else total

    def _take(self, market: _Market, book: L2Book, order: _Order, t: int) -> None:
        taken = market.taken_asks if order.side is Side.BUY else market.taken_bids
        version = _version(book)
        # Lazy on purpose: only the level being filled changes in ``taken``, and it was read already.
        for p, avail in self._other_side(market, book, order):
            qty = order.rules.floor_lot(min(avail, order.remaining))
            if qty <= 0:
                continue
            got = self._fill(market, order, qty, order.rules.book_price(p), TAKER, t)
            if got > 0:
                taken.add(p, got, version)
            if not order.is_open or order.remaining <= 0:
                return

    def _rest(self, market: _Market, book: L2Book, order: _Order) -> None:
        levels = market.buys if order.side is Side.BUY else market.sells
        public = _dec(book.size_at(order.side, order.price_f))
        level = levels.get(order.price_f)
        if level is None:
            level = levels[order.price_f] = _Level(order.price_f, public)
        else:
            level.seen = public
        taken = (market.taken_bids if order.side is Side.BUY else market.taken_asks).get(order.price_f)
        order.ahead = max(public - taken, _ZERO)
        order.resting = True
        level.orders.append(order)

    def _unrest(self, market: _Market, order: _Order) -> None:
        if not order.resting:
            return
        order.resting = False
        levels = market.buys if order.side is Side.BUY else market.sells
        level = levels.get(order.price_f)
        if level is not None:
            level.orders.remove(order)
            if not level.orders:
                del levels[order.price_f]

    # -- cancel and replace -------------------------------------------------------------------------

    def _arrive_cancel(self, client_order_id: str, t: int) -> None:
        order = self._orders.get(client_order_id)
        if order is None:
            done = self._finished.get(client_order_id)
            if done is not None:
                self._notice("too_late", client_order_id, f"cancel arrived after the order was "
                             f"{done.status.value}", t)
            else:
                self._notice("unknown_order", client_order_id, "cancel of an order the venue never saw", t)
            return
        market = self._markets[(order.intent.venue, order.intent.symbol)]
        self._unrest(market, order)
        self._update(order, OrderStatus.CANCELLED, t, "cancelled on request")

    def _arrive_replace(self, action: _Replace, t: int) -> None:
        new = action.new_intent
        old = self._orders.get(action.client_order_id)
        if old is None:
            done = self._finished.get(action.client_order_id)
            state = f"is {done.status.value}" if done is not None else "is unknown to the venue"
            self._reject(new, f"replace failed: order {action.client_order_id} {state}", t)
            return
        market = self._markets[(old.intent.venue, old.intent.symbol)]
        # Validate before touching the old order: a refused replace leaves it working.
        checked = self._validate(new, old.rules, self._books(new.venue, new.symbol))
        if isinstance(checked, str):
            self._reject(new, f"replace failed: {checked}", t)
            return
        qty, price = checked
        keep = old.resting and price == old.price and qty <= old.remaining
        if not keep:
            self._unrest(market, old)
        self._update(old, OrderStatus.CANCELLED, t, f"replaced by {new.client_order_id}")
        self._arrive_new(new, t, queue_from=old if keep else None)
        if old.resting:  # the new order was refused and did not take the old one's place
            self._unrest(market, old)

    def _inherit_queue(self, market: _Market, old: _Order, new: _Order) -> None:
        levels = market.buys if old.side is Side.BUY else market.sells
        level = levels[old.price_f]
        new.ahead = old.ahead
        new.resting = True
        old.resting = False
        level.orders[level.orders.index(old)] = new

    # -- fills --------------------------------------------------------------------------------------

    def _reducible(self, order: _Order) -> Decimal:
        """How much a reduce-only order may still fill: the part of the position on the other side."""
        pos = self.position(order.intent.venue, order.intent.symbol)
        allowed = -pos if order.side is Side.BUY else pos
        return allowed if allowed > 0 else _ZERO

    def _fill(self, market: _Market, order: _Order, qty: Decimal, price: Decimal, liquidity: str,
              t: int) -> Decimal:
        """Fill ``qty`` of ``order`` at ``price``; returns what was filled (reduce-only may cut it)."""
        if order.intent.reduce_only:
            qty = min(qty, order.rules.floor_lot(self._reducible(order)))
            if qty <= 0:
                self._unrest(market, order)
                self._update(order, OrderStatus.EXPIRED, t, "reduce-only: the position is closed")
                return _ZERO
        intent = order.intent
        order.filled += qty
        order.fill_count += 1
        fees = self.config.fees_by_venue.get(intent.venue, self.config.fees)
        self._emit(Fill(
            client_order_id=intent.client_order_id, venue=intent.venue, symbol=intent.symbol,
            side=intent.side, price=price, quantity=qty, fee=fees.fee(price * qty, liquidity),
            liquidity=liquidity, fill_id=f"{intent.client_order_id}-{order.fill_count}", ts_ns=t),
            intent.venue, t)
        key = (intent.venue, intent.symbol)
        signed = intent.side.sign * qty
        self._ledger[key] = self._ledger.get(key, _ZERO) + signed
        self._unreported[key] = self._unreported.get(key, _ZERO) + signed
        self.counters["fills"] += 1
        self.counters[f"{liquidity}_fills"] += 1
        if order.remaining <= 0:
            self._unrest(market, order)
            self._update(order, OrderStatus.FILLED, t)
        else:
            self._update(order, OrderStatus.PARTIALLY_FILLED, t)
            if intent.reduce_only and self._reducible(order) <= 0:
                self._unrest(market, order)
                self._update(order, OrderStatus.EXPIRED, t, "reduce-only: the position is closed")
        return qty

    def _restate_levels(self, market: _Market, event: BookSnapshot | BookDelta,
                        attribution: CancelAttribution) -> None:
        """Move our queue positions for the levels the book event changed at our prices."""
        if isinstance(event, BookSnapshot):
            for ours, theirs in ((market.buys, event.bids), (market.sells, event.asks)):
                if ours:
                    sizes = dict(theirs)
                    for p, ours_at in ours.items():
                        self._level_changed(ours_at, _dec(sizes.get(p, 0.0)), attribution)
            return
        for ours, theirs in ((market.buys, event.bids), (market.sells, event.asks)):
            if ours:
                for p, s in theirs:
                    level = ours.get(p)
                    if level is not None:
                        self._level_changed(level, _dec(s), attribution)

    @staticmethod
    def _level_changed(level: _Level, new: Decimal, attribution: CancelAttribution) -> None:
        old = level.seen
        if new < old:
            drop = old - new
            explained = min(drop, level.credit)  # trades we saw at this price
            cancels = drop - explained
            if cancels > 0:
                base = old - explained  # the level after those trades, before the cancels
                for order in level.orders:
                    if attribution is CancelAttribution.PRO_RATA:
                        order.ahead = order.ahead * new / base
                    elif attribution is CancelAttribution.FRONT:
                        order.ahead = max(order.ahead - cancels, _ZERO)
                    # BACK: cancels came from behind us; only the cap below can move us.
        for order in level.orders:
            if order.ahead > new:
                order.ahead = new
        level.credit = _ZERO
        level.seen = new

    def _trade_fills(self, market: _Market, trade: Trade, t: int) -> None:
        """A public trade fills our orders it went through, then our queue at its price."""
        sell_aggressor = trade.side is Side.SELL
        levels = market.buys if sell_aggressor else market.sells
        tp = trade.price
        volume = _dec(trade.size)
        through = sorted((p for p in levels if (p > tp if sell_aggressor else p < tp)),
                         reverse=sell_aggressor)
        for p in through:
            passed = levels.get(p)
            if passed is None:
                continue
            for order in list(passed.orders):
                order.ahead = _ZERO  # the level was emptied by the aggressor
                if volume > 0 and order.is_open:
                    qty = order.rules.floor_lot(min(volume, order.remaining))
                    if qty > 0:
                        volume -= self._fill(market, order, qty, self._limit(order), MAKER, t)
        level = levels.get(tp)
        if level is None:
            return
        level.credit += _dec(trade.size)
        eaten = _ZERO  # public size in front of our orders that this trade consumed
        for order in list(level.orders):
            if volume <= 0:
                break
            gap = order.ahead - eaten
            if gap > 0:
                used = min(volume, gap)
                eaten += used
                volume -= used
                if volume <= 0:
                    break
            qty = order.rules.floor_lot(min(volume, order.remaining))
            if qty > 0:
                volume -= self._fill(market, order, qty, self._limit(order), MAKER, t)
        if eaten > 0:
            for order in level.orders:
                order.ahead = max(order.ahead - eaten, _ZERO)

    @staticmethod
    def _limit(order: _Order) -> Decimal:
        assert order.price is not None  # only limit orders rest
        return order.price

    def _fill_crossed(self, market: _Market, book: L2Book, t: int) -> None:
        """Fill resting orders that the other side of the book moved onto or through."""
        for buy, ours in ((True, market.buys), (False, market.sells)):
            if not ours:
                continue
            best = book.best_ask_price() if buy else book.best_bid_price()
            # The common case, checked first because it runs on every book event: nothing crosses.
            if best is None or (max(ours) < best if buy else min(ours) > best):
                continue
            if book.is_crossed():
                return  # the public book is inconsistent; nothing it shows can be trusted to trade
            crossed = sorted((p for p in ours if (p >= best if buy else p <= best)), reverse=buy)
            taken = market.taken_asks if buy else market.taken_bids
            version = _version(book)
            deepest = crossed[-1]
            prices: list[float] = []
            avails: list[Decimal] = []
            for p, s in _levels(book, bids=not buy):
                if p > deepest if buy else p < deepest:
                    break
                avail = _dec(s) - taken.get(p)
                if avail > 0:
                    prices.append(p)
                    avails.append(avail)
            i = 0
            for p in crossed:
                level = ours.get(p)
                if level is None:
                    continue
                for order in list(level.orders):
                    order.ahead = _ZERO
                    while order.is_open and i < len(prices):
                        op = prices[i]
                        if op > p if buy else op < p:
                            break
                        qty = order.rules.floor_lot(min(avails[i], order.remaining))
                        if qty <= 0:
                            i += 1
                            continue
                        got = self._fill(market, order, qty, self._limit(order), MAKER, t)
                        if got <= 0:
                            break
                        taken.add(op, got, version)
                        avails[i] -= got
                        if avails[i] <= 0:
                            i += 1
