"""The OKX data client driven through real local servers: the replay server for the recorded capture, and a
scripted OKX (frames built from SPECS.md, answers to resubscriptions) for what the capture does not show."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_watch import Watcher, run_engine
from pydantic import ValidationError

from botframe.bus import EventBus
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason, Level, Side
from botframe.plugins import Registry
from botframe.streams import BackoffSettings
from botframe.testing import WAIT_FOR_REQUEST, RecordingVenueContext, ReplayScript, ScriptedVenue, running_venue
from botframe.venues import Endpoints
from botframe_plugins.okx import plugin
from botframe_plugins.okx.config import OKX_PUBLIC_URL, OkxSettings
from botframe_plugins.okx.data import OkxDataClient
from botframe_plugins.okx.parsing import UnknownSymbolError
from botframe_plugins.sim.replay import ReplayServer

pytestmark = pytest.mark.timeout(60)

FAST = BackoffSettings(initial_delay_ms=1, factor=2, max_delay_ms=5, jitter=0.0)
CAPTURE = "okx/OKX.ws.1.0.books_trades_tickers.txt"
INSTRUMENTS = "okx/OKX.0.rest_instruments.txt"
WS_PATH = "/ws/v5/public"
CAPTURE_SYMBOLS = {"BTC-USD-220527": "BTC/USD:BTC-220527", "UNI-USD-SWAP": "UNI/USD:UNI", "BTC-USDT": "BTC/USDT"}


# -- recorded data and a plain reference ---------------------------------------------------------------------


def server_frames(path: Path) -> list[str]:
    """The payloads the exchange sent, in order (format: shared/data/README.md)."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith(("wss://", "https://", "configuration")):
            continue
        out.append(line.partition(": ")[2])
    return out


