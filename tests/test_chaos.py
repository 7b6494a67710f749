"""Chaos: the exchange simulator injects every fault at high rates into one real client per protocol.

Each chaos run starts a :class:`~botframe_plugins.sim.server.SimServer` on 127.0.0.1 with every fault
of its protocol enabled, and the real venue client against it. The harness steps the market itself
(``step_once``), waits after each step until the simulator has handed its frames to every client, and
runs until every fault kind has fired a minimum number of times (a count, never a duration). Then it
turns faults off and steps on until every book is LIVE and equal to the truth. Every wait has a timeout
that fails with a message saying what did not happen.

What a run proves:

* the client never crashes or hangs: its ``run()`` is still running at the end and ends only when
  cancelled, and the books reach LIVE again once the faults stop;
* whenever the client reports a book LIVE, it equals the simulator's true book at that point (below);
* every injected fault shows in the client's counters (:data:`BINANCE_EFFECTS`, :data:`KRAKEN_EFFECTS`),
  and no client counter shows more problems than the injected faults explain;
* at the end every book is LIVE and equals the truth at the simulator's last update: no update lost.

What is compared with the truth, and when:

* **Binance** events carry the venue's update ids, so the whole book (every level of both sides) is
  compared with ``sim.model.symbol(s).book_at(book.last_seq)`` after every event applied while the book
  is LIVE, and at the moment it becomes LIVE. The sync rules decide from the ids *before* applying, so
  a LIVE Binance book must be right after every single event.
* **Kraken v2** has no sequence ids; a book is proven only by the CRC32 each frame carries, and the
  client publishes a frame's book event before it checks that frame's checksum. So the book is
  compared at checksum-verified points: when the next event for it arrives, when it leaves LIVE for a
  reason other than a failed checksum or a crossed book, when it becomes LIVE, and at the end. The
  truth of an update is the state of the step that produced it: the harness moves the simulator's
  exchange clock one interval per step (:class:`MarketClock`), so each update's ``timestamp`` names its
  step, and records the true top ``depth`` levels after every step. A snapshot carries no timestamp;
  its truth is the state after one of the recorded steps, searched newest first. A book found wrong
  right after an apply and then caught by that frame's checksum is counted (``caught_by_checksum``),
  not a mismatch: the engine shows books to strategies only at the end of a burst, after the frame's
  checksum, but its per-event consumers (the paper executor, the per-event part of the signals) do see
  that state as LIVE for a moment. A client that verifies before it publishes (``VenueContext.apply``,
  then ``publish``) has every published state compared at once, and what it applied but never
  published is counted (``held_back``).
  Binance-style corruption (a wrong size with no checksum) is undetectable by any client, so it is
  injected only where the protocol can see it: Kraken.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import traceback
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import aiohttp
import pytest
import structlog
from aiohttp import web
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from botframe.book import L2Book
from botframe.clock import LiveClock
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason, Level, Trade
from botframe.streams import BackoffSettings, StreamCounters
from botframe.venues import Endpoints, Instrument, VenueClient
from botframe_plugins.binance.config import BinanceSettings
from botframe_plugins.binance.data import BinanceDataClient
from botframe_plugins.sim.config import FaultSettings, SimSettings, SimSymbolSettings, VenueProtocol
from botframe_plugins.sim.faults import FaultKind
from botframe_plugins.sim.model import SymbolModel
from botframe_plugins.sim.server import KRAKEN_PATH, SimServer

pytestmark = pytest.mark.timeout(120)

#: Limit on any single wait of the harness; a wait that runs out fails the test with what it waited for.
WAIT_SECS = 20.0
STEP_NS = 100_000_000  # the simulator's update interval: one step is 100 ms of exchange time
_RECORDED_STEPS = 3_000  # Kraken: true states kept per symbol to judge updates and snapshots by
_HISTORY_UPDATES = 20_000  # level changes the simulator keeps for book_at(): far more than a client lags
_CACHE_LIMIT = 5_000  # tick/lot -> float conversions kept per symbol
DISCONNECTED_STEP_SECS = 0.005  # pace of the market while the client is disconnected
SETTLE_STEP_SECS = 0.005  # pace of the market while the books come back after the faults

# -- the simulator's faults per protocol ---------------------------------------------------------------------

#: Binance: every fault but ``corrupt``: a wrong size in a diff carries no checksum, so no client can see
#: it; injecting it would only prove that. Stalls last longer than the client's stale limit, slow
#: snapshots longer than its REST timeout, so each shows as a counted timeout.
BINANCE_FAULTS = FaultSettings(
    seed=11,
    drop_clean_rate=0.004,
    drop_abrupt_rate=0.004,
    stall_rate=0.002,
    stall_ms=600,
    gap_rate=0.01,
    duplicate_rate=0.02,
    reorder_rate=0.01,
    malformed_rate=0.01,
    snapshot_slow_rate=0.04,
    snapshot_slow_ms=1_500,
    snapshot_stale_rate=0.15,
    snapshot_stale_steps=20,
    rest_429_rate=0.04,
    rest_500_rate=0.1,
    restart_rate=0.002,
    restart_downtime_ms=100,
)

#: Kraken: every fault that the v2 protocol can carry (it has no REST snapshot, so the four snapshot
#: faults have nothing to act on and stay 0).
KRAKEN_FAULTS = FaultSettings(
    seed=13,
    drop_clean_rate=0.004,
    drop_abrupt_rate=0.004,
    stall_rate=0.002,
    stall_ms=600,
    gap_rate=0.01,
    duplicate_rate=0.02,
    reorder_rate=0.01,
    corrupt_rate=0.01,
    malformed_rate=0.01,
    restart_rate=0.002,
    restart_downtime_ms=100,
)

_PER_STEP_KINDS = (FaultKind.DROP_CLEAN, FaultKind.DROP_ABRUPT, FaultKind.STALL, FaultKind.RESTART)
_REST_KINDS = (FaultKind.SNAPSHOT_SLOW, FaultKind.SNAPSHOT_STALE, FaultKind.REST_429, FaultKind.REST_500)

STALE_AFTER_MS = 150  # the client's stream watchdog; a stall (600 ms) always outlasts it
HTTP_TIMEOUT_SECS = 1.0  # a slow snapshot (1.5 s) always outlasts it
FAST_BACKOFF = BackoffSettings(initial_delay_ms=5, factor=2, max_delay_ms=50, jitter=0.5)


# -- fault -> counter mapping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effect:
    """How one fault kind must show in the client's counters.

    ``counters`` names client figures (see :meth:`ChaosRun.client_figures`); their sum must be at least 1
    once the fault fired ``min_fired`` times. ``explains`` lists every fault kind that can move those
    counters: when ``bounded``, their sum must not exceed the number of those faults fired (a counter
    that moves more than the faults explain is a client bug). Counters that also move under load (a
    watchdog or a timeout racing a busy machine) are not bounded.
    """

    counters: tuple[str, ...]
    explains: tuple[FaultKind, ...] = ()
    bounded: bool = False
    note: str = ""


#: Binance: fault -> what the client shows.
BINANCE_EFFECTS: dict[FaultKind, Effect] = {
    FaultKind.DROP_CLEAN: Effect(("stream.closed_by_peer",), note="close frame 1000, reconnect"),
    FaultKind.RESTART: Effect(("stream.closed_by_peer",), note="close frame 1012, reconnect (refused while down)"),
    FaultKind.DROP_ABRUPT: Effect(("stream.connection_lost",), note="TCP reset, no close frame (1006), reconnect"),
    FaultKind.STALL: Effect(("stream.stale_timeouts",), note="the watchdog replaces the silent connection"),
    FaultKind.GAP: Effect(
        ("sync.gaps",),
        explains=(FaultKind.GAP, FaultKind.REORDER, FaultKind.SNAPSHOT_STALE),
        bounded=True,
        note="U != last u + 1: resync from a snapshot",
    ),
    FaultKind.REORDER: Effect(
        ("sync.gaps",),
        explains=(FaultKind.GAP, FaultKind.REORDER, FaultKind.SNAPSHOT_STALE),
        bounded=True,
        note="the later diff first is a gap; the earlier one, late, is ignored",
    ),
    FaultKind.DUPLICATE: Effect(("sync.stale_dropped",), note="u <= last u: ignored by the sync rules, harmless"),
    FaultKind.MALFORMED: Effect(
        ("count.parse_errors",),
        explains=(FaultKind.MALFORMED,),
        bounded=True,
        note="logged with the raw text, counted, skipped; the named book resyncs",
    ),
    FaultKind.REST_429: Effect(
        ("count.snapshot_retries_rate_limited",),
        explains=(FaultKind.REST_429,),
        bounded=True,
        note="retried after Retry-After",
    ),
    FaultKind.REST_500: Effect(
        ("count.snapshot_retries_server_error",),
        explains=(FaultKind.REST_500,),
        bounded=True,
        note="retried after a backoff delay",
    ),
    FaultKind.SNAPSHOT_SLOW: Effect(
        ("count.snapshot_retries_timeout", "count.snapshot_fetches_abandoned"),
        note="times out and is retried, or (at chaos rates, usually) a newer resync abandons it first",
    ),
    FaultKind.SNAPSHOT_STALE: Effect(
        ("sync.snapshots_too_old", "sync.gaps"),
        note="older than the first buffered diff: fetched again (or, with nothing buffered, a gap)",
    ),
}

#: Kraken v2: fault -> what the client shows.
KRAKEN_EFFECTS: dict[FaultKind, Effect] = {
    FaultKind.DROP_CLEAN: Effect(("stream.closed_by_peer",), note="close frame 1000, reconnect"),
    FaultKind.RESTART: Effect(("stream.closed_by_peer",), note="close frame 1012, reconnect (refused while down)"),
    FaultKind.DROP_ABRUPT: Effect(("stream.connection_lost",), note="TCP reset, no close frame (1006), reconnect"),
    FaultKind.STALL: Effect(("stream.stale_timeouts",), note="no heartbeat either: the watchdog replaces it"),
    FaultKind.GAP: Effect(
        ("sync.checksum_failures",),
        explains=(FaultKind.GAP, FaultKind.REORDER, FaultKind.CORRUPT),
        bounded=True,
        note="the next update's checksum fails: resubscribe",
    ),
    FaultKind.REORDER: Effect(
        ("sync.checksum_failures",),
        explains=(FaultKind.GAP, FaultKind.REORDER, FaultKind.CORRUPT),
        bounded=True,
        note="the later update's checksum fails: resubscribe",
    ),
    FaultKind.CORRUPT: Effect(
        ("sync.checksum_failures",),
        explains=(FaultKind.GAP, FaultKind.REORDER, FaultKind.CORRUPT),
        bounded=True,
        note="a wrong size or a wrong checksum: resubscribe",
    ),
    FaultKind.DUPLICATE: Effect(
        ("sync.checksums_matched",),
        note="sizes are absolute: applied twice, the book is the same and its checksum matches",
    ),
    FaultKind.MALFORMED: Effect(
        ("count.parse_errors",),
        explains=(FaultKind.MALFORMED,),
        bounded=True,
        note="logged with the raw text, counted, skipped; the named book resubscribes",
    ),
}


# -- the simulator's clock ------------------------------------------------------------------------------------


class MarketClock:
    """The simulator's clock in chaos runs: exchange time moves one interval per market step, waits are real.

    So every frame of a step carries that step's timestamp (Kraken updates name their step by it), while
    a stall, a slow snapshot or a restart takes real time, as the client's watchdog and timeouts see it.
    """

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now_ns = start_ns
        self._live = LiveClock()

    def time_ns(self) -> int:
        return self._now_ns

    def monotonic_ns(self) -> int:
        return self._live.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def next_step(self) -> int:
        self._now_ns += STEP_NS
        return self._now_ns


class GatedMarketClock(MarketClock):
    """A :class:`MarketClock` whose waits (a slow snapshot's delay) last until the test opens the gate.

    So a test decides exactly what happens while the simulator holds a snapshot back, whatever the
    machine's speed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._gate = asyncio.Event()
        self.waiting = 0

    async def sleep(self, seconds: float) -> None:
        self.waiting += 1
        try:
            await self._gate.wait()
        finally:
            self.waiting -= 1

    def open_gate(self) -> None:
        self._gate.set()


# -- logs -----------------------------------------------------------------------------------------------------


class LogRecorder:
    """A structlog logger that keeps counts by event and the latest warnings, and prints nothing."""

    def __init__(self, keep: int = 200) -> None:
        self.events: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep)

    def _capture(self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
        self.events[str(event_dict.get("event"))] += 1
        if method in ("warning", "error", "exception", "critical"):
            record = dict(event_dict, level=method)
            if record.pop("exc_info", None):
                record["exception"] = traceback.format_exc(limit=-6)  # called inside the except block
            self.recent.append(record)
        raise structlog.DropEvent

    def logger(self, name: str) -> structlog.typing.FilteringBoundLogger:
        log: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
            None,
            processors=[self._capture],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        )
        return log.bind(logger=name)


