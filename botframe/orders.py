"""Our orders: the mutable order record, its status state machine, the tracker and client order ids.

An :class:`Order` is created from an approved :class:`~botframe.events.OrderIntent` in status ``NEW``
and then moves only along the table below; executors report the moves as ``OrderUpdate`` events and
fills as ``Fill`` events, which :class:`OrderTracker` applies. A report that asks for an impossible
move (a fill on a rejected order's status, a cancelled order coming back to life) is logged, counted
and not applied, so one confused executor message cannot corrupt the book of open orders.

Legal status moves (``LEGAL_TRANSITIONS``; anything not listed is refused)::

    NEW              -> ACCEPTED, PARTIALLY_FILLED, FILLED, CANCEL_PENDING, CANCELLED, REJECTED, EXPIRED
    ACCEPTED         -> PARTIALLY_FILLED, FILLED, CANCEL_PENDING, CANCELLED, EXPIRED
    PARTIALLY_FILLED -> PARTIALLY_FILLED, FILLED, CANCEL_PENDING, CANCELLED, EXPIRED
    CANCEL_PENDING   -> ACCEPTED, PARTIALLY_FILLED, FILLED, CANCELLED, EXPIRED
    FILLED, CANCELLED, REJECTED, EXPIRED -> (terminal: nothing)

Why each less obvious entry is there:

* ``NEW -> PARTIALLY_FILLED / FILLED``: an IOC or market order may report its fills before (or
  instead of) an acknowledgement.
* ``NEW -> CANCELLED / EXPIRED / CANCEL_PENDING``: an IOC that finds no liquidity is cancelled or
  expired without ever resting, and a cancel may be requested before the venue acknowledged the order.
* ``PARTIALLY_FILLED -> PARTIALLY_FILLED``: every further partial fill.
* ``CANCEL_PENDING -> PARTIALLY_FILLED / FILLED``: fills race cancels; the venue may execute the
  order after we asked to cancel it and before it processed the request.
* ``CANCEL_PENDING -> ACCEPTED``: the venue refused the cancel (too late, or rate limited) and the
  order is still working.
* ``REJECTED`` only from ``NEW``: once a venue accepted an order, it can end only by fill, cancel or
  expiry.

A report that repeats the order's current status without new fills (a duplicated acknowledgement,
a re-sent cancel confirmation) is a harmless duplicate: counted, not an error.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from .events import Fill, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce

if TYPE_CHECKING:
    from .clock import Clock

__all__ = [
    "CLIENT_ORDER_ID_PATTERN",
    "LEGAL_TRANSITIONS",
    "ClientOrderIds",
    "IllegalTransitionError",
    "Order",
    "OrderTracker",
    "is_legal_transition",
]

_log = structlog.get_logger("botframe.orders")

_S = OrderStatus

#: The order status state machine; see the module docstring for why each move is allowed.
LEGAL_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    _S.NEW: frozenset({_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCEL_PENDING, _S.CANCELLED,
                       _S.REJECTED, _S.EXPIRED}),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCEL_PENDING, _S.CANCELLED, _S.EXPIRED}),
    _S.PARTIALLY_FILLED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCEL_PENDING, _S.CANCELLED,
                                    _S.EXPIRED}),
    _S.CANCEL_PENDING: frozenset({_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED}),
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset(),
}

#: What every venue we know accepts as a client order id (Binance: ``^[.A-Z:/a-z0-9_-]{1,36}$``).
CLIENT_ORDER_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,36}")


def is_legal_transition(current: OrderStatus, new: OrderStatus) -> bool:
    """Whether an order in ``current`` may move to ``new`` (see ``LEGAL_TRANSITIONS``)."""
    return new in LEGAL_TRANSITIONS[current]


class IllegalTransitionError(ValueError):
    """An order was asked to make a status move that the state machine forbids."""

    def __init__(self, client_order_id: str, current: OrderStatus, new: OrderStatus) -> None:
        super().__init__(f"order {client_order_id!r} cannot move from {current.value} to {new.value}")
        self.client_order_id = client_order_id
        self.current = current
        self.new = new


@dataclass(slots=True)
class Order:
    """One of our orders: what was asked (from the intent) and what has happened to it so far.

    ``filled_quantity`` is cumulative and never decreases; ``avg_fill_price`` is the volume-weighted
    price of the fills applied (``None`` before the first fill). Timestamps are epoch ns.
    """

    client_order_id: str
    strategy: str
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.LIMIT
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reduce_only: bool = False
    status: OrderStatus = OrderStatus.NEW
    filled_quantity: Decimal = Decimal(0)
    avg_fill_price: Decimal | None = None
    venue_order_id: str = ""
    reason: str = ""
    created_ns: int = 0
    updated_ns: int = 0
    # Notional of the fills applied so far (sum of qty x price), exact; avg_fill_price derives from it.
    filled_notional: Decimal = Decimal(0)
    fill_ids: set[str] = field(default_factory=set)

    @classmethod
    def from_intent(cls, intent: OrderIntent, ts_ns: int = 0) -> Order:
        ts = ts_ns or intent.ts_ns
        return cls(
            client_order_id=intent.client_order_id,
            strategy=intent.strategy,
            venue=intent.venue,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            order_type=intent.order_type,
            price=intent.price,
            time_in_force=intent.time_in_force,
            post_only=intent.post_only,
            reduce_only=intent.reduce_only,
            created_ns=ts,
            updated_ns=ts,
        )

    @property
    def is_open(self) -> bool:
        """Still working (or may still trade): not in a terminal status."""
        return not self.status.is_terminal

    @property
    def remaining_quantity(self) -> Decimal:
        """What may still fill: quantity minus filled, never negative."""
        rest = self.quantity - self.filled_quantity
        return rest if rest > 0 else Decimal(0)

    def move_to(self, status: OrderStatus, ts_ns: int = 0) -> None:
        """Move to ``status`` if the state machine allows it; raise :class:`IllegalTransitionError` if not."""
        if status not in LEGAL_TRANSITIONS[self.status]:
            raise IllegalTransitionError(self.client_order_id, self.status, status)
        self.status = status
        if ts_ns:
            self.updated_ns = ts_ns


class OrderTracker:
    """All our orders by client order id, with a fast index of the open ones per (venue, symbol).

    Finished orders are kept for lookups (late fills, journal, strategy queries): the last
    ``max_finished`` of them, and beyond that every order finished less than ``retention_ns`` ago
    (report time; 0 keeps by count alone), oldest dropped first, so a long run keeps memory flat.
    A late report for a dropped order is counted in ``problems`` and logged, like any unknown id;
    the engine still applies a late fill to the portfolio. ``counts_by_status`` counts every order
    ever added, dropped ones included.
    """

    def __init__(self, *, max_finished: int = 100_000, retention_ns: int = 0) -> None:
        self._open: dict[str, Order] = {}
        self._open_by_symbol: dict[tuple[str, str], dict[str, Order]] = {}
        self._finished: OrderedDict[str, Order] = OrderedDict()
        self._max_finished = max_finished
        self._retention_ns = retention_ns
        # When each finished order finished, in the order of ``_finished`` (an order finishes once).
        self._finished_at: deque[int] = deque()
        self._latest_ns = 0
        self._status_counts: dict[OrderStatus, int] = dict.fromkeys(OrderStatus, 0)
        # Per (venue, symbol, side): open remaining quantity and the most aggressive open order,
        # computed on demand and dropped whenever an order of that side is added, filled or finished;
        # the risk checks read them on every intent.
        self._side_cache: dict[tuple[str, str, Side], tuple[Decimal, Order | None]] = {}
        #: Reports not applied, by reason: illegal transitions, unknown ids, duplicates, over-fills...
        self.problems: dict[str, int] = {}

    # -- adding and reading -------------------------------------------------------------------------

    def add(self, intent: OrderIntent, ts_ns: int = 0) -> Order:
        """Start tracking an approved intent as a NEW order; a client order id in use is a ValueError."""
        coid = intent.client_order_id
        if coid in self._open or coid in self._finished:
            raise ValueError(f"client order id {coid!r} is already in use")
        order = Order.from_intent(intent, ts_ns)
        self._open[coid] = order
        self._open_by_symbol.setdefault((order.venue, order.symbol), {})[coid] = order
        self._status_counts[order.status] += 1
        self._side_cache.pop((order.venue, order.symbol, order.side), None)
        return order

    def get(self, client_order_id: str) -> Order | None:
        order = self._open.get(client_order_id)
        if order is None:
            order = self._finished.get(client_order_id)
        return order

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._open or client_order_id in self._finished

    def open_orders(self, venue: str | None = None, symbol: str | None = None) -> list[Order]:
        """Open orders, oldest first; filtered by venue and/or symbol when given."""
        if venue is not None and symbol is not None:
            return list(self._open_by_symbol.get((venue, symbol), {}).values())
        return [
            o for o in self._open.values()
            if (venue is None or o.venue == venue) and (symbol is None or o.symbol == symbol)
        ]

    def open_count(self, venue: str | None = None, symbol: str | None = None) -> int:
        """How many orders are open (cheap; for the risk checks' hot path)."""
        if venue is None and symbol is None:
            return len(self._open)
        if venue is not None and symbol is not None:
            return len(self._open_by_symbol.get((venue, symbol), ()))
        return len(self.open_orders(venue, symbol))

    def open_orders_view(self, venue: str, symbol: str) -> Mapping[str, Order]:
        """The open orders of one book, without copying (read it, do not keep it)."""
        return self._open_by_symbol.get((venue, symbol), _EMPTY)

    def open_quantity(self, venue: str, symbol: str, side: Side) -> Decimal:
        """Remaining quantity of our open orders on one side of one book."""
        return self._side_summary(venue, symbol, side)[0]

    def most_aggressive(self, venue: str, symbol: str, side: Side) -> Order | None:
        """Our open order on ``side`` that the other side would meet first (market orders first,
        then the highest buy or the lowest sell), or None when there is none."""
        return self._side_summary(venue, symbol, side)[1]

    def _side_summary(self, venue: str, symbol: str, side: Side) -> tuple[Decimal, Order | None]:
        key = (venue, symbol, side)
        found = self._side_cache.get(key)
        if found is not None:
            return found
        total = Decimal(0)
        best: Order | None = None
        for order in self._open_by_symbol.get((venue, symbol), _EMPTY).values():
            if order.side is not side:
                continue
            total += order.remaining_quantity
            if best is None or _more_aggressive(order, best):
                best = order
        found = self._side_cache[key] = (total, best)
        return found

    def counts_by_status(self) -> dict[OrderStatus, int]:
        """How many orders are in each status now (every status present, zeros included)."""
        return dict(self._status_counts)

    # -- applying reports ---------------------------------------------------------------------------

    def apply(self, update: OrderUpdate) -> Order | None:
        """Apply an executor's status report; returns the order, or None when it was not applied.

        Unknown ids and illegal moves are logged and counted in ``problems``; a report made stale by
        fills that arrived first (an ack after a fill) is counted as ``stale_update`` without a
        warning. A repeat of the current status that brings no new fill is a duplicate: counted, and
        the order is returned unchanged.
        """
        order = self.get(update.client_order_id)
        if order is None:
            self._problem("unknown_order", update.client_order_id, status=update.status.value,
                          venue=update.venue, symbol=update.symbol)
            return None
        if update.status is order.status and not (
            update.status is OrderStatus.PARTIALLY_FILLED and update.filled_quantity > order.filled_quantity
        ):
            self.problems["duplicate"] = self.problems.get("duplicate", 0) + 1
            self._merge_details(order, update)
            return order
        if update.status not in LEGAL_TRANSITIONS[order.status]:
            if _is_stale(order, update):
                # The fills got here before this report (status and fills travel separately): no error.
                self.problems["stale_update"] = self.problems.get("stale_update", 0) + 1
                _log.debug("stale order report ignored", client_order_id=order.client_order_id,
                           current=order.status.value, reported=update.status.value)
                return None
            self._problem("illegal_transition", order.client_order_id, current=order.status.value,
                          new=update.status.value, venue=order.venue, symbol=order.symbol)
            return None
        self._set_status(order, update.status, update.ts_ns)
        self._merge_details(order, update)
        return order

    def request_cancel(self, client_order_id: str, ts_ns: int = 0) -> Order | None:
        """Mark an order CANCEL_PENDING because we asked the venue to cancel it; None if it cannot be."""
        order = self._open.get(client_order_id)
        if order is None or OrderStatus.CANCEL_PENDING not in LEGAL_TRANSITIONS[order.status]:
            return None
        self._set_status(order, OrderStatus.CANCEL_PENDING, ts_ns)
        return order

    def on_fill(self, fill: Fill) -> Order | None:
        """Add a fill to its order (quantity, average price) and move it to PARTIALLY_FILLED or FILLED.

        A fill is money that really changed hands, so it is recorded even on an order already in a
        terminal status (a fill that raced a cancel confirmation); the status then stays as it is.
        Fills with a ``fill_id`` seen before on that order are ignored. Returns None for unknown orders.
        """
        order = self.get(fill.client_order_id)
        if order is None:
            self._problem("fill_for_unknown_order", fill.client_order_id, venue=fill.venue,
                          symbol=fill.symbol)
            return None
        if fill.fill_id:
            if fill.fill_id in order.fill_ids:
                self.problems["duplicate_fill"] = self.problems.get("duplicate_fill", 0) + 1
                return order
            order.fill_ids.add(fill.fill_id)
        order.filled_quantity += fill.quantity
        self._side_cache.pop((order.venue, order.symbol, order.side), None)
        order.filled_notional += fill.quantity * fill.price
        if order.filled_quantity > 0:
            order.avg_fill_price = order.filled_notional / order.filled_quantity
        if fill.ts_ns:
            order.updated_ns = fill.ts_ns
        if order.filled_quantity > order.quantity:
            self._problem("overfill", order.client_order_id, quantity=str(order.quantity),
                          filled=str(order.filled_quantity))
        if order.status.is_terminal:
            if order.status is not OrderStatus.FILLED:
                _log.info("fill on a finished order", client_order_id=order.client_order_id,
                          status=order.status.value, quantity=str(fill.quantity))
            return order
        # Every open status may move to PARTIALLY_FILLED (again) or FILLED, so this never refuses.
        done = order.filled_quantity >= order.quantity
        target = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        self._set_status(order, target, fill.ts_ns)
        return order

    # -- internals ----------------------------------------------------------------------------------

    def _set_status(self, order: Order, status: OrderStatus, ts_ns: int) -> None:
        previous = order.status
        order.move_to(status, ts_ns)
        self._status_counts[previous] -= 1
        self._status_counts[status] += 1
        if status.is_terminal:
            self._finish(order)

    def _finish(self, order: Order) -> None:
        coid = order.client_order_id
        self._side_cache.pop((order.venue, order.symbol, order.side), None)
        self._open.pop(coid, None)
        key = (order.venue, order.symbol)
        by_symbol = self._open_by_symbol.get(key)
        if by_symbol is not None:
            by_symbol.pop(coid, None)
            if not by_symbol:
                del self._open_by_symbol[key]
        self._finished[coid] = order
        if order.updated_ns > self._latest_ns:
            self._latest_ns = order.updated_ns
        self._finished_at.append(order.updated_ns)
        finished = self._finished
        if len(finished) > self._max_finished:
            at = self._finished_at
            # Orders finished at an unknown time (0) are kept by count alone.
            horizon = self._latest_ns - self._retention_ns if self._retention_ns else None
            while len(finished) > self._max_finished and (horizon is None or at[0] < horizon or not at[0]):
                finished.popitem(last=False)
                at.popleft()

    def _merge_details(self, order: Order, update: OrderUpdate) -> None:
        # Cumulative fill quantity only grows; the fills themselves carry prices.
        if update.filled_quantity > order.filled_quantity:
            order.filled_quantity = update.filled_quantity
            self._side_cache.pop((order.venue, order.symbol, order.side), None)
        if update.venue_order_id:
            order.venue_order_id = update.venue_order_id
        if update.reason:
            order.reason = update.reason
        if update.ts_ns:
            order.updated_ns = update.ts_ns

    def _problem(self, kind: str, client_order_id: str, **details: str) -> None:
        self.problems[kind] = self.problems.get(kind, 0) + 1
        _log.warning("order report not applied", problem=kind, client_order_id=client_order_id, **details)


_EMPTY: Mapping[str, Order] = {}


def _more_aggressive(order: Order, than: Order) -> bool:
    """Whether ``order`` would meet the other side before ``than`` (same side; market orders first)."""
    if than.price is None:
        return False
    if order.price is None:
        return True
    return order.price > than.price if order.side is Side.BUY else order.price < than.price
_FILL_STATUSES = frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED})
_PRE_FILL_STATUSES = frozenset({OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED})


