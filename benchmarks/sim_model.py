"""Cost of one simulator step: the order-flow model alone, and model + Binance/Kraken frame encoding.

Data: the simulator's own defaults (Cont-Stoikov-Talreja flow, 100 ms steps) on N symbols at 60000
with a 0.01 tick, seed 42. Reports microseconds per step for all symbols, events per symbol-step, and
the per-step cost of encoding every Binance stream payload and a Kraken depth-10 book update.

Run: ``python benchmarks/sim_model.py [--symbols N] [--steps S]``.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal

from botframe_plugins.sim.binance_protocol import BinanceWire
from botframe_plugins.sim.kraken_protocol import KrakenBookView, KrakenWire
from botframe_plugins.sim.model import MarketModel, SymbolSpec

__all__ = ["main"]


def _specs(n: int, venue: str) -> list[SymbolSpec]:
    return [
        SymbolSpec(f"S{i}/USDT", Decimal("60000"), Decimal("0.01"), Decimal("0.00001"), venue=venue)
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--symbols", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()

    model = MarketModel(_specs(args.symbols, "binance"), seed=42)
    events = 0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        for st in model.step().symbols:
            events += max(0, st.last_update_id - st.first_update_id + 1)
    model_s = time.perf_counter() - t0
    print(
        f"model: {args.symbols} symbols, {model_s / args.steps * 1e6:8.1f} us/step "
        f"({events / args.steps / args.symbols:.1f} events per symbol-step)"
    )

    model = MarketModel(_specs(args.symbols, "binance"), seed=42)
    wire = BinanceWire(list(model.models()))
    wanted = {
        f"s{i}usdt@{s}": 1 for i in range(args.symbols) for s in ("depth@100ms", "aggTrade", "bookTicker")
    }
    t0 = time.perf_counter()
    for _ in range(args.steps):
        wire.stream_payloads(model.step(), wanted)
    binance_s = time.perf_counter() - t0
    print(f"model + Binance payloads: {binance_s / args.steps * 1e6:8.1f} us/step")

    model = MarketModel(_specs(args.symbols, "kraken"), seed=42)
    kraken = KrakenWire(list(model.models()))
    views = [KrakenBookView(sym, 10) for sym in kraken.symbols.values()]
    for v in views:
        v.snapshot()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step = model.step()
        for v in views:
            diff = v.update()
            if diff is not None:
                KrakenWire.book_frame(v.sym, "update", diff[0], diff[1], diff[2], step.ts_ns)
    kraken_s = time.perf_counter() - t0
    print(
        f"model + Kraken depth-10 views and frames (one client): {kraken_s / args.steps * 1e6:8.1f} us/step"
    )


if __name__ == "__main__":
    main()
