"""Replay a recorded exchange capture on 127.0.0.1, in the venue's own protocol.

``botframe replay-server CAPTURE`` (wired to :func:`main`) serves a capture in the format of
``../shared/data/README.md``: the recorded frames, exactly as recorded, to a client that connects
(and, when the recording starts with the client subscribing, once the client has sent its first
frame), and the recorded REST responses for matching ``GET`` requests, from the capture itself and
from extra REST capture files (``*.rest_*.txt``). Frames go out at the recorded pace (gaps between
receive timestamps, on the injected clock) or as fast as the client reads.

Which recorded connection a client gets: the one whose URL path and query match the client's
request (query order ignored), else the one whose path matches, else the first one not yet served.
What the client sends is not checked against the recording; a venue test proves the client by what
it makes of the real frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from botframe.clock import Clock, LiveClock

__all__ = [
    "Capture",
    "CaptureError",
    "Exchange",
    "Pace",
    "ReplayServer",
    "Transcript",
    "main",
    "parse_capture",
    "read_capture",
    "serve_forever",
    "sibling_rest_captures",
]

Pace = Literal["fast", "recorded"]

_URL_LINE = re.compile(
    r"^(?P<url>[a-z][a-z0-9+.-]*://\S+) (?P<arrow><->|<-|->) (?P<ts>\d+(?:\.\d+)?)(?:: (?P<body>.*))?$", re.DOTALL
)
_FRAME_LINE = re.compile(r"^(?P<ts>\d+(?:\.\d+)?): (?P<body>.*)$", re.DOTALL)


class CaptureError(ValueError):
    """A capture file that cannot be replayed (missing, unreadable, or with no frames or responses)."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One recorded frame: who sent it (``"client"`` or ``"server"``), when, and the exact text."""

    sender: Literal["client", "server"]
    ts: float
    payload: str


@dataclass(slots=True)
class Transcript:
    """One recorded WebSocket connection: its URL and its frames in recorded order."""

    url: str
    opened_ts: float
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def server_frames(self) -> list[str]:
        return [e.payload for e in self.exchanges if e.sender == "server"]

    @property
    def target(self) -> str:
        """The request target a client would use: path plus query."""
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass(slots=True)
class Capture:
    """A parsed capture: WebSocket transcripts, REST responses by request target, and skipped lines."""

    transcripts: list[Transcript] = field(default_factory=list)
    rest: dict[str, list[str]] = field(default_factory=dict)  # normalised target -> bodies in order
    skipped_lines: int = 0

    def merge(self, other: Capture) -> None:
        self.transcripts.extend(other.transcripts)
        for target, bodies in other.rest.items():
            self.rest.setdefault(target, []).extend(bodies)
        self.skipped_lines += other.skipped_lines


def _normalise_target(target: str) -> str:
    """Path plus query with the query's parameters sorted, so ``?a=1&b=2`` matches ``?b=2&a=1``."""
    parts = urlsplit(target)
    query = "&".join(f"{k}={v}" for k, v in sorted(parse_qsl(parts.query, keep_blank_values=True)))
    path = parts.path or "/"
    return f"{path}?{query}" if query else path


def parse_capture(lines: Iterable[str]) -> Capture:
    """Parse capture lines (see the module docstring); unknown lines are counted, not fatal."""
    capture = Capture()
    current: Transcript | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            continue
        m = _URL_LINE.match(line)
        if m is not None:
            arrow, ts, body = m["arrow"], float(m["ts"]), m["body"]
            if arrow == "<->":
                current = Transcript(m["url"], ts)
                capture.transcripts.append(current)
            elif arrow == "<-" and body is not None:
                if current is None or current.url != m["url"]:
                    current = Transcript(m["url"], ts)
                    capture.transcripts.append(current)
                current.exchanges.append(Exchange("client", ts, body))
            elif arrow == "->" and body is not None:
                capture.rest.setdefault(_normalise_target(m["url"]), []).append(body)
            else:
                capture.skipped_lines += 1
            continue
        m = _FRAME_LINE.match(line)
        if m is not None and current is not None:
            current.exchanges.append(Exchange("server", float(m["ts"]), m["body"]))
            continue
        capture.skipped_lines += 1  # e.g. cryptofeed's trailing "configuration: {...}"
    return capture


