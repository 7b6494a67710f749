"""The Kraken data client driven through real local servers: the replay server for the recorded v1 capture
and for v2 frames built from SPECS.md, a scripted Kraken for resync causality, and the simulator for v2."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from engine_watch import Watcher, run_engine
from pydantic import ValidationError

from botframe.book import kraken_checksum
from botframe.bus import EventBus
from botframe.clock import SimulatedClock
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason, Level, Side
from botframe.plugins import Registry
from botframe.streams import BackoffSettings
from botframe.testing import RecordingVenueContext, ReplayScript, ScriptedVenue, running_venue
from botframe.venues import Endpoints
from botframe_plugins.kraken import plugin
from botframe_plugins.kraken.config import KRAKEN_V1_URL, KRAKEN_V2_URL, KrakenSettings
from botframe_plugins.kraken.data import KrakenDataClient
from botframe_plugins.kraken.parsing import UnknownSymbolError
from botframe_plugins.sim.config import SimSettings, SimSymbolSettings
from botframe_plugins.sim.faults import FaultKind
from botframe_plugins.sim.replay import ReplayServer
from botframe_plugins.sim.server import SimServer

pytestmark = pytest.mark.timeout(60)

FAST = BackoffSettings(initial_delay_ms=1, factor=2, max_delay_ms=5, jitter=0.0)
BOOK_CAPTURE = "kraken/KRAKEN.ws.50.0.book_v1.txt"
TRADE_CAPTURE = "kraken/KRAKEN.ws.48.0.trade_v1.txt"
ASSET_PAIRS = "kraken/KRAKEN.0.rest_AssetPairs.txt"
# The capture's ten pairs as Kraken v1 names them, and the same in unified (ccxt) names.
V1_PAIRS = ["WAVES/EUR", "XMR/USD", "KSM/XBT", "GRT/ETH", "SC/EUR", "ETH/CHF", "OCEAN/XBT", "OMG/USD",
            "XBT/CHF", "ADA/XBT"]
UNIFIED = [p.replace("XBT", "BTC") for p in V1_PAIRS]


# -- recorded data --------------------------------------------------------------------------------------


def server_frames(path: Path) -> list[str]:
    """The payloads the exchange sent, in order (format: shared/data/README.md)."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith(("wss://", "https://", "configuration")):
            continue
        out.append(line.partition(": ")[2])
    return out


def rest_body(path: Path) -> str:
    return path.read_text().splitlines()[0].split(" -> ", 1)[1].partition(": ")[2]


class ReferenceBook:
    """A plain Kraken book: wire text in Decimal-keyed dicts, every level in order, truncated to depth."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, side: dict[Decimal, tuple[str, str]], levels: list[list[str]]) -> None:
        for lv in levels:
            if Decimal(lv[1]) == 0:
                side.pop(Decimal(lv[0]), None)
            else:
                side[Decimal(lv[0])] = (lv[0], lv[1])

    def truncate(self) -> None:
        for side, best_first in ((self.bids, True), (self.asks, False)):
            for price in sorted(side, reverse=best_first)[self.depth :]:
                del side[price]

    def sorted_bids(self) -> list[tuple[str, str]]:
        return [self.bids[p] for p in sorted(self.bids, reverse=True)]

    def sorted_asks(self) -> list[tuple[str, str]]:
        return [self.asks[p] for p in sorted(self.asks)]

    def top(self, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return (
            [(float(p), float(q)) for p, q in self.sorted_bids()[:n]],
            [(float(p), float(q)) for p, q in self.sorted_asks()[:n]],
        )


def v1_reference(frames: list[str], depth: int) -> dict[str, ReferenceBook]:
    """Every v1 book of ``frames`` rebuilt plainly, by pair."""
    books: dict[str, ReferenceBook] = {}
    for frame in frames:
        msg = json.loads(frame)
        if not isinstance(msg, list) or not str(msg[-2]).startswith("book"):
            continue
        pair = msg[-1]
        parts = msg[1:-2]
        if "as" in parts[0] or "bs" in parts[0]:
            books[pair] = book = ReferenceBook(depth)
            book.apply(book.asks, parts[0].get("as", []))
            book.apply(book.bids, parts[0].get("bs", []))
        else:
            book = books[pair]
            for part in parts:
                book.apply(book.asks, part.get("a", []))
                book.apply(book.bids, part.get("b", []))
        books[pair].truncate()
    return books


def v1_snapshot_frame(pair: str, book: ReferenceBook) -> str:
    levels = {
        "as": [[p, q, "1618678150.000000"] for p, q in book.sorted_asks()],
        "bs": [[p, q, "1618678150.000000"] for p, q in book.sorted_bids()],
    }
    return json.dumps([9999, levels, f"book-{book.depth}", pair])


def is_book_update(frame: str, pair: str) -> bool:
    return frame.startswith("[") and frame.endswith(f'"{pair}"]') and '"c":' in frame


def detectable_removal(original: list[str], pair: str, start: int) -> tuple[int, int]:
    """(removed, detecting): the first update of ``pair`` from the ``start``-th on whose loss the next
    update's checksum shows (a lost update whose levels the next one overwrites is invisible to Kraken)."""
    updates = [i for i, f in enumerate(original) if is_book_update(f, pair)]
    for removed, detecting in zip(updates[start:], updates[start + 1 :], strict=False):
        frames = original[:removed] + original[removed + 1 : detecting + 1]
        book = v1_reference([f for f in frames if f.endswith(f'"{pair}"]')], 1000)[pair]
        if kraken_checksum(book.sorted_asks(), book.sorted_bids()) != int(json.loads(original[detecting])[-3]["c"]):
            return removed, detecting
    raise AssertionError("no detectable removal")


