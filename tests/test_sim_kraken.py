"""The simulator's Kraken WS v2 protocol over a real WebSocket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from botframe.clock import SimulatedClock
from botframe_plugins.sim.config import SimSettings, SimSymbolSettings
from botframe_plugins.sim.kraken_protocol import kraken_checksum
from botframe_plugins.sim.server import SimServer

TIMEOUT = 10.0


def _settings(**kw: Any) -> SimSettings:
    symbols = [
        SimSymbolSettings(
            symbol="BTC/USD",
            venue="kraken",
            start_price=Decimal("60000"),
            tick_size=Decimal("0.1"),
            lot_size=Decimal("0.00000001"),
        ),
        SimSymbolSettings(
            symbol="ETH/USD",
            venue="kraken",
            start_price=Decimal("3000"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.00000001"),
        ),
    ]
    return SimSettings(symbols=symbols, seed=5, **kw)


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
    obj: dict[str, Any] = json.loads(raw, parse_float=str)  # keep the wire text of numbers
    return obj


async def _until_pong(ws: ClientConnection, req_id: int) -> list[dict[str, Any]]:
    """Everything the server sent before answering our ping: a barrier, since v2 has no sequence."""
    await ws.send(json.dumps({"method": "ping", "req_id": req_id}))
    frames = []
    while True:
        frame = await _recv(ws)
        if frame.get("method") == "pong" and frame.get("req_id") == req_id:
            return frames
        frames.append(frame)


class _ClientBook:
    """A Kraken v2 book kept by the documented rules, on wire text."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def apply(self, data: dict[str, Any]) -> None:
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for level in levels:
                if Decimal(level["qty"]) == 0:
                    side.pop(level["price"], None)
                else:
                    side[level["price"]] = level["qty"]
        # Kraken sends no delete for levels pushed out of the subscribed depth: truncate.
        for side, best_first in ((self.bids, True), (self.asks, False)):
            for price in sorted(side, key=Decimal, reverse=best_first)[self.depth :]:
                del side[price]

    def top(self, side: str) -> list[tuple[str, str]]:
        book = self.bids if side == "bids" else self.asks
        return [(p, book[p]) for p in sorted(book, key=Decimal, reverse=side == "bids")]

    def checksum(self) -> int:
        return kraken_checksum(self.top("asks")[:10], self.top("bids")[:10])


def test_checksum_reproduces_kraken_docs_and_state_vectors(shared_data: Path) -> None:
    vectors = json.loads((shared_data / "kraken" / "v1_checksum_state_vectors.json").read_text())
    for vector in vectors:
        asks = [(p, q) for p, q, *_ in vector["asks"]]
        bids = [(p, q) for p, q, *_ in vector["bids"]]
        assert kraken_checksum(asks, bids) == vector["expected"]


async def test_subscribe_book_gets_ack_then_snapshot_with_matching_checksum(sim: SimServer) -> None:
    async with connect(sim.kraken_url, max_queue=None) as ws:
        status = await _recv(ws)
        await ws.send(
            json.dumps(
                {
                    "method": "subscribe",
                    "req_id": 3,
                    "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
                }
            )
        )
        ack = await _recv(ws)
        snap = await _recv(ws)

    assert status["channel"] == "status"
    assert status["data"][0]["system"] == "online"
    assert ack["success"] is True
    assert ack["req_id"] == 3
    assert ack["result"] == {"channel": "book", "depth": 10, "snapshot": True, "symbol": "BTC/USD"}
    assert snap["channel"] == "book"
    assert snap["type"] == "snapshot"
    data = snap["data"][0]
    assert len(data["bids"]) == 10
    assert len(data["asks"]) == 10
    book = _ClientBook(10)
    book.apply(data)
    assert book.checksum() == data["checksum"]
    truth = sim.model.symbol("BTC/USD", venue="kraken")
    assert [p for p, _ in book.top("bids")] == [f"{Decimal(p) / 10:.1f}" for p, _ in truth.top_bids(10)]


