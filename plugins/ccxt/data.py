"""A market-data venue for any exchange ccxt supports, over ccxt's WebSocket API (``ccxt.pro``).

Configured by ccxt exchange id (``[venues.ccxt] exchange_id = "kraken"``), it watches each symbol's order
book (``watch_order_book``: ccxt syncs the snapshot and the diffs itself, by the exchange's own rules) and
trades (``watch_trades``), and normalizes them to the same events as the native adapters: a
``BookSnapshot`` when a book (re)starts, then a ``BookDelta`` per update with the levels that changed
(absolute sizes, 0 deletes), and a ``Trade`` per public trade with the aggressor's side. The native
adapters are faster and check integrity exactly (checksums, update ids); this one gives breadth.

Health: a book is SYNCING until its first book arrives, then LIVE. Any error from ccxt (a sequence gap it
detected, a dropped connection) or ``stale_after_ms`` without an update moves it to RESYNCING; the next
book from ccxt is published as a fresh snapshot and the book is LIVE again. :meth:`CcxtVenueClient.resync`
(the engine found the book crossed) does the same on request.

URLs: ``rest_url`` / ``ws_url`` ``"simulator"`` resolve through the engine's endpoints (``binance.api``
and ``binance.ws``) and every URL ccxt has for the exchange is repointed there, keeping its path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason, Side, Trade
from botframe.venues import Instrument

from .config import CcxtVenueSettings
from .execution import build_exchange, resolve_urls

if TYPE_CHECKING:
    from botframe.venues import VenueContext

__all__ = ["BookDiffer", "CcxtVenueClient", "instrument_from_market"]


def _levels(side: Sequence[Sequence[Any]], depth: int | None) -> dict[float, float]:
    rows = side[:depth] if depth else side
    return {float(row[0]): float(row[1]) for row in rows if len(row) >= 2}


class BookDiffer:
    """Turns ccxt's full order book, update after update, into botframe snapshots and deltas (sans I/O)."""

    def __init__(self, venue: str, symbol: str, depth: int | None = None) -> None:
        self.venue = venue
        self.symbol = symbol
        self.depth = depth
        self._bids: dict[float, float] | None = None
        self._asks: dict[float, float] = {}

    def reset(self) -> None:
        """Forget the last book: the next one is published as a snapshot."""
        self._bids = None
        self._asks = {}

    @property
    def synced(self) -> bool:
        return self._bids is not None

    def update(self, book: Mapping[str, Any], receive_ns: int) -> BookSnapshot | BookDelta | None:
        """The event for this book: a snapshot after a reset, else a delta of what changed (None: nothing)."""
        bids = _levels(book.get("bids") or [], self.depth)
        asks = _levels(book.get("asks") or [], self.depth)
        ts = book.get("timestamp")
        exchange_ns = int(ts) * 1_000_000 if ts else 0
        nonce = book.get("nonce")
        seq = int(nonce) if isinstance(nonce, int) else 0
        previous_bids, previous_asks = self._bids, self._asks
        self._bids, self._asks = bids, asks
        if previous_bids is None:
            return BookSnapshot(
                venue=self.venue, symbol=self.symbol, bids=sorted(bids.items(), reverse=True),
                asks=sorted(asks.items()), sequence=seq, exchange_ts_ns=exchange_ns, receive_ts_ns=receive_ns)
        bid_changes = _diff(previous_bids, bids)
        ask_changes = _diff(previous_asks, asks)
        if not bid_changes and not ask_changes:
            return None
        return BookDelta(
            venue=self.venue, symbol=self.symbol, bids=sorted(bid_changes, reverse=True), asks=sorted(ask_changes),
            last_seq=seq, exchange_ts_ns=exchange_ns, receive_ts_ns=receive_ns)


def _diff(old: dict[float, float], new: dict[float, float]) -> list[tuple[float, float]]:
    changes = [(p, s) for p, s in new.items() if old.get(p) != s]
    changes += [(p, 0.0) for p in old if p not in new]
    return changes


