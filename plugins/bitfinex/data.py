"""The Bitfinex market-data client: v2 public ``book`` (P0) and ``trades`` in, book and trade events out.

At start-up it loads the listed pairs from REST and reports each configured symbol's instrument. Symbols
are spread over connections so that none carries more than ``max_channels_per_connection`` subscriptions
(a book, and trades, per symbol); on each connection (a :class:`~botframe.streams.ResilientWebSocket`) the
client first sends ``conf`` with SEQ_ALL (and OB_CHECKSUM), then one subscribe per channel, no faster than
``max_requests_per_sec``. It keeps the connection's ``chanId`` map from the ``subscribed`` events, checks the
connection's sequence on every channel frame (heartbeats included) with a
:class:`~.sync.ConnectionSequence`, and runs one :class:`~.sync.BookSync` per symbol.

With checksum frames (asked for and confirmed in Bitfinex's ``conf`` answer), a book's snapshot and updates
are held as they arrive and applied, verified and published together at the ``cs`` frame that follows
them, so no strategy ever reads a book state that frame refutes (:mod:`.sync` says why, and how a ``cs``
that never comes is bounded); book heartbeats feed that bound. A sequence gap resyncs every book of that
connection (the lost frame could have been anyone's); a checksum mismatch, a missing checksum or a crossed
book resyncs that one book, publishing nothing it held. Resyncing is unsubscribe (by ``chanId``) and subscribe;
Bitfinex answers with a fresh snapshot. A frame that cannot be decoded is logged with its first 200
characters, counted (``parse_errors``) and skipped; if it belonged to a book, that book resyncs. Trades come
from ``te`` frames; ``tu`` repeats the same trade and is ignored. Info 20051 reconnects; 20060/20061 park
the books for maintenance and resubscribe them after it; error events are logged with Bitfinex's code.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import msgspec
import structlog

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

from .config import BitfinexSettings
from .parsing import (
    FLAG_OB_CHECKSUM,
    INFO_MAINTENANCE_END,
    INFO_MAINTENANCE_START,
    INFO_RECONNECT,
    BitfinexDecoder,
    BitfinexMessage,
    BitfinexSymbolMap,
    ChannelData,
    ChecksumFrame,
    ConfAck,
    ErrorEvent,
    FrameError,
    Heartbeat,
    Ignored,
    Info,
    Pong,
    Subscribed,
    TradeFrame,
    Unsubscribed,
    book_level,
    book_snapshot_levels,
    conf_request,
    decode_pair_list,
    subscribe_request,
    trade_execution,
    unsubscribe_request,
)
from .sync import BookSync, ConnectionSequence, HealthChange, Resubscribe, SyncCounters

__all__ = ["BitfinexDataClient"]

_PAIR_LIST_PATH = "/v2/conf/pub:list:pair:exchange"
_PROBLEM_COUNTERS = {
    HealthReason.CHECKSUM: "checksum_failures",
    HealthReason.CROSSED: "crossed",
}
_ERROR_DUPLICATE_SUBSCRIPTION = 10301
_BOOK = "book"
_TRADES = "trades"


@dataclass(slots=True, eq=False)
class _SymbolFeed:
    """Everything the client keeps for one symbol."""

    instrument: Instrument
    sync: BookSync
    connection: _Connection | None = None
    book_chan: int | None = None  # chanId of the book subscription, once Bitfinex acked it
    trades_chan: int | None = None


@dataclass(slots=True, eq=False)
class _Connection:
    """One WebSocket connection, its symbols, channel map, sequence and paced request queue."""

    index: int
    feeds: list[_SymbolFeed]
    requests: RequestQueue
    by_symbol: dict[str, _SymbolFeed] = field(default_factory=dict)  # by "tBTCUSD"
    channels: dict[int, tuple[_SymbolFeed, str]] = field(default_factory=dict)  # chanId -> (feed, channel)
    sequence: ConnectionSequence = field(default_factory=ConnectionSequence)
    stream: ResilientWebSocket | None = None
    ws: StreamConnection | None = None
    maintenance: bool = False
    reported: dict[str, int] = field(default_factory=dict)  # stream counters already added to the venue's


class BitfinexDataClient(StreamingVenueClient[_Connection]):
    """Streams order books and trades of ``settings.symbols`` from Bitfinex (v2 public WebSocket).

    ``run()`` never returns normally: it stops when cancelled, or raises when Bitfinex refuses us in a way
    retrying cannot fix (an unknown symbol at start-up, a rejected URL; see ``botframe.streams.classify``).
    """

    def __init__(
        self,
        settings: BitfinexSettings,
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
        self._decode = BitfinexDecoder().decode
        self._publish = context.publish
        self._time_ns = context.clock.time_ns
        self._unreadable = UnreadableFrames(self._log)
        self._handlers: dict[type, Callable[[_Connection, BitfinexMessage], None]] = {
            ChannelData: self._on_channel_data,
            Heartbeat: self._on_heartbeat,
            ChecksumFrame: self._on_checksum,
            TradeFrame: self._on_trade,
            Info: self._on_info,
            ConfAck: self._on_conf,
            Subscribed: self._on_subscribed,
            Unsubscribed: _ignore,
            ErrorEvent: self._on_error_event,
            Pong: _ignore,
            Ignored: self._on_ignored,
        }

    def _book_symbols(self) -> list[str]:
        return [feed.instrument.symbol for feed in self._feeds.values()]

    # -- public --------------------------------------------------------------------------------------------

    def book_counters(self) -> dict[str, SyncCounters]:
        """Per symbol: snapshots, updates, checksums matched and failed, resyncs..."""
        return {symbol: feed.sync.counters for symbol, feed in self._feeds.items()}

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Re-sync one book from a fresh snapshot (the engine found it crossed or stale): resubscribe it."""
        feed = self._feeds.get(symbol)
        if feed is None:
            return
        self._log.warning("book resync requested", symbol=symbol, reason=reason.value, detail=detail)
        feed.sync.invalidate(reason, detail)
        self._drain(feed, count_problems=False)  # the engine counted what it found

    def sequence_gaps(self) -> int:
        """Gaps in the connections' SEQ_ALL sequences so far."""
        return sum(c.sequence.gaps for c in self._connections)

    async def run(self) -> NoReturn:
        endpoints = self.context.endpoints
        s = self.settings
        ws_url = endpoints.resolve(s.ws_url, "bitfinex.ws")
        rest_base = endpoints.resolve(s.rest_url, "bitfinex.rest").rstrip("/")
        try:
            async with rest_client(s, clock=self.context.clock, rng=self._rng, log=self._log) as rest:
                await self._load_instruments(rest, rest_base)
            self._connections = self._plan_connections(ws_url)
            await run_streams([c.stream for c in self._connections if c.stream is not None])
        finally:
            await self._stop()

    # -- start-up --------------------------------------------------------------------------------------------

    async def _load_instruments(self, rest: RestClient, rest_base: str) -> None:
        url = f"{rest_base}{_PAIR_LIST_PATH}"
        body = await rest.get(url)
        try:
            pairs = decode_pair_list(body)
        except msgspec.DecodeError as exc:
            raise RuntimeError(f"{self._venue}: unreadable pair list from {url}: {exc}") from exc
        symbol_map = BitfinexSymbolMap(pairs, self._venue)
        for unified in self.symbols:
            instrument = symbol_map.instrument(unified)  # raises UnknownSymbolError naming the fix
            self.context.add_instrument(instrument)
            sync = BookSync(self._venue, unified, self.context.book(unified), apply=self.context.apply,
                            publish=self._publish, checksums=self.settings.checksums)
            self._feeds[unified] = _SymbolFeed(instrument, sync)
        self._log.info("instruments loaded", symbols=len(self.symbols), listed=len(symbol_map))

    def _plan_connections(self, ws_url: str) -> list[_Connection]:
        feeds = list(self._feeds.values())
        s = self.settings
        per = max(1, s.max_channels_per_connection // (2 if s.trades else 1))
        connections: list[_Connection] = []
        clock = self.context.clock
        for start in range(0, len(feeds), per):
            conn = _Connection(len(connections), feeds[start : start + per],
                               RequestQueue(s.max_requests_per_sec, clock))
            for feed in conn.feeds:
                feed.connection = conn
                conn.by_symbol[feed.instrument.venue_symbol] = feed
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
        conn.maintenance = False
        conn.channels.clear()
        conn.sequence.reset()
        assert conn.stream is not None, "connections are planned with their stream"
        # Requests no faster than max_requests_per_sec: Bitfinex rate-limits them.
        conn.requests.start(conn.stream, self._tasks, f"{self._venue}-{conn.index}-requests")
        self._send(conn, conf_request(checksums=self.settings.checksums))
        for feed in conn.feeds:
            feed.book_chan = feed.trades_chan = None
            self._send(conn, subscribe_request(_BOOK, feed.instrument.venue_symbol, self.settings.depth))
        if self.settings.trades:
            for feed in conn.feeds:
                self._send(conn, subscribe_request(_TRADES, feed.instrument.venue_symbol))
        for feed in conn.feeds:
            feed.sync.expect_checksums(self.settings.checksums)  # until Bitfinex answers this connection's conf
            feed.sync.subscribed()
            self._drain(feed)

    def _on_disconnect(self, conn: _Connection, error: BaseException) -> None:
        reason, detail = disconnect_reason(error)
        self.context.count("disconnects")
        conn.ws = None
        conn.requests.stop()
        for feed in conn.feeds:
            feed.sync.disconnected(reason, detail)
            self._drain(feed)
        self._report_counters(conn)

    # -- requests ------------------------------------------------------------------------------------------

    def _send(self, conn: _Connection, frame: str) -> None:
        conn.requests.put(frame)

    def _resubscribe(self, feed: _SymbolFeed, reason: str) -> None:
        conn = feed.connection
        if conn is None or conn.ws is None or conn.maintenance:
            return  # a new connection, or the end of maintenance, subscribes anyway
        chan = feed.book_chan
        if chan is None:
            return  # a subscription is already on its way; its snapshot follows its ack
        symbol = feed.instrument.symbol
        self.context.count("resyncs", symbol)
        self._log.info("resubscribing book", symbol=symbol, reason=reason)
        # Forget the channel now: its frames still in flight must not reach the book.
        conn.channels.pop(chan, None)
        feed.book_chan = None
        self._send(conn, unsubscribe_request(chan))
        self._send(conn, subscribe_request(_BOOK, feed.instrument.venue_symbol, self.settings.depth))

    # -- frames (the hot path) -----------------------------------------------------------------------------

    def _on_frame(self, conn: _Connection, frame: bytes) -> None:
        try:
            msg = self._decode(frame)
        except FrameError as exc:
            self._on_undecodable(conn, frame, exc, None)
            return
        seq = getattr(msg, "seq", None)
        if seq is not None:
            expected = conn.sequence.check(seq)
            if expected is not None:
                self._on_gap(conn, expected, seq)
        try:
            self._handlers[type(msg)](conn, msg)
        except (FrameError, ValueError) as exc:
            # A payload that is not what its channel carries, or a level whose text is not a number.
            chan = getattr(msg, "chan_id", None)
            self._on_undecodable(conn, frame, exc, chan)

    def _on_gap(self, conn: _Connection, expected: int, seq: int) -> None:
        detail = f"sequence {seq} where {expected} was due: {seq - expected} frame(s) of this connection lost"
        self.context.count("gaps")
        self._log.warning("sequence gap; resyncing every book of the connection", connection=conn.index,
                          detail=detail)
        for feed in conn.feeds:
            feed.sync.invalidate(HealthReason.GAP, detail)
            self._drain(feed)

    def _on_channel_data(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, ChannelData)
        entry = conn.channels.get(msg.chan_id)
        if entry is None:
            self.context.count("unknown_channel_frames")
            return
        feed, channel = entry
        if channel != _BOOK:
            return  # the trades snapshot: recent history, already seen or never ours to see
        payload = msg.payload
        sync = feed.sync
        if not payload or isinstance(payload[0], list):
            sync.on_snapshot(book_snapshot_levels(payload), self._time_ns())
        else:
            sync.on_update(book_level(payload), msg.seq, self._time_ns())
        if sync.outputs:
            self._drain(feed)

    def _on_heartbeat(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, Heartbeat)
        entry = conn.channels.get(msg.chan_id)
        if entry is None or entry[1] != _BOOK:
            return  # its arrival already fed the watchdog (and the sequence)
        sync = entry[0].sync
        sync.on_heartbeat()
        if sync.outputs:
            self._drain(entry[0])

    def _on_checksum(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, ChecksumFrame)
        entry = conn.channels.get(msg.chan_id)
        if entry is None:
            self.context.count("unknown_channel_frames")
            return
        feed = entry[0]
        feed.sync.on_checksum(msg.checksum)
        if feed.sync.outputs:
            self._drain(feed)

    def _on_trade(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, TradeFrame)
        if msg.kind != "te":
            return  # "tu" repeats a trade already published from its "te"
        entry = conn.channels.get(msg.chan_id)
        if entry is None:
            self.context.count("unknown_channel_frames")
            return
        trade = trade_execution(msg.payload)
        self._publish(
            Trade(
                venue=self._venue,
                symbol=entry[0].instrument.symbol,
                price=trade.price,
                size=trade.size,
                side=trade.side,
                trade_id=trade.trade_id,
                exchange_ts_ns=trade.exchange_ts_ns,
                receive_ts_ns=self._time_ns(),
            )
        )

    # -- control frames ------------------------------------------------------------------------------------

    def _on_subscribed(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, Subscribed)
        feed = conn.by_symbol.get(msg.symbol)
        if feed is None or msg.channel not in (_BOOK, _TRADES):
            self.context.count("ignored_frames")
            return
        conn.channels[msg.chan_id] = (feed, msg.channel)
        if msg.channel == _BOOK:
            feed.book_chan = msg.chan_id
        else:
            feed.trades_chan = msg.chan_id

    def _on_info(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, Info)
        if msg.code == INFO_RECONNECT:
            self.context.count("reconnect_requests")
            self._reconnect(conn, f"Bitfinex info {msg.code}: {msg.message}")
        elif msg.code == INFO_MAINTENANCE_START:
            self.context.count("maintenance")
            self._log.warning("Bitfinex maintenance started; books wait for it to end", connection=conn.index)
            conn.maintenance = True
            for feed in conn.feeds:
                feed.sync.invalidate(HealthReason.STALE, f"Bitfinex info {msg.code}: {msg.message}")
                self._drain(feed)
        elif msg.code == INFO_MAINTENANCE_END:
            self._log.info("Bitfinex maintenance ended; resubscribing", connection=conn.index)
            conn.maintenance = False
            for feed in conn.feeds:
                # Bitfinex advises resubscribing every channel after maintenance.
                feed.sync.invalidate(HealthReason.STALE, f"Bitfinex info {msg.code}: {msg.message}")
                self._drain(feed)
        elif msg.platform_status == 0:
            self._log.warning("Bitfinex platform in maintenance", connection=conn.index)
        else:
            self._log.info("Bitfinex info", code=msg.code or None, message=msg.message or None,
                           platform_status=msg.platform_status, connection=conn.index)

    def _on_conf(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, ConfAck)
        if msg.status != "OK":
            self._log.warning("Bitfinex refused the connection flags", status=msg.status, flags=msg.flags)
        # Book events wait for a cs frame only where Bitfinex confirmed it sends them (a replay, a refused
        # conf or checksums = false: none come, and each update is published once it is applied).
        checksums = msg.status == "OK" and bool(msg.flags & FLAG_OB_CHECKSUM)
        if self.settings.checksums and not checksums:
            self._log.warning("Bitfinex did not confirm checksum frames; book events will not wait for one",
                              connection=conn.index, flags=msg.flags)
        for feed in conn.feeds:
            feed.sync.expect_checksums(checksums)
            if feed.sync.outputs:
                self._drain(feed)

    def _on_error_event(self, conn: _Connection, msg: BitfinexMessage) -> None:
        assert isinstance(msg, ErrorEvent)
        feed = conn.by_symbol.get(msg.symbol)
        symbol = feed.instrument.symbol if feed is not None else ""
        self.context.count("subscription_errors", symbol)
        self._log.error("Bitfinex refused a request", code=msg.code, error=msg.message, channel=msg.channel or None,
                        symbol=symbol or msg.symbol or None)
        if (feed is not None and msg.code == _ERROR_DUPLICATE_SUBSCRIPTION and msg.channel == _BOOK
                and feed.sync.awaiting_snapshot):
            # A resubscription raced its own unsubscribe: only a new connection is sure to resnapshot.
            self._reconnect(conn, f"book of {symbol} stuck resubscribing: {msg.message}")

    def _on_ignored(self, conn: _Connection, msg: BitfinexMessage) -> None:
        self.context.count("ignored_frames")

    def _on_undecodable(self, conn: _Connection, frame: bytes, exc: ValueError, chan: int | None) -> None:
        entry = conn.channels.get(chan) if chan is not None else None
        feed = entry[0] if entry is not None else None
        symbol = feed.instrument.symbol if feed is not None else ""
        self.context.count("parse_errors", symbol)
        if conn.stream is not None:
            conn.stream.counters.parse_errors += 1
        self._unreadable.log(frame, str(exc), symbol=symbol or None)
        if feed is not None and entry is not None and entry[1] == _BOOK:
            feed.sync.invalidate(HealthReason.PARSE_ERROR, f"unreadable book frame: {exc}")
            self._drain(feed)

    # -- sync machine outputs -----------------------------------------------------------------------------

    def _drain(self, feed: _SymbolFeed, *, count_problems: bool = True) -> None:
        symbol = feed.instrument.symbol
        for out in feed.sync.take_outputs():
            if isinstance(out, HealthChange):
                self.context.set_health(symbol, out.health, out.reason, out.detail)
                counter = (out.counter or _PROBLEM_COUNTERS.get(out.reason)) if count_problems else None
                if counter is not None:
                    self.context.count(counter, symbol)
                    self._log.warning("book out of sync; resyncing", symbol=symbol, reason=out.reason.value,
                                      detail=out.detail)
            elif isinstance(out, Resubscribe):
                self._resubscribe(feed, out.reason)


def _ignore(conn: _Connection, msg: BitfinexMessage) -> None:
    """Heartbeats, pongs, unsubscribe acks: their arrival already fed the watchdog (and the sequence)."""