# -- truth ----------------------------------------------------------------------------------------------------


class TruthLevels:
    """The simulator's integer ticks and lots as the floats a client decodes from the wire text."""

    def __init__(self, model: SymbolModel) -> None:
        self.model = model
        self._tick = model.spec.tick_size
        self._lot = model.spec.lot_size
        self._prices: dict[int, float] = {}
        self._sizes: dict[int, float] = {}

    def levels(self, side: list[tuple[int, int]]) -> list[Level]:
        prices, sizes = self._prices, self._sizes
        out: list[Level] = []
        for ticks, lots in side:
            p = prices.get(ticks)
            if p is None:
                # Decimal -> float rounds once, as msgspec does from the same decimal text.
                p = prices[ticks] = float(Decimal(ticks) * self._tick)
            q = sizes.get(lots)
            if q is None:
                q = sizes[lots] = float(Decimal(lots) * self._lot)
            out.append((p, q))
        if len(sizes) > _CACHE_LIMIT or len(prices) > _CACHE_LIMIT:
            # Bounded, so a soak's memory figure measures the client, not this cache.
            sizes.clear()
            prices.clear()
        return out


def describe_difference(book: L2Book, bids: list[Level], asks: list[Level]) -> str:
    """The first differing level of each side, for a mismatch message."""
    parts = []
    for name, ours, theirs in (("bids", book.bids(), bids), ("asks", book.asks(), asks)):
        if ours != theirs:
            differing = [k for k, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b]
            i = differing[0] if differing else min(len(ours), len(theirs))
            parts.append(
                f"{name}: {len(ours)} levels vs {len(theirs)} true; first difference at {i}: "
                f"{ours[i] if i < len(ours) else None} vs {theirs[i] if i < len(theirs) else None}"
            )
    return "; ".join(parts)


