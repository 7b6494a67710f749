"""The Binance data client against a real local server replaying recorded frames and REST answers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from botframe.book import L2Book
from botframe.events import BookHealth, HealthReason, Side, Trade
from botframe.plugins import Registry
from botframe.streams import BackoffSettings
from botframe.testing import RecordingVenueContext, running_venue
from botframe.venues import Endpoints
from botframe_plugins.binance import plugin
from botframe_plugins.binance.config import BinanceSettings
from botframe_plugins.binance.data import BinanceDataClient, stream_url
from botframe_plugins.binance.parsing import UnknownSymbolError

pytestmark = pytest.mark.timeout(30)

FAST = BackoffSettings(initial_delay_ms=1, factor=2, max_delay_ms=5, jitter=0.0)


# -- recorded data --------------------------------------------------------------------------------------


def _payload(line: str) -> tuple[float, str]:
    if " -> " in line:
        line = line.split(" -> ", 1)[1]
    ts, _, payload = line.partition(": ")
    return float(ts), payload


@dataclass(frozen=True)
class Recorded:
    """One symbol of a capture: its frames in order, its REST snapshot, and the venue's exchangeInfo."""

    market: str
    venue_symbol: str
    unified: str
    frames: list[str]
    snapshot: str
    exchange_info: bytes
    rest_prefix: str

    @property
    def stream_prefix(self) -> str:
        return self.venue_symbol.lower()

    def diffs(self) -> list[str]:
        return [f for f in self.frames if '"depthUpdate"' in f]

    @functools.cached_property
    def diff_set(self) -> frozenset[str]:
        return frozenset(self.diffs())

    @property
    def futures(self) -> bool:
        return self.market in ("usdm", "coinm")


def load_recorded(folder: Path, name: str, market: str, venue_symbol: str, unified: str) -> Recorded:
    prefix = venue_symbol.lower() + "@"
    frames = []
    for line in (folder / f"{name}.ws.1.0.txt").read_text().splitlines():
        if line and " <-> " not in line:
            payload = _payload(line)[1]
            if json.loads(payload)["stream"].startswith(prefix):
                frames.append(payload)
    snapshot = ""
    for line in (folder / f"{name}.http.0.0.rest_depth_snapshots.txt").read_text().splitlines():
        if f"symbol={venue_symbol}&" in line:
            snapshot = _payload(line)[1]
    info_line = (folder / f"{name}.0.rest_exchangeInfo.txt").read_text().splitlines()[0]
    rest_prefix = {"spot": "/api/v3", "us": "/api/v3", "usdm": "/fapi/v1", "coinm": "/dapi/v1"}[market]
    info = _payload(info_line)[1].encode()
    return Recorded(market, venue_symbol, unified, frames, snapshot, info, rest_prefix)


@pytest.fixture
def spot(shared_data: Path) -> Recorded:
    return load_recorded(shared_data / "binance", "BINANCE", "spot", "NKNUSDT", "NKN/USDT")


@pytest.fixture
def usdm(shared_data: Path) -> Recorded:
    return load_recorded(shared_data / "binance", "BINANCE_FUTURES", "usdm", "SUSHIUSDT", "SUSHI/USDT:USDT")


