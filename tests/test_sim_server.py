"""The simulator's Binance spot protocol over a real WebSocket and real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from botframe.clock import SimulatedClock
from botframe_plugins.sim.config import SimSettings, SimSymbolSettings
from botframe_plugins.sim.server import SimServer

TIMEOUT = 10.0


def _settings(**kw: Any) -> SimSettings:
    symbols = [
        SimSymbolSettings(
            symbol="BTC/USDT",
            start_price=Decimal("60000"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.00001"),
        ),
        SimSymbolSettings(
            symbol="ETH/USDT",
            start_price=Decimal("3000"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.0001"),
        ),
    ]
    return SimSettings(symbols=symbols, seed=3, **kw)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer(_settings(), clock=SimulatedClock())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _connect(url: str) -> connect:
    # Unbounded client-side buffer: a client that stops reading with frames still queued would
    # otherwise pause its socket and wait close_timeout for the server's close frame on exit.
    return connect(url, max_queue=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(raw, str)  # Binance sends text frames
    obj: dict[str, Any] = json.loads(raw)
    return obj


async def _get(url: str) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
        return resp.status, json.loads(await resp.text())


async def _until_id(ws: ClientConnection, stream: str, target_u: int) -> list[dict[str, Any]]:
    """Read frames until the depth stream reaches update id ``target_u``; return that stream's payloads."""
    events: list[dict[str, Any]] = []
    while not events or events[-1]["u"] < target_u:
        frame = await _recv(ws)
        if frame.get("stream") == stream:
            events.append(frame["data"])
    return events


async def test_combined_stream_delivers_depth_and_trades_in_binance_shape(sim: SimServer) -> None:
    url = f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@aggTrade"
    async with _connect(url) as ws:
        for _ in range(100):
            sim.step_once()
        frames = [await _recv(ws) for _ in range(20)]
        while not any(f["stream"] == "btcusdt@aggTrade" for f in frames):
            frames.append(await _recv(ws))

    depth = next(f for f in frames if f["stream"] == "btcusdt@depth@100ms")["data"]
    assert list(depth) == ["e", "E", "s", "U", "u", "b", "a"]
    assert depth["e"] == "depthUpdate"
    assert depth["s"] == "BTCUSDT"
    for price, qty in depth["b"] + depth["a"]:
        assert len(price.split(".")[1]) == 8
        assert len(qty.split(".")[1]) == 8
    trade = next(f for f in frames if f["stream"] == "btcusdt@aggTrade")["data"]
    assert list(trade) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    assert trade["e"] == "aggTrade"
    assert isinstance(trade["m"], bool)


async def test_book_rebuilt_by_binance_procedure_matches_the_true_book(sim: SimServer) -> None:
    stream = "btcusdt@depth@100ms"
    truth = sim.model.symbol("BTC/USDT")
    wire = sim.binance.symbols["BTCUSDT"]
    async with _connect(f"{sim.ws_url}/stream?streams={stream}") as ws:
        # 1. buffer events from the stream
        for _ in range(5):
            sim.step_once()
        buffered = await _until_id(ws, stream, truth.last_update_id)
        # 2. snapshot; it must not be older than the first buffered event
        status, snap = await _get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000")
        assert status == 200
        assert snap["lastUpdateId"] >= buffered[0]["U"]
        for _ in range(30):
            sim.step_once()
        buffered += await _until_id(ws, stream, truth.last_update_id)

    bids = dict(snap["bids"])
    asks = dict(snap["asks"])
    last = snap["lastUpdateId"]
    applied = [e for e in buffered if e["u"] > last]  # 3. drop what the snapshot already has
    assert applied[0]["U"] <= last + 1 <= applied[0]["u"]  # 4. the bridge
    for event in applied:
        assert event["U"] == last + 1 or event is applied[0]  # 5. contiguous
        for side, levels in ((bids, event["b"]), (asks, event["a"])):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        last = event["u"]

    expected = truth.book_at(last)
    assert bids == {wire.price.text(p): wire.qty.text(q) for p, q in expected.bids}
    assert asks == {wire.price.text(p): wire.qty.text(q) for p, q in expected.asks}