class Truth(Protocol):
    """Where a venue's books are judged."""

    def expected(self, symbol: str, book: L2Book) -> tuple[list[Level], list[Level]] | None:
        """The true (bids, asks) behind the client's ``book`` as it stands, or None if unknowable."""

    def latest(self, symbol: str) -> tuple[list[Level], list[Level]]:
        """The true book (as the client should hold it) after the simulator's last step."""


class BinanceTruth:
    """Binance books carry the update id: the truth is the whole true book at ``book.last_seq``."""

    def __init__(self, sim: SimServer) -> None:
        self._levels = {s.symbol: TruthLevels(sim.model.symbol(s.symbol)) for s in sim.settings.symbols}

    def expected(self, symbol: str, book: L2Book) -> tuple[list[Level], list[Level]] | None:
        t = self._levels[symbol]
        state = t.model.book_at(book.last_seq)
        return t.levels(state.bids), t.levels(state.asks)

    def latest(self, symbol: str) -> tuple[list[Level], list[Level]]:
        t = self._levels[symbol]
        state = t.model.state()
        return t.levels(state.bids), t.levels(state.asks)


class KrakenTruth:
    """Kraken books carry no id: the truth of an update is the recorded top ``depth`` of its step.

    :meth:`record` runs right after each ``step_once`` (before any await), so the recording is what the
    simulator diffed its frames against.
    """

    def __init__(self, sim: SimServer, depth: int) -> None:
        self.depth = depth
        self._levels = {
            s.symbol: TruthLevels(sim.model.symbol(s.symbol, "kraken")) for s in sim.settings.symbols
        }
        self._steps: dict[str, dict[int, tuple[list[Level], list[Level]]]] = {s: {} for s in self._levels}
        self._order: deque[int] = deque()
        self.record(0)  # the state a subscriber gets before the first step

    def record(self, ts_ns: int) -> None:
        for symbol, t in self._levels.items():
            self._steps[symbol][ts_ns] = (
                t.levels(t.model.top_bids(self.depth)),
                t.levels(t.model.top_asks(self.depth)),
            )
        self._order.append(ts_ns)
        if len(self._order) > _RECORDED_STEPS:
            old = self._order.popleft()
            for steps in self._steps.values():
                steps.pop(old, None)

    def expected(self, symbol: str, book: L2Book) -> tuple[list[Level], list[Level]] | None:
        steps = self._steps[symbol]
        if book.exchange_ts_ns:
            return steps.get(book.exchange_ts_ns)
        # A snapshot: the state after some recorded step; the newest match is the likeliest.
        ours = (book.bids(), book.asks())
        best: tuple[list[Level], list[Level]] | None = None
        for ts in reversed(self._order):
            state = steps.get(ts)
            if state == ours:
                return state
            if best is None:
                best = state
        return best  # no step matches: report against the newest

    def latest(self, symbol: str) -> tuple[list[Level], list[Level]]:
        t = self._levels[symbol]
        return t.levels(t.model.top_bids(self.depth)), t.levels(t.model.top_asks(self.depth))


# -- the engine side ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class BookWatch:
    """One client book and what the checker saw of it."""

    book: L2Book
    checks: int = 0
    mismatches: list[str] = field(default_factory=list)
    caught_by_checksum: int = 0  # wrong right after an apply, then caught by the same frame's checksum
    checksum_false_alarms: int = 0  # right, but the frame's checksum was the wrong one
    pending: str | None = None  # Kraken: the state applied last, not yet verified ("" = it was right)
    pre_applied: deque[BookSnapshot | BookDelta] = field(default_factory=deque)  # VenueContext.apply
    held_back: int = 0  # applied by the venue to verify, then never published (it failed)
    left_live: Counter[HealthReason] = field(default_factory=Counter)
    live_since_ns: int | None = None
    live_ns: int = 0
    first_live_ns: int | None = None
    left_at_ns: int | None = None  # when it last left LIVE, and why
    left_for: HealthReason | None = None
    not_live_ns_by_reason: Counter[HealthReason] = field(default_factory=Counter)  # once LIVE at least once


