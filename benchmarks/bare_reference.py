"""The lean pipeline botframe is measured against, written plainly, and the frames every e2e benchmark uses.

Issue 8 sets botframe's targets as ratios to "a lean hand-written pipeline (msgspec decode, dict + bisect
book, top-10 imbalance, a trivial strategy, a risk check, a paper order)". This module is that
pipeline, in one class with no framework, no plugin, no event object and no journal, so that every e2e
benchmark can run it on the same frames in the same process and report botframe's figures as a ratio
(absolute figures on a shared machine drift from minute to minute; ratios measured side by side hold).

Per frame the bare pipeline does what any trading loop must: decode the combined-stream frame into a
msgspec struct with the numbers converted in C, check the update ids are contiguous, apply the levels
to a ``dict`` + ``bisect`` book, sum the top 10 sizes of each side, and let a trivial strategy decide:
when the imbalance passes +-0.4, the cool-down (event time) has passed and the position limit allows,
a risk check (notional and position limits) passes an order that a paper venue fills at once at the
touch.

Frames (:func:`generate_frames`) follow Binance's combined diff-depth stream
(``{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":..,"s":..,"U":..,"u":..,"b":..,"a":..}}``)
over a book of 1000 levels per side on a 0.01 grid, seeded: each frame changes ``levels`` bids and
``levels`` asks (exponential distance from the touch, a quarter of them deletes), the mid walks one tick
in a tenth of the frames (crossed levels deleted in the same frame, as Binance does) and event time
moves ``step_ms`` per frame. :func:`snapshot_body` is the matching REST depth answer.

Run: ``python benchmarks/bare_reference.py [--frames N] [--levels L]`` prints frames/s and per-frame
latency of the bare pipeline alone.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import random
import time
from bisect import bisect_left, insort
from collections.abc import Iterator

import msgspec

__all__ = [
    "BOOK_LEVELS",
    "START_MS",
    "SYMBOL",
    "BarePipeline",
    "exchange_info_body",
    "generate_frames",
    "iter_diff_bodies",
    "run_bare",
    "snapshot_body",
]

SYMBOL = "BTCUSDT"
BOOK_LEVELS = 1000
START_MS = 1_700_000_000_000
_MID_TICKS = 6_000_000  # 60,000.00 on a 0.01 grid
_TICK = 0.01


def _px(ticks: int) -> str:
    return f"{ticks * _TICK:.8f}"


def _qty(units: int) -> str:
    return f"{units / 1000:.8f}"


def snapshot_body(last_update_id: int = 2, seed: int = 7) -> bytes:
    """The REST ``/api/v3/depth`` answer the frames of :func:`generate_frames` continue from (the first
    frame, ``U=2``, bridges ``lastUpdateId=2`` as Binance's sync rule wants)."""
    rng = random.Random(seed * 1_000_003)
    bids = [[_px(_MID_TICKS - 1 - i), _qty(rng.randint(1, 5000))] for i in range(BOOK_LEVELS)]
    asks = [[_px(_MID_TICKS + 1 + i), _qty(rng.randint(1, 5000))] for i in range(BOOK_LEVELS)]
    return json.dumps({"lastUpdateId": last_update_id, "bids": bids, "asks": asks}).encode()


def exchange_info_body(symbols: list[str] | None = None) -> bytes:
    """The REST ``/api/v3/exchangeInfo`` answer listing ``symbols`` (``XYZUSDT``; tick 0.01, lot 0.00001)."""
    return json.dumps({"symbols": [{
        "symbol": s, "status": "TRADING", "baseAsset": s.removesuffix("USDT"), "quoteAsset": "USDT",
        "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01000000"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.00001000"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000"}],
    } for s in (symbols or [SYMBOL])]}).encode()


def generate_frames(n: int, levels: int, *, seed: int = 7, step_ms: int = 10, symbol: str = SYMBOL,
                    first_update_id: int = 2) -> list[bytes]:
    """``n`` combined-stream depthUpdate frames of ``levels`` bids + ``levels`` asks each (see above).

    Event time ``E`` is ``START_MS + i * step_ms`` for the ``i``-th frame.
    """
    head = f'{{"stream":"{symbol.lower()}@depth@100ms","data":{{"e":"depthUpdate","E":'
    frames = []
    u = first_update_id - 1
    for i, (updates, body) in enumerate(itertools.islice(iter_diff_bodies(levels, seed=seed), n)):
        first = u + 1
        u = first + updates - 1
        frames.append(f'{head}{START_MS + i * step_ms},"s":"{symbol}","U":{first},"u":{u},{body}}}}}'.encode())
    return frames


