"""Order-book signals of one book: specs that strategies declare, and the set that keeps them current.

A strategy names the signals it wants as frozen, hashable specs (``Imbalance(levels=5)``); each has a
stable ``name`` (``"imbalance_5"``) under which its value is read. The engine keeps one ``SignalSet``
per book with the union of its readers' specs, and calls ``on_snapshot`` / ``on_delta`` right after the
book applied the event and ``on_trade`` for the symbol's public trades.

Cost: every value is brought up to date by the event itself, so a read is a dict look-up and what
a benchmark of events measures is the whole cost. Per event, nothing here depends on the book's size:

* top-of-book signals (imbalance, weighted imbalance, microprice, spread) read the best ``N`` levels
  straight from the book's sorted lists (``N`` = the largest ``levels`` asked for); bps weights are
  cached per mid, so an ``exp`` is paid only when mid moves or a new price reaches the top;
* depth bands are ``DepthTracker``s that the book keeps while it applies each delta (see
  ``botframe.book``): their cost is the delta's own levels plus the few levels a moving mid sweeps
  across the band's edges, never the band's size;
* order-flow and trade-flow imbalance fold each event into a rolling window in O(1) amortized: the
  window keeps its terms and a running sum, re-summed exactly once per window length so float
  rounding cannot drift, and an empty window sums to exactly 0.

Undefined values are ``None``: every signal of the book's shape is None while either side is empty
(a one-sided book is a broken feed, not a signal), a ratio is None when its denominator is 0.

Time windows use event time: the event's ``exchange_ts_ns``, or its ``receive_ts_ns`` when the venue
sends none, never allowed to go backwards. Replays therefore give the same values as live runs.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from math import exp
from operator import itemgetter, mul
from typing import Literal

from . import book as _book
from .book import DepthTracker, L2Book
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
    # Read on every signal look-up: formatted once here rather than per read.
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"Imbalance.levels must be >= 1, got {self.levels}")
        object.__setattr__(self, "name", f"imbalance_{self.levels}")


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
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"WeightedImbalance.levels must be >= 1, got {self.levels}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"WeightedImbalance.decay must be in (0, 1], got {self.decay}")
        if self.mode not in ("level", "bps"):
            raise ValueError(f"WeightedImbalance.mode must be 'level' or 'bps', got {self.mode!r}")
        object.__setattr__(self, "name", f"wimbalance_{self.levels}_{self.mode}_{_fmt(self.decay)}")


@dataclass(frozen=True, slots=True)
class Microprice:
    """Size-weighted mid price, in quote currency per unit.

    ``P = (Pb * Qa + Pa * Qb) / (Qa + Qb)`` with ``Pb, Qb`` / ``Pa, Qa`` the best bid / ask price and
    size: the mid moved toward the side more likely to be hit next. This is the "weighted mid-price"
    that Stoikov (2018, *The micro-price: a high-frequency estimator of future prices*) starts from
    and that trading code commonly calls the microprice; it is not his Markov-chain limit. Name
    ``microprice``.
    """

    name: str = field(default="microprice", init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Spread:
    """Best ask minus best bid, in basis points of mid (``unit="bps"``) or in ticks (``unit="ticks"``).

    ``bps = (Pa - Pb) / mid * 1e4``; ``ticks = (Pa - Pb) / tick_size`` (``tick_size`` required for
    ticks: the book does not know the instrument). Negative on a crossed book. Name ``spread_bps`` or
    ``spread_ticks``.
    """

    unit: Literal["bps", "ticks"] = "bps"
    tick_size: float | None = None
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.unit not in ("bps", "ticks"):
            raise ValueError(f"Spread.unit must be 'bps' or 'ticks', got {self.unit!r}")
        if self.unit == "ticks" and (self.tick_size is None or self.tick_size <= 0.0):
            raise ValueError("Spread(unit='ticks') needs a positive tick_size")
        object.__setattr__(self, "name", f"spread_{self.unit}")


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
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.band_bps > 0.0:
            raise ValueError(f"Depth.band_bps must be > 0, got {self.band_bps}")
        if self.measure not in _DEPTH_MEASURES:
            raise ValueError(f"Depth.measure must be one of {_DEPTH_MEASURES}, got {self.measure!r}")
        object.__setattr__(self, "name", f"depth_{self.measure}_{_fmt(self.band_bps)}bps")


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
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.window_events is None) == (self.window_ms is None):
            raise ValueError("OrderFlowImbalance needs exactly one of window_events or window_ms")
        if self.window_events is not None and self.window_events < 1:
            raise ValueError(f"window_events must be >= 1, got {self.window_events}")
        if self.window_ms is not None and self.window_ms < 1:
            raise ValueError(f"window_ms must be >= 1, got {self.window_ms}")
        name = f"ofi_{self.window_events}ev" if self.window_events is not None else f"ofi_{self.window_ms}ms"
        object.__setattr__(self, "name", name)


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
    name: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.window_ms < 1:
            raise ValueError(f"TradeFlowImbalance.window_ms must be >= 1, got {self.window_ms}")
        name = f"tfi_norm_{self.window_ms}ms" if self.normalized else f"tfi_{self.window_ms}ms"
        object.__setattr__(self, "name", name)


SignalSpec = (
    Imbalance | WeightedImbalance | Microprice | Spread | Depth | OrderFlowImbalance | TradeFlowImbalance
)


class _RollingSum:
    """A sum over a rolling window of (time, value) terms, by count or by age; O(1) amortized.

    The running sum is re-computed exactly (``math.fsum``) once per window length, so the rounding error
    of the incremental adds and subtracts never builds up past one window; an empty window sums to 0.0
    exactly.
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
            self.total = math.fsum(v for _, v in terms)
            self._since_resum = 0

    def push(self, now_ns: int, value: float) -> None:
        """``add`` then ``expire`` in one call: one event's term, with the window moved to ``now_ns``."""
        terms = self.terms
        terms.append((now_ns, value))
        total = self.total + value
        if self.max_count is not None:
            if len(terms) > self.max_count:
                total -= terms.popleft()[1]
        elif self.max_age_ns is not None:
            cutoff = now_ns - self.max_age_ns
            # The term just added is younger than the cutoff, so the loop stops before emptying.
            while terms[0][0] <= cutoff:
                total -= terms.popleft()[1]
        self._since_resum += 1
        if self._since_resum > len(terms) + 16:
            total = math.fsum(v for _, v in terms)
            self._since_resum = 0
        self.total = total

    def expire(self, now_ns: int) -> None:
        """Drop terms that are ``max_age_ns`` old or older (no-op for count windows)."""
        terms = self.terms
        if self.max_age_ns is None or not terms:
            return
        cutoff = now_ns - self.max_age_ns
        if terms[0][0] <= cutoff:
            while terms and terms[0][0] <= cutoff:
                self.total -= terms.popleft()[1]
            if not terms:
                self.total = 0.0