def _step_text(value: Any) -> str:
    """A ccxt precision (a tick size in TICK_SIZE mode) as exact text."""
    if value is None:
        return "0"
    text = format(Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def instrument_from_market(venue: str, market: Mapping[str, Any]) -> Instrument:
    """The instrument of a ccxt market (tick and lot from its precision, minimum notional from its limits)."""
    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    cost = limits.get("cost") or {}
    return Instrument(
        venue=venue, symbol=str(market["symbol"]), venue_symbol=str(market.get("id", "")),
        base=str(market.get("base", "")), quote=str(market.get("quote", "")),
        tick_size=_step_text(precision.get("price")), lot_size=_step_text(precision.get("amount")),
        min_notional=_step_text(cost.get("min")))


class CcxtVenueClient:
    """The ``ccxt`` venue: books and trades of any ccxt exchange; see the module docstring."""

    def __init__(self, settings: CcxtVenueSettings, context: VenueContext) -> None:
        self.settings = settings
        self.context = context
        self.symbols = list(settings.symbols)
        self.exchange: Any = None
        self._differs = {s: BookDiffer(context.venue, s, settings.book_depth) for s in self.symbols}

    # -- VenueClient -----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch every symbol's book and trades until cancelled; ccxt reconnects, we re-sync."""
        ctx = self.context
        for symbol in self.symbols:
            ctx.set_health(symbol, BookHealth.CONNECTING, HealthReason.START)
        rest, ws = resolve_urls(self.settings, ctx.endpoints)
        self.exchange = build_exchange(self.settings, None, rest, ws)
        try:
            await self._load_markets()
            async with asyncio.TaskGroup() as group:
                for symbol in self.symbols:
                    group.create_task(self._books(symbol), name=f"ccxt.book:{symbol}")
                    if self.settings.trades and self.exchange.has.get("watchTrades"):
                        group.create_task(self._trades(symbol), name=f"ccxt.trades:{symbol}")
        finally:
            exchange, self.exchange = self.exchange, None
            with contextlib.suppress(Exception):
                await exchange.close()

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Re-sync one book: RESYNCING now, a fresh snapshot from ccxt's next book."""
        differ = self._differs.get(symbol)
        if differ is None:
            return
        differ.reset()
        self.context.count("resyncs", symbol)
        self.context.set_health(symbol, BookHealth.RESYNCING, reason, detail)

    def stream_counters(self) -> list[Any]:
        """ccxt owns the connections; its counters are not exposed per connection."""
        return []

    # -- loops ------------------------------------------------------------------------------------------

    async def _load_markets(self) -> None:
        delay = self.settings.reconnect_delay_secs
        while True:
            try:
                markets = await self.exchange.load_markets()
                break
            except Exception as exc:
                self.context.log.warning("ccxt venue: loading markets failed; retrying", error=str(exc),
                                         exchange=self.settings.exchange_id)
                self.context.count("load_errors")
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, 0.1), self.settings.max_reconnect_delay_secs)
        for symbol in self.symbols:
            market = markets.get(symbol)
            if market is None:
                raise LookupError(f"[venues.{self.context.venue}] symbols: {self.settings.exchange_id} has no "
                                  f"market {symbol!r}")
            self.context.add_instrument(instrument_from_market(self.context.venue, market))

    async def _books(self, symbol: str) -> None:
        ctx = self.context
        differ = self._differs[symbol]
        stale_secs = self.settings.stale_after_ms / 1000
        delay = self.settings.reconnect_delay_secs
        ctx.set_health(symbol, BookHealth.SYNCING, HealthReason.SUBSCRIBED)
        while True:
            try:
                async with asyncio.timeout(stale_secs):
                    book = await self.exchange.watch_order_book(symbol, self.settings.book_depth)
            except TimeoutError:
                self.resync(symbol, HealthReason.STALE, f"no book update for {self.settings.stale_after_ms} ms")
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                text = str(exc)
                reason = HealthReason.GAP if "nonce" in text.lower() or "sequence" in text.lower() \
                    else HealthReason.DISCONNECTED
                ctx.log.warning("ccxt venue: book stream failed; re-syncing", symbol=symbol, error=text)
                ctx.count("stream_errors", symbol)
                self.resync(symbol, reason, text[:200])
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, 0.1), self.settings.max_reconnect_delay_secs)
                continue
            delay = self.settings.reconnect_delay_secs
            event = differ.update(book, ctx.clock.time_ns())
            ctx.count("messages", symbol)
            if event is None:
                continue
            ctx.publish(event)
            if isinstance(event, BookSnapshot):
                ctx.set_health(symbol, BookHealth.LIVE, HealthReason.SNAPSHOT)

    async def _trades(self, symbol: str) -> None:
        ctx = self.context
        delay = self.settings.reconnect_delay_secs
        while True:
            try:
                trades = await self.exchange.watch_trades(symbol)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ctx.log.warning("ccxt venue: trade stream failed; retrying", symbol=symbol, error=str(exc))
                ctx.count("stream_errors", symbol)
                await asyncio.sleep(delay)
                delay = min(max(delay * 2, 0.1), self.settings.max_reconnect_delay_secs)
                continue
            delay = self.settings.reconnect_delay_secs
            now = ctx.clock.time_ns()
            for t in trades:
                side = Side.SELL if t.get("side") == "sell" else Side.BUY
                ts = t.get("timestamp")
                try:
                    event = Trade(venue=ctx.venue, symbol=symbol, price=float(t["price"]), size=float(t["amount"]),
                                  side=side, trade_id=str(t.get("id") or ""),
                                  exchange_ts_ns=int(ts) * 1_000_000 if ts else 0, receive_ts_ns=now)
                except (KeyError, TypeError, ValueError) as exc:
                    ctx.log.warning("ccxt venue: malformed trade skipped", symbol=symbol, error=str(exc))
                    ctx.count("parse_errors", symbol)
                    continue
                ctx.publish(event)
