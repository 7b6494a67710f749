"""The picows WebSocket client behind :class:`botframe.streams.ResilientWebSocket` (optional, faster).

``[venues.X] transport = "picows"`` (with ``pip install "botframe[fast]"``) makes a venue's connections
use picows, a Cython WebSocket client that hands each frame to a callback instead of a coroutine per
message: on 127.0.0.1 it receives a 20 + 20-level Binance diff in about 0.5 us where the ``websockets``
client takes 4.7-5.2 us (``benchmarks/e2e_loopback.py``). Everything above the socket stays the same:
reconnects with backoff, resubscription in ``on_connect``, the stale watchdog, keepalive pings and the
one error policy (:func:`botframe.streams.classify`). For that, what picows reports is translated into
the errors the policy already knows:

* the peer's close frame, or a connection that ends without one, into ``websockets``'
  ``ConnectionClosedOK`` / ``ConnectionClosedError`` with the close frames received and sent (so close
  codes, ``closed_by_peer`` and ``connection_lost`` count alike for both transports);
* a handshake refused with an HTTP status into :class:`~botframe.streams.HttpStatusError` (its
  ``Retry-After`` included), a malformed handshake answer into a retryable ``ConnectionError``; other
  handshake errors (bad URL, bad upgrade headers) stay fatal.

Messages split into fragments are put back together before the callback sees them, as ``websockets``
does. Keepalive uses picows' own pings (sent when the connection has been idle ``ping_interval_secs``,
the connection dropped when no pong comes within ``ping_timeout_secs``); ``latency`` is therefore not
measured (0.0).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import NoReturn

import picows
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

__all__ = ["PicowsConnection", "connect"]

_NORMAL_CLOSES = frozenset({1000, 1001})
_DATA = (picows.WSMsgType.TEXT, picows.WSMsgType.BINARY)


class PicowsConnection:
    """One open picows connection, with the part of ``websockets``' ``ClientConnection`` botframe uses."""

    def __init__(self, deliver: Callable[[bytes], None], close_timeout_secs: float) -> None:
        self._deliver = deliver
        self._close_timeout = close_timeout_secs
        self._ws: picows.WSTransport | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fragments: list[bytes] = []
        # Messages that arrive before the stream starts reading (during the handshake or ``on_connect``):
        # held, as websockets holds them in its queue, so subscriptions are set up before any frame.
        self._reading = False
        self._early: list[bytes] = []
        self.rcvd: Close | None = None
        self.sent: Close | None = None
        self._rcvd_first = False  # the peer's close frame came before ours

    @property
    def latency(self) -> float:
        """Keepalive round trip: not measured by this transport (picows' own pings), so 0.0."""
        return 0.0

    @property
    def transport(self) -> asyncio.Transport:
        """The socket's asyncio transport (the stale watchdog aborts it)."""
        assert self._ws is not None
        transport: asyncio.Transport = self._ws.underlying_transport
        return transport

    async def send(self, message: str | bytes) -> None:
        """Send a text frame (``str``) or a binary one (``bytes``); raises once the connection is closed."""
        ws = self._ws
        if ws is None or self._closed.done():
            raise self._error()
        if isinstance(message, str):
            ws.send(picows.WSMsgType.TEXT, message.encode())
        else:
            ws.send(picows.WSMsgType.BINARY, message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with ``code``: send the close frame, then wait (``close_timeout``) for the peer to end it."""
        ws = self._ws
        if ws is None or self._closed.done():
            return
        if self.sent is None:
            self.sent = Close(code, reason)
            ws.send_close(picows.WSCloseCode(code), reason.encode())
        try:
            async with asyncio.timeout(self._close_timeout):
                await asyncio.shield(self._closed)
        except TimeoutError:
            ws.disconnect(graceful=False)

    def abandon(self) -> None:
        """Drop the socket without a closing handshake (the connection was never handed out)."""
        if self._ws is not None and not self._closed.done():
            self._ws.disconnect(graceful=False)

    async def run_until_closed(self) -> NoReturn:
        """Frames go to ``deliver`` from picows' callback; this waits for the end and raises why it ended."""
        self._reading = True
        early, self._early = self._early, []
        for message in early:
            self._deliver(message)
        await asyncio.shield(self._closed)
        raise self._error()

    def _message(self, message: bytes) -> None:
        if self._reading:
            self._deliver(message)
        else:
            self._early.append(message)

    def _error(self) -> ConnectionClosed:
        rcvd, sent = self.rcvd, self.sent
        # websockets' convention: which close frame came first is known only when both were exchanged.
        order = None if rcvd is None or sent is None else self._rcvd_first
        if rcvd is not None and sent is not None and rcvd.code in _NORMAL_CLOSES:
            return ConnectionClosedOK(rcvd, sent, order)
        return ConnectionClosedError(rcvd, sent, order)

    # -- picows' callbacks ---------------------------------------------------------------------------------

    def on_connected(self, ws: picows.WSTransport) -> None:
        self._ws = ws

    def on_frame(self, ws: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind in _DATA:
            if frame.fin and not self._fragments:
                message = frame.get_payload_as_bytes()  # the common case: one frame, one message
                if self._reading:
                    self._deliver(message)
                else:
                    self._early.append(message)
                return
            self._fragments.append(frame.get_payload_as_bytes())
        elif kind is picows.WSMsgType.CONTINUATION:
            self._fragments.append(frame.get_payload_as_bytes())
        elif kind is picows.WSMsgType.CLOSE:
            code = frame.get_close_code()
            number = int(code.value)
            message = frame.get_close_message()
            self.rcvd = Close(number, message.decode("utf-8", "replace") if message else "")
            if self.sent is None:  # the peer started the closing handshake: answer with its code
                self._rcvd_first = True
                self.sent = Close(number, "")
                ws.send_close(code)
            ws.disconnect()
            return
        else:
            return  # PING and PONG: picows answers pings and tracks its own
        if frame.fin and self._fragments:
            joined = b"".join(self._fragments)
            self._fragments.clear()
            self._message(joined)

    def on_disconnected(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


class _Listener(picows.WSListener):
    def __init__(self, conn: PicowsConnection) -> None:
        super().__init__()
        self._conn = conn

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self._conn.on_connected(transport)

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        self._conn.on_frame(transport, frame)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self._conn.on_disconnected()


@asynccontextmanager
async def connect(
    url: str,
    deliver: Callable[[bytes], None],
    *,
    open_timeout_secs: float,
    close_timeout_secs: float,
    ping_interval_secs: float | None,
    ping_timeout_secs: float | None,
    max_message_bytes: int,
) -> AsyncIterator[PicowsConnection]:
    """Open a connection to ``url`` whose frames go to ``deliver``; closed (code 1000) on the way out."""
    from .streams import HttpStatusError

    conn = PicowsConnection(deliver, close_timeout_secs)
    keepalive = ping_interval_secs is not None and ping_timeout_secs is not None
    try:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that arrives as
        # the handshake completes (picows may already have delivered the first frame by then).
        async with asyncio.timeout(open_timeout_secs):
            await picows.ws_connect(
                lambda: _Listener(conn),
                url,
                websocket_handshake_timeout=open_timeout_secs,
                enable_auto_ping=keepalive,
                auto_ping_idle_timeout=ping_interval_secs or 20.0,
                auto_ping_reply_timeout=ping_timeout_secs or 20.0,
                max_frame_size=max_message_bytes,
            )
    except picows.WSInvalidStatusError as exc:
        response = exc.response
        if response is None:
            raise ConnectionError(f"WebSocket handshake refused: {exc}") from exc
        body = (exc.raw_body or b"").decode("utf-8", "replace")[:500]
        retry_after = response.headers.get("Retry-After") if response.headers is not None else None
        raise HttpStatusError(int(response.status), url, body, retry_after) from exc
    except picows.WSInvalidMessageError as exc:
        raise ConnectionError(f"malformed WebSocket handshake answer: {exc}") from exc
    except BaseException:
        conn.abandon()  # cancelled or timed out after the socket opened: do not leave it behind
        raise
    try:
        yield conn
    finally:
        await conn.close(1000)