def v1_states(frames: list[str], pair: str, depth: int = 1000) -> dict[int, tuple[list[Level], list[Level]]]:
    """The true top 10 levels of ``pair``'s book after each of its book frames, by index in ``frames``."""
    out: dict[int, tuple[list[Level], list[Level]]] = {}
    book = ReferenceBook(depth)
    for i, frame in enumerate(frames):
        if not frame.endswith(f'"{pair}"]') or not frame.startswith("["):
            continue
        msg = json.loads(frame)
        if not str(msg[-2]).startswith("book"):
            continue
        parts = msg[1:-2]
        if "as" in parts[0] or "bs" in parts[0]:
            book = ReferenceBook(depth)
            book.apply(book.asks, parts[0].get("as", []))
            book.apply(book.bids, parts[0].get("bs", []))
        else:
            for part in parts:
                book.apply(book.asks, part.get("a", []))
                book.apply(book.bids, part.get("b", []))
        book.truncate()
        out[i] = book.top()
    return out


def detectable_alteration(original: list[str], pair: str, start: int) -> tuple[int, str]:
    """(index, frame): the first update of ``pair`` from the ``start``-th on whose first level, given a wrong
    size, makes the book disagree with the frame's own checksum (a level below the top 10 would not)."""
    for i in [i for i, f in enumerate(original) if is_book_update(f, pair)][start:]:
        msg = json.loads(original[i])
        part = msg[1]
        level = part["a" if "a" in part else "b"][0]
        level[1] = "77.00000000" if level[1] != "77.00000000" else "78.00000000"
        altered = json.dumps(msg)
        frames = [f for f in original[:i] if f.endswith(f'"{pair}"]')] + [altered]
        book = v1_reference(frames, 1000)[pair]
        if kraken_checksum(book.sorted_asks(), book.sorted_bids()) != int(msg[-3]["c"]):
            return i, altered
    raise AssertionError("no detectable alteration")


# -- a minimal engine side --------------------------------------------------------------------------------


def recording_context(endpoints: Endpoints | None = None) -> RecordingVenueContext:
    """The engine's side: real L2Books, apply-then-publish as the engine does, everything recorded."""
    return RecordingVenueContext("kraken", endpoints=endpoints)


@dataclass
class Running:
    ctx: RecordingVenueContext
    client: KrakenDataClient

    def matched(self) -> int:
        return sum(c.checksums_matched for c in self.client.book_counters().values())

    def failed(self) -> int:
        return sum(c.checksum_failures for c in self.client.book_counters().values())


@contextlib.asynccontextmanager
async def running_client(settings: KrakenSettings, ctx: RecordingVenueContext | None = None) -> AsyncIterator[Running]:
    """A client running against the servers ``settings`` name; cancelled (and checked to stop) afterwards."""
    ctx = ctx or recording_context()
    async with running_venue(KrakenDataClient(settings, ctx)) as client:
        yield Running(ctx, client)


@contextlib.asynccontextmanager
async def replaying(capture: Path, *rest: Path) -> AsyncIterator[ReplayServer]:
    server = ReplayServer(capture, rest_captures=list(rest))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def v1_settings(ws_url: str, rest_url: str, **overrides: Any) -> KrakenSettings:
    values: dict[str, Any] = {
        "api_version": "v1", "ws_url": ws_url, "rest_url": rest_url, "symbols": UNIFIED, "depth": 1000,
        "backoff": FAST, "stale_after_ms": 60_000, "max_requests_per_sec": 1000.0,
    }
    values.update(overrides)
    return KrakenSettings(**values)


# -- a scripted Kraken: the recorded frames, altered, and answers to the client's later requests ---------


class Script(ReplayScript):
    """Recorded v1 frames for a :class:`~botframe.testing.ScriptedVenue` that answers as Kraken does."""

    def v1_answer(self, depth: int) -> Callable[[str, int], list[str]]:
        """Answers a v1 book (un)subscribe; a subscribe gets the book as the exchange has it by then.

        Recorded frames left out of the script still happened on the exchange, so they are in the snapshot.
        """

        def answer(text: str, sent: int) -> list[str]:
            request = json.loads(text)
            if request.get("subscription", {}).get("name") != "book":
                return []
            books = v1_reference(self.happened(sent), depth)
            out = []
            for pair in request["pair"]:
                status = "subscribed" if request["event"] == "subscribe" else "unsubscribed"
                out.append(json.dumps({"channelID": 9999, "channelName": f"book-{depth}",
                                       "event": "subscriptionStatus", "pair": pair, "status": status,
                                       "subscription": {"depth": depth, "name": "book"}}))
                if request["event"] == "subscribe":
                    out.append(v1_snapshot_frame(pair, books[pair]))
            return out

        return answer


# -- v1: the recorded capture through the replay server -----------------------------------------------------


