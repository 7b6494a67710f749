"""The replay server: recorded frames and REST bodies served exactly as the exchange sent them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect

from botframe.clock import SimulatedClock
from botframe_plugins.sim.replay import (
    CaptureError,
    ReplayServer,
    main,
    parse_capture,
    read_capture,
    sibling_rest_captures,
)

TIMEOUT = 10.0
BINANCE_WS = "binance/BINANCE.ws.1.0.txt"
BINANCE_DEPTH = "binance/BINANCE.http.0.0.rest_depth_snapshots.txt"


def _recorded(path: Path, marker: str) -> list[tuple[str, str]]:
    """``(url, body)`` of each recorded line with ``marker`` (`` -> `` for REST), read independently."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if marker in line:
            head, _, body = line.partition(": ")
            out.append((head.split(" ")[0], body))
    return out


def _recorded_frames(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split(": ", 1)[1] for line in lines if line[:1].isdigit()]


@pytest.fixture
async def binance(shared_data: Path) -> AsyncIterator[ReplayServer]:
    server = ReplayServer(shared_data / BINANCE_WS, rest_captures=[shared_data / BINANCE_DEPTH])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _recv(ws: ClientConnection) -> str:
    raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(raw, str)
    return raw


async def test_client_receives_every_recorded_frame_in_order(binance: ReplayServer, shared_data: Path) -> None:
    expected = _recorded_frames(shared_data / BINANCE_WS)
    target = binance.capture.transcripts[0].target
    async with connect(f"{binance.url}{target}", max_queue=None) as ws:
        got = [await _recv(ws) for _ in range(len(expected))]
    assert len(expected) == 265
    assert got == expected


async def test_recorded_depth_url_returns_the_recorded_body(binance: ReplayServer, shared_data: Path) -> None:
    recorded = _recorded(shared_data / BINANCE_DEPTH, " -> ")
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for url, body in recorded:
            path = url.split("api.binance.com", 1)[1]
            async with http.get(f"{binance.rest_url}{path}") as resp:
                assert resp.status == 200
                assert await resp.text() == body
        # query parameters in another order name the same recorded request
        async with http.get(f"{binance.rest_url}/api/v3/depth?limit=1000&symbol=NKNUSDT") as resp:
            assert resp.status == 200
        async with http.get(f"{binance.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1000") as resp:
            assert resp.status == 404
    assert len(recorded) == 4


async def test_recorded_pace_follows_receive_timestamps_on_the_clock(shared_data: Path) -> None:
    clock = SimulatedClock()
    server = ReplayServer(shared_data / BINANCE_WS, pace="recorded", clock=clock)
    await server.start()
    exchanges = server.capture.transcripts[0].exchanges
    start_ns = clock.time_ns()
    try:
        async with connect(server.url, max_queue=None) as ws:
            for _ in exchanges:
                await _recv(ws)
    finally:
        await server.stop()
    span_s = exchanges[-1].ts - exchanges[0].ts
    assert (clock.time_ns() - start_ns) / 1e9 == pytest.approx(span_s, abs=1e-3)


async def test_frames_wait_for_a_client_that_must_subscribe(shared_data: Path) -> None:
    path = shared_data / "kraken" / "KRAKEN.ws.48.0.trade_v1.txt"
    server = ReplayServer(path, close_at_end=True)
    await server.start()
    transcript = server.capture.transcripts[0]
    try:
        async with connect(server.url, max_queue=None) as ws:
            await ws.send(transcript.exchanges[0].payload)
            got = [msg async for msg in ws]
    finally:
        await server.stop()
    assert transcript.exchanges[0].sender == "client"
    assert got == transcript.server_frames


def test_parser_reads_every_line_kind_and_skips_unknown_ones() -> None:
    capture = parse_capture(
        [
            "wss://x.test/ws <-> 1.0\n",
            'wss://x.test/ws <- 1.5: {"op":"subscribe"}\n',
            '2.0: {"a": "b -> c"}\n',
            'https://x.test/api?b=2&a=1 -> 3.0: {"ok":true}\n',
            "configuration: {}\n",
            "\n",
        ]
    )
    transcript = capture.transcripts[0]
    assert transcript.url == "wss://x.test/ws"
    assert [(e.sender, e.payload) for e in transcript.exchanges] == [
        ("client", '{"op":"subscribe"}'),
        ("server", '{"a": "b -> c"}'),
    ]
    assert capture.rest == {"/api?a=1&b=2": ['{"ok":true}']}
    assert capture.skipped_lines == 1


def test_sibling_rest_captures_belong_to_the_same_session(shared_data: Path) -> None:
    names = [p.name for p in sibling_rest_captures(shared_data / BINANCE_WS)]
    assert names == ["BINANCE.0.rest_exchangeInfo.txt", "BINANCE.http.0.0.rest_depth_snapshots.txt"]


def test_missing_capture_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such capture file"):
        read_capture(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("configuration: {}\n")
    with pytest.raises(CaptureError, match="no recorded frames"):
        ReplayServer(empty)


async def test_main_serves_until_cancelled(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ready: asyncio.Queue[ReplayServer] = asyncio.Queue()
    task = asyncio.create_task(main([str(shared_data / BINANCE_WS)], on_ready=ready.put_nowait))
    server = await asyncio.wait_for(ready.get(), TIMEOUT)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{server.rest_url}/api/v3/exchangeInfo") as resp,
    ):
        assert resp.status == 200  # found through the sibling REST captures
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.url in capsys.readouterr().out


async def test_main_reports_a_missing_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = await main([str(tmp_path / "missing.txt")])
    assert status == 2
    assert "no such capture file" in capsys.readouterr().err