async def test_live_subscribe_on_ws_is_acknowledged_and_streams_raw_payloads(sim: SimServer) -> None:
    async with _connect(f"{sim.ws_url}/ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": 1}))
        assert await _recv(ws) == {"result": None, "id": 1}
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        assert await _recv(ws) == {"result": ["ethusdt@depth@100ms"], "id": 2}
        sim.step_once()
        sim.step_once()
        payload = await _recv(ws)
    assert payload["e"] == "depthUpdate"
    assert payload["s"] == "ETHUSDT"


async def test_bad_method_frame_gets_binance_error_and_connection_stays_open(sim: SimServer) -> None:
    async with _connect(f"{sim.ws_url}/ws") as ws:
        await ws.send("{not json")
        error = await _recv(ws)
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["BTC USDT"], "id": 7}))
        invalid = await _recv(ws)
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 8}))
        ok = await _recv(ws)
    assert error["error"]["code"] == 3
    assert invalid["error"]["code"] == 2
    assert invalid["id"] == 7
    assert ok == {"result": None, "id": 8}


async def test_late_client_gets_only_newer_diffs(sim: SimServer) -> None:
    stream = "btcusdt@depth@100ms"
    for _ in range(20):
        sim.step_once()
    id_before_connect = sim.model.symbol("BTC/USDT").last_update_id
    async with _connect(f"{sim.ws_url}/stream?streams={stream}") as ws:
        # the connection is registered once the handshake completes; one round trip makes sure
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        await _recv(ws)
        for _ in range(3):
            sim.step_once()
        events = await _until_id(ws, stream, sim.model.symbol("BTC/USDT").last_update_id)
    assert events[0]["U"] == id_before_connect + 1


async def test_unknown_symbol_gets_binance_error_json(sim: SimServer) -> None:
    status, body = await _get(f"{sim.rest_url}/api/v3/depth?symbol=NOPEUSDT&limit=10")
    assert status == 400
    assert body == {"code": -1121, "msg": "Invalid symbol."}


async def test_depth_snapshot_honours_limit(sim: SimServer) -> None:
    status, body = await _get(f"{sim.rest_url}/api/v3/depth?symbol=ETHUSDT&limit=5")
    assert status == 200
    assert len(body["bids"]) == 5
    assert len(body["asks"]) == 5
    assert body["lastUpdateId"] == sim.model.symbol("ETH/USDT").last_update_id
    assert float(body["bids"][0][0]) < float(body["asks"][0][0])


async def test_exchange_info_lists_symbols_with_tick_lot_and_notional_filters(sim: SimServer) -> None:
    status, body = await _get(f"{sim.rest_url}/api/v3/exchangeInfo")
    assert status == 200
    btc = next(s for s in body["symbols"] if s["symbol"] == "BTCUSDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert btc["status"] == "TRADING"
    assert btc["baseAsset"] == "BTC"
    assert btc["quoteAsset"] == "USDT"
    assert Decimal(filters["PRICE_FILTER"]["tickSize"]) == Decimal("0.01")
    assert Decimal(filters["LOT_SIZE"]["stepSize"]) == Decimal("0.00001")
    assert Decimal(filters["NOTIONAL"]["minNotional"]) == Decimal("5")
    status, one = await _get(f"{sim.rest_url}/api/v3/exchangeInfo?symbol=ETHUSDT")
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]