async def test_v1_capture_rebuilds_every_book_with_all_4269_checksums_matched(shared_data: Path) -> None:
    frames = server_frames(shared_data / BOOK_CAPTURE)
    reference = v1_reference(frames, 1000)

    async with replaying(shared_data / BOOK_CAPTURE, shared_data / ASSET_PAIRS) as server, running_client(
        v1_settings(server.url, server.rest_url)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 4269)

        assert running.failed() == 0
        assert ctx.crossed_after_event == 0
        assert ctx.counts["parse_errors"] == ctx.counts["gaps"] == ctx.counts["resyncs"] == 0
        for v1_name, unified in zip(V1_PAIRS, UNIFIED, strict=True):
            book = ctx.books[unified]
            assert ctx.transitions(unified) == [
                (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                (BookHealth.LIVE, HealthReason.SNAPSHOT),
            ]
            assert (book.bids(10), book.asks(10)) == reference[v1_name].top()
        assert ctx.instruments["BTC/CHF"].venue_symbol == "XBT/CHF"
        assert ctx.instruments["BTC/CHF"].tick_size == "0.1"
        assert ctx.instruments["BTC/CHF"].lot_size == "0.00000001"


async def test_v1_symbols_beyond_the_per_connection_limit_open_more_connections(shared_data: Path) -> None:
    async with replaying(shared_data / BOOK_CAPTURE, shared_data / ASSET_PAIRS) as server, running_client(
        v1_settings(server.url, server.rest_url, max_symbols_per_connection=4)
    ) as running:
        ctx = running.ctx
        # Every connection is served the whole recording; each keeps only the books it subscribed.
        await ctx.wait_until(lambda: running.matched() == 4269)

        assert len(running.client.stream_counters()) == 3
        assert running.failed() == 0
        assert all(ctx.books[s].is_live for s in UNIFIED)
        assert ctx.counts["unknown_symbol_frames"] > 0


async def test_v1_trade_capture_publishes_trades_with_the_taker_side(shared_data: Path) -> None:
    recorded = [t for f in server_frames(shared_data / TRADE_CAPTURE) if f.startswith("[")
                for t in json.loads(f)[1]]

    async with replaying(shared_data / TRADE_CAPTURE, shared_data / ASSET_PAIRS) as server, running_client(
        v1_settings(server.url, server.rest_url)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: len(ctx.trades()) == len(recorded))

        trades = ctx.trades()
        assert [t.side for t in trades] == [Side.BUY if r[3] == "b" else Side.SELL for r in recorded]
        assert [t.price for t in trades] == [float(r[0]) for r in recorded]
        assert [t.size for t in trades] == [float(r[1]) for r in recorded]
        assert trades[0].exchange_ts_ns == int(Decimal(recorded[0][2]) * 10**9)
        assert {t.symbol for t in trades} <= set(UNIFIED)


# -- v1: what the capture does not show, with a Kraken that answers ------------------------------------------


def _scripted(shared_data: Path, script: Script) -> ScriptedVenue:
    rest = {"/0/public/AssetPairs": rest_body(shared_data / ASSET_PAIRS)}
    return ScriptedVenue(script.frames, script.v1_answer(1000), rest=rest)


async def test_v1_removed_update_fails_the_next_checksum_and_the_book_resubscribes(shared_data: Path) -> None:
    original = server_frames(shared_data / BOOK_CAPTURE)
    removed, detecting = detectable_removal(original, "XMR/USD", 20)
    script = Script(original).take(range(removed)).take(range(removed + 1, detecting + 1))
    script.wait(2).take(range(detecting + 1, len(original)))  # the unsubscribe, then the subscribe

    async with _scripted(shared_data, script) as server, running_client(
        v1_settings(server.url, server.http_url, trades=False)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 4269 - 2)  # the removed one and the detecting one

        assert running.failed() == 1
        assert ctx.counts["checksum_failures"] == 1
        assert ctx.transitions("XMR/USD") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert [(r["event"], r["pair"]) for r in server.requests()[1:]] == [
            ("unsubscribe", ["XMR/USD"]), ("subscribe", ["XMR/USD"])
        ]
        book = ctx.books["XMR/USD"]
        assert (book.bids(10), book.asks(10)) == v1_reference(original, 1000)["XMR/USD"].top()
        assert all(ctx.books[s].is_live for s in UNIFIED)


async def test_v1_corrupted_checksum_resyncs_only_that_book(shared_data: Path) -> None:
    original = server_frames(shared_data / BOOK_CAPTURE)
    corrupted = [i for i, f in enumerate(original) if is_book_update(f, "ETH/CHF")][5]
    frame = json.loads(original[corrupted])
    frame[-3]["c"] = str((int(frame[-3]["c"]) + 1) % 2**32)
    script = Script(original).take(range(corrupted)).altered(corrupted, json.dumps(frame)).wait(2)
    script.take(range(corrupted + 1, len(original)))

    async with _scripted(shared_data, script) as server, running_client(
        v1_settings(server.url, server.http_url, trades=False)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 4269 - 1)

        assert running.failed() == 1
        assert ctx.transitions("ETH/CHF")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert all(len(ctx.transitions(s)) == 2 for s in UNIFIED if s != "ETH/CHF")
        book = ctx.books["ETH/CHF"]
        assert (book.bids(10), book.asks(10)) == v1_reference(original, 1000)["ETH/CHF"].top()


async def test_v1_frame_with_a_wrong_size_never_reaches_a_bus_subscriber_and_its_book_resyncs(
    shared_data: Path,
) -> None:
    original = server_frames(shared_data / BOOK_CAPTURE)
    at, altered = detectable_alteration(original, "ETH/CHF", 5)
    script = Script(original).take(range(at)).altered(at, altered).wait(2).take(range(at + 1, len(original)))
    truth = v1_states(original, "ETH/CHF")
    bus = EventBus()
    ctx = RecordingVenueContext("kraken", bus=bus)
    seen: list[tuple[type, list[Level], list[Level]]] = []  # what the engine's subscribers would read

    def see(event: BookSnapshot | BookDelta) -> None:
        if event.symbol == "ETH/CHF":
            book = ctx.book("ETH/CHF")
            seen.append((type(event), book.bids(10), book.asks(10)))

    bus.subscribe(BookSnapshot, see)
    bus.subscribe(BookDelta, see)

    async with _scripted(shared_data, script) as server, running_client(
        v1_settings(server.url, server.http_url, trades=False), ctx
    ) as running:
        await ctx.wait_until(lambda: running.matched() == 4269 - 1)

        assert running.failed() == 1
        [withheld] = ctx.unpublished()
        assert withheld.symbol == "ETH/CHF"
        assert ctx.transitions("ETH/CHF")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.CHECKSUM),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
    # Every book state a subscriber read after an update is the exchange's own; the wrong one never was.
    updates = [i for i in truth if is_book_update(original[i], "ETH/CHF")]
    assert [(bids, asks) for kind, bids, asks in seen if kind is BookDelta] == [truth[i] for i in updates if i != at]
    assert [kind for kind, _, _ in seen].count(BookSnapshot) == 2  # the first one and the resync's


