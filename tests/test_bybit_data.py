"""The Bybit data client against a real local server speaking Bybit v5 public streams.

There is no Bybit capture here, so the server is built from SPECS.md section 7 and Bybit's documented
shapes: it keeps true books, numbers each orderbook topic's messages with ``u`` (+1 per message, kept
across resubscribes, 1 after a "restart"), answers subscribes with acks and snapshots, and pings with
pongs in the spelling of the category.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from botframe.events import BookHealth, HealthReason, Side
from botframe.plugins import Registry
from botframe.streams import BackoffSettings
from botframe.testing import RecordingVenueContext, running_venue
from botframe.venues import Endpoints
from botframe_plugins.bybit import plugin
from botframe_plugins.bybit.config import BybitSettings
from botframe_plugins.bybit.data import BybitDataClient
from botframe_plugins.bybit.parsing import UnknownSymbolError

pytestmark = pytest.mark.timeout(60)

FAST = BackoffSettings(initial_delay_ms=1, factor=2, max_delay_ms=5, jitter=0.0)
TS_MS = 1786310817731

Tops = tuple[list[tuple[float, float]], list[tuple[float, float]]]


# -- a minimal engine side --------------------------------------------------------------------------------


def recording_context(endpoints: Endpoints | None = None) -> RecordingVenueContext:
    """The engine's side: real L2Books, book events applied as the engine does, everything recorded; once
    ``ctx.client`` is set, a LIVE book an event leaves crossed is re-synced through it, as the engine does.
    Waits re-check every 20 ms too, for the test server's own state."""
    return RecordingVenueContext("bybit", endpoints=endpoints, poll_secs=0.02)


# -- a local Bybit ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    """Change levels of the true book of ``symbol`` and push them as one ``delta`` (``u`` + 1)."""

    symbol: str
    bids: tuple[tuple[str, str], ...] = ()
    asks: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Lost:
    """The delta happens and takes its ``u``, but the frame never reaches the client."""

    delta: Delta


@dataclass(frozen=True)
class Restart:
    """Bybit's service restarts: the book is replaced by ``bids``/``asks`` and pushed as a delta with ``u == 1``."""

    symbol: str
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Snapshot:
    """An unasked snapshot of the true book (after a problem on Bybit's side)."""

    symbol: str


@dataclass(frozen=True)
class Trades:
    entries: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class Raw:
    text: str


@dataclass(frozen=True)
class Pause:
    """Wait until the test sets ``resume`` (requests are still answered meanwhile)."""


@dataclass(frozen=True)
class Drop:
    """Abort the connection (no close frame), as a network failure would."""


Step = Delta | Lost | Restart | Snapshot | Trades | Raw | Pause | Drop


def public_trade(symbol: str, side: str, trade_id: str, price: str = "100.5") -> dict[str, Any]:
    return {"T": TS_MS, "s": symbol, "S": side, "v": "0.004", "p": price, "L": "PlusTick", "i": trade_id,
            "BT": False, "RPI": False, "seq": 753843954913}


