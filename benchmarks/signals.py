"""Throughput of book apply + every signal, on the same Binance-style deltas as ``book_apply.py``.

Each delta is applied to the book, then ``SignalSet.on_delta`` runs, and (in the "read all" figure)
every signal value is read, as a strategy that looks at all of them after each update would. The C
loops (``botframe._bookext``) are in use, as by default; ``--python`` also times the pure-Python code. One
trade (alternating aggressor side) is fed every 5 deltas so the trade-flow window has work to do.

Run: ``python benchmarks/signals.py [--deltas N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import gc
import time

from book_apply import generate_frames, make_book, to_deltas

from botframe.book import use_speedups
from botframe.events import Side, Trade
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

__all__ = ["ALL_SIGNALS", "main"]

#: One of each signal of the issue (depth in every measure for one band).
ALL_SIGNALS: list[SignalSpec] = [
    Imbalance(levels=5),
    WeightedImbalance(levels=10, decay=0.5, mode="level"),
    WeightedImbalance(levels=10, decay=0.9, mode="bps"),
    Microprice(),
    Depth(band_bps=10, measure="bid_qty"),
    Depth(band_bps=10, measure="ask_qty"),
    Depth(band_bps=10, measure="bid_notional"),
    Depth(band_bps=10, measure="ask_notional"),
    Depth(band_bps=10, measure="ratio"),
    OrderFlowImbalance(window_events=100),
    OrderFlowImbalance(window_ms=1000),
    Spread(unit="bps"),
    Spread(unit="ticks", tick_size=0.01),
    TradeFlowImbalance(window_ms=1000),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deltas", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--breakdown", action="store_true", help="also time each kind of signal on its own")
    ap.add_argument("--python", action="store_true", help="also time the pure-Python loops (no C speedups)")
    args = ap.parse_args()

    snap_frame, frames = generate_frames(args.deltas)
    deltas = to_deltas(frames)
    level_updates = sum(len(d.bids) + len(d.asks) for d in deltas)
    trades = [
        Trade(venue="binance", symbol="BTC/USDT", price=1000.0, size=0.5 + (i % 7) * 0.1,
              side=Side.BUY if i % 2 else Side.SELL, exchange_ts_ns=d.exchange_ts_ns)
        for i, d in enumerate(deltas)
    ]

    def run(read_all: bool, specs: list[SignalSpec] = ALL_SIGNALS) -> float:
        book, snap = make_book(snap_frame)
        signals = SignalSet(book, specs)
        signals.on_snapshot(snap)
        apply = book.apply_delta
        on_delta = signals.on_delta
        on_trade = signals.on_trade
        values = signals.values
        gc.disable()
        t = time.perf_counter()
        if read_all:
            for i, d in enumerate(deltas):
                apply(d)
                on_delta(d)
                if i % 5 == 0:
                    on_trade(trades[i])
                values()
        else:
            for i, d in enumerate(deltas):
                apply(d)
                on_delta(d)
                if i % 5 == 0:
                    on_trade(trades[i])
        dt = time.perf_counter() - t
        gc.enable()
        return dt

    print(f"deltas: {len(deltas)}, level updates: {level_updates}, signals: {len(ALL_SIGNALS)}")
    for label, python in (("C loops", False), ("pure Python", True))[: 2 if args.python else 1]:
        if use_speedups(not python) == python:
            print(f"{label}: not built (pip install -e . needs a C compiler)")
            continue
        quiet = min(run(False) for _ in range(args.repeat))
        loud = min(run(True) for _ in range(args.repeat))
        print(f"[{label}] book apply + signal updates: {level_updates / quiet / 1e6:.2f} M level updates/s "
              f"({quiet / len(deltas) * 1e6:.2f} us per delta)")
        print(f"[{label}] book apply + signal updates + read all {len(ALL_SIGNALS)} values per delta: "
              f"{level_updates / loud / 1e6:.2f} M level updates/s ({loud / len(deltas) * 1e6:.2f} us per delta)")
    use_speedups(True)
    if args.breakdown:
        groups: dict[str, list[SignalSpec]] = {}
        for spec in ALL_SIGNALS:
            groups.setdefault(type(spec).__name__, []).append(spec)
        base = min(run(False, []) for _ in range(args.repeat)) / len(deltas) * 1e6
        print("cost per delta by kind of signal (book apply included in each row; + is over book only):")
        print(f"  {'book only (no signals)':22s} {base:6.2f} us")
        for label, specs in groups.items():
            t = min(run(False, specs) for _ in range(args.repeat)) / len(deltas) * 1e6
            names = ", ".join(sp.name for sp in specs) or "-"
            print(f"  {label:22s} {t:6.2f} us  (+{t - base:5.2f})  {names}")


if __name__ == "__main__":
    main()