async def test_v1_strategy_in_the_engine_is_never_shown_the_book_a_wrong_frame_made(
    shared_data: Path, tmp_path: Path
) -> None:
    original = server_frames(shared_data / BOOK_CAPTURE)
    at, altered = detectable_alteration(original, "ETH/CHF", 5)
    script = Script(original).take(range(at)).altered(at, altered).wait(2).take(range(at + 1, len(original)))
    truth = v1_states(original, "ETH/CHF")
    wrong = v1_reference([f for f in original[:at] if f.endswith('"ETH/CHF"]')] + [altered], 1000)["ETH/CHF"].top()
    last_true = truth[max(truth)]

    def done(w: Watcher) -> bool:
        resynced = any(s.reason is HealthReason.CHECKSUM for s in w.statuses)
        return resynced and bool(w.shown) and w.shown[-1][1:] == last_true

    watcher = Watcher(done)
    async with _scripted(shared_data, script) as server:
        config = tmp_path / "bot.toml"
        config.write_text(
            f'duration_secs = 30\n[journal]\nenabled = false\n'
            f'[venues.kraken]\napi_version = "v1"\nws_url = "{server.url}"\nrest_url = "{server.http_url}"\n'
            f'symbols = ["ETH/CHF"]\ndepth = 1000\ntrades = false\nmax_requests_per_sec = 1000.0\n'
            f'[venues.kraken.backoff]\ninitial_delay_ms = 1\nmax_delay_ms = 5\njitter = 0.0\n'
            f'[strategies.watch]\nvenue = "kraken"\nsymbols = ["ETH/CHF"]\n'
        )
        summary = await run_engine(config, watcher)

    assert not summary.failed
    assert summary.venue_counters["kraken"]["checksum_failures"] == 1
    assert [(s.health, s.reason) for s in watcher.statuses if s.reason is HealthReason.CHECKSUM] == [
        (BookHealth.RESYNCING, HealthReason.CHECKSUM)]
    # Every event on the engine's bus left the book in the exchange's own state; the wrong one never went out.
    updates = [i for i in truth if is_book_update(original[i], "ETH/CHF")]
    assert watcher.deltas_on_bus("ETH/CHF") == [truth[i] for i in updates if i != at]
    assert watcher.snapshots_on_bus("ETH/CHF") == 2  # the first one and the resync's
    # Strategies see books at the end of each burst: every state shown is a true one, never the wrong one.
    assert wrong not in truth.values()
    assert watcher.shown
    assert all(shown[1:] in truth.values() for shown in watcher.shown)


async def test_v1_malformed_frames_are_logged_cut_counted_and_resync_their_book(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = server_frames(shared_data / BOOK_CAPTURE)
    at = [i for i, f in enumerate(original) if is_book_update(f, "XMR/USD")][10]
    garbage = "<html>502 Bad Gateway</html>" + "x" * 500
    bad_number = '[992,{"a":[["not-a-price","1.00000000","1618678150.000000"]],"c":"1"},"book-1000","XMR/USD"]'
    bad_shape = '[992,{"a":[[354.11,1.0,"1618678150.000000"]],"c":"1"},"book-1000","XMR/USD"]'
    script = Script(original).take(range(at)).extra(garbage).extra(bad_number).wait(2).extra(bad_shape).wait(2)
    script.take(range(at, len(original)))

    async with _scripted(shared_data, script) as server, running_client(
        v1_settings(server.url, server.http_url, trades=False)
    ) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 4269)

        assert ctx.counts["parse_errors"] == 3
        assert running.client.stream_counters()[0].parse_errors == 3
        assert running.failed() == 0
        assert ctx.transitions("XMR/USD") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.PARSE_ERROR),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        book = ctx.books["XMR/USD"]
        assert (book.bids(10), book.asks(10)) == v1_reference(original, 1000)["XMR/USD"].top()
    logged = capsys.readouterr().out
    assert "unreadable frame skipped" in logged
    assert "<html>502 Bad Gateway</html>" + "x" * 172 in logged
    assert "x" * 173 not in logged  # the raw text is cut to 200 characters