class CheckingContext:
    """A VenueContext that applies book events to L2Books exactly as the engine does, checked by the truth.

    As in ``Engine._on_snapshot`` / ``_on_delta``: apply, and a crossed book is counted and re-synced by
    its venue (``client.resync``) when LIVE. On top of that, every LIVE state is compared with the truth
    (module docstring: immediately for Binance, at checksum-verified points for Kraken).
    """

    def __init__(
        self,
        venue: str,
        endpoints: Endpoints,
        truth: Truth,
        log: structlog.typing.FilteringBoundLogger,
        *,
        verified_by_checksum: bool,
    ) -> None:
        self.venue = venue
        self.clock = LiveClock()
        self.log = log
        self.endpoints = endpoints
        self.truth = truth
        self.verified_by_checksum = verified_by_checksum
        self.client: VenueClient | None = None
        self.watches: dict[str, BookWatch] = {}
        self.instruments: dict[str, Instrument] = {}
        self.counts: Counter[str] = Counter()
        self.trades = 0
        self.started_ns = self.clock.monotonic_ns()
        #: When set, every book event and health change in order (focused tests read it).
        self.journal: list[BookSnapshot | BookDelta | tuple[str, BookHealth, HealthReason]] | None = None
        self._changed = asyncio.Event()

    # -- VenueContext --------------------------------------------------------------------------------------

    def book(self, symbol: str) -> L2Book:
        return self._watch(symbol).book

    def publish(self, event: Event) -> None:
        if isinstance(event, BookSnapshot | BookDelta):
            self._on_book_event(event)
        elif isinstance(event, Trade):
            self.trades += 1

    def set_health(self, symbol: str, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        w = self._watch(symbol)
        book = w.book
        was_live = book.is_live
        if w.pending is not None and was_live and health is not BookHealth.LIVE:
            self._settle_pending(w, caught=reason in (HealthReason.CHECKSUM, HealthReason.CROSSED))
        status = book.set_health(health, reason, self.clock.time_ns(), detail)
        if self.journal is not None:
            self.journal.append((symbol, health, reason))
        if status is None:
            return
        now = self.clock.monotonic_ns()
        if health is BookHealth.LIVE:
            w.live_since_ns = now
            if w.first_live_ns is None:
                w.first_live_ns = now
            if w.left_at_ns is not None and w.left_for is not None:
                w.not_live_ns_by_reason[w.left_for] += now - w.left_at_ns
                w.left_at_ns = w.left_for = None
            self._compare(w, "on becoming LIVE")
        elif was_live:
            w.left_live[reason] += 1
            w.left_at_ns, w.left_for = now, reason
            if w.live_since_ns is not None:
                w.live_ns += now - w.live_since_ns
            w.live_since_ns = None
        self._changed.set()

    def add_instrument(self, instrument: Instrument) -> None:
        self.instruments[instrument.symbol] = instrument

    def count(self, name: str, symbol: str = "", n: int = 1) -> None:
        self.counts[name] += n

    # -- checking ------------------------------------------------------------------------------------------

    def _watch(self, symbol: str) -> BookWatch:
        w = self.watches.get(symbol)
        if w is None:
            w = self.watches[symbol] = BookWatch(L2Book(self.venue, symbol))
        return w

    def apply(self, event: BookSnapshot | BookDelta) -> L2Book:
        """Apply without publishing, for a venue that verifies first (as ``Engine``'s context does)."""
        w = self._watch(event.symbol)
        if w.pending is not None:
            self._settle_pending(w, caught=False)
        self._apply_to_book(w.book, event)
        w.pre_applied.append(event)
        return w.book

    @staticmethod
    def _apply_to_book(book: L2Book, event: BookSnapshot | BookDelta) -> None:
        if isinstance(event, BookSnapshot):
            book.apply_snapshot(event)
        else:
            book.apply_delta(event)

    def _was_pre_applied(self, w: BookWatch, event: BookSnapshot | BookDelta) -> bool:
        while w.pre_applied:
            if w.pre_applied.popleft() is event:
                return True
            w.held_back += 1
        return False

    def _on_book_event(self, event: BookSnapshot | BookDelta) -> None:
        w = self._watch(event.symbol)
        book = w.book
        if self.journal is not None:
            self.journal.append(event)
        if w.pending is not None:
            self._settle_pending(w, caught=False)
        # A pre-applied event was verified by the venue before it was published: check it at once.
        verified = bool(w.pre_applied) and self._was_pre_applied(w, event)
        if not verified:
            self._apply_to_book(book, event)
        self._changed.set()
        if book.is_crossed():
            self.counts["crossed_books"] += 1
            if book.is_live and self.client is not None:
                # The engine calls client.resync() here; a client without it would raise inside its own
                # frame handler (see test_kraken_client_resyncs_a_book_when_the_engine_asks), so the
                # harness counts that instead and lets the venue's own checks catch the book.
                resync = getattr(self.client, "resync", None)
                if resync is None:
                    self.counts["resync_unavailable"] += 1
                else:
                    resync(event.symbol, HealthReason.CROSSED, "crossed after apply")
            return
        if not book.is_live:
            return
        if self.verified_by_checksum and not verified:
            w.pending = self._difference(w)
        else:
            self._compare(w, "after applying an event")

    def _difference(self, w: BookWatch) -> str:
        """'' when the book equals its truth, else what differs."""
        book = w.book
        expected = self.truth.expected(book.symbol, book)
        w.checks += 1
        if expected is None:
            return f"no recorded truth for exchange time {book.exchange_ts_ns}"
        bids, asks = expected
        if book.bids() == bids and book.asks() == asks:
            return ""
        return describe_difference(book, bids, asks) or "sides differ"

    def _compare(self, w: BookWatch, when: str) -> None:
        w.pending = None
        diff = self._difference(w)
        if diff:
            w.mismatches.append(f"{w.book.symbol} LIVE {when} at seq {w.book.last_seq}: {diff}")

    def _settle_pending(self, w: BookWatch, *, caught: bool) -> None:
        diff, w.pending = w.pending, None
        if caught:
            if diff:
                w.caught_by_checksum += 1
            else:
                w.checksum_false_alarms += 1
        elif diff:
            w.mismatches.append(f"{w.book.symbol} LIVE after the client accepted a frame: {diff}")

    def finish(self) -> None:
        """Settle what is pending and close the LIVE intervals (the run is over)."""
        now = self.clock.monotonic_ns()
        for w in self.watches.values():
            if w.pending is not None and w.book.is_live:
                self._settle_pending(w, caught=False)
            if w.live_since_ns is not None:
                w.live_ns += now - w.live_since_ns
                w.live_since_ns = None

    def mismatches(self) -> list[str]:
        return [m for w in self.watches.values() for m in w.mismatches]

    async def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT_SECS) -> None:
        """Return once ``predicate()`` holds (checked after each book event or health change)."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}") from None


def test_harness_applies_a_verified_event_once_and_checks_it_at_once() -> None:
    sim = SimServer(sim_settings("binance", FaultSettings()), clock=MarketClock())
    ctx = CheckingContext("binance", Endpoints(), BinanceTruth(sim), LogRecorder().logger("test"),
                          verified_by_checksum=True)
    state = sim.model.symbol("BTC/USDT").state()
    levels = TruthLevels(sim.model.symbol("BTC/USDT"))
    snap = BookSnapshot(venue="binance", symbol="BTC/USDT", bids=levels.levels(state.bids),
                        asks=levels.levels(state.asks), sequence=state.update_id)
    wrong = BookDelta(venue="binance", symbol="BTC/USDT", bids=[(snap.bids[0][0], 99.0)], asks=[],
                      first_seq=state.update_id, last_seq=state.update_id)
    ctx.set_health("BTC/USDT", BookHealth.SYNCING, HealthReason.SUBSCRIBED)
    ctx.publish(snap)
    ctx.set_health("BTC/USDT", BookHealth.LIVE, HealthReason.SNAPSHOT)

    book = ctx.apply(wrong)  # the venue's check fails: never published
    ctx.set_health("BTC/USDT", BookHealth.RESYNCING, HealthReason.CHECKSUM)
    ctx.set_health("BTC/USDT", BookHealth.SYNCING, HealthReason.SUBSCRIBED)
    assert ctx.apply(snap) is book
    ctx.publish(snap)  # verified: applied once, held back the failed one
    ctx.set_health("BTC/USDT", BookHealth.LIVE, HealthReason.SNAPSHOT)

    w = ctx.watches["BTC/USDT"]
    assert w.held_back == 1
    assert w.book.counters.snapshots == 2  # the initial one and the verified one, not three
    assert ctx.mismatches() == []


# -- a proxy that slips crafted frames in ------------------------------------------------------------------------


class FrameInjectingProxy:
    """A WebSocket proxy in front of the simulator that can slip a crafted frame into what clients receive.

    The simulator sends only well-formed frames and one kind of broken one (a truncated frame); the
    proxy lets a test send any text at all on the client's real connection, between two real frames.
    """

    def __init__(self) -> None:
        self._server: Server | None = None
        self._upstream = ""
        self._clients: set[ServerConnection] = set()

    async def start(self, upstream_base: str) -> str:
        """Listen on an ephemeral port, forwarding each connection's path to ``upstream_base``."""
        self._upstream = upstream_base
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None, max_size=None)
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def connected(self) -> int:
        return len(self._clients)

    async def inject(self, frame: str) -> None:
        """Send ``frame`` to every connected client, as if the exchange had sent it."""
        assert self._clients, "no client is connected through the proxy"
        for ws in list(self._clients):
            await ws.send(frame)

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        async with connect(self._upstream + ws.request.path, compression=None, max_size=None) as up:
            self._clients.add(ws)
            try:
                down_task = asyncio.create_task(self._pump(ws, up))
                up_task = asyncio.create_task(self._pump(up, ws))
                _, pending = await asyncio.wait({down_task, up_task}, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
            finally:
                self._clients.discard(ws)

    @staticmethod
    async def _pump(src: ServerConnection | ClientConnection, dst: ServerConnection | ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in src:
                await dst.send(message)
        await dst.close()


class RestShim:
    """An HTTP server in front of the simulator's REST API that can refuse depth requests with a status.

    The simulator answers 429 and 500, which are worth retrying; the shim answers what is not (a 403
    from a firewall, a 400 during maintenance), to show the client still gets its book back.
    """

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._upstream = ""
        self._refusals: list[int] = []
        self.refused = 0

    async def start(self, upstream_base: str) -> str:
        self._upstream = upstream_base
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def refuse_depth(self, status: int, times: int) -> None:
        """Answer the next ``times`` depth requests with ``status``."""
        self._refusals += [status] * times

    async def _handle(self, request: web.Request) -> web.Response:
        if request.path.endswith("/depth") and self._refusals:
            self.refused += 1
            return web.Response(status=self._refusals.pop(0), text='{"code":-2015,"msg":"refused by the shim"}')
        timeout = aiohttp.ClientTimeout(total=WAIT_SECS)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(self._upstream + request.path_qs) as answer,
        ):
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")


# -- a run ----------------------------------------------------------------------------------------------------


def sim_settings(protocol: VenueProtocol, faults: FaultSettings, seed: int = 42) -> SimSettings:
    """A simulator for one protocol with two symbols."""
    if protocol == "binance":
        symbols = [
            SimSymbolSettings(symbol="BTC/USDT", start_price=Decimal("60000"), tick_size=Decimal("0.01"),
                              lot_size=Decimal("0.00001")),
            SimSymbolSettings(symbol="ETH/USDT", start_price=Decimal("3000"), tick_size=Decimal("0.01"),
                              lot_size=Decimal("0.0001")),
        ]
    else:
        symbols = [
            SimSymbolSettings(symbol="BTC/USD", venue="kraken", start_price=Decimal("60000"),
                              tick_size=Decimal("0.1"), lot_size=Decimal("0.00000001")),
            SimSymbolSettings(symbol="ETH/USD", venue="kraken", start_price=Decimal("3000"),
                              tick_size=Decimal("0.01"), lot_size=Decimal("0.00000001")),
        ]
    return SimSettings(
        symbols=symbols,
        seed=seed,
        update_interval_ms=STEP_NS // 1_000_000,
        history_updates=_HISTORY_UPDATES,
        faults=faults,
    )


def _stream_figures(counters: list[StreamCounters]) -> Counter[str]:
    total: Counter[str] = Counter()
    for c in counters:
        total.update(c.as_dict())
    return total


class ChaosRun:
    """One simulator, one real client of it, the checking context, and the market stepping loop."""

    def __init__(
        self,
        protocol: VenueProtocol,
        faults: FaultSettings,
        *,
        seed: int = 42,
        kraken_depth: int = 10,
        clock: MarketClock | None = None,
        client_settings: Mapping[str, Any] | None = None,
        proxy: bool = False,
        rest_shim: bool = False,
    ) -> None:
        self.protocol = protocol
        self.logs = LogRecorder()
        self.clock = clock if clock is not None else MarketClock()
        self._client_settings = dict(client_settings or {})
        self.proxy = FrameInjectingProxy() if proxy else None
        self.rest_shim = RestShim() if rest_shim else None
        self.sim = SimServer(sim_settings(protocol, faults, seed), clock=self.clock, log=self.logs.logger("sim"))
        self.symbols = [s.symbol for s in self.sim.settings.symbols]
        self.kraken_depth = kraken_depth
        self.steps = 0
        self.client: BinanceDataClient | Any = None
        self.ctx: CheckingContext | None = None
        self._task: asyncio.Task[Any] | None = None
        self._kraken_truth: KrakenTruth | None = None
        self._rng = random.Random(seed)

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.sim.start()
        ws_base = self.sim.ws_url
        if self.proxy is not None:
            ws_base = await self.proxy.start(ws_base)
        rest_base = self.sim.rest_url
        if self.rest_shim is not None:
            rest_base = await self.rest_shim.start(rest_base)
        endpoints = Endpoints()
        log = self.logs.logger("client")
        if self.protocol == "binance":
            endpoints.set("binance.ws", ws_base)
            endpoints.set("binance.rest", rest_base)
            self.ctx = CheckingContext("binance", endpoints, BinanceTruth(self.sim), log,
                                       verified_by_checksum=False)
            values: dict[str, Any] = {
                "symbols": self.symbols,
                "backoff": FAST_BACKOFF,
                "stale_after_ms": STALE_AFTER_MS,
                "http_timeout_secs": HTTP_TIMEOUT_SECS,
                "open_timeout_secs": 5.0,
            }
            settings = BinanceSettings(**{**values, **self._client_settings})
            self.client = BinanceDataClient(settings, self.ctx, rng=self._rng.random)
        else:
            from botframe_plugins.kraken.config import KrakenSettings
            from botframe_plugins.kraken.data import KrakenDataClient

            endpoints.set("kraken.ws", ws_base + KRAKEN_PATH)
            self._kraken_truth = KrakenTruth(self.sim, self.kraken_depth)
            self.ctx = CheckingContext("kraken", endpoints, self._kraken_truth, log, verified_by_checksum=True)
            kraken_values: dict[str, Any] = {
                "ws_url": "simulator",
                "rest_url": "",
                "symbols": self.symbols,
                "depth": self.kraken_depth,
                "backoff": FAST_BACKOFF,
                "stale_after_ms": STALE_AFTER_MS,
                "max_requests_per_sec": 200.0,
                "open_timeout_secs": 5.0,
            }
            kraken_settings = KrakenSettings(**{**kraken_values, **self._client_settings})
            self.client = KrakenDataClient(kraken_settings, self.ctx, rng=self._rng.random)
        self.ctx.client = self.client
        self._task = asyncio.create_task(self.client.run(), name=f"chaos-{self.protocol}-client")

    async def stop(self) -> None:
        """Stop the client (it must end by cancellation only) and the simulator."""
        task = self._task
        try:
            if task is not None:
                self.assert_client_running()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, WAIT_SECS)
                assert task.cancelled(), f"client run() ended by {task.exception()!r} instead of cancellation"
        finally:
            if self.proxy is not None:
                await self.proxy.stop()
            if self.rest_shim is not None:
                await self.rest_shim.stop()
            await self.sim.stop()

    @property
    def context(self) -> CheckingContext:
        assert self.ctx is not None, "start() first"
        return self.ctx

    def assert_client_running(self) -> None:
        task = self._task
        assert task is not None, "start() first"
        if task.done():
            error = None if task.cancelled() else task.exception()
            raise AssertionError(f"the {self.protocol} client's run() ended: {error!r}")

    # -- the market ----------------------------------------------------------------------------------------

    async def step(self) -> None:
        """One market step; returns once every connected client was handed its frames."""
        ts = self.clock.next_step()
        self.sim.step_once()
        if self._kraken_truth is not None:
            self._kraken_truth.record(ts)
        self.steps += 1
        try:
            await asyncio.wait_for(self.sim.clients_drained(), WAIT_SECS)
        except TimeoutError:
            raise AssertionError(f"the simulator could not hand step {self.steps} to its clients") from None
        await asyncio.sleep(0)  # let the client read what was just written
        if not self.sim.listening or any(
            self.context.book(s).health is BookHealth.CONNECTING for s in self.symbols
        ):
            # The client is away (a drop, a restart: both take real time): the market moves on, but
            # slowly enough that the step budget is not spent on nobody.
            await asyncio.sleep(DISCONNECTED_STEP_SECS)
        self.assert_client_running()

    async def step_until(
        self, predicate: Callable[[], bool], what: str, *, max_steps: int, pace_secs: float = 0.0
    ) -> None:
        """Step the market until ``predicate()`` holds; fail after ``max_steps``.

        ``pace_secs`` of real time between steps lets real-time waits inside the client (a server's
        Retry-After, a REST timeout, a reconnect delay) end within the step budget.
        """
        steps = 0
        while not predicate():
            if steps >= max_steps:
                states = {s: self.context.book(s).health.value for s in self.symbols}
                raise AssertionError(f"not {what} after {steps} market steps (books: {states})")
            await self.step()
            steps += 1
            if pace_secs:
                await asyncio.sleep(pace_secs)

    async def until_all_live(self, what: str = "every book LIVE") -> None:
        """Step (at a walking pace: the client may wait out a Retry-After) until every book is LIVE."""
        await self.step_until(self.all_live, what, max_steps=2_000, pace_secs=SETTLE_STEP_SECS)

    def all_live(self) -> bool:
        return all(self.context.book(s).is_live for s in self.symbols)

    def fired(self) -> Counter[FaultKind]:
        return Counter({k: self.sim.counters[f"fault.{k.value}"] for k in FaultKind})

    async def chaos(self, min_fired: Mapping[FaultKind, int], *, max_steps: int) -> None:
        """Step until every kind in ``min_fired`` fired that often; fail if ``max_steps`` comes first."""
        while True:
            fired = self.fired()
            short = {k.value: f"{fired[k]}/{n}" for k, n in min_fired.items() if fired[k] < n}
            if not short:
                return
            if self.steps >= max_steps:
                raise AssertionError(f"after {self.steps} steps these faults fired too rarely: {short}")
            await self.step()

    async def settle(self, *, max_steps: int = 2_000) -> None:
        """Faults off; step until every book is LIVE and equal to the truth after the last step.

        A client may still be waiting out the last faults in real time (a 429's one-second Retry-After,
        a snapshot timeout), so the market steps at a walking pace here: 2 000 steps are 10 s or more.
        """
        self.sim.faults = type(self.sim.faults)(FaultSettings())
        await asyncio.wait_for(self.sim.wait_listening(), WAIT_SECS)
        await self.until_all_live("every book LIVE once the faults stopped")
        # Then each book must hold the truth after the latest step. The market keeps stepping meanwhile:
        # stopping it would let the stream watchdog take a silent connection for a dead one.
        await self.step_until(
            self.caught_up, "every book LIVE and equal to the truth after the latest step", max_steps=max_steps,
            pace_secs=SETTLE_STEP_SECS,
        )

    def caught_up(self) -> bool:
        ctx = self.context
        for s in self.symbols:
            book = ctx.book(s)
            if not book.is_live:
                return False
            bids, asks = ctx.truth.latest(s)
            if self.protocol == "binance" and book.last_seq != self.sim.model.symbol(s).last_update_id:
                return False
            if book.bids() != bids or book.asks() != asks:
                return False
        return True

    # -- figures -------------------------------------------------------------------------------------------

    def client_figures(self) -> Counter[str]:
        """Every counter the client shows: ``stream.*`` of its connections, ``sync.*`` of its book sync
        machines, ``count.*`` of what it counted through the context (summed over symbols)."""
        figures: Counter[str] = Counter()
        for name, n in _stream_figures(self.client.stream_counters()).items():
            figures[f"stream.{name}"] += n
        for counters in self.client.book_counters().values():
            for name, n in vars_of(counters).items():
                if isinstance(n, int):
                    figures[f"sync.{name}"] += n
        for name, n in self.context.counts.items():
            figures[f"count.{name}"] += n
        return figures


