"""Frames per second through the whole framework, fed by a real WebSocket on 127.0.0.1 from another process.

The same frames as ``e2e_replay`` (Binance combined diff-depth stream, 20 + 20 or 2 + 2 levels, seeded),
but nothing is left out: a server process plays Binance spot (``exchangeInfo`` and the depth snapshot
over HTTP, the combined stream over WebSocket) and ``Engine.run()`` runs exactly as ``botframe run``
does, with the live clock: the Binance plugin connects with its :class:`~botframe.streams.ResilientWebSocket`
(the ``websockets`` library), fetches the snapshot over REST, and every frame goes through parser, bus,
book, signals, the imbalance strategy, the risk gate, the paper executor, the portfolio and the journal.

The server writes pre-framed frames as fast as the socket takes them (its own flow control bounds
it), so the figure is the client's capacity when frames queue up: each socket read hands the library
many frames, and the engine shows each changed book to its strategies once per read (the burst rule
of ``Engine._flush_books``). The clock runs from the book going LIVE to the last frame being applied.

Each run measures both WebSocket clients botframe can use (``[venues.X] transport``): ``websockets``
(the default) and ``picows`` (when installed, ``pip install "botframe[fast]"``). For scale, it also
reports each transport alone (a ``ResilientWebSocket`` whose handler only counts frames) and the
in-process bare reference on the same frames.

Run: ``python benchmarks/e2e_loopback.py [--frames N] [--levels 20 2] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import os
import resource
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from bare_reference import exchange_info_body, generate_frames, run_bare, snapshot_body
from e2e_replay import config_text
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from botframe.clock import LiveClock
from botframe.engine import Engine
from botframe.events import BookHealth
from botframe.hookspecs import hookimpl
from botframe.log import configure_logging
from botframe.plugins import PluginSystem
from botframe.settings import load_settings
from botframe.streams import ResilientWebSocket, TransportName, picows_available

__all__ = ["main"]

_CHUNK_FRAMES = 500  # frames per transport.write on the server


def _ws_frame(payload: bytes) -> bytes:
    """An unmasked server-to-client text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    return bytes((0x81, 126)) + struct.pack("!H", n) + payload


