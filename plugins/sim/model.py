"""A seeded stochastic order-flow model: the true L2 books the simulator serves.

Each symbol's book lives on an integer grid (prices in ticks, sizes in lots) and evolves by three
kinds of events, after Cont, Stoikov and Talreja (2010), "A stochastic model for order book dynamics":

* limit orders arrive at distance ``d`` ticks from the opposite best price with rate
  ``limit_rate * d ** -limit_decay`` per side (a buy at distance 1 sits one tick below the best ask);
* each resting order is cancelled with rate ``cancel_rate * d ** -cancel_decay``; cancels fall off
  faster than arrivals, so the expected queue ``lambda(d) / theta(d)`` grows away from the touch;
* market orders arrive with rate ``market_rate`` per side and walk the opposite side.

Sizes are exponential in notional. A limit order never crosses (its price is measured from the
opposite best), so the true book is never crossed; the spread is a few ticks because arrivals are
densest next to the opposite side, and the price drifts as queues at the touch are eaten.

Time is discrete: :meth:`MarketModel.step` advances one update interval and returns what changed,
with Binance-style update ids (one id per event; a step's ids are ``U..u`` and ``U == prev_u + 1``).
The model never reads the wall clock, so the same seed gives the same stream every run. Each symbol
draws from its own random stream (seeded by the model seed and the symbol), so adding a symbol does
not change the others.

Orders from outside the model (the simulator's trading API) live in the same book. A level that holds
one keeps a FIFO queue of segments, model lots and outside orders in arrival order: the model's market
orders eat it from the front (an outside order there is filled as a maker, reported in
:attr:`SymbolModel.own_fills`), the model's arrivals join the back, and the model's cancels take model
lots only, from the back (the newest lots), never an outside order. Outside orders change the book
between steps: each change takes the next update id at once and is published with the next step, so
the public stream keeps Binance's rule ``U == previous u + 1`` and a REST snapshot is always
consistent with it. With no outside orders the model draws exactly what it drew before.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from botframe.events import Side

__all__ = [
    "DEFAULT_START_NS",
    "BookState",
    "FixedPoint",
    "FlowParams",
    "HistoryTooShortError",
    "MarketModel",
    "MarketStep",
    "OwnFill",
    "SimTrade",
    "SymbolModel",
    "SymbolSpec",
    "SymbolStep",
    "TakeResult",
    "decimals_of",
]

#: Simulated time of step 0 when no timestamp is given: 2023-11-14T22:13:20Z.
DEFAULT_START_NS = 1_700_000_000_000_000_000

_LIMIT_BUY, _LIMIT_SELL, _MARKET_BUY, _MARKET_SELL, _CANCEL = range(5)


def decimals_of(step: Decimal) -> int:
    """How many decimal places ``step`` needs (``0.01`` -> 2, ``5`` -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite decimals only; settings reject NaN/inf via gt=0
    return max(0, -exponent)


class FixedPoint:
    """Exact text of ``n * step`` with a fixed number of decimals, by integer arithmetic (no floats)."""

    __slots__ = ("_step_units", "decimals")

    def __init__(self, step: Decimal, decimals: int) -> None:
        if decimals < decimals_of(step):
            raise ValueError(f"{decimals} decimals cannot show a step of {step}")
        self.decimals = decimals
        self._step_units = int(step.scaleb(decimals))

    def text(self, n: int) -> str:
        units = n * self._step_units
        d = self.decimals
        if d == 0:
            return str(units)
        digits = str(units)
        if len(digits) <= d:
            digits = "0" * (d + 1 - len(digits)) + digits
        return f"{digits[:-d]}.{digits[-d:]}"


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One simulated instrument's rules. Prices and sizes elsewhere in the model are ticks and lots."""

    symbol: str  # unified "BASE/QUOTE"
    start_price: Decimal
    tick_size: Decimal
    lot_size: Decimal
    min_notional: Decimal = Decimal(0)
    venue: str = "binance"

    @property
    def base(self) -> str:
        return self.symbol.partition("/")[0]

    @property
    def quote(self) -> str:
        return self.symbol.partition("/")[2]

    @property
    def price_decimals(self) -> int:
        return decimals_of(self.tick_size)

    @property
    def qty_decimals(self) -> int:
        return decimals_of(self.lot_size)

    def price(self, ticks: int) -> Decimal:
        return self.tick_size * ticks

    def qty(self, lots: int) -> Decimal:
        return self.lot_size * lots


@dataclass(frozen=True, slots=True)
class FlowParams:
    """Order-flow intensities; see the module docstring and :class:`~.config.FlowSettings`."""

    limit_rate_per_sec: float = 1.0
    limit_decay_exponent: float = 0.52
    cancel_rate_per_sec: float = 1.0
    cancel_decay_exponent: float = 0.8
    market_rate_per_sec: float = 2.0
    window_ticks: int = 40
    max_distance_ticks: int = 120
    mean_order_notional: float = 2000.0
    mean_market_notional: float = 3000.0


@dataclass(frozen=True, slots=True)
class SimTrade:
    """One execution at one price level; ``aggressor`` is the side of the market order."""

    trade_id: int
    price_ticks: int
    qty_lots: int
    aggressor: Side


@dataclass(frozen=True, slots=True)
class SymbolStep:
    """What one step changed in one symbol: absolute new sizes (0 = deleted) and the trades.

    ``bids`` are sorted best first (price descending), ``asks`` best first (ascending). A step that
    changed no level has ``first_update_id > last_update_id`` and empty sides.
    """

    venue: str
    symbol: str
    first_update_id: int  # Binance's U
    last_update_id: int  # Binance's u
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]
    trades: list[SimTrade]

    @property
    def has_book_changes(self) -> bool:
        return self.last_update_id >= self.first_update_id


