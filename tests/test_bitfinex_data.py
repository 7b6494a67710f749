"""The Bitfinex data client driven through real local servers: the replay server for the recorded capture, and
a scripted Bitfinex (recorded or SPECS.md-built frames, renumbered like a live connection, answering
resubscriptions) for sequence gaps, checksum frames, trades and venue events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_watch import Watcher, run_engine
from pydantic import ValidationError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from botframe.bus import EventBus
from botframe.clock import SimulatedClock
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason, Level, Side
from botframe.plugins import Registry
from botframe.streams import BackoffSettings
from botframe.testing import WAIT_FOR_REQUEST, LocalVenue, RecordingVenueContext, ReplayScript, running_venue
from botframe.venues import Endpoints
from botframe_plugins.bitfinex import plugin
from botframe_plugins.bitfinex.config import BITFINEX_PUBLIC_URL, BitfinexSettings
from botframe_plugins.bitfinex.data import BitfinexDataClient
from botframe_plugins.bitfinex.parsing import UnknownSymbolError
from botframe_plugins.sim.replay import ReplayServer

pytestmark = pytest.mark.timeout(60)

FAST = BackoffSettings(initial_delay_ms=1, factor=2, max_delay_ms=5, jitter=0.0)
CAPTURE = "bitfinex/BITFINEX.ws.11.0.txt"
REST = "bitfinex/BITFINEX.0.rest.txt"
PAIRS_PATH = "/v2/conf/pub:list:pair:exchange"
# The capture's seven books: Bitfinex symbol -> unified (ccxt) symbol.
CAPTURE_SYMBOLS = {"tBFTUSD": "BFT/USD", "tIOTETH": "IOTA/ETH", "tDOGUSD": "MDOGE/USD", "tMNABTC": "MANA/BTC",
                   "tODEUSD": "ODE/USD", "tTESTBTC:TESTUSD": "TESTBTC/TESTUSD", "tSNGUSD": "SNGLS/USD"}
LOST = "<lost>"


# -- recorded data and a plain reference -------------------------------------------------------------------


def server_frames(path: Path) -> list[str]:
    """The payloads the exchange sent, in order (format: shared/data/README.md)."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith(("wss://", "https://", "configuration")):
            continue
        out.append(line.partition(": ")[2])
    return out


def plain_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """SPECS.md section 4, written out: top-25 interleaved ``price:amount`` texts (asks negative), signed."""
    parts = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i]
        if i < len(asks):
            parts += asks[i]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


