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
apply + signals alone (the same ``SignalSet`` specs on pre-decoded deltas), and the rest: the
framework's own overhead (sync checks, event, bus, dispatch, strategy, paper executor, order path).

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

from bare_reference import (
    START_MS,
    SYMBOL,
    exchange_info_body,
    generate_frames,
    run_bare,
    snapshot_body,
)

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


def config_text(symbols: Sequence[str], journal_path: Path, *, fsync: str = "batch") -> str:
    """The TOML config of a replay: Binance spot, the imbalance strategy on every symbol, paper, journal."""
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
entry_threshold = 0.4
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
    async def start(cls, symbols: Sequence[str], first_frames: Sequence[bytes], *,
                    fsync: str = "batch", log_stream: Any = None) -> ReplayRig:
        """Build and start the engine for ``symbols``; ``first_frames`` (one per symbol) make them LIVE."""
        workdir = Path(tempfile.mkdtemp(prefix="botframe-e2e-"))
        config = workdir / "config.toml"
        config.write_text(config_text(symbols, workdir / "journal.sqlite", fsync=fsync))
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

    def run(self, frames: Sequence[bytes], times_ns: Sequence[int]) -> float:
        """Feed every frame; return the seconds taken."""
        feed = self.feed
        t0 = time.perf_counter()
        for frame, ts in zip(frames, times_ns, strict=True):
            feed(frame, ts)
        return time.perf_counter() - t0

    async def close(self) -> None:
        await self.engine.executor.stop()
        if self.engine.journal is not None:
            self.engine.journal.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def summary(self) -> str:
        e = self.engine
        orders = e.orders.counts_by_status()
        return (f"orders {sum(orders.values())} ({', '.join(f'{k.value} {v}' for k, v in orders.items())}), "
                f"fills {e._fills}, denials {sum(e.gate.counts.values())}, "
                f"journal rows {e.journal.written if e.journal else 0}")


def event_times(n: int, step_ms: int = 10) -> list[int]:
    """Event time (ns) of each generated frame."""
    return [(START_MS + i * step_ms) * _NS_PER_MS for i in range(n)]


async def run_botframe(frames: list[bytes], times: list[int]) -> tuple[float, ReplayRig]:
    rig = await ReplayRig.start([SYMBOL], frames[:1])
    gc.collect()
    try:
        elapsed = rig.run(frames[1:], times[1:])
    finally:
        await rig.close()
    return elapsed, rig


def components(frames: list[bytes], rig_signals: SignalSet | None) -> tuple[float, float]:
    """Seconds for decode alone and for book apply + signals alone over ``frames`` (after the first)."""
    decode = _binance_parsing.FrameDecoder().decode
    t0 = time.perf_counter()
    for f in frames:
        decode(f)
    t_decode = time.perf_counter() - t0
    deltas: list[BookDelta] = []
    for f in frames:
        m = decode(f).data
        deltas.append(_binance_parsing.book_delta(m, "binance", "BTC/USDT", m.event_time_ms * _NS_PER_MS))
    snap = _binance_parsing.decode_depth_snapshot(snapshot_body())
    book = L2Book("binance", "BTC/USDT")
    snapshot = _binance_parsing.book_snapshot(snap, "binance", "BTC/USDT", START_MS * _NS_PER_MS)
    book.apply_snapshot(snapshot)
    signals = SignalSet(book, rig_signals.specs) if rig_signals is not None else None
    if signals is not None:
        signals.on_snapshot(snapshot)
    apply = book.apply_delta
    gc.collect()
    t0 = time.perf_counter()
    if signals is not None:
        on_delta = signals.on_delta
        for d in deltas:
            apply(d)
            on_delta(d)
    else:
        for d in deltas:
            apply(d)
    return t_decode, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--levels", type=int, nargs="+", default=[20, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one botframe run; print the top")
    args = parser.parse_args()
    snapshot = snapshot_body()
    for levels in args.levels:
        n = args.frames if levels >= 10 else args.frames * 3
        frames = generate_frames(n, levels)
        times = event_times(n)
        best_bf = best_bare = float("inf")
        rig: ReplayRig | None = None
        for _ in range(args.repeat):
            t_bare, pipe = run_bare(snapshot, frames)
            best_bare = min(best_bare, t_bare)
            t_bf, rig = asyncio.run(run_botframe(frames, times))
            best_bf = min(best_bf, t_bf)
        assert rig is not None
        slot = next(iter(rig.engine.slots.values()))
        t_dec, t_book = components(frames[1:], slot.signals)
        per = len(frames) - 1
        bf_rate = per / best_bf
        bare_rate = len(frames) / best_bare
        us = 1e6 / per
        print(f"e2e_replay, {levels} + {levels} levels, {per:,} frames (best of {args.repeat}):")
        print(f"  botframe          {bf_rate:>10,.0f} frames/s  {best_bf * us:6.2f} us/frame   {rig.summary()}")
        print(f"  bare reference    {bare_rate:>10,.0f} frames/s  {best_bare * 1e6 / len(frames):6.2f} us/frame"
              f"   orders {pipe.orders}")
        print(f"  ratio             {bf_rate / bare_rate:>10.2f} x bare")
        print(f"  breakdown: decode {t_dec * us:.2f} us + book & signals {t_book * us:.2f} us "
              f"({', '.join(slot.signals.names) if slot.signals else 'none'}) "
              f"+ framework {(best_bf - t_dec - t_book) * us:.2f} us")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak:.0f} MB (includes the generated frames)")
    if args.profile:
        import cProfile
        import pstats

        frames = generate_frames(args.frames, args.levels[0])
        times = event_times(len(frames))

        async def profiled() -> None:
            rig = await ReplayRig.start([SYMBOL], frames[:1])
            prof = cProfile.Profile()
            prof.enable()
            rig.run(frames[1:], times[1:])
            prof.disable()
            await rig.close()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)

        asyncio.run(profiled())


if __name__ == "__main__":
    main()
