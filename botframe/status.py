"""What a person sees while a bot runs and when it ends.

On a terminal: a live rich view (events/s, book health, position, PnL, orders) refreshed in place.
Otherwise: one structured log line per ``status_interval_secs``. At the end: the run summary.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from .log import get_logger

if TYPE_CHECKING:
    from .engine import Engine, RunSummary

__all__ = ["StatusView", "render_summary"]


class StatusView:
    """Shows progress of a running engine, live on a terminal or as periodic log lines."""

    def __init__(self, engine: Engine, out: TextIO, *, live: bool) -> None:
        self._engine = engine
        self._out = out
        self._live: Live | None = None
        self._log = get_logger("botframe.status")
        self._last_events = 0
        self._last_ns = engine.clock.monotonic_ns()
        if live:
            # Live redirects stdout/stderr while it runs, so log lines print above the view.
            self._live = Live(console=Console(file=out), refresh_per_second=4, transient=True,
                              redirect_stdout=True, redirect_stderr=True)
            self._live.start()

    async def run(self, interval_secs: float) -> None:
        period = 0.25 if self._live is not None else interval_secs
        while True:
            await asyncio.sleep(period)
            snapshot = self._snapshot()
            if self._live is not None:
                self._live.update(self._render(snapshot))
            else:
                self._log.info("status", **snapshot)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _snapshot(self) -> dict[str, Any]:
        engine = self._engine
        now = engine.clock.monotonic_ns()
        events = engine.bus.published
        elapsed = max(now - self._last_ns, 1) / 1e9
        rate = (events - self._last_events) / elapsed
        self._last_events, self._last_ns = events, now
        pnl = engine.pnl(None, None)
        return {
            "events_per_sec": round(rate),
            "events": events,
            "messages": engine.messages(),
            "books": {f"{v}:{s}": slot.book.health.value for (v, s), slot in engine.slots.items()},
            "positions": {f"{r['venue']}:{r['symbol']}": str(r["position"])
                          for r in engine.portfolio.summary() if r["venue"]},
            "open_orders": len(engine.orders.open_orders(None, None)),
            "fills": engine._fills,
            "pnl": str(pnl.net.quantize(_CENT)),
        }

    def _render(self, snap: dict[str, Any]) -> Group:
        head = Table.grid(padding=(0, 2))
        head.add_row(f"events/s [bold]{snap['events_per_sec']}[/]", f"events {snap['events']}",
                     f"open orders {snap['open_orders']}", f"fills {snap['fills']}",
                     f"PnL [bold]{snap['pnl']}[/]")
        books = Table("book", "health", "position", title="botframe", title_justify="left")
        for key, health in snap["books"].items():
            books.add_row(key, health, snap["positions"].get(key, "0"))
        return Group(head, books)


_CENT = Decimal("0.01")


def render_summary(summary: RunSummary, out: TextIO) -> None:
    """Print the end-of-run summary as plain tables (readable in a terminal and in a CI log)."""
    console = Console(file=out, width=140, no_color=not out.isatty(), highlight=False)
    console.print(f"botframe run summary ({summary.duration_secs:.1f} s)"
                  + ("  [FAILED: see the log]" if summary.failed else ""))
    console.print(f"messages processed: {summary.messages}   events processed: {summary.events}   "
                  f"denials: {summary.denials}   fills: {summary.fills}   fees: {money(summary.fees)}")
    books = Table("venue", "symbol", "health", "best bid", "best ask", "levels", "gaps", "checksum fails",
                  "crossed", "stale", "resyncs", "not live (s)", title="books", title_justify="left")
    for b in summary.books:
        books.add_row(b["venue"], b["symbol"], b["health"], _fmt(b["best_bid"]), _fmt(b["best_ask"]),
                      str(b["levels"]), str(b["gaps"]), str(b["checksum_failures"]), str(b["crossed"]),
                      str(b["stale"]), str(b["resyncs"]), f"{b['not_live_secs']:g}")
    console.print(books)
    orders = Table("status", "count", title="orders", title_justify="left")
    shown_statuses = {k: v for k, v in sorted(summary.orders_by_status.items()) if v}
    for status, count in shown_statuses.items():
        orders.add_row(status, str(count))
    if not shown_statuses:
        orders.add_row("(none)", "0")
    console.print(orders)
    positions = Table("venue", "symbol", "position", "avg entry", "realized", "unrealized", "fees",
                      title="positions and PnL", title_justify="left")
    for p in summary.positions:
        positions.add_row(str(p["venue"]), str(p["symbol"]), str(p["position"]), _dec(p.get("avg_entry")),
                          _dec(p.get("realized_pnl")), _dec(p.get("unrealized_pnl")), _dec(p.get("fees")))
    console.print(positions)
    console.print(f"total realized PnL: {money(summary.realized_pnl)}   "
                  f"unrealized PnL: {money(summary.unrealized_pnl)}   "
                  f"net of fees: {money(summary.realized_pnl + summary.unrealized_pnl - summary.fees)}")
    for venue, counters in summary.venue_counters.items():
        shown = ", ".join(f"{k}={v}" for k, v in sorted(counters.items()))
        console.print(f"venue {venue}: {shown or 'no counters'}")
    for name, errors in summary.strategy_errors.items():
        if errors:
            console.print(f"strategy {name}: {errors} errors")


_DISPLAY = Decimal("0.00000001")


def money(value: Decimal) -> str:
    """Money for display: 8 decimal places at most, trailing zeros dropped (the value stays exact)."""
    shown = value.quantize(_DISPLAY).normalize()
    return f"{shown:f}"


def _dec(text: object) -> str:
    if text in (None, ""):
        return ""
    try:
        return money(Decimal(str(text)))
    except ArithmeticError:
        return str(text)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.12g}"
