"""The OKX market-data client: v5 public ``books`` and ``trades`` in, book and trade events out.

At start-up it loads the instruments of the types the configured symbols need (``SPOT``, ``SWAP``,
``FUTURES``) from REST and reports each symbol's instrument. Symbols are spread over connections of at most
``max_symbols_per_connection``; on each connection (a :class:`~botframe.streams.ResilientWebSocket`) the
client subscribes ``books`` (and ``trades``) for its instruments in one request, sends requests no faster
than ``max_requests_per_sec``, sends OKX's text ``ping`` whenever the connection has been quiet for
``heartbeat_interval_secs`` (OKX drops a connection silent for 30 s), and runs one :class:`~.sync.BookSync`
per instrument.

Per book frame the work is: one msgspec decode, one dict lookup, the sync machine (sequence chain before the
book is touched; then apply, checksum of the top 25 levels when OKX still sends one, crossing, and publish only
if all held: no strategy ever reads a book the frame's own checks refuted). A gap, a mismatch or a crossed
book resubscribes that one book without publishing the frame; the others carry on. A frame that cannot be
decoded is logged with its first 200 characters, counted (``parse_errors``) and skipped; if it named a book
of ours, that book resyncs. Error events are logged with OKX's code and message; notice 64008 (service
upgrade) reconnects at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import msgspec
import structlog
from websockets.exceptions import ConnectionClosed

from botframe.events import HealthReason, Trade
from botframe.streams import (
    BackgroundTasks,
    RequestQueue,
    ResilientWebSocket,
    RestClient,
    StreamConnection,
    StreamingVenueClient,
    UnreadableFrames,
    connect_stream,
    disconnect_reason,
    rest_client,
    run_streams,
)
from botframe.venues import Instrument, VenueContext

from .config import OkxSettings
from .parsing import (
    FrameError,
    Ignored,
    InstrumentInfo,
    Notice,
    OkxBook,
    OkxDecoder,
    OkxMessage,
    OkxSymbolMap,
    OkxTrade,
    Pong,
    RequestError,
    SubscriptionChange,
    decode_instruments,
    inst_type_of,
    request,
)
from .sync import BookSync, HealthChange, Resubscribe, SyncCounters

__all__ = ["OkxDataClient"]

_INSTRUMENTS_PATH = "/api/v5/public/instruments"
_PROBLEM_COUNTERS = {
    HealthReason.CHECKSUM: "checksum_failures",
    HealthReason.CROSSED: "crossed",
    HealthReason.GAP: "gaps",
}
#: OKX's notice that the connection will be closed soon for a service upgrade.
_NOTICE_SERVICE_UPGRADE = "64008"


@dataclass(slots=True, eq=False)
class _SymbolFeed:
    """Everything the client keeps for one instrument."""

    instrument: Instrument
    sync: BookSync
    connection: _Connection | None = None


@dataclass(slots=True, eq=False)
class _Connection:
    """One WebSocket connection, the instruments it carries, its request queue and keepalive."""

    index: int
    feeds: list[_SymbolFeed]
    requests: RequestQueue
    # Frames are routed per connection: an instrument counts only on the connection that subscribed it.
    by_inst_id: dict[str, _SymbolFeed] = field(default_factory=dict)
    stream: ResilientWebSocket | None = None
    ws: StreamConnection | None = None
    keepalive: asyncio.Task[None] | None = None
    reported: dict[str, int] = field(default_factory=dict)  # stream counters already added to the venue's


class OkxDataClient(StreamingVenueClient[_Connection]):
    """Streams order books and trades of ``settings.symbols`` from OKX (v5 public WebSocket).

    ``run()`` never returns normally: it stops when cancelled, or raises when OKX refuses us in a way
    retrying cannot fix (an unknown symbol at start-up, a rejected URL; see ``botframe.streams.classify``).
    """

    def __init__(
        self,
        settings: OkxSettings,
        context: VenueContext,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.context = context
        self.symbols: list[str] = list(settings.symbols)
        self._venue = context.venue
        self._rng = rng
        self._log: structlog.typing.FilteringBoundLogger = context.log.bind(venue=self._venue)
        self._feeds: dict[str, _SymbolFeed] = {}  # by unified symbol
        self._connections: list[_Connection] = []
        self._tasks = BackgroundTasks()
        self._decode = OkxDecoder().decode
        self._publish = context.publish
        self._time_ns = context.clock.time_ns
        self._unreadable = UnreadableFrames(self._log)
        self._handlers: dict[type, Callable[[_Connection, OkxMessage], None]] = {
            OkxBook: self._on_book,
            OkxTrade: self._on_trade,
            Pong: _ignore,
            SubscriptionChange: _ignore,
            RequestError: self._on_error_event,
            Notice: self._on_notice,
            Ignored: self._on_ignored,
        }

    def _book_symbols(self) -> list[str]:
        return [feed.instrument.symbol for feed in self._feeds.values()]

    # -- public --------------------------------------------------------------------------------------------

    def book_counters(self) -> dict[str, SyncCounters]:
        """Per symbol: snapshots, updates, checksums matched and failed, gaps, resyncs..."""
        return {symbol: feed.sync.counters for symbol, feed in self._feeds.items()}

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Re-sync one book from a fresh snapshot (the engine found it crossed or stale): resubscribe it."""
        feed = self._feeds.get(symbol)
        if feed is None:
            return
        self._log.warning("book resync requested", symbol=symbol, reason=reason.value, detail=detail)
        feed.sync.invalidate(reason, detail)
        self._drain(feed, count_problems=False)  # the engine counted what it found

    async def run(self) -> NoReturn:
        endpoints = self.context.endpoints
        s = self.settings
        ws_url = endpoints.resolve(s.ws_url, "okx.ws")
        rest_base = endpoints.resolve(s.rest_url, "okx.rest").rstrip("/")
        try:
            async with rest_client(s, clock=self.context.clock, rng=self._rng, log=self._log) as rest:
                await self._load_instruments(rest, rest_base)
            self._connections = self._plan_connections(ws_url)
            await run_streams([c.stream for c in self._connections if c.stream is not None])
        finally:
            await self._stop()

    # -- start-up --------------------------------------------------------------------------------------------

    async def _load_instruments(self, rest: RestClient, rest_base: str) -> None:
        infos: list[InstrumentInfo] = []
        for inst_type in sorted({inst_type_of(s) for s in self.symbols}):
            url = f"{rest_base}{_INSTRUMENTS_PATH}"
            body = await rest.get(url, {"instType": inst_type.value})
            try:
                resp = decode_instruments(body)
            except msgspec.DecodeError as exc:
                raise RuntimeError(f"{self._venue}: unreadable instruments from {url}: {exc}") from exc
            if resp.code != "0":
                raise RuntimeError(f"{self._venue}: instruments from {url} answered {resp.code} {resp.msg}")
            infos += resp.data
        symbol_map = OkxSymbolMap(infos, self._venue)
        for unified in self.symbols:
            instrument = symbol_map.instrument(unified)  # raises UnknownSymbolError naming the fix
            state = symbol_map.state(unified)
            if state != "live":
                self._log.warning("instrument is not trading", symbol=unified, state=state)
            self.context.add_instrument(instrument)
            sync = BookSync(self._venue, unified, self.context.book(unified), apply=self.context.apply,
                            publish=self._publish)
            self._feeds[unified] = _SymbolFeed(instrument, sync)
        self._log.info("instruments loaded", symbols=len(self.symbols), listed=len(symbol_map))

    def _plan_connections(self, ws_url: str) -> list[_Connection]:
        feeds = list(self._feeds.values())
        per = self.settings.max_symbols_per_connection
        connections: list[_Connection] = []
        s = self.settings
        clock = self.context.clock
        for start in range(0, len(feeds), per):
            conn = _Connection(len(connections), feeds[start : start + per],
                               RequestQueue(s.max_requests_per_sec, clock))
            for feed in conn.feeds:
                feed.connection = conn
                conn.by_inst_id[feed.instrument.venue_symbol] = feed
            conn.stream = connect_stream(
                ws_url,
                s,
                on_message=partial(self._on_frame, conn),
                on_connect=partial(self._on_connect, conn),
                on_disconnect=partial(self._on_disconnect, conn),
                clock=clock,
                name=f"{self._venue}-{conn.index}",
                rng=self._rng,
                log=self._log,
            )
            connections.append(conn)
        return connections

    # -- connection events -------------------------------------------------------------------------------

    async def _on_connect(self, conn: _Connection, ws: StreamConnection) -> None:
        conn.ws = ws
        assert conn.stream is not None, "connections are planned with their stream"
        # Requests no faster than max_requests_per_sec: OKX rate-limits them.
        conn.requests.start(conn.stream, self._tasks, f"{self._venue}-{conn.index}-requests")
        self._stop_keepalive(conn)
        conn.keepalive = self._tasks.spawn(self._keepalive(conn), f"{self._venue}-{conn.index}-keepalive")
        args = [("books", feed.instrument.venue_symbol) for feed in conn.feeds]
        if self.settings.trades:
            args += [("trades", feed.instrument.venue_symbol) for feed in conn.feeds]
        self._send(conn, request("subscribe", args))
        for feed in conn.feeds:
            feed.sync.subscribed()
            self._drain(feed)

    def _on_disconnect(self, conn: _Connection, error: BaseException) -> None:
        reason, detail = disconnect_reason(error)
        self.context.count("disconnects")
        conn.ws = None
        conn.requests.stop()
        self._stop_keepalive(conn)
        for feed in conn.feeds:
            feed.sync.disconnected(reason, detail)
            self._drain(feed)
        self._report_counters(conn)

    @staticmethod
    def _stop_keepalive(conn: _Connection) -> None:
        if conn.keepalive is not None:
            conn.keepalive.cancel()
            conn.keepalive = None

    # -- requests and keepalive ------------------------------------------------------------------------------

    def _send(self, conn: _Connection, frame: str) -> None:
        conn.requests.put(frame)

    async def _keepalive(self, conn: _Connection) -> None:
        """Send the text ``ping`` when nothing arrived for ``heartbeat_interval_secs``; OKX answers ``pong``."""
        clock = self.context.clock
        stream = conn.stream
        assert stream is not None, "connections are planned with their stream"
        interval = self.settings.heartbeat_interval_secs
        seen = stream.counters.messages
        while True:
            await clock.sleep(interval)
            if stream.counters.messages == seen:
                try:
                    await stream.send("ping")
                except (ConnectionError, ConnectionClosed):
                    return
            seen = stream.counters.messages

    def _resubscribe(self, feed: _SymbolFeed, reason: str) -> None:
        conn = feed.connection
        if conn is None or conn.ws is None:
            return  # a new connection subscribes anyway
        symbol = feed.instrument.symbol
        self.context.count("resyncs", symbol)
        self._log.info("resubscribing book", symbol=symbol, reason=reason)
        arg = [("books", feed.instrument.venue_symbol)]
        self._send(conn, request("unsubscribe", arg))
        self._send(conn, request("subscribe", arg))

    # -- frames (the hot path) -----------------------------------------------------------------------------

    def _on_frame(self, conn: _Connection, frame: bytes) -> None:
        try:
            messages = self._decode(frame)
        except FrameError as exc:
            self._on_undecodable(conn, frame, exc)
            return
        handlers = self._handlers
        for msg in messages:
            try:
                handlers[type(msg)](conn, msg)
            except ValueError as exc:
                # A level whose text is not a number: the frame is as unreadable as broken JSON.
                symbol = msg.inst_id if isinstance(msg, OkxBook) else ""
                self._on_undecodable(conn, frame, FrameError(str(exc), symbol=symbol, channel="books"))

    def _on_book(self, conn: _Connection, msg: OkxMessage) -> None:
        assert isinstance(msg, OkxBook)
        feed = conn.by_inst_id.get(msg.inst_id)
        if feed is None:
            self.context.count("unknown_symbol_frames")
            return
        sync = feed.sync
        if msg.snapshot:
            sync.on_snapshot(msg.bids, msg.asks, msg.checksum, msg.seq_id, msg.exchange_ts_ns, self._time_ns())
        else:
            sync.on_update(msg.bids, msg.asks, msg.checksum, msg.seq_id, msg.prev_seq_id, msg.exchange_ts_ns,
                           self._time_ns())
        if sync.outputs:
            self._drain(feed)

    def _on_trade(self, conn: _Connection, msg: OkxMessage) -> None:
        assert isinstance(msg, OkxTrade)
        feed = conn.by_inst_id.get(msg.inst_id)
        if feed is None:
            self.context.count("unknown_symbol_frames")
            return
        self._publish(
            Trade(
                venue=self._venue,
                symbol=feed.instrument.symbol,
                price=msg.price,
                size=msg.size,
                side=msg.side,
                trade_id=msg.trade_id,
                exchange_ts_ns=msg.exchange_ts_ns,
                receive_ts_ns=self._time_ns(),
            )
        )

    # -- control frames ------------------------------------------------------------------------------------

    def _on_error_event(self, conn: _Connection, msg: OkxMessage) -> None:
        assert isinstance(msg, RequestError)
        # OKX names the channel and instrument of a refused subscription only inside its message text.
        named = [f.instrument.symbol for f in conn.feeds if f.instrument.venue_symbol in msg.message]
        self.context.count("subscription_errors", named[0] if len(named) == 1 else "")
        self._log.error("OKX refused a request", code=msg.code, error=msg.message, symbols=named or None)

    def _on_notice(self, conn: _Connection, msg: OkxMessage) -> None:
        assert isinstance(msg, Notice)
        self.context.count("notices")
        if msg.code == _NOTICE_SERVICE_UPGRADE:
            self._reconnect(conn, f"OKX notice {msg.code}: {msg.message}")
        else:
            self._log.warning("OKX notice", code=msg.code, message=msg.message)

    def _on_ignored(self, conn: _Connection, msg: OkxMessage) -> None:
        self.context.count("ignored_frames")

    def _on_undecodable(self, conn: _Connection, frame: bytes, exc: FrameError) -> None:
        feed = conn.by_inst_id.get(exc.symbol) if exc.symbol else None
        symbol = feed.instrument.symbol if feed is not None else ""
        self.context.count("parse_errors", symbol)
        if conn.stream is not None:
            conn.stream.counters.parse_errors += 1
        self._unreadable.log(frame, str(exc), symbol=symbol or None, channel=exc.channel or None)
        if feed is not None and exc.channel in ("books", ""):
            feed.sync.invalidate(HealthReason.PARSE_ERROR, f"unreadable book frame: {exc}")
            self._drain(feed)

    # -- sync machine outputs -----------------------------------------------------------------------------

    def _drain(self, feed: _SymbolFeed, *, count_problems: bool = True) -> None:
        symbol = feed.instrument.symbol
        for out in feed.sync.take_outputs():
            if isinstance(out, HealthChange):
                self.context.set_health(symbol, out.health, out.reason, out.detail)
                counter = _PROBLEM_COUNTERS.get(out.reason) if count_problems else None
                if counter is not None:
                    self.context.count(counter, symbol)
                    self._log.warning("book out of sync; resyncing", symbol=symbol, reason=out.reason.value,
                                      detail=out.detail)
            elif isinstance(out, Resubscribe):
                self._resubscribe(feed, out.reason)


def _ignore(conn: _Connection, msg: OkxMessage) -> None:
    """Pongs and subscription acks: their arrival already fed the stale watchdog."""
