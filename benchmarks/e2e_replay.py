"""Frames per second through the whole framework in one process, as a ratio to the bare reference.

What runs is the real thing, built the way ``botframe run`` builds it: settings loaded from a TOML
config through the plugin system (entry points), an :class:`~botframe.engine.Engine` on a
:class:`~botframe.clock.SimulatedClock`, the Binance venue plugin's own client, the imbalance strategy
(levels = 10: a distance-weighted top-10 imbalance and the microprice), the risk gate with every
built-in check, the paper executor, the portfolio and the SQLite journal (``fsync = "batch"``).
Logging is configured as the CLI does at level ``info`` (to ``/dev/null``), so any per-event INFO line
would be paid for.

Only the network is left out: the client's REST calls (``exchangeInfo`` and one depth snapshot, at
start-up) are answered from memory, and each generated frame is handed to the client's frame handler,
the method its WebSocket calls for every message. From there on every step is the production path::

    frame bytes -> BinanceDataClient._on_frame (msgspec decode, BookSync id checks, BookDelta)
      -> EventBus.publish -> Engine._on_delta (L2Book.apply_delta, SignalSet.on_delta)
      -> StrategyRunner.book -> ImbalanceStrategy.on_book -> StrategyContext -> Engine.submit
      -> Journal -> RiskGate (pluggy botframe_check_order) -> OrderTracker -> PaperExecutor
      -> PaperExecutor._on_book (the fill engine) -> Engine.report -> Journal, Portfolio, strategy

The clock is set to each frame's event time before the frame is handed over (as a live clock would
have moved), and the journal is flushed every 50 ms of event time (the engine's flush loop).

Frames: :func:`bare_reference.generate_frames` (seeded; 20 + 20 and 2 + 2 levels on a 1000-level
book). Each configuration runs ``--repeat`` times, alternating with the bare reference so both see
the same machine load; the best run of each is reported, with the ratio.

The breakdown splits the per-frame cost into decode alone (msgspec into the Binance structs), book
apply + signals alone (the same ``SignalSet`` specs on pre-decoded deltas), the replay driver alone
(this script's loop run with a no-op frame handler: chunking, the simulated clock, the journal tick,
event-loop turns; it stands in for the WebSocket's receive loop), and the rest: the framework's own
overhead (sync checks, event, bus, dispatch, strategy, paper executor, order path). The overhead is
printed without the driver, and with it in brackets.

Run: ``python benchmarks/e2e_replay.py [--frames N] [--levels 20 2] [--repeat R] [--profile]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import io
import os
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bare_reference import START_MS, SYMBOL, exchange_info_body, generate_frames, run_bare, snapshot_body

from botframe.book import L2Book
from botframe.clock import SimulatedClock
from botframe.engine import Engine
from botframe.events import BookDelta, BookHealth
from botframe.log import configure_logging
from botframe.plugins import PluginSystem
from botframe.settings import load_settings
from botframe.signals import SignalSet
from botframe.streams import RestClient

# The bundled plugins are imported by name (as botframe.testing does): they are installed under
# ``botframe_plugins`` through an import hook that type checkers do not follow.
_binance_data: Any = importlib.import_module("botframe_plugins.binance.data")
_binance_parsing: Any = importlib.import_module("botframe_plugins.binance.parsing")

__all__ = ["ReplayRig", "config_text", "main", "unified"]

_NS_PER_MS = 1_000_000
_FLUSH_EVERY_NS = 50 * _NS_PER_MS  # the engine's journal flush loop runs every 50 ms
_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 (log lines are formatted, then dropped)


def unified(venue_symbol: str) -> str:
    """``BTCUSDT`` -> ``BTC/USDT`` (the generated symbols all quote USDT)."""
    return f"{venue_symbol.removesuffix('USDT')}/USDT"


def config_text(symbols: Sequence[str], journal_path: Path, *, fsync: str = "batch",
                entry_threshold: float = 0.4) -> str:
    """The TOML config of a replay: Binance spot, the imbalance strategy on every symbol, paper, journal.

    ``entry_threshold = 1.0`` makes a strategy that reads every book and signal but never trades.
    """
    names = ", ".join(f'"{unified(s)}"' for s in symbols)
    return f"""
mode = "paper"
executor = "paper"

[log]
level = "info"

[journal]
enabled = true
path = "{journal_path}"
fsync = "{fsync}"

[portfolio]
starting_cash = {{ USDT = "10000000" }}

[venues.binance]
market = "spot"
ws_url = "ws://127.0.0.1:9"
rest_url = "http://127.0.0.1:9"
symbols = [{names}]
trades = false
stale_after_ms = 0

[strategies.imbalance]
venue = "binance"
symbols = [{names}]
levels = 10
entry_threshold = {entry_threshold}
exit_threshold = 0.1
order_qty = "0.01"
max_position = "0.05"
max_slippage_bps = 5.0
cooldown_ms = 1000

