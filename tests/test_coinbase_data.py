"""The Coinbase data client against real local servers.

* Exchange feed: the recorded 2021 session through the simulator's ``ReplayServer`` (frames exactly as
  Coinbase sent them), and through a small server of this file that also answers level2 resubscribes,
  for the removed-frame and bad-frame tests.
* Advanced Trade (no capture here): a local feed built from SPECS.md section 6 that keeps true books and
  numbers every frame of a connection with one ``sequence_num``, as Coinbase does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from botframe.events import BookDelta, BookHealth, HealthReason, Side
from botframe.plugins import Registry
from botframe.streams import BackoffSettings
from botframe.testing import RecordingVenueContext, running_venue
from botframe.venues import Endpoints
from botframe_plugins.coinbase import plugin
from botframe_plugins.coinbase.config import CoinbaseSettings
from botframe_plugins.coinbase.data import CoinbaseDataClient
from botframe_plugins.coinbase.parsing import UnknownSymbolError
from botframe_plugins.sim.replay import ReplayServer

pytestmark = pytest.mark.timeout(60)

FAST = BackoffSettings(initial_delay_ms=1, factor=2, max_delay_ms=5, jitter=0.0)
CAPTURE = "coinbase/COINBASE.ws.28.0.legacy_2021.txt"
PRODUCTS = "coinbase/COINBASE.0.legacy_rest_products.txt"
RECORDED_PRODUCTS = ["SKL-USD", "SKL-BTC", "BAND-GBP", "NMR-EUR", "BAND-BTC", "YFI-BTC", "DASH-BTC", "NU-GBP",
                     "CRV-EUR", "SKL-GBP"]
# Losing this update (DASH-BTC's best ask leaving) leaves a stale ask that a bid crosses 8 frames later.
REMOVED_UPDATE = ('"product_id":"DASH-BTC","changes":[["sell","0.00619307","0.00000000"]],'
                  '"time":"2021-04-17T16:44:02.445947Z"')

Tops = tuple[list[tuple[float, float]], list[tuple[float, float]]]


def unified(product: str) -> str:
    return product.replace("-", "/")


# -- a minimal engine side --------------------------------------------------------------------------------


def recording_context(endpoints: Endpoints | None = None) -> RecordingVenueContext:
    """The engine's side: real L2Books, book events applied as the engine does, everything recorded; once
    ``ctx.client`` is set, a LIVE book an event leaves crossed is re-synced through it, as the engine does.
    Waits re-check every 20 ms too, for the test server's own state."""
    return RecordingVenueContext("coinbase", endpoints=endpoints, poll_secs=0.02)


@contextlib.asynccontextmanager
async def running(settings: CoinbaseSettings, ctx: RecordingVenueContext) -> AsyncIterator[CoinbaseDataClient]:
    """Run a client until the body is done, then cancel it (it must end by cancellation only)."""
    client = CoinbaseDataClient(settings, ctx)
    ctx.client = client
    async with running_venue(client):
        yield client


def json_response(body: bytes | str) -> Response:
    raw = body.encode() if isinstance(body, str) else body
    return Response(200, "OK", Headers({"Content-Type": "application/json", "Content-Length": str(len(raw))}), raw)