async def test_v1_refusals_heartbeats_and_maintenance_are_logged_not_fatal(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = server_frames(shared_data / BOOK_CAPTURE)
    xmr = [i for i, f in enumerate(original) if f.endswith('"XMR/USD"]') or '"pair":"XMR/USD"' in f]
    refused = json.dumps({"channelName": "book-1000", "event": "subscriptionStatus", "pair": "XMR/USD",
                          "status": "error", "errorMessage": "Subscription depth not supported",
                          "subscription": {"depth": 1000, "name": "book"}})
    script = Script(original).take(range(2)).extra(refused).extra('{"event":"heartbeat"}')
    script.extra('{"errorMessage":"Malformed request","event":"error"}').take(xmr[:20])
    script.extra('{"connectionID":1,"event":"systemStatus","status":"maintenance","version":"1.8.3"}')
    script.extra('{"connectionID":1,"event":"systemStatus","status":"online","version":"1.8.3"}').wait(2)
    script.take(xmr[20:])

    async with _scripted(shared_data, script) as server, running_client(
        v1_settings(server.url, server.http_url, trades=False, symbols=["XMR/USD"])
    ) as running:
        ctx = running.ctx
        matched_in_capture = sum(1 for i in xmr if is_book_update(original[i], "XMR/USD"))
        await ctx.wait_until(lambda: running.matched() == matched_in_capture)

        assert ctx.counts["subscription_errors"] == 1
        assert ctx.counts["request_errors"] == 1
        assert ctx.counts["maintenance"] == 1
        assert ctx.transitions("XMR/USD") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.RESYNCING, HealthReason.STALE),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert [r["event"] for r in server.requests()] == ["subscribe", "unsubscribe", "subscribe"]
    logged = capsys.readouterr().out
    assert "Kraken refused a subscription" in logged
    assert "Subscription depth not supported" in logged
    assert "Kraken is in maintenance" in logged


async def test_unknown_symbol_stops_start_up_with_the_unified_spelling(shared_data: Path) -> None:
    async with replaying(shared_data / BOOK_CAPTURE, shared_data / ASSET_PAIRS) as server:
        client = KrakenDataClient(v1_settings(server.url, server.rest_url, symbols=["XBT/CHF"]),
                                  recording_context())

        with pytest.raises(UnknownSymbolError, match="did you mean 'BTC/CHF'"):
            async with asyncio.timeout(10):
                await client.run()


# -- v2: frames built from SPECS.md, through the replay server ------------------------------------------------


