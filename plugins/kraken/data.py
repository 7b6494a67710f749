"""The Kraken market-data client: WebSocket v2 (default) or v1 in, book and trade events out.

At start-up it loads the pairs from REST ``AssetPairs`` (names, precisions, tick/lot/min notional) and
reports each configured symbol's instrument; with no ``rest_url`` (v2 only) the instruments come from the
``instrument`` channel instead. Symbols are spread over connections of at most
``max_symbols_per_connection``; on each connection (a :class:`~botframe.streams.ResilientWebSocket`) the
client subscribes ``book`` (and ``trade``, and for v2 ``instrument``) for its symbols, sending requests no
faster than ``max_requests_per_sec``, and runs one :class:`~.sync.BookSync` per symbol.

Per book frame the work is: one msgspec decode, one dict lookup, the sync machine (apply, checksum of the
top 10 levels, and publish only if it matched: no strategy ever reads a book the checksum refuted). A
checksum mismatch or a crossed book resubscribes that one book (unsubscribe, subscribe: Kraken answers
with a fresh snapshot) without publishing the frame; the other books of the connection carry on.

A frame that cannot be decoded is logged with its first 200 characters, counted (``parse_errors``) and
skipped; if it named a book of ours, that book resyncs. A v2 book frame of an unknown ``type``, or a v2
update without its ``checksum`` (Kraken always sends one), is such a frame: applied, it would change a
book unproven. Heartbeats prove the connection alive (the stale watchdog replaces a silent one); system
status ``maintenance`` parks the books until ``online``; refused subscriptions are logged with Kraken's
reason.
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
from botframe.venues import VenueContext

from .config import KrakenSettings
from .parsing import (
    FrameError,
    Heartbeat,
    Ignored,
    InstrumentUpdate,
    KrakenMessage,
    KrakenPair,
    KrakenSymbolMap,
    KrakenTrade,
    Pong,
    RequestError,
    SubscriptionChange,
    SubscriptionState,
    SystemStatus,
    V1Book,
    V1Decoder,
    V2Book,
    V2Decoder,
    decode_asset_pairs,
    pair_from_instrument,
    v1_request,
    v2_request,
)
from .sync import BookSync, HealthChange, Resubscribe, SyncCounters

__all__ = ["KrakenDataClient"]

_ASSET_PAIRS_PATH = "/0/public/AssetPairs"
_PROBLEM_COUNTERS = {
    HealthReason.CHECKSUM: "checksum_failures",
    HealthReason.CROSSED: "crossed",
    HealthReason.GAP: "gaps",
}


@dataclass(slots=True, eq=False)
class _SymbolFeed:
    """Everything the client keeps for one symbol."""

    symbol: str  # unified
    wire_name: str  # as the configured protocol version writes it
    sync: BookSync
    pair: KrakenPair | None = None  # None until the instrument channel lists it (no-REST mode)
    connection: _Connection | None = None


@dataclass(slots=True, eq=False)
class _Connection:
    """One WebSocket connection, the symbols it carries, and its paced request queue."""

    index: int
    feeds: list[_SymbolFeed]
    requests: RequestQueue
    # Frames are routed per connection: a symbol counts only on the connection that subscribed it.
    by_wire: dict[str, _SymbolFeed] = field(default_factory=dict)
    stream: ResilientWebSocket | None = None
    ws: StreamConnection | None = None
    maintenance: bool = False
    unlisted_reported: bool = False
    reported: dict[str, int] = field(default_factory=dict)  # stream counters already added to the venue's


class KrakenDataClient(StreamingVenueClient[_Connection]):
    """Streams order books and trades of ``settings.symbols`` from Kraken (WebSocket v2 or v1).

    ``run()`` never returns normally: it stops when cancelled, or raises when Kraken refuses us in a way
    retrying cannot fix (an unknown symbol at start-up, a rejected URL; see ``botframe.streams.classify``).
    """

    def __init__(
        self,
        settings: KrakenSettings,
        context: VenueContext,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.context = context
        self.symbols: list[str] = list(settings.symbols)
        self._v1 = settings.api_version == "v1"
        self._venue = context.venue
        self._rng = rng
        self._log: structlog.typing.FilteringBoundLogger = context.log.bind(venue=self._venue)
        self._feeds: dict[str, _SymbolFeed] = {}  # by unified symbol
        self._connections: list[_Connection] = []
        self._tasks = BackgroundTasks()
        self._decode = V1Decoder().decode if self._v1 else V2Decoder().decode
        self._publish = context.publish
        self._time_ns = context.clock.time_ns
        self._unreadable = UnreadableFrames(self._log)
        self._handlers: dict[type, Callable[[_Connection, KrakenMessage], None]] = {
            V1Book: self._on_v1_book,
            V2Book: self._on_v2_book,
            KrakenTrade: self._on_trade,
            Heartbeat: _ignore,
            Pong: _ignore,
            SystemStatus: self._on_status,
            SubscriptionChange: self._on_subscription,
            RequestError: self._on_request_error,
            InstrumentUpdate: self._on_instruments,
            Ignored: self._on_ignored,
        }

    def _book_symbols(self) -> list[str]:
        return [feed.symbol for feed in self._feeds.values()]

    # -- public --------------------------------------------------------------------------------------------

    def book_counters(self) -> dict[str, SyncCounters]:
        """Per symbol: snapshots, updates, checksums matched and failed, resyncs..."""
        return {symbol: feed.sync.counters for symbol, feed in self._feeds.items()}

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Re-sync one book from a fresh snapshot (the engine found it crossed or stale): resubscribe it.

        The book goes to RESYNCING; updates that arrive before Kraken's new snapshot are dropped (the
        snapshot replaces the whole book, so none of them is needed). The engine counts its own finding,
        so nothing is counted here but the resync.
        """
        feed = self._feeds.get(symbol)
        if feed is None:
            return
        self._log.warning("book resync requested", symbol=symbol, reason=reason.value, detail=detail)
        feed.sync.invalidate(reason, detail)
        self._drain(feed, count_problems=False)

    async def run(self) -> NoReturn:
        endpoints = self.context.endpoints
        s = self.settings
        ws_url = endpoints.resolve(s.ws_url, "kraken.ws")
        rest_base = endpoints.resolve(s.rest_url, "kraken.rest").rstrip("/") if s.rest_url else ""
        try:
            if rest_base:
                async with rest_client(s, clock=self.context.clock, rng=self._rng, log=self._log) as rest:
                    await self._load_instruments(rest, rest_base)
            else:
                self._create_feeds_without_rest()
            self._connections = self._plan_connections(ws_url)
            await run_streams([c.stream for c in self._connections if c.stream is not None])
        finally:
            await self._stop()

    # -- start-up --------------------------------------------------------------------------------------------

    async def _load_instruments(self, rest: RestClient, rest_base: str) -> None:
        url = f"{rest_base}{_ASSET_PAIRS_PATH}"
        body = await rest.get(url)
        try:
            resp = decode_asset_pairs(body)
        except msgspec.DecodeError as exc:
            raise RuntimeError(f"{self._venue}: unreadable AssetPairs from {url}: {exc}") from exc
        if resp.error:
            raise RuntimeError(f"{self._venue}: AssetPairs from {url} answered {resp.error}")
        symbol_map = KrakenSymbolMap.from_asset_pairs(resp, self._venue, self.settings.api_version)
        for unified in self.symbols:
            pair = symbol_map.pair(unified)  # raises UnknownSymbolError naming the fix
            self.context.add_instrument(pair.instrument)
            self._add_feed(unified, pair.v1_name if self._v1 else pair.v2_name, pair)
        self._log.info("instruments loaded", symbols=len(self.symbols), listed=len(symbol_map))

    def _create_feeds_without_rest(self) -> None:
        # v2 names are ccxt's for every pair botframe is likely to trade; the instrument channel confirms.
        for unified in self.symbols:
            self._add_feed(unified, unified, None)

    def _add_feed(self, unified: str, wire_name: str, pair: KrakenPair | None) -> None:
        v2_precision = pair is not None and not self._v1
        sync = BookSync(
            self._venue,
            unified,
            self.context.book(unified),
            apply=self.context.apply,
            publish=self._publish,
            depth=self.settings.depth,
            price_decimals=pair.price_decimals if v2_precision and pair is not None else None,
            qty_decimals=pair.qty_decimals if v2_precision and pair is not None else None,
        )
        self._feeds[unified] = _SymbolFeed(unified, wire_name, sync, pair)

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
                conn.by_wire[feed.wire_name] = feed
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
        assert conn.stream is not None, "connections are planned with their stream"
        # Requests no faster than max_requests_per_sec: Kraken rate-limits them.
        conn.requests.start(conn.stream, self._tasks, f"{self._venue}-{conn.index}-requests")
        names = [feed.wire_name for feed in conn.feeds]
        depth = self.settings.depth
        if self._v1:
            self._send(conn, v1_request("subscribe", "book", names, depth))
            if self.settings.trades:
                self._send(conn, v1_request("subscribe", "trade", names))
        else:
            # Instruments first: Kraken answers in order, so precisions arrive before the book snapshots.
            if self.settings.instrument_channel:
                self._send(conn, v2_request("subscribe", "instrument"))
            self._send(conn, v2_request("subscribe", "book", names, depth))
            if self.settings.trades:
                self._send(conn, v2_request("subscribe", "trade", names))
        for feed in conn.feeds:
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
        self.context.count("resyncs", feed.symbol)
        self._log.info("resubscribing book", symbol=feed.symbol, reason=reason)
        depth = self.settings.depth
        if self._v1:
            self._send(conn, v1_request("unsubscribe", "book", [feed.wire_name], depth))
            self._send(conn, v1_request("subscribe", "book", [feed.wire_name], depth))
        else:
            self._send(conn, v2_request("unsubscribe", "book", [feed.wire_name], depth))
            self._send(conn, v2_request("subscribe", "book", [feed.wire_name], depth))

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
                symbol = msg.symbol if isinstance(msg, V1Book | V2Book) else ""
                self._on_undecodable(conn, frame, FrameError(str(exc), symbol=symbol, channel="book"))

    def _on_v1_book(self, conn: _Connection, msg: KrakenMessage) -> None:
        assert isinstance(msg, V1Book)
        feed = conn.by_wire.get(msg.symbol)
        if feed is None:
            self.context.count("unknown_symbol_frames")
            return
        sync = feed.sync
        if msg.snapshot:
            sync.on_text_snapshot(msg.bids, msg.asks, msg.exchange_ts_ns, self._time_ns())
        else:
            assert msg.checksum is not None
            sync.on_text_update(msg.bids, msg.asks, msg.checksum, msg.exchange_ts_ns, self._time_ns())
        if sync.outputs:
            self._drain(feed)

    def _on_v2_book(self, conn: _Connection, msg: KrakenMessage) -> None:
        assert isinstance(msg, V2Book)
        feed = conn.by_wire.get(msg.symbol)
        if feed is None:
            self.context.count("unknown_symbol_frames")
            return
        sync = feed.sync
        if msg.snapshot:
            sync.on_snapshot(msg.bids, msg.asks, msg.checksum, msg.exchange_ts_ns, self._time_ns())
        else:
            sync.on_update(msg.bids, msg.asks, msg.checksum, msg.exchange_ts_ns, self._time_ns())
        if sync.outputs:
            self._drain(feed)

    def _on_trade(self, conn: _Connection, msg: KrakenMessage) -> None:
        assert isinstance(msg, KrakenTrade)
        if msg.snapshot:
            return  # recent trades sent on subscribe are history, already seen or never ours to see
        feed = conn.by_wire.get(msg.symbol)
        if feed is None:
            self.context.count("unknown_symbol_frames")
            return
        self._publish(
            Trade(
                venue=self._venue,
                symbol=feed.symbol,
                price=msg.price,
                size=msg.qty,
                side=msg.side,
                trade_id=msg.trade_id,
                exchange_ts_ns=msg.exchange_ts_ns,
                receive_ts_ns=self._time_ns(),
            )
        )

    # -- control frames ------------------------------------------------------------------------------------

    def _on_status(self, conn: _Connection, msg: KrakenMessage) -> None:
        assert isinstance(msg, SystemStatus)
        if msg.status == "maintenance":
            self._log.warning("Kraken is in maintenance; books wait for it to end", connection=conn.index)
            self.context.count("maintenance")
            conn.maintenance = True
            for feed in conn.feeds:
                feed.sync.invalidate(HealthReason.STALE, "Kraken system status: maintenance")
                self._drain(feed)
            return
        self._log.info("Kraken system status", status=msg.status, version=msg.version, connection=conn.index)
        if conn.maintenance and msg.online:
            conn.maintenance = False
            for feed in conn.feeds:
                if not feed.sync.is_live:
                    self._resubscribe(feed, "maintenance ended")

    def _on_subscription(self, conn: _Connection, msg: KrakenMessage) -> None:
        assert isinstance(msg, SubscriptionChange)
        if msg.state is not SubscriptionState.ERROR:
            return
        feed = conn.by_wire.get(msg.symbol)
        self.context.count("subscription_errors", feed.symbol if feed is not None else "")
        self._log.error(
            "Kraken refused a subscription",
            channel=msg.channel or None,
            symbol=feed.symbol if feed is not None else msg.symbol or None,
            error=msg.error,
        )
        if (
            feed is not None
            and msg.channel in ("book", "")  # v2 refusals do not name their channel
            and feed.sync.awaiting_snapshot
            and "already subscribed" in msg.error.lower()
        ):
            # A resubscription raced its own unsubscribe: only a new connection is sure to resnapshot.
            self._reconnect(conn, f"book of {feed.symbol} stuck resubscribing: {msg.error}")

    def _on_request_error(self, conn: _Connection, msg: KrakenMessage) -> None:
        assert isinstance(msg, RequestError)
        self.context.count("request_errors")
        self._log.error("Kraken refused a request", error=msg.error, symbol=msg.symbol or None)

    def _on_instruments(self, conn: _Connection, msg: KrakenMessage) -> None:
        assert isinstance(msg, InstrumentUpdate)
        listed: set[str] = set()
        for info in msg.pairs:
            feed = conn.by_wire.get(info.symbol)
            if feed is None:
                continue
            listed.add(feed.symbol)
            if feed.pair is None:
                pair = pair_from_instrument(self._venue, info)
                feed.pair = pair
                self.context.add_instrument(pair.instrument)
            feed.sync.set_precision(info.price_precision, info.qty_precision)
            if feed.sync.outputs:
                self._drain(feed)
        if msg.snapshot and not conn.unlisted_reported:
            missing = [f.symbol for f in conn.feeds if f.symbol not in listed]
            if missing:
                conn.unlisted_reported = True
                self._log.error("symbols not listed by Kraken's instrument channel", symbols=missing)

    def _on_ignored(self, conn: _Connection, msg: KrakenMessage) -> None:
        self.context.count("ignored_frames")

    def _on_undecodable(self, conn: _Connection, frame: bytes, exc: FrameError) -> None:
        feed = conn.by_wire.get(exc.symbol) if exc.symbol else None
        symbol = feed.symbol if feed is not None else ""
        self.context.count("parse_errors", symbol)
        if conn.stream is not None:
            conn.stream.counters.parse_errors += 1
        self._unreadable.log(frame, str(exc), symbol=symbol or None, channel=exc.channel or None)
        if feed is not None and (exc.channel.startswith("book") or not exc.channel):
            feed.sync.invalidate(HealthReason.PARSE_ERROR, f"unreadable book frame: {exc}")
            self._drain(feed)

    # -- sync machine outputs -----------------------------------------------------------------------------

    def _drain(self, feed: _SymbolFeed, *, count_problems: bool = True) -> None:
        for out in feed.sync.take_outputs():
            if isinstance(out, HealthChange):
                self.context.set_health(feed.symbol, out.health, out.reason, out.detail)
                counter = _PROBLEM_COUNTERS.get(out.reason) if count_problems else None
                if counter is not None:
                    self.context.count(counter, feed.symbol)
                    self._log.warning("book out of sync; resyncing", symbol=feed.symbol, reason=out.reason.value,
                                      detail=out.detail)
            elif isinstance(out, Resubscribe):
                self._resubscribe(feed, out.reason)


def _ignore(conn: _Connection, msg: KrakenMessage) -> None:
    """Heartbeats and pongs: their arrival already fed the stale watchdog."""