def read_capture(path: Path) -> Capture:
    """Read and parse one capture file."""
    try:
        with path.open(encoding="utf-8", newline="\n") as f:
            return parse_capture(f)
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such capture file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: cannot be read: {exc}") from None


def sibling_rest_captures(capture_path: Path) -> list[Path]:
    """REST capture files recorded in the same session: ``BINANCE.ws.1.0.txt`` -> ``BINANCE.*rest*.txt``."""
    prefix = capture_path.name.split(".", 1)[0]
    return sorted(p for p in capture_path.parent.glob(f"{prefix}.*rest*.txt") if p != capture_path)


class ReplayServer:
    """Serves one capture over WebSocket (recorded frames) and HTTP (recorded REST bodies)."""

    def __init__(
        self,
        capture_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        pace: Pace = "fast",
        *,
        rest_captures: Sequence[str | Path] = (),
        clock: Clock | None = None,
        close_at_end: bool = False,
        log: Any = None,
    ) -> None:
        if pace not in ("fast", "recorded"):
            raise ValueError(f"pace must be 'fast' or 'recorded', not {pace!r}")
        self.capture_path = Path(capture_path)
        self.host = host
        self.pace: Pace = pace
        self.clock: Clock = clock if clock is not None else LiveClock()
        self.close_at_end = close_at_end
        self.log = log if log is not None else structlog.get_logger("botframe.replay")
        self.capture = read_capture(self.capture_path)
        for extra in rest_captures:
            self.capture.merge(read_capture(Path(extra)))
        if not self.capture.transcripts and not self.capture.rest:
            raise CaptureError(f"{self.capture_path}: no recorded frames or REST responses found")
        self.counters: dict[str, int] = {"connections": 0, "frames_sent": 0, "rest_hits": 0, "rest_misses": 0}
        self._port = port
        self._server: Server | None = None
        self._served: set[int] = set()  # transcripts already given to a client
        self._rest_next: dict[str, int] = {}

    async def start(self) -> None:
        self._server = await serve(
            self._handle, self.host, self._port, process_request=self._process_request, max_size=2**22
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self.log.info(
            "replay.listening",
            url=self.url,
            capture=str(self.capture_path),
            pace=self.pace,
            connections=len(self.capture.transcripts),
            rest_targets=len(self.capture.rest),
        )

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RuntimeError("the replay server is not listening yet; await start() first")
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port``; HTTP requests go to ``http://host:port`` on the same port."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- WebSocket -------------------------------------------------------------------------------------

    def _pick(self, target: str) -> Transcript | None:
        ts = self.capture.transcripts
        if not ts:
            return None
        want = _normalise_target(target)
        want_path = urlsplit(target).path
        for matches in (
            [i for i, t in enumerate(ts) if _normalise_target(t.target) == want],
            [i for i, t in enumerate(ts) if urlsplit(t.target).path == want_path],
            list(range(len(ts))),
        ):
            if matches:
                index = next((i for i in matches if i not in self._served), matches[0])
                self._served.add(index)
                return ts[index]
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None  # the handler runs only after a completed handshake
        transcript = self._pick(request.path)
        self.counters["connections"] += 1
        if transcript is None:
            await ws.close(1008, "no recorded connection to replay")
            return
        inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        reader = asyncio.get_running_loop().create_task(self._read(ws, inbox), name="replay.reader")
        try:
            await self._play(ws, transcript, inbox)
            if self.close_at_end:
                await ws.close()
            else:
                await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    @staticmethod
    async def _read(ws: ServerConnection, inbox: asyncio.Queue[str | bytes]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                inbox.put_nowait(message)

    async def _play(self, ws: ServerConnection, transcript: Transcript, inbox: asyncio.Queue[str | bytes]) -> None:
        last_ts: float | None = None
        waited_for_client = False
        for exchange in transcript.exchanges:
            if exchange.sender == "client":
                # Wait for the client's subscription once; later recorded client frames do not block
                # (a client may batch its subscriptions differently from the recorded one).
                if not waited_for_client:
                    waited_for_client = True
                    await inbox.get()
                    last_ts = exchange.ts
                continue
            if self.pace == "recorded" and last_ts is not None and exchange.ts > last_ts:
                await self.clock.sleep(exchange.ts - last_ts)
            last_ts = exchange.ts
            await ws.send(exchange.payload)
            self.counters["frames_sent"] += 1

    # -- HTTP ------------------------------------------------------------------------------------------

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        target = _normalise_target(request.path)
        bodies = self.capture.rest.get(target)
        if not bodies:
            self.counters["rest_misses"] += 1
            self.log.info("replay.rest_not_recorded", target=request.path)
            return self._http(404, b'{"error":"not in the capture"}')
        # Repeated requests get the recorded responses in order, then the last one again.
        index = self._rest_next.get(target, 0)
        self._rest_next[target] = index + 1
        self.counters["rest_hits"] += 1
        return self._http(200, bodies[min(index, len(bodies) - 1)].encode())

    @staticmethod
    def _http(status: int, body: bytes) -> Response:
        content_type = "application/json" if body[:1] in (b"{", b"[") else "text/plain; charset=utf-8"
        headers = Headers([("Connection", "close"), ("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return Response(status, "OK" if status == 200 else "Not Found", headers, body)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="botframe replay-server",
        description="Serve a recorded exchange capture on 127.0.0.1 in the venue's own protocol.",
    )
    parser.add_argument("capture", type=Path, help="capture file (format: shared/data/README.md)")
    parser.add_argument(
        "--rest",
        type=Path,
        action="append",
        default=None,
        metavar="FILE",
        help="REST capture file to serve too (repeatable; default: the capture's sibling *rest*.txt files)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = an ephemeral port (default)")
    parser.add_argument(
        "--pace",
        choices=("fast", "recorded"),
        default="fast",
        help="recorded gaps between frames, or as fast as the client reads (default)",
    )
    parser.add_argument(
        "--close-at-end",
        action="store_true",
        help="close each connection after its last recorded frame (default: keep it open)",
    )
    return parser


async def serve_forever(
    capture: str | Path,
    *,
    rest_files: Sequence[str | Path] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    pace: Pace = "fast",
    close_at_end: bool = False,
    on_ready: Callable[[ReplayServer], None] | None = None,
) -> None:
    """Serve ``capture`` until cancelled, printing where; no ``rest_files`` = the sibling REST captures.

    Raises :class:`CaptureError` for a capture that cannot be replayed and ``OSError`` when the
    address cannot be bound; :func:`main` turns both into a message and exit status 2.
    """
    path = Path(capture)
    rest = list(rest_files) if rest_files else sibling_rest_captures(path)
    server = ReplayServer(path, host, port, pace, rest_captures=rest, close_at_end=close_at_end)
    await server.start()
    try:
        print(
            f"replaying {path} ({len(server.capture.transcripts)} connection(s), "
            f"{sum(len(b) for b in server.capture.rest.values())} REST response(s) from "
            f"{len(rest)} REST file(s))"
        )
        print(f"  WebSocket: {server.url}   REST: {server.rest_url}", flush=True)
        if on_ready is not None:
            on_ready(server)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C)
    finally:
        await server.stop()


async def main(argv: Sequence[str] | None = None, *, on_ready: Callable[[ReplayServer], None] | None = None) -> int:
    """Entry point of ``botframe replay-server``: serve until cancelled; return an exit status.

    ``on_ready`` is called with the listening server (tests, embedding); the URLs are also printed.
    """
    args = _parser().parse_args(argv)
    try:
        await serve_forever(
            args.capture,
            rest_files=args.rest or (),
            host=args.host,
            port=args.port,
            pace=args.pace,
            close_at_end=args.close_at_end,
            on_ready=on_ready,
        )
    except CaptureError as exc:
        print(f"botframe replay-server: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"botframe replay-server: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