def iter_diff_bodies(levels: int, *, seed: int = 7, mean_revert: bool = False) -> Iterator[tuple[int, str]]:
    """Endless diffs as ``(updates folded in, '"b":[..],"a":[..]')``: the part of a frame after ``u``.

    With ``mean_revert`` the mid is pulled back toward its start and no level is touched farther than
    the snapshot reaches, so a book fed for hours keeps about its 1000 levels per side instead of
    collecting the levels a wandering mid leaves behind.
    """
    rng = random.Random(seed)
    start = mid = _MID_TICKS  # best bid mid - 1 at most, best ask mid + 1 at least
    bids = {mid - 1 - i for i in range(BOOK_LEVELS)}
    asks = {mid + 1 + i for i in range(BOOK_LEVELS)}
    mean = 60.0 if levels >= 10 else 6.0  # small diffs touch the levels near the touch
    reach = BOOK_LEVELS - 1 if mean_revert else BOOK_LEVELS + 200  # farthest level touched, in ticks
    while True:
        b: dict[int, int] = {}
        a: dict[int, int] = {}
        r = rng.random()
        up = 0.05 - (0.002 * (mid - start) if mean_revert else 0.0)
        if r < up:  # mid up a tick: asks at or below it go away in this frame
            mid += 1
            for t in [t for t in asks if t <= mid]:
                a[t] = 0
                asks.discard(t)
        elif up <= r < 0.10:
            mid -= 1
            for t in [t for t in bids if t >= mid]:
                b[t] = 0
                bids.discard(t)
        while len(b) < levels:
            t = mid - 1 - min(int(rng.expovariate(1 / mean)), reach)
            q = 0 if rng.random() < 0.25 else rng.randint(1, 5000)
            b[t] = q
            (bids.add if q else bids.discard)(t)
        while len(a) < levels:
            t = mid + 1 + min(int(rng.expovariate(1 / mean)), reach)
            q = 0 if rng.random() < 0.25 else rng.randint(1, 5000)
            a[t] = q
            (asks.add if q else asks.discard)(t)
        updates = 1 + rng.randint(0, 3)  # Binance folds several updates into one diff
        bl = ",".join(f'["{_px(t)}","{_qty(q)}"]' for t, q in b.items())
        al = ",".join(f'["{_px(t)}","{_qty(q)}"]' for t, q in a.items())
        yield updates, f'"b":[{bl}],"a":[{al}]'


# -- the bare pipeline ------------------------------------------------------------------------------------


class _Diff(msgspec.Struct, gc=False):
    E: int
    s: str
    U: int
    u: int
    b: list[tuple[float, float]]
    a: list[tuple[float, float]]


class _Frame(msgspec.Struct, gc=False):
    data: _Diff


class _Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]


class BarePipeline:
    """Decode, contiguity check, dict + bisect book, top-10 imbalance, strategy, risk check, paper fill."""

    def __init__(self, snapshot: bytes, *, threshold: float = 0.4, qty: float = 0.01,
                 max_position: float = 0.05, max_notional: float = 10_000.0, cooldown_ms: int = 1000) -> None:
        snap = msgspec.json.decode(snapshot, type=_Snapshot, strict=False)
        self.decode = msgspec.json.Decoder(_Frame, strict=False).decode
        self.bid_sizes = {p: s for p, s in snap.bids if s}
        self.bid_prices = sorted(self.bid_sizes)  # ascending: best last
        self.ask_sizes = {p: s for p, s in snap.asks if s}
        self.ask_prices = sorted(self.ask_sizes)  # ascending: best first
        self.last_u = snap.lastUpdateId
        self.threshold = threshold
        self.qty = qty
        self.max_position = max_position
        self.max_notional = max_notional
        self.cooldown_ms = cooldown_ms
        self.next_order_ms = 0
        self.position = 0.0
        self.cash = 0.0
        self.orders = 0
        self.denied = 0
        self.gaps = 0

    def on_frame(self, frame: bytes) -> None:
        m = self.decode(frame).data
        if m.u <= self.last_u:
            return
        if self.last_u + 1 < m.U:
            self.gaps += 1  # a real loop would resync here; the generated frames have no gap
        self.last_u = m.u
        sizes = self.bid_sizes
        prices = self.bid_prices
        for p, s in m.b:
            if s:
                if p not in sizes:
                    insort(prices, p)
                sizes[p] = s
            elif p in sizes:
                del sizes[p]
                del prices[bisect_left(prices, p)]
        sizes = self.ask_sizes
        prices = self.ask_prices
        for p, s in m.a:
            if s:
                if p not in sizes:
                    insort(prices, p)
                sizes[p] = s
            elif p in sizes:
                del sizes[p]
                del prices[bisect_left(prices, p)]
        bp = self.bid_prices
        ap = self.ask_prices
        if not bp or not ap:
            return
        bs = self.bid_sizes
        as_ = self.ask_sizes
        qb = 0.0
        for p in bp[-10:]:
            qb += bs[p]
        qa = 0.0
        for p in ap[:10]:
            qa += as_[p]
        imbalance = (qb - qa) / (qb + qa)
        # The trivial strategy.
        if self.next_order_ms > m.E:
            return
        if imbalance > self.threshold and self.position + self.qty <= self.max_position:
            self._order(1.0, ap[0], m.E)
        elif imbalance < -self.threshold and self.position - self.qty >= -self.max_position:
            self._order(-1.0, bp[-1], m.E)

    def _order(self, sign: float, price: float, now_ms: int) -> None:
        # The risk check, then a paper venue that fills at the touch at once.
        if self.qty * price > self.max_notional or abs(self.position + sign * self.qty) > self.max_position:
            self.denied += 1
            return
        self.orders += 1
        self.position += sign * self.qty
        self.cash -= sign * self.qty * price
        self.next_order_ms = now_ms + self.cooldown_ms


def run_bare(snapshot: bytes, frames: list[bytes]) -> tuple[float, BarePipeline]:
    """Seconds the bare pipeline takes over ``frames`` (the garbage collector on, as in a real run)."""
    pipe = BarePipeline(snapshot)
    on_frame = pipe.on_frame
    gc.collect()
    t0 = time.perf_counter()
    for frame in frames:
        on_frame(frame)
    return time.perf_counter() - t0, pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--levels", type=int, nargs="+", default=[20, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    snapshot = snapshot_body()
    for levels in args.levels:
        frames = generate_frames(args.frames, levels)
        best = min(run_bare(snapshot, frames)[0] for _ in range(args.repeat))
        _t, pipe = run_bare(snapshot, frames)
        print(f"bare reference, {levels} + {levels} levels: {len(frames) / best:>10,.0f} frames/s "
              f"({best / len(frames) * 1e6:.2f} us/frame; orders {pipe.orders}, gaps {pipe.gaps})")


if __name__ == "__main__":
    main()
