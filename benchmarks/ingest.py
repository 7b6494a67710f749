"""Frames per second through one Binance connection: WebSocket receive, decode, sync checks, book apply.

A local server in a separate process plays Binance spot: it answers ``exchangeInfo`` and the depth
snapshot over HTTP, and on the combined stream it writes small ``depthUpdate`` frames (1-3 levels, as in
the real captures, contiguous ``U``/``u``) as fast as the socket takes them, pre-framed so that the
server is never the bottleneck. The client is the real :class:`BinanceDataClient` with a minimal engine
side that applies every ``BookDelta`` to an :class:`~botframe.book.L2Book`. The clock starts when the
book goes LIVE and stops at the last frame.

For comparison, the same frames are first received by a bare :class:`ResilientWebSocket` whose handler
only counts (the transport's own ceiling).

Run: ``python benchmarks/ingest.py [--frames N]`` (default 300000; target: 100,000 frames/s or more).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import struct
import time
from collections import Counter
from typing import Any

import structlog
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from botframe.book import L2Book
from botframe.clock import LiveClock
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason
from botframe.streams import ResilientWebSocket
from botframe.venues import Endpoints, Instrument
from botframe_plugins.binance.config import BinanceSettings
from botframe_plugins.binance.data import BinanceDataClient

__all__ = ["main"]

SYMBOL = "BTCUSDT"
TEMPLATE = (
    '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1700000000000,"s":"BTCUSDT",'
    '"U":%d,"u":%d,"b":[%s],"a":[%s]}}'
)
CHUNK = 2000


def _ws_frame(payload: bytes) -> bytes:
    """An unmasked server-to-client text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    return bytes((0x81, 126)) + struct.pack("!H", n) + payload


def _levels(rng: random.Random, side: int, count: int) -> str:
    out = []
    for _ in range(count):
        ticks = 10_000 + side * (1 + int(rng.expovariate(1 / 20)))
        size = "0.00000000" if rng.random() < 0.25 else f"{rng.uniform(0.001, 5):.8f}"
        out.append(f'["{ticks / 100:.8f}","{size}"]')
    return ",".join(out)


def _chunk(rng: random.Random, first_id: int, n: int) -> bytes:
    frames = []
    for i in range(first_id, first_id + n):
        bids = _levels(rng, -1, rng.randint(0, 2))
        asks = _levels(rng, 1, rng.randint(0 if bids else 1, 1))
        frames.append(_ws_frame((TEMPLATE % (i, i, bids, asks)).encode()))
    return b"".join(frames)


def _exchange_info() -> bytes:
    return json.dumps({"symbols": [{
        "symbol": SYMBOL, "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01000000"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.00001000"}],
    }]}).encode()


def _snapshot(last_update_id: int) -> bytes:
    bids = [[f"{(10_000 - i) / 100:.8f}", "1.00000000"] for i in range(1, 1001)]
    asks = [[f"{(10_000 + i) / 100:.8f}", "1.00000000"] for i in range(1, 1001)]
    return json.dumps({"lastUpdateId": last_update_id, "bids": bids, "asks": asks}).encode()


