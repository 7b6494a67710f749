"""The resilient WebSocket client and REST helper: pure policy first, then against real local servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest
import structlog
import structlog.testing
from aiohttp import web
from pydantic import ValidationError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosedError,
    InvalidHeader,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import Close
from websockets.http11 import Request, Response

from botframe.clock import LiveClock, SimulatedClock
from botframe.events import HealthReason
from botframe.streams import (
    BackgroundTasks,
    BackoffSettings,
    Disposition,
    HttpStatusError,
    RequestPacer,
    RequestQueue,
    ResilientWebSocket,
    RestClient,
    StaleStreamError,
    StreamConnection,
    StreamCounters,
    StreamFatalError,
    TransportName,
    UnreadableFrames,
    VenueStreamSettings,
    backoff,
    classify,
    close_code,
    connect_stream,
    disconnect_reason,
    parse_retry_after,
    picows_available,
    report_counters,
    rest_client,
    retry_after_secs,
    retry_cause,
    run_streams,
)

pytestmark = pytest.mark.timeout(20)

FAST = BackoffSettings(initial_delay_ms=1, factor=2, max_delay_ms=5, jitter=0.0, reset_after_secs=60)


def take(delays: object, n: int) -> list[float]:
    it = iter(delays)  # type: ignore[call-overload]
    return [round(next(it), 6) for _ in range(n)]


def http_status(status: int, headers: dict[str, str] | None = None) -> InvalidStatus:
    return InvalidStatus(Response(status, "", Headers(headers or {}), b""))


def closed(code: int | None) -> ConnectionClosedError:
    return ConnectionClosedError(Close(code, "") if code is not None else None, None)


# -- backoff --------------------------------------------------------------------------------------------


def test_backoff_grows_by_factor_and_stops_at_the_cap() -> None:
    settings = BackoffSettings(initial_delay_ms=100, factor=2, max_delay_ms=1000, jitter=0.0)

    delays = take(backoff(settings), 7)

    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_backoff_jitter_takes_off_at_most_its_fraction() -> None:
    settings = BackoffSettings(initial_delay_ms=1000, factor=1, max_delay_ms=1000, jitter=0.25)

    longest = take(backoff(settings, rng=lambda: 0.0), 1)
    shortest = take(backoff(settings, rng=lambda: 1.0), 1)

    assert longest == [1.0]
    assert shortest == [0.75]


def test_backoff_initial_delay_above_cap_is_capped() -> None:
    settings = BackoffSettings(initial_delay_ms=5000, max_delay_ms=100, jitter=0.0)

    assert take(backoff(settings), 2) == [0.1, 0.1]


def test_backoff_settings_reject_a_shrinking_factor() -> None:
    with pytest.raises(ValueError, match="factor"):
        BackoffSettings(factor=0.5)


# -- classify -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        ConnectionResetError(),
        socket.gaierror(-2, "Name or service not known"),
        TimeoutError(),
        StaleStreamError(),
        InvalidMessage("did not receive a valid HTTP response"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("truncated"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_network_failures_are_retried(error: BaseException) -> None:
    assert classify(error) is Disposition.RETRY


@pytest.mark.parametrize(
    "error",
    [
        ssl.SSLCertVerificationError("certificate verify failed"),
        InvalidURI("htp://x", "scheme isn't ws or wss"),
        InvalidHeader("Upgrade"),
        ValueError("bad"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_configuration_failures_are_fatal(error: BaseException) -> None:
    assert classify(error) is Disposition.FATAL


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1008, 1011, 1012, 1013, 1014, 4000])
def test_close_codes_that_may_pass_are_retried(code: int) -> None:
    assert classify(code) is Disposition.RETRY
    assert classify(closed(code)) is Disposition.RETRY


@pytest.mark.parametrize("code", [1003, 1007, 1009, 1010])
def test_close_codes_refusing_what_we_send_are_fatal(code: int) -> None:
    assert classify(code) is Disposition.FATAL
    assert classify(closed(code)) is Disposition.FATAL


def test_connection_lost_without_close_frame_counts_as_1006_and_is_retried() -> None:
    error = closed(None)

    assert close_code(error) == 1006
    assert classify(error) is Disposition.RETRY


@pytest.mark.parametrize(("status", "expected"), [
    (408, Disposition.RETRY),
    (418, Disposition.RETRY),
    (429, Disposition.RETRY),
    (500, Disposition.RETRY),
    (503, Disposition.RETRY),
    (400, Disposition.FATAL),
    (401, Disposition.FATAL),
    (403, Disposition.FATAL),
    (404, Disposition.FATAL),
])
def test_http_statuses_are_classified_alike_for_websocket_and_rest(
    status: int, expected: Disposition
) -> None:
    assert classify(http_status(status)) is expected
    assert classify(HttpStatusError(status, "http://x")) is expected


def test_retry_after_in_seconds_is_read_from_a_rejected_handshake() -> None:
    error = http_status(429, {"Retry-After": "7"})

    assert retry_after_secs(error, now_epoch_secs=0) == 7.0


def test_retry_after_as_http_date_counts_from_now() -> None:
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = datetime(2024, 1, 1, 12, 0, 30, tzinfo=UTC)

    wait = parse_retry_after(format_datetime(later, usegmt=True), now.timestamp())

    assert wait == 30.0


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, 0.0) is None


def test_retry_after_in_the_past_means_now() -> None:
    assert parse_retry_after("-5", 0.0) == 0.0


# -- WebSocket against a real local server --------------------------------------------------------------

Handler = Callable[[ServerConnection], Awaitable[None]]
ProcessRequest = Callable[[ServerConnection, Request], Response | None]


async def start_server(handler: Handler, process_request: ProcessRequest | None = None) -> tuple[Server, str]:
    server = await serve(handler, "127.0.0.1", 0, process_request=process_request, compression=None)
    port = server.sockets[0].getsockname()[1]
    return server, f"ws://127.0.0.1:{port}/stream"


@pytest.fixture(params=["websockets", "picows"])
def transport(request: pytest.FixtureRequest) -> TransportName:
    """Every WebSocket test runs on both clients: the same policy must hold whichever carries the frames."""
    name: TransportName = request.param
    if name == "picows" and not picows_available():
        pytest.fail('picows is not installed: pip install -e ".[test]" installs it')
    return name


async def run_until(client: ResilientWebSocket, done: asyncio.Event, timeout: float = 10.0) -> None:
    """Run ``client`` until ``done`` is set, then cancel it (bounded by ``timeout``)."""
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(timeout):
            waiter = asyncio.create_task(done.wait())
            finished, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task in finished:
                waiter.cancel()
                task.result()  # raises what run() raised
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def frames_then_close() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that records subscriptions, sends two frames, and on the first connection only then drops."""
    subscriptions: list[str] = []
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        subscriptions.append(str(await ws.recv()))
        await ws.send('{"n":1}')
        await ws.send(b'{"n":2}')
        if connections == 1:
            await ws.close(1011, "restarting")
        else:
            await ws.wait_closed()

    server, url = await start_server(handler)
    try:
        yield url, subscriptions
    finally:
        server.close()
        await server.wait_closed()