def vars_of(obj: object) -> dict[str, Any]:
    """Fields of a slotted dataclass as a dict."""
    slots = getattr(obj, "__slots__", ())
    return {name: getattr(obj, name) for name in slots}


@contextlib.asynccontextmanager
async def chaos_run(protocol: VenueProtocol, faults: FaultSettings, **kwargs: Any) -> AsyncIterator[ChaosRun]:
    run = ChaosRun(protocol, faults, **kwargs)
    await run.start()
    try:
        yield run
    finally:
        await run.stop()


def check_effects(run: ChaosRun, effects: Mapping[FaultKind, Effect], min_fired: Mapping[FaultKind, int]) -> list[str]:
    """Every fault that fired shows in its counters, and bounded counters are explained by faults."""
    fired = run.fired()
    figures = run.client_figures()
    problems = []
    for kind, effect in effects.items():
        seen = sum(figures[c] for c in effect.counters)
        if fired[kind] >= min_fired.get(kind, 1) and seen < 1:
            problems.append(f"{kind.value} fired {fired[kind]} times but {effect.counters} stayed 0")
        if effect.bounded:
            explained = sum(fired[k] for k in effect.explains)
            if seen > explained:
                problems.append(
                    f"{effect.counters} = {seen} > {explained} faults that explain them "
                    f"({', '.join(k.value for k in effect.explains)})"
                )
    return problems