class V2Frames:
    """Kraken v2 book frames for one symbol, written the way a re-serializing JSON library writes them.

    Numbers go out as Python's float repr (``5.325e-05``, ``1797.5``, ``0.0``): the trap of SPECS.md section
    2. Checksums are computed plainly from Decimal text formatted with the instrument's precision.
    """

    def __init__(self, symbol: str, price_decimals: int, qty_decimals: int, depth: int = 10) -> None:
        self.symbol = symbol
        self.pq = Decimal(1).scaleb(-price_decimals)
        self.qq = Decimal(1).scaleb(-qty_decimals)
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def _apply(self, side: dict[Decimal, Decimal], levels: list[tuple[str, str]]) -> list[dict[str, float]]:
        out = []
        for p, q in levels:
            if Decimal(q) == 0:
                side.pop(Decimal(p), None)
            else:
                side[Decimal(p)] = Decimal(q)
            out.append({"price": float(p), "qty": float(q)})
        for price in sorted(side, reverse=side is self.bids)[self.depth :]:
            del side[price]
        return out

    def checksum(self) -> int:
        def text(levels: list[tuple[Decimal, Decimal]]) -> list[tuple[str, str]]:
            # format(.., "f"): str(Decimal("0.00000048")) is "4.8E-7", the trap SPECS.md warns about.
            return [(format(p.quantize(self.pq), "f"), format(q.quantize(self.qq), "f")) for p, q in levels]

        asks = text(sorted(self.asks.items())[:10])
        bids = text(sorted(self.bids.items(), reverse=True)[:10])
        return kraken_checksum(asks, bids)

    def frame(self, kind: str, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> str:
        if kind == "snapshot":
            self.bids.clear()
            self.asks.clear()
        data: dict[str, Any] = {"symbol": self.symbol, "bids": self._apply(self.bids, bids),
                                "asks": self._apply(self.asks, asks)}
        data["checksum"] = self.checksum()
        if kind == "update":
            data["timestamp"] = "2025-05-06T09:17:26.208075Z"
        return json.dumps({"channel": "book", "type": kind, "data": [data]})

    def top(self) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return (
            [(float(p), float(q)) for p, q in sorted(self.bids.items(), reverse=True)[:10]],
            [(float(p), float(q)) for p, q in sorted(self.asks.items())[:10]],
        )


ASSET_PAIRS_V2 = json.dumps({"error": [], "result": {
    "XETHZUSD": {"altname": "ETHUSD", "wsname": "ETH/USD", "base": "XETH", "quote": "ZUSD", "pair_decimals": 2,
                 "lot_decimals": 8, "ordermin": "0.002", "costmin": "0.5", "tick_size": "0.01", "status": "online"},
    "XXBTZUSD": {"altname": "XBTUSD", "wsname": "XBT/USD", "base": "XXBT", "quote": "ZUSD", "pair_decimals": 1,
                 "lot_decimals": 8, "ordermin": "0.0001", "costmin": "0.5", "tick_size": "0.1", "status": "online"},
}})


def v2_specs_session() -> tuple[list[str], V2Frames, list[dict[str, Any]]]:
    """A v2 session as SPECS.md shows it: status, acks, a refusal, instrument, snapshot, updates, trades."""
    eth = V2Frames("ETH/USD", 2, 8)
    bids = [(f"{Decimal('1797.24') - Decimal('0.01') * i}", f"{Decimal('0.43393711') + i}") for i in range(12)]
    asks = [(f"{Decimal('1797.25') + Decimal('0.01') * i}", f"{Decimal('1.40355852') + i}") for i in range(12)]
    trades = [
        {"symbol": "ETH/USD", "side": "buy", "price": 1797.25, "qty": 0.1, "ord_type": "market",
         "trade_id": 77, "timestamp": "2025-05-06T09:17:27.000001Z"},
        {"symbol": "ETH/USD", "side": "sell", "price": 1797.24, "qty": 5.325e-05, "ord_type": "limit",
         "trade_id": 78, "timestamp": "2025-05-06T09:17:27.5Z"},
    ]
    frames = [
        '{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"online",'
        '"version":"2.0.10"}]}',
        '{"method":"subscribe","result":{"channel":"instrument","snapshot":true},"success":true,'
        '"time_in":"2025-05-06T09:17:26.05Z","time_out":"2025-05-06T09:17:26.06Z"}',
        '{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"ETH/USD","base":"ETH",'
        '"quote":"USD","status":"online","qty_precision":8,"qty_increment":1e-08,"price_precision":2,'
        '"price_increment":0.01,"cost_precision":5,"cost_min":0.5,"qty_min":0.002}]}}',
        '{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"ETH/USD"},'
        '"success":true,"time_in":"2025-05-06T09:17:26.058856Z","time_out":"2025-05-06T09:17:26.058894Z"}',
        '{"error":"Currency pair not supported FOO/USD","method":"subscribe","success":false,"symbol":"FOO/USD",'
        '"time_in":"2025-05-06T09:17:26.05Z","time_out":"2025-05-06T09:17:26.06Z"}',
        eth.frame("snapshot", bids, asks),
        '{"channel":"heartbeat"}',
        # Trailing zeros dropped and an exponent: 1797.50 goes out as 1797.5, 0.00005325 as 5.325e-05.
        eth.frame("update", [], [("1797.25", "0"), ("1797.50", "0.00005325")]),
        eth.frame("update", [("1797.24", "0.00000048"), ("1797.10", "2.5")], []),
        eth.frame("update", [("1797.25", "0.1")], [("1797.31", "3")]),  # a new best bid where an ask was
        '{"channel":"trade","type":"snapshot","data":[' + json.dumps(trades[0]) + "]}",
        '{"channel":"trade","type":"update","data":' + json.dumps(trades) + "}",
        '{"channel":"ticker","type":"update","data":[{"symbol":"ETH/USD","bid":1797.3}]}',
        eth.frame("update", [("1797.25", "0")], [("1797.26", "0.5")]),
    ]
    return frames, eth, trades


def write_capture(path: Path, url: str, frames: list[str], rest: dict[str, str]) -> Path:
    lines = [f"{url} <-> 1746522000.0", f'{url} <- 1746522000.1: {{"method":"subscribe"}}']
    lines += [f"{1746522000.2 + i / 1000:.4f}: {frame}" for i, frame in enumerate(frames)]
    lines += [f"{target} -> 1746521999.0: {body}" for target, body in rest.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def v2_settings(ws_url: str, rest_url: str, **overrides: Any) -> KrakenSettings:
    values: dict[str, Any] = {"ws_url": ws_url, "rest_url": rest_url, "symbols": ["ETH/USD"], "backoff": FAST,
                              "stale_after_ms": 60_000, "max_requests_per_sec": 1000.0}
    values.update(overrides)
    return KrakenSettings(**values)


async def test_v2_specs_frames_with_json_floats_pass_every_checksum_by_precision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames, eth, _ = v2_specs_session()
    book_frames = sum(1 for f in frames if f.startswith('{"channel": "book"'))
    capture = write_capture(tmp_path / "KRAKEN_V2.ws.txt", KRAKEN_V2_URL, frames,
                            {"https://api.kraken.com/0/public/AssetPairs": ASSET_PAIRS_V2})

    async with replaying(capture) as server, running_client(v2_settings(server.url, server.rest_url)) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == book_frames and len(ctx.trades()) == 2)

        assert running.failed() == 0
        book = ctx.books["ETH/USD"]
        assert book.is_live
        assert (book.bids(10), book.asks(10)) == eth.top()
        assert [(t.side, t.price, t.size, t.trade_id) for t in ctx.trades()] == [
            (Side.BUY, 1797.25, 0.1, "77"), (Side.SELL, 1797.24, 5.325e-05, "78")
        ]
        assert ctx.trades()[1].exchange_ts_ns == 1746523047_500000000
        assert ctx.instruments["ETH/USD"].tick_size == "0.01"
        assert ctx.instruments["ETH/USD"].min_notional == "0.5"
        assert ctx.counts["subscription_errors"] == 1
        assert ctx.counts["ignored_frames"] == 1  # the ticker
        assert ctx.counts["parse_errors"] == 0
    assert "Currency pair not supported FOO/USD" in capsys.readouterr().out


async def test_v2_without_rest_takes_instruments_from_the_instrument_channel(tmp_path: Path) -> None:
    frames, eth, _ = v2_specs_session()
    capture = write_capture(tmp_path / "KRAKEN_V2.ws.txt", KRAKEN_V2_URL, frames, {})

    async with replaying(capture) as server, running_client(v2_settings(server.url, "")) as running:
        ctx = running.ctx
        await ctx.wait_until(lambda: running.matched() == 5)

        assert ctx.instruments["ETH/USD"].tick_size == "0.01"
        assert ctx.instruments["ETH/USD"].lot_size == "0.00000001"
        assert (ctx.books["ETH/USD"].bids(10), ctx.books["ETH/USD"].asks(10)) == eth.top()


# -- v2: the simulator, whose Kraken answers resubscriptions and injects faults ---------------------------------


def _sim_settings() -> SimSettings:
    symbols = [
        SimSymbolSettings(symbol="BTC/USD", venue="kraken", start_price=Decimal("60000"),
                          tick_size=Decimal("0.1"), lot_size=Decimal("0.00000001")),
        SimSymbolSettings(symbol="ETH/USD", venue="kraken", start_price=Decimal("3000"),
                          tick_size=Decimal("0.01"), lot_size=Decimal("0.00000001")),
    ]
    return SimSettings(symbols=symbols, seed=5)


@contextlib.asynccontextmanager
async def simulated() -> AsyncIterator[tuple[SimServer, Running]]:
    sim = SimServer(_sim_settings(), clock=SimulatedClock())
    await sim.start()
    endpoints = Endpoints()
    endpoints.set("kraken.ws", sim.kraken_url)
    settings = v2_settings("simulator", "", symbols=["BTC/USD", "ETH/USD"])
    try:
        async with running_client(settings, recording_context(endpoints)) as running:
            await running.ctx.wait_until(lambda: all(
                s in running.ctx.books and running.ctx.books[s].is_live for s in ("BTC/USD", "ETH/USD")))
            yield sim, running
    finally:
        await sim.stop()


async def step(sim: SimServer, running: Running, until: Callable[[], bool], max_steps: int = 3000,
               *, barrier: bool = True) -> None:
    """Advance the simulated market until ``until()`` holds, then until the client has read every frame.

    Without ``barrier`` (a connection was dropped: frames sent to it never arrive) it only steps.
    """
    for _ in range(max_steps):
        if until():
            break
        sim.step_once()
        await sim.clients_drained()
        await asyncio.sleep(0)
    assert until(), "the condition never held"
    if not barrier:
        return
    # A barrier: every frame the simulator sent (one client) has been through the client's handler.
    await running.ctx.wait_until(lambda: running.client.stream_counters()[0].messages == sim.counters["frames_sent"])


def matches_truth(sim: SimServer, running: Running, symbol: str) -> bool:
    wire = sim.kraken.symbols[symbol]
    book = running.ctx.books[symbol]
    bids = [(float(wire.price.text(p)), float(wire.qty.text(q))) for p, q in wire.model.top_bids(10)]
    asks = [(float(wire.price.text(p)), float(wire.qty.text(q))) for p, q in wire.model.top_asks(10)]
    return book.is_live and book.bids(10) == bids and book.asks(10) == asks


async def test_v2_simulator_books_follow_the_market_with_every_checksum_matched() -> None:
    async with simulated() as (sim, running):
        await step(sim, running, lambda: running.matched() >= 300 and len(running.ctx.trades()) >= 20)

        assert running.failed() == 0
        assert running.ctx.crossed_after_event == 0
        assert matches_truth(sim, running, "BTC/USD")
        assert matches_truth(sim, running, "ETH/USD")
        assert {t.side for t in running.ctx.trades()} == {Side.BUY, Side.SELL}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [(FaultKind.GAP, HealthReason.CHECKSUM), (FaultKind.CORRUPT, HealthReason.CHECKSUM),
     (FaultKind.MALFORMED, HealthReason.PARSE_ERROR)],
)
async def test_v2_a_lost_or_damaged_frame_resyncs_its_book_by_resubscribing(
    fault: FaultKind, reason: HealthReason
) -> None:
    async with simulated() as (sim, running):
        ctx = running.ctx
        await step(sim, running, lambda: running.matched() >= 50)
        sim.inject(fault)

        def resynced() -> bool:
            return any((s.reason, s.health) == (reason, BookHealth.RESYNCING) for s in ctx.statuses) and all(
                ctx.books[s].is_live for s in ("BTC/USD", "ETH/USD"))

        await step(sim, running, resynced)
        await step(sim, running, lambda: running.matched() >= 150)

        hit = next(s.symbol for s in ctx.statuses if s.reason is reason)
        assert ctx.transitions(hit)[-2:] == [(BookHealth.RESYNCING, reason), (BookHealth.LIVE, HealthReason.SNAPSHOT)]
        assert ctx.counts["resyncs"] == 1
        assert ctx.counts["parse_errors"] == (1 if fault is FaultKind.MALFORMED else 0)
        assert matches_truth(sim, running, "BTC/USD")
        assert matches_truth(sim, running, "ETH/USD")


