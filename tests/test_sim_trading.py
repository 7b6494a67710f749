"""The simulator's Binance trading API: signed REST over real HTTP on 127.0.0.1, matched in the model's book."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from botframe.clock import SimulatedClock
from botframe_plugins.sim.config import SimAccountSettings, SimSettings, SimSymbolSettings
from botframe_plugins.sim.model import MarketModel, SymbolSpec
from botframe_plugins.sim.server import SimServer

TIMEOUT = aiohttp.ClientTimeout(total=10)
KEY, SECRET = "sim-key-1", "sim-secret-1"
OTHER_KEY, OTHER_SECRET = "sim-key-2", "sim-secret-2"


def _settings(**kw: Any) -> SimSettings:
    return SimSettings(
        symbols=[SimSymbolSettings(symbol="BTC/USDT", start_price=Decimal("60000"), tick_size=Decimal("0.01"),
                                   lot_size=Decimal("0.00001"), min_notional=Decimal("5"))],
        seed=11,
        accounts=[
            SimAccountSettings(api_key=KEY, secret=SECRET, balances={"USDT": Decimal("100000"), "BTC": Decimal("1")}),
            SimAccountSettings(api_key=OTHER_KEY, secret=OTHER_SECRET,
                               balances={"USDT": Decimal("100000"), "BTC": Decimal("1")}),
        ],
        **kw,
    )


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer(_settings(), clock=SimulatedClock())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _signed(params: dict[str, Any], secret: str = SECRET) -> str:
    query = urlencode(params)
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


async def _call(sim: SimServer, method: str, path: str, params: dict[str, Any] | None = None, *,
                key: str | None = KEY, secret: str = SECRET, timestamp: int | None = None) -> tuple[int, Any]:
    params = dict(params or {})
    params.setdefault("timestamp", timestamp if timestamp is not None else sim.clock.time_ns() // 1_000_000)
    signed = _signed(params, secret)
    headers = {"X-MBX-APIKEY": key} if key is not None else {}
    url = f"{sim.api_url}{path}"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with http.post(url, data=signed, headers=headers) as resp:
                return resp.status, json.loads(await resp.text())
        async with http.request(method, f"{url}?{signed}", headers=headers) as resp:
            return resp.status, json.loads(await resp.text())


def _best(sim: SimServer) -> tuple[Decimal, Decimal]:
    m = sim.model.symbol("BTC/USDT")
    bid, ask = m.best_bid(), m.best_ask()
    assert bid is not None and ask is not None
    return Decimal(bid) / 100, Decimal(ask) / 100


async def test_signed_limit_order_rests_in_the_public_book(sim: SimServer) -> None:
    bid, _ask = _best(sim)
    model = sim.model.symbol("BTC/USDT")
    before = model.bids.get(int(bid * 100), 0)

    status, body = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000",
        "price": f"{bid}", "newClientOrderId": "bf-test-1"})

    assert status == 200, body
    assert body["status"] == "NEW" and body["clientOrderId"] == "bf-test-1" and body["fills"] == []
    assert model.bids[int(bid * 100)] == before + 1000  # 0.01 BTC = 1000 lots, at the back of the level
    depth_status, depth = await _call(sim, "GET", "/api/v3/depth", {"symbol": "BTCUSDT", "limit": 5}, key=None)
    assert depth_status == 200
    assert dict(depth["bids"])[f"{bid:.8f}"] == f"{Decimal(before + 1000) / 100000:.8f}"
    status, account = await _call(sim, "GET", "/api/v3/account")
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert Decimal(usdt["locked"]) == (bid * Decimal("0.01") * Decimal("1.0005")).quantize(Decimal("1e-8"))


async def test_our_order_shows_in_the_next_depth_diff_without_breaking_update_ids(sim: SimServer) -> None:
    from websockets.asyncio.client import connect

    bid, _ = _best(sim)
    async with connect(f"{sim.ws_url}/ws/btcusdt@depth@100ms", open_timeout=10, close_timeout=2) as ws:
        sim.step_once()
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await _call(sim, "POST", "/api/v3/order", {
            "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
            "price": f"{bid}"})
        sim.step_once()
        second = json.loads(await asyncio.wait_for(ws.recv(), 10))

    assert second["U"] == first["u"] + 1
    assert f"{bid:.8f}" in dict(second["b"])


async def test_marketable_order_takes_liquidity_and_prints_public_trades(sim: SimServer) -> None:
    _bid, ask = _best(sim)
    model = sim.model.symbol("BTC/USDT")
    top_size = model.asks[int(ask * 100)]

    status, body = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.05"})
    left_at_top = model.asks.get(int(ask * 100), 0)
    step = sim.step_once()

    assert status == 200, body
    assert body["status"] == "FILLED" and Decimal(body["executedQty"]) == Decimal("0.05")
    assert Decimal(body["fills"][0]["price"]) == ask
    assert sum(Decimal(f["qty"]) for f in body["fills"]) == Decimal("0.05")
    assert all(f["commissionAsset"] == "USDT" for f in body["fills"])
    ours = {f["tradeId"] for f in body["fills"]}
    published = {t.trade_id for s in step.symbols for t in s.trades}
    assert ours <= published
    assert left_at_top == max(0, top_size - 5000)


async def test_model_market_orders_fill_a_resting_order_and_balances_add_up(sim: SimServer) -> None:
    bid, _ = _best(sim)
    status, body = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.002",
        "price": f"{bid}"})
    assert status == 200
    order_id = body["orderId"]

    for _ in range(3000):
        sim.step_once()
        if sim.trading.orders[order_id].status == "FILLED":
            break
    status, order = await _call(sim, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": order_id})
    _, trades = await _call(sim, "GET", "/api/v3/myTrades", {"symbol": "BTCUSDT"})
    _, account = await _call(sim, "GET", "/api/v3/account")

    assert order["status"] == "FILLED"
    assert all(t["isMaker"] and t["isBuyer"] for t in trades)
    assert sum(Decimal(t["qty"]) for t in trades) == Decimal("0.002")
    balances = {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in account["balances"]}
    spent = sum(Decimal(t["quoteQty"]) + Decimal(t["commission"]) for t in trades)
    assert balances["BTC"] == (Decimal("1.002"), Decimal(0))
    assert balances["USDT"] == (Decimal("100000") - spent, Decimal(0))


async def test_cancel_releases_the_lock_and_removes_the_order_from_the_book(sim: SimServer) -> None:
    bid, _ = _best(sim)
    model = sim.model.symbol("BTC/USDT")
    before = model.bids.get(int(bid * 100) - 100, 0)
    await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
        "price": f"{bid - 1}", "newClientOrderId": "to-cancel"})

    status, body = await _call(sim, "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "to-cancel"})
    _, account = await _call(sim, "GET", "/api/v3/account")

    assert status == 200 and body["status"] == "CANCELED" and body["origClientOrderId"] == "to-cancel"
    assert model.bids.get(int(bid * 100) - 100, 0) == before
    usdt = next(b for b in account["balances"] if b["asset"] == "USDT")
    assert usdt == {"asset": "USDT", "free": "100000.00000000", "locked": "0.00000000"}


async def test_ioc_expires_its_rest_and_fok_expires_whole_when_it_cannot_fill(sim: SimServer) -> None:
    bid, ask = _best(sim)

    _, ioc = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "quantity": "0.01",
        "price": f"{bid}"})
    _, fok = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "FOK", "quantity": "1",
        "price": f"{ask}"})

    assert ioc["status"] == "EXPIRED" and ioc["executedQty"] == "0.00000000"
    assert fok["status"] == "EXPIRED" and fok["fills"] == []


async def test_limit_maker_that_would_take_is_rejected(sim: SimServer) -> None:
    _bid, ask = _best(sim)

    status, body = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT_MAKER", "quantity": "0.01", "price": f"{ask}"})

    assert (status, body) == (400, {"code": -2010, "msg": "Order would immediately match and take."})


async def test_orders_of_two_accounts_trade_with_each_other(sim: SimServer) -> None:
    bid, ask = _best(sim)
    price = bid + Decimal("0.01") if bid + Decimal("0.01") < ask else bid
    _, maker = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
        "price": f"{price}"}, key=OTHER_KEY, secret=OTHER_SECRET)
    assert price > bid  # our order is alone at the best bid

    _, taker = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01"})

    assert taker["status"] == "FILLED" and Decimal(taker["fills"][0]["price"]) == price
    _, maker_now = await _call(sim, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "orderId": maker["orderId"]},
                               key=OTHER_KEY, secret=OTHER_SECRET)
    assert maker_now["status"] == "FILLED"


@pytest.mark.parametrize(("params", "msg"), [
    ({"price": "60000.001", "quantity": "0.01"}, "Filter failure: PRICE_FILTER"),
    ({"price": "60000", "quantity": "0.000001"}, "Filter failure: LOT_SIZE"),
    ({"price": "100", "quantity": "0.01"}, "Filter failure: NOTIONAL"),
])
async def test_filter_violations_are_binance_minus_1013(sim: SimServer, params: dict[str, str], msg: str) -> None:
    status, body = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", **params})

    assert (status, body) == (400, {"code": -1013, "msg": msg})


async def test_insufficient_balance_is_minus_2010(sim: SimServer) -> None:
    status, body = await _call(sim, "POST", "/api/v3/order", {
        "symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "2",
        "price": "70000"})

    assert (status, body) == (400, {"code": -2010, "msg": "Account has insufficient balance for requested action."})


async def test_unknown_orders_are_minus_2011_on_cancel_and_minus_2013_on_query(sim: SimServer) -> None:
    cancel = await _call(sim, "DELETE", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope"})
    query = await _call(sim, "GET", "/api/v3/order", {"symbol": "BTCUSDT", "origClientOrderId": "nope"})

    assert cancel == (400, {"code": -2011, "msg": "Unknown order sent."})
    assert query == (400, {"code": -2013, "msg": "Order does not exist."})


async def test_wrong_key_missing_key_bad_signature_and_stale_timestamp_are_refused(sim: SimServer) -> None:
    now = sim.clock.time_ns() // 1_000_000

    wrong_key = await _call(sim, "GET", "/api/v3/account", key="who")
    no_key = await _call(sim, "GET", "/api/v3/account", key=None)
    bad_sig = await _call(sim, "GET", "/api/v3/account", secret="not-the-secret")
    stale = await _call(sim, "GET", "/api/v3/account", timestamp=now - 6000)
    ahead = await _call(sim, "GET", "/api/v3/account", timestamp=now + 1500)

    assert wrong_key == (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    assert no_key == (401, {"code": -2014, "msg": "API-key format invalid."})
    assert bad_sig == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    assert stale == (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    assert ahead[0] == 400 and ahead[1]["code"] == -1021


async def test_order_rate_limit_answers_429_minus_1015() -> None:
    server = SimServer(_settings(orders_per_10s=3), clock=SimulatedClock())
    await server.start()
    try:
        params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
                  "price": "50000"}
        answers = [await _call(server, "POST", "/api/v3/order", params) for _ in range(4)]
    finally:
        await server.stop()

    assert [a[0] for a in answers] == [200, 200, 200, 429]
    assert answers[3][1]["code"] == -1015


async def test_request_weight_limit_answers_429_minus_1003() -> None:
    server = SimServer(_settings(request_weight_per_min=45), clock=SimulatedClock())
    await server.start()
    try:
        answers = [await _call(server, "GET", "/api/v3/account") for _ in range(3)]
    finally:
        await server.stop()

    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[2][1]["code"] == -1003


async def test_duplicate_client_order_id_of_an_open_order_is_refused(sim: SimServer) -> None:
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
              "price": "50000", "newClientOrderId": "same"}
    await _call(sim, "POST", "/api/v3/order", params)

    status, body = await _call(sim, "POST", "/api/v3/order", params)

    assert (status, body) == (400, {"code": -2010, "msg": "Duplicate order sent."})


def test_same_seed_and_requests_give_the_same_market() -> None:
    def run() -> list[tuple[int, list[tuple[int, int]], list[tuple[int, int]]]]:
        model = MarketModel([SymbolSpec("BTC/USDT", Decimal("60000"), Decimal("0.01"), Decimal("0.00001"))], seed=5)
        m = model.symbol("BTC/USDT")
        out = []
        for i in range(300):
            if i % 50 == 10:
                bb = m.best_bid()
                assert bb is not None
                m.rest_own(True, bb, 500, key=i)
            if i % 50 == 30:
                m.take(False, 700, None)
            st = model.step()
            for s in st.symbols:
                out.append((s.last_update_id, s.bids, s.asks))
        return out

    assert run() == run()


def test_model_cancels_never_remove_outside_lots() -> None:
    model = MarketModel([SymbolSpec("BTC/USDT", Decimal("60000"), Decimal("0.01"), Decimal("0.00001"))], seed=9)
    m = model.symbol("BTC/USDT")
    bb = m.best_bid()
    assert bb is not None
    price = bb - 30  # far from the touch: market orders rarely reach it, cancels often do
    m.rest_own(True, price, 777, key=1)

    for _ in range(500):
        model.step()
        assert m.bids.get(price, 0) >= m.own_lots_at(True, price)
    filled = sum(f.qty_lots for f in m.own_fills)
    assert m.own_lots_at(True, price) + filled == 777