class ReferenceBook:
    """A plain P0 book on the wire text: price -> (price text, count, amount text); amount < 0 for asks."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, int, str]] = {}
        self.asks: dict[Decimal, tuple[str, int, str]] = {}

    def apply(self, price: str, count: int, amount: str) -> None:
        ask = amount.startswith("-")
        side = self.asks if ask else self.bids
        if count == 0:
            side.pop(Decimal(price), None)
        else:
            side[Decimal(price)] = (price, count, amount)

    def sorted_bids(self) -> list[tuple[str, int, str]]:
        return [self.bids[p] for p in sorted(self.bids, reverse=True)]

    def sorted_asks(self) -> list[tuple[str, int, str]]:
        return [self.asks[p] for p in sorted(self.asks)]

    def checksum(self) -> int:
        return plain_checksum([(p, a) for p, _, a in self.sorted_bids()], [(p, a) for p, _, a in self.sorted_asks()])

    def top(self, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return (
            [(float(p), abs(float(a))) for p, _, a in self.sorted_bids()[:n]],
            [(float(p), abs(float(a))) for p, _, a in self.sorted_asks()[:n]],
        )


_NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
_LEVEL = re.compile(rf"\[({_NUMBER}),(-?\d+),({_NUMBER})\]")


def levels_of(frame: str) -> list[tuple[str, int, str]]:
    """The book levels of a channel frame as wire text (``json`` would lose ``1e-8``'s spelling)."""
    return [(p, int(c), a) for p, c, a in _LEVEL.findall(frame.split(",", 1)[1])]


def reference_books(frames: list[str]) -> dict[str, ReferenceBook]:
    """Every book of ``frames`` (by Bitfinex symbol) rebuilt plainly from the wire text."""
    chans: dict[int, str] = {}
    books: dict[str, ReferenceBook] = {}
    for frame in frames:
        if frame.startswith("{"):
            event = json.loads(frame)
            if event.get("event") == "subscribed" and event["channel"] == "book":
                chans[event["chanId"]] = event["symbol"]
            continue
        if not frame.startswith("["):
            continue
        chan = int(frame[1:frame.index(",")])
        symbol = chans.get(chan)
        if symbol is None or '"' in frame:  # not a book, or hb / cs
            continue
        if frame[frame.index(",") + 1 :].startswith("[["):
            books[symbol] = ReferenceBook()
        elif frame[frame.index(",") + 1 :].startswith("[]"):
            books[symbol] = ReferenceBook()
            continue
        for level in levels_of(frame):
            books[symbol].apply(*level)
    return books


# -- a minimal engine side --------------------------------------------------------------------------------


def recording_context(endpoints: Endpoints | None = None) -> RecordingVenueContext:
    """The engine's side: real L2Books, apply-then-publish as the engine does, everything recorded."""
    return RecordingVenueContext("bitfinex", endpoints=endpoints)


@dataclass
class Running:
    ctx: RecordingVenueContext
    client: BitfinexDataClient

    def total(self, name: str) -> int:
        return sum(getattr(c, name) for c in self.client.book_counters().values())

    def messages(self) -> int:
        """Frames the client has read so far, over all its connections."""
        return sum(c.messages for c in self.client.stream_counters())


@contextlib.asynccontextmanager
async def running_client(settings: BitfinexSettings, ctx: RecordingVenueContext | None = None
                         ) -> AsyncIterator[Running]:
    """A client running against the servers ``settings`` name; cancelled (and checked to stop) afterwards."""
    ctx = ctx or recording_context()
    async with running_venue(BitfinexDataClient(settings, ctx)) as client:
        yield Running(ctx, client)


def settings_for(ws_url: str, rest_url: str, **overrides: Any) -> BitfinexSettings:
    values: dict[str, Any] = {
        "ws_url": ws_url, "rest_url": rest_url, "symbols": list(CAPTURE_SYMBOLS.values()), "depth": 100,
        "backoff": FAST, "stale_after_ms": 60_000, "max_requests_per_sec": 1000.0,
    }
    values.update(overrides)
    return BitfinexSettings(**values)


def is_live(ctx: RecordingVenueContext, symbol: str) -> bool:
    return ctx.book(symbol).is_live


# -- a scripted Bitfinex ---------------------------------------------------------------------------------------


class Script(ReplayScript):
    """Frames for :class:`ScriptedBitfinex`, each remembering which frame of ``original`` it is (or follows)."""

    def lose(self, index: int) -> Script:
        """Recorded frame ``index`` happened but never arrives: its sequence number is skipped."""
        self.frames.append(LOST)
        self.origin.append(index)
        return self

    def books(self, sent: int) -> dict[str, ReferenceBook]:
        return reference_books(self.happened(sent))


@dataclass
class ScriptedBitfinex(LocalVenue):
    """A Bitfinex endpoint on 127.0.0.1 that plays a script like a live connection.

    It serves ``rest`` for REST paths (by default the pair list :data:`PAIRS_BTCUSD`). Each connection
    gets the script once the client sent its first frame: channel frames are renumbered with the
    connection's own SEQ_ALL sequence (a :data:`LOST` entry skips a number) and carry the channel's
    current ``chanId``. An ``unsubscribe`` is acked and stops that channel's frames; a later
    ``subscribe`` of it is acked with a new ``chanId`` and answered with a snapshot of the exchange's book
    by then (``script.books``), and, when the ``conf`` answer it sent confirmed checksum frames, by that
    book's ``cs`` frame, as Bitfinex does. Other requests (the client's first subscriptions, which the
    script's recorded acks answer) get nothing. :data:`WAIT_FOR_REQUEST` waits for the next request
    acted on.
    """

    script: Script
    later_script: list[str] | None = None
    rest: Mapping[str, str] = field(default_factory=lambda: PAIRS_BTCUSD, kw_only=True)
    ws_path: str = field(default="/ws/2", kw_only=True)

    async def handler(self, ws: ServerConnection) -> None:
        frames = self.script.frames if self.connections == 1 or self.later_script is None else self.later_script
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        seq = 0
        recorded: dict[int, tuple[str, str]] = {}  # recorded chanId -> (channel, symbol)
        current: dict[tuple[str, str], int] = {}  # (channel, symbol) -> chanId now
        unsubscribed: set[tuple[str, str]] = set()
        next_chan = 900_000
        checksums = False  # whether the conf answer sent on this connection confirmed OB_CHECKSUM

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    inbox.put_nowait(json.loads(self.record(message)))
            inbox.put_nowait(None)

        async def next_request() -> dict[str, Any]:
            request = await inbox.get()
            if request is None:
                raise ConnectionClosed(None, None)
            return request

        async def send_channel(frame: str, chan: int) -> None:
            nonlocal seq
            seq += 1
            body = frame[frame.index(",") : frame.rindex(",")] if frame.count(",") > 1 else frame[frame.index(",") :]
            await ws.send(f"[{chan}{body},{seq}]")

        async def answer(request: dict[str, Any], sent: int) -> bool:
            """Act on a (un)subscribe of a subscribed channel; False for anything else (the first requests)."""
            nonlocal next_chan
            if request.get("event") == "unsubscribe":
                key = next(k for k, v in current.items() if v == request["chanId"])
                del current[key]
                unsubscribed.add(key)
                await ws.send(json.dumps({"event": "unsubscribed", "status": "OK", "chanId": request["chanId"]}))
                return True
            if request.get("event") == "subscribe" and (request["channel"], request["symbol"]) in unsubscribed:
                key = (request["channel"], request["symbol"])
                unsubscribed.discard(key)
                next_chan += 1
                current[key] = next_chan
                await ws.send(json.dumps({**{k: v for k, v in request.items() if k != "event"},
                                          "event": "subscribed", "chanId": next_chan}))
                book = self.script.books(sent)[request["symbol"]]
                levels = ",".join(f"[{p},{c},{a}]" for p, c, a in book.sorted_bids() + book.sorted_asks())
                await send_channel(f"[0,[{levels}],0]", next_chan)
                if checksums:
                    await send_channel(f'[0,"cs",{book.checksum()},0]', next_chan)
                return True
            return False

        reader = asyncio.create_task(read())
        try:
            await next_request()  # the client's conf
            sent = 0
            for frame in frames:
                if frame == WAIT_FOR_REQUEST:
                    while not await answer(await next_request(), sent):
                        pass  # a first subscription still on its way: the script's recorded acks answer it
                    continue
                while not inbox.empty():
                    await answer(await next_request(), sent)
                sent += 1
                if frame == LOST:
                    seq += 1
                elif not frame.startswith(("{", "[")):
                    await ws.send(frame)  # not JSON at all
                elif frame.startswith("{"):
                    event = json.loads(frame)
                    if event.get("event") == "conf":
                        checksums = event.get("status") == "OK" and bool(event.get("flags", 0) & 131072)
                    if event.get("event") == "subscribed":
                        key = (event["channel"], event["symbol"])
                        recorded[event["chanId"]] = key
                        current[key] = event["chanId"]
                    await ws.send(frame)
                else:
                    chan = int(frame[1:frame.index(",")])
                    key_of = recorded.get(chan)
                    if key_of is None:
                        await send_channel(frame, chan)  # a channel the script never acked (heartbeats first)
                    elif key_of in current:
                        await send_channel(frame, current[key_of])
                    # else: unsubscribed, Bitfinex sends nothing more on it
            while True:
                await answer(await next_request(), sent)
        except ConnectionClosed:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

def rest_of(shared_data: Path) -> dict[str, str]:
    line = next(ln for ln in (shared_data / REST).read_text().splitlines() if "pub:list:pair:exchange" in ln)
    return {PAIRS_PATH: line.split(" -> ", 1)[1].partition(": ")[2]}


# -- the recorded capture through the replay server ----------------------------------------------------------


@contextlib.asynccontextmanager
async def replaying(shared_data: Path) -> AsyncIterator[ReplayServer]:
    server = ReplayServer(shared_data / CAPTURE, rest_captures=[shared_data / REST])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_capture_rebuilds_all_seven_books_with_a_contiguous_sequence(shared_data: Path) -> None:
    reference = reference_books(server_frames(shared_data / CAPTURE))

    async with replaying(shared_data) as server, running_client(
        settings_for(server.url + "/ws/2", server.rest_url)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.messages() == 1693)

        assert running.total("updates") == 1593
        assert running.client.sequence_gaps() == 0
        assert ctx.crossed_after_event == 0
        assert ctx.counts["gaps"] == ctx.counts["parse_errors"] == ctx.counts["resyncs"] == 0
        for venue_symbol, unified in CAPTURE_SYMBOLS.items():
            book = ctx.books[unified]
            assert ctx.transitions(unified) == [
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert (book.bids(10), book.asks(10)) == reference[venue_symbol].top()
        assert ctx.instruments["IOTA/ETH"].venue_symbol == "tIOTETH"
        assert ctx.instruments["TESTBTC/TESTUSD"].venue_symbol == "tTESTBTC:TESTUSD"
        assert ctx.counts["unknown_channel_frames"] > 0  # the recorded ticker channels


async def test_unknown_symbol_stops_start_up_with_the_unified_spelling(shared_data: Path) -> None:
    async with replaying(shared_data) as server:
        client = BitfinexDataClient(settings_for(server.url, server.rest_url, symbols=["IOT/ETH"]),
                                    recording_context())

        with pytest.raises(UnknownSymbolError, match="did you mean 'IOTA/ETH'"):
            async with asyncio.timeout(10):
                await client.run()


# -- a lost frame: the connection's sequence shows it ----------------------------------------------------------


async def test_lost_frame_breaks_the_sequence_and_every_book_of_the_connection_resubscribes(
    shared_data: Path,
) -> None:
    original = server_frames(shared_data / CAPTURE)
    updates = [i for i, f in enumerate(original) if re.match(r"^\[\d+,\[-?[\d.]", f)]
    lost = updates[800]
    script = Script(original).take(range(lost)).lose(lost).take([lost + 1]).wait(14)
    script.take(range(lost + 2, len(original)))

    async with ScriptedBitfinex(script, rest=rest_of(shared_data)) as server, running_client(
        settings_for(server.url, server.http_url, trades=False)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.total("snapshots") == 14 and all(
            is_live(ctx, s) for s in CAPTURE_SYMBOLS.values()))
        # Everything but the lost frame, plus 7 unsubscribe acks, 7 subscribe acks and 7 snapshots.
        await ctx.wait_until(lambda: running.messages() == len(original) - 1 + 21)

        assert running.client.sequence_gaps() == 1
        assert ctx.counts["gaps"] == 1
        assert ctx.counts["resyncs"] == 7
        reference = reference_books(original)
        for venue_symbol, unified in CAPTURE_SYMBOLS.items():
            assert ctx.transitions(unified)[-2:] == [
                (BookHealth.RESYNCING, HealthReason.GAP),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            book = ctx.books[unified]
            assert (book.bids(10), book.asks(10)) == reference[venue_symbol].top(), unified
        unsubscribes = [r for r in server.requests() if r.get("event") == "unsubscribe"]
        assert len(unsubscribes) == 7


# -- checksum frames and trades, built from SPECS.md -------------------------------------------------------------


class SpecsSession:
    """Bitfinex frames for one P0 book and its trades, numbers written the way JavaScript writes them."""

    def __init__(self, symbol: str = "tBTCUSD") -> None:
        self.symbol = symbol
        self.book = ReferenceBook()
        self.frames: list[str] = [
            '{"event":"info","version":2,"serverId":"083bd8d4","platform":{"status":1}}',
            '{"event":"conf","status":"OK","flags":196608}',
            json.dumps({"event": "subscribed", "channel": "book", "chanId": 17, "symbol": symbol, "prec": "P0",
                        "freq": "F0", "len": "25", "pair": symbol[1:]}),
            json.dumps({"event": "subscribed", "channel": "trades", "chanId": 18, "symbol": symbol,
                        "pair": symbol[1:]}),
        ]

    def snapshot(self, levels: list[tuple[str, int, str]]) -> SpecsSession:
        self.book = ReferenceBook()
        for level in levels:
            self.book.apply(*level)
        self.frames.append("[17,[" + ",".join(f"[{p},{c},{a}]" for p, c, a in levels) + "],0]")
        return self

    def update(self, price: str, count: int, amount: str) -> SpecsSession:
        self.book.apply(price, count, amount)
        self.frames.append(f"[17,[{price},{count},{amount}],0]")
        return self

    def checksum(self, *, corrupt: bool = False) -> SpecsSession:
        self.frames.append(f'[17,"cs",{self.book.checksum() + (1 if corrupt else 0)},0]')
        return self

    def raw(self, frame: str) -> SpecsSession:
        self.frames.append(frame)
        return self

    def script(self) -> Script:
        script = Script(self.frames)
        script.take(range(len(self.frames)))
        return script


SNAPSHOT = [
    # JS Number.toString text: 1e-8 and 6.6e-7 in exponent form, 0.0000011 not (SPECS.md section 4).
    ("60000", 3, "0.5"), ("59999.5", 1, "1e-8"), ("59999", 2, "0.0000011"),
    ("60001", 1, "-6.6e-7"), ("60001.5", 4, "-2.25"), ("60002", 1, "-10"),
]


def specs_settings(server: ScriptedBitfinex, **overrides: Any) -> BitfinexSettings:
    return settings_for(server.url, server.http_url, symbols=["BTC/USD"], depth=25, **overrides)


PAIRS_BTCUSD: dict[str, str] = {PAIRS_PATH: '[["BTCUSD","ETHUSD"]]'}


async def test_checksum_frames_match_on_js_number_text_and_a_corrupted_one_resyncs() -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    session.update("59999.5", 2, "3e-8").checksum()
    session.update("60001", 0, "-1").checksum()  # count 0, amount -1: delete the ask
    session.update("60000.5", 1, "0.000001").update("60000.5", 1, "1e-7").checksum()
    session.raw('[17,"hb",0]').checksum(corrupt=True)
    script = session.script().wait(2)  # unsubscribe, subscribe: a fresh snapshot and its cs on a new chanId

    async with ScriptedBitfinex(script) as server, running_client(specs_settings(server)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.total("checksums_matched") == 5)

        assert running.total("checksum_failures") == 1
        assert ctx.counts["checksum_failures"] == 1
        assert ctx.transitions("BTC/USD") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        conf = server.requests()[0]
        assert conf == {"event": "conf", "flags": 65536 | 131072}
        book = ctx.books["BTC/USD"]
        assert (book.bids(10), book.asks(10)) == session.book.top()
        assert book.bids(2) == [(60000.5, 1e-7), (60000.0, 0.5)]
        assert book.asks(1) == [(60001.5, 2.25)]


async def test_a_change_its_checksum_frame_refutes_never_reaches_a_bus_subscriber_and_the_book_resyncs() -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    session.update("59999.5", 2, "3e-8").checksum()
    session.update("60000.5", 1, "0.25").update("60001", 0, "-1").checksum()  # one change, two frames
    wrong_at = len(session.frames) - 3  # the first frame of that change arrives with a wrong amount
    session.update("59999", 1, "4").checksum()
    script = Script(session.frames).take(range(wrong_at)).altered(wrong_at, "[17,[60000.5,1,0.35],0]")
    script.take(range(wrong_at + 1, wrong_at + 3)).wait(2)  # the change's second frame and its cs; resync
    script.take(range(wrong_at + 3, len(session.frames)))
    bus = EventBus()
    ctx = RecordingVenueContext("bitfinex", bus=bus)
    seen: list[tuple[BookSnapshot | BookDelta, list[Level], list[Level]]] = []  # what subscribers would read

    def see(event: BookSnapshot | BookDelta) -> None:
        book = ctx.book("BTC/USD")
        seen.append((event, book.bids(25), book.asks(25)))

    bus.subscribe(BookSnapshot, see)
    bus.subscribe(BookDelta, see)

    async with ScriptedBitfinex(script) as server, running_client(specs_settings(server), ctx) as running:
        await ctx.wait_until(lambda: running.total("checksums_matched") == 4 and ctx.book("BTC/USD").is_live)

        assert running.total("checksum_failures") == 1
        assert [(e.bids, e.asks) for e in ctx.unpublished()] == [([(60000.5, 0.35)], []), ([], [(60001.0, 0.0)])]
        assert ctx.transitions("BTC/USD")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        book = ctx.book("BTC/USD")
        assert (book.bids(10), book.asks(10)) == session.book.top()
    assert all((60000.5, 0.35) not in bids for _, bids, _ in seen)
    assert [(type(e), e.bids, e.asks) for e, _, _ in seen if isinstance(e, BookDelta)] == [
        (BookDelta, [(59999.5, 3e-8)], []),  # before the refuted change
        (BookDelta, [(59999.0, 4.0)], []),  # after the resync
    ]
    assert [type(e) for e, _, _ in seen].count(BookSnapshot) == 2  # the first one and the resync's


async def test_strategy_in_the_engine_is_never_shown_a_change_its_checksum_frame_refutes(tmp_path: Path) -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    truths = [session.book.top()]  # the exchange's book at each cs frame
    session.update("59999.5", 2, "3e-8").checksum()
    truths.append(session.book.top())
    session.update("60000.5", 1, "0.25").update("60001", 0, "-1").checksum()  # one change, two frames
    wrong_at = len(session.frames) - 3  # the first frame of that change arrives with a wrong amount
    truths.append(session.book.top())  # also the resync's snapshot
    session.update("59999", 1, "4").checksum()
    truths.append(session.book.top())
    script = Script(session.frames).take(range(wrong_at)).altered(wrong_at, "[17,[60000.5,1,0.35],0]")
    script.take(range(wrong_at + 1, wrong_at + 3)).wait(2).take(range(wrong_at + 3, len(session.frames)))

    def done(w: Watcher) -> bool:
        resynced = any(s.reason is HealthReason.CHECKSUM for s in w.statuses)
        return resynced and bool(w.shown) and w.shown[-1][1:] == truths[-1]

    watcher = Watcher(done)
    async with ScriptedBitfinex(script) as server:
        config = tmp_path / "bot.toml"
        config.write_text(
            f'duration_secs = 30\n[journal]\nenabled = false\n'
            f'[venues.bitfinex]\nws_url = "{server.url}"\nrest_url = "{server.http_url}"\nsymbols = ["BTC/USD"]\n'
            f'trades = false\nmax_requests_per_sec = 1000.0\n'
            f'[venues.bitfinex.backoff]\ninitial_delay_ms = 1\nmax_delay_ms = 5\njitter = 0.0\n'
            f'[strategies.watch]\nvenue = "bitfinex"\nsymbols = ["BTC/USD"]\n'
        )
        summary = await run_engine(config, watcher)

    assert not summary.failed
    assert summary.venue_counters["bitfinex"]["checksum_failures"] == 1
    # The bus carried the two proven updates; the refuted change's two events never went out.
    assert watcher.deltas_on_bus("BTC/USD") == [truths[1], truths[3]]
    assert watcher.snapshots_on_bus("BTC/USD") == 2
    # Every state a strategy was shown is one Bitfinex's checksum proved.
    assert watcher.shown
    assert all(shown[1:] in truths for shown in watcher.shown)


async def test_held_book_events_without_a_checksum_frame_for_a_heartbeat_interval_resync_the_book() -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    session.update("59999.5", 2, "3e-8")  # its cs never comes
    session.raw('[17,"hb",0]').raw('[18,"hb",0]').raw('[17,"hb",0]')  # trades heartbeats do not count
    script = session.script().wait(2)

    async with ScriptedBitfinex(script) as server, running_client(specs_settings(server)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.total("snapshots") == 2 and is_live(ctx, "BTC/USD"))

        assert running.total("checksums_missing") == 1
        assert ctx.counts["checksums_missing"] == 1
        assert ctx.counts["checksum_failures"] == 0
        assert ctx.transitions("BTC/USD")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert not [e for e in ctx.events if isinstance(e, BookDelta)]  # the unproven update never went out
        assert ctx.book("BTC/USD").bids(1) == [(60000.0, 0.5)]


async def test_checksums_bitfinex_did_not_confirm_are_not_waited_for() -> None:
    session = SpecsSession()
    session.frames[1] = '{"event":"conf","status":"OK","flags":65536}'  # SEQ_ALL only
    session.snapshot(SNAPSHOT).update("59999.5", 2, "3e-8")

    async with ScriptedBitfinex(session.script()) as server, running_client(
        specs_settings(server)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: len([e for e in ctx.events if isinstance(e, BookDelta)]) == 1)

        assert is_live(ctx, "BTC/USD")
        assert ctx.book("BTC/USD").bids(2) == [(60000.0, 0.5), (59999.5, 3e-8)]
        assert running.total("checksums_missing") == 0


async def test_trades_come_from_te_frames_with_the_taker_side_and_tu_is_ignored() -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    session.raw("[18,[[401597393,1574694475039,0.005,7244.9],[401597392,1574694470000,-0.25,7245]],0]")
    session.raw('[18,"te",[401597395,1574694478808,0.005,7245.3],0]')
    session.raw('[18,"tu",[401597395,1574694478808,0.005,7245.3],0]')
    session.raw('[18,"te",[401597396,1574694478900,-1e-8,7245.1],0]')

    async with ScriptedBitfinex(session.script()) as server, running_client(
        specs_settings(server)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.messages() == len(session.frames))

        assert [(t.side, t.price, t.size, t.trade_id) for t in ctx.trades()] == [
            (Side.BUY, 7245.3, 0.005, "401597395"), (Side.SELL, 7245.1, 1e-8, "401597396"),
        ]
        assert ctx.trades()[0].exchange_ts_ns == 1574694478808_000000
        assert running.client.sequence_gaps() == 0


# -- venue events and bad frames ----------------------------------------------------------------------------


async def test_maintenance_parks_the_books_and_its_end_resubscribes_them() -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    session.raw('{"event":"info","code":20060,"msg":"Entering in Maintenance mode. Please pause any activity"}')
    session.raw('{"event":"info","code":20061,"msg":"Maintenance ended. You can resume normal activity."}')
    script = session.script().wait(2)

    async with ScriptedBitfinex(script) as server, running_client(specs_settings(server)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.total("snapshots") == 2 and is_live(ctx, "BTC/USD"))

        assert ctx.transitions("BTC/USD") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.STALE),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert ctx.counts["maintenance"] == 1
        assert [r["event"] for r in server.requests()[-2:]] == ["unsubscribe", "subscribe"]


@pytest.mark.parametrize("reason", [HealthReason.STALE, HealthReason.CROSSED])
async def test_engine_resync_request_resubscribes_the_book(reason: HealthReason) -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    script = session.script().wait(2)  # the engine's request: unsubscribe, subscribe (a snapshot and its cs)
    session.update("59999", 1, "4")
    script.extra(session.frames[-1]).extra(f'[17,"cs",{session.book.checksum()},0]')

    async with ScriptedBitfinex(script) as server, running_client(specs_settings(server)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: is_live(ctx, "BTC/USD"))

        running.client.resync("BTC/USD", reason, "found by the engine")
        await ctx.wait_until(lambda: running.total("checksums_matched") == 3)

        assert ctx.transitions("BTC/USD") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, reason),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert ctx.counts["crossed"] == 0  # the engine counts what it found, once
        assert [r["event"] for r in server.requests()[-2:]] == ["unsubscribe", "subscribe"]
        book = ctx.books["BTC/USD"]
        assert (book.bids(10), book.asks(10)) == session.book.top()


async def test_reconnect_request_20051_reconnects(capsys: pytest.CaptureFixture[str]) -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    session.raw('{"event":"error","msg":"subscribe: dup","code":10301,"channel":"trades","symbol":"tBTCUSD"}')
    session.raw('{"event":"info","code":20051,"msg":"Stopping. Please try to reconnect"}')
    later = session.frames[:-2]

    async with ScriptedBitfinex(session.script(), later_script=later) as server, running_client(
        specs_settings(server)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: server.connections == 2 and len(ctx.transitions("BTC/USD")) == 5
                             and is_live(ctx, "BTC/USD"))

        assert ctx.transitions("BTC/USD")[2:] == [
            (BookHealth.CONNECTING, HealthReason.DISCONNECTED),
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert ctx.counts["reconnect_requests"] == 1
        assert ctx.counts["subscription_errors"] == 1
    logged = capsys.readouterr().out
    assert "Bitfinex refused a request" in logged
    assert "subscribe: dup" in logged


async def test_malformed_frames_are_logged_cut_counted_and_resync_their_book(
    capsys: pytest.CaptureFixture[str]
) -> None:
    session = SpecsSession().snapshot(SNAPSHOT).checksum()
    session.raw("<html>502 Bad Gateway</html>" + "x" * 500)
    session.raw('[17,[60000,"two",0.5],0]')  # a count that is not a number
    script = session.script().wait(2)
    session.update("60000", 1, "0.75")
    script.extra(session.frames[-1]).extra(f'[17,"cs",{session.book.checksum()},0]')

    async with ScriptedBitfinex(script) as server, running_client(specs_settings(server)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.total("checksums_matched") == 3)  # two snapshots and the update

        assert ctx.counts["parse_errors"] == 2
        assert running.client.stream_counters()[0].parse_errors == 2
        assert ctx.transitions("BTC/USD")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert ctx.books["BTC/USD"].bids(1) == [(60000.0, 0.75)]
    logged = capsys.readouterr().out
    assert "unreadable frame skipped" in logged
    assert "<html>502 Bad Gateway</html>" + "x" * 172 in logged
    assert "x" * 173 not in logged  # the raw text is cut to 200 characters


async def test_symbols_beyond_the_channel_limit_open_more_connections() -> None:
    pairs = {PAIRS_PATH: '[["BTCUSD","ETHUSD","LTCUSD"]]'}
    session = SpecsSession().snapshot(SNAPSHOT)

    async with ScriptedBitfinex(session.script(), rest=pairs) as server, running_client(
        settings_for(server.url, server.http_url, symbols=["BTC/USD", "ETH/USD", "LTC/USD"],
                     max_channels_per_connection=4)
    ) as running:
        await server.wait_until(lambda: server.connections == 2 and len(server.received) == 2 * 1 + 3 * 2)

        subscribes = [(r["channel"], r["symbol"]) for r in server.requests() if r["event"] == "subscribe"]
        assert sorted(subscribes) == sorted((c, f"t{s}USD") for c in ("book", "trades") for s in ("BTC", "ETH", "LTC"))
        assert len(running.client.stream_counters()) == 2


class SteppedClock(SimulatedClock):
    """A simulated clock whose ``sleep`` waits until the test has moved time far enough (one sleeper)."""

    def __init__(self) -> None:
        super().__init__()
        self._moved = asyncio.Event()

    def advance(self, seconds: float = 0.0, *, ns: int = 0) -> None:
        super().advance(seconds, ns=ns)
        self._moved.set()

    async def sleep(self, seconds: float) -> None:
        until = self.monotonic_ns() + int(seconds * 1e9)
        while self.monotonic_ns() < until:
            self._moved.clear()
            await self._moved.wait()


async def test_requests_are_paced_to_max_requests_per_sec_on_the_injected_clock() -> None:
    pairs = {PAIRS_PATH: '[["BTCUSD","ETHUSD"]]'}
    clock = SteppedClock()
    ctx = recording_context()
    ctx.clock = clock  # the request writer sleeps on it; with the watchdog off nothing else does

    async with ScriptedBitfinex(SpecsSession().script(), rest=pairs) as server, running_client(
        settings_for(server.url, server.http_url, symbols=["BTC/USD", "ETH/USD"], max_requests_per_sec=2.0,
                     stale_after_ms=0), ctx
    ):
        seen = []
        for tenth in range(26):
            due = min(5, tenth // 5 + 1)  # conf at 0 s, then one request per 0.5 s
            await server.wait_until(lambda due=due: len(server.received) == due)
            seen.append(len(server.received))
            clock.advance(0.1)

    assert seen == [min(5, t // 5 + 1) for t in range(26)]
    assert [r["event"] for r in server.requests()] == ["conf", "subscribe", "subscribe", "subscribe", "subscribe"]


# -- settings and registration ------------------------------------------------------------------------------


def test_settings_default_to_the_real_endpoints() -> None:
    settings = BitfinexSettings()
    assert settings.ws_url == BITFINEX_PUBLIC_URL == "wss://api-pub.bitfinex.com/ws/2"
    assert settings.rest_url == "https://api-pub.bitfinex.com"
    assert settings.checksums


def test_settings_reject_unknown_keys_venue_symbols_and_bad_depths() -> None:
    with pytest.raises(ValidationError, match="ws_urll"):
        BitfinexSettings.model_validate({"ws_urll": "x"})
    with pytest.raises(ValidationError, match="unified symbol"):
        BitfinexSettings(symbols=["tBTCUSD"])
    with pytest.raises(ValidationError, match="depth"):
        BitfinexSettings.model_validate({"depth": 50})


def test_plugin_registers_the_bitfinex_venue() -> None:
    registry: Registry[Any] = Registry("venue")

    plugin.botframe_register_venues(registry)

    entry = registry.get("bitfinex")
    assert entry is not None
    assert entry.settings_model is BitfinexSettings
    client = entry.factory(BitfinexSettings(symbols=["ETH/USD"]), recording_context())
    assert isinstance(client, BitfinexDataClient)
    assert client.symbols == ["ETH/USD"]


async def test_simulator_url_without_a_simulator_names_the_fix() -> None:
    client = BitfinexDataClient(BitfinexSettings(ws_url="simulator"), recording_context())

    with pytest.raises(LookupError, match="simulator"):
        await client.run()
