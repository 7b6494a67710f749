"""Order-book signals of one book: specs that strategies declare, and the set that keeps them current.

A strategy names the signals it wants as frozen, hashable specs (``Imbalance(levels=5)``); each has a
stable ``name`` (``"imbalance_5"``) under which its value is read. The engine keeps one ``SignalSet``
per book with the union of its readers' specs, and calls ``on_snapshot`` / ``on_delta`` right after the
book applied the event and ``on_trade`` for the symbol's public trades.

Cost: an event costs O(1) here whatever the book size. Signals of the book's current shape (imbalance,
weighted imbalance, depth bands, microprice, spread) are computed when first read after an event and
cached until the next one, from the book's sorted top levels, so a read costs the levels it looks at
(the top ``N``, or the levels inside a bps band), never the whole book. Signals of the event stream
(order-flow imbalance, trade-flow imbalance) are folded in on every event in O(1) amortized: a rolling
window keeps its terms and a running sum, re-summed exactly once per window length so float rounding
cannot drift.

Undefined values are ``None``: every signal of the book's shape is None while either side is empty
(a one-sided book is a broken feed, not a signal), a ratio is None when its denominator is 0.

Time windows use event time: the event's ``exchange_ts_ns``, or its ``receive_ts_ns`` when the venue
sends none, never allowed to go backwards. Replays therefore give the same values as live runs.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import mul, neg
from typing import Literal

from .book import L2Book
from .events import BookDelta, BookSnapshot, Side, SignalUpdate, Trade

__all__ = [
    "Depth",
    "DepthMeasure",
    "Imbalance",
    "Microprice",
    "OrderFlowImbalance",
    "SignalSet",
    "SignalSpec",
    "Spread",
    "TradeFlowImbalance",
    "WeightedImbalance",
]

DepthMeasure = Literal["bid_qty", "ask_qty", "bid_notional", "ask_notional", "ratio"]
_DEPTH_MEASURES = ("bid_qty", "ask_qty", "bid_notional", "ask_notional", "ratio")


def _fmt(x: float) -> str:
    """A number as it appears in a signal name: ``10.0`` -> ``10``, ``2.5`` -> ``2.5``."""
    return f"{x:g}"


@dataclass(frozen=True, slots=True)
class Imbalance:
    """Order-book imbalance over the top ``levels`` of each side, unitless, in [-1, 1].

    ``I = (Qb - Qa) / (Qb + Qa)`` where ``Qb``/``Qa`` sum the sizes of the best ``levels`` bids/asks
    (the depth imbalance of e.g. Cartea, Jaimungal and Penalva, *Algorithmic and High-Frequency
    Trading*, 2015, ch. 4). Positive means more resting buying interest. Name ``imbalance_<levels>``.
    """

    levels: int = 5

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"Imbalance.levels must be >= 1, got {self.levels}")

    @property
    def name(self) -> str:
        return f"imbalance_{self.levels}"


@dataclass(frozen=True, slots=True)
class WeightedImbalance:
    """Distance-weighted order-book imbalance over the top ``levels``, unitless, in [-1, 1].

    ``I = (sum w_i qb_i - sum w_j qa_j) / (sum w_i qb_i + sum w_j qa_j)`` with weights that decay with
    the distance of the level from the touch: ``mode="level"``: ``w = decay ** k`` for the ``k``-th
    level (0 at the touch); ``mode="bps"``: ``w = decay ** d`` with ``d`` the level's distance from mid
    in basis points. ``0 < decay <= 1`` (1 gives the plain imbalance). This is the exponentially
    weighted multi-level imbalance used e.g. by Cao, Chen and Griffin (2009) and in the order-book
    literature since. Name ``wimbalance_<levels>_<mode>_<decay>``.
    """

    levels: int = 10
    decay: float = 0.5
    mode: Literal["level", "bps"] = "level"

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"WeightedImbalance.levels must be >= 1, got {self.levels}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"WeightedImbalance.decay must be in (0, 1], got {self.decay}")
        if self.mode not in ("level", "bps"):
            raise ValueError(f"WeightedImbalance.mode must be 'level' or 'bps', got {self.mode!r}")

    @property
    def name(self) -> str:
        return f"wimbalance_{self.levels}_{self.mode}_{_fmt(self.decay)}"


@dataclass(frozen=True, slots=True)
class Microprice:
    """Size-weighted mid price, in quote currency per unit.

    ``P = (Pb * Qa + Pa * Qb) / (Qa + Qb)`` with ``Pb, Qb`` / ``Pa, Qa`` the best bid / ask price and
    size: the mid moved toward the side more likely to be hit next. This is the "weighted mid-price"
    that Stoikov (2018, *The micro-price: a high-frequency estimator of future prices*) starts from
    and that trading code commonly calls the microprice; it is not his Markov-chain limit. Name
    ``microprice``.
    """

    @property
    def name(self) -> str:
        return "microprice"


@dataclass(frozen=True, slots=True)
class Spread:
    """Best ask minus best bid, in basis points of mid (``unit="bps"``) or in ticks (``unit="ticks"``).

    ``bps = (Pa - Pb) / mid * 1e4``; ``ticks = (Pa - Pb) / tick_size`` (``tick_size`` required for
    ticks: the book does not know the instrument). Negative on a crossed book. Name ``spread_bps`` or
    ``spread_ticks``.
    """

    unit: Literal["bps", "ticks"] = "bps"
    tick_size: float | None = None

    def __post_init__(self) -> None:
        if self.unit not in ("bps", "ticks"):
            raise ValueError(f"Spread.unit must be 'bps' or 'ticks', got {self.unit!r}")
        if self.unit == "ticks" and (self.tick_size is None or self.tick_size <= 0.0):
            raise ValueError("Spread(unit='ticks') needs a positive tick_size")

    @property
    def name(self) -> str:
        return f"spread_{self.unit}"


@dataclass(frozen=True, slots=True)
class Depth:
    """Resting quantity or notional within ``band_bps`` of mid, or the bid/ask quantity ratio.

    Bids count from mid down to ``mid * (1 - band_bps / 1e4)`` and asks from mid up to
    ``mid * (1 + band_bps / 1e4)``, both inclusive. ``measure``: ``bid_qty`` / ``ask_qty`` (base
    units), ``bid_notional`` / ``ask_notional`` (quote units, sum of price * size), ``ratio``
    (``bid_qty / ask_qty``, unitless; None when no ask is in the band). The "market depth within a
    percentage of mid" convention of exchanges' and data vendors' liquidity reports (e.g. "2% depth").
    Name ``depth_<measure>_<band>bps``.
    """

    band_bps: float = 10.0
    measure: DepthMeasure = "ratio"

    def __post_init__(self) -> None:
        if not self.band_bps > 0.0:
            raise ValueError(f"Depth.band_bps must be > 0, got {self.band_bps}")
        if self.measure not in _DEPTH_MEASURES:
            raise ValueError(f"Depth.measure must be one of {_DEPTH_MEASURES}, got {self.measure!r}")

    @property
    def name(self) -> str:
        return f"depth_{self.measure}_{_fmt(self.band_bps)}bps"


@dataclass(frozen=True, slots=True)
class OrderFlowImbalance:
    """Order-flow imbalance at the best level, summed over a rolling window, in base units.

    Cont, Kukanov and Stoikov (2014, *The price impact of order book events*), eq. (4): for each book
    event ``n`` with best bid ``Pb, qb`` and best ask ``Pa, qa``,
    ``e_n = 1[Pb_n >= Pb_{n-1}] qb_n - 1[Pb_n <= Pb_{n-1}] qb_{n-1}
          - 1[Pa_n <= Pa_{n-1}] qa_n + 1[Pa_n >= Pa_{n-1}] qa_{n-1}``,
    and ``OFI = sum of e_n`` over the last ``window_events`` events or the events of the last
    ``window_ms`` of event time. Every applied delta is one event. A side that is empty before or after
    an event contributes 0 to it. A snapshot starts a new series (the window empties: a resync is no
    order flow). 0.0 with no events in the window; None until the book first has both sides.
    Name ``ofi_<n>ev`` or ``ofi_<ms>ms``.
    """

    window_events: int | None = None
    window_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.window_events is None) == (self.window_ms is None):
            raise ValueError("OrderFlowImbalance needs exactly one of window_events or window_ms")
        if self.window_events is not None and self.window_events < 1:
            raise ValueError(f"window_events must be >= 1, got {self.window_events}")
        if self.window_ms is not None and self.window_ms < 1:
            raise ValueError(f"window_ms must be >= 1, got {self.window_ms}")

    @property
    def name(self) -> str:
        if self.window_events is not None:
            return f"ofi_{self.window_events}ev"
        return f"ofi_{self.window_ms}ms"


@dataclass(frozen=True, slots=True)
class TradeFlowImbalance:
    """Aggressor buy volume minus sell volume over the last ``window_ms`` of event time.

    ``TFI = sum(size of buyer-initiated trades) - sum(size of seller-initiated trades)`` in base units,
    or with ``normalized=True`` ``(B - S) / (B + S)`` in [-1, 1] (None with no trades in the window).
    Trade sides are the exchange's aggressor flag (the convention of e.g. Easley, Lopez de Prado and
    O'Hara's order-flow toxicity work, which uses signed volume). A trade at time ``t`` is in the window
    while ``now - t < window_ms``. Name ``tfi_<ms>ms`` or ``tfi_norm_<ms>ms``.
    """

    window_ms: int = 1000
    normalized: bool = False

    def __post_init__(self) -> None:
        if self.window_ms < 1:
            raise ValueError(f"TradeFlowImbalance.window_ms must be >= 1, got {self.window_ms}")

    @property
    def name(self) -> str:
        return f"tfi_norm_{self.window_ms}ms" if self.normalized else f"tfi_{self.window_ms}ms"


SignalSpec = (
    Imbalance | WeightedImbalance | Microprice | Spread | Depth | OrderFlowImbalance | TradeFlowImbalance
)


class _RollingSum:
    """A sum over a rolling window of (time, value) terms, by count or by age; O(1) amortized.

    The running sum is re-computed from the kept terms once per window length, so rounding error of
    the incremental adds and subtracts never accumulates past one window.
    """

    __slots__ = ("_since_resum", "max_age_ns", "max_count", "terms", "total")

    def __init__(self, max_count: int | None, max_age_ns: int | None) -> None:
        self.max_count = max_count
        self.max_age_ns = max_age_ns
        self.terms: deque[tuple[int, float]] = deque()
        self.total = 0.0
        self._since_resum = 0

    def clear(self) -> None:
        self.terms.clear()
        self.total = 0.0
        self._since_resum = 0

    def add(self, ts_ns: int, value: float) -> None:
        terms = self.terms
        terms.append((ts_ns, value))
        self.total += value
        if self.max_count is not None and len(terms) > self.max_count:
            self.total -= terms.popleft()[1]
        self._since_resum += 1
        if self._since_resum > len(terms) + 16:
            self.resum()

    def expire(self, now_ns: int) -> None:
        """Drop terms older than the window (no-op for count windows)."""
        if self.max_age_ns is None:
            return
        terms = self.terms
        cutoff = now_ns - self.max_age_ns
        if terms and terms[0][0] <= cutoff:
            while terms and terms[0][0] <= cutoff:
                self.total -= terms.popleft()[1]
            if not terms:
                self.total = 0.0

    def resum(self) -> None:
        self.total = math.fsum(v for _, v in self.terms)
        self._since_resum = 0


class _TradeWindow:
    """Buy and sell aggressor volumes of one time window."""

    __slots__ = ("buys", "sells")

    def __init__(self, window_ms: int) -> None:
        self.buys = _RollingSum(None, window_ms * 1_000_000)
        self.sells = _RollingSum(None, window_ms * 1_000_000)

    def expire(self, now_ns: int) -> None:
        self.buys.expire(now_ns)
        self.sells.expire(now_ns)


class SignalSet:
    """The signals that one book's readers asked for, kept current as the book changes.

    ``SignalSet(book, specs)``; the engine calls ``on_snapshot``/``on_delta`` after ``book`` applied
    the event and ``on_trade`` for the symbol's trades; readers call ``value(name)`` or ``values()``.
    Specs with the same name are one signal.
    """

    def __init__(self, book: L2Book, specs: Iterable[SignalSpec]) -> None:
        self.book = book
        self._specs: dict[str, SignalSpec] = {}
        for spec in specs:
            self._specs.setdefault(spec.name, spec)
        self._shape: dict[str, Callable[[], float | None]] = {}
        self._ofi: dict[str, _RollingSum] = {}
        self._tfi: dict[str, tuple[_TradeWindow, bool]] = {}
        self._trade_windows: dict[int, _TradeWindow] = {}
        self._bands: dict[float, tuple[float, float, float, float] | None] = {}  # per event
        for name, spec in self._specs.items():
            self._compile(name, spec)
        self._cache: dict[str, float | None] = {}
        self._now_ns = 0
        # Best quotes after the previous event, for OFI; None while a side is (or was) empty.
        self._has_reference = False
        self._prev: tuple[float, float, float, float] | None = None
        self._published: dict[str, float] = {}

    # ------------------------------------------------------------------ set-up

    def _compile(self, name: str, spec: SignalSpec) -> None:
        if isinstance(spec, Imbalance):
            self._shape[name] = self._imbalance_fn(spec.levels)
        elif isinstance(spec, WeightedImbalance):
            if spec.mode == "level":
                self._shape[name] = self._level_weighted_fn(spec.levels, spec.decay)
            else:
                self._shape[name] = self._bps_weighted_fn(spec.levels, spec.decay)
        elif isinstance(spec, Microprice):
            self._shape[name] = self._microprice
        elif isinstance(spec, Spread):
            if spec.unit == "bps":
                self._shape[name] = self._spread_bps
            else:
                assert spec.tick_size is not None  # checked by Spread.__post_init__
                self._shape[name] = self._spread_ticks_fn(spec.tick_size)
        elif isinstance(spec, Depth):
            self._shape[name] = self._depth_fn(spec.band_bps, _DEPTH_MEASURES.index(spec.measure))
        elif isinstance(spec, OrderFlowImbalance):
            age = None if spec.window_ms is None else spec.window_ms * 1_000_000
            self._ofi[name] = _RollingSum(spec.window_events, age)
        else:
            window = self._trade_windows.get(spec.window_ms)
            if window is None:
                window = self._trade_windows[spec.window_ms] = _TradeWindow(spec.window_ms)
            self._tfi[name] = (window, spec.normalized)

    @property
    def names(self) -> list[str]:
        """Names of the signals in this set, in declaration order."""
        return list(self._specs)

    @property
    def specs(self) -> list[SignalSpec]:
        """The specs of this set, in declaration order."""
        return list(self._specs.values())

    # ------------------------------------------------------------------ events

    def on_snapshot(self, snap: BookSnapshot) -> None:
        """The book was replaced by ``snap``: shape signals are stale, OFI starts a new series."""
        self._cache = {}
        self._bands = {}
        self._advance(snap.exchange_ts_ns or snap.receive_ts_ns)
        if self._ofi:
            for window in self._ofi.values():
                window.clear()
            self._prev = self._best()
            self._has_reference = self._has_reference or self._prev is not None

    def on_delta(self, delta: BookDelta) -> None:
        """The book applied ``delta``."""
        self._cache = {}
        self._bands = {}
        ts = delta.exchange_ts_ns or delta.receive_ts_ns
        if ts > self._now_ns:
            self._now_ns = ts
            if self._trade_windows:
                for tw in self._trade_windows.values():
                    tw.expire(ts)
        if self._ofi:
            self._on_ofi_event(self._now_ns)

    def on_trade(self, trade: Trade) -> None:
        """A public trade of this symbol happened (``trade.side`` is the aggressor)."""
        self._cache = {}
        self._advance(trade.exchange_ts_ns or trade.receive_ts_ns)
        if not self._trade_windows:
            return
        now = self._now_ns
        if trade.side is Side.BUY:
            for tw in self._trade_windows.values():
                tw.buys.add(now, trade.size)
        else:
            for tw in self._trade_windows.values():
                tw.sells.add(now, trade.size)

    def _advance(self, ts_ns: int) -> None:
        if ts_ns > self._now_ns:
            self._now_ns = ts_ns
            for tw in self._trade_windows.values():
                tw.expire(ts_ns)
        for window in self._ofi.values():
            window.expire(self._now_ns)

    def _best(self) -> tuple[float, float, float, float] | None:
        book = self.book
        bp = book._bid_prices
        ap = book._ask_prices
        if not bp or not ap:
            return None
        pb = bp[-1]
        pa = -ap[-1]
        return (pb, book._bid_sizes[pb], pa, book._ask_sizes[pa])

    def _on_ofi_event(self, now: int) -> None:
        cur = self._best()
        prev = self._prev
        self._prev = cur
        if cur is None:
            e = 0.0
        else:
            self._has_reference = True
            if prev is None:
                e = 0.0
            else:
                pb, qb, pa, qa = cur
                ppb, pqb, ppa, pqa = prev
                e = 0.0
                if pb >= ppb:
                    e += qb
                if pb <= ppb:
                    e -= pqb
                if pa <= ppa:
                    e -= qa
                if pa >= ppa:
                    e += pqa
        for window in self._ofi.values():
            window.add(now, e)
            window.expire(now)

    # ------------------------------------------------------------------ reads

    def value(self, name: str) -> float | None:
        """Current value of the signal ``name``; None when undefined. ``KeyError`` for unknown names."""
        cache = self._cache
        if name in cache:
            return cache[name]
        fn = self._shape.get(name)
        if fn is not None:
            v = fn()
        elif name in self._ofi:
            v = self._ofi[name].total if self._has_reference else None
        elif name in self._tfi:
            tw, normalized = self._tfi[name]
            b = tw.buys.total if tw.buys.terms else 0.0
            s = tw.sells.total if tw.sells.terms else 0.0
            if normalized:
                v = (b - s) / (b + s) if b + s > 0.0 else None
            else:
                v = b - s
        else:
            raise KeyError(f"no signal named {name!r} in this set (have: {', '.join(self._specs)})")
        cache[name] = v
        return v

    def values(self) -> dict[str, float | None]:
        """Every signal's current value by name (a new dict the caller may keep)."""
        value = self.value
        return {name: value(name) for name in self._specs}

    def updates(self, ts_ns: int) -> list[SignalUpdate]:
        """``SignalUpdate`` events for the defined values that changed since the previous call.

        The engine calls this only when someone subscribed to signal events.
        """
        out = []
        published = self._published
        book = self.book
        for name, v in self.values().items():
            if v is not None and published.get(name) != v:
                published[name] = v
                out.append(
                    SignalUpdate(venue=book.venue, symbol=book.symbol, name=name, value=v, ts_ns=ts_ns)
                )
        return out

    # ------------------------------------------------------------------ shape signals
    # These read the book's sorted price lists and size dicts directly (same package): a method call
    # per read would cost as much as the arithmetic.

    def _imbalance_fn(self, levels: int) -> Callable[[], float | None]:
        owner = self

        def imbalance() -> float | None:
            b = owner.book
            bp = b._bid_prices
            ap = b._ask_prices
            if not bp or not ap:
                return None
            qb = sum(map(b._bid_sizes.__getitem__, bp[-levels:]))
            qa = sum(map(b._ask_sizes.__getitem__, map(neg, ap[-levels:])))
            return (qb - qa) / (qb + qa)

        return imbalance

    def _level_weighted_fn(self, levels: int, decay: float) -> Callable[[], float | None]:
        # Weights best-last, matching the order of the price lists' tails.
        weights = [decay**k for k in range(levels - 1, -1, -1)]
        owner = self

        def weighted() -> float | None:
            b = owner.book
            bp = b._bid_prices
            ap = b._ask_prices
            if not bp or not ap:
                return None
            bt = bp[-levels:]
            at = ap[-levels:]
            wb: float = sum(map(mul, weights[levels - len(bt) :], map(b._bid_sizes.__getitem__, bt)))
            asizes = map(b._ask_sizes.__getitem__, map(neg, at))
            wa: float = sum(map(mul, weights[levels - len(at) :], asizes))
            return (wb - wa) / (wb + wa)

        return weighted

    def _bps_weighted_fn(self, levels: int, decay: float) -> Callable[[], float | None]:
        owner = self
        log_decay = math.log(decay)

        def weighted() -> float | None:
            b = owner.book
            bp = b._bid_prices
            ap = b._ask_prices
            if not bp or not ap:
                return None
            mid = (bp[-1] - ap[-1]) * 0.5
            k = log_decay * 1e4 / mid
            bsz = b._bid_sizes
            asz = b._ask_sizes
            exp = math.exp
            wb = 0.0
            for p in bp[-levels:]:
                wb += exp((mid - p) * k) * bsz[p]
            wa = 0.0
            for q in ap[-levels:]:
                # q is the negated ask price: distance = -q - mid
                wa += exp((-q - mid) * k) * asz[-q]
            return (wb - wa) / (wb + wa)

        return weighted

    def _microprice(self) -> float | None:
        b = self.book
        bp = b._bid_prices
        ap = b._ask_prices
        if not bp or not ap:
            return None
        pb = bp[-1]
        pa = -ap[-1]
        qb = b._bid_sizes[pb]
        qa = b._ask_sizes[pa]
        return (pb * qa + pa * qb) / (qa + qb)

    def _spread_bps(self) -> float | None:
        b = self.book
        bp = b._bid_prices
        ap = b._ask_prices
        if not bp or not ap:
            return None
        pb = bp[-1]
        pa = -ap[-1]
        return (pa - pb) / ((pa + pb) * 0.5) * 1e4

    def _spread_ticks_fn(self, tick: float) -> Callable[[], float | None]:
        owner = self

        def spread_ticks() -> float | None:
            b = owner.book
            bp = b._bid_prices
            ap = b._ask_prices
            if not bp or not ap:
                return None
            return (-ap[-1] - bp[-1]) / tick

        return spread_ticks

    def _band(self, bps: float) -> tuple[float, float, float, float] | None:
        """(bid qty, bid notional, ask qty, ask notional) within ``bps`` of mid, cached per event."""
        cache = self._bands
        if bps in cache:
            return cache[bps]
        b = self.book
        bp = b._bid_prices
        ap = b._ask_prices
        if not bp or not ap:
            result = None
        else:
            mid = (bp[-1] - ap[-1]) * 0.5
            bids = bp[bisect_left(bp, mid * (1.0 - bps * 1e-4)) :]
            asks = ap[bisect_left(ap, -(mid * (1.0 + bps * 1e-4))) :]
            bsz = list(map(b._bid_sizes.__getitem__, bids))
            asz = list(map(b._ask_sizes.__getitem__, map(neg, asks)))
            result = (sum(bsz), sum(map(mul, bids, bsz)), sum(asz), -sum(map(mul, asks, asz)))
        cache[bps] = result
        return result

    def _depth_fn(self, bps: float, measure: int) -> Callable[[], float | None]:
        owner = self

        def depth() -> float | None:
            band = owner._band(bps)
            if band is None:
                return None
            if measure == 0:
                return band[0]
            if measure == 1:
                return band[2]
            if measure == 2:
                return band[1]
            if measure == 3:
                return band[3]
            return band[0] / band[2] if band[2] > 0.0 else None

        return depth