async def test_frames_reach_the_callback_as_bytes_in_order(
    frames_then_close: tuple[str, list[str]], transport: TransportName,
) -> None:
    url, _ = frames_then_close
    received: list[bytes] = []
    done = asyncio.Event()

    def on_message(frame: bytes) -> None:
        received.append(frame)
        if len(received) == 2:
            done.set()

    async def subscribe(ws: StreamConnection) -> None:
        await ws.send("subscribe")

    client = ResilientWebSocket(url, on_message=on_message, on_connect=subscribe, clock=LiveClock(),
                                backoff_settings=FAST, transport=transport)
    await run_until(client, done)

    assert received == [b'{"n":1}', b'{"n":2}']
    assert client.counters.messages == 2
    assert client.counters.bytes == 14


async def test_reconnect_after_server_close_resubscribes(
    frames_then_close: tuple[str, list[str]], transport: TransportName,
) -> None:
    url, subscriptions = frames_then_close
    done = asyncio.Event()
    disconnects: list[BaseException] = []
    received: list[bytes] = []

    def on_message(frame: bytes) -> None:
        received.append(frame)
        if len(received) == 4:
            done.set()

    async def subscribe(ws: StreamConnection) -> None:
        await ws.send("subscribe")

    client = ResilientWebSocket(url, on_message=on_message, on_connect=subscribe,
                                on_disconnect=disconnects.append, clock=LiveClock(), backoff_settings=FAST,
                                transport=transport)
    await run_until(client, done)

    assert subscriptions == ["subscribe", "subscribe"]
    assert client.counters.reconnects == 1
    assert client.counters.last_close_code == 1011
    assert len(disconnects) == 1
    assert isinstance(disconnects[0], ConnectionClosedError)