[executors.paper]
latency_ms = 5.0
report_latency_ms = 5.0

[risk]
max_order_notional = "10000"
stale_after_ms = 5000
"""


class _CannedRest(RestClient):
    """The client's REST calls answered from memory (start-up only: exchangeInfo, depth snapshots)."""

    def __init__(self, bodies: Mapping[str, bytes], snapshot: bytes, clock: SimulatedClock) -> None:
        super().__init__(clock=clock)
        self._bodies = bodies
        self._snapshot = snapshot
        self.snapshots = 0

    async def get(self, url: str, params: Mapping[str, str | int] | None = None, *,
                  max_attempts: int | None = -1,
                  on_retry: Callable[[BaseException], None] | None = None) -> bytes:
        if url.endswith("/exchangeInfo"):
            return self._bodies["exchangeInfo"]
        self.snapshots += 1
        return self._snapshot


class ReplayRig:
    """An engine built from settings and plugins, its Binance client live, ready to take frames.

    ``await ReplayRig.start(...)``, then ``rig.feed(frame, event_time_ns)`` per frame (or
    :meth:`run` for a list), then ``await rig.close()``.
    """

    def __init__(self, engine: Engine, client: Any, clock: SimulatedClock, workdir: Path) -> None:
        self.engine = engine
        self.client = client
        self.clock = clock
        self.workdir = workdir
        self.on_frame = client._on_frame
        self._next_flush_ns = 0

    @classmethod
    async def start(cls, symbols: Sequence[str], first_frames: Sequence[bytes], *, fsync: str = "batch",
                    log_stream: Any = None, entry_threshold: float = 0.4) -> ReplayRig:
        """Build and start the engine for ``symbols``; ``first_frames`` (one per symbol) make them LIVE."""
        workdir = Path(tempfile.mkdtemp(prefix="botframe-e2e-"))
        config = workdir / "config.toml"
        config.write_text(config_text(symbols, workdir / "journal.sqlite", fsync=fsync,
                                      entry_threshold=entry_threshold))
        configure_logging("info", stream=log_stream if log_stream is not None else _DEVNULL)
        plugins = PluginSystem()
        plugins.load_entry_points()
        settings = load_settings(config, plugins)
        clock = SimulatedClock(START_MS * _NS_PER_MS)
        engine = Engine(settings, plugins, clock=clock, out=io.StringIO(), live_view=False)
        # Engine._start without the network: hooks, executor, strategies (venue tasks are driven here).
        engine.hooks.startup(engine)
        await engine.executor.start()
        for runner in engine._runners.values():
            runner.start()
        client: Any = engine._venue_clients["binance"][0]
        assert isinstance(client, _binance_data.BinanceDataClient)
        rest = _CannedRest({"exchangeInfo": exchange_info_body(list(symbols))}, snapshot_body(), clock)
        client._rest = rest
        client._rest_base = "http://127.0.0.1:9"
        await client._load_instruments(rest)
        client._connections = client._plan_connections("ws://127.0.0.1:9")
        for conn in client._connections:
            await client._on_connect(conn, None)  # the socket is not used
        rig = cls(engine, client, clock, workdir)
        for frame in first_frames:
            rig.on_frame(frame)  # the first diff of each symbol asks for a snapshot
        for _ in range(100):
            await asyncio.sleep(0)  # the snapshot tasks run
            if all(s.book.health is BookHealth.LIVE for s in engine.slots.values()):
                break
        not_live = [k for k, s in engine.slots.items() if s.book.health is not BookHealth.LIVE]
        if not_live:
            raise RuntimeError(f"books not LIVE after start-up: {not_live}")
        engine._freeze_startup_heap()  # as Engine._start does last
        return rig

    def feed(self, frame: bytes, event_time_ns: int) -> None:
        """One frame as the WebSocket would deliver it, with the clock moved to its event time."""
        self.clock.set(event_time_ns)
        self.on_frame(frame)
        if event_time_ns >= self._next_flush_ns:
            journal = self.engine.journal
            if journal is not None:
                journal.flush()
            self._next_flush_ns = event_time_ns + _FLUSH_EVERY_NS

    async def run(self, frames: Sequence[bytes], times_ns: Sequence[int], chunk_bytes: int = 65_536) -> float:
        """Feed every frame as a connection would deliver them; return the seconds taken.

        ``chunk_bytes > 0``: frames come in chunks of that many bytes (what one socket read hands the
        WebSocket library), and the event loop runs between chunks, as it does between reads: the
        engine shows each changed book to its strategies once per chunk. ``chunk_bytes == 0``: every
        frame is shown to the strategies before the next one is fed (``Engine.flush_books`` per frame),
        the cost of a feed slow enough that frames never queue up.
        """
        feed = self.feed
        flush = self.engine.flush_books
        t0 = time.perf_counter()
        if chunk_bytes > 0:
            size = 0
            for frame, ts in zip(frames, times_ns, strict=True):
                feed(frame, ts)
                size += len(frame)
                if size >= chunk_bytes:
                    size = 0
                    await asyncio.sleep(0)  # the loop turn between two reads: the engine flushes
            await asyncio.sleep(0)
        else:
            for i, (frame, ts) in enumerate(zip(frames, times_ns, strict=True)):
                feed(frame, ts)
                flush()
                if not i & 1023:
                    await asyncio.sleep(0)  # let the engine's own (now empty) flush run now and then
        return time.perf_counter() - t0

    async def close(self) -> None:
        if self.engine._heap_frozen:
            gc.unfreeze()
            self.engine._heap_frozen = False
        await self.engine.executor.stop()
        if self.engine.journal is not None:
            self.engine.journal.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def summary(self) -> str:
        e = self.engine
        return (f"orders {sum(e.orders.counts_by_status().values())}, fills {e._fills}, "
                f"denials {sum(e.gate.counts.values())}, journal rows {e.journal.written if e.journal else 0}")