class ReferenceBook:
    """A plain rebuild from the wire text (Decimal, dicts): a snapshot, then every diff newer than it."""

    def __init__(self, snapshot_text: str) -> None:
        snap = json.loads(snapshot_text)
        self.last_update_id: int = snap["lastUpdateId"]
        self.bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}

    def apply_all(self, frames: list[str], futures: bool) -> ReferenceBook:
        for frame in frames:
            data = json.loads(frame)["data"]
            if data.get("e") != "depthUpdate":
                continue
            if data["u"] < self.last_update_id or (not futures and data["u"] == self.last_update_id):
                continue
            for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
                for p, q in levels:
                    if Decimal(q) == 0:
                        side.pop(Decimal(p), None)
                    else:
                        side[Decimal(p)] = Decimal(q)
            self.last_update_id = data["u"]
        return self

    def top(self, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids = sorted(self.bids.items(), reverse=True)[:n]
        asks = sorted(self.asks.items())[:n]
        return [(float(p), float(q)) for p, q in bids], [(float(p), float(q)) for p, q in asks]

    def snapshot_text(self) -> str:
        """This state as the REST API would answer it."""
        return json.dumps({
            "lastUpdateId": self.last_update_id,
            "bids": [[str(p), str(q)] for p, q in sorted(self.bids.items(), reverse=True)],
            "asks": [[str(p), str(q)] for p, q in sorted(self.asks.items())],
        })


def exchange_state_through(rec: Recorded, diff_frame: str) -> str:
    """The snapshot the exchange would serve once ``diff_frame`` happened (recorded snapshot + diffs)."""
    frames = rec.frames[: rec.frames.index(diff_frame) + 1]
    ref = ReferenceBook(rec.snapshot).apply_all(frames, rec.futures)
    ref.last_update_id = json.loads(diff_frame)["data"]["u"]
    return ref.snapshot_text()


# -- a real local Binance: WebSocket streams plus REST over HTTP on the same port -----------------------


PAUSE = "<pause>"


@dataclass
class ReplayServer:
    """Serves ``sessions[i]`` to the i-th WebSocket connection and the REST answers from ``process_request``.

    A session ends by ``"drop"`` (the TCP connection is aborted once the test sets ``drop_now``) or
    ``"hold"`` (kept open, idle). A :data:`PAUSE` in a session waits for the test to set ``resume``,
    so a test can let the book go LIVE before the interesting frame.

    The first depth request gets the recorded snapshot; later ones get what the exchange would answer
    then: the book as of the last diff sent so far (frames removed from a session still happened).
    """

    rec: Recorded
    sessions: list[list[str]]
    endings: list[str] = field(default_factory=list)
    connections: int = 0
    stream_paths: list[str] = field(default_factory=list)
    rest_paths: list[str] = field(default_factory=list)
    server: Server | None = None
    last_sent_diff: str | None = None
    snapshots_served: int = 0
    drop_now: asyncio.Event = field(default_factory=asyncio.Event)
    resume: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    @property
    def http_url(self) -> str:
        return self.url.replace("ws://", "http://")

    def _json(self, body: bytes | str) -> Response:
        raw = body.encode() if isinstance(body, str) else body
        return Response(200, "OK", Headers({"Content-Type": "application/json",
                                             "Content-Length": str(len(raw))}), raw)

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path
        if path.startswith("/stream"):
            self.stream_paths.append(path)
            return None
        self.rest_paths.append(path)
        if path.startswith(f"{self.rec.rest_prefix}/exchangeInfo"):
            return self._json(self.rec.exchange_info)
        if path.startswith(f"{self.rec.rest_prefix}/depth?symbol={self.rec.venue_symbol}&limit="):
            self.snapshots_served += 1
            if self.snapshots_served == 1 or self.last_sent_diff is None:
                return self._json(self.rec.snapshot)
            return self._json(exchange_state_through(self.rec, self.last_sent_diff))
        return conn.respond(404, "not found")

    async def handler(self, ws: ServerConnection) -> None:
        index = min(self.connections, len(self.sessions) - 1)
        self.connections += 1
        for frame in self.sessions[index]:
            if frame is PAUSE:
                await self.resume.wait()
            else:
                await ws.send(frame)
                if frame in self.rec.diff_set:
                    self.last_sent_diff = frame
        ending = self.endings[index] if index < len(self.endings) else "hold"
        if ending == "drop":
            await self.drop_now.wait()
            ws.transport.abort()
            return
        await ws.wait_closed()

    async def __aenter__(self) -> ReplayServer:
        self.server = await serve(self.handler, "127.0.0.1", 0, process_request=self.process_request,
                                  compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


# -- a minimal engine side --------------------------------------------------------------------------------


def recording_context(endpoints: Endpoints) -> RecordingVenueContext:
    """The engine's side: real L2Books, book events applied as the engine does, everything recorded."""
    return RecordingVenueContext("binance", endpoints=endpoints)


def settings_for(rec: Recorded, **overrides: Any) -> BinanceSettings:
    values: dict[str, Any] = {"market": rec.market, "symbols": [rec.unified], "backoff": FAST,
                              "stale_after_ms": 60_000}
    values.update(overrides)
    return BinanceSettings(**values)


@dataclass
class Running:
    ctx: RecordingVenueContext
    client: BinanceDataClient
    server: ReplayServer


@contextlib.asynccontextmanager
async def running_client(server: ReplayServer, **overrides: Any) -> AsyncIterator[Running]:
    """Start ``server`` and a client of it; the body runs while both are up; both stop afterwards."""
    async with server:
        endpoints = Endpoints()
        endpoints.set("binance.ws", server.url)
        endpoints.set("binance.rest", server.http_url)
        ctx = recording_context(endpoints)
        async with running_venue(BinanceDataClient(settings_for(server.rec, **overrides), ctx)) as client:
            yield Running(ctx, client, server)


def last_u(frames: list[str]) -> int:
    return max(int(json.loads(f)["data"]["u"]) for f in frames if '"depthUpdate"' in f)


def is_synced_to(ctx: RecordingVenueContext, symbol: str, update_id: int) -> Callable[[], bool]:
    def check() -> bool:
        book = ctx.books.get(symbol)
        return book is not None and book.is_live and book.last_seq == update_id

    return check


def top(book: L2Book, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    return book.bids(n), book.asks(n)


# -- tests ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_books_reach_live_and_match_the_reference(
    market: str, spot: Recorded, usdm: Recorded
) -> None:
    rec = spot if market == "spot" else usdm
    server = ReplayServer(rec, sessions=[rec.frames])

    async with running_client(server) as running:
        ctx = running.ctx
        await ctx.wait_until(is_synced_to(ctx, rec.unified, last_u(rec.frames)))

        reference = ReferenceBook(rec.snapshot).apply_all(rec.frames, rec.futures)
        assert top(ctx.books[rec.unified]) == reference.top()
        assert ctx.transitions(rec.unified) == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert ctx.instruments[rec.unified].venue_symbol == rec.venue_symbol
        assert server.stream_paths == [
            f"/stream?streams={rec.stream_prefix}@depth@100ms/{rec.stream_prefix}@aggTrade"
        ]
        assert f"{rec.rest_prefix}/depth?symbol={rec.venue_symbol}&limit=1000" in server.rest_paths
        assert ctx.counts["gaps"] == 0
        assert ctx.counts["parse_errors"] == 0


async def test_trades_carry_the_aggressor_side(usdm: Recorded) -> None:
    rec = usdm
    recorded = [json.loads(f)["data"] for f in rec.frames if '"aggTrade"' in f]
    server = ReplayServer(rec, sessions=[rec.frames])

    async with running_client(server) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: sum(isinstance(e, Trade) for e in ctx.events) == len(recorded))

        trades = [e for e in ctx.events if isinstance(e, Trade)]
        assert [t.side for t in trades] == [Side.SELL if d["m"] else Side.BUY for d in recorded]
        assert [t.price for t in trades] == [float(d["p"]) for d in recorded]
        assert trades[0].trade_id == str(recorded[0]["a"])
        assert trades[0].exchange_ts_ns == recorded[0]["T"] * 1_000_000


async def test_dropped_connection_reconnects_and_resyncs(
    spot: Recorded
) -> None:
    rec = spot
    diffs = rec.diffs()
    split = rec.frames.index(diffs[len(diffs) // 2])
    first, second = rec.frames[:split], rec.frames[split:]
    server = ReplayServer(rec, sessions=[first, second], endings=["drop", "hold"])

    async with running_client(server) as running:
        ctx = running.ctx
        await ctx.wait_until(is_synced_to(ctx, rec.unified, last_u(first)))
        server.drop_now.set()
        await ctx.wait_until(is_synced_to(ctx, rec.unified, last_u(rec.frames)))

        assert ctx.transitions(rec.unified) == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.CONNECTING, HealthReason.DISCONNECTED),
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert server.connections == 2
        assert running.client.stream_counters()[0].reconnects == 1
        reference = ReferenceBook(rec.snapshot).apply_all(rec.frames, rec.futures)
        assert top(ctx.books[rec.unified]) == reference.top()


@pytest.mark.parametrize("market", ["spot", "usdm"])
async def test_removed_frame_triggers_a_gap_and_a_resync(
    market: str, spot: Recorded, usdm: Recorded
) -> None:
    rec = spot if market == "spot" else usdm
    diffs = rec.diffs()
    removed = diffs[len(diffs) // 2]
    at = rec.frames.index(removed)
    damaged = [*rec.frames[:at], PAUSE, *rec.frames[at + 1 :]]
    server = ReplayServer(rec, sessions=[damaged])

    async with running_client(server) as running:
        ctx = running.ctx
        await ctx.wait_until(is_synced_to(ctx, rec.unified, last_u(rec.frames[:at])))
        server.resume.set()
        await ctx.wait_until(is_synced_to(ctx, rec.unified, last_u(rec.frames)))

        assert ctx.counts["gaps"] == 1
        assert ctx.transitions(rec.unified) == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.GAP),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        reference = ReferenceBook(rec.snapshot).apply_all(rec.frames, rec.futures)
        assert top(ctx.books[rec.unified]) == reference.top()


async def test_malformed_frames_are_counted_and_skipped(
    spot: Recorded, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = spot
    diffs = rec.diffs()
    before = diffs[len(diffs) // 2]
    at = rec.frames.index(before) + 1
    broken_depth = '{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"U":'
    not_json = "<html>502 Bad Gateway</html>" + "x" * 500
    frames = [*rec.frames[:at], PAUSE, broken_depth, not_json, *rec.frames[at:]]
    server = ReplayServer(rec, sessions=[frames])

    async with running_client(server) as running:
        ctx = running.ctx
        await ctx.wait_until(is_synced_to(ctx, rec.unified, last_u(rec.frames[:at])))
        server.resume.set()
        await ctx.wait_until(lambda: ctx.counts["parse_errors"] == 2)
        await ctx.wait_until(is_synced_to(ctx, rec.unified, last_u(rec.frames)))

        assert ctx.transitions(rec.unified) == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert running.client.stream_counters()[0].parse_errors == 2
        assert ctx.counts["ignored_frames"] > 0  # the recorded bookTicker / kline frames
        reference = ReferenceBook(rec.snapshot).apply_all(rec.frames, rec.futures)
        assert top(ctx.books[rec.unified]) == reference.top()
    logged = capsys.readouterr().out
    assert "unreadable frame skipped" in logged
    assert "<html>502 Bad Gateway</html>" + "x" * 172 in logged
    assert "x" * 173 not in logged  # the raw text is cut to 200 characters


async def test_unknown_symbol_stops_start_up_with_a_hint(
    spot: Recorded
) -> None:
    server = ReplayServer(spot, sessions=[[]])
    async with server:
        endpoints = Endpoints()
        endpoints.set("binance.ws", server.url)
        endpoints.set("binance.rest", server.http_url)
        settings = settings_for(spot, symbols=["NKN/USDC", "NKNUSDT/X"])
        client = BinanceDataClient(settings, recording_context(endpoints))

        with pytest.raises(UnknownSymbolError, match="NKN/USDC"):
            async with asyncio.timeout(10):
                await client.run()


# -- settings and registration ------------------------------------------------------------------------------


def test_settings_reject_unknown_keys_and_venue_symbols() -> None:
    with pytest.raises(ValidationError, match="ws_urll"):
        BinanceSettings.model_validate({"ws_urll": "x"})
    with pytest.raises(ValidationError, match="unified symbol"):
        BinanceSettings(symbols=["BTCUSDT"])
    with pytest.raises(ValidationError, match="market"):
        BinanceSettings.model_validate({"market": "margin"})


def test_stream_url_appends_the_combined_stream_path() -> None:
    assert stream_url("wss://stream.binance.com:9443", ["a@depth@100ms", "b@aggTrade"]) == (
        "wss://stream.binance.com:9443/stream?streams=a@depth@100ms/b@aggTrade"
    )
    assert stream_url("ws://127.0.0.1:1/stream/", ["a"]) == "ws://127.0.0.1:1/stream?streams=a"


def test_plugin_registers_the_binance_venue() -> None:
    registry: Registry[Any] = Registry("venue")

    plugin.botframe_register_venues(registry)

    entry = registry.get("binance")
    assert entry is not None
    assert entry.settings_model is BinanceSettings
    client = entry.factory(BinanceSettings(symbols=["ETH/BTC"]), recording_context(Endpoints()))
    assert isinstance(client, BinanceDataClient)
    assert client.symbols == ["ETH/BTC"]


async def test_simulator_url_without_a_simulator_names_the_fix() -> None:
    client = BinanceDataClient(BinanceSettings(), recording_context(Endpoints()))

    with pytest.raises(LookupError, match="simulator"):
        await client.run()


async def test_many_symbols_are_spread_over_several_connections(spot: Recorded) -> None:
    listed = [s["symbol"] for s in json.loads(spot.exchange_info)["symbols"]]
    unified = [f"{s['baseAsset']}/{s['quoteAsset']}" for s in json.loads(spot.exchange_info)["symbols"]]
    server = ReplayServer(spot, sessions=[[]])

    async with running_client(server, symbols=unified[:150]) as running:
        await running.ctx.wait_until(lambda: len(running.ctx.statuses) == 150 and server.connections == 2)

        streams = [path.split("=", 1)[1].split("/") for path in server.stream_paths]
        assert [len(s) for s in streams] == [200, 100]  # depth + aggTrade per symbol, 100 symbols each
        assert streams[1][0] == f"{listed[100].lower()}@depth@100ms"
        assert {s.health for s in running.ctx.statuses} == {BookHealth.SYNCING}