class SignalSet:
    """The signals that one book's readers asked for, kept current as the book changes.

    ``SignalSet(book, specs)``; the engine calls ``on_snapshot``/``on_delta`` after ``book`` applied
    the event and ``on_trade`` for the symbol's trades; readers call ``value(name)`` or ``values()``.
    Every value is brought up to date by the event itself (reads are dict look-ups), so what a
    benchmark of events measures is the whole cost. Specs with the same name are one signal.

    ``on_delta`` is ``note_delta`` (what each event must do: move event time, fold the event into
    order-flow imbalance) followed by ``refresh`` (recompute the values that depend only on the book's
    current shape). A caller that applies a burst of deltas before anyone reads may call ``note_delta``
    per delta and ``refresh`` once at the end: the values are then exactly those ``on_delta`` per delta
    would leave.
    """

    def __init__(self, book: L2Book, specs: Iterable[SignalSpec]) -> None:
        self.book = book
        self._specs: dict[str, SignalSpec] = {}
        for spec in specs:
            self._specs.setdefault(spec.name, spec)
        self._values: dict[str, float | None] = dict.fromkeys(self._specs)
        # Compiled plan: per kind, the names and parameters, so an event runs straight-line code.
        self._imbalances: list[tuple[str, int]] = []
        self._level_weighted: list[tuple[str, int, list[float]]] = []
        self._bps_weighted: list[tuple[str, int, float]] = []
        self._microprices: list[str] = []
        self._spreads_bps: list[str] = []
        self._spreads_ticks: list[tuple[str, float]] = []
        self._depths: list[tuple[str, DepthTracker, int]] = []
        self._ofi: list[tuple[str, _RollingSum]] = []
        self._trade_windows: dict[int, tuple[_RollingSum, _RollingSum]] = {}
        self._tfi: list[tuple[str, _RollingSum, _RollingSum, bool]] = []
        self._top = 0  # how many top levels per side the imbalances need
        for name, spec in self._specs.items():
            self._compile(name, spec)
        self._windows = list(self._trade_windows.values())
        flow = (OrderFlowImbalance, TradeFlowImbalance)
        self._shape_names = [name for name, spec in self._specs.items() if not isinstance(spec, flow)]
        self._now_ns = 0
        self._prev: tuple[float, float, float, float] | None = None  # best quotes after the last event
        self._has_reference = False
        self._published: dict[str, float] = {}
        self._refresh_shape()
        self._refresh_flow_values()

    def _compile(self, name: str, spec: SignalSpec) -> None:
        if isinstance(spec, Imbalance):
            self._imbalances.append((name, spec.levels))
            self._top = max(self._top, spec.levels)
        elif isinstance(spec, WeightedImbalance):
            self._top = max(self._top, spec.levels)
            if spec.mode == "level":
                # Weights best-last, like the tails of the book's price lists.
                weights = [spec.decay**k for k in range(spec.levels - 1, -1, -1)]
                self._level_weighted.append((name, spec.levels, weights))
            else:
                # decay ** d_bps == exp(d_price * k) with k = ln(decay) * 1e4 / mid, computed per event.
                self._bps_weighted.append((name, spec.levels, math.log(spec.decay) * 1e4))
        elif isinstance(spec, Microprice):
            self._microprices.append(name)
        elif isinstance(spec, Spread):
            if spec.unit == "bps":
                self._spreads_bps.append(name)
            else:
                assert spec.tick_size is not None  # Spread.__post_init__ checked it
                self._spreads_ticks.append((name, spec.tick_size))
        elif isinstance(spec, Depth):
            tracker = self.book.track_depth(spec.band_bps)
            self._depths.append((name, tracker, _DEPTH_MEASURES.index(spec.measure)))
        elif isinstance(spec, OrderFlowImbalance):
            age = None if spec.window_ms is None else spec.window_ms * 1_000_000
            self._ofi.append((name, _RollingSum(spec.window_events, age)))
        else:
            pair = self._trade_windows.get(spec.window_ms)
            if pair is None:
                age = spec.window_ms * 1_000_000
                pair = self._trade_windows[spec.window_ms] = (_RollingSum(None, age), _RollingSum(None, age))
            self._tfi.append((name, pair[0], pair[1], spec.normalized))

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
        """The book was replaced by ``snap``: OFI starts a new series."""
        self._advance(snap.exchange_ts_ns or snap.receive_ts_ns)
        if self._ofi:
            for _, window in self._ofi:
                window.clear()
            self._prev = self._best()
            self._has_reference = self._has_reference or self._prev is not None
        self._refresh_shape()
        self._refresh_flow_values()

    def on_delta(self, delta: BookDelta) -> None:
        """The book applied ``delta``: bring every signal up to date (``note_delta`` + ``refresh``)."""
        ts = delta.exchange_ts_ns or delta.receive_ts_ns
        if ts > self._now_ns:
            self._now_ns = ts
            for buys, sells in self._windows:
                buys.expire(ts)
                sells.expire(ts)
        if self._ofi:
            self._fold_ofi()
        if self._shape_names:
            self._refresh_shape()
        if self._tfi:
            self._refresh_flow_values()

    def note_delta(self, delta: BookDelta) -> None:
        """The per-event part of ``on_delta``: event time moves, the event is one OFI term."""
        ts = delta.exchange_ts_ns or delta.receive_ts_ns
        if ts > self._now_ns:
            self._now_ns = ts
            for buys, sells in self._windows:
                buys.expire(ts)
                sells.expire(ts)
        if self._ofi:
            self._fold_ofi()

    def refresh(self) -> None:
        """The rest of ``on_delta``: every value that depends on the book's current shape and time."""
        if self._shape_names:
            self._refresh_shape()
        if self._tfi:
            self._refresh_flow_values()

    def on_trade(self, trade: Trade) -> None:
        """A public trade of this symbol happened (``trade.side`` is the aggressor)."""
        self._advance(trade.exchange_ts_ns or trade.receive_ts_ns)
        if self._windows:
            now = self._now_ns
            for buys, sells in self._windows:
                (buys if trade.side is Side.BUY else sells).add(now, trade.size)
        self._refresh_flow_values()

    def _advance(self, ts_ns: int) -> None:
        if ts_ns > self._now_ns:
            self._now_ns = ts_ns
            for buys, sells in self._windows:
                buys.expire(ts_ns)
                sells.expire(ts_ns)
            for _, window in self._ofi:
                window.expire(ts_ns)

    def _best(self) -> tuple[float, float, float, float] | None:
        book = self.book
        bp = book._bid_prices
        ap = book._ask_prices
        if not bp or not ap:
            return None
        pb = bp[-1]
        return (pb, book._bid_sizes[pb], -ap[-1], book._ask_sizes[ap[-1]])

    # ------------------------------------------------------------------ computing values
    # These read the book's sorted price lists and size dicts directly (same package): a method call
    # per level would cost more than the arithmetic.

    def _refresh_flow_values(self) -> None:
        """Publish the windows' sums (OFI after a snapshot, a trade or a clock move; TFI always)."""
        vals = self._values
        for name, window in self._ofi:
            vals[name] = window.total if self._has_reference else None
        for name, buys, sells, normalized in self._tfi:
            b = buys.total if buys.terms else 0.0
            s = sells.total if sells.terms else 0.0
            if normalized:
                vals[name] = (b - s) / (b + s) if buys.terms or sells.terms else None
            else:
                vals[name] = b - s

    def _fold_ofi(self) -> None:
        """Fold the event just applied into every OFI window (Cont, Kukanov and Stoikov 2014, eq. 4)."""
        vals = self._values
        book = self.book
        bp = book._bid_prices
        ap = book._ask_prices
        now = self._now_ns
        if not bp or not ap:
            # A side that is empty before or after an event contributes 0 to it.
            self._prev = None
            for name, window in self._ofi:
                window.push(now, 0.0)
                vals[name] = window.total if self._has_reference else None
            return
        pb = bp[-1]
        q = ap[-1]  # asks are keyed by negated price
        pa = -q
        qb = book._bid_sizes[pb]
        qa = book._ask_sizes[q]
        prev = self._prev
        e = 0.0
        if prev is not None:
            ppb, pqb, ppa, pqa = prev
            if pb >= ppb:
                e += qb
            if pb <= ppb:
                e -= pqb
            if pa <= ppa:
                e -= qa
            if pa >= ppa:
                e += pqa
        self._prev = (pb, qb, pa, qa)
        self._has_reference = True
        for name, window in self._ofi:
            window.push(now, e)
            vals[name] = window.total if window.terms else 0.0

    def _refresh_shape(self) -> None:
        """Recompute the signals of the book's shape (everything but the flow windows)."""
        vals = self._values
        book = self.book
        bp = book._bid_prices
        ap = book._ask_prices
        if not bp or not ap:
            for name in self._shape_names:
                vals[name] = None
            return
        pb = bp[-1]
        pa = -ap[-1]
        mid = (pb + pa) * 0.5
        top = self._top
        if top:
            bt = bp[-top:]
            at = ap[-top:]
            # itemgetter(*keys)(d) looks all keys up in one C call (a third cheaper than a map);
            # with a single key it returns the value itself, hence the guard.
            bs = itemgetter(*bt)(book._bid_sizes) if len(bt) > 1 else (book._bid_sizes[pb],)
            as_ = itemgetter(*at)(book._ask_sizes) if len(at) > 1 else (book._ask_sizes[ap[-1]],)
            qb1 = bs[-1]
            qa1 = as_[-1]
            for name, n in self._imbalances:
                qb = sum(bs[-n:]) if n < top else sum(bs)
                qa = sum(as_[-n:]) if n < top else sum(as_)
                vals[name] = (qb - qa) / (qb + qa)
            for name, n, weights in self._level_weighted:
                # Both sequences are best-last; zip-by-map stops at the shorter, so align their ends.
                nb = len(bs)
                na = len(as_)
                if nb >= n and na >= n:
                    wb: float = sum(map(mul, weights, bs[-n:] if n < nb else bs))
                    wa: float = sum(map(mul, weights, as_[-n:] if n < na else as_))
                else:
                    wb = sum(map(mul, weights[n - nb :] if nb < n else weights, bs[-n:]))
                    wa = sum(map(mul, weights[n - na :] if na < n else weights, as_[-n:]))
                vals[name] = (wb - wa) / (wb + wa)
            for name, n, k_bps in self._bps_weighted:
                # One exp per level: measured cheaper than caching weights per mid (mid moves on about a
                # third of real events, and a cached look-up costs about what the exp does).
                k = k_bps / mid
                nk = -k
                if n < top:
                    btn, bsn, atn, asn = bt[-n:], bs[-n:], at[-n:], as_[-n:]
                else:
                    btn, bsn, atn, asn = bt, bs, at, as_
                c_weighted = _book._c_exp_weighted  # C when in use (botframe.book.use_speedups)
                if c_weighted is not None:
                    # The same expression per level in the same order, in C: bit-identical sums.
                    wb = c_weighted(btn, bsn, mid, k, False)
                    wa = c_weighted(atn, asn, mid, k, True)
                    vals[name] = (wb - wa) / (wb + wa)
                    continue
                wb = wa = 0.0
                if len(btn) == len(atn):
                    # Both sides in one loop (a fifth cheaper); each side's sum is added in the same order.
                    for p, s, q, t in zip(btn, bsn, atn, asn, strict=True):
                        wb += exp(k * (mid - p)) * s
                        wa += exp(nk * (q + mid)) * t  # q is the negated ask price: distance pa - mid
                else:
                    for p, s in zip(btn, bsn, strict=True):
                        wb += exp(k * (mid - p)) * s
                    for q, s in zip(atn, asn, strict=True):
                        wa += exp(nk * (q + mid)) * s
                vals[name] = (wb - wa) / (wb + wa)
        elif self._microprices:
            qb1 = book._bid_sizes[pb]
            qa1 = book._ask_sizes[ap[-1]]
        if self._microprices:
            micro = (pb * qa1 + pa * qb1) / (qa1 + qb1)
            for name in self._microprices:
                vals[name] = micro
        for name in self._spreads_bps:
            vals[name] = (pa - pb) / mid * 1e4
        for name, tick in self._spreads_ticks:
            vals[name] = (pa - pb) / tick
        for name, t, measure in self._depths:
            if not t.valid:
                vals[name] = None
            elif measure == 0:
                vals[name] = t.bid_qty
            elif measure == 1:
                vals[name] = t.ask_qty
            elif measure == 2:
                vals[name] = t.bid_notional
            elif measure == 3:
                vals[name] = t.ask_notional
            else:
                vals[name] = t.bid_qty / t.ask_qty if t.ask_levels else None

    # ------------------------------------------------------------------ reads

    def value(self, name: str) -> float | None:
        """Current value of the signal ``name``; None when undefined. ``KeyError`` for unknown names."""
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(f"no signal named {name!r} in this set (have: {', '.join(self._specs)})") from None

    def values(self) -> dict[str, float | None]:
        """Every signal's current value by name, in declaration order (a new dict the caller may keep)."""
        return self._values.copy()

    def updates(self, ts_ns: int) -> list[SignalUpdate]:
        """``SignalUpdate`` events for the defined values that changed since the previous call.

        The engine calls this only when someone subscribed to signal events.
        """
        out = []
        published = self._published
        book = self.book
        for name, v in self._values.items():
            if v is not None and published.get(name) != v:
                published[name] = v
                out.append(
                    SignalUpdate(venue=book.venue, symbol=book.symbol, name=name, value=v, ts_ns=ts_ns)
                )
        return out