@pytest.mark.parametrize("abrupt", [False, True])
async def test_disconnects_are_counted_by_who_ended_them(abrupt: bool, transport: TransportName) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send("hello")
        if abrupt:
            ws.transport.abort()  # TCP gone, no close frame
        else:
            await ws.close(1000, "bye")

    server, url = await start_server(handler)
    done = asyncio.Event()
    client = ResilientWebSocket(url, on_message=lambda f: None, on_disconnect=lambda e: done.set(),
                                clock=LiveClock(), backoff_settings=FAST, transport=transport)
    try:
        await run_until(client, done)
    finally:
        server.close()
        await server.wait_closed()

    assert client.counters.disconnects >= 1
    assert client.counters.closed_by_peer == (0 if abrupt else client.counters.disconnects)
    assert client.counters.connection_lost == (client.counters.disconnects if abrupt else 0)
    assert client.counters.last_close_code == (1006 if abrupt else 1000)


async def test_fatal_close_code_stops_the_client(transport: TransportName) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.close(1003, "unsupported data")

    server, url = await start_server(handler)
    client = ResilientWebSocket(url, on_message=lambda f: None, clock=LiveClock(), backoff_settings=FAST,
                                transport=transport)
    try:
        with pytest.raises(StreamFatalError, match="1003"):
            async with asyncio.timeout(10):
                await client.run()
    finally:
        server.close()
        await server.wait_closed()
    assert client.counters.connects == 1


async def test_rejected_handshake_with_429_waits_retry_after_then_connects(transport: TransportName) -> None:
    attempts = 0

    def process_request(conn: ServerConnection, request: Request) -> Response | None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            response = conn.respond(429, "slow down")
            response.headers["Retry-After"] = "7"
            return response
        return None

    async def handler(ws: ServerConnection) -> None:
        await ws.send("hello")
        await ws.wait_closed()

    server, url = await start_server(handler, process_request)
    clock = SimulatedClock()
    start = clock.monotonic_ns()
    done = asyncio.Event()
    client = ResilientWebSocket(url, on_message=lambda f: done.set(), clock=clock, backoff_settings=FAST,
                                stale_after_ms=0, transport=transport)
    try:
        await run_until(client, done)
    finally:
        server.close()
        await server.wait_closed()

    assert client.counters.connect_failures == 1
    assert clock.monotonic_ns() - start >= 7_000_000_000


