"""Resident memory over an hour of simulated flow on 100 symbols with 1000-level books: it must stay flat.

The engine is built as in ``e2e_replay`` (settings and plugins, the Binance client's own frame handler,
the imbalance strategy on every symbol, risk gate, paper executor, portfolio, SQLite journal), with 100
symbols whose books start from 1000-level snapshots. Each symbol gets one diff per 100 ms of event time
(Binance's ``@100ms`` stream), ``--minutes`` of it, generated on the fly so the benchmark itself holds
no frames; the mid is mean-reverting so each book keeps about its 1000 levels per side. Frames are
handed over in 64 KiB bursts with an event-loop turn between them, as a connection delivers them.

Resident memory (``VmRSS``) is sampled every simulated minute. The verdict compares the end with the
sample after ``--warmup-minutes`` (caches and the journal's page cache fill in the first minutes):
growth beyond 5% fails. Two phases, each in a fresh engine: ``quiet`` (the strategy reads every book
and signal and never trades: the market-data path alone) and ``trading`` (the imbalance strategy as
configured in ``e2e_replay``: thousands of orders an hour, whose finished orders the order tracker
and the paper venue keep for look-ups: the last 1,000 each, and any finished in the last minute).

Run: ``python benchmarks/memory_flat.py [--symbols 100] [--minutes 60] [--levels 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import time
from pathlib import Path

from bare_reference import START_MS, iter_diff_bodies
from e2e_replay import ReplayRig, peak_rss_mb

__all__ = ["main", "rss_mb"]

_STEP_MS = 100
_CHUNK_BYTES = 65_536


def rss_mb() -> float:
    """Current resident memory of this process, MB (Linux ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def symbol_names(n: int) -> list[str]:
    return [f"S{i:03d}USDT" for i in range(n)]


def _frame(symbol: str, stream: str, ms: int, first: int, last: int, body: str) -> bytes:
    return (f'{{"stream":"{stream}@depth@100ms","data":{{"e":"depthUpdate","E":{ms},"s":"{symbol}",'
            f'"U":{first},"u":{last},{body}}}}}').encode()


async def run(symbols: list[str], minutes: int, levels: int, warmup_minutes: int, entry_threshold: float) -> None:
    streams = [s.lower() for s in symbols]
    bodies = iter_diff_bodies(levels, seed=11, mean_revert=True)
    last_u = dict.fromkeys(symbols, 1)
    updates, body = next(bodies)
    first_frames = []
    for s, st in zip(symbols, streams, strict=True):
        first_frames.append(_frame(s, st, START_MS, 2, 1 + updates, body))
        last_u[s] = 1 + updates
    rig = await ReplayRig.start(symbols, first_frames, entry_threshold=entry_threshold)
    trading = "trading" if entry_threshold < 1.0 else "not trading (entry_threshold = 1.0)"
    print(f"{len(symbols)} symbols, strategy {trading}:")
    feed = rig.feed
    samples: list[tuple[int, float]] = [(0, rss_mb())]
    steps_per_minute = 60_000 // _STEP_MS
    size = 0
    frames = 0
    t0 = time.perf_counter()
    try:
        for step in range(1, minutes * steps_per_minute + 1):
            ms = START_MS + step * _STEP_MS
            ns = ms * 1_000_000
            updates, body = next(bodies)  # one diff shape per step, sent to every symbol
            for s, st in zip(symbols, streams, strict=True):
                first = last_u[s] + 1
                last_u[s] = last = first + updates - 1
                frame = _frame(s, st, ms, first, last, body)
                feed(frame, ns)
                frames += 1
                size += len(frame)
                if size >= _CHUNK_BYTES:
                    size = 0
                    await asyncio.sleep(0)
            if step % steps_per_minute == 0:
                await asyncio.sleep(0)
                samples.append((step // steps_per_minute, rss_mb()))
                minute, mb = samples[-1]
                print(f"  minute {minute:3d}: {mb:7.1f} MB resident   ({frames:,} frames, "
                      f"{frames / (time.perf_counter() - t0):,.0f} frames/s)", flush=True)
        engine = rig.engine
        books = [slot.book for slot in engine.slots.values()]
        levels_now = sum(b.bid_count + b.ask_count for b in books) / len(books)
        print(f"  books: {len(books)}, {levels_now:.0f} levels each on average; {rig.summary()}; "
              f"finished orders kept: {len(engine.orders._finished)}, "
              f"gc objects tracked: {len(gc.get_objects()):,} (+ {gc.get_freeze_count():,} frozen at start-up)")
    finally:
        await rig.close()
    base = next((mb for minute, mb in samples if minute == warmup_minutes), samples[0][1])
    end = samples[-1][1]
    growth = (end - base) / base * 100
    verdict = "flat" if growth <= 5.0 else "GROWING"
    print(f"memory_flat, strategy {trading}: {len(symbols)} symbols x 1000 levels, {minutes} simulated minutes, "
          f"{levels} + {levels} levels per diff: {base:.1f} MB after minute {warmup_minutes} -> {end:.1f} MB "
          f"at the end ({growth:+.1f}%): {verdict}; peak {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--warmup-minutes", type=int, default=10)
    parser.add_argument("--phases", nargs="+", choices=["quiet", "trading"], default=["quiet", "trading"],
                        help="quiet: the strategy reads every book but never trades; trading: as configured")
    args = parser.parse_args()
    if len(args.phases) > 1:
        # Each phase in a process of its own: memory one phase freed is not handed back to the system,
        # and would hide the next phase's growth.
        for phase in args.phases:
            subprocess.run([sys.executable, __file__, "--symbols", str(args.symbols), "--minutes", str(args.minutes),
                            "--levels", str(args.levels), "--warmup-minutes", str(args.warmup_minutes),
                            "--phases", phase], check=True)
        return
    asyncio.run(run(symbol_names(args.symbols), args.minutes, args.levels, min(args.warmup_minutes, args.minutes),
                    1.0 if args.phases[0] == "quiet" else 0.4))


if __name__ == "__main__":
    main()