def fault_table(run: ChaosRun, effects: Mapping[FaultKind, Effect]) -> str:
    """fault, times fired, the client counters it maps to and their values (for failure messages and the soak)."""
    fired = run.fired()
    figures = run.client_figures()
    lines = []
    for kind, effect in effects.items():
        shown = ", ".join(f"{c}={figures[c]}" for c in effect.counters)
        lines.append(f"  {kind.value:<15} fired {fired[kind]:>5}  ->  {shown}")
    return "\n".join(lines)


# -- the chaos tests --------------------------------------------------------------------------------------------

BINANCE_MIN_FIRED = {
    **dict.fromkeys(_PER_STEP_KINDS, 2),
    **dict.fromkeys((FaultKind.GAP, FaultKind.DUPLICATE, FaultKind.REORDER, FaultKind.MALFORMED), 3),
    **dict.fromkeys(_REST_KINDS, 2),
}
KRAKEN_MIN_FIRED = {
    **dict.fromkeys(_PER_STEP_KINDS, 2),
    **dict.fromkeys(
        (FaultKind.GAP, FaultKind.DUPLICATE, FaultKind.REORDER, FaultKind.CORRUPT, FaultKind.MALFORMED), 3
    ),
}


# Both WebSocket clients: every fault must be handled the same whichever transport carries the frames.
TRANSPORTS = pytest.mark.parametrize("transport", ["websockets", "picows"])


