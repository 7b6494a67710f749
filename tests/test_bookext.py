"""The C speedups (``botframe._bookext``) against the pure-Python reference loops, on the same data.

Both implementations do the same arithmetic in the same order, so books must be equal and every depth
band sum and signal value bit-identical, not merely close. ``test_book_properties.py`` checks each
implementation against a naive re-sorting reference; this file checks them against each other and pins
down the C module's own contract (argument checks, pair forms, deletes of absent levels).
"""

from __future__ import annotations

import math

import pytest
from book_impls import extension_required, implementation
from hypothesis import given, settings
from hypothesis import strategies as st

import botframe.book as book_module
from botframe.book import L2Book
from botframe.events import BookDelta, BookSnapshot
from botframe.signals import Depth, Imbalance, Microprice, SignalSet, SignalSpec, WeightedImbalance

PRICES = st.integers(1, 60).map(lambda t: t * 0.5 + 200.0)
SIZES = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-8, max_value=1e4, allow_nan=False, allow_infinity=False),
)
LEVELS = st.lists(st.tuples(PRICES, SIZES), max_size=15)
OPS = st.lists(
    st.one_of(st.tuples(st.just("snapshot"), LEVELS, LEVELS), st.tuples(st.just("delta"), LEVELS, LEVELS)),
    min_size=1,
    max_size=40,
)
BANDS = st.lists(st.sampled_from([5.0, 40.0, 150.0, 600.0]), max_size=3, unique=True)
SPECS: list[SignalSpec] = [
    Imbalance(levels=3),
    WeightedImbalance(levels=6, decay=0.5, mode="level"),
    WeightedImbalance(levels=6, decay=0.7, mode="bps"),
    WeightedImbalance(levels=2, decay=0.95, mode="bps"),
    Microprice(),
    Depth(band_bps=40.0, measure="bid_notional"),
]


def _run(impl: str, ops: list[tuple[str, list[tuple[float, float]], list[tuple[float, float]]]],
         bands: list[float], depth_limit: int | None) -> list[object]:
    """Apply ``ops`` with ``impl`` and record the whole observable state after each op."""
    states: list[object] = []
    with implementation(impl):
        book = L2Book("v", "X/Y", depth_limit=depth_limit)
        trackers = [book.track_depth(b) for b in bands]
        signals = SignalSet(book, SPECS)
        for kind, bids, asks in ops:
            if kind == "snapshot":
                snap = BookSnapshot(venue="v", symbol="X/Y", bids=bids, asks=asks)
                book.apply_snapshot(snap)
                signals.on_snapshot(snap)
            else:
                delta = BookDelta(venue="v", symbol="X/Y", bids=bids, asks=asks)
                book.apply_delta(delta)
                signals.on_delta(delta)
            states.append(
                (
                    dict(book._bid_sizes),
                    list(book._bid_prices),
                    dict(book._ask_sizes),
                    list(book._ask_prices),
                    [
                        (t.valid, t.lo, t.hi, t.bid_qty, t.bid_notional, t.bid_levels,
                         t.ask_qty, t.ask_notional, t.ask_levels, t._ops)
                        for t in trackers
                    ],
                    signals.values(),
                )
            )
    return states


@settings(max_examples=300, deadline=None)
@given(OPS, BANDS, st.one_of(st.none(), st.integers(1, 8)))
def test_c_and_python_give_identical_books_bands_and_signals(ops, bands, depth_limit) -> None:  # type: ignore[no-untyped-def]
    extension_required()
    c_states = _run("c", ops, bands, depth_limit)
    py_states = _run("python", ops, bands, depth_limit)
    assert c_states == py_states  # floats compared with ==: bit-identical, not close


def _plain_apply_side(sizes: dict[float, float], levels: list[tuple[float, float]], negate: bool,
                      edges: tuple[float, ...]) -> tuple[float, ...] | None:
    """``apply_side``'s contract written plainly (the list is checked as ``sorted(sizes)``)."""
    sums = [[0.0, 0.0, 0] for _ in edges]
    for p, s in levels:
        key = -p if negate else p
        old = sizes.get(key)
        if s:
            d, c = (s, 1) if old is None else (s - old, 0)
            sizes[key] = s
        elif old is not None:
            d, c = -old, -1
            del sizes[key]
        else:
            continue
        for acc, edge in zip(sums, edges, strict=True):
            if key >= edge:
                acc[0] += d
                acc[1] += p * d
                acc[2] += c
    return tuple(x for acc in sums for x in acc) if edges else None


@settings(max_examples=300, deadline=None)
@given(st.lists(LEVELS, min_size=1, max_size=6), st.booleans(), st.lists(PRICES, max_size=3))
def test_apply_side_matches_its_plain_contract_with_edges_on_level_prices(batches, negate, edge_prices) -> None:  # type: ignore[no-untyped-def]
    """Edges drawn from the price grid, so levels sit exactly on them (the ``>=`` is tested)."""
    extension_required()
    ext = book_module.EXTENSION
    assert ext is not None
    edges = tuple(-p if negate else p for p in edge_prices)
    sizes: dict[float, float] = {}
    prices: list[float] = []
    plain: dict[float, float] = {}
    for levels in batches:
        got = ext.apply_side(sizes, prices, levels, negate, edges)
        want = _plain_apply_side(plain, levels, negate, edges)
        assert sizes == plain
        assert prices == sorted(plain)
        if want is None:
            assert got is None
        else:
            assert got is not None
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert math.isclose(g, w, rel_tol=1e-12, abs_tol=1e-6)