@dataclass
class _Peer:
    inbox: asyncio.Queue[dict[str, Any] | None]
    topics: set[str] = field(default_factory=set)
    received: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeBybit:
    """A local Bybit v5 public stream and instruments-info endpoint.

    The first connection plays ``script`` once every topic of ``symbols`` is subscribed. Subscribes of
    topics in ``refuse_once`` are answered ``success: false`` the first time.
    """

    symbols: list[str]
    category: str = "spot"
    depth: int = 50
    script: list[Step] = field(default_factory=list)
    refuse_once: set[str] = field(default_factory=set)
    instrument_pages: list[list[dict[str, Any]]] = field(default_factory=list)
    truth: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = field(default_factory=dict)
    u: dict[str, int] = field(default_factory=dict)
    seq: int = 430879399832
    peers: list[_Peer] = field(default_factory=list)
    rest_queries: list[dict[str, list[str]]] = field(default_factory=list)
    finished: bool = False
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    server: Server | None = None

    def __post_init__(self) -> None:
        for index, symbol in enumerate(self.symbols):
            base = Decimal(100 * (index + 1))
            self.truth[symbol] = ({}, {})
            for step in range(5):
                self._set(symbol, True, str(base - Decimal(step) / 2), str(step + 1))
                self._set(symbol, False, str(base + 1 + Decimal(step) / 2), str(step + 2))
            self.u[symbol] = 1000 * (index + 1)
        if not self.instrument_pages:
            self.instrument_pages = [[self._instrument(s) for s in self.symbols]]

    def _instrument(self, symbol: str) -> dict[str, Any]:
        base, quote = symbol[:-4], symbol[-4:]
        if self.category == "spot":
            return {"symbol": symbol, "baseCoin": base, "quoteCoin": quote, "status": "Trading",
                    "lotSizeFilter": {"basePrecision": "0.000001", "minOrderAmt": "1"},
                    "priceFilter": {"tickSize": "0.01"}}
        return {"symbol": symbol, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": base,
                "quoteCoin": quote, "settleCoin": quote, "deliveryTime": "0", "priceFilter": {"tickSize": "0.10"},
                "lotSizeFilter": {"qtyStep": "0.001", "minNotionalValue": "5"}}

    def _set(self, symbol: str, bid: bool, price: str, size: str) -> None:
        levels = self.truth[symbol][0 if bid else 1]
        if Decimal(size) == 0:
            levels.pop(Decimal(price), None)
        else:
            levels[Decimal(price)] = Decimal(size)

    def top(self, symbol: str, n: int = 10) -> Tops:
        bids, asks = self.truth[symbol]
        return ([(float(p), float(q)) for p, q in sorted(bids.items(), reverse=True)[:n]],
                [(float(p), float(q)) for p, q in sorted(asks.items())[:n]])

    def _levels(self, symbol: str) -> tuple[list[list[str]], list[list[str]]]:
        bids, asks = self.truth[symbol]
        return ([[str(p), str(q)] for p, q in sorted(bids.items(), reverse=True)],
                [[str(p), str(q)] for p, q in sorted(asks.items())])

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def book_topic(self, symbol: str) -> str:
        return f"orderbook.{self.depth}.{symbol}"

    # -- REST ----------------------------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != "/v5/market/instruments-info":
            return None
        query = parse_qs(parts.query)
        self.rest_queries.append(query)
        page = int(query.get("cursor", ["0"])[0])
        more = page + 1 < len(self.instrument_pages)
        body = json.dumps({"retCode": 0, "retMsg": "OK", "result": {
            "category": self.category, "list": self.instrument_pages[page],
            "nextPageCursor": str(page + 1) if more else ""}, "retExtInfo": {}, "time": TS_MS})
        raw = body.encode()
        return Response(200, "OK", Headers({"Content-Type": "application/json", "Content-Length": str(len(raw))}),
                        raw)

    # -- frames --------------------------------------------------------------------------------------------

    async def _book_frame(self, ws: ServerConnection, symbol: str, kind: str, bids: Any, asks: Any) -> None:
        self.seq += 1
        await ws.send(json.dumps({"topic": self.book_topic(symbol), "type": kind, "ts": TS_MS, "data": {
            "s": symbol, "b": bids, "a": asks, "u": self.u[symbol], "seq": self.seq}, "cts": TS_MS - 4}))

    async def _play(self, ws: ServerConnection, peer: _Peer, step: Step) -> None:
        if isinstance(step, Lost):
            for price, size in step.delta.bids:
                self._set(step.delta.symbol, True, price, size)
            for price, size in step.delta.asks:
                self._set(step.delta.symbol, False, price, size)
            self.u[step.delta.symbol] += 1
            self.seq += 1
        elif isinstance(step, Delta):
            for price, size in step.bids:
                self._set(step.symbol, True, price, size)
            for price, size in step.asks:
                self._set(step.symbol, False, price, size)
            self.u[step.symbol] += 1
            if self.book_topic(step.symbol) in peer.topics:
                await self._book_frame(ws, step.symbol, "delta", [list(b) for b in step.bids],
                                       [list(a) for a in step.asks])
        elif isinstance(step, Restart):
            self.truth[step.symbol] = ({}, {})
            for price, size in step.bids:
                self._set(step.symbol, True, price, size)
            for price, size in step.asks:
                self._set(step.symbol, False, price, size)
            self.u[step.symbol] = 1
            await self._book_frame(ws, step.symbol, "delta", *self._levels(step.symbol))
        elif isinstance(step, Snapshot):
            await self._book_frame(ws, step.symbol, "snapshot", *self._levels(step.symbol))
        elif isinstance(step, Trades):
            symbol = step.entries[0]["s"]
            await ws.send(json.dumps({"topic": f"publicTrade.{symbol}", "type": "snapshot", "ts": TS_MS,
                                      "data": list(step.entries)}))
        elif isinstance(step, Raw):
            await ws.send(step.text)

    async def _answer(self, ws: ServerConnection, peer: _Peer, request: dict[str, Any]) -> None:
        op = request["op"]
        if op == "ping":
            if self.category == "spot":
                await ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": "c1", "op": "ping"}))
            else:
                await ws.send(json.dumps({"op": "pong", "args": [str(TS_MS)], "conn_id": "c1"}))
            return
        topics = request.get("args", [])
        ack = {"success": True, "ret_msg": "", "conn_id": "c1", "req_id": request.get("req_id", ""), "op": op}
        if op == "unsubscribe":
            peer.topics.difference_update(topics)
            await ws.send(json.dumps(ack))
            return
        refused = [t for t in topics if t in self.refuse_once]
        if refused:
            self.refuse_once.difference_update(refused)
            await ws.send(json.dumps({**ack, "success": False,
                                      "ret_msg": f"error:handler not found,topic:{refused[0]}"}))
            return
        await ws.send(json.dumps(ack))
        peer.topics.update(topics)
        for topic in topics:
            if topic.startswith("orderbook."):
                symbol = topic.rsplit(".", 1)[1]
                await self._book_frame(ws, symbol, "snapshot", *self._levels(symbol))

    async def handler(self, ws: ServerConnection) -> None:
        peer = _Peer(inbox=asyncio.Queue())
        self.peers.append(peer)
        first = len(self.peers) == 1
        reader = asyncio.create_task(self._read(ws, peer))
        wanted = {self.book_topic(s) for s in self.symbols} | {f"publicTrade.{s}" for s in self.symbols}
        try:
            if first and self.script:
                while not wanted <= peer.topics:
                    await self._answer(ws, peer, await self._request(peer))
                for step in self.script:
                    while not peer.inbox.empty():
                        await self._answer(ws, peer, await self._request(peer))
                    if isinstance(step, Pause):
                        await self._pause(ws, peer)
                    elif isinstance(step, Drop):
                        ws.transport.abort()
                        return
                    else:
                        await self._play(ws, peer, step)
                self.finished = True
            while True:
                await self._answer(ws, peer, await self._request(peer))
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()

    async def _pause(self, ws: ServerConnection, peer: _Peer) -> None:
        resumed = asyncio.create_task(self.resume.wait())
        try:
            while not resumed.done():
                request = asyncio.create_task(self._request(peer))
                done, _ = await asyncio.wait({resumed, request}, return_when=asyncio.FIRST_COMPLETED)
                if request in done:
                    await self._answer(ws, peer, request.result())
                else:
                    request.cancel()
        finally:
            resumed.cancel()

    @staticmethod
    async def _request(peer: _Peer) -> dict[str, Any]:
        request = await peer.inbox.get()
        if request is None:
            raise ConnectionClosed(None, None)
        return request

    @staticmethod
    async def _read(ws: ServerConnection, peer: _Peer) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                data = json.loads(message)
                peer.received.append(data)
                peer.inbox.put_nowait(data)
        peer.inbox.put_nowait(None)  # the connection is gone

    async def __aenter__(self) -> FakeBybit:
        self.server = await serve(self.handler, "127.0.0.1", 0, process_request=self.process_request,
                                  compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def unified(symbol: str, category: str = "spot") -> str:
    spot = f"{symbol[:-4]}/{symbol[-4:]}"
    return spot if category == "spot" else f"{spot}:{symbol[-4:]}"


def settings_for(feed: FakeBybit, **overrides: Any) -> BybitSettings:
    values: dict[str, Any] = {
        "category": feed.category, "ws_url": feed.url, "rest_url": feed.url.replace("ws://", "http://"),
        "symbols": [unified(s, feed.category) for s in feed.symbols], "depth": feed.depth, "backoff": FAST,
        "stale_after_ms": 60_000, "max_requests_per_sec": 1000,
    }
    values.update(overrides)
    return BybitSettings(**values)


@contextlib.asynccontextmanager
async def running(feed: FakeBybit, ctx: RecordingVenueContext, **overrides: Any) -> AsyncIterator[BybitDataClient]:
    """Run a client of ``feed`` until the body is done, then cancel it (it must end by cancellation only)."""
    client = BybitDataClient(settings_for(feed, **overrides), ctx)
    ctx.client = client
    async with running_venue(client):
        yield client


def matches_truth(ctx: RecordingVenueContext, feed: FakeBybit) -> Callable[[], bool]:
    def check() -> bool:
        return feed.finished and all(
            ctx.live(unified(s, feed.category)) and ctx.top(unified(s, feed.category)) == feed.top(s)
            for s in feed.symbols
        )

    return check


SUBSCRIBED_THEN_LIVE = [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.LIVE, HealthReason.SNAPSHOT)]


