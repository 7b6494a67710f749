"""The simulator's user data: listen keys over REST with their stream, and the WebSocket API subscription."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from test_sim_trading import KEY, SECRET, _call, _settings
from websockets.asyncio.client import ClientConnection, connect

from botframe.clock import SimulatedClock
from botframe_plugins.sim.server import SimServer

TIMEOUT = 10.0


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer(_settings(), clock=SimulatedClock())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _recv(ws: ClientConnection) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
    obj: dict[str, Any] = json.loads(raw)
    return obj


async def _listen_key(sim: SimServer, method: str = "POST", key: str = "") -> tuple[int, Any]:
    url = f"{sim.api_url}/api/v3/userDataStream" + (f"?listenKey={key}" if key else "")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http, \
            http.request(method, url, headers={"X-MBX-APIKEY": KEY}) as resp:
        return resp.status, json.loads(await resp.text())


def _ws_subscribe(sim: SimServer, secret: str = SECRET) -> str:
    params: dict[str, Any] = {"apiKey": KEY, "timestamp": sim.clock.time_ns() // 1_000_000}
    query = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return json.dumps({"id": "1", "method": "userDataStream.subscribe.signature", "params": params})


async def test_listen_key_stream_delivers_execution_reports_and_balances(sim: SimServer) -> None:
    status, body = await _listen_key(sim)
    assert status == 200
    async with connect(f"{sim.ws_url}/ws/{body['listenKey']}", open_timeout=TIMEOUT, close_timeout=2) as ws:
        await _call(sim, "POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
            "price": "50000", "newClientOrderId": "ud-1"})
        report = await _recv(ws)
        position = await _recv(ws)

    assert report["e"] == "executionReport"
    assert (report["c"], report["x"], report["X"], report["S"], report["o"]) == ("ud-1", "NEW", "NEW", "BUY", "LIMIT")
    assert report["q"] == "0.01000000" and report["p"] == "50000.00000000"
    assert position["e"] == "outboundAccountPosition"
    assert {b["a"] for b in position["B"]} == {"USDT"}


async def test_listen_key_keepalive_and_close_follow_binance(sim: SimServer) -> None:
    _, body = await _listen_key(sim)
    key = body["listenKey"]

    keepalive = await _listen_key(sim, "PUT", key)
    closed = await _listen_key(sim, "DELETE", key)
    again = await _listen_key(sim, "PUT", key)

    assert keepalive == (200, {})
    assert closed == (200, {})
    assert again == (400, {"code": -1125, "msg": "This listenKey does not exist."})


async def test_ws_api_signature_subscription_receives_events_wrapped_with_its_id(sim: SimServer) -> None:
    async with connect(f"{sim.ws_url}/ws-api/v3", open_timeout=TIMEOUT, close_timeout=2) as ws:
        await ws.send(_ws_subscribe(sim))
        ack = await _recv(ws)
        await _call(sim, "POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01", "newClientOrderId": "ud-2"})
        frames = [await _recv(ws) for _ in range(3)]

    assert ack["status"] == 200 and isinstance(ack["result"]["subscriptionId"], int)
    sid = ack["result"]["subscriptionId"]
    assert all(f["subscriptionId"] == sid for f in frames)
    events = [f["event"] for f in frames]
    assert [(e["e"], e.get("x")) for e in events[:2]] == [("executionReport", "NEW"), ("executionReport", "TRADE")]
    trade = events[1]
    assert trade["c"] == "ud-2" and trade["m"] is False and trade["N"] == "USDT" and trade["t"] > 0


async def test_ws_api_subscription_with_a_bad_signature_is_refused(sim: SimServer) -> None:
    async with connect(f"{sim.ws_url}/ws-api/v3", open_timeout=TIMEOUT, close_timeout=2) as ws:
        await ws.send(_ws_subscribe(sim, secret="wrong"))
        answer = await _recv(ws)

    assert answer == {"id": "1", "status": 400,
                      "error": {"code": -1022, "msg": "Signature for this request is not valid."}}


async def test_maker_fills_from_the_market_reach_the_user_stream(sim: SimServer) -> None:
    model = sim.model.symbol("BTC/USDT")
    bid = model.best_bid()
    assert bid is not None
    async with connect(f"{sim.ws_url}/ws-api/v3", open_timeout=TIMEOUT, close_timeout=2) as ws:
        await ws.send(_ws_subscribe(sim))
        await _recv(ws)
        _, order = await _call(sim, "POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.002",
            "price": f"{bid / 100:.2f}"})
        for _ in range(3000):
            sim.step_once()
            if sim.trading.orders[order["orderId"]].status == "FILLED":
                break
        events: list[dict[str, Any]] = []
        while not any(e.get("X") == "FILLED" for e in events):
            events.append((await _recv(ws))["event"])

    trades = [e for e in events if e.get("x") == "TRADE"]
    assert trades and all(e["m"] is True for e in trades)
    assert trades[-1]["z"] == "0.00200000"