@dataclass(frozen=True, slots=True)
class MarketStep:
    """One update interval of every symbol; ``symbols`` holds only symbols with changes or trades."""

    index: int
    ts_ns: int
    symbols: list[SymbolStep]


@dataclass(frozen=True, slots=True)
class BookState:
    """A copy of a true book at one update id: bids best first (descending), asks best first."""

    update_id: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]


@dataclass(frozen=True, slots=True)
class OwnFill:
    """An outside order (``key``) filled as a maker at ``price_ticks`` by ``qty_lots``; ``trade_id`` is public."""

    key: int
    price_ticks: int
    qty_lots: int
    trade_id: int


@dataclass(slots=True)
class TakeResult:
    """What an outside taking order did: ``(price, lots, maker key or None, trade id)`` per match, in order.

    ``expired_makers`` are outside resting orders that self-trade prevention removed (their keys).
    """

    fills: list[tuple[int, int, int | None, int]] = field(default_factory=list)
    expired_makers: list[int] = field(default_factory=list)

    @property
    def lots(self) -> int:
        return sum(f[1] for f in self.fills)


class HistoryTooShortError(LookupError):
    """The requested update id is older than the bounded history the model keeps."""


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0.0:
        return 0
    if lam > 30.0:
        # Knuth's product method needs ~lam draws; a normal approximation is close enough here.
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class SymbolModel:
    """The true book of one symbol and its order flow; driven by :class:`MarketModel`."""

    def __init__(
        self,
        spec: SymbolSpec,
        flow: FlowParams,
        rng: random.Random,
        *,
        history_updates: int = 200_000,
    ) -> None:
        self.spec = spec
        self.flow = flow
        self._rng = rng
        start_ticks = int((spec.start_price / spec.tick_size).to_integral_value())
        if start_ticks <= flow.max_distance_ticks + 2:
            raise ValueError(f"{spec.symbol}: start_price is too few ticks above 0 for the flow window")
        self._start_ticks = start_ticks
        price = float(spec.start_price)
        lot = float(spec.lot_size)
        self._mean_order_lots = max(1.0, flow.mean_order_notional / price / lot)
        self._mean_market_lots = max(1.0, flow.mean_market_notional / price / lot)
        window = flow.window_ticks
        arrivals = [flow.limit_rate_per_sec * d**-flow.limit_decay_exponent for d in range(1, window + 1)]
        self._limit_total = sum(arrivals)
        self._limit_cum: list[float] = []
        acc = 0.0
        for a in arrivals:
            acc += a
            self._limit_cum.append(acc)
        # Cancel intensity per lot at each distance (index = distance), up to the far cut-off.
        self._cancel_per_lot = [0.0] + [
            flow.cancel_rate_per_sec * d**-flow.cancel_decay_exponent / self._mean_order_lots
            for d in range(1, flow.max_distance_ticks + 1)
        ]
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_prices: list[int] = []  # ascending; best bid is the last
        self._ask_prices: list[int] = []  # ascending; best ask is the first
        self.last_update_id = 1_000_000_000 + rng.randrange(1_000_000_000)
        self.last_trade_id = rng.randrange(1_000_000, 10_000_000)
        self.last_trade_ticks = start_ticks
        self._history: deque[tuple[int, bool, int, int]] = deque()  # (update id, is bid, price, old size)
        self._history_max = history_updates
        self._history_floor = self.last_update_id
        # Outside orders: FIFO segments [key or None (model lots), lots] per level that holds one.
        self._queues: dict[tuple[bool, int], deque[list[int | None]]] = {}
        self._own_lots: dict[tuple[bool, int], int] = {}
        #: Maker fills of outside orders made by the model's market orders; the trading venue drains it.
        self.own_fills: list[OwnFill] = []
        # Changes made between steps (outside orders), published with the next step.
        self._pending_first: int | None = None
        self._pending_bids: set[int] = set()
        self._pending_asks: set[int] = set()
        self._pending_trades: list[SimTrade] = []
        self._seed_book()

    # -- reading ---------------------------------------------------------------------------------------

    def best_bid(self) -> int | None:
        return self._bid_prices[-1] if self._bid_prices else None

    def best_ask(self) -> int | None:
        return self._ask_prices[0] if self._ask_prices else None

    def top_bids(self, n: int) -> list[tuple[int, int]]:
        prices = self._bid_prices
        bids = self.bids
        return [(p, bids[p]) for p in prices[: -n - 1 if n < len(prices) else None : -1]]

    def top_asks(self, n: int) -> list[tuple[int, int]]:
        asks = self.asks
        return [(p, asks[p]) for p in self._ask_prices[:n]]

    def state(self) -> BookState:
        """The current true book (a copy)."""
        return BookState(self.last_update_id, self.top_bids(len(self.bids)), self.top_asks(len(self.asks)))

    @property
    def oldest_update_id(self) -> int:
        """The oldest update id :meth:`book_at` can still rebuild."""
        return self._history_floor

    def book_at(self, update_id: int) -> BookState:
        """The true book as it was right after update ``update_id`` (any id, not only step ends)."""
        if update_id > self.last_update_id:
            raise LookupError(
                f"{self.spec.symbol}: update id {update_id} is in the future (last is {self.last_update_id})"
            )
        if update_id < self._history_floor:
            raise HistoryTooShortError(
                f"{self.spec.symbol}: update id {update_id} is older than the "
                f"kept history (oldest {self._history_floor})"
            )
        bids = dict(self.bids)
        asks = dict(self.asks)
        for uid, is_bid, price, old in reversed(self._history):
            if uid <= update_id:
                break
            side = bids if is_bid else asks
            if old:
                side[price] = old
            else:
                side.pop(price, None)
        return BookState(
            update_id,
            sorted(bids.items(), reverse=True),
            sorted(asks.items()),
        )

    # -- evolving --------------------------------------------------------------------------------------

    def _seed_book(self) -> None:
        """Fill the book near its expected stationary profile, so the first steps already look real."""
        rng = self._rng
        flow = self.flow
        mid = self._start_ticks
        for d in range(1, flow.window_ticks + 1):
            # Distance from the opposite best is d + 1 for a book two ticks wide around the start.
            dist = d + 1
            lam = flow.limit_rate_per_sec * dist**-flow.limit_decay_exponent
            theta = flow.cancel_rate_per_sec * dist**-flow.cancel_decay_exponent
            expected_orders = lam / theta if theta > 0 else 1.0
            for is_bid in (True, False):
                lots = int(expected_orders * self._mean_order_lots * rng.uniform(0.5, 1.5)) + 1
                price = mid - d if is_bid else mid + d
                (self.bids if is_bid else self.asks)[price] = lots
        self._bid_prices = sorted(self.bids)
        self._ask_prices = sorted(self.asks)

    def _set(self, is_bid: bool, price: int, lots: int, update_id: int) -> None:
        book = self.bids if is_bid else self.asks
        old = book.get(price, 0)
        if lots > 0:
            book[price] = lots
            if not old:
                insort(self._bid_prices if is_bid else self._ask_prices, price)
        elif old:
            del book[price]
            prices = self._bid_prices if is_bid else self._ask_prices
            del prices[bisect_left(prices, price)]
        history = self._history
        if len(history) >= self._history_max:
            self._history_floor = history.popleft()[0]
        history.append((update_id, is_bid, price, old))

    def _order_lots(self, mean: float) -> int:
        return int(self._rng.expovariate(1.0 / mean)) + 1

    def _cancel_candidates(self) -> tuple[list[tuple[bool, int]], list[float]]:
        cands: list[tuple[bool, int]] = []
        cum: list[float] = []
        total = 0.0
        per_lot = self._cancel_per_lot
        max_d = self.flow.max_distance_ticks
        bid_prices, ask_prices = self._bid_prices, self._ask_prices
        if bid_prices:
            ref = ask_prices[0] if ask_prices else bid_prices[-1] + 1
            bids = self.bids
            for p in reversed(bid_prices):
                d = ref - p
                if d > max_d:
                    break
                total += per_lot[d] * bids[p]
                cands.append((True, p))
                cum.append(total)
        if ask_prices:
            ref = bid_prices[-1] if bid_prices else ask_prices[0] - 1
            asks = self.asks
            for p in ask_prices:
                d = p - ref
                if d > max_d:
                    break
                total += per_lot[d] * asks[p]
                cands.append((False, p))
                cum.append(total)
        return cands, cum

    def step(self, dt_secs: float) -> SymbolStep:
        """Advance ``dt_secs`` of simulated time; return the changed levels and the trades."""
        rng = self._rng
        flow = self.flow
        first_id = self._pending_first if self._pending_first is not None else self.last_update_id + 1
        uid = self.last_update_id
        cands, cum = self._cancel_candidates()
        cancel_total = cum[-1] if cum else 0.0
        limit_lam = self._limit_total * dt_secs
        market_lam = flow.market_rate_per_sec * dt_secs
        events = (
            [_LIMIT_BUY] * _poisson(rng, limit_lam)
            + [_LIMIT_SELL] * _poisson(rng, limit_lam)
            + [_MARKET_BUY] * _poisson(rng, market_lam)
            + [_MARKET_SELL] * _poisson(rng, market_lam)
            + [_CANCEL] * _poisson(rng, cancel_total * dt_secs)
        )
        rng.shuffle(events)
        touched_bids: set[int] = self._pending_bids
        touched_asks: set[int] = self._pending_asks
        trades: list[SimTrade] = self._pending_trades
        self._pending_first = None
        self._pending_bids, self._pending_asks, self._pending_trades = set(), set(), []
        queues = self._queues
        bids, asks = self.bids, self.asks
        bid_prices, ask_prices = self._bid_prices, self._ask_prices
        limit_cum = self._limit_cum
        for ev in events:
            if ev in (_LIMIT_BUY, _LIMIT_SELL):
                d = bisect_right(limit_cum, rng.random() * self._limit_total) + 1
                if d > flow.window_ticks:  # float edge of the draw
                    d = flow.window_ticks
                lots = self._order_lots(self._mean_order_lots)
                uid += 1
                if ev == _LIMIT_BUY:
                    ref = (
                        ask_prices[0]
                        if ask_prices
                        else (bid_prices[-1] + 1 if bid_prices else self.last_trade_ticks + 1)
                    )
                    price = ref - d
                    self._set(True, price, bids.get(price, 0) + lots, uid)
                    if queues:
                        self._join_back(True, price, lots)
                    touched_bids.add(price)
                else:
                    ref = (
                        bid_prices[-1]
                        if bid_prices
                        else (ask_prices[0] - 1 if ask_prices else self.last_trade_ticks - 1)
                    )
                    price = ref + d
                    self._set(False, price, asks.get(price, 0) + lots, uid)
                    if queues:
                        self._join_back(False, price, lots)
                    touched_asks.add(price)
            elif ev == _CANCEL:
                if not cands:
                    continue
                idx = bisect_right(cum, rng.random() * cancel_total)
                if idx >= len(cands):
                    idx = len(cands) - 1
                is_bid, price = cands[idx]
                book = bids if is_bid else asks
                have = book.get(price, 0)
                if not have:
                    continue  # already gone this step (eaten or cancelled)
                lots = self._order_lots(self._mean_order_lots)
                if queues and (is_bid, price) in queues:
                    lots = self._cancel_model_lots(is_bid, price, lots)
                    if not lots:
                        continue  # only outside orders left here: the model cancels none of them
                uid += 1
                self._set(is_bid, price, max(0, have - lots), uid)
                (touched_bids if is_bid else touched_asks).add(price)
            else:
                is_buy = ev == _MARKET_BUY
                prices = ask_prices if is_buy else bid_prices
                if not prices:
                    continue
                book = asks if is_buy else bids
                touched = touched_asks if is_buy else touched_bids
                remaining = self._order_lots(self._mean_market_lots)
                uid += 1
                aggressor = Side.BUY if is_buy else Side.SELL
                while remaining and prices:
                    price = prices[0] if is_buy else prices[-1]
                    have = book[price]
                    take = have if have < remaining else remaining
                    remaining -= take
                    self._set(not is_buy, price, have - take, uid)
                    touched.add(price)
                    self.last_trade_id += 1
                    trades.append(SimTrade(self.last_trade_id, price, take, aggressor))
                    self.last_trade_ticks = price
                    if queues and (not is_buy, price) in queues:
                        for key, lots in self._eat_front(not is_buy, price, take):
                            if key is not None:
                                self.own_fills.append(OwnFill(key, price, lots, self.last_trade_id))
        uid = self._trim_far_levels(uid, touched_bids, touched_asks)
        self.last_update_id = uid
        return SymbolStep(
            self.spec.venue,
            self.spec.symbol,
            first_id,
            uid,
            [(p, bids.get(p, 0)) for p in sorted(touched_bids, reverse=True)],
            [(p, asks.get(p, 0)) for p in sorted(touched_asks)],
            trades,
        )

    def _trim_far_levels(self, uid: int, touched_bids: set[int], touched_asks: set[int]) -> int:
        """Delete levels beyond ``max_distance_ticks`` of the opposite best (they left the model's view)."""
        bid_prices, ask_prices = self._bid_prices, self._ask_prices
        max_d = self.flow.max_distance_ticks
        if ask_prices:
            floor = ask_prices[0] - max_d
            i = 0
            while i < len(bid_prices) and bid_prices[i] < floor:
                price = bid_prices[i]
                own = self._own_lots.get((True, price), 0)
                if own and self.bids[price] == own:
                    i += 1  # only outside orders left: they stay, whatever the distance
                    continue
                uid += 1
                if own:
                    self._queues[(True, price)] = deque([[k, n] for k, n in self._queues[(True, price)]
                                                          if k is not None])
                    i += 1
                self._set(True, price, own, uid)
                touched_bids.add(price)
        if bid_prices:
            ceiling = bid_prices[-1] + max_d
            i = len(ask_prices) - 1
            while i >= 0 and ask_prices[i] > ceiling:
                price = ask_prices[i]
                own = self._own_lots.get((False, price), 0)
                i -= 1
                if own and self.asks[price] == own:
                    continue
                uid += 1
                if own:
                    self._queues[(False, price)] = deque([[k, n] for k, n in self._queues[(False, price)]
                                                           if k is not None])
                self._set(False, price, own, uid)
                touched_asks.add(price)
        return uid

    # -- outside orders (the trading API) --------------------------------------------------------------

    def own_lots_at(self, is_bid: bool, price: int) -> int:
        """Lots of outside orders resting at a level."""
        return self._own_lots.get((is_bid, price), 0)

    def _next_uid(self, is_bid: bool, price: int) -> int:
        self.last_update_id += 1
        if self._pending_first is None:
            self._pending_first = self.last_update_id
        (self._pending_bids if is_bid else self._pending_asks).add(price)
        return self.last_update_id

    def _queue(self, is_bid: bool, price: int) -> deque[list[int | None]]:
        key = (is_bid, price)
        queue = self._queues.get(key)
        if queue is None:
            have = (self.bids if is_bid else self.asks).get(price, 0)
            queue = self._queues[key] = deque([[None, have]] if have else [])
        return queue

    def _join_back(self, is_bid: bool, price: int, lots: int) -> None:
        queue = self._queues.get((is_bid, price))
        if queue is None:
            return
        if queue and queue[-1][0] is None:
            queue[-1][1] = int(queue[-1][1] or 0) + lots
        else:
            queue.append([None, lots])

    def _cancel_model_lots(self, is_bid: bool, price: int, lots: int) -> int:
        """Take up to ``lots`` model lots from the back of a queued level; how many were taken."""
        queue = self._queues[(is_bid, price)]
        taken = 0
        for seg in reversed(queue):
            if taken >= lots:
                break
            if seg[0] is None:
                n = min(int(seg[1] or 0), lots - taken)
                seg[1] = int(seg[1] or 0) - n
                taken += n
        self._queues[(is_bid, price)] = deque(seg for seg in queue if seg[1])
        return taken

    def _eat_front(self, is_bid: bool, price: int, lots: int) -> list[tuple[int | None, int]]:
        """Consume ``lots`` from the front of a queued level; ``(key or None, lots)`` per segment eaten."""
        key = (is_bid, price)
        queue = self._queues[key]
        eaten: list[tuple[int | None, int]] = []
        while lots and queue:
            seg = queue[0]
            n = min(int(seg[1] or 0), lots)
            seg[1] = int(seg[1] or 0) - n
            lots -= n
            owner = seg[0]
            eaten.append((owner, n))
            if owner is not None:
                self._own_lots[key] -= n
            if not seg[1]:
                queue.popleft()
        self._drop_queue_if_model_only(key)
        return eaten

    def _drop_queue_if_model_only(self, key: tuple[bool, int]) -> None:
        if not self._own_lots.get(key):
            self._own_lots.pop(key, None)
            self._queues.pop(key, None)

    def rest_own(self, is_bid: bool, price: int, lots: int, key: int) -> int:
        """Rest an outside order at the back of its level (between steps); returns its update id."""
        queue = self._queue(is_bid, price)
        queue.append([key, lots])
        self._own_lots[(is_bid, price)] = self._own_lots.get((is_bid, price), 0) + lots
        uid = self._next_uid(is_bid, price)
        book = self.bids if is_bid else self.asks
        self._set(is_bid, price, book.get(price, 0) + lots, uid)
        return uid

    def cancel_own(self, is_bid: bool, price: int, key: int) -> int:
        """Remove an outside order from its level (between steps); returns the lots it still had."""
        lvl = (is_bid, price)
        queue = self._queues.get(lvl)
        if queue is None:
            return 0
        lots = 0
        for seg in queue:
            if seg[0] == key:
                lots = int(seg[1] or 0)
                break
        if not lots:
            return 0
        self._queues[lvl] = deque(seg for seg in queue if seg[0] != key)
        self._own_lots[lvl] -= lots
        self._drop_queue_if_model_only(lvl)
        uid = self._next_uid(is_bid, price)
        book = self.bids if is_bid else self.asks
        self._set(is_bid, price, book.get(price, 0) - lots, uid)
        return lots

    def available(self, is_buy: bool, limit_ticks: int | None, skip: Callable[[int], bool] | None = None) -> int:
        """Lots an outside order could take now up to ``limit_ticks`` (all of the side when None).

        Outside orders for which ``skip(key)`` is true (self-trade prevention) are not counted.
        """
        prices = self._ask_prices if is_buy else list(reversed(self._bid_prices))
        book = self.asks if is_buy else self.bids
        total = 0
        for p in prices:
            if limit_ticks is not None and (p > limit_ticks if is_buy else p < limit_ticks):
                break
            total += book[p]
            queue = self._queues.get((not is_buy, p))
            if queue is not None and skip is not None:
                total -= sum(int(seg[1] or 0) for seg in queue if seg[0] is not None and skip(seg[0]))
        return total

    def take(self, is_buy: bool, lots: int, limit_ticks: int | None,
             expire_maker: Callable[[int], bool] | None = None) -> TakeResult:
        """An outside order takes up to ``lots`` from the opposite side, up to ``limit_ticks`` (between steps).

        Resting outside orders are matched in their queue place; those for which ``expire_maker(key)``
        is true are removed instead (self-trade prevention, Binance's EXPIRE_MAKER). Every match is a
        public trade published with the next step.
        """
        result = TakeResult()
        aggressor = Side.BUY if is_buy else Side.SELL
        maker_is_bid = not is_buy
        book = self.bids if maker_is_bid else self.asks
        prices = self._bid_prices if maker_is_bid else self._ask_prices
        while lots and prices:
            price = prices[-1] if maker_is_bid else prices[0]
            if limit_ticks is not None and (price > limit_ticks if is_buy else price < limit_ticks):
                break
            lvl = (maker_is_bid, price)
            if lvl in self._queues and expire_maker is not None:
                for seg in list(self._queues[lvl]):
                    seg_key = seg[0]
                    if seg_key is not None and expire_maker(seg_key):
                        self.cancel_own(maker_is_bid, price, seg_key)
                        result.expired_makers.append(seg_key)
                if not book.get(price):
                    continue
            have = book[price]
            n = min(have, lots)
            lots -= n
            uid = self._next_uid(maker_is_bid, price)
            self._set(maker_is_bid, price, have - n, uid)
            if lvl in self._queues:
                for key, eaten in self._eat_front(maker_is_bid, price, n):
                    self.last_trade_id += 1
                    self._pending_trades.append(SimTrade(self.last_trade_id, price, eaten, aggressor))
                    result.fills.append((price, eaten, key, self.last_trade_id))
            else:
                self.last_trade_id += 1
                self._pending_trades.append(SimTrade(self.last_trade_id, price, n, aggressor))
                result.fills.append((price, n, None, self.last_trade_id))
            self.last_trade_ticks = price
        return result


