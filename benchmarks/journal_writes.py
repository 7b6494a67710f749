"""How many events per second ``Journal.record`` takes under each fsync policy.

The workload is what a busy market maker journals: per "tick" (the engine flushes once per event-loop
tick) a mix of order updates and fills, with one order intent in every ``--intent-every`` events.
Intents matter because the ``batch`` policy commits at each one (an order never leaves before it is
durable against a process crash). Each policy writes into a fresh file on the disk under ``--dir``
(the system temp folder by default: use a folder on the disk the bot will really use, since fsync
cost is the disk's). Figures are events recorded per second, flushes and closing included.

Run: ``python benchmarks/journal_writes.py [--events N] [--tick T] [--intent-every K] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from botframe.events import Fill, OrderIntent, OrderStatus, OrderUpdate, Side
from botframe.journal import FsyncPolicy, Journal, JournalEvent

__all__ = ["main", "make_events", "measure"]


def make_events(n: int, intent_every: int) -> list[JournalEvent]:
    """``n`` events: intents every ``intent_every``, the rest alternating order updates and fills."""
    events: list[JournalEvent] = []
    for i in range(n):
        cid = f"bf-bench-{i // 4:x}"
        if intent_every and i % intent_every == 0:
            events.append(OrderIntent(client_order_id=cid, strategy="mm", venue="binance", symbol="BTC/USDT",
                                      side=Side.BUY, quantity=Decimal("0.015"), price=Decimal("64321.5"),
                                      ts_ns=i))
        elif i % 2:
            events.append(Fill(client_order_id=cid, venue="binance", symbol="BTC/USDT", side=Side.BUY,
                               price=Decimal("64321.5"), quantity=Decimal("0.005"),
                               fee=Decimal("0.0321607500"), liquidity="maker", fill_id=f"{cid}-{i}", ts_ns=i))
        else:
            events.append(OrderUpdate(client_order_id=cid, venue="binance", symbol="BTC/USDT",
                                      status=OrderStatus.PARTIALLY_FILLED, side=Side.BUY,
                                      quantity=Decimal("0.015"), filled_quantity=Decimal("0.005"),
                                      price=Decimal("64321.5"), venue_order_id="123", ts_ns=i))
    return events


def measure(folder: Path, policy: FsyncPolicy, events: list[JournalEvent], tick: int,
            name: str = "") -> tuple[float, int]:
    """(events per second, commits) for one policy, flushing every ``tick`` events, in a new file."""
    path = folder / f"journal-{policy.value}{'-' + name if name else ''}.sqlite"
    journal = Journal(path, fsync=policy)
    start = time.perf_counter()
    for i, event in enumerate(events, 1):
        journal.record(event)
        if i % tick == 0:
            journal.flush()
    journal.close()
    elapsed = time.perf_counter() - start
    return len(events) / elapsed, journal.commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per policy (always: a tenth)")
    parser.add_argument("--tick", type=int, default=100, help="events between flushes (one loop tick)")
    parser.add_argument("--intent-every", type=int, default=10,
                        help="one intent in this many events; 0: none")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the journal files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"journal writes, {args.events} events per policy, flush every {args.tick}, "
              f"1 intent in {args.intent_every or 'none'}, files in {folder}")
        for policy in (FsyncPolicy.ALWAYS, FsyncPolicy.BATCH, FsyncPolicy.OFF):
            # "always" fsyncs every row: a tenth of the events keeps the run short and the rate the same.
            n = max(args.events // 10, 100) if policy is FsyncPolicy.ALWAYS else args.events
            rate, commits = measure(folder, policy, make_events(n, args.intent_every), args.tick)
            print(f"  fsync={policy.value:<6}  {rate:>10,.0f} events/s  ({n} events, {commits} commits)")
        rate, commits = measure(folder, FsyncPolicy.BATCH, make_events(args.events, 0), args.tick,
                                name="no-intents")
        print(f"  fsync=batch   {rate:>10,.0f} events/s  (no intents: a commit per tick, {commits} commits)")


if __name__ == "__main__":
    main()