@pytest.mark.parametrize("depth", [10, 25])
async def test_client_book_follows_updates_with_valid_checksums_and_matches_truth(
    sim: SimServer, depth: int
) -> None:
    truth = sim.model.symbol("BTC/USD", venue="kraken")
    price_text = sim.kraken.symbols["BTC/USD"].price.text
    qty_text = sim.kraken.symbols["BTC/USD"].qty.text
    book = _ClientBook(depth)
    updates = 0
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await ws.send(
            json.dumps(
                {"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": depth}}
            )
        )
        for frame in await _until_pong(ws, 1):
            if frame.get("channel") == "book":
                book.apply(frame["data"][0])
        for step in range(200):
            sim.step_once()
            for frame in await _until_pong(ws, step + 2):
                if frame.get("channel") != "book":
                    continue
                data = frame["data"][0]
                book.apply(data)
                assert book.checksum() == data["checksum"]
                updates += 1
            assert book.top("bids") == [(price_text(p), qty_text(q)) for p, q in truth.top_bids(depth)]
            assert book.top("asks") == [(price_text(p), qty_text(q)) for p, q in truth.top_asks(depth)]
    assert updates > 150


async def test_trade_frames_carry_side_price_qty_and_ids(sim: SimServer) -> None:
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await ws.send(
            json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["ETH/USD"]}})
        )
        await _until_pong(ws, 1)
        for _ in range(100):
            sim.step_once()
        frames = [f for f in await _until_pong(ws, 2) if f.get("channel") == "trade"]
    trades = [t for f in frames for t in f["data"]]
    assert trades
    assert {f["type"] for f in frames} == {"update"}
    first = trades[0]
    assert list(first) == ["symbol", "side", "price", "qty", "ord_type", "trade_id", "timestamp"]
    assert first["symbol"] == "ETH/USD"
    assert {t["side"] for t in trades} <= {"buy", "sell"}
    assert [t["trade_id"] for t in trades] == list(range(first["trade_id"], first["trade_id"] + len(trades)))


async def test_late_trade_subscriber_gets_a_snapshot_of_recent_trades(sim: SimServer) -> None:
    for _ in range(200):
        sim.step_once()
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await ws.send(
            json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"]}})
        )
        frames = [f for f in await _until_pong(ws, 1) if f.get("channel") == "trade"]
    assert [f["type"] for f in frames] == ["snapshot"]
    assert 0 < len(frames[0]["data"]) <= 50


async def test_heartbeat_about_once_a_second_while_subscribed(sim: SimServer) -> None:
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await _recv(ws)  # status
        for _ in range(30):  # 3 s; no subscription yet
            sim.step_once()
        idle = [f for f in await _until_pong(ws, 1) if f.get("channel") == "heartbeat"]
        await ws.send(
            json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["BTC/USD"]}})
        )
        await _until_pong(ws, 2)
        for _ in range(30):
            sim.step_once()
        beats = [f for f in await _until_pong(ws, 3) if f.get("channel") == "heartbeat"]
    assert idle == []
    assert beats == [{"channel": "heartbeat"}] * 3


async def test_bad_requests_get_kraken_errors(sim: SimServer) -> None:
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await _recv(ws)
        await ws.send(
            json.dumps(
                {"method": "subscribe", "req_id": 1, "params": {"channel": "book", "symbol": ["DOGE/EUR"]}}
            )
        )
        unknown = await _recv(ws)
        await ws.send(
            json.dumps(
                {
                    "method": "subscribe",
                    "req_id": 2,
                    "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 7},
                }
            )
        )
        bad_depth = await _recv(ws)
        await ws.send("not json")
        malformed = await _recv(ws)
    assert unknown["success"] is False
    assert unknown["error"] == "Currency pair not supported DOGE/EUR"
    assert unknown["symbol"] == "DOGE/EUR"
    assert bad_depth["success"] is False
    assert bad_depth["req_id"] == 2
    assert malformed["success"] is False


async def test_instrument_channel_gives_precisions_for_checksums(sim: SimServer) -> None:
    async with connect(sim.kraken_url, max_queue=None) as ws:
        await ws.send(json.dumps({"method": "subscribe", "params": {"channel": "instrument"}}))
        frames = await _until_pong(ws, 1)
    snap = next(f for f in frames if f.get("channel") == "instrument")
    pairs = {p["symbol"]: p for p in snap["data"]["pairs"]}
    assert pairs["BTC/USD"]["price_precision"] == 1
    assert pairs["BTC/USD"]["qty_precision"] == 8
    assert pairs["ETH/USD"]["price_precision"] == 2
