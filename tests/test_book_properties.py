"""Property tests: for random snapshots, deltas and trades, the book and every signal agree with a plain
reference that keeps a dict per side and re-sorts everything from scratch at every check. Each runs on
both implementations: the C speedups (``botframe._bookext``) and the pure-Python loops."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from book_impls import IMPLS, implementation
from hypothesis import given, settings
from hypothesis import strategies as st

from botframe.book import L2Book
from botframe.events import BookDelta, BookSnapshot, Side, Trade
from botframe.signals import (
    Depth,
    Imbalance,
    Microprice,
    OrderFlowImbalance,
    SignalSet,
    SignalSpec,
    Spread,
    TradeFlowImbalance,
    WeightedImbalance,
)

LevelList = list[tuple[float, float]]

PRICES = st.integers(1, 48).map(lambda t: t * 0.25 + 100.0)
SIZES = st.one_of(
    st.just(0.0),
    st.sampled_from([0.001, 0.5, 1.0, 2.5, 1000.0]),
    st.floats(min_value=0.001, max_value=1000.0, allow_nan=False, allow_infinity=False),
)
LEVELS = st.lists(st.tuples(PRICES, SIZES), max_size=12)
# Event time steps may go backwards a little: windows must clamp time, never rewind.
STEP_NS = st.integers(-50_000_000, 400_000_000)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("snapshot"), LEVELS, LEVELS, STEP_NS),
        st.tuples(st.just("delta"), LEVELS, LEVELS, STEP_NS),
        st.tuples(st.just("delta"), LEVELS, LEVELS, STEP_NS),
        st.tuples(st.just("trade"), st.sampled_from([Side.BUY, Side.SELL]), SIZES.filter(bool), STEP_NS),
    ),
    min_size=1,
    max_size=30,
)

SPECS: list[SignalSpec] = [
    Imbalance(levels=1),
    Imbalance(levels=3),
    WeightedImbalance(levels=4, decay=0.5, mode="level"),
    WeightedImbalance(levels=5, decay=0.8, mode="bps"),
    Microprice(),
    Spread(unit="bps"),
    Spread(unit="ticks", tick_size=0.25),
    Depth(band_bps=50.0, measure="bid_qty"),
    Depth(band_bps=50.0, measure="ask_qty"),
    Depth(band_bps=50.0, measure="bid_notional"),
    Depth(band_bps=50.0, measure="ask_notional"),
    Depth(band_bps=50.0, measure="ratio"),
    Depth(band_bps=200.0, measure="bid_qty"),
    Depth(band_bps=200.0, measure="ask_notional"),
    OrderFlowImbalance(window_events=3),
    OrderFlowImbalance(window_ms=500),
    TradeFlowImbalance(window_ms=700),
    TradeFlowImbalance(window_ms=700, normalized=True),
]


@dataclass
class Reference:
    """The naive book and signals: dicts, sorted from scratch on every read."""

    depth_limit: int | None = None
    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)
    now: int = 0
    ever_two_sided: bool = False
    ofi_terms: list[tuple[int, float]] = field(default_factory=list)
    prev_best: tuple[float, float, float, float] | None = None
    trades: list[tuple[int, Side, float]] = field(default_factory=list)

    def sorted_bids(self) -> LevelList:
        return sorted(self.bids.items(), key=lambda kv: -kv[0])

    def sorted_asks(self) -> LevelList:
        return sorted(self.asks.items())

    def best(self) -> tuple[float, float, float, float] | None:
        if not self.bids or not self.asks:
            return None
        pb, qb = self.sorted_bids()[0]
        pa, qa = self.sorted_asks()[0]
        return (pb, qb, pa, qa)

    def _apply(self, side: dict[float, float], levels: LevelList) -> None:
        for p, s in levels:
            if s:
                side[p] = s
            else:
                side.pop(p, None)

    def _truncate(self) -> None:
        if self.depth_limit is not None:
            self.bids = dict(self.sorted_bids()[: self.depth_limit])
            self.asks = dict(self.sorted_asks()[: self.depth_limit])

    def _clock(self, ts: int) -> None:
        self.now = max(self.now, ts)

    def snapshot(self, bids: LevelList, asks: LevelList, ts: int) -> None:
        self.bids, self.asks = {}, {}
        self._apply(self.bids, bids)
        self._apply(self.asks, asks)
        self._truncate()
        self._clock(ts)
        self.ofi_terms = []
        self.prev_best = self.best()
        self.ever_two_sided = self.ever_two_sided or self.prev_best is not None

    def delta(self, bids: LevelList, asks: LevelList, ts: int) -> None:
        self._apply(self.bids, bids)
        self._apply(self.asks, asks)
        self._truncate()
        self._clock(ts)
        cur = self.best()
        e = 0.0
        if cur is not None:
            self.ever_two_sided = True
            if self.prev_best is not None:
                pb, qb, pa, qa = cur
                ppb, pqb, ppa, pqa = self.prev_best
                e = (qb if pb >= ppb else 0.0) - (pqb if pb <= ppb else 0.0)
                e += -(qa if pa <= ppa else 0.0) + (pqa if pa >= ppa else 0.0)
        self.prev_best = cur
        self.ofi_terms.append((self.now, e))

    def trade(self, side: Side, size: float, ts: int) -> None:
        self._clock(ts)
        self.trades.append((self.now, side, size))

    # ---- signals, straight from their docstrings

    def mid(self) -> float | None:
        best = self.best()
        return None if best is None else (best[0] + best[2]) * 0.5

    def signal(self, spec: SignalSpec) -> float | None:
        if isinstance(spec, OrderFlowImbalance):
            if not self.ever_two_sided:
                return None
            if spec.window_events is not None:
                return sum(e for _, e in self.ofi_terms[-spec.window_events :])
            assert spec.window_ms is not None
            return sum(e for t, e in self.ofi_terms if self.now - t < spec.window_ms * 1_000_000)
        if isinstance(spec, TradeFlowImbalance):
            recent = [(side, q) for t, side, q in self.trades if self.now - t < spec.window_ms * 1_000_000]
            buys = sum(q for side, q in recent if side is Side.BUY)
            sells = sum(q for side, q in recent if side is Side.SELL)
            if spec.normalized:
                return (buys - sells) / (buys + sells) if recent else None
            return buys - sells
        best = self.best()
        if best is None:
            return None
        pb, qb, pa, qa = best
        mid = (pb + pa) * 0.5
        bids, asks = self.sorted_bids(), self.sorted_asks()
        if isinstance(spec, Imbalance):
            sb = sum(q for _, q in bids[: spec.levels])
            sa = sum(q for _, q in asks[: spec.levels])
            return (sb - sa) / (sb + sa)
        if isinstance(spec, WeightedImbalance):
            if spec.mode == "level":
                wb = sum(spec.decay**k * q for k, (_, q) in enumerate(bids[: spec.levels]))
                wa = sum(spec.decay**k * q for k, (_, q) in enumerate(asks[: spec.levels]))
            else:
                wb = sum(spec.decay ** ((mid - p) / mid * 1e4) * q for p, q in bids[: spec.levels])
                wa = sum(spec.decay ** ((p - mid) / mid * 1e4) * q for p, q in asks[: spec.levels])
            return (wb - wa) / (wb + wa)
        if isinstance(spec, Microprice):
            return (pb * qa + pa * qb) / (qa + qb)
        if isinstance(spec, Spread):
            if spec.unit == "bps":
                return (pa - pb) / mid * 1e4
            assert spec.tick_size is not None
            return (pa - pb) / spec.tick_size
        assert isinstance(spec, Depth)
        lo = mid * (1.0 - spec.band_bps * 1e-4)
        hi = mid * (1.0 + spec.band_bps * 1e-4)
        in_bids = [(p, q) for p, q in bids if p >= lo]
        in_asks = [(p, q) for p, q in asks if p <= hi]
        measures = {
            "bid_qty": sum(q for _, q in in_bids),
            "ask_qty": sum(q for _, q in in_asks),
            "bid_notional": sum(p * q for p, q in in_bids),
            "ask_notional": sum(p * q for p, q in in_asks),
        }
        if spec.measure == "ratio":
            return measures["bid_qty"] / measures["ask_qty"] if in_asks else None
        return measures[spec.measure]


def close(a: float | None, b: float | None, scale: float = 1.0) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * scale)


Op = tuple[Any, ...]
Check = Callable[[L2Book, SignalSet, "Reference"], None]


def replay(ops: list[Op], depth_limit: int | None, check: Check) -> None:
    """Feed ``ops`` to a book + SignalSet and to the reference; ``check`` them after each op."""
    book = L2Book("v", "X/Y", depth_limit=depth_limit)
    signals = SignalSet(book, SPECS)
    ref = Reference(depth_limit=depth_limit)
    ts = 1_000_000_000
    for op in ops:
        kind = op[0]
        ts += op[-1]
        if kind == "snapshot":
            bids, asks = op[1], op[2]
            snap = BookSnapshot(venue="v", symbol="X/Y", bids=bids, asks=asks, exchange_ts_ns=ts)
            book.apply_snapshot(snap)
            signals.on_snapshot(snap)
            ref.snapshot(bids, asks, ts)
        elif kind == "delta":
            bids, asks = op[1], op[2]
            delta = BookDelta(venue="v", symbol="X/Y", bids=bids, asks=asks, exchange_ts_ns=ts)
            book.apply_delta(delta)
            signals.on_delta(delta)
            ref.delta(bids, asks, ts)
        else:
            side, size = op[1], op[2]
            trade = Trade(venue="v", symbol="X/Y", price=100.0, size=size, side=side, exchange_ts_ns=ts)
            signals.on_trade(trade)
            ref.trade(side, size, ts)
        check(book, signals, ref)


def check_book(book: L2Book, _signals: SignalSet, ref: Reference) -> None:
    bids, asks = ref.sorted_bids(), ref.sorted_asks()
    assert book.bids() == bids
    assert book.asks() == asks
    assert book.bids(3) == bids[:3]
    assert book.asks(3) == asks[:3]
    assert book.bid_count == len(bids)
    assert book.ask_count == len(asks)
    assert book.best_bid() == (bids[0] if bids else None)
    assert book.best_ask() == (asks[0] if asks else None)
    if bids and asks:
        assert book.mid() == (bids[0][0] + asks[0][0]) * 0.5
        assert book.spread() == asks[0][0] - bids[0][0]
        assert book.is_crossed() == (bids[0][0] >= asks[0][0])
    else:
        assert book.mid() is None
        assert book.spread() is None
        assert not book.is_crossed()
    running = 0.0
    for (p, cum), (rp, rq) in zip(book.cumulative_depth(Side.BUY, 5), bids[:5], strict=True):
        running += rq
        assert p == rp
        assert close(cum, running)


def check_walks(book: L2Book, _signals: SignalSet, ref: Reference) -> None:
    for side, levels in ((Side.BUY, ref.sorted_asks()), (Side.SELL, ref.sorted_bids())):
        for size in (0.5, 3.0, 5000.0):
            walk = book.walk(side, size)
            if not levels:
                assert walk is None
                continue
            left, notional, worst = size, 0.0, levels[0][0]
            for p, q in levels:
                if left <= 0:
                    break
                take = min(q, left)
                notional += take * p
                left -= take
                worst = p
            filled = size - max(left, 0.0)
            assert walk is not None
            assert close(walk.filled, filled, 1000.0)
            assert close(walk.average_price, notional / filled, 1000.0)
            assert walk.worst_price == worst
            touch = levels[0][0]
            slip = (walk.average_price - touch) / touch * 1e4 * (1 if side is Side.BUY else -1)
            assert close(walk.slippage_bps, slip, 1000.0)
            avg = book.average_fill_price(side, size)
            assert avg == (walk.average_price if walk.filled >= size else None)
    mid = ref.mid()
    for side, levels in ((Side.BUY, ref.sorted_bids()), (Side.SELL, ref.sorted_asks())):
        qty, notional = book.depth_within_bps(side, 100.0)
        if mid is None:
            assert (qty, notional) == (0.0, 0.0)
            continue
        if side is Side.BUY:
            band = [(p, q) for p, q in levels if p >= mid * (1.0 - 100.0 * 1e-4)]
        else:
            band = [(p, q) for p, q in levels if p <= mid * (1.0 + 100.0 * 1e-4)]
        assert close(qty, sum(q for _, q in band), 1e3)
        assert close(notional, sum(p * q for p, q in band), 1e5)


def check_signals(_book: L2Book, signals: SignalSet, ref: Reference) -> None:
    values = signals.values()
    assert list(values) == [s.name for s in SPECS]
    for spec in SPECS:
        expected = ref.signal(spec)
        got = values[spec.name]
        # Running sums (depth bands, windows) may differ from a fresh sum by rounding only.
        assert close(got, expected, 1e6), (spec.name, got, expected)
        assert got == signals.value(spec.name)
        if isinstance(spec, Imbalance | WeightedImbalance) and got is not None:
            assert -1.0 - 1e-12 <= got <= 1.0 + 1e-12


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=200, deadline=None)
@given(OPS)
def test_book_matches_naive_sorted_reference(impl: str, ops: list[Op]) -> None:
    with implementation(impl):
        replay(ops, None, check_book)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=100, deadline=None)
@given(OPS, st.integers(1, 6))
def test_depth_limited_book_matches_truncated_reference(impl: str, ops: list[Op], depth: int) -> None:
    with implementation(impl):
        replay(ops, depth, check_book)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=100, deadline=None)
@given(OPS)
def test_walks_and_bps_depth_match_reference(impl: str, ops: list[Op]) -> None:
    with implementation(impl):
        replay(ops, None, check_walks)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=200, deadline=None)
@given(OPS)
def test_every_signal_matches_reference_computed_from_scratch(impl: str, ops: list[Op]) -> None:
    with implementation(impl):
        replay(ops, None, check_signals)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=100, deadline=None)
@given(OPS, st.integers(1, 6))
def test_every_signal_matches_reference_on_depth_limited_book(impl: str, ops: list[Op], depth: int) -> None:
    with implementation(impl):
        replay(ops, depth, check_signals)