def event_times(n: int, step_ms: int = 10) -> list[int]:
    """Event time (ns) of each generated frame."""
    return [(START_MS + i * step_ms) * _NS_PER_MS for i in range(n)]


async def run_botframe(frames: list[bytes], times: list[int], chunk_bytes: int) -> tuple[float, ReplayRig]:
    rig = await ReplayRig.start([SYMBOL], frames[:1])
    gc.collect()
    try:
        elapsed = await rig.run(frames[1:], times[1:], chunk_bytes)
    finally:
        await rig.close()
    return elapsed, rig


async def run_driver_only(frames: list[bytes], times: list[int], chunk_bytes: int) -> float:
    """Seconds the replay driver alone takes: ``ReplayRig.run`` with the frame handler a no-op.

    What is left is this script's own loop (chunking, moving the simulated clock, the journal tick,
    the event-loop turns between chunks): the stand-in for a WebSocket's receive loop, not work the
    framework does per frame. It is reported, and taken off the framework's overhead.
    """
    rig = await ReplayRig.start([SYMBOL], frames[:1])
    rig.on_frame = lambda frame: None
    gc.collect()
    try:
        return await rig.run(frames[1:], times[1:], chunk_bytes)
    finally:
        await rig.close()


class _Counted:
    """Counts the calls of one bound method (how often the engine refreshed the signals)."""

    def __init__(self, method: Callable[[], None]) -> None:
        self._method = method
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self._method()