def rest_bodies(path: Path) -> dict[str, str]:
    """The first REST body of each request target (``/api/v5/public/instruments?instType=SPOT``)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if " -> " in line:
            url, _, rest = line.partition(" -> ")
            out.setdefault(url.removeprefix("https://www.okx.com"), rest.partition(": ")[2])
    return out


def plain_checksum(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    """SPECS.md section 3, written out: interleaved top-25 ``price:size`` texts, CRC32 as signed int32."""
    parts = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - 2**32 if crc >= 2**31 else crc


class ReferenceBook:
    """A plain OKX book: wire text in Decimal-keyed dicts; size 0 deletes."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, bids: list[list[str]], asks: list[list[str]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for lv in levels:
                if Decimal(lv[1]) == 0:
                    side.pop(Decimal(lv[0]), None)
                else:
                    side[Decimal(lv[0])] = (lv[0], lv[1])

    def sorted_bids(self) -> list[tuple[str, str]]:
        return [self.bids[p] for p in sorted(self.bids, reverse=True)]

    def sorted_asks(self) -> list[tuple[str, str]]:
        return [self.asks[p] for p in sorted(self.asks)]

    def checksum(self) -> int:
        return plain_checksum(self.sorted_bids(), self.sorted_asks())

    def top(self, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return (
            [(float(p), float(q)) for p, q in self.sorted_bids()[:n]],
            [(float(p), float(q)) for p, q in self.sorted_asks()[:n]],
        )


def capture_reference(frames: list[str]) -> dict[str, ReferenceBook]:
    books: dict[str, ReferenceBook] = {}
    for frame in frames:
        msg = json.loads(frame)
        if msg.get("arg", {}).get("channel") != "books" or "data" not in msg:
            continue
        inst = msg["arg"]["instId"]
        if msg["action"] == "snapshot":
            books[inst] = ReferenceBook()
        for data in msg["data"]:
            books[inst].apply(data["bids"], data["asks"])
    return books


def book_updates(frames: list[str], inst_id: str) -> list[int]:
    return [i for i, f in enumerate(frames) if f'"instId":"{inst_id}"}},"action":"update"' in f]


def detectable_removal(frames: list[str], inst_id: str, start: int) -> tuple[int, int]:
    """(removed, detecting): the first update from the ``start``-th on whose loss the next update's checksum
    shows (a change below the top 25 levels, or one the next update overwrites, is invisible to OKX's)."""
    updates = book_updates(frames, inst_id)
    for removed, detecting in zip(updates[start:], updates[start + 1 :], strict=False):
        book = capture_reference(frames[:removed] + frames[removed + 1 : detecting + 1])[inst_id]
        if book.checksum() != json.loads(frames[detecting])["data"][0]["checksum"]:
            return removed, detecting
    raise AssertionError("no detectable removal")


def capture_states(frames: list[str], inst_id: str) -> dict[int, tuple[list[Level], list[Level]]]:
    """The true top 10 levels of ``inst_id``'s book after each of its book frames, by index in ``frames``."""
    out: dict[int, tuple[list[Level], list[Level]]] = {}
    book = ReferenceBook()
    for i, frame in enumerate(frames):
        if f'"channel":"books","instId":"{inst_id}"' not in frame or '"data"' not in frame:
            continue
        msg = json.loads(frame)
        if msg["action"] == "snapshot":
            book = ReferenceBook()
        for data in msg["data"]:
            book.apply(data["bids"], data["asks"])
        out[i] = book.top()
    return out


def detectable_alteration(frames: list[str], inst_id: str, start: int) -> tuple[int, str]:
    """(index, frame): the first update of ``inst_id`` from the ``start``-th on whose first level, given a
    wrong size, disagrees with the frame's own checksum (a level below the top 25 would not)."""
    for i in book_updates(frames, inst_id)[start:]:
        msg = json.loads(frames[i])
        data = msg["data"][0]
        level = (data["bids"] or data["asks"])[0]
        level[1] = "7.77" if level[1] != "7.77" else "7.78"
        altered = json.dumps(msg, separators=(",", ":"))
        if capture_reference([*frames[:i], altered])[inst_id].checksum() != data["checksum"]:
            return i, altered
    raise AssertionError("no detectable alteration")


# -- a minimal engine side --------------------------------------------------------------------------------


def recording_context(endpoints: Endpoints | None = None) -> RecordingVenueContext:
    """The engine's side: real L2Books, apply-then-publish as the engine does, everything recorded."""
    return RecordingVenueContext("okx", endpoints=endpoints)


@dataclass
class Running:
    ctx: RecordingVenueContext
    client: OkxDataClient

    def matched(self) -> int:
        return sum(c.checksums_matched for c in self.client.book_counters().values())

    def failed(self) -> int:
        return sum(c.checksum_failures for c in self.client.book_counters().values())


@contextlib.asynccontextmanager
async def running_client(settings: OkxSettings, ctx: RecordingVenueContext | None = None) -> AsyncIterator[Running]:
    """A client running against the servers ``settings`` name; cancelled (and checked to stop) afterwards."""
    ctx = ctx or recording_context()
    async with running_venue(OkxDataClient(settings, ctx)) as client:
        yield Running(ctx, client)


def settings_for(ws_url: str, rest_url: str, **overrides: Any) -> OkxSettings:
    values: dict[str, Any] = {
        "ws_url": ws_url, "rest_url": rest_url, "symbols": list(CAPTURE_SYMBOLS.values()), "backoff": FAST,
        "stale_after_ms": 60_000, "max_requests_per_sec": 1000.0,
    }
    values.update(overrides)
    return OkxSettings(**values)


# -- a scripted OKX: frames in order, and answers to the client's later requests ---------------------------


def scripted_okx(rest: dict[str, str], script: list[str], answer: Callable[[str, int], list[str]] | None = None,
                 *, later_script: list[str] | None = None) -> ScriptedVenue:
    """An OKX endpoint on 127.0.0.1 that plays ``script`` (see :class:`~botframe.testing.ScriptedVenue`) and
    answers the text ``ping`` with ``pong`` at once, as OKX does."""
    return ScriptedVenue(script, answer or (lambda text, sent: []), later_script, rest=rest, replies={"ping": "pong"},
                         ws_path=WS_PATH)


def book_frame(inst_id: str, action: str, book: ReferenceBook, data: dict[str, Any]) -> str:
    return json.dumps({"arg": {"channel": "books", "instId": inst_id}, "action": action, "data": [data]},
                      separators=(",", ":"))


def resnapshot_from(state: Callable[[int], dict[str, ReferenceBook]], seq_id: Callable[[], int | None] = lambda: None
                    ) -> Callable[[str, int], list[str]]:
    """Answers a ``books`` (un)subscribe: acks, and for a subscribe a snapshot of the exchange's book by then."""

    def answer(text: str, sent: int) -> list[str]:
        req = json.loads(text)
        out = []
        for arg in req["args"]:
            out.append(json.dumps({"event": req["op"], "arg": arg, "connId": "a4d3ae55"}))
            if req["op"] == "subscribe" and arg["channel"] == "books":
                book = state(sent)[arg["instId"]]
                data: dict[str, Any] = {
                    "asks": [[p, q, "0", "1"] for p, q in book.sorted_asks()],
                    "bids": [[p, q, "0", "1"] for p, q in book.sorted_bids()],
                    "ts": "1652459230000", "checksum": book.checksum(),
                }
                seq = seq_id()
                if seq is not None:
                    data.update(seqId=seq, prevSeqId=-1)
                out.append(book_frame(arg["instId"], "snapshot", book, data))
        return out

    return answer


# -- the recorded capture through the replay server -------------------------------------------------------------


@contextlib.asynccontextmanager
async def replaying(shared_data: Path) -> AsyncIterator[ReplayServer]:
    server = ReplayServer(shared_data / CAPTURE, rest_captures=[shared_data / INSTRUMENTS])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_capture_rebuilds_every_book_with_all_290_checksums_matched(shared_data: Path) -> None:
    reference = capture_reference(server_frames(shared_data / CAPTURE))

    async with replaying(shared_data) as server, running_client(
        settings_for(server.url + WS_PATH, server.rest_url)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 290)

        assert running.failed() == 0
        assert ctx.crossed_after_event == 0
        assert ctx.counts["gaps"] == ctx.counts["parse_errors"] == ctx.counts["resyncs"] == 0
        for inst_id, unified in CAPTURE_SYMBOLS.items():
            book = ctx.books[unified]
            assert ctx.transitions(unified) == [
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert (book.bids(10), book.asks(10)) == reference[inst_id].top()
        assert ctx.instruments["BTC/USD:BTC-220527"].venue_symbol == "BTC-USD-220527"
        assert ctx.instruments["UNI/USD:UNI"].tick_size == "0.001"
        assert ctx.instruments["BTC/USDT"].lot_size == "0.00000001"
        assert ctx.counts["ignored_frames"] == 28  # tickers


async def test_capture_trades_carry_the_taker_side(shared_data: Path) -> None:
    recorded = [d for f in server_frames(shared_data / CAPTURE) if '"channel":"trades"' in f and '"data"' in f
                for d in json.loads(f)["data"]]

    async with replaying(shared_data) as server, running_client(
        settings_for(server.url + WS_PATH, server.rest_url)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: len(ctx.trades()) == len(recorded))

        trades = ctx.trades()
        assert [t.side for t in trades] == [Side(d["side"]) for d in recorded]
        assert [(t.price, t.size, t.trade_id) for t in trades] == [
            (float(d["px"]), float(d["sz"]), d["tradeId"]) for d in recorded]
        assert [t.symbol for t in trades] == [CAPTURE_SYMBOLS[d["instId"]] for d in recorded]
        assert trades[0].exchange_ts_ns == int(recorded[0]["ts"]) * 1_000_000


async def test_unknown_symbol_stops_start_up_naming_it(shared_data: Path) -> None:
    async with replaying(shared_data) as server:
        client = OkxDataClient(settings_for(server.url + WS_PATH, server.rest_url, symbols=["BTC/USD:BTC-991231"]),
                               recording_context())

        with pytest.raises(UnknownSymbolError, match="'BTC/USD:BTC-991231' is not listed by OKX"):
            async with asyncio.timeout(10):
                await client.run()


# -- what the capture does not show, with an OKX that answers ---------------------------------------------------


def capture_state(script: ReplayScript) -> Callable[[int], dict[str, ReferenceBook]]:
    """The exchange's books once ``sent`` script frames went out."""
    return lambda sent: capture_reference(script.happened(sent))


def _rest(shared_data: Path) -> dict[str, str]:
    return rest_bodies(shared_data / INSTRUMENTS)


async def test_removed_update_fails_the_next_checksum_and_the_book_resubscribes(shared_data: Path) -> None:
    original = server_frames(shared_data / CAPTURE)
    removed, detecting = detectable_removal(original, "UNI-USD-SWAP", 30)
    script = ReplayScript(original).take(i for i in range(detecting + 1) if i != removed)
    script.wait(2).take(range(detecting + 1, len(original)))  # the unsubscribe, then the subscribe

    async with scripted_okx(_rest(shared_data), script.frames, resnapshot_from(capture_state(script))) as server, \
            running_client(settings_for(server.url, server.http_url, trades=False)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 290 - 2 + 1)  # lost, failed; one more snapshot

        assert running.failed() == 1
        assert ctx.counts["checksum_failures"] == ctx.counts["resyncs"] == 1
        assert ctx.transitions("UNI/USD:UNI") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert [json.loads(r)["op"] for r in server.received[1:]] == ["unsubscribe", "subscribe"]
        assert json.loads(server.received[1])["args"] == [{"channel": "books", "instId": "UNI-USD-SWAP"}]
        book = ctx.books["UNI/USD:UNI"]
        assert (book.bids(10), book.asks(10)) == capture_reference(original)["UNI-USD-SWAP"].top()


async def test_corrupted_checksum_resyncs_only_that_book(shared_data: Path) -> None:
    original = server_frames(shared_data / CAPTURE)
    corrupted = book_updates(original, "BTC-USDT")[40]
    msg = json.loads(original[corrupted])
    msg["data"][0]["checksum"] += 1
    script = ReplayScript(original).take(range(corrupted)).altered(corrupted, json.dumps(msg)).wait(2)
    script.take(range(corrupted + 1, len(original)))

    async with scripted_okx(_rest(shared_data), script.frames, resnapshot_from(capture_state(script))) as server, \
            running_client(settings_for(server.url, server.http_url, trades=False)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 290 - 1 + 1)

        assert running.failed() == 1
        assert ctx.transitions("BTC/USDT")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert len(ctx.transitions("UNI/USD:UNI")) == len(ctx.transitions("BTC/USD:BTC-220527")) == 2
        book = ctx.books["BTC/USDT"]
        assert (book.bids(10), book.asks(10)) == capture_reference(original)["BTC-USDT"].top()


async def test_frame_with_a_wrong_size_never_reaches_a_bus_subscriber_and_its_book_resyncs(
    shared_data: Path,
) -> None:
    original = server_frames(shared_data / CAPTURE)
    at, altered = detectable_alteration(original, "BTC-USDT", 40)
    script = ReplayScript(original).take(range(at)).altered(at, altered).wait(2).take(range(at + 1, len(original)))
    truth = capture_states(original, "BTC-USDT")
    bus = EventBus()
    ctx = RecordingVenueContext("okx", bus=bus)
    seen: list[tuple[type, list[Level], list[Level]]] = []  # what the engine's subscribers would read

    def see(event: BookSnapshot | BookDelta) -> None:
        if event.symbol == "BTC/USDT":
            book = ctx.book("BTC/USDT")
            seen.append((type(event), book.bids(10), book.asks(10)))

    bus.subscribe(BookSnapshot, see)
    bus.subscribe(BookDelta, see)

    async with scripted_okx(_rest(shared_data), script.frames, resnapshot_from(capture_state(script))) as server, \
            running_client(settings_for(server.url, server.http_url, trades=False), ctx) as running:
        await ctx.wait_until(lambda: running.matched() == 290 - 1 + 1)

        assert running.failed() == 1
        [withheld] = ctx.unpublished()
        assert withheld.symbol == "BTC/USDT"
        assert ctx.transitions("BTC/USDT")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
    # Every book state a subscriber read after an update is the exchange's own; the wrong one never was.
    updates = book_updates(original, "BTC-USDT")
    assert [(bids, asks) for kind, bids, asks in seen if kind is BookDelta] == [truth[i] for i in updates if i != at]
    assert [kind for kind, _, _ in seen].count(BookSnapshot) == 2  # the first one and the resync's


async def test_strategy_in_the_engine_is_never_shown_the_book_a_wrong_frame_made(
    shared_data: Path, tmp_path: Path
) -> None:
    original = server_frames(shared_data / CAPTURE)
    at, altered = detectable_alteration(original, "BTC-USDT", 40)
    script = ReplayScript(original).take(range(at)).altered(at, altered).wait(2).take(range(at + 1, len(original)))
    truth = capture_states(original, "BTC-USDT")
    wrong = capture_reference([*original[:at], altered])["BTC-USDT"].top()
    last_true = truth[max(truth)]

    def done(w: Watcher) -> bool:
        resynced = any(s.reason is HealthReason.CHECKSUM for s in w.statuses)
        return resynced and bool(w.shown) and w.shown[-1][1:] == last_true

    watcher = Watcher(done)
    async with scripted_okx(_rest(shared_data), script.frames, resnapshot_from(capture_state(script))) as server:
        config = tmp_path / "bot.toml"
        config.write_text(
            f'duration_secs = 30\n[journal]\nenabled = false\n'
            f'[venues.okx]\nws_url = "{server.url}"\nrest_url = "{server.http_url}"\nsymbols = ["BTC/USDT"]\n'
            f'trades = false\nmax_requests_per_sec = 1000.0\n'
            f'[venues.okx.backoff]\ninitial_delay_ms = 1\nmax_delay_ms = 5\njitter = 0.0\n'
            f'[strategies.watch]\nvenue = "okx"\nsymbols = ["BTC/USDT"]\n'
        )
        summary = await run_engine(config, watcher)

    assert not summary.failed
    assert summary.venue_counters["okx"]["checksum_failures"] == 1
    # Every event on the engine's bus left the book in the exchange's own state; the wrong one never went out.
    updates = book_updates(original, "BTC-USDT")
    assert watcher.deltas_on_bus("BTC/USDT") == [truth[i] for i in updates if i != at]
    assert watcher.snapshots_on_bus("BTC/USDT") == 2  # the first one and the resync's
    # Strategies see books at the end of each burst: every state shown is a true one, never the wrong one.
    assert wrong not in truth.values()
    assert watcher.shown
    assert all(shown[1:] in truth.values() for shown in watcher.shown)


async def test_malformed_frames_are_logged_cut_counted_and_resync_their_book(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = server_frames(shared_data / CAPTURE)
    at = book_updates(original, "BTC-USDT")[20]
    garbage = "<html>502 Bad Gateway</html>" + "x" * 500
    bad_number = ('{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["abc","1","0",'
                  '"1"]],"bids":[],"ts":"1652459230000","checksum":1}]}')
    script = ReplayScript(original).take(range(at)).extra(garbage).extra(bad_number).wait(2)
    script.take(range(at, len(original)))

    async with scripted_okx(_rest(shared_data), script.frames, resnapshot_from(capture_state(script))) as server, \
            running_client(settings_for(server.url, server.http_url, trades=False)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 290 + 1)

        assert ctx.counts["parse_errors"] == 2
        assert running.client.stream_counters()[0].parse_errors == 2
        assert ctx.transitions("BTC/USDT") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        book = ctx.books["BTC/USDT"]
        assert (book.bids(10), book.asks(10)) == capture_reference(original)["BTC-USDT"].top()
    logged = capsys.readouterr().out
    assert "unreadable frame skipped" in logged
    assert "<html>502 Bad Gateway</html>" + "x" * 172 in logged
    assert "x" * 173 not in logged  # the raw text is cut to 200 characters


# -- sequence ids, built from SPECS.md ---------------------------------------------------------------------------


INSTRUMENTS_BTC_USDT = json.dumps({"code": "0", "msg": "", "data": [{
    "instId": "BTC-USDT", "instType": "SPOT", "baseCcy": "BTC", "quoteCcy": "USDT", "settleCcy": "", "uly": "",
    "tickSz": "0.1", "lotSz": "0.00000001", "minSz": "0.00001", "state": "live"}]})


class SeqSession:
    """OKX ``books`` frames for BTC-USDT with ``seqId``/``prevSeqId`` as SPECS.md describes them."""

    def __init__(self) -> None:
        self.book = ReferenceBook()
        self.frames: list[str] = []
        self.at_wait = ReferenceBook()  # the exchange's book where the script waits for a resubscription

    def _data(self, bids: list[list[str]], asks: list[list[str]], seq: int, prev: int, checksum: bool) -> str:
        self.book.apply(bids, asks)
        data = {"asks": [[*lv, "0", "1"] for lv in asks], "bids": [[*lv, "0", "1"] for lv in bids],
                "ts": "1780000000000", "checksum": self.book.checksum() if checksum else 0, "seqId": seq,
                "prevSeqId": prev}
        return book_frame("BTC-USDT", "snapshot" if prev == -1 else "update", self.book, data)

    def snapshot(self, seq: int) -> SeqSession:
        bids = [[f"{30000 - i}.5", f"{i + 1}.25"] for i in range(30)]
        asks = [[f"{30001 + i}.5", f"{i + 1}.5"] for i in range(30)]
        self.frames.append(self._data(bids, asks, seq, -1, True))
        return self

    def update(self, bids: list[list[str]], asks: list[list[str]], seq: int, prev: int, *, checksum: bool = True,
               lost: bool = False) -> SeqSession:
        frame = self._data(bids, asks, seq, prev, checksum)
        if not lost:
            self.frames.append(frame)
        return self

    def wait(self, requests: int) -> SeqSession:
        self.frames += [WAIT_FOR_REQUEST] * requests
        self.at_wait.bids = dict(self.book.bids)
        self.at_wait.asks = dict(self.book.asks)
        return self


async def test_seq_chain_takes_jumps_keepalives_and_resets_and_resyncs_on_a_gap() -> None:
    session = SeqSession().snapshot(100)
    session.update([["30000.5", "9"]], [], seq=101, prev=100)
    session.update([], [["30001.5", "0"]], seq=103, prev=101)  # +2: seqId may jump
    session.update([], [], seq=103, prev=103)  # keep-alive: no change, prevSeqId == seqId
    session.update([["29999.5", "0"]], [], seq=5, prev=103)  # reset after maintenance: lower, still chained
    session.update([["30000.1", "0.5"]], [], seq=6, prev=5, checksum=False)  # checksum 0 = absent
    session.update([["30000.2", "1"]], [], seq=7, prev=6, checksum=False, lost=True)
    session.update([], [["30002.5", "7"]], seq=8, prev=7, checksum=False)  # the gap: 7 never arrived
    session.wait(2)  # unsubscribe, subscribe: a snapshot at seqId 20
    session.update([["30000.3", "2"]], [], seq=21, prev=20)
    rest = {"/api/v5/public/instruments?instType=SPOT": INSTRUMENTS_BTC_USDT}
    answer = resnapshot_from(lambda sent: {"BTC-USDT": session.at_wait}, lambda: 20)

    async with scripted_okx(rest, session.frames, answer) as server, running_client(
        settings_for(server.url, server.http_url, symbols=["BTC/USDT"], trades=False)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: ctx.book("BTC/USDT").last_seq == 21)

        counters = running.client.book_counters()["BTC/USDT"]
        assert (counters.gaps, counters.keepalives, counters.seq_resets, counters.checksum_failures) == (1, 1, 1, 0)
        assert counters.checksums_absent == 1  # seqId 6; 8 is the gap, refused before any check
        assert ctx.counts["gaps"] == 1
        assert ctx.transitions("BTC/USDT") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.GAP),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        gap = next(s for s in ctx.statuses if s.reason is HealthReason.GAP)
        assert gap.detail == "prevSeqId=7 != last seqId=6 (seqId=8)"
        book = ctx.books["BTC/USDT"]
        assert (book.bids(10), book.asks(10)) == session.book.top()
        assert (book.prev_seq, book.last_seq) == (20, 21)


@pytest.mark.parametrize("reason", [HealthReason.STALE, HealthReason.CROSSED])
async def test_engine_resync_request_resubscribes_the_book(reason: HealthReason) -> None:
    session = SeqSession().snapshot(100)
    session.update([["30000.5", "9"]], [], seq=101, prev=100)
    session.wait(2)  # the engine's request: unsubscribe, subscribe, answered with a snapshot at seqId 20
    session.update([["30000.3", "2"]], [], seq=21, prev=20)
    rest = {"/api/v5/public/instruments?instType=SPOT": INSTRUMENTS_BTC_USDT}
    answer = resnapshot_from(lambda sent: {"BTC-USDT": session.at_wait}, lambda: 20)

    async with scripted_okx(rest, session.frames, answer) as server, running_client(
        settings_for(server.url, server.http_url, symbols=["BTC/USDT"], trades=False)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: ctx.book("BTC/USDT").last_seq == 101)

        running.client.resync("BTC/USDT", reason, "found by the engine")
        await ctx.wait_until(lambda: ctx.book("BTC/USDT").last_seq == 21)

        assert ctx.transitions("BTC/USDT") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, reason),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert ctx.counts["crossed"] == 0  # the engine counts what it found, once
        assert [json.loads(r)["op"] for r in server.received[1:]] == ["unsubscribe", "subscribe"]
        book = ctx.books["BTC/USDT"]
        assert (book.bids(10), book.asks(10)) == session.book.top()


# -- heartbeats and venue events ----------------------------------------------------------------------------------


async def test_quiet_connection_sends_the_text_ping_and_takes_the_pong() -> None:
    session = SeqSession().snapshot(1)
    rest = {"/api/v5/public/instruments?instType=SPOT": INSTRUMENTS_BTC_USDT}

    async with scripted_okx(rest, session.frames) as server, running_client(
        settings_for(server.url, server.http_url, symbols=["BTC/USDT"], heartbeat_interval_secs=0.05)
    ) as running:
        await server.wait_until(lambda: server.received.count("ping") >= 2, timeout=10)

        assert running.ctx.books["BTC/USDT"].is_live
        assert running.client.stream_counters()[0].messages >= 2  # the snapshot and at least one pong


async def test_error_event_is_logged_and_a_service_upgrade_notice_reconnects(
    capsys: pytest.CaptureFixture[str]
) -> None:
    session = SeqSession().snapshot(1)
    session.frames += [
        '{"event":"error","code":"60018","msg":"Wrong URL or channel:books,instId:FOO-BAR doesn\'t exist",'
        '"connId":"a4d3ae55"}',
        '{"event":"channel-conn-count","channel":"books","connCount":"1","connId":"a4d3ae55"}',
        '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. '
        'Please reconnect.","connId":"a4d3ae55"}',
    ]
    rest = {"/api/v5/public/instruments?instType=SPOT": INSTRUMENTS_BTC_USDT}

    async with scripted_okx(rest, session.frames, later_script=session.frames[:1]) as server, running_client(
        settings_for(server.url, server.http_url, symbols=["BTC/USDT"])
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: server.connections == 2 and ctx.book("BTC/USDT").is_live
                             and len(ctx.transitions("BTC/USDT")) == 5)

        assert ctx.counts["subscription_errors"] == 1
        assert ctx.counts["notices"] == 1
        assert ctx.counts["ignored_frames"] == 1  # channel-conn-count
        assert ctx.transitions("BTC/USDT")[2:] == [
            (BookHealth.CONNECTING, HealthReason.DISCONNECTED),
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
    logged = capsys.readouterr().out
    assert "OKX refused a request" in logged
    assert "60018" in logged


async def test_symbols_beyond_the_per_connection_limit_open_more_connections(shared_data: Path) -> None:
    reference = capture_reference(server_frames(shared_data / CAPTURE))
    # Every connection is served the whole recording; each keeps only the books it subscribed.
    script = server_frames(shared_data / CAPTURE)

    async with scripted_okx(_rest(shared_data), script) as server, running_client(
        settings_for(server.url, server.http_url, max_symbols_per_connection=2)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 290)

        subscribes = [json.loads(r)["args"] for r in server.received if r.startswith('{"op":"subscribe"')]
        assert sorted(len(args) for args in subscribes) == [2, 4]  # books and trades of 1 and of 2 symbols
        assert len(running.client.stream_counters()) == 2
        assert ctx.counts["unknown_symbol_frames"] > 0
        for inst_id, unified in CAPTURE_SYMBOLS.items():
            assert (ctx.books[unified].bids(10), ctx.books[unified].asks(10)) == reference[inst_id].top()


# -- settings and registration ------------------------------------------------------------------------------


def test_settings_default_to_the_real_endpoints() -> None:
    settings = OkxSettings()
    assert settings.ws_url == OKX_PUBLIC_URL == "wss://ws.okx.com:8443/ws/v5/public"
    assert settings.rest_url == "https://www.okx.com"


def test_settings_reject_unknown_keys_and_venue_symbols() -> None:
    with pytest.raises(ValidationError, match="ws_urll"):
        OkxSettings.model_validate({"ws_urll": "x"})
    with pytest.raises(ValidationError, match="unified symbol"):
        OkxSettings(symbols=["BTC-USDT"])
    with pytest.raises(ValidationError, match="listed twice"):
        OkxSettings(symbols=["BTC/USDT", "BTC/USDT"])


def test_plugin_registers_the_okx_venue() -> None:
    registry: Registry[Any] = Registry("venue")

    plugin.botframe_register_venues(registry)

    entry = registry.get("okx")
    assert entry is not None
    assert entry.settings_model is OkxSettings
    client = entry.factory(OkxSettings(symbols=["ETH/USDT"]), recording_context())
    assert isinstance(client, OkxDataClient)
    assert client.symbols == ["ETH/USDT"]


async def test_simulator_url_without_a_simulator_names_the_fix() -> None:
    client = OkxDataClient(OkxSettings(ws_url="simulator"), recording_context())

    with pytest.raises(LookupError, match="simulator"):
        await client.run()
