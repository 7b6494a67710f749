"""Soak: the chaos test's harness for minutes, with its figures printed.

Each protocol (Binance, Kraken v2) gets its own exchange simulator with every fault of the chaos test
enabled at the same high rates, and the real venue client against it, through the harness of
``tests/test_chaos.py`` (:class:`ChaosRun`): the market is stepped as fast as the client takes it, and
every LIVE book is compared with the simulator's true book (the comparison rules are in that module's
docstring). Both protocols run side by side in this one process for ``--minutes``; then the faults stop,
every book must come back LIVE and equal to the truth at the simulator's last update, and the figures are
printed: faults injected by kind and the client counters each maps to, resyncs by reason, time not
LIVE, truth checks and mismatches (must be 0), updates lost (must be 0), and the process's resident
memory (``/proc/self/statm``) after a warm-up and at the end (must not grow: the simulator's history, the
harness's truth recordings and its caches are all bounded and full by the end of the warm-up).

Run: ``python benchmarks/soak.py [--minutes 5] [--protocols binance,kraken] [--warmup-secs 60]``.
Exit status 1 when a figure that must hold does not (a mismatch, an update lost, a book not LIVE at the
end, an unexplained counter, memory growth beyond 5 % + 5 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["main"]

_HARNESS = Path(__file__).resolve().parents[1] / "tests" / "test_chaos.py"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1024 * 1024


def _load_harness() -> ModuleType:
    """The chaos test module (tests/ is not a package; its harness is loaded by path)."""
    spec = importlib.util.spec_from_file_location("test_chaos", _HARNESS)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the chaos harness from {_HARNESS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["test_chaos"] = module
    spec.loader.exec_module(module)
    return module


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (pages -> bytes)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class RssSampler:
    """RSS every ``every_secs`` in the background; the warm-up sample is the baseline."""

    def __init__(self, every_secs: float) -> None:
        self.every_secs = every_secs
        self.samples: list[tuple[float, int]] = []
        self.started = time.monotonic()

    def sample(self) -> int:
        value = rss_bytes()
        self.samples.append((time.monotonic() - self.started, value))
        return value

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every_secs)


class Outcome:
    """What one protocol's soak left: the run, how long it took, and whether it ended LIVE and right."""

    def __init__(self, run: Any, duration: float, final_ok: bool) -> None:
        self.run = run
        self.duration = duration
        self.final_ok = final_ok


async def soak_one(chaos: ModuleType, protocol: str, seconds: float, seed: int) -> Outcome:
    """Run one protocol's chaos for ``seconds`` of wall time, then settle it."""
    faults = chaos.BINANCE_FAULTS if protocol == "binance" else chaos.KRAKEN_FAULTS
    run = chaos.ChaosRun(protocol, faults, seed=seed)
    await run.start()
    started = time.monotonic()
    try:
        await run.until_all_live("every book LIVE at first")
        end = started + seconds
        while time.monotonic() < end:
            await run.step()
        await run.settle(max_steps=2_000)  # raises unless every book is LIVE and equal to the truth
        final_ok = run.caught_up()
        duration = time.monotonic() - started
        run.context.finish()  # before stop(): stopping the client is not a resync
    finally:
        await run.stop()
    return Outcome(run, duration, final_ok)


