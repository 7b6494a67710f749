"""A WebSocket client that stays connected, and a REST helper with the same retry policy.

Every venue's market data arrives through :class:`ResilientWebSocket`: it connects, lets the venue
(re)subscribe, hands each raw frame to the venue's parser, and when the connection breaks it decides, with
the pure policy below, whether to try again and how long to wait.

Policy as pure functions (unit-tested without a socket, like ``websockets``' own ``backoff()`` and
``process_exception()``):

* :func:`backoff` yields reconnect delays: exponential from ``initial_delay_ms`` by ``factor`` up to
  ``max_delay_ms``, each shortened by a random part (``jitter``) so a fleet of clients does not reconnect
  in step. The connect loop starts a fresh generator after a connection stayed up ``reset_after_secs``.
* :func:`classify` says whether an error or a close code is worth retrying (``RETRY``) or will fail the
  same way again (``FATAL``); :func:`retry_after_secs` reads a server's ``Retry-After``.

Errors, and what :func:`classify` makes of them::

    OSError (DNS failure, refused, reset), TimeoutError ............ RETRY
        ssl.SSLCertVerificationError .............................. FATAL  (a bad certificate stays bad)
    websockets InvalidStatus / HttpStatusError / aiohttp ClientResponseError, by HTTP status:
        408, 418 (Binance IP ban), 425, 429, 5xx .................. RETRY  (honouring Retry-After)
        any other status .......................................... FATAL  (bad URL, auth, request)
    websockets InvalidMessage (EOF during the handshake) ............ RETRY
    other websockets InvalidHandshake, InvalidURI, InvalidProxy ..... FATAL
    ConnectionClosed, by the close code received (or sent, or 1006):
        1003, 1007, 1009, 1010 .................................... FATAL  (what we send is refused)
        anything else (1000, 1001, 1006, 1011-1014, 4xxx) ......... RETRY
    StaleStreamError (the watchdog found no message in time) ........ RETRY
    aiohttp ClientConnectionError / ClientPayloadError .............. RETRY
    anything else (ValueError from a bad URL, a bug) ................ FATAL

The receive loop does one ``await recv()`` and one callback per frame and nothing else: no decode
(frames are passed as the ``bytes`` on the wire; msgspec decodes bytes directly), no logging, no clock
read. The stale watchdog compares the message counter at intervals of the injected clock instead.

What every venue client does with its streams is here too, so each venue keeps only what is its own:
:class:`VenueStreamSettings` (the connection settings every venue section has, satisfying
:class:`StreamSettings` and :class:`RestSettings`), :func:`connect_stream` and :func:`rest_client` (a
stream and a REST client built from them), :func:`run_streams` (every stream under one task group until
one fails for good), :class:`BackgroundTasks` (request writers, keepalives, snapshot fetches: cancelled
together when the client stops), :func:`report_counters` (a connection's counters added to the venue's),
:func:`disconnect_reason`, :class:`UnreadableFrames` (the one log line per unreadable frame), and two
request pacers: :class:`RequestPacer` (a sliding one-second window, shared by a venue's connections) and
:class:`RequestQueue` (one connection's requests, in order, evenly spaced).
"""

from __future__ import annotations

import asyncio
import enum
import random
import ssl
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, Protocol, TypeVar, cast

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidProxy,
    InvalidStatus,
    InvalidURI,
)

from .events import BookHealth, HealthReason

if TYPE_CHECKING:
    from .clock import Clock
    from .picows_transport import PicowsConnection
    from .venues import VenueContext

__all__ = [
    "FRAME_EXCERPT_CHARS",
    "REPORTED_COUNTERS",
    "BackgroundTasks",
    "BackoffSettings",
    "Disposition",
    "HttpStatusError",
    "RequestPacer",
    "RequestQueue",
    "ResilientWebSocket",
    "RestClient",
    "RestSettings",
    "StaleStreamError",
    "StreamConnection",
    "StreamCounters",
    "StreamFatalError",
    "StreamSettings",
    "StreamingVenueClient",
    "TransportName",
    "UnreadableFrames",
    "VenueStreamSettings",
    "backoff",
    "classify",
    "close_code",
    "connect_stream",
    "disconnect_reason",
    "frame_excerpt",
    "parse_retry_after",
    "picows_available",
    "report_counters",
    "rest_client",
    "retry_after_secs",
    "retry_cause",
    "run_streams",
]

_log = structlog.get_logger("botframe.streams")

