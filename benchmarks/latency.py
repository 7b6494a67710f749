"""Frame-to-decision latency at a paced 10,000 frames/s: p50, p99, p99.9 and max, botframe and the bare reference.

The engine is built as in ``e2e_replay`` (settings and plugins, the Binance client's own frame handler,
the imbalance strategy, risk gate, paper executor, journal; simulated clock at each frame's event
time). Frames are handed over on a wall-clock schedule, one every 100 us, as a live connection at that
rate delivers them: each frame arrives alone, so the engine shows the book to the strategy on the next
turn of the event loop (its burst rule finds nothing else queued). The latency of a frame runs from the
moment its bytes are handed to the client (``perf_counter_ns`` just before the handler is called) to
the moment the strategy's ``on_book`` has returned, the decision made (an order submitted through risk
gate and paper executor, or none). Frames whose book the strategy did not see (none here once LIVE)
are not counted. The figures are also split by whether the decision sent an order: an order is
journaled and committed (SQLite) before the risk gate sees it, which sets the tail.

Two figures are printed per run. "To decision": from the frame's bytes to the strategy's decision:
its ``on_book`` returned without an order, or its order intent reached the engine (``Engine.submit``
called: the issue's "order intent decided"). "To order out": to ``on_book`` returned, the order (if
any) through the journal, the whole risk gate, the order tracker and the paper executor's submit,
i.e. handed to the venue. Orders are rare (one frame in ~300 here), so their path runs cold, which
sets the tail of the second figure.

The bare reference is paced the same way; its decision is inside its single per-frame call.

Run: ``python benchmarks/latency.py [--frames N] [--rate 10000] [--levels 20 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

from bare_reference import SYMBOL, BarePipeline, generate_frames, snapshot_body
from e2e_replay import ReplayRig, event_times, peak_rss_mb

from botframe.book import L2Book

__all__ = ["main", "percentiles"]


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    """p50, p99, p99.9 and max of ``samples_ns``, in microseconds."""
    s = sorted(samples_ns)
    n = len(s)

    def at(q: float) -> float:
        return s[min(n - 1, int(q * n))] / 1000

    return {"p50": at(0.50), "p99": at(0.99), "p99.9": at(0.999), "max": s[-1] / 1000}


class _DecisionClock:
    """Stands in for a strategy runner: calls the real one, then notes when its decision was made."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self.decided_ns = 0

    def book(self, book: L2Book) -> None:
        self._runner.book(book)
        self.decided_ns = time.perf_counter_ns()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)


def _wait_until(due_ns: int) -> None:
    # Busy-wait: a sleep's wake-up jitter (tens of microseconds) is larger than what is measured.
    clock = time.perf_counter_ns
    while clock() < due_ns:
        pass


async def botframe_latencies(frames: list[bytes], interval_ns: int,
                             warmup: int) -> tuple[list[int], list[int], ReplayRig]:
    """Latencies of frames whose decision sent no order, and of frames whose decision sent one."""
    times = event_times(len(frames))
    rig = await ReplayRig.start([SYMBOL], frames[:1])
    slot = next(iter(rig.engine.slots.values()))
    probe = _DecisionClock(slot.runners[0])
    slot.runners[0] = probe  # type: ignore[call-overload]  # a transparent stand-in
    engine = rig.engine
    submit = engine.submit
    intent_ns = [0]

    def stamped_submit(intent: Any) -> bool:
        # The moment the strategy decided on an order: its intent reaches the engine.
        if not intent_ns[0]:
            intent_ns[0] = time.perf_counter_ns()
        return submit(intent)

    engine.submit = stamped_submit  # type: ignore[method-assign]
    feed = rig.feed
    gate = rig.engine.gate
    clock = time.perf_counter_ns
    out: list[int] = []
    with_order: list[int] = []
    to_intent: list[int] = []
    gc.collect()
    next_due = clock() + interval_ns
    try:
        for i in range(1, len(frames)):
            _wait_until(next_due)
            next_due += interval_ns
            probe.decided_ns = 0
            intent_ns[0] = 0
            intents = gate.checked
            t0 = clock()
            feed(frames[i], times[i])
            await asyncio.sleep(0)  # the loop turn after a frame: an end-of-burst flush would run here
            if probe.decided_ns and i > warmup:
                if gate.checked != intents:
                    with_order.append(probe.decided_ns - t0)
                    to_intent.append(intent_ns[0] - t0)
                else:
                    out.append(probe.decided_ns - t0)
    finally:
        await rig.close()
    return out, with_order, to_intent, rig


def bare_latencies(frames: list[bytes], interval_ns: int, warmup: int) -> list[int]:
    pipe = BarePipeline(snapshot_body())
    on_frame: Callable[[bytes], None] = pipe.on_frame
    clock = time.perf_counter_ns
    out: list[int] = []
    gc.collect()
    next_due = clock() + interval_ns
    for i in range(1, len(frames)):
        _wait_until(next_due)
        next_due += interval_ns
        t0 = clock()
        on_frame(frames[i])
        t1 = clock()
        if i > warmup:
            out.append(t1 - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=10_000, help="frames per second")
    parser.add_argument("--levels", type=int, nargs="+", default=[20, 2])
    parser.add_argument("--warmup", type=int, default=1000, help="frames not counted at the start")
    args = parser.parse_args()
    interval_ns = 1_000_000_000 // args.rate
    for levels in args.levels:
        frames = generate_frames(args.frames, levels)
        quiet, ordering, to_intent, rig = asyncio.run(botframe_latencies(frames, interval_ns, args.warmup))
        bare = bare_latencies(frames, interval_ns, args.warmup)
        print(f"latency, {levels} + {levels} levels, {args.rate:,} frames/s, {len(quiet) + len(ordering):,} frames, "
              f"microseconds:")
        rows = (("botframe, to decision", quiet + to_intent),
                ("botframe, to order out", quiet + ordering),
                ("  no order sent", quiet),
                (f"  order intent ({len(ordering)})", to_intent),
                (f"  order out ({len(ordering)})", ordering),
                ("bare reference", bare))
        for label, samples in rows:
            p = percentiles(samples)
            print(f"  {label:22s} p50 {p['p50']:7.1f}   p99 {p['p99']:7.1f}   p99.9 {p['p99.9']:7.1f}   "
                  f"max {p['max']:8.1f}")
        print(f"  botframe run: {rig.summary()}")
    print(f"peak resident memory: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
