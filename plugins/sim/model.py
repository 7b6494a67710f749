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
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterable, Sequence
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
    "SimTrade",
    "SymbolModel",
    "SymbolSpec",
    "SymbolStep",
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
        first_id = self.last_update_id + 1
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
        touched_bids: set[int] = set()
        touched_asks: set[int] = set()
        trades: list[SimTrade] = []
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
                    touched_bids.add(price)
                else:
                    ref = (
                        bid_prices[-1]
                        if bid_prices
                        else (ask_prices[0] - 1 if ask_prices else self.last_trade_ticks - 1)
                    )
                    price = ref + d
                    self._set(False, price, asks.get(price, 0) + lots, uid)
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
            while bid_prices and bid_prices[0] < floor:
                uid += 1
                price = bid_prices[0]
                self._set(True, price, 0, uid)
                touched_bids.add(price)
        if bid_prices:
            ceiling = bid_prices[-1] + max_d
            while ask_prices and ask_prices[-1] > ceiling:
                uid += 1
                price = ask_prices[-1]
                self._set(False, price, 0, uid)
                touched_asks.add(price)
        return uid


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