def components(frames: list[bytes], rig_signals: SignalSet | None) -> tuple[float, float, float]:
    """Seconds for decode alone, book apply alone and the signals alone over ``frames``.

    Decode is the Binance plugin's own decoder. The book applies pre-decoded ``BookDelta``s to a fresh
    book with the same ``SignalSet`` specs the engine built (the per-event ``note_delta`` included, and
    the depth trackers the specs keep); the signals are the rest of ``on_delta`` (``refresh``): the
    same loop with ``on_delta`` instead of ``note_delta``, minus the book's time.
    """
    decode = _binance_parsing.FrameDecoder().decode
    gc.collect()
    t0 = time.perf_counter()
    for f in frames:
        decode(f)
    t_decode = time.perf_counter() - t0
    deltas: list[BookDelta] = []
    for f in frames:
        m = decode(f).data
        deltas.append(_binance_parsing.book_delta(m, "binance", "BTC/USDT", m.event_time_ms * _NS_PER_MS))
    snap = _binance_parsing.decode_depth_snapshot(snapshot_body())
    snapshot = _binance_parsing.book_snapshot(snap, "binance", "BTC/USDT", START_MS * _NS_PER_MS)
    specs = rig_signals.specs if rig_signals is not None else []
    timings = []
    for with_refresh in (False, True):
        book = L2Book("binance", "BTC/USDT")
        book.apply_snapshot(snapshot)
        signals = SignalSet(book, specs)
        signals.on_snapshot(snapshot)
        apply = book.apply_delta
        note = signals.note_delta
        gc.collect()
        t0 = time.perf_counter()
        if with_refresh:
            on_delta = signals.on_delta  # note_delta + refresh
            for d in deltas:
                apply(d)
                on_delta(d)
        else:
            for d in deltas:
                apply(d)
                note(d)
        timings.append(time.perf_counter() - t0)
    t_book, t_both = timings
    t_signals = max(0.0, t_both - t_book)
    return t_decode, t_book, t_signals


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(levels: int, n: int, repeat: int, chunk_bytes: int) -> None:
    """Run botframe (bursts and per frame) and the bare reference ``repeat`` times each, interleaved."""
    snapshot = snapshot_body()
    frames = generate_frames(n, levels)
    times = event_times(n)
    best = {"burst": float("inf"), "frame": float("inf"), "bare": float("inf"),
            "driver burst": float("inf"), "driver frame": float("inf")}
    refreshes = {"burst": 0, "frame": 0}
    rigs: dict[str, ReplayRig] = {}
    pipe = None
    for _ in range(repeat):
        t_bare, pipe = run_bare(snapshot, frames[1:])
        best["bare"] = min(best["bare"], t_bare)
        for mode, chunk in (("burst", chunk_bytes), ("frame", 0)):
            elapsed, rigs[mode] = asyncio.run(run_botframe(frames, times, chunk))
            best[mode] = min(best[mode], elapsed)
            driver = asyncio.run(run_driver_only(frames, times, chunk))
            best[f"driver {mode}"] = min(best[f"driver {mode}"], driver)
    assert pipe is not None
    for mode, chunk in (("burst", chunk_bytes), ("frame", 0)):
        refreshes[mode] = asyncio.run(count_refreshes(frames, times, chunk))
    slot = next(iter(rigs["frame"].engine.slots.values()))
    t_dec = t_book = t_sig = float("inf")
    for _ in range(repeat):
        d, b, g = components(frames[1:], slot.signals)
        t_dec, t_book, t_sig = min(t_dec, d), min(t_book, b), min(t_sig, g)
    per = n - 1
    us = 1e6 / per
    bare_rate = per / best["bare"]
    chunk_frames = chunk_bytes / (sum(map(len, frames)) / n)
    print(f"e2e_replay, {levels} + {levels} levels, {per:,} frames, best of {repeat}:")
    for mode, label in (("burst", f"botframe, {chunk_bytes // 1024} KiB bursts (~{chunk_frames:.0f} frames)"),
                        ("frame", "botframe, strategy on every frame")):
        rate = per / best[mode]
        print(f"  {label:42s} {rate:>9,.0f} frames/s {best[mode] * us:6.2f} us/frame "
              f"{rate / bare_rate:5.2f} x bare   {rigs[mode].summary()}")
    print(f"  {'bare reference':42s} {bare_rate:>9,.0f} frames/s {best['bare'] * us:6.2f} us/frame "
          f"{1.0:5.2f} x bare   orders {pipe.orders}")
    signal_names = ", ".join(slot.signals.names) if slot.signals else "none"
    print(f"  alone, per frame: decode {t_dec * us:.2f} us, book apply {t_book * us:.2f} us, "
          f"signals {t_sig * 1e6 / per:.2f} us per refresh ({signal_names})")
    for mode in ("burst", "frame"):
        share = refreshes[mode] / per
        driver = best[f"driver {mode}"]
        rest = best[mode] - t_dec - t_book - t_sig * share
        print(f"  framework beyond decode + book + signals, {mode + ':':6s} {(rest - driver) * us:5.2f} us/frame "
              f"(signals refreshed on {share:.1%} of frames; replay driver alone {driver * us:.2f} us/frame "
              f"taken off: {rest * us:.2f} with it)")


async def count_refreshes(frames: list[bytes], times: list[int], chunk: int) -> int:
    """One more run, not timed: how many times the engine refreshed the signals (flushed the book)."""
    rig = await ReplayRig.start([SYMBOL], frames[:1])
    slot = next(iter(rig.engine.slots.values()))
    assert slot.signals is not None
    counter = _Counted(slot.signals.refresh)
    slot.signals.refresh = counter  # type: ignore[method-assign]
    try:
        await rig.run(frames[1:], times[1:], chunk)
    finally:
        await rig.close()
    return counter.calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000, help="frames of 20 + 20 levels (2 + 2: 3x)")
    parser.add_argument("--levels", type=int, nargs="+", default=[20, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-bytes", type=int, default=65_536, help="bytes per simulated socket read")
    parser.add_argument("--profile", action="store_true",
                        help="profile one run (strategy on every frame) with cProfile and print the top")
    args = parser.parse_args()
    for levels in args.levels:
        measure(levels, args.frames if levels >= 10 else args.frames * 3, args.repeat, args.chunk_bytes)
    print(f"peak resident memory: {peak_rss_mb():.0f} MB (includes the generated frames)")
    if args.profile:
        import cProfile
        import pstats

        frames = generate_frames(args.frames, args.levels[0])
        times = event_times(len(frames))

        async def profiled() -> None:
            rig = await ReplayRig.start([SYMBOL], frames[:1])
            prof = cProfile.Profile()
            prof.enable()
            await rig.run(frames[1:], times[1:], 0)
            prof.disable()
            await rig.close()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)

        asyncio.run(profiled())


if __name__ == "__main__":
    main()
