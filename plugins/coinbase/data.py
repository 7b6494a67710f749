"""The Coinbase market-data client: level2 and trades of either feed in, book and trade events out.

For its symbols it reads the products list (tick, lot, min notional), spreads the products over
connections of at most ``max_symbols_per_connection``, subscribes each connection to the book channel,
the trades channel and the heartbeats, and publishes ``BookSnapshot`` / ``BookDelta`` / ``Trade`` events
and health changes through the engine's :class:`~botframe.venues.VenueContext`. One
:class:`~.sync.ConnectionSync` per connection keeps the books' states and, on Advanced Trade, the
connection's shared ``sequence_num`` chain.

Per book frame the work is: one msgspec decode into typed structs, one sequence comparison, one dict
lookup per event, the levels split into bids and asks (the wire mixes them), one ``BookDelta``, one
``publish``. Anything unusual leaves that path:

* a ``sequence_num`` jump (Advanced Trade) sends every LIVE book of that connection back to a snapshot;
* the engine finding a book crossed (the only sign of a lost update on the Exchange feed), or stale,
  calls :meth:`CoinbaseDataClient.resync`;
* a frame that cannot be decoded is logged with its first 200 characters, counted (``parse_errors``)
  and skipped; the books it may concern resync. Error frames (a refused subscription) are logged as
  errors and counted (``subscription_errors``); books still waiting for a snapshot are resubscribed
  after a backoff delay.

A resync is an ``unsubscribe`` then a ``subscribe`` of the book channel on the same connection; the feed
answers with a new snapshot. Every frame this client sends goes through one
:class:`~botframe.streams.RequestPacer` shared by all connections (Coinbase allows 8 unauthenticated
messages per second per IP), which also spaces the opening of connections. Every reconnect sends every
book of that connection back to SYNCING.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import msgspec
import structlog
from websockets.exceptions import ConnectionClosed

from botframe.events import BookHealth, HealthReason
from botframe.streams import (
    BackgroundTasks,
    RequestPacer,
    ResilientWebSocket,
    RestClient,
    StreamConnection,
    StreamingVenueClient,
    UnreadableFrames,
    backoff,
    connect_stream,
    disconnect_reason,
    rest_client,
    run_streams,
)
from botframe.venues import Instrument, VenueContext

from .config import CoinbaseSettings
from .parsing import (
    AdvancedFrameDecoder,
    ExchangeError,
    ExchangeFrameDecoder,
    ExchangeL2Update,
    ExchangeLastMatch,
    ExchangeMatch,
    ExchangeSnapshot,
    ExchangeSubscriptions,
    Feed,
    FrameHeader,
    L2Message,
    MarketTrade,
    MarketTradesMessage,
    SubscriptionsMessage,
    SymbolMap,
    advanced_book_event,
    advanced_subscription,
    advanced_trade,
    decode_products,
    exchange_delta,
    exchange_snapshot,
    exchange_subscription,
    exchange_trade,
    read_header,
    rfc3339_ns,
    trade_key,
)
from .sync import ConnectionSync, HealthChange, Resubscribe, TradeDedup

__all__ = ["CoinbaseDataClient", "RequestPacer"]

_ADVANCED_BOOK_CHANNEL = "level2"
_ADVANCED_TRADE_CHANNEL = "market_trades"
_ADVANCED_HEARTBEAT_CHANNEL = "heartbeats"
_EXCHANGE_TRADE_CHANNEL = "matches"
_EXCHANGE_HEARTBEAT_CHANNEL = "heartbeat"
# Frames of these kinds concern a book: if one cannot be read, the books it names resync.
_ADVANCED_BOOK_FRAMES = frozenset({"l2_data"})
_EXCHANGE_BOOK_FRAMES = frozenset({"snapshot", "l2update"})
# Kinds this client reads; a well-formed frame of any other kind (ticker, status...) is ignored.
_ADVANCED_READ = frozenset({"l2_data", "market_trades", "heartbeats", "subscriptions"})
_EXCHANGE_READ = frozenset(
    {"snapshot", "l2update", "match", "last_match", "heartbeat", "subscriptions", "error"}
)


@dataclass(slots=True, eq=False)
class _Connection:
    """One WebSocket connection, the products it carries and their sync state."""

    index: int
    instruments: list[Instrument]
    sync: ConnectionSync
    stream: ResilientWebSocket | None = None
    pending_resubscribe: set[str] = field(default_factory=set)
    resubscribe_task: asyncio.Task[None] | None = None
    retry_task: asyncio.Task[None] | None = None  # a resubscribe after a refusal, once its delay has passed
    error_delays: Iterator[float] | None = None
    reported: dict[str, int] = field(default_factory=dict)  # stream counters already added to the venue's

    @property
    def product_ids(self) -> list[str]:
        return [inst.venue_symbol for inst in self.instruments]


class CoinbaseDataClient(StreamingVenueClient[_Connection]):
    """Streams order books and trades of ``settings.symbols`` from one Coinbase feed.

    ``run()`` never returns normally: it stops when cancelled, or raises when the venue refuses us in a
    way retrying cannot fix (unknown symbol, rejected URL; see ``botframe.streams.classify``).
    """

    def __init__(
        self,
        settings: CoinbaseSettings,
        context: VenueContext,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.context = context
        self.symbols: list[str] = list(settings.symbols)
        self.feed = Feed(settings.feed)
        self._venue = context.venue
        self._rng = rng
        self._log: structlog.typing.FilteringBoundLogger = context.log.bind(venue=self._venue)
        self._connections: list[_Connection] = []
        self._by_symbol: dict[str, tuple[_Connection, str]] = {}  # unified -> (connection, product id)
        self._symbol_of_product: dict[str, str] = {}
        self._tasks = BackgroundTasks()
        self._pacer = RequestPacer(settings.max_requests_per_sec)
        self._dedup = TradeDedup()
        self._publish = context.publish
        self._time_ns = context.clock.time_ns
        self._decode_advanced = AdvancedFrameDecoder().decode
        self._decode_exchange = ExchangeFrameDecoder().decode
        self._unreadable = UnreadableFrames(self._log)

    def _book_symbols(self) -> list[str]:
        return [inst.symbol for conn in self._connections for inst in conn.instruments]

    # -- public --------------------------------------------------------------------------------------------

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Re-sync one book from a fresh snapshot (the engine found it crossed or stale)."""
        found = self._by_symbol.get(symbol)
        if found is None:
            return
        conn, product = found
        self._log.warning("book resync requested", symbol=symbol, reason=reason.value, detail=detail)
        conn.sync.resync([product], reason, detail)
        self._drain(conn)

    async def run(self) -> NoReturn:
        endpoints = self.context.endpoints
        ws_url = endpoints.resolve(self.settings.ws_url, "coinbase.ws")
        rest_base = endpoints.resolve(self.settings.rest_url, "coinbase.rest").rstrip("/")
        try:
            async with rest_client(self.settings, clock=self.context.clock, rng=self._rng, log=self._log) as rest:
                instruments = await self._load_instruments(rest, rest_base)
            self._connections = self._plan_connections(ws_url, instruments)
            # Opening connections counts against the same per-IP budget as the frames we send.
            await run_streams([c.stream for c in self._connections if c.stream is not None],
                              before_connect=self._wait_for_send_slot)
        finally:
            await self._stop()

    # -- start-up --------------------------------------------------------------------------------------------

    async def _load_instruments(self, rest: RestClient, rest_base: str) -> list[Instrument]:
        url = f"{rest_base}{self.feed.products_path}"
        body = await rest.get(url)
        try:
            products = decode_products(body, self.feed)
        except msgspec.DecodeError as exc:
            raise RuntimeError(f"{self._venue}: unreadable products list from {url}: {exc}") from exc
        symbol_map = SymbolMap.from_products(products, self._venue)
        instruments = []
        for unified in self.symbols:
            instrument = symbol_map.instrument(unified)  # raises UnknownSymbolError naming the fix
            self.context.add_instrument(instrument)
            instruments.append(instrument)
        self._log.info("instruments loaded", symbols=len(instruments), listed=len(symbol_map))
        return instruments

    def _plan_connections(self, ws_url: str, instruments: list[Instrument]) -> list[_Connection]:
        s = self.settings
        size = s.max_symbols_per_connection
        on_frame = self._on_advanced_frame if self.feed is Feed.ADVANCED_TRADE else self._on_exchange_frame
        connections: list[_Connection] = []
        for start in range(0, len(instruments), size):
            group = instruments[start : start + size]
            conn = _Connection(
                index=len(connections),
                instruments=group,
                sync=ConnectionSync({inst.venue_symbol: inst.symbol for inst in group}),
            )
            conn.stream = connect_stream(
                ws_url,
                s,
                on_message=partial(on_frame, conn),
                on_connect=partial(self._on_connect, conn),
                on_disconnect=partial(self._on_disconnect, conn),
                clock=self.context.clock,
                name=f"{self._venue}-{conn.index}",
                rng=self._rng,
                log=self._log,
                max_message_bytes=s.max_message_bytes,
            )
            for inst in group:
                self._by_symbol[inst.symbol] = (conn, inst.venue_symbol)
                self._symbol_of_product[inst.venue_symbol] = inst.symbol
            connections.append(conn)
        return connections

    # -- sending -----------------------------------------------------------------------------------------

    async def _wait_for_send_slot(self) -> None:
        await self._pacer.wait(self.context.clock)

    async def _send(self, conn: _Connection, message: str) -> None:
        await self._wait_for_send_slot()
        assert conn.stream is not None
        await conn.stream.send(message)

    def _subscriptions(self, products: list[str]) -> list[str]:
        """The frames that subscribe a fresh connection to everything its products need."""
        s = self.settings
        if self.feed is Feed.ADVANCED_TRADE:
            frames = [advanced_subscription(_ADVANCED_BOOK_CHANNEL, products)]
            if s.trades:
                frames.append(advanced_subscription(_ADVANCED_TRADE_CHANNEL, products))
            # Idle connections are closed by Coinbase; heartbeats also feed the stale watchdog.
            frames.append(advanced_subscription(_ADVANCED_HEARTBEAT_CHANNEL, []))
            return frames
        channels: list[str] = [s.exchange_book_channel]
        if s.trades:
            channels.append(_EXCHANGE_TRADE_CHANNEL)
        channels.append(_EXCHANGE_HEARTBEAT_CHANNEL)
        return [exchange_subscription(channels, products)]

    def _book_subscription(self, products: list[str], *, subscribe: bool) -> str:
        if self.feed is Feed.ADVANCED_TRADE:
            return advanced_subscription(_ADVANCED_BOOK_CHANNEL, products, subscribe=subscribe)
        return exchange_subscription([self.settings.exchange_book_channel], products, subscribe=subscribe)

    # -- connection events -------------------------------------------------------------------------------

    async def _on_connect(self, conn: _Connection, _ws: StreamConnection) -> None:
        self._cancel_resubscribe(conn)
        conn.sync.connected()
        self._drain(conn)
        for frame in self._subscriptions(conn.product_ids):
            await self._send(conn, frame)

    def _on_disconnect(self, conn: _Connection, error: BaseException) -> None:
        reason, detail = disconnect_reason(error)
        self.context.count("disconnects")
        self._cancel_resubscribe(conn)
        conn.sync.disconnected(reason, detail)
        self._drain(conn)
        self._report_counters(conn)

    # -- Advanced Trade frames (the hot path) ----------------------------------------------------------------

    def _on_advanced_frame(self, conn: _Connection, frame: bytes) -> None:
        try:
            msg = self._decode_advanced(frame)
        except msgspec.DecodeError as exc:
            self._on_undecodable(conn, frame, exc)
            return
        sync = conn.sync
        if not sync.check_sequence(msg.sequence_num):
            self._on_gap(conn)
        if isinstance(msg, L2Message):
            self._on_l2_data(conn, msg)
        elif isinstance(msg, MarketTradesMessage):
            self._on_market_trades(msg)
        elif isinstance(msg, SubscriptionsMessage):
            self._log.info("subscriptions", connection=conn.index, channels=msg.channels())
        # HeartbeatsMessage: its sequence number (checked above) is all it carries for us.

    def _on_l2_data(self, conn: _Connection, msg: L2Message) -> None:
        sync = conn.sync
        venue = self._venue
        sequence = msg.sequence_num
        exchange_ts = rfc3339_ns(msg.timestamp) if msg.timestamp else 0
        receive_ts = self._time_ns()
        for event in msg.events:
            if event.type == "update":
                symbol = sync.live_symbol(event.product_id)
                if symbol is None:
                    continue
                self._publish(advanced_book_event(event, venue, symbol, sequence, exchange_ts, receive_ts))
            else:
                symbol = sync.on_snapshot(event.product_id)
                if symbol is None:
                    continue
                self._publish(advanced_book_event(event, venue, symbol, sequence, exchange_ts, receive_ts))
            if sync.outputs:
                # The snapshot's LIVE, or a resync the engine asked for while the event was applied.
                self._drain(conn)

    def _on_market_trades(self, msg: MarketTradesMessage) -> None:
        if not self.settings.trades:
            return
        receive_ts = self._time_ns()
        for event in msg.events:
            fresh = self._dedup.select(
                event.trades, _trade_product, trade_key, history=event.type == "snapshot"
            )
            for trade in fresh:
                symbol = self._symbol_of_product.get(trade.product_id)
                if symbol is None:
                    self.context.count("unknown_symbol_frames")
                    continue
                self._publish(advanced_trade(trade, self._venue, symbol, receive_ts))

    def _on_gap(self, conn: _Connection) -> None:
        previous, received = conn.sync.last_gap or (0, 0)
        self.context.count("gaps")
        self._log.warning(
            "sequence_num gap; resubscribing every book of the connection",
            connection=conn.index,
            previous=previous,
            received=received,
        )
        self._drain(conn)

    # -- Exchange feed frames (the hot path) ----------------------------------------------------------------

    def _on_exchange_frame(self, conn: _Connection, frame: bytes) -> None:
        try:
            msg = self._decode_exchange(frame)
        except msgspec.DecodeError as exc:
            self._on_undecodable(conn, frame, exc)
            return
        sync = conn.sync
        if isinstance(msg, ExchangeL2Update):
            symbol = sync.live_symbol(msg.product_id)
            if symbol is not None:
                self._publish(exchange_delta(msg, self._venue, symbol, self._time_ns()))
                if sync.outputs:
                    self._drain(conn)  # a resync the engine asked for while the delta was applied
        elif isinstance(msg, ExchangeSnapshot):
            symbol = sync.on_snapshot(msg.product_id)
            if symbol is not None:
                self._publish(exchange_snapshot(msg, self._venue, symbol, self._time_ns()))
                self._drain(conn)
        elif isinstance(msg, ExchangeMatch):
            self._on_match(msg)
        elif isinstance(msg, ExchangeLastMatch):
            # The last trade before we subscribed: history, never published.
            self.context.count("ignored_frames")
        elif isinstance(msg, ExchangeError):
            self._on_error_frame(conn, msg.message, msg.reason)
        elif isinstance(msg, ExchangeSubscriptions):
            self._log.info("subscriptions", connection=conn.index, channels=msg.channels)
        # ExchangeHeartbeat: it keeps the connection (and the stale watchdog) fed; nothing else to do.

    def _on_match(self, msg: ExchangeMatch) -> None:
        if not self.settings.trades:
            return
        symbol = self._symbol_of_product.get(msg.product_id)
        if symbol is None:
            self.context.count("unknown_symbol_frames")
            return
        # The product's feed sequence orders its matches; an old one (a replay after a reconnect) is dropped.
        if msg.sequence and not self._dedup.accept(msg.product_id, msg.sequence):
            self.context.count("duplicate_trades", symbol)
            return
        self._publish(exchange_trade(msg, self._venue, symbol, self._time_ns()))

    # -- frames the fast decoder refused --------------------------------------------------------------------

    def _on_undecodable(self, conn: _Connection, frame: bytes, exc: msgspec.DecodeError) -> None:
        header = read_header(frame)
        advanced = self.feed is Feed.ADVANCED_TRADE
        # A frame with a sequence number consumed it from the connection's chain, readable or not.
        if (advanced and header is not None and header.sequence_num is not None
                and not conn.sync.check_sequence(header.sequence_num)):
            self._on_gap(conn)
        if header is not None and header.is_error:
            self._on_error_frame(conn, header.message, header.reason)
            return
        kind = (header.channel if advanced else header.type) if header is not None else ""
        read = _ADVANCED_READ if advanced else _EXCHANGE_READ
        if kind and kind not in read:
            # A well-formed frame of a channel we do not read (ticker, status...): not an error.
            self.context.count("ignored_frames")
            return
        self._on_parse_error(conn, frame, header, str(exc))
        book_frames = _ADVANCED_BOOK_FRAMES if advanced else _EXCHANGE_BOOK_FRAMES
        if kind in book_frames:
            products = list(header.product_ids) if header is not None and header.product_ids else None
            conn.sync.resync(products, HealthReason.PARSE_ERROR, f"unreadable {kind} frame: {exc}")
        elif not kind and not advanced:
            # Nothing says what it was, and an Exchange level2 update has no sequence number to tell us
            # later whether one was lost: every book of the connection may be wrong.
            conn.sync.resync(None, HealthReason.PARSE_ERROR, f"unreadable frame: {exc}")
        # Advanced Trade without a kind: if it held a sequence number, the next frame shows the gap.
        self._drain(conn)

    def _on_parse_error(self, conn: _Connection, frame: bytes, header: FrameHeader | None, error: str) -> None:
        products = header.product_ids if header is not None else ()
        symbols = [s for s in map(conn.sync.symbol, products) if s is not None]
        if symbols:
            for symbol in symbols:
                self.context.count("parse_errors", symbol)
        else:
            self.context.count("parse_errors")
        if conn.stream is not None:
            conn.stream.counters.parse_errors += 1
        self._unreadable.log(frame, error, connection=conn.index, symbols=symbols or None)

    def _on_error_frame(self, conn: _Connection, message: str, reason: str) -> None:
        self.context.count("subscription_errors")
        waiting = conn.sync.awaiting_snapshot()
        self._log.error(
            "the venue refused a request",
            connection=conn.index,
            message=message,
            reason=reason or None,
            books_waiting=len(waiting),
        )
        if not waiting:
            return
        # A refused subscribe (a rate limit, a transient failure) would leave these books SYNCING for good:
        # ask again after a backoff delay, which grows while the refusals go on.
        if conn.error_delays is None:
            conn.error_delays = backoff(self.settings.backoff, self._rng)
        if conn.retry_task is None:
            conn.retry_task = self._tasks.spawn(
                self._retry_later(conn, next(conn.error_delays)), f"{self._venue}-{conn.index}-retry"
            )

    # -- sync machine outputs -----------------------------------------------------------------------------

    def _drain(self, conn: _Connection) -> None:
        for out in conn.sync.take_outputs():
            if isinstance(out, HealthChange):
                self.context.set_health(out.symbol, out.health, out.reason, out.detail)
                if out.health is BookHealth.LIVE:
                    conn.error_delays = None
            elif isinstance(out, Resubscribe):
                for product in out.product_ids:
                    symbol = conn.sync.symbol(product)
                    self.context.count("resyncs", symbol or "")
                self._log.warning(
                    "resubscribing books", connection=conn.index, products=list(out.product_ids),
                    reason=out.reason.value, detail=out.detail,
                )
                self._schedule_resubscribe(conn, out.product_ids)

    def _schedule_resubscribe(self, conn: _Connection, products: Iterable[str]) -> None:
        conn.pending_resubscribe.update(products)
        if conn.resubscribe_task is None:
            conn.resubscribe_task = self._tasks.spawn(
                self._resubscribe(conn), f"{self._venue}-{conn.index}-resubscribe"
            )

    def _cancel_resubscribe(self, conn: _Connection) -> None:
        conn.pending_resubscribe.clear()
        for task in (conn.resubscribe_task, conn.retry_task):
            if task is not None:
                task.cancel()
        conn.resubscribe_task = conn.retry_task = None

    async def _resubscribe(self, conn: _Connection) -> None:
        """Unsubscribe and subscribe the pending books again; the feed answers with new snapshots."""
        try:
            while conn.pending_resubscribe:
                products = sorted(conn.pending_resubscribe)
                conn.pending_resubscribe.clear()
                await self._send(conn, self._book_subscription(products, subscribe=False))
                await self._send(conn, self._book_subscription(products, subscribe=True))
        except (ConnectionError, ConnectionClosed):
            pass  # the connection is gone; the reconnect subscribes every book afresh
        finally:
            if conn.resubscribe_task is asyncio.current_task():
                conn.resubscribe_task = None

    async def _retry_later(self, conn: _Connection, delay_secs: float) -> None:
        """After a refusal: wait, then resubscribe the books still waiting for a snapshot."""
        try:
            await self.context.clock.sleep(delay_secs)
        finally:
            if conn.retry_task is asyncio.current_task():
                conn.retry_task = None
        waiting = conn.sync.awaiting_snapshot()
        if waiting:
            self._schedule_resubscribe(conn, waiting)

def _trade_product(trade: MarketTrade) -> str:
    return trade.product_id