class ReferenceBooks:
    """A plain rebuild from wire text: Decimal dicts per product."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}

    def set_level(self, product: str, bid: bool, price: str, size: str) -> None:
        levels = self.books.setdefault(product, ({}, {}))[0 if bid else 1]
        if Decimal(size) == 0:
            levels.pop(Decimal(price), None)
        else:
            levels[Decimal(price)] = Decimal(size)

    def apply_exchange(self, data: dict[str, Any]) -> None:
        if data["type"] == "snapshot":
            self.books[data["product_id"]] = ({}, {})
            for price, size in data["bids"]:
                self.set_level(data["product_id"], True, price, size)
            for price, size in data["asks"]:
                self.set_level(data["product_id"], False, price, size)
        elif data["type"] == "l2update":
            for side, price, size in data["changes"]:
                self.set_level(data["product_id"], side == "buy", price, size)

    def touch(self, product: str) -> tuple[Decimal, Decimal]:
        bids, asks = self.books[product]
        return max(bids), min(asks)

    def top(self, product: str, n: int = 10) -> Tops:
        bids, asks = self.books[product]
        return ([(float(p), float(q)) for p, q in sorted(bids.items(), reverse=True)[:n]],
                [(float(p), float(q)) for p, q in sorted(asks.items())[:n]])

    def levels_text(self, product: str) -> tuple[list[list[str]], list[list[str]]]:
        bids, asks = self.books[product]
        return ([[str(p), str(q)] for p, q in sorted(bids.items(), reverse=True)],
                [[str(p), str(q)] for p, q in sorted(asks.items())])


# -- the Exchange feed: the recorded session ----------------------------------------------------------------


def recorded_frames(shared_data: Path) -> list[str]:
    lines = (shared_data / CAPTURE).read_text().splitlines()
    return [line.partition(": ")[2] for line in lines if line and not line.startswith("wss://")]


def products_body(shared_data: Path) -> str:
    return (shared_data / PRODUCTS).read_text().splitlines()[0].split(" -> ", 1)[1].partition(": ")[2]


def exchange_settings(ws_url: str, rest_url: str, **overrides: Any) -> CoinbaseSettings:
    values: dict[str, Any] = {
        "feed": "exchange", "ws_url": ws_url, "rest_url": rest_url, "exchange_book_channel": "level2",
        "symbols": [unified(p) for p in RECORDED_PRODUCTS], "backoff": FAST, "stale_after_ms": 60_000,
        "max_requests_per_sec": 100,
    }
    values.update(overrides)
    return CoinbaseSettings(**values)


def books_match(ctx: RecordingVenueContext, reference: ReferenceBooks, products: Iterable[str]) -> Callable[[], bool]:
    expected = {p: reference.top(p) for p in products}

    def check() -> bool:
        return all(
            unified(p) in ctx.books and ctx.books[unified(p)].is_live and ctx.top(unified(p)) == top
            for p, top in expected.items()
        )

    return check


async def test_recorded_exchange_session_through_the_replay_server_rebuilds_every_book(
    shared_data: Path,
) -> None:
    frames = [json.loads(f) for f in recorded_frames(shared_data)]
    reference = ReferenceBooks()
    for data in frames:
        reference.apply_exchange(data)
    updates = sum(d["type"] == "l2update" for d in frames)
    matches = [d for d in frames if d["type"] == "match"]
    server = ReplayServer(shared_data / CAPTURE, rest_captures=[shared_data / PRODUCTS])
    await server.start()
    try:
        ctx = recording_context()
        async with running(exchange_settings(server.url, server.rest_url), ctx):
            await ctx.wait_until(
                lambda: sum(isinstance(e, BookDelta) for e in ctx.events) == updates
                and len(ctx.trades()) == len(matches)
            )

            for product in RECORDED_PRODUCTS:
                assert ctx.top(unified(product)) == reference.top(product), product
                assert ctx.transitions(unified(product)) == [
                    (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                    (BookHealth.LIVE, HealthReason.SNAPSHOT),
                ]
            assert (ctx.counts["gaps"], ctx.counts["crossed"], ctx.counts["resyncs"]) == (0, 0, 0)
            assert ctx.counts["parse_errors"] == 0
            assert ctx.counts["ignored_frames"] == 107 + 10  # ticker, and last_match (history)
            assert ctx.instruments["SKL/USD"].tick_size == "0.0001"
            assert server.counters["rest_hits"] == 1
    finally:
        await server.stop()


async def test_recorded_matches_become_trades_with_the_aggressor_side(shared_data: Path) -> None:
    frames = [json.loads(f) for f in recorded_frames(shared_data)]
    matches = [d for d in frames if d["type"] == "match"]
    # The aggressor takes the touch on its opposite side: check the reading against the rebuilt book.
    reference = ReferenceBooks()
    took_touch = 0
    for data in frames:
        reference.apply_exchange(data)
        if data["type"] == "match":
            bid, ask = reference.touch(data["product_id"])
            price = Decimal(data["price"])
            aggressor_bought = data["side"] == "sell"
            took_touch += abs(price - (ask if aggressor_bought else bid)) < abs(price - (bid if aggressor_bought
                                                                                        else ask))
    server = ReplayServer(shared_data / CAPTURE, rest_captures=[shared_data / PRODUCTS])
    await server.start()
    try:
        ctx = recording_context()
        async with running(exchange_settings(server.url, server.rest_url), ctx):
            await ctx.wait_until(lambda: len(ctx.trades()) == len(matches))

            trades = ctx.trades()
            assert [t.side for t in trades] == [Side.BUY if m["side"] == "sell" else Side.SELL for m in matches]
            assert [(t.symbol, t.price, t.size, t.trade_id) for t in trades] == [
                (unified(m["product_id"]), float(m["price"]), float(m["size"]), str(m["trade_id"]))
                for m in matches
            ]
            assert took_touch >= 90  # of 97 (the rest print between the touches)
    finally:
        await server.stop()


@dataclass
class ExchangeFeedServer:
    """Plays recorded Exchange feed frames to each client and answers level2 (un)subscribes as Coinbase does.

    Frames at ``removed`` indexes are not sent (they still happened: the books served on a resubscribe
    include them). ``extra`` frames are sent after the frame at their index. A resubscribed product's
    snapshot is the book as of the frames played so far.
    """

    frames: list[str]
    products: str
    removed: set[int] = field(default_factory=set)
    extra: dict[int, list[str]] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path == "/products":
            return json_response(self.products)
        return None

    async def handler(self, ws: ServerConnection) -> None:
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read(ws, inbox))
        reference = ReferenceBooks()
        try:
            first = await inbox.get()
            if first is None:
                return
            subscribed = set(first["product_ids"])
            for index, frame in enumerate(self.frames):
                while not inbox.empty():
                    request = inbox.get_nowait()
                    if request is None:
                        return
                    await self._answer(ws, request, reference, subscribed)
                data = json.loads(frame)
                reference.apply_exchange(data)
                held_back = data["type"] in ("snapshot", "l2update") and data["product_id"] not in subscribed
                if index not in self.removed and not held_back:
                    await ws.send(frame)
                for raw in self.extra.get(index, []):
                    await ws.send(raw)
            self.finished = True
            while (request := await inbox.get()) is not None:
                await self._answer(ws, request, reference, subscribed)
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()

    async def _read(self, ws: ServerConnection, inbox: asyncio.Queue[dict[str, Any] | None]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                data = json.loads(message)
                self.received.append(data)
                inbox.put_nowait(data)
        inbox.put_nowait(None)  # the connection is gone

    async def _answer(self, ws: ServerConnection, request: dict[str, Any], reference: ReferenceBooks,
                      subscribed: set[str]) -> None:
        products = request["product_ids"]
        if request["type"] == "unsubscribe":
            subscribed.difference_update(products)
        else:
            subscribed.update(products)
            for product in products:
                bids, asks = reference.levels_text(product)
                await ws.send(json.dumps({"type": "snapshot", "product_id": product, "bids": bids, "asks": asks}))
        await ws.send(json.dumps({"type": "subscriptions", "channels": [
            {"name": "level2", "product_ids": sorted(subscribed)}]}))

    async def __aenter__(self) -> ExchangeFeedServer:
        self.server = await serve(self.handler, "127.0.0.1", 0, process_request=self.process_request,
                                  compression=None, max_size=2**24)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_exchange_removed_update_shows_as_a_crossed_book_and_the_book_resyncs(shared_data: Path) -> None:
    frames = recorded_frames(shared_data)
    removed = next(i for i, f in enumerate(frames) if REMOVED_UPDATE in f)
    reference = ReferenceBooks()
    for frame in frames:
        reference.apply_exchange(json.loads(frame))  # the removed update happened all the same

    async with ExchangeFeedServer(frames, products_body(shared_data), removed={removed}) as server:
        ctx = recording_context()
        async with running(exchange_settings(server.url, server.url.replace("ws", "http")), ctx):
            all_match = books_match(ctx, reference, RECORDED_PRODUCTS)
            await ctx.wait_until(lambda: server.finished and all_match())

            assert ctx.transitions("DASH/BTC") == [
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
                (BookHealth.RESYNCING, HealthReason.CROSSED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert ctx.transitions("SKL/USD") == [
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert (ctx.counts["crossed"], ctx.counts["resyncs"]) == (1, 1)
            assert server.received[1:] == [
                {"type": "unsubscribe", "product_ids": ["DASH-BTC"], "channels": ["level2"]},
                {"type": "subscribe", "product_ids": ["DASH-BTC"], "channels": ["level2"]},
            ]


async def test_exchange_bad_frames_are_logged_counted_and_resync_the_books_they_may_concern(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = recorded_frames(shared_data)
    at = next(i for i, f in enumerate(frames) if '"type":"l2update"' in f and '"NU-GBP"' in f) + 50
    cut_update = '{"type":"l2update","product_id":"NU-GBP","changes":[["buy","0.4391",'
    not_json = "<html>502 Bad Gateway</html>" + "x" * 500
    refused = '{"type":"error","message":"Failed to subscribe","reason":"FOO-BAR is not a valid product"}'
    reference = ReferenceBooks()
    for frame in frames:
        reference.apply_exchange(json.loads(frame))

    async with ExchangeFeedServer(frames, products_body(shared_data),
                                  extra={at: [cut_update, refused, not_json]}) as server:
        ctx = recording_context()
        async with running(exchange_settings(server.url, server.url.replace("ws", "http")), ctx) as client:
            await ctx.wait_until(lambda: server.finished and ctx.counts["parse_errors"] == 2)
            await ctx.wait_until(books_match(ctx, reference, RECORDED_PRODUCTS))

            assert ctx.transitions("NU-GBP".replace("-", "/"))[2:] == [
                (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            # Text that says nothing may have been any product's update: every book resyncs.
            assert all(
                (BookHealth.RESYNCING, HealthReason.PARSE_ERROR) in ctx.transitions(unified(p))
                for p in RECORDED_PRODUCTS
            )
            assert ctx.counts["subscription_errors"] == 1
            assert client.stream_counters()[0].parse_errors == 2
    logged = capsys.readouterr().out
    assert "unreadable frame skipped" in logged
    assert "the venue refused a request" in logged and "FOO-BAR is not a valid product" in logged
    assert "<html>502 Bad Gateway</html>" + "x" * 172 in logged
    assert "x" * 173 not in logged  # the raw text is cut to 200 characters


# -- Advanced Trade: a local feed built from SPECS.md ----------------------------------------------------------

TIMESTAMP = "2026-08-09T21:05:48.483587501Z"
ADVANCED_PRODUCTS_PATH = "/api/v3/brokerage/market/products"


@dataclass(frozen=True)
class Level:
    """Set one level of the true book, and send it as an ``l2_data`` update."""

    product: str
    side: str  # "bid" or "offer"
    price: str
    qty: str


@dataclass(frozen=True)
class Levels:
    """Several levels, possibly of several products, in one ``l2_data`` frame (one event per product)."""

    levels: tuple[Level, ...]


@dataclass(frozen=True)
class Trades:
    trades: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class Heartbeat:
    pass


@dataclass(frozen=True)
class Ticker:
    """A frame of a channel the client does not read; it still takes a sequence number."""

    product: str


@dataclass(frozen=True)
class Lost:
    """What ``step`` does happens and takes its sequence number, but the frame never reaches the client."""

    step: Level | Levels | Trades | Heartbeat


@dataclass(frozen=True)
class Raw:
    """Text sent as is; ``{seq}`` in it is replaced by the next sequence number (text without it takes none)."""

    text: str


@dataclass(frozen=True)
class Pause:
    """Wait until the test sets ``resume`` (the server keeps answering requests meanwhile)."""


@dataclass(frozen=True)
class Drop:
    """Abort the connection (no close frame), as a network failure would."""


Step = Level | Levels | Trades | Heartbeat | Ticker | Lost | Raw | Pause | Drop


def trade(product: str, trade_id: int, side: str, price: str = "100.5", size: str = "0.1") -> dict[str, str]:
    return {"product_id": product, "trade_id": str(trade_id), "price": price, "size": size,
            "time": "2026-08-09T21:05:48.401Z", "side": side}


@dataclass
class _Peer:
    """What the feed knows of one connection."""

    seq: Iterable[int]
    inbox: asyncio.Queue[dict[str, Any] | None]
    channels: set[str] = field(default_factory=set)
    books: set[str] = field(default_factory=set)


@dataclass
class FakeAdvancedTrade:
    """A local Advanced Trade feed: true books, one ``sequence_num`` per connection over every channel.

    Answers each subscribe with a ``subscriptions`` frame, a level2 subscribe with one snapshot per
    product, a market_trades subscribe with a snapshot of ``trade_history``. The first connection plays
    ``script`` once its level2, market_trades and heartbeats subscriptions are in; ``refuse_level2`` makes
    it answer the first level2 subscribe with an error frame instead.
    """

    products: list[str]
    script: list[Step] = field(default_factory=list)
    trade_history: list[dict[str, str]] = field(default_factory=list)
    refuse_level2: bool = False
    truth: ReferenceBooks = field(default_factory=ReferenceBooks)
    received: list[list[dict[str, Any]]] = field(default_factory=list)
    finished: bool = False
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    server: Server | None = None

    def __post_init__(self) -> None:
        for index, product in enumerate(self.products):
            base = Decimal(100 * (index + 1))
            for step in range(5):
                self.truth.set_level(product, True, str(base - Decimal(step) / 2), str(step + 1))
                self.truth.set_level(product, False, str(base + 1 + Decimal(step) / 2), str(step + 2))

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def products_body(self) -> str:
        return json.dumps({"products": [
            {"product_id": p, "base_currency_id": p.split("-")[0], "quote_currency_id": p.split("-")[1],
             "base_increment": "0.00000001", "quote_increment": "0.01", "price_increment": "0.01",
             "quote_min_size": "1", "product_type": "SPOT", "status": "online"} for p in self.products
        ] + [{"product_id": "BIT-27DEC24-CDE", "product_type": "FUTURE", "price_increment": "5"}]})

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith(ADVANCED_PRODUCTS_PATH):
            return json_response(self.products_body())
        return None

    # -- frames --------------------------------------------------------------------------------------------

    async def _send(self, ws: ServerConnection, peer: _Peer, channel: str, events: list[Any]) -> None:
        await ws.send(json.dumps({"channel": channel, "client_id": "", "timestamp": TIMESTAMP,
                                  "sequence_num": next(iter(peer.seq)), "events": events}))

    def _snapshot_event(self, product: str) -> dict[str, Any]:
        bids, asks = self.truth.levels_text(product)
        updates = [{"side": "bid", "event_time": TIMESTAMP, "price_level": p, "new_quantity": q} for p, q in bids]
        updates += [{"side": "offer", "event_time": TIMESTAMP, "price_level": p, "new_quantity": q}
                    for p, q in asks]
        return {"type": "snapshot", "product_id": product, "updates": updates}

    def _level_events(self, levels: Iterable[Level], peer: _Peer) -> list[dict[str, Any]]:
        events: dict[str, dict[str, Any]] = {}
        for lv in levels:
            self.truth.set_level(lv.product, lv.side == "bid", lv.price, lv.qty)
            if lv.product in peer.books:
                event = events.setdefault(lv.product, {"type": "update", "product_id": lv.product, "updates": []})
                event["updates"].append({"side": lv.side, "event_time": TIMESTAMP, "price_level": lv.price,
                                         "new_quantity": lv.qty})
        return list(events.values())

    async def _play(self, ws: ServerConnection, peer: _Peer, step: Step) -> None:
        if isinstance(step, Lost):
            # It happens (the books change), it is numbered, and it is never delivered.
            if isinstance(step.step, Level | Levels):
                self._level_events(step.step.levels if isinstance(step.step, Levels) else [step.step], peer)
            next(iter(peer.seq))
        elif isinstance(step, Level | Levels):
            events = self._level_events(step.levels if isinstance(step, Levels) else [step], peer)
            if events:
                await self._send(ws, peer, "l2_data", events)
        elif isinstance(step, Trades):
            await self._send(ws, peer, "market_trades", [{"type": "update", "trades": list(step.trades)}])
        elif isinstance(step, Heartbeat):
            await self._send(ws, peer, "heartbeats", [{"current_time": TIMESTAMP, "heartbeat_counter": 1}])
        elif isinstance(step, Ticker):
            await self._send(ws, peer, "ticker", [{"type": "update", "tickers": [
                {"type": "ticker", "product_id": step.product, "price": "100", "best_bid": "99.5"}]}])
        elif isinstance(step, Raw):
            text = step.text
            if "{seq}" in text:
                text = text.replace("{seq}", str(next(iter(peer.seq))))
            await ws.send(text)

    async def _answer(self, ws: ServerConnection, peer: _Peer, request: dict[str, Any]) -> None:
        channel = request["channel"]
        products = request.get("product_ids", [])
        if request["type"] == "unsubscribe":
            if channel == "level2":
                peer.books.difference_update(products)
            await self._send(ws, peer, "subscriptions", [{"subscriptions": {"level2": sorted(peer.books)}}])
            return
        first_time = channel not in peer.channels
        peer.channels.add(channel)
        if channel == "level2" and self.refuse_level2 and first_time:
            await ws.send(json.dumps({"type": "error", "message": "failure to subscribe"}))
            return
        await self._send(ws, peer, "subscriptions", [{"subscriptions": {channel: products or [channel]}}])
        if channel == "level2":
            peer.books.update(products)
            for product in products:
                await self._send(ws, peer, "l2_data", [self._snapshot_event(product)])
        elif channel == "market_trades":
            history = [t for t in self.trade_history if t["product_id"] in products]
            await self._send(ws, peer, "market_trades", [{"type": "snapshot", "trades": history}])

    # -- connections ---------------------------------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        peer = _Peer(seq=itertools.count(), inbox=asyncio.Queue())
        received: list[dict[str, Any]] = []
        self.received.append(received)
        first = len(self.received) == 1
        reader = asyncio.create_task(self._read(ws, peer, received))
        try:
            while not {"level2", "market_trades", "heartbeats"} <= peer.channels:
                await self._answer(ws, peer, await self._request(peer))
            for step in self.script if first else []:
                while not peer.inbox.empty():
                    await self._answer(ws, peer, await self._request(peer))
                if isinstance(step, Pause):
                    await self._pause(ws, peer)
                elif isinstance(step, Drop):
                    ws.transport.abort()
                    return
                else:
                    await self._play(ws, peer, step)
            self.finished = self.finished or first
            while True:
                await self._answer(ws, peer, await self._request(peer))
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()

    @staticmethod
    async def _request(peer: _Peer) -> dict[str, Any]:
        request = await peer.inbox.get()
        if request is None:
            raise ConnectionClosed(None, None)
        return request

    async def _pause(self, ws: ServerConnection, peer: _Peer) -> None:
        resumed = asyncio.create_task(self.resume.wait())
        try:
            while not resumed.done():
                request = asyncio.create_task(peer.inbox.get())
                done, _ = await asyncio.wait({resumed, request}, return_when=asyncio.FIRST_COMPLETED)
                if request in done:
                    result = request.result()
                    if result is None:
                        raise ConnectionClosed(None, None)
                    await self._answer(ws, peer, result)
                else:
                    request.cancel()
        finally:
            resumed.cancel()

    @staticmethod
    async def _read(ws: ServerConnection, peer: _Peer, received: list[dict[str, Any]]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                data = json.loads(message)
                received.append(data)
                peer.inbox.put_nowait(data)
        peer.inbox.put_nowait(None)  # the connection is gone

    async def __aenter__(self) -> FakeAdvancedTrade:
        self.server = await serve(self.handler, "127.0.0.1", 0, process_request=self.process_request,
                                  compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def advanced_settings(feed: FakeAdvancedTrade, **overrides: Any) -> CoinbaseSettings:
    values: dict[str, Any] = {
        "ws_url": feed.url, "rest_url": feed.url.replace("ws://", "http://"),
        "symbols": [unified(p) for p in feed.products], "backoff": FAST, "stale_after_ms": 60_000,
        "max_requests_per_sec": 100,
    }
    values.update(overrides)
    return CoinbaseSettings(**values)


def matches_truth(ctx: RecordingVenueContext, feed: FakeAdvancedTrade) -> Callable[[], bool]:
    def check() -> bool:
        return feed.finished and all(
            unified(p) in ctx.books and ctx.books[unified(p)].is_live and ctx.top(unified(p)) == feed.truth.top(p)
            for p in feed.products
        )

    return check


async def test_advanced_trade_books_follow_the_feed_over_one_shared_sequence() -> None:
    script: list[Step] = [
        Level("BTC-USD", "bid", "100.25", "7"),
        Heartbeat(),
        Level("ETH-USD", "offer", "201", "0"),  # delete an ask: "offer" is the ask side
        Trades((trade("BTC-USD", 105, "SELL"), trade("BTC-USD", 104, "BUY", price="100.25"))),
        Ticker("BTC-USD"),  # a channel not read still takes its number: no gap
        Levels((Level("BTC-USD", "offer", "101", "0.5"), Level("ETH-USD", "bid", "200", "0"))),
        Heartbeat(),
        Trades((trade("BTC-USD", 103, "BUY"),)),  # already in the history snapshot: not again
        Level("BTC-USD", "bid", "99", "0"),
    ]
    history = [trade("BTC-USD", 103, "SELL"), trade("BTC-USD", 102, "BUY"), trade("ETH-USD", 9, "BUY")]
    async with FakeAdvancedTrade(["BTC-USD", "ETH-USD"], script, history) as feed:
        ctx = recording_context()
        async with running(advanced_settings(feed), ctx) as client:
            await ctx.wait_until(matches_truth(ctx, feed))
            await ctx.wait_until(lambda: len(ctx.trades()) == 2)

            for symbol in ("BTC/USD", "ETH/USD"):
                assert ctx.transitions(symbol) == [
                    (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                    (BookHealth.LIVE, HealthReason.SNAPSHOT),
                ]
            assert ctx.counts["gaps"] == 0
            assert ctx.counts["parse_errors"] == 0
            trades = ctx.trades()
            assert [(t.trade_id, t.side) for t in trades] == [("104", Side.SELL), ("105", Side.BUY)]
            assert ctx.books["BTC/USD"].best_ask() == (101.0, 0.5)
            assert feed.received[0] == [
                {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
                {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "market_trades"},
                {"type": "subscribe", "channel": "heartbeats"},
            ]
            assert ctx.instruments["BTC/USD"].venue_symbol == "BTC-USD"
            assert len(client.stream_counters()) == 1


async def test_advanced_trade_lost_frame_is_a_gap_that_resyncs_every_book_of_the_connection() -> None:
    script: list[Step] = [
        Level("BTC-USD", "bid", "100.25", "7"),
        Pause(),
        Lost(Level("BTC-USD", "offer", "101", "0")),  # the best ask leaves; the client never hears of it
        Heartbeat(),
        Level("ETH-USD", "bid", "200.5", "1"),
        Level("BTC-USD", "bid", "100.5", "2"),
    ]
    async with FakeAdvancedTrade(["BTC-USD", "ETH-USD"], script) as feed:
        ctx = recording_context()
        async with running(advanced_settings(feed), ctx):
            await ctx.wait_until(lambda: all(b.is_live for b in ctx.books.values()) and len(ctx.books) == 2)
            feed.resume.set()
            await ctx.wait_until(lambda: ctx.counts["gaps"] == 1)
            await ctx.wait_until(matches_truth(ctx, feed))

            for symbol in ("BTC/USD", "ETH/USD"):  # ETH-USD lost nothing, but nobody can know that
                assert ctx.transitions(symbol) == [
                    (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                    (BookHealth.LIVE, HealthReason.SNAPSHOT),
                    (BookHealth.RESYNCING, HealthReason.GAP),
                    (BookHealth.LIVE, HealthReason.SNAPSHOT),
                ]
            assert ctx.books["BTC/USD"].best_ask() == (101.5, 3.0)
            assert feed.received[0][3:] == [
                {"type": "unsubscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
                {"type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"},
            ]
            assert ctx.counts["resyncs"] == 2


async def test_advanced_trade_reconnect_restarts_the_sequence_chain_without_a_gap() -> None:
    script: list[Step] = [
        Level("BTC-USD", "bid", "100.25", "7"),
        Heartbeat(),
        Drop(),
    ]
    async with FakeAdvancedTrade(["BTC-USD"], script) as feed:
        ctx = recording_context()
        async with running(advanced_settings(feed), ctx) as client:
            await ctx.wait_until(lambda: len(feed.received) == 2 and "BTC/USD" in ctx.books
                                 and ctx.books["BTC/USD"].is_live and ctx.counts["disconnects"] == 1)
            feed.finished = True
            await ctx.wait_until(matches_truth(ctx, feed))

            assert ctx.transitions("BTC/USD") == [
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
                (BookHealth.CONNECTING, HealthReason.DISCONNECTED),
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert ctx.counts["gaps"] == 0  # the new connection counts from 0 again
            assert client.stream_counters()[0].reconnects == 1
            assert len(feed.received[1]) == 3  # level2, market_trades, heartbeats again


async def test_advanced_trade_unreadable_book_frame_resyncs_only_the_book_it_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ask_misspelt = ('{"channel":"l2_data","client_id":"","timestamp":"' + TIMESTAMP + '","sequence_num":{seq},'
                    '"events":[{"type":"update","product_id":"ETH-USD","updates":[{"side":"ask",'
                    '"event_time":"' + TIMESTAMP + '","price_level":"201","new_quantity":"9"}]}]}')
    script: list[Step] = [
        Pause(),
        Raw(ask_misspelt),
        Raw("<html>502 Bad Gateway</html>"),  # no sequence number: if it had taken one, the next frame says so
        Heartbeat(),
        Level("BTC-USD", "bid", "100.25", "7"),
    ]
    async with FakeAdvancedTrade(["BTC-USD", "ETH-USD"], script) as feed:
        ctx = recording_context()
        async with running(advanced_settings(feed), ctx):
            await ctx.wait_until(lambda: all(b.is_live for b in ctx.books.values()) and len(ctx.books) == 2)
            feed.resume.set()
            await ctx.wait_until(lambda: ctx.counts["parse_errors"] == 2)
            await ctx.wait_until(matches_truth(ctx, feed))

            assert ctx.transitions("ETH/USD")[2:] == [
                (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert len(ctx.transitions("BTC/USD")) == 2
            assert ctx.counts["gaps"] == 0
    assert "unreadable frame skipped" in capsys.readouterr().out


async def test_advanced_trade_refused_subscription_is_logged_and_asked_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with FakeAdvancedTrade(["BTC-USD"], refuse_level2=True) as feed:
        ctx = recording_context()
        async with running(advanced_settings(feed), ctx):
            await ctx.wait_until(lambda: "BTC/USD" in ctx.books and ctx.books["BTC/USD"].is_live)

            assert ctx.counts["subscription_errors"] == 1
            assert ctx.transitions("BTC/USD") == [
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert feed.received[0][-1] == {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}
    logged = capsys.readouterr().out
    assert "the venue refused a request" in logged and "failure to subscribe" in logged


async def test_more_symbols_than_a_connection_carries_open_more_connections_each_with_its_own_sequence() -> None:
    async with FakeAdvancedTrade(["BTC-USD", "ETH-USD", "SOL-USD"]) as feed:
        ctx = recording_context()
        async with running(advanced_settings(feed, max_symbols_per_connection=2), ctx) as client:
            await ctx.wait_until(lambda: len(ctx.books) == 3 and all(b.is_live for b in ctx.books.values()))

            assert len(client.stream_counters()) == 2
            level2 = sorted(tuple(m["product_ids"]) for conn in feed.received for m in conn
                            if m.get("channel") == "level2")
            assert level2 == [("BTC-USD", "ETH-USD"), ("SOL-USD",)]
            assert ctx.counts["gaps"] == 0  # both chains start at 0


async def test_unknown_symbol_stops_start_up_with_a_hint() -> None:
    async with FakeAdvancedTrade(["BTC-USD"]) as feed:
        client = CoinbaseDataClient(advanced_settings(feed, symbols=["BTC/EUR"]), recording_context())

        with pytest.raises(UnknownSymbolError, match=r"listed with base BTC: 'BTC/USD'"):
            async with asyncio.timeout(10):
                await client.run()


async def test_simulator_url_without_a_simulator_names_the_fix() -> None:
    client = CoinbaseDataClient(CoinbaseSettings(ws_url="simulator"), recording_context())

    with pytest.raises(LookupError, match="simulator"):
        await client.run()


def test_plugin_registers_the_coinbase_venue() -> None:
    registry: Registry[Any] = Registry("venue")

    plugin.botframe_register_venues(registry)

    entry = registry.get("coinbase")
    assert entry is not None
    assert entry.settings_model is CoinbaseSettings
    client = entry.factory(CoinbaseSettings(symbols=["ETH/USD"]), recording_context())
    assert isinstance(client, CoinbaseDataClient)
    assert client.symbols == ["ETH/USD"]