async def test_rejected_handshake_with_404_is_fatal(transport: TransportName) -> None:
    def process_request(conn: ServerConnection, request: Request) -> Response:
        return conn.respond(404, "no such stream")

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    server, url = await start_server(handler, process_request)
    client = ResilientWebSocket(url, on_message=lambda f: None, clock=LiveClock(), backoff_settings=FAST,
                                transport=transport)
    try:
        with pytest.raises(StreamFatalError, match="404"):
            async with asyncio.timeout(10):
                await client.run()
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_connections_are_retried_with_growing_delays(transport: TransportName) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = SimulatedClock()
    settings = BackoffSettings(initial_delay_ms=100, factor=2, max_delay_ms=10_000, jitter=0.0)
    client = ResilientWebSocket(f"ws://127.0.0.1:{port}", on_message=lambda f: None, clock=clock,
                                backoff_settings=settings, stale_after_ms=0, transport=transport)
    start = clock.monotonic_ns()
    task = asyncio.create_task(client.run())
    try:
        await wait_for(lambda: client.counters.connect_failures >= 4)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    # Delays 0.1 + 0.2 + 0.4 were slept after the first three failures (the fourth may be sleeping).
    assert clock.monotonic_ns() - start >= 700_000_000


class SteppedClock:
    """A clock whose sleepers wake only when the test advances it, so the watchdog runs step by step."""

    def __init__(self) -> None:
        self._now_ns = 0
        self._moved = asyncio.Condition()

    def time_ns(self) -> int:
        return 1_700_000_000_000_000_000 + self._now_ns

    def monotonic_ns(self) -> int:
        return self._now_ns

    async def sleep(self, seconds: float) -> None:
        wake_at = self._now_ns + int(seconds * 1e9)
        async with self._moved:
            await self._moved.wait_for(lambda: self._now_ns >= wake_at)

    async def advance(self, seconds: float) -> None:
        async with self._moved:
            self._now_ns += int(seconds * 1e9)
            self._moved.notify_all()
        for _ in range(5):
            await asyncio.sleep(0)


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds (the client's counters have no events to wait on)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - a zero-length yield, not a timed wait
            await asyncio.sleep(0)


async def test_watchdog_replaces_a_connection_that_went_silent(transport: TransportName) -> None:
    send_one = asyncio.Queue[str]()
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        closing = asyncio.ensure_future(ws.wait_closed())
        while True:
            getting = asyncio.ensure_future(send_one.get())
            await asyncio.wait({getting, closing}, return_when=asyncio.FIRST_COMPLETED)
            if closing.done():
                getting.cancel()
                return
            await ws.send(getting.result())

    server, url = await start_server(handler)
    clock = SteppedClock()
    disconnects: list[BaseException] = []
    client = ResilientWebSocket(url, on_message=lambda f: None, on_disconnect=disconnects.append, clock=clock,
                                backoff_settings=FAST, stale_after_ms=1000, transport=transport)
    task = asyncio.create_task(client.run())
    try:
        await wait_for(lambda: client.connected)
        for i in range(6):  # 1.5 s of clock time, but a frame every 0.25 s: never stale
            await send_one.put(f"tick {i}")
            await wait_for(lambda i=i: client.counters.messages == i + 1)  # type: ignore[misc]
            await clock.advance(0.25)
        healthy_timeouts = client.counters.stale_timeouts

        for _ in range(6):  # then silence for 1.5 s
            await clock.advance(0.25)
        await wait_for(lambda: client.counters.stale_timeouts == 1)
        await clock.advance(0.01)  # the reconnect delay
        await wait_for(lambda: connections == 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.close()
        await server.wait_closed()

    assert healthy_timeouts == 0
    assert isinstance(disconnects[0], StaleStreamError)
    assert client.counters.connection_lost == 0  # our own abort is counted as a stale timeout only


async def test_handler_exception_is_counted_and_the_next_frame_still_arrives(
    frames_then_close: tuple[str, list[str]], transport: TransportName,
) -> None:
    url, _ = frames_then_close
    done = asyncio.Event()
    received: list[bytes] = []

    def on_message(frame: bytes) -> None:
        if frame == b'{"n":1}':
            raise KeyError("parser bug")
        received.append(frame)
        done.set()

    async def subscribe(ws: StreamConnection) -> None:
        await ws.send("subscribe")

    client = ResilientWebSocket(url, on_message=on_message, on_connect=subscribe, clock=LiveClock(),
                                backoff_settings=FAST, transport=transport)
    await run_until(client, done)

    assert received == [b'{"n":2}']
    assert client.counters.handler_errors == 1


async def test_frames_sent_during_the_handshake_wait_until_on_connect_has_run(transport: TransportName) -> None:
    """A venue subscribes in ``on_connect``; no frame may reach it before that is done, on either client."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send("first")  # sent at once: it can arrive with the handshake's answer
        await ws.send("second")
        await ws.wait_closed()

    server, url = await start_server(handler)
    order: list[str] = []
    done = asyncio.Event()

    async def on_connect(ws: StreamConnection) -> None:
        await asyncio.sleep(0.05)  # a subscription round trip, say (a real wait, which a frame could overtake)
        order.append("connected")

    def on_message(frame: bytes) -> None:
        order.append(frame.decode())
        if frame == b"second":
            done.set()

    client = ResilientWebSocket(url, on_message=on_message, on_connect=on_connect, clock=LiveClock(),
                                backoff_settings=FAST, transport=transport)
    try:
        await run_until(client, done)
    finally:
        server.close()
        await server.wait_closed()
    assert order == ["connected", "first", "second"]


async def test_a_fragmented_message_arrives_whole(transport: TransportName) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.send(["frag", "men", "ted"])  # one text message in three frames
        await ws.send("after")
        await ws.wait_closed()

    server, url = await start_server(handler)
    received: list[bytes] = []
    done = asyncio.Event()

    def on_message(frame: bytes) -> None:
        received.append(frame)
        if frame == b"after":
            done.set()

    client = ResilientWebSocket(url, on_message=on_message, clock=LiveClock(), backoff_settings=FAST,
                                transport=transport)
    try:
        await run_until(client, done)
    finally:
        server.close()
        await server.wait_closed()
    assert received == [b"fragmented", b"after"]
    assert client.counters.messages == 2


def test_picows_transport_is_refused_with_the_fix_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import botframe.streams as streams_module

    monkeypatch.setattr(streams_module, "picows_available", lambda: False)
    with pytest.raises(ValueError, match=r'pip install "botframe\[fast\]"'):
        ResilientWebSocket("ws://127.0.0.1:9", on_message=lambda f: None, clock=LiveClock(), transport="picows")
    with pytest.raises(ValidationError, match="transport"):
        VenueStreamSettings(transport="picows")
    with pytest.raises(ValueError, match="websockets"):
        ResilientWebSocket("ws://127.0.0.1:9", on_message=lambda f: None, clock=LiveClock(),
                           transport="aiohttp")  # type: ignore[arg-type]


async def test_send_without_a_connection_raises(transport: TransportName) -> None:
    client = ResilientWebSocket("ws://127.0.0.1:9", on_message=lambda f: None, clock=LiveClock(), transport=transport)

    with pytest.raises(ConnectionError):
        await client.send("x")


# -- REST against a real local server -------------------------------------------------------------------


Answer = tuple[int, bytes, dict[str, str]]
Answers = dict[str, list[Answer]]


@pytest.fixture
async def rest_server() -> AsyncIterator[tuple[str, Answers]]:
    """An aiohttp server answering each path with its queued (status, body, headers) (the last repeats)."""
    answers: Answers = {}
    never = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/hang":
            await never.wait()
        queue = answers[request.path]
        status, body, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.Response(status=status, body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", answers
    finally:
        never.set()
        await runner.cleanup()


async def test_rest_get_retries_a_503_then_returns_the_body(
    rest_server: tuple[str, Answers],
) -> None:
    base, answers = rest_server
    answers["/depth"] = [(503, b"busy", {}), (200, b'{"ok":1}', {})]

    async with RestClient(clock=SimulatedClock(), backoff_settings=FAST) as rest:
        body = await rest.get(f"{base}/depth", {"symbol": "BTCUSDT"})

    assert body == b'{"ok":1}'
    assert rest.retries == 1


async def test_rest_get_honours_retry_after_on_429(rest_server: tuple[str, Answers]) -> None:
    base, answers = rest_server
    answers["/depth"] = [(429, b"", {"Retry-After": "12"}), (200, b"{}", {})]
    clock = SimulatedClock()
    start = clock.monotonic_ns()

    async with RestClient(clock=clock, backoff_settings=FAST) as rest:
        await rest.get(f"{base}/depth")

    assert clock.monotonic_ns() - start >= 12_000_000_000


async def test_rest_get_does_not_retry_a_400(rest_server: tuple[str, Answers]) -> None:
    base, answers = rest_server
    answers["/depth"] = [(400, b'{"code":-1121,"msg":"Invalid symbol."}', {})]

    async with RestClient(clock=SimulatedClock(), backoff_settings=FAST) as rest:
        with pytest.raises(HttpStatusError, match="Invalid symbol") as caught:
            await rest.get(f"{base}/depth")

    assert caught.value.status == 400
    assert rest.requests == 1


async def test_rest_get_gives_up_after_max_attempts(rest_server: tuple[str, Answers]) -> None:
    base, answers = rest_server
    answers["/depth"] = [(502, b"", {})]

    async with RestClient(clock=SimulatedClock(), backoff_settings=FAST, max_attempts=3) as rest:
        with pytest.raises(HttpStatusError):
            await rest.get(f"{base}/depth")

    assert rest.requests == 3


async def test_rest_get_times_out_and_retries(rest_server: tuple[str, Answers]) -> None:
    base, _ = rest_server

    clock = SimulatedClock()
    async with RestClient(clock=clock, timeout_secs=0.05, backoff_settings=FAST, max_attempts=2) as rest:
        with pytest.raises(TimeoutError):
            await rest.get(f"{base}/hang")

    assert rest.requests == 2


async def test_rest_get_reports_each_retry_with_its_cause(rest_server: tuple[str, Answers]) -> None:
    base, answers = rest_server
    answers["/depth"] = [(429, b"", {}), (500, b"", {}), (200, b"{}", {})]
    causes: list[str] = []

    async with RestClient(clock=SimulatedClock(), backoff_settings=FAST) as rest:
        await rest.get(f"{base}/depth", on_retry=lambda error: causes.append(retry_cause(error)))

    assert causes == ["rate_limited", "server_error"]


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (HttpStatusError(429, "u"), "rate_limited"),
        (http_status(418), "rate_limited"),
        (HttpStatusError(503, "u"), "server_error"),
        (HttpStatusError(408, "u"), "http_408"),
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError(), "timeout"),
        (ConnectionRefusedError(), "connection"),
        (aiohttp.ServerDisconnectedError(), "connection"),
        (ValueError("bug"), "other"),
    ],
)
def test_retry_cause_names_why_a_request_failed(error: BaseException, cause: str) -> None:
    assert retry_cause(error) == cause


async def test_rest_get_outside_async_with_raises() -> None:
    rest = RestClient(clock=SimulatedClock())

    with pytest.raises(RuntimeError, match="async with"):
        await rest.get("http://127.0.0.1:9/")


# -- what every venue client does with its streams --------------------------------------------------------


def test_pacer_lets_a_burst_through_then_keeps_every_second_within_the_limit() -> None:
    pacer = RequestPacer(8)
    second = 1_000_000_000

    waits = [pacer.reserve(0) for _ in range(10)]

    assert waits[:8] == [0.0] * 8
    assert waits[8:] == [1.0, 1.0]
    assert pacer.reserve(3 * second) == 0.0


def test_pacer_below_one_per_second_spaces_every_frame() -> None:
    pacer = RequestPacer(0.5)

    assert [pacer.reserve(0) for _ in range(3)] == [0.0, 2.0, 4.0]


def most_sends_in_one_second(times_ns: list[int]) -> int:
    times_ns = sorted(times_ns)
    return max(sum(1 for t in times_ns if start <= t < start + 1_000_000_000) for start in times_ns)


def test_pacer_never_puts_more_than_the_limit_in_any_one_second_window() -> None:
    pacer = RequestPacer(8)
    now = 0
    times_ns = []
    for step in range(200):
        now += (step % 7) * 30_000_000
        times_ns.append(now + round(pacer.reserve(now) * 1e9))

    assert most_sends_in_one_second(times_ns) == 8


async def test_pacer_wait_sleeps_on_the_clock_only_once_the_window_is_full() -> None:
    clock = SimulatedClock()
    pacer = RequestPacer(2)
    start = clock.monotonic_ns()

    await pacer.wait(clock)
    await pacer.wait(clock)
    before_third = clock.monotonic_ns()
    await pacer.wait(clock)

    assert before_third == start
    assert clock.monotonic_ns() - start == 1_000_000_000


def test_pacers_refuse_a_rate_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="per_sec"):
        RequestPacer(0)
    with pytest.raises(ValueError, match="per_sec"):
        RequestQueue(0, SimulatedClock())


@pytest.fixture
async def recording_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that records every frame each connection sends it, and holds the connection open."""
    received: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosedError):
            async for message in ws:
                received.append(str(message))

    server, url = await start_server(handler)
    try:
        yield url, received
    finally:
        server.close()
        await server.wait_closed()


async def test_request_queue_sends_in_order_no_closer_than_its_interval(
    recording_server: tuple[str, list[str]], transport: TransportName,
) -> None:
    url, received = recording_server
    clock = SteppedClock()
    tasks = BackgroundTasks()
    queue = RequestQueue(2, clock)  # one request per 0.5 s

    async def subscribe(ws: StreamConnection) -> None:
        queue.start(stream, tasks, "requests")
        for frame in ("a", "b", "c"):
            queue.put(frame)

    stream = ResilientWebSocket(url, on_message=lambda f: None, on_connect=subscribe, clock=clock,
                                stale_after_ms=0, transport=transport)
    runner = asyncio.create_task(stream.run())
    try:
        await wait_for(lambda: received == ["a"])
        await clock.advance(0.4)  # not yet: the writer waits on the clock, not on time passing
        after_most_of_the_interval = list(received)
        await clock.advance(0.1)
        await wait_for(lambda: received == ["a", "b"])
        await clock.advance(0.5)
        await wait_for(lambda: received == ["a", "b", "c"])
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await tasks.cancel_all()

    assert after_most_of_the_interval == ["a"]


async def test_request_queue_start_drops_what_was_meant_for_the_last_connection(
    recording_server: tuple[str, list[str]],
) -> None:
    url, received = recording_server
    tasks = BackgroundTasks()
    queue = RequestQueue(1000, LiveClock())
    connected = asyncio.Event()

    async def on_connect(ws: StreamConnection) -> None:
        connected.set()

    stream = ResilientWebSocket(url, on_message=lambda f: None, on_connect=on_connect, clock=LiveClock(),
                                stale_after_ms=0)
    runner = asyncio.create_task(stream.run())
    try:
        async with asyncio.timeout(10):
            await connected.wait()
        queue.put("for the connection that is gone")
        queue.stop()

        queue.start(stream, tasks, "requests")
        queue.put("subscribe")
        await wait_for(lambda: received == ["subscribe"])
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await tasks.cancel_all()


async def test_run_streams_raises_the_first_fatal_error_itself_and_stops_the_others() -> None:
    async def refuse(ws: ServerConnection) -> None:
        await ws.close(1003, "unsupported data")

    async def hold(ws: ServerConnection) -> None:
        await ws.wait_closed()

    refusing, refusing_url = await start_server(refuse)
    holding, holding_url = await start_server(hold)
    before: list[str] = []

    async def before_connect() -> None:
        before.append("slot")

    healthy = ResilientWebSocket(holding_url, on_message=lambda f: None, clock=LiveClock(), name="healthy")
    failing = ResilientWebSocket(refusing_url, on_message=lambda f: None, clock=LiveClock(), name="failing",
                                 backoff_settings=FAST)
    try:
        with pytest.raises(StreamFatalError, match="1003"):
            async with asyncio.timeout(10):
                await run_streams([healthy, failing], before_connect=before_connect)
    finally:
        for server in (refusing, holding):
            server.close()
            await server.wait_closed()

    assert before == ["slot", "slot"]  # once per stream, before its first connection
    assert not healthy.connected  # cancelled with the failing one


async def test_run_streams_without_streams_says_so() -> None:
    with pytest.raises(RuntimeError, match="no stream"):
        await run_streams([])


def test_report_counters_adds_only_what_grew_since_the_last_report() -> None:
    counters = StreamCounters(messages=5, bytes=100, reconnects=0)
    reported: dict[str, int] = {}
    counted: list[tuple[str, int]] = []

    def count(name: str, symbol: str = "", n: int = 1) -> None:
        counted.append((name, n))

    report_counters(counters, reported, count)
    counters.messages += 2
    counters.reconnects += 1
    report_counters(counters, reported, count)
    report_counters(counters, reported, count)

    assert counted == [("messages", 5), ("bytes", 100), ("messages", 2), ("reconnects", 1)]


def test_disconnect_reason_is_stale_only_for_the_watchdog() -> None:
    stale = disconnect_reason(StaleStreamError("no message for 1000 ms"))
    dropped = disconnect_reason(ConnectionResetError("x" * 500))

    assert stale[0] is HealthReason.STALE
    assert dropped[0] is HealthReason.DISCONNECTED
    assert len(dropped[1]) == 200


def test_unreadable_frames_log_the_first_twenty_then_every_thousandth_cut_to_200_characters() -> None:
    frames = UnreadableFrames(structlog.get_logger("test"))

    with structlog.testing.capture_logs() as logs:
        for _ in range(2000):
            frames.log(b"x" * 500, "e" * 500, symbol="BTC/USD")

    assert frames.count == 2000
    assert [r["parse_errors"] for r in logs] == [*range(1, 21), 1000, 2000]
    assert logs[0]["event"] == "unreadable frame skipped"
    assert logs[0]["symbol"] == "BTC/USD"
    assert logs[0]["frame"] == "x" * 200
    assert logs[0]["error"] == "e" * 200


async def test_background_tasks_are_cancelled_and_awaited_together() -> None:
    tasks = BackgroundTasks()
    never = asyncio.Event()

    async def wait_forever() -> None:
        await never.wait()

    finished = tasks.spawn(asyncio.sleep(0), "quick")
    waiting = tasks.spawn(wait_forever(), "waiting")
    await finished

    assert len(tasks) == 1  # a task that ended is forgotten
    await tasks.cancel_all()

    assert waiting.cancelled()
    assert len(tasks) == 0


async def test_connect_stream_uses_the_venue_settings_and_delivers_frames(
    frames_then_close: tuple[str, list[str]],
) -> None:
    url, subscriptions = frames_then_close
    done = asyncio.Event()
    received: list[bytes] = []

    def on_message(frame: bytes) -> None:
        received.append(frame)
        if len(received) == 2:
            done.set()

    async def subscribe(ws: StreamConnection) -> None:
        await ws.send("subscribe")

    stream = connect_stream(url, VenueStreamSettings(backoff=FAST, stale_after_ms=0), on_message=on_message,
                            on_connect=subscribe, clock=LiveClock(), name="venue-0")
    await run_until(stream, done)

    assert stream.name == "venue-0"
    assert received == [b'{"n":1}', b'{"n":2}']
    assert subscriptions == ["subscribe"]


async def test_rest_client_of_a_venue_retries_until_the_exchange_answers(rest_server: tuple[str, Answers]) -> None:
    base, answers = rest_server
    busy: Answer = (503, b"", {})
    answers["/instruments"] = [busy] * 8 + [(200, b"[]", {})]  # more than RestClient's default 5

    async with rest_client(VenueStreamSettings(backoff=FAST), clock=SimulatedClock()) as rest:
        body = await rest.get(f"{base}/instruments")

    assert body == b"[]"
    assert rest.retries == 8