#: Which WebSocket client a stream uses: ``websockets`` (the default) or ``picows`` (optional, faster;
#: ``pip install "botframe[fast]"``, see :mod:`botframe.picows_transport`).
TransportName = Literal["websockets", "picows"]


class StreamConnection(Protocol):
    """What venue code may use of an open connection, whichever transport opened it."""

    @property
    def latency(self) -> float:
        """Round trip of the last keepalive ping, seconds (0.0 when not measured)."""

    @property
    def transport(self) -> asyncio.Transport:
        """The socket's asyncio transport (``abort()`` drops the connection at once)."""

    async def send(self, message: str | bytes) -> None:
        """Send a text (``str``) or binary (``bytes``) message."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code``; the stream then reconnects as after any disconnect."""


MessageHandler = Callable[[bytes], None]
ConnectHandler = Callable[[StreamConnection], Awaitable[None]]
DisconnectHandler = Callable[[BaseException], None]


def picows_available() -> bool:
    """Whether the optional picows transport can be used (the package is installed)."""
    try:
        import picows  # noqa: F401
    except ImportError:
        return False
    return True

#: The largest frame a stream accepts unless told otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024

# Close codes (RFC 6455 section 7.4) that mean the peer refuses what we send or negotiate.
_FATAL_CLOSE_CODES = frozenset({1003, 1007, 1009, 1010})
_RETRY_HTTP_STATUSES = frozenset({408, 418, 425, 429})
_ABNORMAL_CLOSURE = 1006


class Disposition(enum.StrEnum):
    """What to do after an error: try again (after a delay) or give up and report it."""

    RETRY = "retry"
    FATAL = "fatal"


class StaleStreamError(Exception):
    """No message arrived within ``stale_after_ms``; the connection was replaced."""


class StreamFatalError(Exception):
    """A connection error that retrying would not fix; ``__cause__`` is the original error."""


class HttpStatusError(Exception):
    """A REST request answered with an error status."""

    def __init__(self, status: int, url: str, body: str = "", retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200]}")
        self.status = status
        self.url = url
        self.body = body
        #: The raw ``Retry-After`` header, if any (see :func:`retry_after_secs`).
        self.retry_after = retry_after


class BackoffSettings(BaseModel):
    """Delays between reconnect (or REST retry) attempts, with units in the names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_delay_ms: float = Field(default=500.0, ge=0, description="first delay before jitter")
    factor: float = Field(default=2.0, ge=1.0, description="each delay is the previous one times this")
    max_delay_ms: float = Field(default=30_000.0, ge=0, description="delays never exceed this")
    jitter: float = Field(default=0.5, ge=0.0, le=1.0, description="random fraction taken off each delay")
    reset_after_secs: float = Field(
        default=60.0, ge=0, description="a connection up this long starts the delays again from the first"
    )


# -- pure policy ----------------------------------------------------------------------------------------


def backoff(settings: BackoffSettings, rng: Callable[[], float] = random.random) -> Iterator[float]:
    """Reconnect delays in seconds: ``initial * factor**n`` capped at ``max``, less up to ``jitter`` of it."""
    delay_ms = min(settings.initial_delay_ms, settings.max_delay_ms)
    while True:
        yield delay_ms * (1.0 - settings.jitter * rng()) / 1000.0
        delay_ms = min(delay_ms * settings.factor, settings.max_delay_ms)


def close_code(exc: ConnectionClosed) -> int:
    """The close code that ended a connection: the peer's, else ours, else 1006 (no close frame)."""
    if exc.rcvd is not None:
        return exc.rcvd.code
    if exc.sent is not None:
        return exc.sent.code
    return _ABNORMAL_CLOSURE


def _classify_status(status: int) -> Disposition:
    if status in _RETRY_HTTP_STATUSES or status >= 500:
        return Disposition.RETRY
    return Disposition.FATAL


