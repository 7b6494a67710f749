"""The simulator's network edge: one WebSocket + HTTP listener on 127.0.0.1 serving venue protocols.

Paths on the one port:

* ``/stream?streams=a/b`` and ``/ws``, ``/ws/<stream>``: Binance spot market streams (combined or raw),
  with live ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` method frames;
* ``GET /api/v3/depth``, ``/api/v3/exchangeInfo``, ``/api/v3/time``, ``/api/v3/ping``: Binance REST,
  answered as plain HTTP by websockets' ``process_request`` hook (no second server library).

The market advances one model step per ``update_interval_ms / speed`` of the injected clock
(:meth:`SimServer.run_market`), or one step per call of :meth:`SimServer.step_once` in tests. A step
and its fan-out to every client happen without an ``await`` in between, so a REST snapshot always
matches a diff that every connected client has been sent: a late subscriber gets only newer diffs and
syncs from a snapshot, as on Binance.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from botframe.clock import Clock, LiveClock

from .binance_protocol import BinanceWire, ClientRequest, RestResponse, combined_frame, parse_client_request
from .config import SimSettings
from .model import MarketModel, MarketStep

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["SimServer", "build_model"]

_json = msgspec.json.Encoder()
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error"}


def build_model(settings: SimSettings) -> MarketModel:
    """The market model the settings describe."""
    return MarketModel(
        specs=[s.spec() for s in settings.symbols],
        seed=settings.seed,
        update_interval_ms=settings.update_interval_ms,
        flows=[settings.flow_for(s) for s in settings.symbols],
        history_updates=settings.history_updates,
    )


@dataclass(eq=False, slots=True)
class _BinanceClient:
    """One Binance stream connection: its subscriptions and its outgoing queue."""

    ws: ServerConnection
    combined: bool
    queue: asyncio.Queue[bytes]
    streams: set[str] = field(default_factory=set)
    closing: bool = False


class SimServer:
    """Serves the simulated market over WebSocket and HTTP; see the module docstring."""

    def __init__(
        self,
        settings: SimSettings,
        *,
        clock: Clock | None = None,
        log: Any = None,
        model: MarketModel | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock if clock is not None else LiveClock()
        self.log = log if log is not None else structlog.get_logger("botframe.sim")
        self.model = model if model is not None else build_model(settings)
        self.binance = BinanceWire(list(self.model.models("binance")),
                                   update_interval_ms=settings.update_interval_ms)
        self.counters: Counter[str] = Counter()
        self._server: Server | None = None
        self._port = settings.port
        self._binance_clients: set[_BinanceClient] = set()
        self._wanted: Counter[str] = Counter()  # Binance stream -> number of subscribed clients
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener; after this, :attr:`port` and the URLs are known."""
        self._server = await serve(
            self._handle,
            self.settings.host,
            self._port,
            process_request=self._process_request,
            max_size=2**20,
        )
        # Keep the port for a restart, so published URLs stay valid.
        self._port = self._server.sockets[0].getsockname()[1]
        self.log.info("sim.listening", host=self.settings.host, port=self._port,
                      symbols=[f"{s.venue}:{s.symbol}" for s in self.settings.symbols])

    async def stop(self) -> None:
        """Close every connection and the listener, and end the tasks this server started."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def port(self) -> int:
        if self._server is None and self._port == 0:
            raise RuntimeError("the simulator is not listening yet; await start() first")
        return self._port

    @property
    def ws_url(self) -> str:
        """Base URL of the Binance streams (append ``/stream?streams=...`` or ``/ws``)."""
        return f"ws://{self.settings.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the Binance REST API (append ``/api/v3/...``)."""
        return f"http://{self.settings.host}:{self.port}"

    # -- the market ------------------------------------------------------------------------------------

    async def run_market(self) -> None:
        """Step the model at the configured pace of the injected clock, forever (cancel to stop)."""
        interval_ns = int(self.settings.update_interval_ms * 1_000_000 / self.settings.speed)
        next_ns = self.clock.monotonic_ns() + interval_ns
        while True:
            delay_ns = next_ns - self.clock.monotonic_ns()
            if delay_ns > 0:
                await self.clock.sleep(delay_ns / 1e9)
            else:
                await asyncio.sleep(0)  # behind schedule: still let the clients' writers run
                if delay_ns < -10 * interval_ns:
                    next_ns = self.clock.monotonic_ns()  # after a long pause, do not burst to catch up
            next_ns += interval_ns
            if self.settings.wait_for_clients:
                await self.clients_drained()
            self.step_once()

    async def clients_drained(self) -> None:
        """Wait until every connected client has been sent every frame queued so far."""
        for client in list(self._binance_clients):
            await client.queue.join()

    def step_once(self) -> MarketStep:
        """Advance the market one step and queue its frames to every subscribed client."""
        step = self.model.step(ts_ns=self.clock.time_ns())
        self.counters["steps"] += 1
        if self._binance_clients:
            self._publish_binance(step)
        else:
            # Stream state (the 1000 ms merge, best-price tracking) must advance even with no client.
            self.binance.stream_payloads(step, {})
        return step

    def _publish_binance(self, step: MarketStep) -> None:
        payloads = self.binance.stream_payloads(step, self._wanted)
        if not payloads:
            return
        wrapped: dict[str, list[bytes]] = {}
        for client in list(self._binance_clients):
            if client.closing:
                continue
            for stream, frames in payloads.items():
                if stream not in client.streams:
                    continue
                if client.combined:
                    out = wrapped.get(stream)
                    if out is None:
                        out = wrapped[stream] = [combined_frame(stream, f) for f in frames]
                else:
                    out = frames
                if not self._enqueue(client, out):
                    break

    def _enqueue(self, client: _BinanceClient, frames: Iterable[bytes]) -> bool:
        try:
            for frame in frames:
                client.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.counters["slow_clients_dropped"] += 1
            self.log.warning("sim.slow_client_dropped", peer=str(client.ws.remote_address),
                             queued=client.queue.qsize())
            self._close(client, 1008, "client too slow")
            return False
        return True

    def _close(self, client: _BinanceClient, code: int, reason: str) -> None:
        client.closing = True
        self._own(client.ws.close(code, reason), "sim.close")

    def _own(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections -----------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None  # the handler runs only after a completed handshake
        parts = urlsplit(request.path)
        if parts.path == "/stream":
            query = parse_qs(parts.query)
            streams = [s for v in query.get("streams", []) for s in v.split("/") if s]
            await self._binance_session(ws, combined=True, streams=streams)
        else:
            streams = [s for s in parts.path[len("/ws"):].split("/") if s]
            await self._binance_session(ws, combined=False, streams=streams)

    async def _binance_session(self, ws: ServerConnection, *, combined: bool, streams: list[str]) -> None:
        client = _BinanceClient(ws, combined, asyncio.Queue(self.settings.max_client_queue_frames))
        self._subscribe(client, streams)
        self._binance_clients.add(client)
        self.counters["connections"] += 1
        writer = asyncio.get_running_loop().create_task(self._write(client), name="sim.binance.writer")
        try:
            async for message in ws:
                self._on_binance_request(client, message)
        except ConnectionClosed:
            pass
        finally:
            self._binance_clients.discard(client)
            self._subscribe(client, [], remove=list(client.streams))
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            # Frames never sent still count as done, so clients_drained() does not wait on a ghost.
            while not client.queue.empty():
                client.queue.get_nowait()
                client.queue.task_done()

    async def _write(self, client: _BinanceClient) -> None:
        ws = client.ws
        queue = client.queue
        try:
            while True:
                frame = await queue.get()
                try:
                    await ws.send(frame, text=True)
                finally:
                    queue.task_done()
                self.counters["frames_sent"] += 1
        except ConnectionClosed:
            return

    def _subscribe(self, client: _BinanceClient, add: list[str], *, remove: list[str] | None = None) -> None:
        for s in add:
            if s not in client.streams:
                client.streams.add(s)
                self._wanted[s] += 1
        for s in remove or ():
            if s in client.streams:
                client.streams.discard(s)
                self._wanted[s] -= 1
                if self._wanted[s] <= 0:
                    del self._wanted[s]

    def _on_binance_request(self, client: _BinanceClient, message: str | bytes) -> None:
        req = parse_client_request(message)
        if not isinstance(req, ClientRequest):
            code, msg, req_id = req
            self.counters["client_errors"] += 1
            self.log.info("sim.binance.bad_request", code=code, msg=msg)
            self._enqueue(client, [_json.encode({"error": {"code": code, "msg": msg}, "id": req_id})])
            return
        result: Any = None
        streams = [str(p) for p in req.params]  # checked to be stream names for (UN)SUBSCRIBE
        if req.method == "SUBSCRIBE":
            self._subscribe(client, streams)
        elif req.method == "UNSUBSCRIBE":
            self._subscribe(client, [], remove=streams)
        elif req.method == "LIST_SUBSCRIPTIONS":
            result = sorted(client.streams)
        elif req.method == "SET_PROPERTY":
            if len(req.params) == 2 and req.params[0] == "combined" and isinstance(req.params[1], bool):
                client.combined = req.params[1]
        elif req.method == "GET_PROPERTY":
            result = client.combined if req.params == ["combined"] else None
        self._enqueue(client, [_json.encode({"result": result, "id": req.id})])

    # -- HTTP ------------------------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/stream" or path == "/ws" or path.startswith("/ws/"):
            return None  # a WebSocket handshake; websockets answers 426 if it is not an upgrade
        now_ms = self.clock.time_ns() // 1_000_000
        answer = self.binance.rest(request.path, now_ms=now_ms)
        if answer is None:
            answer = RestResponse(404, b"")
        self.counters["rest_requests"] += 1
        return self._http(answer)

    def _http(self, answer: RestResponse) -> Response:
        headers = Headers([
            ("Date", email.utils.formatdate(self.clock.time_ns() / 1e9, usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(answer.body))),
            *answer.headers,
        ])
        return Response(answer.status, _REASONS.get(answer.status, ""), headers, answer.body)