# -- tests ------------------------------------------------------------------------------------------------


async def test_books_follow_the_deltas_and_trades_carry_the_takers_side() -> None:
    script: list[Step] = [
        Delta("BTCUSDT", bids=(("100.25", "7"),)),
        Delta("ETHUSDT", asks=(("201", "0"),)),
        Trades((public_trade("BTCUSDT", "Sell", "t1"), public_trade("BTCUSDT", "Buy", "t2", price="101"))),
        Delta("BTCUSDT", bids=(("99", "0"),), asks=(("101", "0.5"),)),
        Raw(json.dumps({"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": TS_MS,
                        "data": {"symbol": "BTCUSDT", "lastPrice": "100.5"}})),  # a topic not read
        Delta("ETHUSDT", bids=(("200", "0"),)),
    ]
    async with FakeBybit(["BTCUSDT", "ETHUSDT"], script=script) as feed:
        ctx = recording_context()
        async with running(feed, ctx) as client:
            await ctx.wait_until(matches_truth(ctx, feed))
            await ctx.wait_until(lambda: len(ctx.trades()) == 2)

            assert ctx.transitions("BTC/USDT") == ctx.transitions("ETH/USDT") == SUBSCRIBED_THEN_LIVE
            assert [(t.trade_id, t.side, t.price) for t in ctx.trades()] == [
                ("t1", Side.SELL, 100.5), ("t2", Side.BUY, 101.0)]
            assert (ctx.counts["gaps"], ctx.counts["parse_errors"], ctx.counts["ignored_frames"]) == (0, 0, 1)
            assert ctx.books["BTC/USDT"].last_seq == 1002
            assert client.cross_sequence("BTC/USDT") > 430879399832
            assert feed.peers[0].received[0] == {
                "op": "subscribe", "req_id": "1",
                "args": ["orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT", "publicTrade.BTCUSDT", "publicTrade.ETHUSDT"],
            }
            assert ctx.instruments["BTC/USDT"].lot_size == "0.000001"
            assert feed.rest_queries == [{"category": ["spot"]}]