@TRANSPORTS
async def test_binance_client_survives_every_fault_and_every_live_book_equals_the_truth(transport: str) -> None:
    async with chaos_run("binance", BINANCE_FAULTS, client_settings={"transport": transport}) as run:
        await run.until_all_live("every book LIVE at first")
        await run.chaos(BINANCE_MIN_FIRED, max_steps=8_000)
        await run.settle()
        run.context.finish()

        assert run.context.mismatches() == []
        assert check_effects(run, BINANCE_EFFECTS, BINANCE_MIN_FIRED) == [], fault_table(run, BINANCE_EFFECTS)
        assert run.client_figures()["stream.handler_errors"] == 0  # no frame ever crashed the handler
        assert run.context.counts["crossed_books"] == 0  # with ids checked first, a LIVE book is never wrong


@TRANSPORTS
async def test_kraken_client_survives_every_fault_and_every_verified_live_book_equals_the_truth(
    transport: str,
) -> None:
    async with chaos_run("kraken", KRAKEN_FAULTS, client_settings={"transport": transport}) as run:
        await run.until_all_live("every book LIVE at first")
        await run.chaos(KRAKEN_MIN_FIRED, max_steps=8_000)
        await run.settle()
        run.context.finish()

        assert run.context.mismatches() == []
        assert check_effects(run, KRAKEN_EFFECTS, KRAKEN_MIN_FIRED) == [], fault_table(run, KRAKEN_EFFECTS)
        assert run.client_figures()["stream.handler_errors"] == 0
        assert sum(w.checks for w in run.context.watches.values()) > 100