def _is_stale(order: Order, update: OrderUpdate) -> bool:
    """A report older than fills already applied (an ack or partial fill seen after later fills)."""
    return (
        order.status in _FILL_STATUSES
        and update.status in _PRE_FILL_STATUSES
        and update.filled_quantity <= order.filled_quantity
    )

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_RUN_ID_WIDTH = 10  # base-36 microseconds since the epoch: 10 digits last until the year 2085


def _base36(n: int, width: int = 0) -> str:
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_BASE36[r])
    text = "".join(reversed(digits)) or "0"
    return text.rjust(width, "0")


class ClientOrderIds:
    """Makes client order ids that stay unique across restarts: ``<prefix>-<run id>-<counter>``.

    The run id is the start time in microseconds, base 36, fixed width (a restart takes far longer
    than a microsecond, so two runs never share one); the counter counts up within the run, from
    ``start_counter + 1`` (an engine that recovered a journal may continue its counter, though the
    run id alone already keeps ids apart). With a simulated clock the ids repeat exactly between
    replays, which keeps replays deterministic; without a clock the wall clock is read once.

    Ids use only ``[A-Za-z0-9_-]`` and stay within ``max_length`` (36, Binance's limit); pass
    ``separator=""`` and ``max_length=32`` for venues that take letters and digits only (OKX).
    """

    def __init__(self, clock: Clock | None = None, *, prefix: str = "bf", separator: str = "-",
                 max_length: int = 36, run_id: str | None = None, start_counter: int = 0) -> None:
        if not re.fullmatch(r"[A-Za-z0-9]{0,8}", prefix):
            raise ValueError(f"client order id prefix {prefix!r} must be at most 8 letters or digits")
        if separator not in ("", "-", "_"):
            raise ValueError(f"client order id separator {separator!r} must be '', '-' or '_'")
        if start_counter < 0:
            raise ValueError("start_counter must be >= 0")
        if run_id is None:
            now_ns = clock.time_ns() if clock is not None else time.time_ns()
            run_id = _base36(now_ns // 1_000, _RUN_ID_WIDTH)
        if not re.fullmatch(r"[A-Za-z0-9]{1,16}", run_id):
            raise ValueError(f"run id {run_id!r} must be 1 to 16 letters or digits")
        self.prefix = prefix
        self.separator = separator
        self.run_id = run_id
        self._lead = f"{prefix}{separator}" if prefix else ""
        self._head = f"{self._lead}{run_id}{separator}"
        self._max_counter_digits = max_length - len(self._head)
        if self._max_counter_digits < 6:
            raise ValueError(f"max_length {max_length} leaves too little room for the counter")
        self._counter = start_counter

    @property
    def issued(self) -> int:
        """The last counter value used (``start_counter`` before the first id)."""
        return self._counter

    def next(self) -> str:
        """A new id, never returned before by this or an earlier run."""
        self._counter += 1
        tail = _base36(self._counter)
        if len(tail) > self._max_counter_digits:
            raise OverflowError("client order id counter exhausted for this run id")
        return self._head + tail

    def __call__(self) -> str:
        return self.next()

    def owns(self, client_order_id: str) -> bool:
        """Whether an id was made by this run (for reconciling a venue's open orders after a restart)."""
        return client_order_id.startswith(self._head)

    def counter_of(self, client_order_id: str) -> int | None:
        """The counter inside an id made by this run or an earlier one with the same shape, else None."""
        if not client_order_id.startswith(self._lead):
            return None
        rest = client_order_id[len(self._lead):]
        if self.separator:
            run, sep, tail = rest.partition(self.separator)
            if not sep or not run:
                return None
        else:
            if len(rest) <= len(self.run_id):
                return None
            tail = rest[len(self.run_id):]
        if not tail or not tail.isalnum() or not tail.isascii():
            return None
        return int(tail.lower(), 36)