async def test_server_time_comes_from_the_injected_clock(sim: SimServer) -> None:
    status, body = await _get(f"{sim.rest_url}/api/v3/time")
    assert status == 200
    assert body == {"serverTime": sim.clock.time_ns() // 1_000_000}


async def test_unknown_rest_path_is_404(sim: SimServer) -> None:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{sim.rest_url}/nope") as resp:
        assert resp.status == 404


async def test_market_loop_paces_steps_with_the_injected_clock() -> None:
    clock = SimulatedClock()
    server = SimServer(_settings(update_interval_ms=100, wait_for_clients=True), clock=clock)
    await server.start()
    start_ns = clock.time_ns()
    market = asyncio.create_task(server.run_market())
    try:
        async with _connect(f"{server.ws_url}/stream?streams=btcusdt@depth@100ms") as ws:
            frames = [await _recv(ws) for _ in range(10)]
    finally:
        market.cancel()
        await asyncio.gather(market, return_exceptions=True)
        await server.stop()
    steps = server.counters["steps"]
    # each step follows one interval of sleep; a cancel may land between a sleep and its step
    assert steps * 100_000_000 <= clock.time_ns() - start_ns <= (steps + 1) * 100_000_000
    stamps = [f["data"]["E"] for f in frames]
    assert stamps == sorted(stamps)


def test_same_seed_gives_byte_identical_binance_frames() -> None:
    def frames(seed: int) -> list[bytes]:
        server = SimServer(_settings().model_copy(update={"seed": seed}), clock=SimulatedClock())
        wanted = {f"{s}@{k}": 1 for s in ("btcusdt", "ethusdt") for k in ("depth@100ms", "aggTrade", "bookTicker")}
        out: list[bytes] = []
        for _ in range(200):
            step = server.model.step(ts_ns=server.clock.time_ns())
            for payloads in server.binance.stream_payloads(step, wanted).values():
                out.extend(payloads)
        return out

    assert frames(3) == frames(3)
    assert frames(3) != frames(4)


async def test_slow_depth_stream_merges_ten_steps_and_stays_contiguous(sim: SimServer) -> None:
    truth = sim.model.symbol("BTC/USDT")
    wire = sim.binance.symbols["BTCUSDT"]
    status, snap = await _get(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert status == 200
    async with _connect(f"{sim.ws_url}/ws/btcusdt@depth") as ws:
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        await _recv(ws)
        for _ in range(30):
            sim.step_once()
        events = []
        while not events or events[-1]["u"] < truth.last_update_id:
            events.append(await _recv(ws))
    bids = dict(snap["bids"])
    last = snap["lastUpdateId"]
    for event in events:
        assert event["U"] <= last + 1 <= event["u"]
        for price, qty in event["b"]:
            if Decimal(qty) == 0:
                bids.pop(price, None)
            else:
                bids[price] = qty
        last = event["u"]
    assert 3 <= len(events) <= 4  # one per 10 steps of 100 ms
    assert bids == {wire.price.text(p): wire.qty.text(q) for p, q in truth.book_at(last).bids}


async def test_book_ticker_and_partial_depth_show_the_true_top(sim: SimServer) -> None:
    truth = sim.model.symbol("ETH/USDT")
    wire = sim.binance.symbols["ETHUSDT"]
    streams = "ethusdt@bookTicker/ethusdt@depth5@100ms"
    async with _connect(f"{sim.ws_url}/stream?streams={streams}") as ws:
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        await _recv(ws)
        sim.step_once()
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        frames = []
        while (frame := await _recv(ws)).get("id") != 2:
            frames.append(frame)
    by_stream = {f["stream"]: f["data"] for f in frames}
    partial = by_stream["ethusdt@depth5@100ms"]
    assert partial["lastUpdateId"] == truth.last_update_id
    assert partial["bids"] == [[wire.price.text(p), wire.qty.text(q)] for p, q in truth.top_bids(5)]
    assert partial["asks"] == [[wire.price.text(p), wire.qty.text(q)] for p, q in truth.top_asks(5)]
    if "ethusdt@bookTicker" in by_stream:  # sent only when the top changed in this step
        ticker = by_stream["ethusdt@bookTicker"]
        best_bid = truth.top_bids(1)[0]
        assert ticker["b"] == wire.price.text(best_bid[0])
        assert ticker["B"] == wire.qty.text(best_bid[1])