def classify(error: BaseException | int) -> Disposition:
    """Retry or give up after ``error`` (an exception, or a WebSocket close code); see the module table."""
    if isinstance(error, int):
        return Disposition.FATAL if error in _FATAL_CLOSE_CODES else Disposition.RETRY
    if isinstance(error, StaleStreamError):
        return Disposition.RETRY
    if isinstance(error, ConnectionClosed):
        return classify(close_code(error))
    if isinstance(error, InvalidStatus):
        return _classify_status(error.response.status_code)
    if isinstance(error, HttpStatusError):
        return _classify_status(error.status)
    if isinstance(error, aiohttp.ClientResponseError):
        return _classify_status(error.status)
    if isinstance(error, InvalidMessage):
        return Disposition.RETRY
    if isinstance(error, InvalidHandshake | InvalidURI | InvalidProxy):
        return Disposition.FATAL
    if isinstance(error, ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError):
        return Disposition.FATAL
    if isinstance(error, aiohttp.InvalidURL):
        return Disposition.FATAL
    if isinstance(error, OSError | TimeoutError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return Disposition.RETRY
    return Disposition.FATAL


def _error_status(error: BaseException) -> int | None:
    if isinstance(error, HttpStatusError | aiohttp.ClientResponseError):
        return error.status
    if isinstance(error, InvalidStatus):
        return error.response.status_code
    return None


def retry_cause(error: BaseException) -> str:
    """A short name for why a retryable request failed, for counters.

    ``rate_limited`` (429, and 418: Binance's ban after ignoring 429s), ``server_error`` (5xx),
    ``timeout``, ``connection`` (refused, reset, closed mid-answer), ``http_<status>`` for other
    retryable statuses (408, 425), or ``other``.
    """
    status = _error_status(error)
    if status is not None:
        if status in (418, 429):
            return "rate_limited"
        if status >= 500:
            return "server_error"
        return f"http_{status}"
    # Before OSError: aiohttp's timeout errors are connection errors too.
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, OSError | aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | InvalidMessage):
        return "connection"
    return "other"


def parse_retry_after(value: str | None, now_epoch_secs: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now_epoch_secs)


def _header(headers: Mapping[str, str] | Any, name: str) -> str | None:
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return value if isinstance(value, str) else None


def retry_after_secs(error: BaseException, now_epoch_secs: float) -> float | None:
    """The server's requested wait in seconds, when ``error`` carries a ``Retry-After``."""
    if isinstance(error, HttpStatusError):
        return parse_retry_after(error.retry_after, now_epoch_secs)
    if isinstance(error, InvalidStatus):
        return parse_retry_after(_header(error.response.headers, "Retry-After"), now_epoch_secs)
    if isinstance(error, aiohttp.ClientResponseError) and error.headers is not None:
        return parse_retry_after(_header(error.headers, "Retry-After"), now_epoch_secs)
    return None