async def test_v2_dropped_connection_reconnects_and_resubscribes() -> None:
    async with simulated() as (sim, running):
        ctx = running.ctx
        await step(sim, running, lambda: running.matched() >= 20)
        sim.inject(FaultKind.DROP_ABRUPT)
        await step(sim, running, lambda: running.client.stream_counters()[0].reconnects == 1 and all(
            ctx.books[s].is_live for s in ("BTC/USD", "ETH/USD")), barrier=False)
        await step(sim, running, lambda: running.matched() >= 100, barrier=False)
        await ctx.wait_until(lambda: matches_truth(sim, running, "BTC/USD"))

        assert ctx.transitions("BTC/USD") == [
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
            (BookHealth.CONNECTING, HealthReason.DISCONNECTED),
            (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert running.failed() == 0
        assert matches_truth(sim, running, "BTC/USD")


async def test_engine_resync_request_resubscribes_only_that_book() -> None:
    async with simulated() as (sim, running):
        ctx = running.ctx
        await step(sim, running, lambda: running.matched() >= 20)

        running.client.resync("BTC/USD", HealthReason.STALE, "no update for 61000 ms")
        await step(sim, running, lambda: ctx.books["BTC/USD"].is_live and running.matched() >= 60)

        assert ctx.transitions("BTC/USD")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.STALE),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert len(ctx.transitions("ETH/USD")) == 2  # the other book of the connection carried on
        assert ctx.counts["resyncs"] == 1
        assert running.failed() == 0
        assert matches_truth(sim, running, "BTC/USD")


async def test_engine_resync_of_a_crossed_book_is_not_counted_twice() -> None:
    async with simulated() as (sim, running):
        ctx = running.ctx
        await step(sim, running, lambda: running.matched() >= 20)

        # The engine counts "crossed" itself before it asks the venue to resync.
        running.client.resync("BTC/USD", HealthReason.CROSSED, "best bid 60001.0 >= best ask 60000.0")
        await step(sim, running, lambda: ctx.books["BTC/USD"].is_live)

        assert ctx.transitions("BTC/USD")[-2:] == [
            (BookHealth.RESYNCING, HealthReason.CROSSED),
            (BookHealth.LIVE, HealthReason.SNAPSHOT),
        ]
        assert ctx.counts["crossed"] == 0
        assert ctx.counts["resyncs"] == 1


def test_engine_resync_of_an_unknown_symbol_is_ignored() -> None:
    ctx = recording_context()
    client = KrakenDataClient(v2_settings("ws://127.0.0.1:1", ""), ctx)

    client.resync("DOGE/USD", HealthReason.STALE)

    assert ctx.statuses == []


# -- settings and registration ------------------------------------------------------------------------------


def test_settings_default_to_the_real_v2_endpoint_and_v1_switches_it() -> None:
    assert KrakenSettings().ws_url == KRAKEN_V2_URL
    assert KrakenSettings().rest_url == "https://api.kraken.com"
    assert KrakenSettings(api_version="v1").ws_url == KRAKEN_V1_URL
    assert KrakenSettings(api_version="v1", ws_url="ws://127.0.0.1:1").ws_url == "ws://127.0.0.1:1"


def test_settings_reject_unknown_keys_venue_symbols_and_no_instrument_source() -> None:
    with pytest.raises(ValidationError, match="ws_urll"):
        KrakenSettings.model_validate({"ws_urll": "x"})
    with pytest.raises(ValidationError, match="unified symbol"):
        KrakenSettings(symbols=["XBTUSD"])
    with pytest.raises(ValidationError, match="depth"):
        KrakenSettings.model_validate({"depth": 50})
    with pytest.raises(ValidationError, match="instrument channel"):
        KrakenSettings(api_version="v1", rest_url="")


def test_plugin_registers_the_kraken_venue() -> None:
    registry: Registry[Any] = Registry("venue")

    plugin.botframe_register_venues(registry)

    entry = registry.get("kraken")
    assert entry is not None
    assert entry.settings_model is KrakenSettings
    client = entry.factory(KrakenSettings(symbols=["ETH/USD"]), recording_context())
    assert isinstance(client, KrakenDataClient)
    assert client.symbols == ["ETH/USD"]


async def test_simulator_url_without_a_simulator_names_the_fix() -> None:
    client = KrakenDataClient(KrakenSettings(ws_url="simulator", rest_url=""), recording_context())

    with pytest.raises(LookupError, match="simulator"):
        await client.run()