def report(chaos: ModuleType, outcome: Outcome) -> list[str]:
    """Print one protocol's figures; return what failed."""
    run, duration = outcome.run, outcome.duration
    ctx = run.context
    effects = chaos.BINANCE_EFFECTS if run.protocol == "binance" else chaos.KRAKEN_EFFECTS
    min_fired = chaos.BINANCE_MIN_FIRED if run.protocol == "binance" else chaos.KRAKEN_MIN_FIRED
    fired: Counter[Any] = run.fired()
    failures: list[str] = []
    print(f"\n== {run.protocol}: {run.steps} market steps in {duration:.0f} s "
          f"({run.steps / duration:.0f}/s), books {', '.join(run.symbols)}")
    print(f"faults injected: {sum(fired.values())} in all; by kind -> the client counters each must move:")
    print(chaos.fault_table(run, effects))
    problems = chaos.check_effects(run, effects, min_fired)
    print(f"fault -> counter check: {'ok' if not problems else '; '.join(problems)}")
    failures += problems

    left: Counter[Any] = Counter()
    away: Counter[Any] = Counter()
    for w in ctx.watches.values():
        left.update({r: n for r, n in w.left_live.items() if r.value != "stopped"})
        away.update(w.not_live_ns_by_reason)
    by_reason = ", ".join(
        f"{r.value} {n} (avg {away[r] / n / 1e6:.0f} ms to LIVE)" for r, n in left.most_common()
    )
    print(f"resyncs (LIVE -> not LIVE): {sum(left.values())}: {by_reason}")

    for symbol in run.symbols:
        w = ctx.watches[symbol]
        # The run is over: finish() closed the LIVE intervals; the rest of the run's length was not LIVE.
        span = int(duration * 1e9)
        not_live = max(0, span - w.live_ns)
        print(f"  {symbol:<9} time not LIVE {not_live / 1e9:7.2f} s of {span / 1e9:.0f} s "
              f"({100 * not_live / span:.1f} %), truth checks {w.checks}, mismatches {len(w.mismatches)}"
              + (f", wrong after apply but caught by the frame's checksum {w.caught_by_checksum}"
                 f", right but checksum wrong {w.checksum_false_alarms}"
                 f", verified before publishing and held back {w.held_back}" if run.protocol == "kraken" else ""))
    mismatches = ctx.mismatches()
    final_ok = outcome.final_ok
    lost = len(mismatches) + (0 if final_ok else 1)
    print(f"mismatches (LIVE book != truth): {len(mismatches)}; final books LIVE and equal to the truth: "
          f"{final_ok}; updates lost: {lost}")
    for m in mismatches[:5]:
        print(f"  {m}")
    if mismatches:
        failures.append(f"{run.protocol}: {len(mismatches)} mismatches")
    if not final_ok:
        failures.append(f"{run.protocol}: books not LIVE and equal to the truth at the end")
    return failures


async def main_async(args: argparse.Namespace) -> int:
    chaos = _load_harness()
    sampler = RssSampler(every_secs=min(10.0, max(1.0, args.minutes * 6)))
    at_start = sampler.sample()
    sampler_task = asyncio.create_task(sampler.run())
    seconds = args.minutes * 60
    warmup = min(args.warmup_secs, seconds / 2)
    baseline: list[int] = []

    async def take_baseline() -> None:
        await asyncio.sleep(warmup)
        baseline.append(sampler.sample())

    baseline_task = asyncio.create_task(take_baseline())
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    try:
        results = await asyncio.gather(*(soak_one(chaos, p, seconds, args.seed) for p in protocols))
    finally:
        sampler_task.cancel()
        baseline_task.cancel()
    end = sampler.sample()

    failures: list[str] = []
    for outcome in results:
        failures += report(chaos, outcome)

    start = baseline[0] if baseline else at_start
    peak = max(v for _, v in sampler.samples)
    grew = end > start * 1.05 + 5 * _MB
    print(f"\nmemory (RSS, /proc/self/statm): at launch {at_start / _MB:.1f} MB, after the {warmup:.0f} s "
          f"warm-up {start / _MB:.1f} MB, at the end {end / _MB:.1f} MB, peak {peak / _MB:.1f} MB: "
          f"{'GREW' if grew else 'no growth'} ({(end - start) / _MB:+.1f} MB)")
    trail = ", ".join(f"{t:.0f}s {v / _MB:.0f}" for t, v in sampler.samples[:: max(1, len(sampler.samples) // 12)])
    print(f"  samples (s MB): {trail}")
    if grew:
        failures.append("memory grew")
    print(f"\nverdict: {'PASS' if not failures else 'FAIL: ' + '; '.join(failures)}")
    return 0 if not failures else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the faults run (default 5)")
    parser.add_argument("--protocols", default="binance,kraken", help="comma-separated: binance,kraken")
    parser.add_argument("--warmup-secs", type=float, default=60.0,
                        help="memory baseline after this long (bounded buffers fill first; default 60)")
    parser.add_argument("--seed", type=int, default=42, help="market and client seed")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
