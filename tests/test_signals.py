"""Signals by hand-worked examples: names, formulas, windows, undefined values and the set's contract."""

from __future__ import annotations

import pytest

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

Levels = list[tuple[float, float]]
MS = 1_000_000


def _setup(specs: list[SignalSpec], bids: Levels, asks: Levels) -> tuple[L2Book, SignalSet]:
    book = L2Book("v", "S/U")
    signals = SignalSet(book, specs)
    snap = BookSnapshot(venue="v", symbol="S/U", bids=bids, asks=asks)
    book.apply_snapshot(snap)
    signals.on_snapshot(snap)
    return book, signals


def _apply(book: L2Book, signals: SignalSet, bids: Levels, asks: Levels, ts_ms: int = 0) -> None:
    delta = BookDelta(venue="v", symbol="S/U", bids=bids, asks=asks, exchange_ts_ns=ts_ms * MS)
    book.apply_delta(delta)
    signals.on_delta(delta)


def _trade(signals: SignalSet, side: Side, size: float, ts_ms: int) -> None:
    signals.on_trade(Trade(venue="v", symbol="S/U", price=1.0, size=size, side=side, exchange_ts_ns=ts_ms * MS))


# ------------------------------------------------------------------------------------------ specs


def test_spec_names_are_stable() -> None:
    assert Imbalance(levels=5).name == "imbalance_5"
    assert WeightedImbalance(levels=10, decay=0.5).name == "wimbalance_10_level_0.5"
    assert WeightedImbalance(levels=3, decay=0.9, mode="bps").name == "wimbalance_3_bps_0.9"
    assert Microprice().name == "microprice"
    assert Spread().name == "spread_bps"
    assert Spread(unit="ticks", tick_size=0.01).name == "spread_ticks"
    assert Depth(band_bps=10).name == "depth_ratio_10bps"
    assert Depth(band_bps=2.5, measure="bid_notional").name == "depth_bid_notional_2.5bps"
    assert OrderFlowImbalance(window_events=100).name == "ofi_100ev"
    assert OrderFlowImbalance(window_ms=500).name == "ofi_500ms"
    assert TradeFlowImbalance(window_ms=1000).name == "tfi_1000ms"
    assert TradeFlowImbalance(window_ms=1000, normalized=True).name == "tfi_norm_1000ms"