def test_extension_is_built_and_in_use() -> None:
    """CI builds the extension; a silent fall-back to pure Python would hide a broken build."""
    extension_required()
    assert book_module._c_apply_side is book_module.EXTENSION.apply_side  # type: ignore[union-attr]
    assert book_module._c_exp_weighted is book_module.EXTENSION.exp_weighted  # type: ignore[union-attr]


@pytest.fixture
def ext():  # type: ignore[no-untyped-def]
    extension_required()
    return book_module.EXTENSION


def test_apply_side_bids_keeps_list_sorted_and_counts_band(ext) -> None:  # type: ignore[no-untyped-def]
    sizes: dict[float, float] = {}
    prices: list[float] = []
    out = ext.apply_side(sizes, prices, [(10.0, 1.0), (12.0, 2.0), (11.0, 3.0)], False, (11.0,))
    assert prices == [10.0, 11.0, 12.0]
    assert sizes == {10.0: 1.0, 11.0: 3.0, 12.0: 2.0}
    assert out == (5.0, 12.0 * 2.0 + 11.0 * 3.0, 2)
    # Change, delete, delete of an absent level (a no-op), re-appearing price.
    out = ext.apply_side(sizes, prices, [(12.0, 0.5), (11.0, 0.0), (99.0, 0.0), (11.0, 4.0)], False, (11.0,))
    assert prices == [10.0, 11.0, 12.0]
    assert sizes == {10.0: 1.0, 11.0: 4.0, 12.0: 0.5}
    assert out == (-1.5 - 3.0 + 4.0, 12.0 * -1.5 - 11.0 * 3.0 + 11.0 * 4.0, 0)
    assert ext.apply_side(sizes, prices, [], False, ()) is None


def test_apply_side_asks_are_keyed_by_negated_price_with_real_notional(ext) -> None:  # type: ignore[no-untyped-def]
    sizes: dict[float, float] = {}
    prices: list[float] = []
    out = ext.apply_side(sizes, prices, [(101.0, 1.0), (100.0, 2.0), (105.0, 1.0)], True, (-102.0,))
    assert prices == [-105.0, -101.0, -100.0]  # best ask last
    assert sizes == {-101.0: 1.0, -100.0: 2.0, -105.0: 1.0}
    assert out == (3.0, 101.0 + 200.0, 2)


def test_apply_side_accepts_lists_and_ints_and_stores_floats(ext) -> None:  # type: ignore[no-untyped-def]
    sizes: dict[float, float] = {}
    prices: list[float] = []
    ext.apply_side(sizes, prices, [[3, 1], (2, 5)], False, ())
    assert prices == [2.0, 3.0]
    assert all(type(p) is float for p in prices)
    assert all(type(k) is float and type(v) is float for k, v in sizes.items())
    ext.apply_side(sizes, prices, [(3.0, 0)], False, ())
    assert prices == [2.0] and sizes == {2.0: 5.0}


def test_apply_side_rejects_what_is_not_a_pair(ext) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="level 1"):
        ext.apply_side({}, [], [(1.0, 1.0), (1.0, 2.0, 3.0)], False, ())
    with pytest.raises(TypeError):
        ext.apply_side({}, [], [("x", 1.0)], False, ())
    with pytest.raises(TypeError):
        ext.apply_side([], [], [], False, ())
    with pytest.raises(ValueError, match="16"):
        ext.apply_side({}, [], [], False, tuple(float(i) for i in range(17)))


def test_exp_weighted_is_the_signals_expression(ext) -> None:  # type: ignore[no-untyped-def]
    prices, sizes, mid, k = [99.0, 99.5], [2.0, 3.0], 100.0, -0.7
    expected = 0.0
    for p, s in zip(prices, sizes, strict=True):
        expected += math.exp(k * (mid - p)) * s
    assert ext.exp_weighted(prices, sizes, mid, k, False) == expected
    negs, asks = [-101.0, -100.5], [1.0, 4.0]
    expected = 0.0
    for q, s in zip(negs, asks, strict=True):
        expected += math.exp(-k * (q + mid)) * s
    assert ext.exp_weighted(negs, asks, mid, k, True) == expected
    assert ext.exp_weighted([], [], mid, k, True) == 0.0
    with pytest.raises(ValueError, match="length"):
        ext.exp_weighted([1.0], [], mid, k, False)


def test_many_bands_fall_back_to_python_with_the_same_sums() -> None:
    extension_required()
    bands = [float(b) for b in range(1, 19)]  # 18 bands: more than the C loop takes
    bids = [(100.0 - i * 0.01, 1.0 + i) for i in range(50)]
    asks = [(100.01 + i * 0.01, 2.0) for i in range(50)]
    ops = [("snapshot", bids, asks),
           ("delta", [(99.99, 0.0), (99.95, 7.0), (99.999, 1.0)], [(100.02, 0.0), (100.015, 3.0)])]
    assert _run("c", ops, bands, None) == _run("python", ops, bands, None)  # type: ignore[arg-type]