# -- WebSocket ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class StreamCounters:
    """Counters of one logical connection (they survive reconnects)."""

    connects: int = 0  # opening handshakes that succeeded
    reconnects: int = 0  # of those, the ones after the first
    connect_failures: int = 0  # attempts that failed before the handshake completed
    disconnects: int = 0  # established connections that ended
    messages: int = 0
    bytes: int = 0
    parse_errors: int = 0  # counted by the venue's parser, which knows what a bad frame is
    handler_errors: int = 0  # the message callback raised (a bug: logged, the frame skipped)
    stale_timeouts: int = 0
    closed_by_peer: int = 0  # ended by the server's close frame (a drop, a restart: 1000, 1001, 1012...)
    connection_lost: int = 0  # ended with no close frame either way (TCP reset or EOF: 1006), not by us
    last_close_code: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class ResilientWebSocket:
    """One logical WebSocket connection that reconnects by itself until cancelled.

    ``on_message(frame)`` gets every frame as ``bytes``, synchronously, in order; it must not raise (a
    raise is counted in ``handler_errors`` and the frame skipped). ``on_connect(ws)`` runs after each
    successful handshake, before any frame is read: send subscriptions there. ``on_disconnect(error)``
    runs when an established connection ends (``StaleStreamError`` when the watchdog replaced it).

    :meth:`run` returns only by raising: ``CancelledError`` when the owner stops it, or
    :class:`StreamFatalError` when :func:`classify` calls an error fatal.
    """

    def __init__(
        self,
        url: str,
        *,
        on_message: MessageHandler,
        clock: Clock,
        on_connect: ConnectHandler | None = None,
        on_disconnect: DisconnectHandler | None = None,
        name: str = "",
        backoff_settings: BackoffSettings | None = None,
        stale_after_ms: float = 30_000.0,
        ping_interval_secs: float | None = 20.0,
        ping_timeout_secs: float | None = 20.0,
        open_timeout_secs: float = 10.0,
        close_timeout_secs: float = 2.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_queue: int = 256,
        rng: Callable[[], float] = random.random,
        log: structlog.typing.FilteringBoundLogger | None = None,
        transport: TransportName = "websockets",
    ) -> None:
        if transport not in ("websockets", "picows"):
            raise ValueError(f"transport must be 'websockets' or 'picows', not {transport!r}")
        if transport == "picows" and not picows_available():
            raise ValueError('transport "picows" needs the picows package: pip install "botframe[fast]"')
        self.url = url
        self.name = name or url
        self.transport = transport
        self.counters = StreamCounters()
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._clock = clock
        self._backoff = backoff_settings or BackoffSettings()
        self._stale_after_ns = int(stale_after_ms * 1_000_000)
        self._ping_interval = ping_interval_secs
        self._ping_timeout = ping_timeout_secs
        self._open_timeout = open_timeout_secs
        self._close_timeout = close_timeout_secs
        self._max_size = max_message_bytes
        self._max_queue = max_queue
        self._rng = rng
        self._log = (log or _log).bind(stream=self.name)
        self._ws: StreamConnection | None = None
        self._stale = False

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def latency_secs(self) -> float:
        """Round trip of the last keepalive ping (0 before the first pong)."""
        return self._ws.latency if self._ws is not None else 0.0

    async def send(self, message: str | bytes) -> None:
        """Send on the current connection; raises ``ConnectionError`` when there is none."""
        ws = self._ws
        if ws is None:
            raise ConnectionError(f"{self.name}: not connected")
        await ws.send(message)

    async def close_connection(self, code: int = 1000, reason: str = "") -> None:
        """Close the current connection (if any) with ``code``; :meth:`run` then reconnects as usual."""
        ws = self._ws
        if ws is not None:
            await ws.close(code, reason)

    async def run(self) -> NoReturn:
        """Connect, stream, and reconnect on every retryable error, forever."""
        delays = backoff(self._backoff, self._rng)
        reset_after_ns = int(self._backoff.reset_after_secs * 1e9)
        while True:
            connected_at_ns: int | None = None
            try:
                async with self._connect() as ws:
                    connected_at_ns = self._clock.monotonic_ns()
                    self._on_opened(ws)
                    if self._on_connect is not None:
                        await self._on_connect(ws)
                    await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error: BaseException = exc
            finally:
                self._ws = None
            if self._stale:
                self._stale = False
                error = StaleStreamError(f"no message for {self._stale_after_ns / 1e6:.0f} ms")
            if isinstance(error, ConnectionClosed):
                self.counters.last_close_code = close_code(error)
            if connected_at_ns is not None:
                self.counters.disconnects += 1
                self._count_cause(error)
                if self._on_disconnect is not None:
                    self._on_disconnect(error)
                if self._clock.monotonic_ns() - connected_at_ns >= reset_after_ns:
                    delays = backoff(self._backoff, self._rng)
            else:
                self.counters.connect_failures += 1
            if classify(error) is Disposition.FATAL:
                self._log.error("stream failed; not retrying", error=repr(error))
                raise StreamFatalError(f"{self.name}: {error!r}") from error
            delay = next(delays)
            server_wait = retry_after_secs(error, self._clock.time_ns() / 1e9)
            if server_wait is not None and server_wait > delay:
                delay = server_wait
            self._log.warning(
                "connect failed; retrying" if connected_at_ns is None else "disconnected; reconnecting",
                error=repr(error)[:300],
                delay_secs=round(delay, 3),
                reconnects=self.counters.reconnects,
            )
            await self._clock.sleep(delay)

    def _connect(self) -> AbstractAsyncContextManager[StreamConnection]:
        """A connection to ``url`` over the chosen transport (an ``async with`` closes it)."""
        if self.transport == "picows":
            from . import picows_transport

            return picows_transport.connect(
                self.url,
                self._deliver,
                open_timeout_secs=self._open_timeout,
                close_timeout_secs=self._close_timeout,
                ping_interval_secs=self._ping_interval,
                ping_timeout_secs=self._ping_timeout,
                max_message_bytes=self._max_size,
            )
        return connect(
            self.url,
            open_timeout=self._open_timeout,
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_timeout,
            close_timeout=self._close_timeout,
            max_size=self._max_size,
            max_queue=self._max_queue,
            # Market data is latency-bound; inflating every frame costs more than it saves.
            compression=None,
        )

    def _count_cause(self, error: BaseException) -> None:
        # Who ended it: the peer's close frame, or nobody (the TCP connection just went away). Ours (the
        # watchdog, a keepalive timeout) are counted where they happen.
        if isinstance(error, ConnectionClosed):
            if error.rcvd is not None:
                self.counters.closed_by_peer += 1
            elif error.sent is None:
                self.counters.connection_lost += 1

    def _on_opened(self, ws: StreamConnection) -> None:
        self._ws = ws
        self._stale = False
        counters = self.counters
        if counters.connects:
            counters.reconnects += 1
        counters.connects += 1
        self._log.info("stream connected", connects=counters.connects, transport=self.transport)

    async def _serve(self, ws: StreamConnection) -> NoReturn:
        watchdog = None
        if self._stale_after_ns:
            watchdog = asyncio.create_task(self._watch(ws), name=f"{self.name}-watchdog")
        try:
            if isinstance(ws, ClientConnection):
                await self._receive(ws)
            else:  # picows hands every frame to _deliver from its own callback
                await cast("PicowsConnection", ws).run_until_closed()
        finally:
            if watchdog is not None:
                watchdog.cancel()
                try:
                    await watchdog
                except asyncio.CancelledError:
                    # Our own cancellation of the watchdog; re-raise if we are being cancelled too.
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise

    async def _receive(self, ws: ClientConnection) -> NoReturn:
        recv = ws.recv
        deliver = self._deliver
        while True:
            deliver(await recv(False))  # bytes as received: no UTF-8 decode, msgspec reads bytes

    def _deliver(self, frame: bytes) -> None:
        """One received message: counted, then handed to ``on_message`` (a raise is counted, not fatal)."""
        counters = self.counters
        counters.messages += 1
        counters.bytes += len(frame)
        try:
            self._on_message(frame)
        except Exception:
            counters.handler_errors += 1
            if counters.handler_errors == 1 or counters.handler_errors % 10_000 == 0:
                self._log.exception(
                    "message handler failed; frame skipped",
                    frame=bytes(frame[:200]).decode("utf-8", "replace"),
                    handler_errors=counters.handler_errors,
                )

    async def _watch(self, ws: StreamConnection) -> None:
        """Replace the connection when the message counter stops moving for ``stale_after_ms``."""
        clock = self._clock
        stale_ns = self._stale_after_ns
        check_secs = max(stale_ns / 4e9, 0.001)
        seen = self.counters.messages
        since = clock.monotonic_ns()
        while True:
            await clock.sleep(check_secs)
            now = clock.monotonic_ns()
            count = self.counters.messages
            if count != seen:
                seen, since = count, now
            elif now - since >= stale_ns:
                self._stale = True
                self.counters.stale_timeouts += 1
                # Abort rather than close: a silent peer would hold a closing handshake for close_timeout.
                ws.transport.abort()
                return


