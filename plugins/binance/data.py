"""The Binance market-data client: combined streams in, book and trade events out.

For its symbols it loads the trading rules (``exchangeInfo``), opens the combined stream
(``<sym>@depth@100ms`` and ``<sym>@aggTrade``), runs one :class:`~.sync.BookSync` per symbol, fetches the
REST snapshots the machines ask for, and publishes ``BookSnapshot`` / ``BookDelta`` / ``Trade`` events
and health changes through the engine's :class:`~botframe.venues.VenueContext`.

Per frame the work is: one msgspec decode into typed structs, one dict lookup, the sync machine's two id
comparisons, one ``BookDelta`` built around the decoded level lists, one ``publish``. Anything unusual
(a gap, a snapshot, a bad frame) leaves that path. A frame that cannot be decoded is logged with its
first 200 characters, counted (``parse_errors``) and skipped; if it named a depth stream of ours, that
book resyncs, because a lost diff makes it unprovable.

Every reconnect sends every book of that connection back to SYNCING and through the full procedure.

Besides the books' health, the client counts through ``VenueContext.count``: ``parse_errors``, ``gaps``,
``snapshot_requests``, ``snapshot_retries`` and ``snapshot_retries_<cause>`` (``rate_limited``,
``server_error``, ``timeout``, ``connection``: see ``botframe.streams.retry_cause``),
``snapshot_errors`` (answers not worth retrying at once, such as a 403: fetched again after the backoff
delays, so a book never stays out of sync for good), ``snapshot_fetches_abandoned`` (a newer resync or
a reconnect made a fetch in flight moot), and each connection's ``reconnects``, ``stale_timeouts``,
``closed_by_peer``, ``connection_lost``. Per-book sync counters (snapshots too old, diffs ignored as
already applied...) are in :meth:`book_counters`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import msgspec
import structlog

from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason
from botframe.streams import (
    FRAME_EXCERPT_CHARS,
    REPORTED_COUNTERS,
    BackgroundTasks,
    ResilientWebSocket,
    RestClient,
    StreamConnection,
    StreamingVenueClient,
    UnreadableFrames,
    backoff,
    connect_stream,
    disconnect_reason,
    frame_excerpt,
    rest_client,
    retry_cause,
    run_streams,
)
from botframe.venues import Instrument, VenueContext

from .config import BinanceSettings
from .parsing import (
    DepthUpdate,
    FrameDecoder,
    Market,
    SymbolMap,
    decode_depth_snapshot,
    decode_exchange_info,
    frame_stream_name,
    trade,
)
from .sync import BookSync, HealthChange, NeedSnapshot, SyncCounters, SyncRules

__all__ = ["BinanceDataClient", "stream_url"]

#: Binance allows 1024 streams per connection, but the combined-stream URL carries every name: 100
#: symbols (about 3.7 KB of URL) stays clear of common request-line limits.
_MAX_SYMBOLS_PER_CONNECTION = 100
_DEPTH_STREAM = "depth@100ms"
_TRADE_STREAM = "aggTrade"
#: Who ended each connection is reported too: Binance drops connections (24 h limit, server restarts).
_REPORTED_COUNTERS = (*REPORTED_COUNTERS, "closed_by_peer", "connection_lost")


def stream_url(base: str, streams: list[str]) -> str:
    """The combined-stream URL: ``<base>/stream?streams=a/b/c`` (``base`` may already end in ``/stream``)."""
    base = base.rstrip("/")
    if not base.endswith("/stream"):
        base += "/stream"
    return f"{base}?streams={'/'.join(streams)}"


@dataclass(slots=True, eq=False)
class _SymbolFeed:
    """Everything the client keeps for one symbol."""

    instrument: Instrument
    sync: BookSync
    delays: Iterator[float]
    snapshot_task: asyncio.Task[None] | None = None
    snapshot_attempts: int = 0  # requests since the book was last LIVE; the first one is not delayed


@dataclass(slots=True, eq=False)
class _Connection:
    """One combined-stream connection and the symbols it carries."""

    feeds: list[_SymbolFeed]
    stream: ResilientWebSocket | None = None
    reported: dict[str, int] = field(default_factory=dict)  # stream counters already added to the venue's


class BinanceDataClient(StreamingVenueClient[_Connection]):
    """Streams order books and trades of ``settings.symbols`` from one Binance market.

    ``run()`` never returns normally: it stops when cancelled, or raises when the venue refuses us in a
    way retrying cannot fix (unknown symbol, rejected URL; see ``botframe.streams.classify``).
    """

    _reported_counters = _REPORTED_COUNTERS  # also who ended each connection

    def __init__(
        self,
        settings: BinanceSettings,
        context: VenueContext,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.context = context
        self.symbols: list[str] = list(settings.symbols)
        self.market = Market(settings.market)
        self._rules = SyncRules.FUTURES if self.market.is_futures else SyncRules.SPOT
        self._venue = context.venue
        self._rng = rng
        self._log: structlog.typing.FilteringBoundLogger = context.log.bind(venue=self._venue)
        self._feeds: dict[str, _SymbolFeed] = {}  # by Binance symbol, as frames name it ("BTCUSDT")
        self._by_stream_symbol: dict[str, _SymbolFeed] = {}  # by stream prefix ("btcusdt")
        self._connections: list[_Connection] = []
        self._tasks = BackgroundTasks()
        self._rest: RestClient | None = None
        self._rest_base = ""
        self._decode = FrameDecoder().decode
        self._publish = context.publish
        self._time_ns = context.clock.time_ns
        self._unreadable = UnreadableFrames(self._log)

    def _book_symbols(self) -> list[str]:
        return [feed.instrument.symbol for feed in self._feeds.values()]

    # -- public --------------------------------------------------------------------------------------------

    def book_counters(self) -> dict[str, SyncCounters]:
        """Per symbol: gaps, resyncs, snapshots requested/applied/too old, diffs ignored as already applied..."""
        return {feed.instrument.symbol: feed.sync.counters for feed in self._feeds.values()}

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Re-sync one book from a fresh snapshot (the engine found it crossed)."""
        for feed in self._feeds.values():
            if feed.instrument.symbol == symbol:
                self._log.warning("book resync requested", symbol=symbol, reason=reason.value, detail=detail)
                feed.sync.invalidate(reason, detail)
                self._drain(feed)
                return

    async def run(self) -> NoReturn:
        endpoints = self.context.endpoints
        ws_base = endpoints.resolve(self.settings.ws_url, "binance.ws")
        self._rest_base = endpoints.resolve(self.settings.rest_url, "binance.rest").rstrip("/")
        # The REST client stays open while the streams run: resyncs fetch snapshots with it.
        async with rest_client(self.settings, clock=self.context.clock, rng=self._rng, log=self._log) as rest:
            self._rest = rest
            try:
                await self._load_instruments(rest)
                self._connections = self._plan_connections(ws_base)
                await run_streams([c.stream for c in self._connections if c.stream is not None])
            finally:
                await self._stop()

    # -- start-up --------------------------------------------------------------------------------------------

    async def _load_instruments(self, rest: RestClient) -> None:
        url = f"{self._rest_base}{self.market.rest_prefix}/exchangeInfo"
        body = await rest.get(url)
        try:
            info = decode_exchange_info(body)
        except msgspec.DecodeError as exc:
            raise RuntimeError(f"{self._venue}: unreadable exchangeInfo from {url}: {exc}") from exc
        symbol_map = SymbolMap.from_exchange_info(info, self._venue, self.market)
        for unified in self.symbols:
            instrument = symbol_map.instrument(unified)  # raises UnknownSymbolError naming the fix
            self.context.add_instrument(instrument)
            feed = _SymbolFeed(
                instrument=instrument,
                sync=BookSync(
                    self._venue, unified, self._rules, max_buffered=self.settings.max_buffered_diffs
                ),
                delays=backoff(self.settings.backoff, self._rng),
            )
            self._feeds[instrument.venue_symbol] = feed
            self._by_stream_symbol[instrument.venue_symbol.lower()] = feed
        self._log.info("instruments loaded", symbols=len(self.symbols), listed=len(symbol_map))

    def _plan_connections(self, ws_base: str) -> list[_Connection]:
        feeds = list(self._feeds.values())
        connections: list[_Connection] = []
        for start in range(0, len(feeds), _MAX_SYMBOLS_PER_CONNECTION):
            group = feeds[start : start + _MAX_SYMBOLS_PER_CONNECTION]
            conn = _Connection(group)
            streams = []
            for feed in group:
                prefix = feed.instrument.venue_symbol.lower()
                streams.append(f"{prefix}@{_DEPTH_STREAM}")
                if self.settings.trades:
                    streams.append(f"{prefix}@{_TRADE_STREAM}")
            conn.stream = connect_stream(
                stream_url(ws_base, streams),
                self.settings,
                on_message=self._on_frame,
                on_connect=partial(self._on_connect, conn),
                on_disconnect=partial(self._on_disconnect, conn),
                clock=self.context.clock,
                name=f"{self._venue}-{len(connections)}",
                rng=self._rng,
                log=self._log,
            )
            connections.append(conn)
        return connections

    # -- connection events -------------------------------------------------------------------------------

    async def _on_connect(self, conn: _Connection, _ws: StreamConnection) -> None:
        for feed in conn.feeds:
            self._cancel_snapshot(feed)
            feed.snapshot_attempts = 0
            feed.sync.connected()
            self._drain(feed)

    def _on_disconnect(self, conn: _Connection, error: BaseException) -> None:
        reason, detail = disconnect_reason(error)
        self.context.count("disconnects")
        for feed in conn.feeds:
            self._cancel_snapshot(feed)
            feed.sync.disconnected(reason, detail)
            self._drain(feed)
        self._report_counters(conn)

    # -- frames (the hot path) -----------------------------------------------------------------------------

    def _on_frame(self, frame: bytes) -> None:
        try:
            msg = self._decode(frame).data
        except msgspec.DecodeError as exc:
            self._on_undecodable(frame, exc)
            return
        feed = self._feeds.get(msg.symbol)
        if feed is None:
            self.context.count("unknown_symbol_frames")
            return
        if isinstance(msg, DepthUpdate):
            sync = feed.sync
            delta = sync.on_diff(msg, self._time_ns())
            if delta is not None:
                self._publish(delta)
            if sync.outputs:
                self._drain(feed)
        else:
            self._publish(trade(msg, self._venue, feed.instrument.symbol, self._time_ns()))

    def _on_undecodable(self, frame: bytes, exc: msgspec.DecodeError) -> None:
        stream = frame_stream_name(frame)
        prefix, _, channel = (stream or "").partition("@")
        if stream is not None and not (channel.startswith("depth") or channel == _TRADE_STREAM):
            # A well-formed frame of a stream we do not read (bookTicker, kline): not an error.
            self.context.count("ignored_frames")
            return
        feed = self._by_stream_symbol.get(prefix) if stream is not None else None
        symbol = feed.instrument.symbol if feed is not None else ""
        self.context.count("parse_errors", symbol)
        for conn in self._connections:
            # Without a symbol the connection is known only when there is one.
            mine = feed in conn.feeds if feed is not None else len(self._connections) == 1
            if mine and conn.stream is not None:
                conn.stream.counters.parse_errors += 1
        self._unreadable.log(frame, str(exc), symbol=symbol or None, stream=stream)
        if feed is not None and channel.startswith("depth"):
            feed.sync.invalidate(HealthReason.PARSE_ERROR, f"unreadable depth frame: {exc}")
            self._drain(feed)

    # -- sync machine outputs -----------------------------------------------------------------------------

    def _drain(self, feed: _SymbolFeed) -> None:
        symbol = feed.instrument.symbol
        for out in feed.sync.take_outputs():
            if isinstance(out, BookDelta | BookSnapshot):
                self._publish(out)
            elif isinstance(out, HealthChange):
                self.context.set_health(symbol, out.health, out.reason, out.detail)
                if out.reason is HealthReason.GAP:
                    self.context.count("gaps", symbol)
                    self._log.warning("sequence gap; resyncing", symbol=symbol, detail=out.detail)
                elif out.health is BookHealth.LIVE:
                    feed.snapshot_attempts = 0
                    feed.delays = backoff(self.settings.backoff, self._rng)
            elif isinstance(out, NeedSnapshot):
                self._request_snapshot(feed, out)

    def _request_snapshot(self, feed: _SymbolFeed, request: NeedSnapshot) -> None:
        self._cancel_snapshot(feed)
        delay = next(feed.delays) if feed.snapshot_attempts else 0.0
        feed.snapshot_attempts += 1
        self.context.count("snapshot_requests", feed.instrument.symbol)
        feed.snapshot_task = self._tasks.spawn(
            self._fetch_snapshot(feed, request, delay), f"{self._venue}-snapshot-{request.symbol}"
        )

    def _cancel_snapshot(self, feed: _SymbolFeed) -> None:
        task = feed.snapshot_task
        if task is not None:
            if not task.done():
                # A newer request or a reconnect made it moot; counted, since churn here keeps a book out.
                self.context.count("snapshot_fetches_abandoned", feed.instrument.symbol)
            task.cancel()
            feed.snapshot_task = None

    def _on_snapshot_retry(self, symbol: str, error: BaseException) -> None:
        # REST retries are otherwise invisible: a book stuck behind 429s or timeouts must show why.
        self.context.count("snapshot_retries", symbol)
        self.context.count(f"snapshot_retries_{retry_cause(error)}", symbol)

    async def _fetch_snapshot(self, feed: _SymbolFeed, request: NeedSnapshot, delay_secs: float) -> None:
        """Fetch until a readable snapshot arrives (the REST client retries transient failures; others,
        and unreadable answers, are asked again after the feed's backoff delays)."""
        rest = self._rest
        assert rest is not None, "snapshots are requested only while run() holds the REST client"
        clock = self.context.clock
        symbol = feed.instrument.symbol
        url = f"{self._rest_base}{self.market.rest_prefix}/depth"
        params: dict[str, str | int] = {
            "symbol": feed.instrument.venue_symbol,
            "limit": self.settings.snapshot_depth,
        }
        if delay_secs > 0:
            await clock.sleep(delay_secs)
        on_retry = partial(self._on_snapshot_retry, symbol)
        while True:
            try:
                body = await rest.get(url, params, on_retry=on_retry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Not worth an immediate retry (a 403 from a firewall, a 400 in maintenance): but giving up
                # would leave the book out of sync until the next reconnect, which may never come. Ask
                # again after the backoff delays (up to their cap), saying so each time.
                delay = next(feed.delays)
                self.context.count("snapshot_errors", symbol)
                self._log.error("depth snapshot failed; fetching again later", symbol=symbol,
                                error=repr(exc)[:FRAME_EXCERPT_CHARS], delay_secs=round(delay, 3))
                await clock.sleep(delay)
                continue
            try:
                snap = decode_depth_snapshot(body)
                break
            except msgspec.DecodeError as exc:
                self.context.count("parse_errors", symbol)
                self._log.warning(
                    "unreadable depth snapshot; fetching again",
                    symbol=symbol,
                    error=str(exc),
                    body=frame_excerpt(body),
                )
                await clock.sleep(next(feed.delays))
        if feed.snapshot_task is asyncio.current_task():
            feed.snapshot_task = None
        feed.sync.on_snapshot(snap, request.request_id, self._time_ns())
        self._drain(feed)