@dataclass(slots=True)
class MarketModel:
    """Every simulated symbol, stepped together one update interval at a time."""

    specs: Sequence[SymbolSpec]
    seed: int = 42
    update_interval_ms: int = 100
    flows: Sequence[FlowParams] | None = None  # one per spec; default FlowParams() for all
    start_ns: int = DEFAULT_START_NS
    history_updates: int = 200_000
    index: int = field(default=0, init=False)
    ts_ns: int = field(default=0, init=False)
    _models: dict[tuple[str, str], SymbolModel] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        flows = list(self.flows) if self.flows is not None else [FlowParams()] * len(self.specs)
        if len(flows) != len(self.specs):
            raise ValueError("flows must give one FlowParams per spec")
        for spec, flow in zip(self.specs, flows, strict=True):
            key = (spec.venue, spec.symbol)
            if key in self._models:
                raise ValueError(f"{spec.venue} {spec.symbol} is listed twice")
            rng = random.Random(f"{self.seed}/{spec.venue}/{spec.symbol}")
            self._models[key] = SymbolModel(spec, flow, rng, history_updates=self.history_updates)
        self.ts_ns = self.start_ns

    def __getitem__(self, key: tuple[str, str]) -> SymbolModel:
        return self._models[key]

    def symbol(self, symbol: str, venue: str = "binance") -> SymbolModel:
        return self._models[(venue, symbol)]

    def models(self, venue: str | None = None) -> Iterable[SymbolModel]:
        return [m for (v, _), m in self._models.items() if venue is None or v == venue]

    def step(self, ts_ns: int | None = None) -> MarketStep:
        """Advance one update interval; stamp it ``ts_ns`` (default: the model's own simulated time)."""
        self.index += 1
        self.ts_ns = ts_ns if ts_ns is not None else self.ts_ns + self.update_interval_ms * 1_000_000
        dt = self.update_interval_ms / 1000.0
        out: list[SymbolStep] = []
        for m in self._models.values():
            st = m.step(dt)
            if st.has_book_changes or st.trades:
                out.append(st)
        return MarketStep(self.index, self.ts_ns, out)
