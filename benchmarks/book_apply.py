"""Throughput of ``L2Book.apply_delta`` (and of the signals on top) on Binance-style depth diffs.

Data: a 1000-level book per side on a 0.01 grid, then deltas of 20 bid + 20 ask levels in Binance's
``depthUpdate`` format (``{"e":"depthUpdate","U":..,"u":..,"b":[["price","qty"],..],"a":[..]}``),
generated with a fixed seed: levels near the touch change most often (exponential distance from mid,
mean 60 ticks), about a quarter of updated levels are deletes (qty "0.00000000"), and the mid walks by
a tick now and then (the levels it crosses are deleted in the same delta, as Binance does). Frames are
decoded by msgspec into float levels before timing, as a venue adapter would, so the figures are the
book's own cost. The book is timed with its per-level loop in C (``botframe._bookext``, the default
when built) and in pure Python (``botframe.book.use_speedups(False)``).

Run: ``python benchmarks/book_apply.py [--deltas N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgspec

from botframe.book import L2Book, use_speedups
from botframe.events import BookDelta, BookSnapshot

__all__ = ["DepthUpdate", "NumpyBook", "SortedDictBook", "generate_frames", "main", "make_book", "to_deltas"]

TICK = 0.01
LEVELS = 1000
PER_SIDE = 20


class DepthUpdate(msgspec.Struct, frozen=True):
    """The fields of a Binance ``depthUpdate`` the book needs (prices and sizes decoded as floats)."""

    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]
    E: int = 0


def _px(ticks: int) -> str:
    return f"{ticks * TICK:.2f}"


def generate_frames(n: int, seed: int = 7) -> tuple[bytes, list[bytes]]:
    """A REST-like snapshot and ``n`` depthUpdate frames, as raw JSON bytes."""
    rng = random.Random(seed)
    mid = 100_000  # in ticks: the best bid is mid - 1, the best ask mid + 1 (spread of 2 ticks at start)
    bids = {mid - 1 - i: rng.randint(1, 5000) for i in range(LEVELS)}
    asks = {mid + 1 + i: rng.randint(1, 5000) for i in range(LEVELS)}
    snap = msgspec.json.encode(
        {
            "lastUpdateId": 1,
            "bids": [[_px(t), f"{q / 100:.8f}"] for t, q in sorted(bids.items(), reverse=True)],
            "asks": [[_px(t), f"{q / 100:.8f}"] for t, q in sorted(asks.items())],
        }
    )
    frames = []
    u = 1
    for _ in range(n):
        b: dict[int, int] = {}
        a: dict[int, int] = {}
        r = rng.random()
        if r < 0.05:  # mid up one tick: the best ask level goes away, a bid appears at the old ask
            mid += 1
            for t in [t for t in asks if t <= mid]:
                a[t] = 0
                del asks[t]
        elif r < 0.10:
            mid -= 1
            for t in [t for t in bids if t >= mid]:
                b[t] = 0
                del bids[t]
        while len(b) < PER_SIDE:
            t = mid - 1 - min(int(rng.expovariate(1 / 60)), LEVELS + 200)
            q = 0 if rng.random() < 0.25 else rng.randint(1, 5000)
            b[t] = q
            if q:
                bids[t] = q
            else:
                bids.pop(t, None)
        while len(a) < PER_SIDE:
            t = mid + 1 + min(int(rng.expovariate(1 / 60)), LEVELS + 200)
            q = 0 if rng.random() < 0.25 else rng.randint(1, 5000)
            a[t] = q
            if q:
                asks[t] = q
            else:
                asks.pop(t, None)
        frames.append(
            msgspec.json.encode(
                {
                    "e": "depthUpdate",
                    "E": 1_700_000_000_000 + u,
                    "s": "BTCUSDT",
                    "U": u + 1,
                    "u": u + 1,
                    "b": [[_px(t), f"{q / 100:.8f}"] for t, q in b.items()],
                    "a": [[_px(t), f"{q / 100:.8f}"] for t, q in a.items()],
                }
            )
        )
        u += 1
    return snap, frames


class _RestDepth(msgspec.Struct, frozen=True):
    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


def make_book(snap_frame: bytes) -> tuple[L2Book, BookSnapshot]:
    """A book holding the generated snapshot."""
    rest = msgspec.json.decode(snap_frame, type=_RestDepth, strict=False)
    snap = BookSnapshot(venue="binance", symbol="BTC/USDT", bids=rest.bids, asks=rest.asks,
                        sequence=rest.lastUpdateId)
    book = L2Book("binance", "BTC/USDT")
    book.apply_snapshot(snap)
    return book, snap


def to_deltas(frames: list[bytes]) -> list[BookDelta]:
    """Decode frames as an adapter does (msgspec, floats straight from the wire) into ``BookDelta``s."""
    decoder = msgspec.json.Decoder(DepthUpdate, strict=False)
    out = []
    for f in frames:
        m = decoder.decode(f)
        out.append(
            BookDelta(venue="binance", symbol="BTC/USDT", bids=m.b, asks=m.a, first_seq=m.U, last_seq=m.u,
                      prev_seq=m.U - 1, exchange_ts_ns=m.E * 1_000_000)
        )
    return out


def _best_of(repeat: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeat))


class SortedDictBook:
    """The same book on ``sortedcontainers.SortedDict`` (pure Python, the usual choice), for comparison."""

    def __init__(self, snap: BookSnapshot) -> None:
        from sortedcontainers import SortedDict  # type: ignore[import-untyped]

        self.bids = SortedDict({-p: s for p, s in snap.bids})  # negated: best first
        self.asks = SortedDict(dict(snap.asks))

    def apply(self, d: BookDelta) -> None:
        bids = self.bids
        for p, s in d.bids:
            if s:
                bids[-p] = s
            else:
                bids.pop(-p, None)
        asks = self.asks
        for p, s in d.asks:
            if s:
                asks[p] = s
            else:
                asks.pop(p, None)


class NumpyBook:
    """A C-backed variant: per side, sorted ``numpy`` arrays of prices and sizes updated per delta.

    Each delta is turned into arrays, matched with ``searchsorted``, and applied with vectorized
    assignment, ``np.delete`` and ``np.insert``: the work is in C, but every delta pays a dozen numpy
    calls and a list-to-array conversion.
    """

    def __init__(self, snap: BookSnapshot) -> None:
        import numpy as np

        self.np = np
        b = np.array(sorted(snap.bids), dtype=float).reshape(-1, 2)
        a = np.array(sorted(snap.asks), dtype=float).reshape(-1, 2)
        self.bp, self.bs = b[:, 0].copy(), b[:, 1].copy()
        self.ap, self.asz = a[:, 0].copy(), a[:, 1].copy()

    def _side(self, prices: Any, sizes: Any, levels: list[tuple[float, float]]) -> tuple[Any, Any]:
        np = self.np
        if not levels:
            return prices, sizes
        upd = dict(levels)  # later entries win, as in list order
        lv = np.array(list(upd.items()), dtype=float)
        p, s = lv[:, 0], lv[:, 1]
        idx = np.searchsorted(prices, p)
        inside = idx < len(prices)
        found = np.zeros(len(p), dtype=bool)
        found[inside] = prices[idx[inside]] == p[inside]
        sizes = sizes.copy()
        sizes[idx[found]] = s[found]
        keep = sizes != 0.0
        prices, sizes = prices[keep], sizes[keep]
        new = ~found & (s != 0.0)
        if new.any():
            order = np.argsort(p[new])
            new_p, new_s = p[new][order], s[new][order]
            ins = np.searchsorted(prices, new_p)
            prices = np.insert(prices, ins, new_p)
            sizes = np.insert(sizes, ins, new_s)
        return prices, sizes

    def apply(self, d: BookDelta) -> None:
        self.bp, self.bs = self._side(self.bp, self.bs, d.bids)
        self.ap, self.asz = self._side(self.ap, self.asz, d.asks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deltas", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compare", action="store_true", help="also time SortedDict and numpy variants")
    args = ap.parse_args()

    snap_frame, frames = generate_frames(args.deltas)
    t0 = time.perf_counter()
    deltas = to_deltas(frames)
    decode_s = time.perf_counter() - t0
    level_updates = sum(len(d.bids) + len(d.asks) for d in deltas)

    def run_book() -> float:
        book, _ = make_book(snap_frame)
        apply = book.apply_delta
        gc.disable()
        t = time.perf_counter()
        for d in deltas:
            apply(d)
        dt = time.perf_counter() - t
        gc.enable()
        assert not book.is_crossed()
        return dt

    def run_other(cls: Any) -> float:
        _, snap = make_book(snap_frame)
        other = cls(snap)
        apply = other.apply
        gc.disable()
        t = time.perf_counter()
        for d in deltas:
            apply(d)
        dt = time.perf_counter() - t
        gc.enable()
        return float(dt)

    def run_tracked() -> float:
        book, _ = make_book(snap_frame)
        book.track_depth(10.0)
        apply = book.apply_delta
        gc.disable()
        t = time.perf_counter()
        for d in deltas:
            apply(d)
        dt = time.perf_counter() - t
        gc.enable()
        return dt

    print(f"deltas: {len(deltas)}, level updates: {level_updates} (20 + 20 per delta, ~1000-level book)")
    decode_rate = level_updates / decode_s / 1e6
    print(f"msgspec decode (context, not timed below): {decode_rate:.2f} M level updates/s")
    for label, on in (("C loop", True), ("pure Python", False)):
        if use_speedups(on) != on:
            print(f"L2Book apply, {label}: not built (pip install -e . needs a C compiler)")
            continue
        book_s = _best_of(args.repeat, run_book)
        tracked_s = _best_of(args.repeat, run_tracked)
        print(f"L2Book apply, {label + ':':13s} {level_updates / book_s / 1e6:.2f} M level updates/s "
              f"({book_s / len(deltas) * 1e6:.2f} us per delta); with a 10 bps depth tracker "
              f"{level_updates / tracked_s / 1e6:.2f} M")
    use_speedups(True)
    if args.compare:
        others: list[tuple[str, Any]] = [
            ("sortedcontainers.SortedDict", SortedDictBook), ("numpy sorted arrays (C)", NumpyBook)
        ]
        for label, cls in others:
            other_s = min(run_other(cls) for _ in range(args.repeat))
            print(f"{label:27s}: {level_updates / other_s / 1e6:.2f} M level updates/s")
    _memory(snap_frame, deltas)


def _rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory(snap_frame: bytes, deltas: list[BookDelta]) -> None:
    """Bytes held by one 1000 + 1000-level book, and resident growth for 100 books after the deltas."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    book, snap = make_book(snap_frame)
    del snap  # the book keeps the floats it needs; the event's lists go
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"memory: one book of {book.bid_count} bids + {book.ask_count} asks holds {held / 1024:.0f} KiB "
          f"(tracemalloc)")
    if not sys.platform.startswith("linux"):
        return
    gc.collect()
    rss0 = _rss_bytes()
    books = [make_book(snap_frame)[0] for _ in range(100)]
    for b in books:
        for d in deltas[:2000]:
            b.apply_delta(d)
    gc.collect()
    grown = _rss_bytes() - rss0
    levels = sum(b.bid_count + b.ask_count for b in books)
    print(f"memory: 100 books ({levels} levels in all, after 2000 deltas each) add {grown / 2**20:.1f} MiB resident")


if __name__ == "__main__":
    main()
