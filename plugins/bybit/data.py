"""The Bybit market-data client: v5 public orderbook and publicTrade topics in, book and trade events out.

For its symbols it reads the instruments (tick, lot, min notional; every page), spreads the symbols
over connections of at most ``max_symbols_per_connection``, subscribes each connection to
``orderbook.<depth>.<symbol>`` and ``publicTrade.<symbol>`` (at most ``max_topics_per_request`` topics per
frame), runs one :class:`~.sync.BookSync` per symbol, and publishes ``BookSnapshot`` / ``BookDelta`` /
``Trade`` events and health changes through the engine's :class:`~botframe.venues.VenueContext`.

Per book frame the work is: one msgspec decode into typed structs, one dict lookup, the sync machine's
one ``u`` comparison, one ``BookDelta`` built around the decoded level lists, one ``publish``. Anything
unusual leaves that path:

* a ``u`` jump resubscribes that book (``unsubscribe`` then ``subscribe``: Bybit answers with a snapshot);
  ``u == 1`` replaces the book in place; an unasked snapshot replaces it too;
* the engine finding a book crossed or stale calls :meth:`BybitDataClient.resync`, which does the same;
* a frame that cannot be decoded is logged with its first 200 characters, counted (``parse_errors``) and
  skipped; if its topic names one of our books, that book resyncs (a frame nobody can place needs no
  action here: if it was an orderbook delta, the next ``u`` shows the gap);
* a subscribe answered ``success: false`` is logged as an error with Bybit's ``ret_msg`` and the topics,
  counted (``subscription_errors``), and sent again after a backoff delay.

Bybit closes connections that stay silent, so each connection sends ``{"op":"ping"}`` every
``heartbeat_interval_secs``; the pongs (``{"op":"pong"..}`` or ``{"ret_msg":"pong","op":"ping"..}``) also
feed the stale watchdog. Every frame sent goes through one :class:`~botframe.streams.RequestPacer` shared
by all connections, which also spaces the opening of connections. Every reconnect sends every book of
that connection back to SYNCING.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import NoReturn

import msgspec
import structlog
from websockets.exceptions import ConnectionClosed

from botframe.events import HealthReason
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

from .config import BybitSettings
from .parsing import (
    Category,
    ControlMessage,
    FrameDecoder,
    InstrumentInfo,
    OrderbookData,
    SymbolMap,
    book_delta,
    book_snapshot,
    decode_control,
    decode_instruments,
    op_frame,
    orderbook_topic,
    read_header,
    trade,
    trade_topic,
)
from .sync import Apply, BookSync, HealthChange, Resubscribe

__all__ = ["BybitDataClient", "RequestPacer"]

_INSTRUMENTS_PATH = "/v5/market/instruments-info"
_INSTRUMENTS_PAGE_LIMIT = 1000
_MAX_INSTRUMENT_PAGES = 100  # a cursor that never ends is a server bug, not a reason to loop forever
_ORDERBOOK = "orderbook"
_PUBLIC_TRADE = "publicTrade"


@dataclass(slots=True, eq=False)
class _SymbolFeed:
    """Everything the client keeps for one symbol."""

    instrument: Instrument
    sync: BookSync
    connection: _Connection | None = None


@dataclass(slots=True, eq=False)
class _Connection:
    """One WebSocket connection and the symbols it carries."""

    index: int
    feeds: list[_SymbolFeed]
    stream: ResilientWebSocket | None = None
    heartbeat_task: asyncio.Task[None] | None = None
    resubscribe: set[str] = field(default_factory=set)  # topics to unsubscribe and subscribe again
    resubscribe_task: asyncio.Task[None] | None = None
    subscribe_again: set[str] = field(default_factory=set)  # topics whose subscribe was refused
    retry_task: asyncio.Task[None] | None = None  # subscribes them again once its delay has passed
    error_delays: Iterator[float] | None = None
    requests: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # req_id -> (op, topics)
    reported: dict[str, int] = field(default_factory=dict)  # stream counters already added to the venue's


class BybitDataClient(StreamingVenueClient[_Connection]):
    """Streams order books and trades of ``settings.symbols`` from one Bybit category.

    ``run()`` never returns normally: it stops when cancelled, or raises when the venue refuses us in a
    way retrying cannot fix (unknown symbol, rejected URL; see ``botframe.streams.classify``).
    """

    def __init__(
        self,
        settings: BybitSettings,
        context: VenueContext,
        *,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.context = context
        self.symbols: list[str] = list(settings.symbols)
        self.category = Category(settings.category)
        self._venue = context.venue
        self._rng = rng
        self._log: structlog.typing.FilteringBoundLogger = context.log.bind(venue=self._venue)
        self._feeds: dict[str, _SymbolFeed] = {}  # by Bybit symbol, as frames name it ("BTCUSDT")
        self._by_unified: dict[str, _SymbolFeed] = {}
        self._connections: list[_Connection] = []
        self._tasks = BackgroundTasks()
        self._pacer = RequestPacer(settings.max_requests_per_sec)
        self._request_ids = itertools.count(1)
        self._decode = FrameDecoder().decode
        self._publish = context.publish
        self._time_ns = context.clock.time_ns
        self._unreadable = UnreadableFrames(self._log)

    def _book_symbols(self) -> list[str]:
        return [feed.instrument.symbol for feed in self._feeds.values()]

    # -- public --------------------------------------------------------------------------------------------

    def cross_sequence(self, symbol: str) -> int:
        """Bybit's ``seq`` of the last orderbook frame applied to ``symbol`` (0 before the first)."""
        feed = self._by_unified.get(symbol)
        return feed.sync.cross_seq if feed is not None else 0

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Re-sync one book from a fresh snapshot (the engine found it crossed or stale)."""
        feed = self._by_unified.get(symbol)
        if feed is None or feed.connection is None:
            return
        self._log.warning("book resync requested", symbol=symbol, reason=reason.value, detail=detail)
        feed.sync.resync(reason, detail)
        self._drain(feed)

    async def run(self) -> NoReturn:
        endpoints = self.context.endpoints
        ws_url = endpoints.resolve(self.settings.ws_url, "bybit.ws")
        rest_base = endpoints.resolve(self.settings.rest_url, "bybit.rest").rstrip("/")
        try:
            async with rest_client(self.settings, clock=self.context.clock, rng=self._rng, log=self._log) as rest:
                await self._load_instruments(rest, rest_base)
            self._connections = self._plan_connections(ws_url)
            # Opening connections counts against the same budget as the frames we send.
            await run_streams([c.stream for c in self._connections if c.stream is not None],
                              before_connect=self._wait_for_send_slot)
        finally:
            await self._stop()

    # -- start-up --------------------------------------------------------------------------------------------

    async def _load_instruments(self, rest: RestClient, rest_base: str) -> None:
        url = f"{rest_base}{_INSTRUMENTS_PATH}"
        infos: list[InstrumentInfo] = []
        cursor = ""
        for _page in range(_MAX_INSTRUMENT_PAGES):
            params: dict[str, str | int] = {"category": self.category.value}
            if self.category is not Category.SPOT:  # spot has no pages: limit and cursor are not accepted
                params["limit"] = _INSTRUMENTS_PAGE_LIMIT
            if cursor:
                params["cursor"] = cursor
            body = await rest.get(url, params)
            try:
                page = decode_instruments(body)
            except ValueError as exc:
                raise RuntimeError(f"{self._venue}: {exc} (from {url})") from exc
            infos.extend(page.instruments)
            cursor = page.next_cursor
            if not cursor:
                break
        symbol_map = SymbolMap.from_infos(infos, self._venue, self.category)
        for unified in self.symbols:
            instrument = symbol_map.instrument(unified)  # raises UnknownSymbolError naming the fix
            self.context.add_instrument(instrument)
            feed = _SymbolFeed(instrument=instrument, sync=BookSync(unified))
            self._feeds[instrument.venue_symbol] = feed
            self._by_unified[unified] = feed
        self._log.info("instruments loaded", symbols=len(self.symbols), listed=len(symbol_map))

    def _plan_connections(self, ws_url: str) -> list[_Connection]:
        s = self.settings
        feeds = list(self._feeds.values())
        size = s.max_symbols_per_connection
        connections: list[_Connection] = []
        for start in range(0, len(feeds), size):
            conn = _Connection(index=len(connections), feeds=feeds[start : start + size])
            for feed in conn.feeds:
                feed.connection = conn
            conn.stream = connect_stream(
                ws_url,
                s,
                on_message=partial(self._on_frame, conn),
                on_connect=partial(self._on_connect, conn),
                on_disconnect=partial(self._on_disconnect, conn),
                clock=self.context.clock,
                name=f"{self._venue}-{conn.index}",
                rng=self._rng,
                log=self._log,
            )
            connections.append(conn)
        return connections

    # -- sending -----------------------------------------------------------------------------------------

    async def _wait_for_send_slot(self) -> None:
        await self._pacer.wait(self.context.clock)

    async def _request(self, conn: _Connection, op: str, topics: list[str]) -> None:
        """Send ``op`` for ``topics``, at most ``max_topics_per_request`` per frame, paced."""
        step = self.settings.max_topics_per_request
        for start in range(0, len(topics), step):
            chunk = topics[start : start + step]
            req_id = str(next(self._request_ids))
            conn.requests[req_id] = (op, chunk)
            await self._wait_for_send_slot()
            assert conn.stream is not None
            await conn.stream.send(op_frame(op, chunk, req_id))

    def _topics(self, feeds: list[_SymbolFeed], *, books_only: bool = False) -> list[str]:
        depth = self.settings.depth
        topics = [orderbook_topic(depth, f.instrument.venue_symbol) for f in feeds]
        if self.settings.trades and not books_only:
            topics += [trade_topic(f.instrument.venue_symbol) for f in feeds]
        return topics

    # -- connection events -------------------------------------------------------------------------------

    async def _on_connect(self, conn: _Connection, _ws: StreamConnection) -> None:
        self._cancel_connection_tasks(conn)
        for feed in conn.feeds:
            feed.sync.connected()
            self._drain(feed)
        conn.heartbeat_task = self._tasks.spawn(self._heartbeat(conn), f"{self._venue}-{conn.index}-heartbeat")
        await self._request(conn, "subscribe", self._topics(conn.feeds))

    def _on_disconnect(self, conn: _Connection, error: BaseException) -> None:
        reason, detail = disconnect_reason(error)
        self.context.count("disconnects")
        self._cancel_connection_tasks(conn)
        for feed in conn.feeds:
            feed.sync.disconnected(reason, detail)
            self._drain(feed)
        self._report_counters(conn)

    def _cancel_connection_tasks(self, conn: _Connection) -> None:
        for task in (conn.heartbeat_task, conn.resubscribe_task, conn.retry_task):
            if task is not None:
                task.cancel()
        conn.heartbeat_task = conn.resubscribe_task = conn.retry_task = None
        conn.resubscribe.clear()
        conn.subscribe_again.clear()
        conn.requests.clear()

    async def _heartbeat(self, conn: _Connection) -> None:
        """Send Bybit's application ping every ``heartbeat_interval_secs`` while the connection lasts."""
        clock = self.context.clock
        ping = op_frame("ping")
        try:
            while True:
                await clock.sleep(self.settings.heartbeat_interval_secs)
                await self._wait_for_send_slot()
                assert conn.stream is not None
                await conn.stream.send(ping)
        except (ConnectionError, ConnectionClosed):
            pass  # the connection is gone; the next one starts its own heartbeat

    # -- frames (the hot path) -----------------------------------------------------------------------------

    def _on_frame(self, conn: _Connection, frame: bytes) -> None:
        try:
            msg = self._decode(frame)
        except msgspec.DecodeError as exc:
            self._on_undecodable(conn, frame, exc)
            return
        data = msg.data
        if isinstance(data, OrderbookData):
            feed = self._feeds.get(data.symbol)
            if feed is None:
                self.context.count("unknown_symbol_frames")
                return
            sync = feed.sync
            action = sync.on_frame(msg.type == "snapshot", data.update_id, data.cross_seq)
            if action is Apply.DELTA:
                self._publish(book_delta(msg, data, self._venue, feed.instrument.symbol, self._time_ns()))
            elif action is Apply.SNAPSHOT:
                self._publish(book_snapshot(msg, data, self._venue, feed.instrument.symbol, self._time_ns()))
            if sync.outputs:
                # LIVE after a snapshot, a gap, or a resync the engine asked for while the frame was applied.
                self._drain(feed)
            return
        receive_ts = self._time_ns()
        for entry in data:
            feed = self._feeds.get(entry.symbol)
            if feed is None:
                self.context.count("unknown_symbol_frames")
                continue
            self._publish(trade(entry, self._venue, feed.instrument.symbol, receive_ts))

    def _on_undecodable(self, conn: _Connection, frame: bytes, exc: msgspec.DecodeError) -> None:
        control = decode_control(frame)
        if control is not None:
            self._on_control(conn, control)
            return
        header = read_header(frame)
        channel = header.channel if header is not None else ""
        if channel and channel not in (_ORDERBOOK, _PUBLIC_TRADE):
            # A well-formed frame of a topic we do not read: not an error.
            self.context.count("ignored_frames")
            return
        feed = self._feeds.get(header.venue_symbol) if header is not None else None
        symbol = feed.instrument.symbol if feed is not None else ""
        self.context.count("parse_errors", symbol)
        if conn.stream is not None:
            conn.stream.counters.parse_errors += 1
        self._unreadable.log(frame, str(exc), connection=conn.index, symbol=symbol or None,
                             topic=header.topic if header is not None else None)
        if feed is not None and channel == _ORDERBOOK:
            feed.sync.resync(HealthReason.PARSE_ERROR, f"unreadable orderbook frame: {exc}")
            self._drain(feed)

    def _on_control(self, conn: _Connection, msg: ControlMessage) -> None:
        if msg.is_pong:
            return  # it fed the stale watchdog on its way in; nothing else to do
        op, topics = conn.requests.pop(msg.req_id, (msg.op, []))
        if msg.success:
            if op == "subscribe":
                conn.error_delays = None
            self._log.debug("request acknowledged", connection=conn.index, op=op, topics=topics)
            return
        self.context.count("subscription_errors")
        self._log.error(
            "the venue refused a request",
            connection=conn.index,
            op=op,
            topics=topics or None,
            ret_msg=msg.ret_msg,
            req_id=msg.req_id or None,
        )
        if op != "subscribe" or not topics:
            return  # a refused unsubscribe (a topic not subscribed) needs no retry
        # A refused subscribe would leave its books SYNCING for good: ask again after a growing delay.
        if conn.error_delays is None:
            conn.error_delays = backoff(self.settings.backoff, self._rng)
        conn.subscribe_again.update(topics)
        if conn.retry_task is None:
            conn.retry_task = self._tasks.spawn(
                self._subscribe_again(conn, next(conn.error_delays)), f"{self._venue}-{conn.index}-retry"
            )

    # -- sync machine outputs -----------------------------------------------------------------------------

    def _drain(self, feed: _SymbolFeed) -> None:
        symbol = feed.instrument.symbol
        for out in feed.sync.take_outputs():
            if isinstance(out, HealthChange):
                self.context.set_health(symbol, out.health, out.reason, out.detail)
                if out.reason is HealthReason.GAP:
                    self.context.count("gaps", symbol)
                    self._log.warning("update id gap; resubscribing", symbol=symbol, detail=out.detail)
            elif isinstance(out, Resubscribe):
                conn = feed.connection
                if conn is None:
                    continue
                self.context.count("resyncs", symbol)
                conn.resubscribe.update(self._topics([feed], books_only=True))
                if conn.resubscribe_task is None:
                    conn.resubscribe_task = self._tasks.spawn(
                        self._resubscribe(conn), f"{self._venue}-{conn.index}-resubscribe"
                    )

    async def _resubscribe(self, conn: _Connection) -> None:
        """Unsubscribe and subscribe the books waiting for a snapshot; Bybit answers with new snapshots."""
        try:
            while conn.resubscribe:
                topics = sorted(conn.resubscribe)
                conn.resubscribe.clear()
                await self._request(conn, "unsubscribe", topics)
                await self._request(conn, "subscribe", topics)
        except (ConnectionError, ConnectionClosed):
            pass  # the connection is gone; the reconnect subscribes everything afresh
        finally:
            if conn.resubscribe_task is asyncio.current_task():
                conn.resubscribe_task = None

    async def _subscribe_again(self, conn: _Connection, delay_secs: float) -> None:
        """After a refused subscribe: wait, then subscribe the refused topics again."""
        try:
            await self.context.clock.sleep(delay_secs)
            while conn.subscribe_again:
                topics = sorted(conn.subscribe_again)
                conn.subscribe_again.clear()
                await self._request(conn, "subscribe", topics)
        except (ConnectionError, ConnectionClosed):
            pass  # the connection is gone; the reconnect subscribes everything afresh
        finally:
            if conn.retry_task is asyncio.current_task():
                conn.retry_task = None
