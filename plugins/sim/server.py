"""The simulator's network edge: one WebSocket + HTTP listener on 127.0.0.1 serving venue protocols.

Paths on the one port:

* ``/stream?streams=a/b`` and ``/ws``, ``/ws/<stream>``: Binance spot market streams (combined or raw),
  with live ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` method frames;
* ``GET /api/v3/depth``, ``/api/v3/exchangeInfo``, ``/api/v3/time``, ``/api/v3/ping``: Binance REST,
  answered as plain HTTP by websockets' ``process_request`` hook (no second server library);
* ``/v2``: Kraken spot WebSocket v2 (``book`` with checksums, ``trade``, ``instrument``, heartbeats);
* ``/ws-api/v3``: Binance's WebSocket API (user data subscriptions, see :mod:`.binance_trading`) and
  ``/ws/<listenKey>``: a listen key's user data stream.

Binance's trading REST API (signed ``POST``/``DELETE`` requests carry bodies, which websockets' HTTP
parser refuses) is served by a small aiohttp server on a second port, :attr:`SimServer.api_url`; it also
answers the public GET endpoints, so a REST client needs only that one base URL. Orders placed there are
matched in the model's book (:mod:`.trading`) between steps, and user data events are queued to the
account's subscribers before the HTTP answer is sent, as on Binance.

The market advances one model step per ``update_interval_ms / speed`` of the injected clock
(:meth:`SimServer.run_market`), or one step per call of :meth:`SimServer.step_once` in tests. A step
and its fan-out to every client happen without an ``await`` in between, so a REST snapshot always
matches a diff that every connected client has been sent: a late subscriber gets only newer diffs and
syncs from a snapshot, as on Binance.

Faults (:mod:`.faults`) are drawn at their opportunities: per step (stall, restart), per connection per
step (drops), per book frame per connection (gap, duplicate, reorder, corrupt, malformed) and per REST
depth request (slow, stale, 429, 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import structlog
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from botframe.clock import Clock, LiveClock

from .binance_protocol import BinanceWire, ClientRequest, RestResponse, combined_frame, parse_client_request
from .binance_trading import BinanceTradingApi, RateLimits
from .config import SimSettings
from .connections import BinanceConnection, Connection, KrakenConnection, UserDataConnection
from .faults import FaultKind, FaultPlan
from .kraken_protocol import (
    KrakenBookView,
    KrakenRequest,
    KrakenSymbol,
    KrakenWire,
    parse_kraken_request,
    rfc3339,
)
from .model import MarketModel, MarketStep
from .trading import TradingVenue

__all__ = ["KRAKEN_PATH", "WS_API_PATH", "SimServer", "build_model"]

#: Where the Kraken v2 protocol is served on the simulator's port.
KRAKEN_PATH = "/v2"
#: Where Binance's WebSocket API is served on the simulator's port.
WS_API_PATH = "/ws-api/v3"

_json = msgspec.json.Encoder()
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_BINANCE_DEPTH_SUFFIXES = ("@depth@100ms", "@depth", "@depth@1000ms")


def build_model(settings: SimSettings) -> MarketModel:
    """The market model the settings describe."""
    return MarketModel(
        specs=[s.spec() for s in settings.symbols],
        seed=settings.seed,
        update_interval_ms=settings.update_interval_ms,
        flows=[settings.flow_for(s) for s in settings.symbols],
        history_updates=settings.history_updates,
    )


def _corrupt_binance_depth(payload: bytes, pick: Callable[[int], int]) -> bytes:
    """The same depth event with one level's size changed (still valid JSON, still Binance's shape)."""
    event = msgspec.json.decode(payload)
    sides = [s for s in ("b", "a") if event[s]]
    levels = event[sides[pick(len(sides))]]
    level = levels[pick(len(levels))]
    qty = Decimal(level[1])
    level[1] = str((qty * 2 + Decimal(1)).quantize(qty))
    return _json.encode(event)


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
        self.binance = BinanceWire(
            list(self.model.models("binance")), update_interval_ms=settings.update_interval_ms
        )
        self.kraken = KrakenWire(list(self.model.models("kraken")))
        self.trading = TradingVenue(self.binance.symbols, maker_fee_bps=settings.maker_fee_bps,
                                    taker_fee_bps=settings.taker_fee_bps)
        for acct in settings.accounts:
            self.trading.add_account(acct.api_key, acct.secret, acct.balances, can_trade=acct.can_trade,
                                     can_withdraw=acct.can_withdraw)
        self.trading_api = BinanceTradingApi(
            self.binance, self.trading,
            RateLimits(request_weight_per_min=settings.request_weight_per_min,
                       orders_per_10s=settings.orders_per_10s))
        self._user_clients: set[UserDataConnection] = set()
        self._api_runner: web.AppRunner | None = None
        self._api_port = settings.api_port
        self.faults = FaultPlan(settings.faults)
        self.counters: Counter[str] = Counter()
        self._server: Server | None = None
        self._port = settings.port
        self._binance_clients: set[BinanceConnection] = set()
        self._kraken_clients: set[KrakenConnection] = set()
        self._wanted: Counter[str] = Counter()  # Binance stream -> number of subscribed clients
        self._tasks: set[asyncio.Task[None]] = set()
        self._stall_until_ns = 0
        self._listening = asyncio.Event()
        self._connection_ids = itertools.count(1)
        self._heartbeat_every = max(
            1, round(settings.kraken_heartbeat_interval_ms / settings.update_interval_ms)
        )
        # Update ids of the last steps, per Binance symbol: what a stale snapshot is taken from.
        self._past_ids: dict[str, deque[int]] = {
            name: deque([bs.model.last_update_id], maxlen=settings.faults.snapshot_stale_steps + 1)
            for name, bs in self.binance.symbols.items()
        }

    # -- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listeners; after this, :attr:`port`, :attr:`api_port` and the URLs are known."""
        await self._bind()
        await self._bind_api()
        self.log.info(
            "sim.listening",
            host=self.settings.host,
            port=self._port,
            api_port=self._api_port,
            symbols=[f"{s.venue}:{s.symbol}" for s in self.settings.symbols],
            accounts=len(self.settings.accounts),
        )

    async def _bind_api(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._api_request)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self._api_port)
        await site.start()
        self._api_runner = runner
        server = site._server  # the bound asyncio server: the only way to learn an ephemeral port
        assert server is not None and isinstance(server, asyncio.base_events.Server)
        self._api_port = server.sockets[0].getsockname()[1]

    async def _bind(self) -> None:
        self._server = await serve(
            self._handle,
            self.settings.host,
            self._port,
            process_request=self._process_request,
            max_size=2**20,
        )
        # Keep the port for a restart, so published URLs stay valid.
        self._port = self._server.sockets[0].getsockname()[1]
        self._listening.set()

    async def stop(self) -> None:
        """Close every connection and the listener, and end the tasks this server started."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        runner, self._api_runner = self._api_runner, None
        if runner is not None:
            await runner.cleanup()
        server, self._server = self._server, None
        self._listening.clear()
        if server is not None:
            server.close()
            await server.wait_closed()

    @property
    def listening(self) -> bool:
        """Whether the listener is up (false while a restart fault has it down)."""
        return self._listening.is_set()

    async def wait_listening(self) -> None:
        """Return once the listener is up (at once, unless a restart fault has it down)."""
        await self._listening.wait()

    @property
    def port(self) -> int:
        if self._port == 0:
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

    @property
    def api_port(self) -> int:
        if self._api_port == 0:
            raise RuntimeError("the simulator is not listening yet; await start() first")
        return self._api_port

    @property
    def api_url(self) -> str:
        """Base URL of the Binance REST API with trading (append ``/api/v3/...``; ccxt's ``public``/``private``
        are ``api_url + "/api/v3"``)."""
        return f"http://{self.settings.host}:{self.api_port}"

    @property
    def ws_api_url(self) -> str:
        """URL of Binance's WebSocket API (as ``wss://ws-api.binance.com:443/ws-api/v3``)."""
        return f"ws://{self.settings.host}:{self.port}{WS_API_PATH}"

    @property
    def kraken_url(self) -> str:
        """URL of the Kraken v2 WebSocket (as ``wss://ws.kraken.com/v2``)."""
        return f"ws://{self.settings.host}:{self.port}{KRAKEN_PATH}"

    def inject(self, kind: FaultKind, times: int = 1) -> None:
        """Force the next ``times`` opportunities of a fault, whatever its configured rate."""
        self.faults.inject(kind, times)

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
        for client in [*self._binance_clients, *self._kraken_clients, *self._user_clients]:
            await client.queue.join()

    def step_once(self) -> MarketStep:
        """Advance the market one step and queue its frames to every subscribed client."""
        step = self.model.step(ts_ns=self.clock.time_ns())
        self.counters["steps"] += 1
        self.trading.after_step(step.ts_ns // 1_000_000)
        self._publish_user_events()
        self._publish_binance(step)
        self._publish_kraken(step)
        for name, bs in self.binance.symbols.items():
            self._past_ids[name].append(bs.model.last_update_id)
        if self.faults.any_enabled:
            self._step_faults()
        return step

    def _step_faults(self) -> None:
        faults = self.faults
        for client in [*self._binance_clients, *self._kraken_clients]:
            if client.closing:
                continue
            if faults.fires(FaultKind.DROP_CLEAN):
                self._fault_log(FaultKind.DROP_CLEAN)
                self._close(client, 1000, "")
            elif faults.fires(FaultKind.DROP_ABRUPT):
                self._fault_log(FaultKind.DROP_ABRUPT)
                client.closing = True
                if client.ws.transport is not None:
                    client.ws.transport.abort()
        if faults.fires(FaultKind.STALL):
            self._fault_log(FaultKind.STALL, stall_ms=faults.settings.stall_ms)
            self._stall_until_ns = self.clock.monotonic_ns() + faults.settings.stall_ms * 1_000_000
        if self._listening.is_set() and faults.fires(FaultKind.RESTART):
            self._fault_log(FaultKind.RESTART, downtime_ms=faults.settings.restart_downtime_ms)
            # Down from now on, before the task runs, so nobody is told the old listener is fine.
            self._listening.clear()
            self._own(self._restart(), "sim.restart")

    async def _restart(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True, code=1012, reason="service restart")
        await server.wait_closed()
        await self.clock.sleep(self.settings.faults.restart_downtime_ms / 1000)
        await self._bind()
        self.log.info("sim.restarted", port=self._port)

    def _fault_log(self, kind: FaultKind, **details: Any) -> None:
        self.counters[f"fault.{kind.value}"] += 1
        self.log.info("sim.fault", fault=kind.value, **details)

    # -- fan-out ---------------------------------------------------------------------------------------

    def _publish_binance(self, step: MarketStep) -> None:
        payloads = self.binance.stream_payloads(step, self._wanted if self._binance_clients else {})
        if not payloads or not self._binance_clients:
            return
        wrapped: dict[str, list[bytes]] = {}
        faults_on = self.faults.any_enabled
        for client in list(self._binance_clients):
            if client.closing:
                continue
            for stream, frames in payloads.items():
                if stream not in client.streams:
                    continue
                # A frame held back by a reorder fault is released by the next one, even with faults off.
                if (faults_on or client.held) and stream.endswith(_BINANCE_DEPTH_SUFFIXES):
                    ok = all(
                        self._send_book_frame(
                            client,
                            stream,
                            self._binance_corrupter(client, stream, f),
                            f if not client.combined else combined_frame(stream, f),
                        )
                        for f in frames
                    )
                else:
                    if client.combined:
                        out = wrapped.get(stream)
                        if out is None:
                            out = wrapped[stream] = [combined_frame(stream, f) for f in frames]
                    else:
                        out = frames
                    ok = self._put(client, out)
                if not ok:
                    break

    def _binance_corrupter(
        self, client: BinanceConnection, stream: str, payload: bytes
    ) -> Callable[[], bytes]:
        def corrupt() -> bytes:
            bad = _corrupt_binance_depth(payload, self.faults.rng.randrange)
            return combined_frame(stream, bad) if client.combined else bad

        return corrupt

    def _publish_kraken(self, step: MarketStep) -> None:
        changed: set[str] = set()
        trade_frames: dict[str, bytes] = {}
        for st in step.symbols:
            if st.venue != "kraken":
                continue
            sym = self.kraken.symbols[st.symbol]
            if st.has_book_changes:
                changed.add(st.symbol)
            if st.trades:
                entries = [KrakenWire.trade_entry(sym, t, step.ts_ns) for t in st.trades]
                sym.recent_trades.extend(entries)
                trade_frames[st.symbol] = KrakenWire.trade_frame("update", entries)
        heartbeat = step.index % self._heartbeat_every == 0
        for client in list(self._kraken_clients):
            if client.closing:
                continue
            ok = True
            for name, view in client.books.items():
                if name in changed and ok:
                    ok = self._send_kraken_update(client, view, step.ts_ns)
            for name in client.trades:
                frame = trade_frames.get(name)
                if frame is not None and ok:
                    ok = self._put(client, [frame])
            if heartbeat and ok and client.subscribed:
                self._put(client, [KrakenWire.heartbeat()])

    def _send_kraken_update(self, client: KrakenConnection, view: KrakenBookView, ts_ns: int) -> bool:
        diff = view.update()
        if diff is None:
            return True
        bids, asks, checksum = diff
        sym = view.sym
        frame = KrakenWire.book_frame(sym, "update", bids, asks, checksum, ts_ns)
        if not self.faults.any_enabled and not client.held:
            return self._put(client, [frame])

        def corrupt() -> bytes:
            rng = self.faults.rng
            if rng.random() < 0.5:
                return KrakenWire.book_frame(sym, "update", bids, asks, (checksum + 1) & 0xFFFFFFFF, ts_ns)
            side = bids if (bids and (not asks or rng.random() < 0.5)) else asks
            i = rng.randrange(len(side))
            price, lots = side[i]
            bad = [*side[:i], (price, lots * 2 + 1), *side[i + 1 :]]
            return KrakenWire.book_frame(
                sym, "update", bad if side is bids else bids, bad if side is asks else asks, checksum, ts_ns
            )

        return self._send_book_frame(client, f"book:{sym.spec.symbol}", corrupt, frame)

    def _send_book_frame(
        self, client: Connection, stream: str, corrupt: Callable[[], bytes], frame: bytes
    ) -> bool:
        """Queue one book frame through the per-frame faults; ``False`` if the client was dropped."""
        faults = self.faults
        out: list[bytes] = []
        if faults.fires(FaultKind.MALFORMED):
            self._fault_log(FaultKind.MALFORMED, stream=stream)
            out.append(frame[: max(1, len(frame) // 2)])
        if faults.fires(FaultKind.GAP):
            self._fault_log(FaultKind.GAP, stream=stream)
            return self._put(client, out)
        if faults.fires(FaultKind.CORRUPT):
            self._fault_log(FaultKind.CORRUPT, stream=stream)
            frame = corrupt()
        if stream not in client.held and faults.fires(FaultKind.REORDER):
            self._fault_log(FaultKind.REORDER, stream=stream)
            client.held[stream] = frame
            return self._put(client, out)
        out.append(frame)
        if faults.fires(FaultKind.DUPLICATE):
            self._fault_log(FaultKind.DUPLICATE, stream=stream)
            out.append(frame)
        held = client.held.pop(stream, None)
        if held is not None:
            out.append(held)
        return self._put(client, out)

    def _put(self, client: Connection, frames: list[bytes]) -> bool:
        if client.put(frames):
            return True
        self.counters["slow_clients_dropped"] += 1
        self.log.warning(
            "sim.slow_client_dropped", peer=str(client.ws.remote_address), queued=client.queue.qsize()
        )
        self._close(client, 1008, "client too slow")
        return False

    def _close(self, client: Connection, code: int, reason: str) -> None:
        client.closing = True
        self._own(client.ws.close(code, reason), "sim.close")

    def _own(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections -----------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None  # the handler runs only after a completed handshake
        parts = urlsplit(request.path)
        queue: asyncio.Queue[bytes] = asyncio.Queue(self.settings.max_client_queue_frames)
        client: BinanceConnection | KrakenConnection | UserDataConnection
        listen_key = parts.path[len("/ws/"):] if parts.path.startswith("/ws/") else ""
        if parts.path.rstrip("/") == WS_API_PATH or listen_key in self.trading_api.listen_keys:
            await self._handle_user_data(ws, queue, listen_key)
            return
        if parts.path.rstrip("/") == KRAKEN_PATH:
            client = KrakenConnection(ws, queue, connection_id=next(self._connection_ids))
            self._kraken_clients.add(client)
            client.put([KrakenWire.status(client.connection_id)])
        else:
            if parts.path == "/stream":
                streams = [s for v in parse_qs(parts.query).get("streams", []) for s in v.split("/") if s]
                client = BinanceConnection(ws, queue, combined=True)
            else:
                streams = [s for s in parts.path[len("/ws") :].split("/") if s]
                client = BinanceConnection(ws, queue, combined=False)
            self._subscribe(client, streams)
            self._binance_clients.add(client)
        self.counters["connections"] += 1
        writer = asyncio.get_running_loop().create_task(self._write(client), name="sim.writer")
        try:
            async for message in ws:
                if isinstance(client, KrakenConnection):
                    self._on_kraken_request(client, message)
                else:
                    self._on_binance_request(client, message)
        except ConnectionClosed:
            pass
        finally:
            if isinstance(client, KrakenConnection):
                self._kraken_clients.discard(client)
            else:
                self._binance_clients.discard(client)
                self._subscribe(client, [], remove=list(client.streams))
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            # Frames never sent still count as done, so clients_drained() does not wait on a ghost.
            client.discard_queued()

    async def _handle_user_data(self, ws: ServerConnection, queue: asyncio.Queue[bytes], listen_key: str) -> None:
        client = UserDataConnection(ws, queue)
        if listen_key:
            client.listen_api_key = self.trading_api.listen_keys[listen_key].api_key
        self._user_clients.add(client)
        self.counters["user_connections"] += 1
        writer = asyncio.get_running_loop().create_task(self._write(client), name="sim.user-writer")
        try:
            async for message in ws:
                if listen_key:
                    continue  # a listen key stream only sends
                result = self.trading_api.ws_api(message, now_ms=self.clock.time_ns() // 1_000_000)
                if result.subscribe is not None and result.subscription_id is not None:
                    client.subscriptions[result.subscription_id] = result.subscribe.api_key
                elif result.unsubscribe is not None:
                    if result.unsubscribe < 0:
                        client.subscriptions.clear()
                    else:
                        client.subscriptions.pop(result.unsubscribe, None)
                self._put(client, [result.frame])
        except ConnectionClosed:
            pass
        finally:
            self._user_clients.discard(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            client.discard_queued()

    def _publish_user_events(self) -> None:
        """Send the trading venue's pending user data events to the accounts' subscribers."""
        events = self.trading.take_events()
        if not events or not self._user_clients:
            return
        for client in list(self._user_clients):
            if client.closing:
                continue
            frames: list[bytes] = []
            for event in events:
                if client.listen_api_key == event.api_key:
                    frames.append(_json.encode(event.payload))
                for sid, api_key in client.subscriptions.items():
                    if api_key == event.api_key:
                        frames.append(_json.encode({"subscriptionId": sid, "event": event.payload}))
            if frames:
                self._put(client, frames)

    async def _api_request(self, request: web.Request) -> web.StreamResponse:
        """The trading REST API (aiohttp handler): answer, publish user data events, then reply."""
        body = (await request.read()).decode("utf-8", "replace") if request.can_read_body else ""
        now_ms = self.clock.time_ns() // 1_000_000
        self.counters["api_requests"] += 1
        peer = request.remote or "127.0.0.1"
        answer = self.trading_api.rest(request.method, request.path_qs, body, request.headers, now_ms=now_ms,
                                       client=peer)
        self._publish_user_events()
        if (request.method == "POST" and request.path.rstrip("/") == "/api/v3/order" and answer.status == 200
                and self.faults.fires(FaultKind.ORDER_TIMEOUT)):
            # The order exists (and its user data events are out); only this answer is late.
            self._fault_log(FaultKind.ORDER_TIMEOUT, delay_ms=self.settings.faults.order_timeout_ms)
            await self.clock.sleep(self.settings.faults.order_timeout_ms / 1000)
        headers = {"Content-Type": "application/json;charset=UTF-8", **dict(answer.headers)}
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    async def _write(self, client: Connection) -> None:
        ws = client.ws
        queue = client.queue
        try:
            while True:
                frame = await queue.get()
                try:
                    stall_ns = self._stall_until_ns - self.clock.monotonic_ns()
                    if stall_ns > 0:
                        await self.clock.sleep(stall_ns / 1e9)
                    await ws.send(frame, text=True)
                finally:
                    queue.task_done()
                self.counters["frames_sent"] += 1
        except ConnectionClosed:
            return

    # -- Binance requests ------------------------------------------------------------------------------

    def _subscribe(
        self, client: BinanceConnection, add: list[str], *, remove: list[str] | None = None
    ) -> None:
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

    def _on_binance_request(self, client: BinanceConnection, message: str | bytes) -> None:
        req = parse_client_request(message)
        if not isinstance(req, ClientRequest):
            code, msg, req_id = req
            self.counters["client_errors"] += 1
            self.log.info("sim.binance.bad_request", code=code, msg=msg)
            self._put(client, [_json.encode({"error": {"code": code, "msg": msg}, "id": req_id})])
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
        self._put(client, [_json.encode({"result": result, "id": req.id})])

    # -- Kraken requests -------------------------------------------------------------------------------

    def _on_kraken_request(self, client: KrakenConnection, message: str | bytes) -> None:
        time_in = rfc3339(self.clock.time_ns())
        req = parse_kraken_request(message)
        if not isinstance(req, KrakenRequest):
            method, error, req_id = req
            self.counters["client_errors"] += 1
            self.log.info("sim.kraken.bad_request", error=error)
            self._put(client, [KrakenWire.error(method, error, req_id, None, time_in, time_in)])
            return
        if req.method == "ping":
            self._put(client, [KrakenWire.pong(req.req_id, time_in, rfc3339(self.clock.time_ns()))])
            return
        if req.channel == "instrument":
            ok = client.instrument != (req.method == "subscribe")
            if not ok:
                err = "Already subscribed" if req.method == "subscribe" else "Subscription Not Found"
                self._put(client, [KrakenWire.error(req.method, err, req.req_id, None, time_in, time_in)])
                return
            client.instrument = req.method == "subscribe"
            frames = [KrakenWire.ack(req, None, time_in, rfc3339(self.clock.time_ns()))]
            if client.instrument and req.snapshot:
                frames.append(self.kraken.instrument_snapshot())
            self._put(client, frames)
            return
        for name in req.symbols:
            sym = self.kraken.symbols.get(name)
            frames = self._kraken_symbol_request(client, req, name, sym, time_in)
            if not self._put(client, frames):
                return

    def _kraken_symbol_request(
        self, client: KrakenConnection, req: KrakenRequest, name: str, sym: KrakenSymbol | None, time_in: str
    ) -> list[bytes]:
        def error(text: str) -> list[bytes]:
            return [
                KrakenWire.error(req.method, text, req.req_id, name, time_in, rfc3339(self.clock.time_ns()))
            ]

        if sym is None:
            return error(f"Currency pair not supported {name}")
        subscribed = name in client.books if req.channel == "book" else name in client.trades
        if req.method == "subscribe" and subscribed:
            return error("Already subscribed")
        if req.method == "unsubscribe" and not subscribed:
            return error("Subscription Not Found")
        frames = [KrakenWire.ack(req, name, time_in, rfc3339(self.clock.time_ns()))]
        if req.method == "unsubscribe":
            if req.channel == "book":
                del client.books[name]
            else:
                client.trades.discard(name)
            return frames
        if req.channel == "book":
            view = KrakenBookView(sym, req.depth)
            bids, asks, checksum = view.snapshot()
            client.books[name] = view
            if req.snapshot:
                frames.append(KrakenWire.book_frame(sym, "snapshot", bids, asks, checksum, None))
        else:
            client.trades.add(name)
            if req.snapshot and sym.recent_trades:
                frames.append(KrakenWire.trade_frame("snapshot", list(sym.recent_trades)))
        return frames

    # -- HTTP ------------------------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        path = parts.path
        if (path in ("/stream", "/ws") or path.startswith("/ws/") or path.rstrip("/") in (KRAKEN_PATH, WS_API_PATH)):
            return None  # a WebSocket handshake; websockets answers 426 if it is not an upgrade
        self.counters["rest_requests"] += 1
        now_ms = self.clock.time_ns() // 1_000_000
        if path.rstrip("/") != "/api/v3/depth" or not self.faults.any_enabled:
            answer = self.binance.rest(request.path, now_ms=now_ms)
            return self._http(answer if answer is not None else RestResponse(404, b""))
        return await self._depth_with_faults(request.path, parts.query, now_ms)

    async def _depth_with_faults(self, path: str, query: str, now_ms: int) -> Response:
        faults = self.faults
        if faults.fires(FaultKind.REST_429):
            self._fault_log(FaultKind.REST_429)
            return self._http(
                RestResponse(
                    429,
                    _json.encode(
                        {
                            "code": -1003,
                            "msg": "Too many requests; current limit of IP(127.0.0.1) request weight is "
                            "6000 per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                            "polling the API.",
                        }
                    ),
                    (("Retry-After", "1"),),
                )
            )
        if faults.fires(FaultKind.REST_500):
            self._fault_log(FaultKind.REST_500)
            return self._http(
                RestResponse(
                    500,
                    _json.encode(
                        {
                            "code": -1001,
                            "msg": "Internal error; unable to process your request. Please try again.",
                        }
                    ),
                )
            )
        stale_id: int | None = None
        if faults.fires(FaultKind.SNAPSHOT_STALE):
            symbol = parse_qs(query).get("symbol", [""])[-1]
            past = self._past_ids.get(symbol)
            if past:
                stale_id = past[0]
                self._fault_log(FaultKind.SNAPSHOT_STALE, symbol=symbol, last_update_id=stale_id)
        answer = self.binance.rest(path, now_ms=now_ms, stale_update_id=stale_id)
        if faults.fires(FaultKind.SNAPSHOT_SLOW):
            self._fault_log(FaultKind.SNAPSHOT_SLOW, delay_ms=faults.settings.snapshot_slow_ms)
            await self.clock.sleep(faults.settings.snapshot_slow_ms / 1000)
        return self._http(answer if answer is not None else RestResponse(404, b""))

    def _http(self, answer: RestResponse) -> Response:
        headers = Headers(
            [
                ("Date", email.utils.formatdate(self.clock.time_ns() / 1e9, usegmt=True)),
                ("Connection", "close"),
                ("Content-Type", "application/json;charset=UTF-8"),
                ("Content-Length", str(len(answer.body))),
                *answer.headers,
            ]
        )
        return Response(answer.status, _REASONS.get(answer.status, ""), headers, answer.body)