def test_specs_are_frozen_and_hashable() -> None:
    assert len({Imbalance(levels=5), Imbalance(levels=5), Imbalance(levels=3)}) == 2
    with pytest.raises(AttributeError):
        Imbalance(levels=5).levels = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: Imbalance(levels=0),
        lambda: WeightedImbalance(decay=0.0),
        lambda: WeightedImbalance(decay=1.5),
        lambda: WeightedImbalance(mode="price"),  # type: ignore[arg-type]
        lambda: Spread(unit="ticks"),
        lambda: Depth(band_bps=0),
        lambda: Depth(measure="volume"),  # type: ignore[arg-type]
        lambda: OrderFlowImbalance(),
        lambda: OrderFlowImbalance(window_events=10, window_ms=10),
        lambda: TradeFlowImbalance(window_ms=0),
    ],
)
def test_invalid_specs_are_refused_at_construction(make: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each message names its own field
        make()  # type: ignore[operator]


# ------------------------------------------------------------------------------------------ formulas


def test_imbalance_over_top_levels() -> None:
    _, signals = _setup([Imbalance(levels=2)], [(10.0, 3.0), (9.0, 1.0), (8.0, 100.0)], [(11.0, 1.0), (12.0, 1.0)])

    assert signals.value("imbalance_2") == (4.0 - 2.0) / (4.0 + 2.0)


def test_level_weighted_imbalance_decays_by_level() -> None:
    _, signals = _setup([WeightedImbalance(levels=2, decay=0.5)], [(10.0, 2.0), (9.0, 4.0)], [(11.0, 4.0)])

    wb = 2.0 + 0.5 * 4.0
    assert signals.value("wimbalance_2_level_0.5") == pytest.approx((wb - 4.0) / (wb + 4.0))


def test_bps_weighted_imbalance_decays_with_distance_from_mid() -> None:
    # mid 100; bid 99 is 100 bps away, ask 101 also 100 bps, ask 102 is 200 bps.
    _, signals = _setup(
        [WeightedImbalance(levels=5, decay=0.99, mode="bps")], [(99.0, 1.0)], [(101.0, 1.0), (102.0, 1.0)]
    )

    wb = 0.99**100
    wa = 0.99**100 + 0.99**200
    assert signals.value("wimbalance_5_bps_0.99") == pytest.approx((wb - wa) / (wb + wa))


def test_microprice_leans_toward_the_thinner_side() -> None:
    _, signals = _setup([Microprice()], [(100.0, 3.0)], [(101.0, 1.0)])

    assert signals.value("microprice") == (100.0 * 1.0 + 101.0 * 3.0) / 4.0


def test_spread_in_bps_and_ticks() -> None:
    _, signals = _setup([Spread(), Spread(unit="ticks", tick_size=0.5)], [(99.0, 1.0)], [(101.0, 1.0)])

    assert signals.value("spread_bps") == 200.0
    assert signals.value("spread_ticks") == 4.0


def test_depth_band_quantities_notionals_and_ratio() -> None:
    specs: list[SignalSpec] = [
        Depth(band_bps=200, measure="bid_qty"),
        Depth(band_bps=200, measure="ask_qty"),
        Depth(band_bps=200, measure="bid_notional"),
        Depth(band_bps=200, measure="ask_notional"),
        Depth(band_bps=200, measure="ratio"),
    ]
    book, signals = _setup(specs, [(99.0, 1.0), (98.0, 2.0), (97.0, 4.0)], [(101.0, 1.0), (102.0, 3.0)])

    first = signals.values()
    _apply(book, signals, [(99.0, 0.0)], [(101.0, 0.0), (101.5, 1.0)])  # mid -> (98 + 101.5) / 2 = 99.75
    second = signals.values()

    assert list(first.values()) == [3.0, 4.0, 99.0 + 196.0, 101.0 + 306.0, 0.75]
    # band 97.755 .. 101.745: bids 98; asks 101.5
    assert list(second.values()) == [2.0, 1.0, 196.0, 101.5, 2.0]


def test_depth_ratio_is_none_without_asks_in_band() -> None:
    _, signals = _setup([Depth(band_bps=10)], [(99.99, 1.0)], [(200.0, 1.0)])

    assert signals.value("depth_ratio_10bps") is None


def test_ofi_follows_cont_kukanov_stoikov_cases() -> None:
    book, signals = _setup([OrderFlowImbalance(window_events=10)], [(100.0, 5.0)], [(101.0, 5.0)])

    _apply(book, signals, [(100.0, 7.0)], [])  # bid size up at same price: +2
    after_bid_add = signals.value("ofi_10ev")
    _apply(book, signals, [(100.5, 1.0)], [])  # bid price improves: +1 (new size)
    after_improve = signals.value("ofi_10ev")
    _apply(book, signals, [], [(101.0, 2.0)])  # ask size down at same price: +3
    after_ask_cancel = signals.value("ofi_10ev")
    _apply(book, signals, [], [(100.8, 4.0)])  # ask price improves (lower): -4
    after_ask_improve = signals.value("ofi_10ev")

    assert (after_bid_add, after_improve, after_ask_cancel, after_ask_improve) == (2.0, 3.0, 6.0, 2.0)


def test_ofi_event_window_drops_old_events() -> None:
    book, signals = _setup([OrderFlowImbalance(window_events=2)], [(100.0, 5.0)], [(101.0, 5.0)])

    for size in (6.0, 7.0, 8.0):  # +1 each
        _apply(book, signals, [(100.0, size)], [])

    assert signals.value("ofi_2ev") == 2.0


def test_ofi_time_window_drops_events_by_age() -> None:
    book, signals = _setup([OrderFlowImbalance(window_ms=100)], [(100.0, 5.0)], [(101.0, 5.0)])

    _apply(book, signals, [(100.0, 6.0)], [], ts_ms=1000)
    _apply(book, signals, [(100.0, 8.0)], [], ts_ms=1050)
    both = signals.value("ofi_100ms")
    _apply(book, signals, [], [], ts_ms=1120)  # the first term (t=1000) is now 120 ms old

    assert both == 3.0
    assert signals.value("ofi_100ms") == 2.0


def test_snapshot_starts_a_new_ofi_series() -> None:
    book, signals = _setup([OrderFlowImbalance(window_events=5)], [(100.0, 5.0)], [(101.0, 5.0)])
    _apply(book, signals, [(100.0, 9.0)], [])

    snap = BookSnapshot(venue="v", symbol="S/U", bids=[(90.0, 1.0)], asks=[(91.0, 1.0)])
    book.apply_snapshot(snap)
    signals.on_snapshot(snap)

    assert signals.value("ofi_5ev") == 0.0


def test_trade_flow_imbalance_over_time_window() -> None:
    specs: list[SignalSpec] = [TradeFlowImbalance(window_ms=1000), TradeFlowImbalance(window_ms=1000, normalized=True)]
    _, signals = _setup(specs, [(100.0, 1.0)], [(101.0, 1.0)])

    _trade(signals, Side.BUY, 3.0, 0)
    _trade(signals, Side.SELL, 1.0, 500)
    mixed = signals.values()
    _trade(signals, Side.SELL, 2.0, 1200)  # the buy at t=0 has left the window

    assert mixed == {"tfi_1000ms": 2.0, "tfi_norm_1000ms": 0.5}
    assert signals.values() == {"tfi_1000ms": -3.0, "tfi_norm_1000ms": -1.0}


def test_trade_flow_expires_on_book_events_too() -> None:
    book, signals = _setup([TradeFlowImbalance(window_ms=100, normalized=True)], [(100.0, 1.0)], [(101.0, 1.0)])
    _trade(signals, Side.BUY, 3.0, 1000)

    _apply(book, signals, [], [], ts_ms=1200)

    assert signals.value("tfi_norm_100ms") is None


# ------------------------------------------------------------------------------------------ undefined values


def test_every_book_signal_is_none_on_an_empty_side() -> None:
    specs: list[SignalSpec] = [
        Imbalance(levels=5), WeightedImbalance(), WeightedImbalance(mode="bps"), Microprice(), Spread(),
        Depth(band_bps=10, measure="bid_qty"), OrderFlowImbalance(window_events=5),
    ]
    _, signals = _setup(specs, [(100.0, 1.0)], [])

    assert set(signals.values().values()) == {None}


def test_signals_on_a_one_level_book() -> None:
    specs: list[SignalSpec] = [Imbalance(levels=5), WeightedImbalance(levels=5, decay=0.5), Microprice()]
    _, signals = _setup(specs, [(100.0, 1.0)], [(101.0, 3.0)])

    assert signals.values() == {"imbalance_5": -0.5, "wimbalance_5_level_0.5": -0.5, "microprice": 100.25}


def test_signals_come_back_when_an_empty_side_refills() -> None:
    book, signals = _setup([Imbalance(levels=1), Depth(band_bps=100, measure="ask_qty")], [(100.0, 1.0)], [])

    _apply(book, signals, [], [(100.5, 2.0)])

    assert signals.values() == {"imbalance_1": -1.0 / 3.0, "depth_ask_qty_100bps": 2.0}


# ------------------------------------------------------------------------------------------ the set


def test_unknown_signal_name_is_a_key_error_naming_what_exists() -> None:
    _, signals = _setup([Microprice()], [(100.0, 1.0)], [(101.0, 1.0)])

    with pytest.raises(KeyError, match="microprice"):
        signals.value("imbalance_5")


def test_duplicate_specs_are_one_signal_and_order_is_kept() -> None:
    book = L2Book("v", "S/U")

    signals = SignalSet(book, [Spread(), Microprice(), Spread()])

    assert signals.names == ["spread_bps", "microprice"]
    assert signals.specs == [Spread(), Microprice()]


def test_values_is_a_copy_the_caller_may_keep() -> None:
    book, signals = _setup([Microprice()], [(100.0, 1.0)], [(101.0, 1.0)])
    kept = signals.values()

    _apply(book, signals, [(100.0, 3.0)], [])

    assert kept == {"microprice": 100.5}
    assert signals.value("microprice") == (100.0 * 1.0 + 101.0 * 3.0) / 4.0


def test_updates_publish_only_changed_defined_values() -> None:
    book, signals = _setup([Microprice(), Spread()], [(100.0, 1.0)], [(101.0, 1.0)])

    first = signals.updates(ts_ns=5)
    _apply(book, signals, [(100.0, 3.0)], [])
    second = signals.updates(ts_ns=6)

    assert [(u.name, u.ts_ns) for u in first] == [("microprice", 5), ("spread_bps", 5)]
    assert [u.name for u in second] == ["microprice"]
    assert (second[0].venue, second[0].symbol) == ("v", "S/U")