def serve_forever(port_out: Any, frames_n: int, levels: int) -> None:
    """The server process: REST answers; per connection, frame 1, then (once a snapshot was served) the rest."""
    snapshot_served = asyncio.Event()
    frames = generate_frames(frames_n, levels)
    first = _ws_frame(frames[0])
    chunks = [b"".join(_ws_frame(f) for f in frames[i:i + _CHUNK_FRAMES])
              for i in range(1, len(frames), _CHUNK_FRAMES)]
    info = exchange_info_body()
    snap = snapshot_body()

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/stream"):
            return None
        body = info if "exchangeInfo" in request.path else snap
        if "depth" in request.path:
            snapshot_served.set()
        return Response(200, "OK", Headers({"Content-Type": "application/json",
                                             "Content-Length": str(len(body))}), body)

    async def stream(ws: ServerConnection) -> None:
        transport = ws.transport
        transport.write(first)
        if "bare" not in (ws.request.path if ws.request else ""):
            await snapshot_served.wait()
            snapshot_served.clear()
        for chunk in chunks:
            transport.write(chunk)
            await ws.drain()
        await ws.wait_closed()

    async def run() -> None:
        async with serve(stream, "127.0.0.1", 0, process_request=process_request, compression=None,
                         write_limit=4_000_000) as server:
            port_out.put(server.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(run())


class _Stopwatch:
    """A plugin that times the run: from the book going LIVE to the last frame applied, then stops it."""

    def __init__(self, last_update_id: int) -> None:
        self.last_update_id = last_update_id
        self.live_at = 0.0
        self.done_at = 0.0
        self.engine: Engine | None = None

    @hookimpl
    def botframe_startup(self, engine: Engine) -> None:
        self.engine = engine
        engine.spawn(self._watch(engine), name="stopwatch")

    async def _watch(self, engine: Engine) -> None:
        book = engine.slot("binance", "BTC/USDT").book
        # Polled rather than subscribed: a bus handler would add a call to every frame being timed.
        while book.health is not BookHealth.LIVE:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        self.live_at = time.perf_counter()
        while book.last_seq < self.last_update_id:  # noqa: ASYNC110
            await asyncio.sleep(0.0005)
        self.done_at = time.perf_counter()
        engine.request_stop()


def _last_update_id(frame: bytes) -> int:
    return int(frame.split(b'"u":', 1)[1].split(b",", 1)[0])


async def run_engine(port: int, last_u: int, workdir: Path, transport: str = "websockets") -> tuple[float, Engine]:
    config = workdir / "config.toml"
    text = config_text(["BTCUSDT"], workdir / "journal.sqlite")
    text = text.replace('ws_url = "ws://127.0.0.1:9"', f'ws_url = "ws://127.0.0.1:{port}"\ntransport = "{transport}"')
    text = text.replace('rest_url = "http://127.0.0.1:9"', f'rest_url = "http://127.0.0.1:{port}"')
    config.write_text(f"duration_secs = 600\n{text}")
    plugins = PluginSystem()
    plugins.load_entry_points()
    watch = _Stopwatch(last_u)
    plugins.register(watch, "stopwatch")
    engine = Engine(load_settings(config, plugins), plugins, clock=LiveClock(), out=io.StringIO(),
                    live_view=False)
    summary = await engine.run()
    if summary.failed or not watch.done_at:
        raise RuntimeError("the engine run failed or never saw the last frame")
    return watch.done_at - watch.live_at, engine


async def transport_only(port: int, frames_n: int, transport: TransportName = "websockets") -> float:
    """Seconds for a ResilientWebSocket (over ``transport``) that only counts to receive frames 2..n."""
    received = 0
    started = 0.0
    done = asyncio.Event()

    def on_message(frame: bytes) -> None:
        nonlocal received, started
        received += 1
        if received == 1:
            started = time.perf_counter()
        if received == frames_n:
            done.set()

    client = ResilientWebSocket(f"ws://127.0.0.1:{port}/stream?bare=1", on_message=on_message,
                                clock=LiveClock(), stale_after_ms=0, transport=transport)
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(done.wait(), timeout=300)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return time.perf_counter() - started


def measure(levels: int, frames_n: int, repeat: int) -> None:
    frames = generate_frames(frames_n, levels)
    last_u = _last_update_id(frames[-1])
    mp = multiprocessing.get_context("spawn")
    transports: list[TransportName] = ["websockets", "picows"] if picows_available() else ["websockets"]
    best_engine = dict.fromkeys(transports, float("inf"))
    best_transport = dict.fromkeys(transports, float("inf"))
    best_bare = float("inf")
    engines: dict[str, Engine] = {}
    for _ in range(repeat):
        ports: Any = mp.Queue()
        server = mp.Process(target=serve_forever, args=(ports, frames_n, levels), daemon=True)
        server.start()
        try:
            port = ports.get(timeout=60)
            for transport in transports:
                best_transport[transport] = min(best_transport[transport],
                                                 asyncio.run(transport_only(port, frames_n, transport)))
                with tempfile.TemporaryDirectory() as tmp:
                    elapsed, engines[transport] = asyncio.run(run_engine(port, last_u, Path(tmp), transport))
                best_engine[transport] = min(best_engine[transport], elapsed)
        finally:
            server.terminate()
            server.join()
        best_bare = min(best_bare, run_bare(snapshot_body(), frames[1:])[0])
    per = frames_n - 1
    bare_rate = per / best_bare
    print(f"e2e_loopback, {levels} + {levels} levels, {per:,} frames, best of {repeat}:")
    for transport in transports:
        engine = engines[transport]
        rate = per / best_engine[transport]
        orders = engine.orders.counts_by_status()
        print(f"  botframe, full engine, {transport:10s} {rate:>10,.0f} frames/s  {1e6 / rate:6.2f} us/frame  "
              f"{rate / bare_rate:5.2f} x bare   orders {sum(orders.values())}, "
              f"journal rows {engine.journal.written if engine.journal else 0}")
    for transport in transports:
        t = best_transport[transport]
        print(f"  transport only, {transport:10s}        {per / t:>10,.0f} frames/s  {t / per * 1e6:6.2f} us/frame")
    if len(transports) == 1:
        print('  (picows not installed: pip install "botframe[fast]" to measure it too)')
    print(f"  bare reference (in process)      {bare_rate:>10,.0f} frames/s  {1e6 / bare_rate:6.2f} us/frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100_000, help="frames of 20 + 20 levels (2 + 2: 3x)")
    parser.add_argument("--levels", type=int, nargs="+", default=[20, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull:  # log lines are formatted at INFO, as in a run, then dropped
        configure_logging("info", stream=devnull)
        for levels in args.levels:
            measure(levels, args.frames if levels >= 10 else args.frames * 3, args.repeat)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory (client process): {peak:.0f} MB (includes the frames kept for the bare run)")


if __name__ == "__main__":
    main()