def serve_forever(port_out: Any, frames: int) -> None:
    """The server process: REST answers plus, per connection, diff 1, then (after a snapshot) the rest."""
    snapshot_served = asyncio.Event()

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/stream"):
            return None
        body = _exchange_info() if "exchangeInfo" in request.path else _snapshot(1)
        if "depth" in request.path:
            snapshot_served.set()
        return Response(200, "OK", Headers({"Content-Type": "application/json",
                                             "Content-Length": str(len(body))}), body)

    # Built before the first client connects, so generating frames never limits the rate measured.
    rng = random.Random(7)
    first = _chunk(rng, 1, 1)
    chunks = [_chunk(rng, start, min(CHUNK, frames - start + 1)) for start in range(2, frames + 1, CHUNK)]

    async def stream(ws: ServerConnection) -> None:
        transport = ws.transport
        transport.write(first)
        if "bare" not in (ws.request.path if ws.request else ""):
            await snapshot_served.wait()
            snapshot_served.clear()
        for chunk in chunks:
            transport.write(chunk)
            await ws.drain()  # the connection's own flow control (write_limit below)
        await ws.wait_closed()

    async def run() -> None:
        async with serve(stream, "127.0.0.1", 0, process_request=process_request, compression=None,
                         write_limit=4_000_000) as server:
            port_out.put(server.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(run())


class BenchContext:
    """Just enough engine: apply book events to an L2Book, note health, count."""

    def __init__(self, endpoints: Endpoints, frames: int) -> None:
        self.venue = "binance"
        self.clock = LiveClock()
        self.log: structlog.typing.FilteringBoundLogger = structlog.get_logger("bench")
        self.endpoints = endpoints
        self.books: dict[str, L2Book] = {}
        self.counts: Counter[str] = Counter()
        self.frames = frames
        self.live_at = 0.0
        self.done_at = 0.0
        self.done = asyncio.Event()
        self.deltas = 0

    def book(self, symbol: str) -> L2Book:
        if symbol not in self.books:
            self.books[symbol] = L2Book(self.venue, symbol)
        return self.books[symbol]

    def publish(self, event: Event) -> None:
        if type(event) is BookDelta:
            book = self.book(event.symbol)
            book.apply_delta(event)
            self.deltas += 1
            if event.last_seq == self.frames:
                self.done_at = time.perf_counter()
                self.done.set()
        elif type(event) is BookSnapshot:
            self.book(event.symbol).apply_snapshot(event)

    def set_health(self, symbol: str, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        self.book(symbol).set_health(health, reason, self.clock.time_ns(), detail)
        if health is BookHealth.LIVE and not self.live_at:
            self.live_at = time.perf_counter()

    def add_instrument(self, instrument: Instrument) -> None:
        pass

    def count(self, name: str, symbol: str = "", n: int = 1) -> None:
        self.counts[name] += n


async def bare_transport(port: int, frames: int) -> float:
    received = 0
    started = 0.0
    done = asyncio.Event()

    def on_message(frame: bytes) -> None:
        nonlocal received, started
        received += 1
        if received == 2:
            started = time.perf_counter()
        if received == frames:
            done.set()

    client = ResilientWebSocket(f"ws://127.0.0.1:{port}/stream?bare=1", on_message=on_message,
                                clock=LiveClock(), stale_after_ms=0)
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(done.wait(), timeout=300)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return (frames - 2) / (time.perf_counter() - started)


async def full_client(port: int, frames: int) -> tuple[float, BenchContext, BinanceDataClient]:
    endpoints = Endpoints()
    endpoints.set("binance.ws", f"ws://127.0.0.1:{port}")
    endpoints.set("binance.rest", f"http://127.0.0.1:{port}")
    ctx = BenchContext(endpoints, frames)
    client = BinanceDataClient(BinanceSettings(symbols=["BTC/USDT"], trades=False, stale_after_ms=0), ctx)
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(ctx.done.wait(), timeout=300)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return ctx.deltas / (ctx.done_at - ctx.live_at), ctx, client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=300_000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only

    mp = multiprocessing.get_context("spawn")
    ports = mp.Queue()
    server = mp.Process(target=serve_forever, args=(ports, args.frames), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=30)
        bare = asyncio.run(bare_transport(port, args.frames))
        rate, ctx, client = asyncio.run(full_client(port, args.frames))
    finally:
        server.terminate()
        server.join()
    counters = client.stream_counters()[0]
    book = ctx.books["BTC/USDT"]
    print(f"frames                        {args.frames:>12,}")
    print(f"transport only (recv + count) {bare:>12,.0f} frames/s")
    print(f"decode + sync + book apply    {rate:>12,.0f} frames/s   ({1e6 / rate:.2f} us/frame)")
    print(f"bytes received                {counters.bytes:>12,} ({counters.bytes / counters.messages:.0f} B/frame)")
    print(f"parse errors / gaps           {counters.parse_errors:>12} / {ctx.counts['gaps']}")
    print(f"book                          {book.bid_count} bids / {book.ask_count} asks, "
          f"best {book.best_bid()} / {book.best_ask()}, last u {book.last_seq}")


if __name__ == "__main__":
    main()