async def test_removed_delta_is_a_gap_and_only_that_book_is_resubscribed() -> None:
    script: list[Step] = [
        Delta("BTCUSDT", bids=(("100.25", "7"),)),
        Pause(),
        Lost(Delta("BTCUSDT", asks=(("101", "0"),))),  # the best ask leaves; the client never hears of it
        Delta("BTCUSDT", bids=(("100.5", "2"),)),
        Delta("ETHUSDT", bids=(("200.5", "1"),)),
    ]
    async with FakeBybit(["BTCUSDT", "ETHUSDT"], script=script) as feed:
        ctx = recording_context()
        async with running(feed, ctx):
            await ctx.wait_until(lambda: ctx.live("BTC/USDT", "ETH/USDT"))
            feed.resume.set()
            await ctx.wait_until(lambda: ctx.counts["gaps"] == 1)
            await ctx.wait_until(matches_truth(ctx, feed))

            assert ctx.transitions("BTC/USDT") == [
                *SUBSCRIBED_THEN_LIVE,
                (BookHealth.RESYNCING, HealthReason.GAP),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert ctx.transitions("ETH/USDT") == SUBSCRIBED_THEN_LIVE  # its own u chain lost nothing
            assert ctx.books["BTC/USDT"].best_ask() == (101.5, 3.0)
            requests = [(m["op"], m["args"]) for m in feed.peers[0].received[1:]]
            assert requests == [("unsubscribe", ["orderbook.50.BTCUSDT"]), ("subscribe", ["orderbook.50.BTCUSDT"])]
            assert ctx.counts["resyncs"] == 1


async def test_dropped_connection_reconnects_and_every_book_resyncs_from_a_new_snapshot() -> None:
    script: list[Step] = [
        Delta("BTCUSDT", bids=(("100.25", "7"),)),
        Drop(),
    ]
    async with FakeBybit(["BTCUSDT"], script=script) as feed:
        ctx = recording_context()
        async with running(feed, ctx, heartbeat_interval_secs=0.05) as client:
            await ctx.wait_until(lambda: len(feed.peers) == 2 and ctx.counts["disconnects"] == 1
                                 and ctx.live("BTC/USDT"))
            feed.finished = True
            await ctx.wait_until(matches_truth(ctx, feed))
            await ctx.wait_until(lambda: any(m["op"] == "ping" for m in feed.peers[1].received))

            assert ctx.transitions("BTC/USDT") == [
                *SUBSCRIBED_THEN_LIVE,
                (BookHealth.CONNECTING, HealthReason.DISCONNECTED),
                *SUBSCRIBED_THEN_LIVE,
            ]
            assert client.stream_counters()[0].reconnects == 1
            assert feed.peers[1].received[0]["args"] == ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"]


async def test_delta_with_u_of_one_replaces_the_book_without_a_resubscription() -> None:
    script: list[Step] = [
        Delta("BTCUSDT", bids=(("100.25", "7"),)),
        Restart("BTCUSDT", bids=(("90", "1"), ("89", "2")), asks=(("91", "3"),)),
        Delta("BTCUSDT", asks=(("92", "4"),)),  # u == 2: continues the restarted chain
    ]
    async with FakeBybit(["BTCUSDT"], script=script) as feed:
        ctx = recording_context()
        async with running(feed, ctx):
            await ctx.wait_until(matches_truth(ctx, feed))

            assert ctx.top("BTC/USDT") == ([(90.0, 1.0), (89.0, 2.0)], [(91.0, 3.0), (92.0, 4.0)])
            assert ctx.transitions("BTC/USDT") == SUBSCRIBED_THEN_LIVE
            assert ctx.counts["gaps"] == 0
            assert len(feed.peers[0].received) == 1  # the first subscribe only


async def test_unasked_snapshot_replaces_the_book_and_the_chain_goes_on_from_it() -> None:
    script: list[Step] = [
        Lost(Delta("BTCUSDT", bids=(("100.25", "7"),))),  # lost, but the next snapshot carries it...
        Snapshot("BTCUSDT"),  # ...and arrives before any delta could show the gap
        Delta("BTCUSDT", asks=(("101", "0"),)),
    ]
    async with FakeBybit(["BTCUSDT"], script=script) as feed:
        ctx = recording_context()
        async with running(feed, ctx):
            await ctx.wait_until(matches_truth(ctx, feed))

            assert ctx.books["BTC/USDT"].best_bid() == (100.25, 7.0)
            assert ctx.transitions("BTC/USDT") == SUBSCRIBED_THEN_LIVE
            assert ctx.counts["gaps"] == 0


async def test_refused_subscription_is_logged_clearly_and_asked_again(capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeBybit(["BTCUSDT"], refuse_once={"orderbook.50.BTCUSDT"}) as feed:
        ctx = recording_context()
        async with running(feed, ctx):
            await ctx.wait_until(lambda: ctx.live("BTC/USDT"))

            assert ctx.counts["subscription_errors"] == 1
            assert ctx.transitions("BTC/USDT") == SUBSCRIBED_THEN_LIVE
            assert [m["op"] for m in feed.peers[0].received] == ["subscribe", "subscribe"]
    logged = capsys.readouterr().out
    assert "the venue refused a request" in logged
    assert "error:handler not found,topic:orderbook.50.BTCUSDT" in logged
    assert "publicTrade.BTCUSDT" in logged  # the topics of the refused request are named


async def test_unreadable_orderbook_frame_resyncs_its_book_and_other_text_is_only_counted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script: list[Step] = [
        Pause(),
        Raw('{"topic":"orderbook.50.ETHUSDT","type":"delta","ts":1,"data":{"s":"ETHUSDT","b":[["200",'),
        Raw("<html>502 Bad Gateway</html>" + "x" * 500),
        Delta("BTCUSDT", bids=(("100.25", "7"),)),
    ]
    async with FakeBybit(["BTCUSDT", "ETHUSDT"], script=script) as feed:
        ctx = recording_context()
        async with running(feed, ctx) as client:
            await ctx.wait_until(lambda: ctx.live("BTC/USDT", "ETH/USDT"))
            feed.resume.set()
            await ctx.wait_until(lambda: ctx.counts["parse_errors"] == 2)
            await ctx.wait_until(matches_truth(ctx, feed))

            assert ctx.transitions("ETH/USDT") == [
                *SUBSCRIBED_THEN_LIVE,
                (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert ctx.transitions("BTC/USDT") == SUBSCRIBED_THEN_LIVE
            assert client.stream_counters()[0].parse_errors == 2
    logged = capsys.readouterr().out
    assert "unreadable frame skipped" in logged
    assert "<html>502 Bad Gateway</html>" + "x" * 172 in logged
    assert "x" * 173 not in logged  # the raw text is cut to 200 characters


@pytest.mark.parametrize("category", ["spot", "linear"])
async def test_heartbeat_pings_are_sent_and_both_pong_spellings_pass_quietly(category: str) -> None:
    async with FakeBybit(["BTCUSDT"], category=category) as feed:
        ctx = recording_context()
        async with running(feed, ctx, heartbeat_interval_secs=0.01):
            await ctx.wait_until(lambda: ctx.live(unified("BTCUSDT", category)))
            await ctx.wait_until(lambda: sum(m["op"] == "ping" for m in feed.peers[0].received) >= 3)

            assert ctx.counts["parse_errors"] == 0
            assert ctx.counts["subscription_errors"] == 0


async def test_linear_contracts_use_settle_coin_names_and_paged_instruments() -> None:
    feed = FakeBybit(["BTCUSDT", "ETHUSDT"], category="linear", depth=200)
    feed.instrument_pages = [[feed._instrument("BTCUSDT")], [feed._instrument("ETHUSDT")]]
    async with feed:
        ctx = recording_context()
        async with running(feed, ctx):
            await ctx.wait_until(lambda: ctx.live("BTC/USDT:USDT", "ETH/USDT:USDT"))

            assert ctx.instruments["ETH/USDT:USDT"].tick_size == "0.10"
            assert feed.rest_queries == [
                {"category": ["linear"], "limit": ["1000"]},
                {"category": ["linear"], "limit": ["1000"], "cursor": ["1"]},
            ]
            assert feed.peers[0].received[0]["args"][0] == "orderbook.200.BTCUSDT"


async def test_more_symbols_than_a_connection_carries_open_more_connections_and_requests_stay_small() -> None:
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT"]
    async with FakeBybit(symbols) as feed:
        ctx = recording_context()
        async with running(feed, ctx, max_symbols_per_connection=3, max_topics_per_request=4) as client:
            await ctx.wait_until(lambda: ctx.live(*(unified(s) for s in symbols)))

            assert len(client.stream_counters()) == 2
            sizes = sorted(len(m["args"]) for peer in feed.peers for m in peer.received)
            assert sizes == [2, 4, 4]  # 6 topics as 4 + 2 on one connection, 4 on the other
            assert ctx.counts["gaps"] == 0


async def test_unknown_symbol_stops_start_up_with_a_hint() -> None:
    async with FakeBybit(["BTCUSDT"]) as feed:
        client = BybitDataClient(settings_for(feed, symbols=["BTC/USDT:USDT"]), recording_context())

        with pytest.raises(UnknownSymbolError, match="BTC/USDT:USDT"):
            async with asyncio.timeout(10):
                await client.run()


async def test_simulator_url_without_a_simulator_names_the_fix() -> None:
    client = BybitDataClient(BybitSettings(ws_url="simulator"), recording_context())

    with pytest.raises(LookupError, match="simulator"):
        await client.run()


def test_plugin_registers_the_bybit_venue() -> None:
    registry: Registry[Any] = Registry("venue")

    plugin.botframe_register_venues(registry)

    entry = registry.get("bybit")
    assert entry is not None
    assert entry.settings_model is BybitSettings
    client = entry.factory(BybitSettings(symbols=["ETH/USDT"]), recording_context())
    assert isinstance(client, BybitDataClient)
    assert client.symbols == ["ETH/USDT"]