# -- REST -----------------------------------------------------------------------------------------------


class RestClient:
    """GET requests with a timeout and the same retry policy as the streams (``async with`` it).

    Retryable failures (see :func:`classify`) are retried after :func:`backoff` delays, or after the
    server's ``Retry-After`` when longer, up to ``max_attempts`` (None: until cancelled); the last error
    is raised otherwise. Error statuses raise :class:`HttpStatusError`.
    """

    def __init__(
        self,
        *,
        clock: Clock,
        timeout_secs: float = 10.0,
        backoff_settings: BackoffSettings | None = None,
        max_attempts: int | None = 5,
        rng: Callable[[], float] = random.random,
        log: structlog.typing.FilteringBoundLogger | None = None,
        user_agent: str = "botframe",
    ) -> None:
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_secs)
        self._backoff = backoff_settings or BackoffSettings()
        self._max_attempts = max_attempts
        self._rng = rng
        self._log = log or _log
        self._headers = {"User-Agent": user_agent}
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.retries = 0

    async def __aenter__(self) -> RestClient:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(
        self,
        url: str,
        params: Mapping[str, str | int] | None = None,
        *,
        max_attempts: int | None = -1,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> bytes:
        """The body of ``GET url?params``; ``max_attempts`` overrides the client's (-1: keep it).

        ``on_retry(error)`` is called for each failure that will be retried (before the delay), so the
        caller can count them by :func:`retry_cause`.
        """
        session = self._session
        if session is None:
            raise RuntimeError("RestClient is not open; use 'async with RestClient(...)'")
        attempts_allowed = self._max_attempts if max_attempts == -1 else max_attempts
        delays = backoff(self._backoff, self._rng)
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                async with session.get(url, params=params) as response:
                    body = await response.read()
                    if response.status >= 400:
                        raise HttpStatusError(
                            response.status,
                            str(response.url),
                            body[:500].decode("utf-8", "replace"),
                            response.headers.get("Retry-After"),
                        )
                    return body
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if classify(exc) is Disposition.FATAL or (
                    attempts_allowed is not None and attempt >= attempts_allowed
                ):
                    raise
                delay = next(delays)
                server_wait = retry_after_secs(exc, self._clock.time_ns() / 1e9)
                if server_wait is not None and server_wait > delay:
                    delay = server_wait
                self.retries += 1
                if on_retry is not None:
                    on_retry(exc)
                self._log.warning(
                    "REST request failed; retrying",
                    url=url,
                    error=repr(exc)[:300],
                    attempt=attempt,
                    delay_secs=round(delay, 3),
                )
                await self._clock.sleep(delay)


# -- what every venue client does with its streams --------------------------------------------------------

#: Characters of a frame (or REST body) kept when one is logged: enough to see what it was, never a flood.
FRAME_EXCERPT_CHARS = 200

#: Stream counters a venue adds to its own counters (``VenueContext.count``) as they grow.
REPORTED_COUNTERS = ("messages", "bytes", "reconnects", "stale_timeouts", "handler_errors")

#: ``VenueContext.count``: add ``n`` to a named counter (per symbol when given).
CountFn = Callable[..., None]


class StreamSettings(Protocol):
    """The settings :func:`connect_stream` reads (a venue's settings model has them; see
    :class:`VenueStreamSettings`)."""

    @property
    def backoff(self) -> BackoffSettings: ...

    @property
    def stale_after_ms(self) -> float: ...

    @property
    def ping_interval_secs(self) -> float: ...

    @property
    def ping_timeout_secs(self) -> float: ...

    @property
    def open_timeout_secs(self) -> float: ...

    @property
    def transport(self) -> TransportName: ...


class RestSettings(Protocol):
    """The settings :func:`rest_client` reads."""

    @property
    def backoff(self) -> BackoffSettings: ...

    @property
    def http_timeout_secs(self) -> float: ...


class VenueStreamSettings(BaseModel):
    """How a venue keeps its connections healthy: the fields every ``[venues.X]`` section shares.

    A venue's settings model derives from it and adds its own fields; it may redeclare
    ``stale_after_ms`` with the default and description its protocol's heartbeats call for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backoff: BackoffSettings = Field(
        default_factory=BackoffSettings, description="reconnect and REST retry delays"
    )
    stale_after_ms: int = Field(
        default=30_000, ge=0, description="replace a connection that sent nothing for this long; 0 disables"
    )
    ping_interval_secs: float = Field(default=20.0, gt=0, description="WebSocket keepalive ping interval")
    ping_timeout_secs: float = Field(
        default=20.0, gt=0, description="drop a connection whose keepalive ping waits this long"
    )
    open_timeout_secs: float = Field(default=10.0, gt=0, description="limit on the opening handshake")
    http_timeout_secs: float = Field(default=10.0, gt=0, description="limit on each REST request")
    transport: TransportName = Field(
        default="websockets",
        description='WebSocket client: "websockets", or "picows" (about 10x cheaper per frame; '
                    'pip install "botframe[fast]")',
    )

    @field_validator("transport")
    @classmethod
    def _transport_installed(cls, value: TransportName) -> TransportName:
        if value == "picows" and not picows_available():
            raise ValueError('"picows" is not installed: pip install "botframe[fast]", or use "websockets"')
        return value


def connect_stream(
    url: str,
    settings: StreamSettings,
    *,
    on_message: MessageHandler,
    clock: Clock,
    name: str,
    on_connect: ConnectHandler | None = None,
    on_disconnect: DisconnectHandler | None = None,
    rng: Callable[[], float] = random.random,
    log: structlog.typing.FilteringBoundLogger | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> ResilientWebSocket:
    """A :class:`ResilientWebSocket` to ``url`` with a venue's reconnect, watchdog and keepalive settings."""
    return ResilientWebSocket(
        url,
        on_message=on_message,
        on_connect=on_connect,
        on_disconnect=on_disconnect,
        clock=clock,
        name=name,
        backoff_settings=settings.backoff,
        stale_after_ms=settings.stale_after_ms,
        ping_interval_secs=settings.ping_interval_secs,
        ping_timeout_secs=settings.ping_timeout_secs,
        open_timeout_secs=settings.open_timeout_secs,
        max_message_bytes=max_message_bytes,
        rng=rng,
        log=log,
        transport=settings.transport,
    )


def rest_client(
    settings: RestSettings,
    *,
    clock: Clock,
    rng: Callable[[], float] = random.random,
    log: structlog.typing.FilteringBoundLogger | None = None,
) -> RestClient:
    """A :class:`RestClient` with a venue's timeout and backoff that retries until cancelled (``async with`` it).

    A venue's start-up needs its instruments however long the exchange takes to answer; an answer not
    worth retrying (see :func:`classify`) still raises at once.
    """
    return RestClient(
        clock=clock,
        timeout_secs=settings.http_timeout_secs,
        backoff_settings=settings.backoff,
        max_attempts=None,
        rng=rng,
        log=log,
    )


async def run_streams(
    streams: Sequence[ResilientWebSocket], *, before_connect: Callable[[], Awaitable[None]] | None = None
) -> NoReturn:
    """Run every stream under one task group until cancelled, or until one fails for good.

    A :class:`StreamFatalError` of any stream cancels the others and is raised as itself (not inside an
    ``ExceptionGroup``), so the engine's log names what failed. ``before_connect`` is awaited by each
    stream before its first connection (a venue that paces opening connections against a rate limit).
    """

    async def run(stream: ResilientWebSocket) -> None:
        if before_connect is not None:
            await before_connect()
        await stream.run()

    try:
        async with asyncio.TaskGroup() as group:
            for stream in streams:
                group.create_task(run(stream), name=stream.name)
    except* StreamFatalError as failures:
        raise failures.exceptions[0] from None
    raise RuntimeError("no stream to run" if not streams else "every stream ended without an error")


def disconnect_reason(error: BaseException) -> tuple[HealthReason, str]:
    """Why a connection's books left LIVE, and the detail to say so: the watchdog's STALE, or DISCONNECTED."""
    reason = HealthReason.STALE if isinstance(error, StaleStreamError) else HealthReason.DISCONNECTED
    return reason, repr(error)[:FRAME_EXCERPT_CHARS]


def report_counters(
    counters: StreamCounters, reported: dict[str, int], count: CountFn, names: Iterable[str] = REPORTED_COUNTERS
) -> None:
    """Add what ``counters`` gained since the last report to the venue's counters (``count(name, n=...)``).

    ``reported`` holds the values reported so far (one dict per connection, empty at first); it is
    updated in place. Called when a connection ends and when the client stops, so the summary is whole.
    """
    for name in names:
        value = getattr(counters, name)
        delta = value - reported.get(name, 0)
        if delta:
            count(name, n=delta)
            reported[name] = value


def frame_excerpt(frame: bytes) -> str:
    """The first :data:`FRAME_EXCERPT_CHARS` of a frame, as text, whatever its bytes."""
    return bytes(frame[:FRAME_EXCERPT_CHARS]).decode("utf-8", "replace")


class UnreadableFrames:
    """Logs frames a venue could not read: the first 20, then every 1000th, each cut to an excerpt.

    A broken feed can send thousands of bad frames a second; the counters (``parse_errors``) count them
    all, the log shows enough of them to see what they are.
    """

    __slots__ = ("_log", "count")

    def __init__(self, log: structlog.typing.FilteringBoundLogger) -> None:
        self._log = log
        self.count = 0

    def log(self, frame: bytes, error: str, **context: Any) -> None:
        """Count one unreadable frame and log it (when its turn) with ``context`` (symbol, channel...)."""
        self.count += 1
        if self.count <= 20 or self.count % 1000 == 0:
            self._log.warning(
                "unreadable frame skipped",
                **context,
                error=error[:FRAME_EXCERPT_CHARS],  # a parser's message may quote the frame itself
                frame=frame_excerpt(frame),
                parse_errors=self.count,
            )


class _ConnectionRecord(Protocol):
    """What :class:`StreamingVenueClient` needs of a venue client's record of one connection."""

    stream: ResilientWebSocket | None
    reported: dict[str, int]  # stream counters already added to the venue's (see report_counters)


ConnT = TypeVar("ConnT", bound=_ConnectionRecord)


class StreamingVenueClient(ABC, Generic[ConnT]):
    """What the bundled venue clients share about their connections: counters, a clean stop, a restart.

    A subclass sets ``context``, ``_connections``, ``_tasks`` and ``_log`` in its ``__init__`` and says
    which books it keeps (``_book_symbols``). ``_reported_counters`` names the stream counters added to
    the venue's counters (:func:`report_counters`).
    """

    context: VenueContext
    _connections: list[ConnT]
    _tasks: BackgroundTasks
    _log: structlog.typing.FilteringBoundLogger
    _reported_counters: tuple[str, ...] = REPORTED_COUNTERS

    @abstractmethod
    def _book_symbols(self) -> Iterable[str]:
        """The unified symbols whose books this client keeps."""

    def stream_counters(self) -> list[StreamCounters]:
        """Counters of each connection (messages, bytes, reconnects, parse errors...)."""
        return [c.stream.counters for c in self._connections if c.stream is not None]

    def _report_counters(self, conn: ConnT) -> None:
        if conn.stream is not None:
            report_counters(conn.stream.counters, conn.reported, self.context.count, self._reported_counters)

    async def _stop(self) -> None:
        """Cancel the client's tasks, report the last counters, and mark every book CONNECTING (stopped)."""
        await self._tasks.cancel_all()
        for conn in self._connections:
            self._report_counters(conn)
        for symbol in self._book_symbols():
            self.context.set_health(symbol, BookHealth.CONNECTING, HealthReason.STOPPED)

    def _reconnect(self, conn: ConnT, reason: str) -> None:
        """Close ``conn``'s current connection (code 1000) so that it reconnects and starts afresh."""
        stream = conn.stream
        if stream is None or not stream.connected:
            return
        self._log.warning("closing the connection to start afresh", connection=stream.name, reason=reason)
        self._tasks.spawn(stream.close_connection(1000, reason[:100]), f"{stream.name}-close")


class BackgroundTasks:
    """Tasks a venue client starts beside its streams (request writers, keepalives, snapshot fetches).

    Each task is kept until it ends; :meth:`cancel_all` cancels those still running and waits for them,
    so none outlives the client.
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task owned here."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class RequestPacer:
    """At most ``per_sec`` frames in any window of one second.

    ``reserve(now_ns)`` (pure: it only computes waits) books the next send and returns how long to wait
    before it, in seconds; :meth:`wait` reserves and sleeps on a clock. A burst
    of ``floor(per_sec)`` goes at once; later ones wait until the oldest of the window has aged out, so
    no sliding window ever holds more than the venue allows. One pacer can serve every connection of a
    venue whose limit is per IP.
    """

    __slots__ = ("_limit", "_sent", "_window_ns")

    def __init__(self, per_sec: float) -> None:
        if per_sec <= 0:
            raise ValueError(f"per_sec must be > 0, got {per_sec}")
        self._limit = max(1, int(per_sec))
        self._window_ns = int(self._limit / per_sec * 1e9)
        self._sent: deque[int] = deque()

    def reserve(self, now_ns: int) -> float:
        sent = self._sent
        at = now_ns
        if len(sent) >= self._limit:
            at = max(now_ns, sent.popleft() + self._window_ns)
        sent.append(at)
        return (at - now_ns) / 1e9

    async def wait(self, clock: Clock) -> None:
        """Reserve the next send and sleep until it may go."""
        delay = self.reserve(clock.monotonic_ns())
        if delay > 0:
            await clock.sleep(delay)


class RequestQueue:
    """One connection's requests, sent in order and no closer together than ``1 / per_sec`` seconds.

    ``put`` queues a frame at once (from synchronous frame handlers). :meth:`start` on each fresh
    connection drops what was queued for the previous one and starts a writer task that sends on it;
    :meth:`stop` when the connection is gone. The spacing carries over reconnects, so a venue that counts
    requests per connection never sees a burst on a fresh one.
    """

    __slots__ = ("_clock", "_interval_ns", "_next_send_ns", "_outbox", "_writer")

    def __init__(self, per_sec: float, clock: Clock) -> None:
        if per_sec <= 0:
            raise ValueError(f"per_sec must be > 0, got {per_sec}")
        self._interval_ns = int(1e9 / per_sec)
        self._clock = clock
        self._next_send_ns = 0
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    def put(self, frame: str) -> None:
        """Queue ``frame`` to be sent on the current connection."""
        self._outbox.put_nowait(frame)

    def start(self, stream: ResilientWebSocket, tasks: BackgroundTasks, name: str) -> None:
        """A fresh connection of ``stream``: forget requests meant for the last one, send from now on."""
        self.stop()
        while not self._outbox.empty():
            self._outbox.get_nowait()
        self._writer = tasks.spawn(self._send_queued(stream), name)

    def stop(self) -> None:
        """The connection is gone: stop sending."""
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None

    async def _send_queued(self, stream: ResilientWebSocket) -> None:
        clock = self._clock
        while True:
            frame = await self._outbox.get()
            now = clock.monotonic_ns()
            wait_ns = self._next_send_ns - now
            if wait_ns > 0:
                await clock.sleep(wait_ns / 1e9)
                now = clock.monotonic_ns()
            self._next_send_ns = max(now, self._next_send_ns) + self._interval_ns
            try:
                await stream.send(frame)
            except (ConnectionError, ConnectionClosed):
                return  # the connection is gone; the next one subscribes afresh
