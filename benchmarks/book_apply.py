"""Throughput of ``L2Book.apply_delta`` (and of the signals on top) on Binance-style depth diffs.

Data: a 1000-level book per side on a 0.01 grid, then deltas of 20 bid + 20 ask levels in Binance's
``depthUpdate`` format (``{"e":"depthUpdate","U":..,"u":..,"b":[["price","qty"],..],"a":[..]}``),
generated with a fixed seed: levels near the touch change most often (exponential distance from mid,
mean 60 ticks), about a quarter of updated levels are deletes (qty "0.00000000"), and the mid walks by
a tick now and then (the levels it crosses are deleted in the same delta, as Binance does). Frames are
decoded by msgspec into float levels before timing, as a venue adapter would, so the figures are the
book's own cost.

Run: ``python benchmarks/book_apply.py [--deltas N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import msgspec

from botframe.book import L2Book
from botframe.events import BookDelta, BookSnapshot

__all__ = ["DepthUpdate", "generate_frames", "main", "make_book", "to_deltas"]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deltas", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
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

    book_s = _best_of(args.repeat, run_book)
    print(f"deltas: {len(deltas)}, level updates: {level_updates} (20 + 20 per delta, 1000-level book)")
    decode_rate = level_updates / decode_s / 1e6
    print(f"msgspec decode (context, not timed below): {decode_rate:.2f} M level updates/s")
    print(f"book apply:                {level_updates / book_s / 1e6:.2f} M level updates/s "
          f"({book_s / len(deltas) * 1e6:.2f} us per delta)")


if __name__ == "__main__":
    main()