# -- resync without loss --------------------------------------------------------------------------------------


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = WAIT_SECS) -> None:
    """Poll ``predicate`` (state of another component, with no event to wait on) until it holds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110 (a counter of another component: no event to wait on)
                await asyncio.sleep(0.002)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}") from None


def _client_caught_up(run: ChaosRun) -> Callable[[], bool]:
    """True once the client has received every frame the simulator sent (one client, no faults)."""
    return lambda: sum(c.messages for c in run.client.stream_counters()) == run.sim.counters["frames_sent"]


async def test_diffs_that_arrive_while_a_snapshot_is_fetched_are_applied_after_the_bridge() -> None:
    clock = GatedMarketClock()
    # No watchdog: the test pauses the market while it inspects, and a silent stream is not the point here.
    quiet_ok = {"http_timeout_secs": 60, "stale_after_ms": 0}
    async with chaos_run("binance", FaultSettings(), clock=clock, client_settings=quiet_ok) as run:
        ctx = run.context
        await run.until_all_live()
        ctx.journal = []

        # A lost diff: the book resyncs, keeping the diff that showed the gap, and asks for a snapshot,
        # which the simulator answers at once and then holds at the gate.
        run.sim.inject(FaultKind.GAP)
        run.sim.inject(FaultKind.SNAPSHOT_SLOW)
        await run.step_until(lambda: not run.all_live(), "a book is resyncing after the gap", max_steps=50)
        symbol = next(s for s in run.symbols if not ctx.book(s).is_live)
        truth = run.sim.model.symbol(symbol)
        await eventually(lambda: clock.waiting == 1, "the simulator holds the snapshot")
        held_at = truth.last_update_id
        for _ in range(30):
            await run.step()
        await eventually(_client_caught_up(run), "the client has every diff sent while the snapshot was held")
        assert ctx.book(symbol).health is BookHealth.RESYNCING
        clock.open_gate()
        await ctx.wait_until(lambda: ctx.book(symbol).is_live, f"{symbol} is LIVE again")
        journal = [e for e in ctx.journal if (e[0] if isinstance(e, tuple) else e.symbol) == symbol]

    assert journal[0] == (symbol, BookHealth.RESYNCING, HealthReason.GAP)
    assert journal.count((symbol, BookHealth.LIVE, HealthReason.SNAPSHOT)) == 1
    snapshot_at = next(i for i, e in enumerate(journal) if isinstance(e, BookSnapshot))
    live_at = journal.index((symbol, BookHealth.LIVE, HealthReason.SNAPSHOT))
    snapshot = journal[snapshot_at]
    bridged = journal[snapshot_at + 1 : live_at]
    assert isinstance(snapshot, BookSnapshot)
    assert snapshot.sequence == held_at  # the state when the request was answered, 30 steps earlier
    assert all(isinstance(d, BookDelta) for d in bridged)
    deltas = [d for d in bridged if isinstance(d, BookDelta)]
    assert len(deltas) >= 10
    assert deltas[0].first_seq <= snapshot.sequence + 1 <= deltas[0].last_seq  # the bridge
    assert all(b.first_seq == a.last_seq + 1 for a, b in itertools.pairwise(deltas))  # nothing skipped
    assert deltas[-1].last_seq == truth.last_update_id  # every diff buffered meanwhile was applied
    assert ctx.mismatches() == []


async def test_snapshot_slower_than_the_timeout_is_counted_and_fetched_again() -> None:
    clock = GatedMarketClock()
    async with chaos_run("binance", FaultSettings(), clock=clock, client_settings={"http_timeout_secs": 0.2}) as run:
        ctx = run.context
        await run.until_all_live()

        run.sim.inject(FaultKind.SNAPSHOT_SLOW)
        run.client.resync("BTC/USDT", HealthReason.STALE, "asked by the test")
        await run.step_until(
            lambda: ctx.counts["snapshot_retries_timeout"] == 1, "the held snapshot timed out", max_steps=2_000,
            pace_secs=SETTLE_STEP_SECS,
        )
        clock.open_gate()
        await run.settle()
        ctx.finish()

    assert ctx.counts["snapshot_retries"] >= 1
    assert ctx.mismatches() == []


async def test_snapshot_refused_with_a_status_not_worth_retrying_is_fetched_again_later() -> None:
    async with chaos_run("binance", FaultSettings(), rest_shim=True) as run:
        ctx = run.context
        assert run.rest_shim is not None
        await run.until_all_live()

        run.rest_shim.refuse_depth(403, times=2)
        run.client.resync("BTC/USDT", HealthReason.STALE, "asked by the test")
        await run.until_all_live("BTC/USDT LIVE again after two refused snapshots")
        ctx.finish()

    assert run.rest_shim.refused == 2
    assert ctx.counts["snapshot_errors"] == 2
    assert ctx.mismatches() == []


# -- malformed frames ----------------------------------------------------------------------------------------

_PAD = "x" * 300  # every crafted frame is longer than the 200 characters a log line keeps

#: One frame per kind of malformation, each naming the BTC/USDT depth stream of the Binance client.
BINANCE_MALFORMED = {
    "bad JSON": '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","b":[["' + _PAD,
    "unknown type": '{"stream":"btcusdt@depth@100ms","data":{"e":"depthSummary","E":1,"s":"BTCUSDT","x":"'
    + _PAD + '"}}',
    "missing field": '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,'
    '"b":[],"a":[],"x":"' + _PAD + '"}}',
    "wrong type": '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,'
    '"b":[["sixty thousand","1.0"]],"a":[],"x":"' + _PAD + '"}}',
}


@pytest.mark.parametrize("kind", list(BINANCE_MALFORMED))
async def test_malformed_binance_frame_is_logged_cut_counted_skipped_and_its_book_resyncs(kind: str) -> None:
    frame = BINANCE_MALFORMED[kind]
    async with chaos_run("binance", FaultSettings(), proxy=True) as run:
        ctx = run.context
        assert run.proxy is not None
        await run.until_all_live()

        await run.proxy.inject(frame)
        await run.step_until(lambda: ctx.counts["parse_errors"] == 1, "the frame is counted", max_steps=2_000,
                             pace_secs=SETTLE_STEP_SECS)
        await run.settle()
        ctx.finish()
        left_live = {s: dict(ctx.watches[s].left_live) for s in run.symbols}

    assert sum(c.parse_errors for c in run.client.stream_counters()) == 1
    logged = [r for r in run.logs.recent if r["event"] == "unreadable frame skipped"]
    assert len(logged) == 1
    assert logged[0]["frame"] == frame[:200]  # the raw text, cut to a safe length
    assert logged[0]["symbol"] == "BTC/USDT"
    assert left_live == {"BTC/USDT": {HealthReason.PARSE_ERROR: 1}, "ETH/USDT": {}}  # only its own book
    assert ctx.mismatches() == []


async def test_malformed_binance_trade_frame_is_counted_and_skipped_and_no_book_resyncs() -> None:
    frame = ('{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"s":"BTCUSDT","a":7,"p":"60000.01",'
             '"q":"a lot","T":1,"m":true}}')
    async with chaos_run("binance", FaultSettings(), proxy=True) as run:
        ctx = run.context
        assert run.proxy is not None
        await run.until_all_live()

        await run.proxy.inject(frame)
        await run.step_until(lambda: ctx.counts["parse_errors"] == 1, "the frame is counted", max_steps=2_000,
                             pace_secs=SETTLE_STEP_SECS)
        await run.settle()
        ctx.finish()
        left_live = {s: dict(ctx.watches[s].left_live) for s in run.symbols}

    logged = [r for r in run.logs.recent if r["event"] == "unreadable frame skipped"]
    assert [r["frame"] for r in logged] == [frame]
    assert left_live == {"BTC/USDT": {}, "ETH/USDT": {}}  # a trade is not part of a book
    assert ctx.mismatches() == []


def _kraken_malformed(kind: str, best_bid: float) -> str:
    """A frame of one malformation about BTC/USD; the ones that parse would change the best bid's size."""
    level = f'{{"price":{best_bid!r},"qty":123.0}}'
    pad = f',"x":"{_PAD}"'
    if kind == "bad JSON":
        return '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[' + level + _PAD
    if kind == "unknown type":
        return f'{{"channel":"book","type":"delta","data":[{{"symbol":"BTC/USD","bids":[{level}],"asks":[],' \
               f'"checksum":1{pad}}}]}}'
    if kind == "missing field":  # an update without its checksum
        return f'{{"channel":"book","type":"update","data":[{{"symbol":"BTC/USD","bids":[{level}],"asks":[]{pad}}}]}}'
    assert kind == "wrong type"
    return '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"sixty thousand",' \
           f'"qty":1.0}}],"asks":[],"checksum":1{pad}}}]}}'


@pytest.mark.parametrize("kind", list(BINANCE_MALFORMED))
async def test_malformed_kraken_frame_is_logged_cut_counted_skipped_and_its_book_resyncs(kind: str) -> None:
    async with chaos_run("kraken", FaultSettings(), proxy=True) as run:
        ctx = run.context
        assert run.proxy is not None
        await run.until_all_live()
        best = ctx.book("BTC/USD").best_bid()
        assert best is not None
        frame = _kraken_malformed(kind, best[0])

        await run.proxy.inject(frame)
        await run.step_until(lambda: ctx.counts["parse_errors"] >= 1 or ctx.mismatches() != [] or
                             not run.all_live(), "the frame has an effect", max_steps=2_000, pace_secs=SETTLE_STEP_SECS)
        await run.settle()
        ctx.finish()
        left_live = {s: dict(ctx.watches[s].left_live) for s in run.symbols}

    assert ctx.mismatches() == []
    assert ctx.counts["parse_errors"] == 1
    logged = [r for r in run.logs.recent if r["event"] == "unreadable frame skipped"]
    assert len(logged) == 1
    assert logged[0]["frame"] == frame[:200]
    assert logged[0]["symbol"] == "BTC/USD"
    assert left_live == {"BTC/USD": {HealthReason.PARSE_ERROR: 1}, "ETH/USD": {}}


async def test_kraken_client_resyncs_a_book_when_the_engine_asks() -> None:
    async with chaos_run("kraken", FaultSettings()) as run:
        ctx = run.context
        await run.until_all_live()

        run.client.resync("BTC/USD", HealthReason.STALE, "asked by the test")
        await run.until_all_live("BTC/USD LIVE again")
        ctx.finish()
        # Read before the run ends: stopping the client takes every book out of LIVE (STOPPED).
        left_live = {s: dict(ctx.watches[s].left_live) for s in run.symbols}

    assert left_live == {"BTC/USD": {HealthReason.STALE: 1}, "ETH/USD": {}}
    assert ctx.mismatches() == []
