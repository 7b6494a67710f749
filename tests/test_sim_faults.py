"""Fault injection: each fault seen by a real client on 127.0.0.1, and the seeded rates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from botframe.clock import SimulatedClock
from botframe_plugins.sim.config import FaultSettings, SimSettings, SimSymbolSettings
from botframe_plugins.sim.faults import FaultKind, FaultPlan
from botframe_plugins.sim.kraken_protocol import kraken_checksum
from botframe_plugins.sim.server import SimServer

TIMEOUT = 10.0
DEPTH = "btcusdt@depth@100ms"


def _settings(**faults: Any) -> SimSettings:
    symbols = [
        SimSymbolSettings(
            symbol="BTC/USDT",
            start_price=Decimal("60000"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.00001"),
        ),
        SimSymbolSettings(
            symbol="BTC/USD",
            venue="kraken",
            start_price=Decimal("60000"),
            tick_size=Decimal("0.1"),
            lot_size=Decimal("0.00000001"),
        ),
    ]
    return SimSettings(symbols=symbols, seed=8, faults=FaultSettings(**faults))


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer(_settings(), clock=SimulatedClock())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _recv_text(ws: ClientConnection) -> str:
    raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(raw, str)
    return raw


async def _binance_barrier(ws: ClientConnection, req_id: int) -> list[str]:
    """Frames received before the answer to a LIST_SUBSCRIPTIONS (sent now) arrives."""
    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": req_id}))
    frames = []
    while True:
        raw = await _recv_text(ws)
        if raw.startswith('{"result"') and f'"id":{req_id}' in raw:
            return frames
        frames.append(raw)


async def _depth_events(sim: SimServer, ws: ClientConnection, steps: int, req_id: int) -> list[str]:
    for _ in range(steps):
        sim.step_once()
    return await _binance_barrier(ws, req_id)


async def _read_until_closed(ws: ClientConnection) -> None:
    while True:
        await asyncio.wait_for(ws.recv(), TIMEOUT)


def _ids(frames: list[str]) -> list[tuple[int, int]]:
    events = [json.loads(f)["data"] for f in frames]
    return [(e["U"], e["u"]) for e in events]


async def _binance(sim: SimServer) -> ClientConnection:
    ws = await connect(f"{sim.ws_url}/stream?streams={DEPTH}", max_queue=None, open_timeout=TIMEOUT)
    await _binance_barrier(ws, 0)
    return ws


async def test_gap_in_the_middle_breaks_the_id_chain(sim: SimServer) -> None:
    ws = await _binance(sim)
    try:
        before = _ids(await _depth_events(sim, ws, 2, 1))
        sim.inject(FaultKind.GAP)
        after = _ids(await _depth_events(sim, ws, 2, 2))
    finally:
        await ws.close()
    assert len(after) == 1
    assert after[0][0] > before[-1][1] + 1


async def test_duplicate_sends_the_same_event_twice(sim: SimServer) -> None:
    ws = await _binance(sim)
    try:
        sim.inject(FaultKind.DUPLICATE)
        frames = await _depth_events(sim, ws, 3, 1)
    finally:
        await ws.close()
    assert len(frames) == 4
    assert frames[0] == frames[1]


async def test_reorder_sends_an_event_after_the_next_one(sim: SimServer) -> None:
    ws = await _binance(sim)
    try:
        sim.inject(FaultKind.REORDER)
        ids = _ids(await _depth_events(sim, ws, 3, 1))
    finally:
        await ws.close()
    assert len(ids) == 3
    assert ids[0][0] == ids[1][1] + 1  # second step's event came first
    assert ids[2][0] == ids[0][1] + 1


async def test_corrupt_changes_one_level_size_of_a_binance_event(sim: SimServer) -> None:
    ws = await _binance(sim)
    truth = sim.model.symbol("BTC/USDT")
    wire = sim.binance.symbols["BTCUSDT"]
    try:
        sim.inject(FaultKind.CORRUPT)
        frames = await _depth_events(sim, ws, 1, 1)
    finally:
        await ws.close()
    event = json.loads(frames[0])["data"]
    after = truth.book_at(event["u"])
    true_bids = {wire.price.text(p): wire.qty.text(q) for p, q in after.bids}
    true_asks = {wire.price.text(p): wire.qty.text(q) for p, q in after.asks}
    wrong = [(p, q) for p, q in event["b"] if true_bids.get(p, "0.00000000") != q]
    wrong += [(p, q) for p, q in event["a"] if true_asks.get(p, "0.00000000") != q]
    assert len(wrong) == 1


async def test_malformed_frame_comes_before_the_real_one_and_the_stream_goes_on(sim: SimServer) -> None:
    ws = await _binance(sim)
    try:
        sim.inject(FaultKind.MALFORMED)
        frames = await _depth_events(sim, ws, 2, 1)
    finally:
        await ws.close()
    with pytest.raises(json.JSONDecodeError):
        json.loads(frames[0])
    ids = _ids(frames[1:])
    assert len(ids) == 2
    assert ids[1][0] == ids[0][1] + 1


@pytest.mark.parametrize(
    ("kind", "error"),
    [(FaultKind.DROP_CLEAN, ConnectionClosedOK), (FaultKind.DROP_ABRUPT, ConnectionClosedError)],
)
async def test_drop_closes_the_connection(sim: SimServer, kind: FaultKind, error: type[Exception]) -> None:
    ws = await _binance(sim)
    try:
        sim.inject(kind)
        sim.step_once()
        with pytest.raises(error):
            await _read_until_closed(ws)
    finally:
        await ws.close()
    if kind is FaultKind.DROP_CLEAN:
        assert ws.close_code == 1000
    else:
        assert ws.close_code == 1006  # no close frame: TCP went away


async def test_stall_holds_frames_for_stall_ms_of_the_clock() -> None:
    clock = SimulatedClock()
    server = SimServer(_settings(stall_ms=3000), clock=clock)
    await server.start()
    try:
        ws = await _binance(server)
        server.inject(FaultKind.STALL)
        start_ns = clock.time_ns()
        frames = await _depth_events(server, ws, 1, 1)
        await ws.close()
    finally:
        await server.stop()
    assert len(frames) == 1
    assert clock.time_ns() - start_ns >= 3_000_000_000


async def test_restart_closes_everything_then_listens_again_on_the_same_port() -> None:
    clock = SimulatedClock()
    server = SimServer(_settings(restart_downtime_ms=500), clock=clock)
    await server.start()
    port = server.port
    try:
        ws = await _binance(server)
        server.inject(FaultKind.RESTART)
        server.step_once()
        with pytest.raises(ConnectionClosed):
            await _read_until_closed(ws)
        assert ws.close_code == 1012
        await asyncio.wait_for(server.wait_listening(), TIMEOUT)
        again = await _binance(server)
        await again.close()
    finally:
        await server.stop()
    assert server.port == port
    assert server.counters["fault.restart"] == 1


async def _get(sim: SimServer, path: str) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(f"{sim.rest_url}{path}") as resp:
        return resp.status, json.loads(await resp.text())


@pytest.mark.parametrize(
    ("kind", "status", "code"), [(FaultKind.REST_429, 429, -1003), (FaultKind.REST_500, 500, -1001)]
)
async def test_rest_errors_then_recovery(sim: SimServer, kind: FaultKind, status: int, code: int) -> None:
    sim.inject(kind)
    first = await _get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=10")
    second = await _get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=10")
    assert first[0] == status
    assert first[1]["code"] == code
    assert second[0] == 200


async def test_stale_snapshot_is_older_than_recent_updates(sim: SimServer) -> None:
    for _ in range(40):
        sim.step_once()
    truth = sim.model.symbol("BTC/USDT")
    sim.inject(FaultKind.SNAPSHOT_STALE)
    status, body = await _get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5000")
    assert status == 200
    assert body["lastUpdateId"] < truth.last_update_id
    wire = sim.binance.symbols["BTCUSDT"]
    old = truth.book_at(body["lastUpdateId"])
    assert body["bids"] == [[wire.price.text(p), wire.qty.text(q)] for p, q in old.bids]


async def test_slow_snapshot_waits_on_the_clock(sim: SimServer) -> None:
    start_ns = sim.clock.time_ns()
    sim.inject(FaultKind.SNAPSHOT_SLOW)
    status, _ = await _get(sim, "/api/v3/depth?symbol=BTCUSDT&limit=5")
    assert status == 200
    assert sim.clock.time_ns() - start_ns >= sim.settings.faults.snapshot_slow_ms * 1_000_000


async def _kraken_barrier(ws: ClientConnection, req_id: int) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"method": "ping", "req_id": req_id}))
    frames = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT), parse_float=str)
        if frame.get("method") == "pong" and frame.get("req_id") == req_id:
            return frames
        frames.append(frame)


async def test_corrupt_kraken_update_fails_the_client_checksum(sim: SimServer) -> None:
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await ws.send(
            json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10}})
        )
        frames = await _kraken_barrier(ws, 1)
        sim.inject(FaultKind.CORRUPT)
        for _ in range(3):
            sim.step_once()
        frames += await _kraken_barrier(ws, 2)
    bids: dict[str, str] = {}
    asks: dict[str, str] = {}
    results = []
    for frame in frames:
        if frame.get("channel") != "book":
            continue
        data = frame["data"][0]
        for side, levels in ((bids, data["bids"]), (asks, data["asks"])):
            for level in levels:
                if Decimal(level["qty"]) == 0:
                    side.pop(level["price"], None)
                else:
                    side[level["price"]] = level["qty"]
        for side, best_first in ((bids, True), (asks, False)):
            for price in sorted(side, key=Decimal, reverse=best_first)[10:]:
                del side[price]
        top_asks = sorted(asks.items(), key=lambda pq: Decimal(pq[0]))
        top_bids = sorted(bids.items(), key=lambda pq: Decimal(pq[0]), reverse=True)
        results.append((frame["type"], kraken_checksum(top_asks, top_bids) == data["checksum"]))
    assert results[0] == ("snapshot", True)
    assert results[1] == ("update", False)


def test_fault_rates_are_seeded_and_independent_per_kind() -> None:
    a = FaultPlan(FaultSettings(seed=3, gap_rate=0.1))
    b = FaultPlan(FaultSettings(seed=3, gap_rate=0.1, duplicate_rate=0.5))
    draws_a = [a.fires(FaultKind.GAP) for _ in range(2000)]
    draws_b = []
    for _ in range(2000):
        draws_b.append(b.fires(FaultKind.GAP))
        b.fires(FaultKind.DUPLICATE)
    assert draws_a == draws_b
    assert 150 < sum(draws_a) < 250
    assert not any(FaultPlan(FaultSettings()).fires(kind) for kind in FaultKind for _ in range(100))


def test_injected_fault_fires_once_whatever_the_rate() -> None:
    plan = FaultPlan(FaultSettings())
    assert not plan.any_enabled
    plan.inject(FaultKind.REST_500)
    assert plan.any_enabled
    assert plan.fires(FaultKind.REST_500)
    assert not plan.fires(FaultKind.REST_500)
    assert not plan.any_enabled


async def test_kraken_gap_is_caught_by_the_next_checksum(sim: SimServer) -> None:
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await ws.send(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"]}}))
        frames = await _kraken_barrier(ws, 1)
        sim.inject(FaultKind.GAP)
        for _ in range(5):
            sim.step_once()
        frames += await _kraken_barrier(ws, 2)
    book: dict[str, dict[str, str]] = {"bids": {}, "asks": {}}
    ok = []
    for frame in frames:
        if frame.get("channel") != "book":
            continue
        data = frame["data"][0]
        for name in ("bids", "asks"):
            for level in data[name]:
                if Decimal(level["qty"]) == 0:
                    book[name].pop(level["price"], None)
                else:
                    book[name][level["price"]] = level["qty"]
            ordered = sorted(book[name], key=Decimal, reverse=name == "bids")
            book[name] = {p: book[name][p] for p in ordered[:10]}
        ok.append(kraken_checksum(list(book["asks"].items()), list(book["bids"].items())) == data["checksum"])
    assert ok[0] is True  # the snapshot
    assert False in ok[1:]
    assert sim.counters["fault.gap"] == 1


async def test_server_survives_every_fault_at_once() -> None:
    rates = {f"{kind.value}_rate": 0.05 for kind in FaultKind if kind is not FaultKind.STALL}
    server = SimServer(_settings(**rates, restart_downtime_ms=0), clock=SimulatedClock())
    await server.start()
    try:
        ws = await connect(f"{server.ws_url}/stream?streams={DEPTH}", max_queue=None)
        for _ in range(300):
            server.step_once()
            await asyncio.sleep(0)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        statuses = []
        for _ in range(40):
            await asyncio.wait_for(server.wait_listening(), TIMEOUT)
            async with (
                aiohttp.ClientSession(timeout=timeout) as http,
                http.get(f"{server.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=10") as resp,
            ):
                statuses.append(resp.status)
        await ws.close()
    finally:
        await server.stop()
    assert server.counters["steps"] == 300
    assert set(statuses) <= {200, 429, 500}
    assert 200 in statuses
    fired = {k for k in server.counters if k.startswith("fault.")}
    assert {"fault.drop_clean", "fault.restart"} & fired
