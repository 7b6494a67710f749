"""The Binance diff-depth sync procedure as a sans-I/O state machine, one per symbol.

Binance publishes no checksum: a local book is right only if it starts from a REST snapshot and then
applies every diff without a hole, proven by the update ids. The documented procedure (SPECS.md section 5,
verified on the captures of all 22 recorded symbols):

1. Buffer the diffs of the stream, then fetch a snapshot (``lastUpdateId``, called ``L`` below).
2. If ``L`` is older than the first buffered diff (``L < U``), the snapshot is too old: fetch another.
3. Drop stale diffs: spot ``u <= L``; futures ``u < L``.
4. The first applied diff must bridge the snapshot: spot ``U <= L+1 <= u``; futures ``U <= L <= u``.
5. Each later diff must be contiguous: spot ``U == prev_u + 1``; futures ``pu == prev_u`` (futures ids
   skip, so ``U`` says nothing there). Anything else is a gap: resync from step 1, keeping the diff that
   showed the gap and every diff that arrives while the new snapshot is fetched.

The machine does no I/O. Feed it :meth:`BookSync.on_diff` and :meth:`BookSync.on_snapshot` (plus
:meth:`connected`, :meth:`disconnected`, :meth:`invalidate`); it returns the :class:`BookDelta` to publish
on the fast path and queues everything else in :attr:`BookSync.outputs` for the caller to act on:
:class:`NeedSnapshot` (fetch one and hand it back with the request id), ``BookSnapshot`` and ``BookDelta``
(publish in order) and :class:`HealthChange` (tell the engine)::

    CONNECTING --connected--> SYNCING --snapshot bridges--> LIVE --gap/parse error--> RESYNCING --> LIVE
    any state --disconnected--> CONNECTING (the rules of ``botframe.book.L2Book.set_health``)

A gap or an unreadable frame while the book is not LIVE yet keeps its health but is still reported
(:class:`HealthChange` with the same health and reason ``GAP``), so the engine counts it.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason
from botframe.venues import HealthChange  # re-exported: the sync machine's outputs

from .parsing import DepthSnapshotMessage, DepthUpdate, book_delta, book_snapshot

__all__ = ["BookSync", "HealthChange", "NeedSnapshot", "SyncCounters", "SyncOutput", "SyncRules"]


class SyncRules(enum.StrEnum):
    """Which variant of the procedure applies (they differ in steps 3 to 5)."""

    SPOT = "spot"  # Binance spot and Binance.US
    FUTURES = "futures"  # USD-M and COIN-M


@dataclass(frozen=True, slots=True)
class NeedSnapshot:
    """Fetch a REST snapshot of ``symbol`` and pass it to ``on_snapshot(.., request_id)``."""

    symbol: str
    request_id: int
    reason: str


SyncOutput = BookSnapshot | BookDelta | NeedSnapshot | HealthChange


@dataclass(slots=True)
class SyncCounters:
    """What happened to one book, for the venue's counters and for tests."""

    gaps: int = 0
    resyncs: int = 0
    snapshots_requested: int = 0
    snapshots_applied: int = 0
    snapshots_too_old: int = 0
    snapshots_ignored: int = 0  # answers to a request that a later event made obsolete
    stale_dropped: int = 0  # diffs already contained in the book
    buffer_overflows: int = 0  # diffs dropped because the snapshot took too long


_ROUTINE_REASONS = frozenset({HealthReason.START, HealthReason.SUBSCRIBED, HealthReason.SNAPSHOT})


class _Phase(enum.Enum):
    DISCONNECTED = 0  # no stream: diffs are ignored
    BUFFERING = 1  # waiting for a snapshot; diffs are kept
    LIVE = 2  # applying diffs


class BookSync:
    """Sync state of one symbol's book (see the module docstring for the procedure).

    ``max_buffered`` bounds the diffs kept while a snapshot is awaited; when it overflows the oldest are
    dropped, which only makes the snapshot check stricter (a too-old snapshot is refetched).
    """

    __slots__ = (
        "_awaiting_bridge",
        "_buffer",
        "_futures",
        "_last_u",
        "_max_buffered",
        "_next_request_id",
        "_pending_request",
        "_phase",
        "counters",
        "health",
        "outputs",
        "symbol",
        "venue",
    )

    def __init__(self, venue: str, symbol: str, rules: SyncRules, *, max_buffered: int = 10_000) -> None:
        self.venue = venue
        self.symbol = symbol
        self._futures = rules is SyncRules.FUTURES
        self._max_buffered = max_buffered
        self._phase = _Phase.DISCONNECTED
        self._buffer: deque[tuple[DepthUpdate, int]] = deque()
        self._last_u = 0
        self._awaiting_bridge = False
        self._pending_request = 0  # id of the snapshot request in flight, 0 when none
        self._next_request_id = 1
        self.health = BookHealth.CONNECTING
        self.counters = SyncCounters()
        #: Outputs queued for the caller, in order; take them with :meth:`take_outputs`.
        self.outputs: list[SyncOutput] = []

    # -- queries ------------------------------------------------------------------------------------------

    @property
    def is_live(self) -> bool:
        return self._phase is _Phase.LIVE

    @property
    def last_update_id(self) -> int:
        """``u`` of the last applied diff (or the snapshot's ``lastUpdateId``); 0 before the first sync."""
        return self._last_u

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    @property
    def pending_request(self) -> int:
        """Id of the snapshot request the machine waits for, 0 when none."""
        return self._pending_request

    def take_outputs(self) -> list[SyncOutput]:
        """Return and clear the queued outputs."""
        out = self.outputs
        self.outputs = []
        return out

    # -- connection ---------------------------------------------------------------------------------------

    def connected(self) -> None:
        """The stream (re)connected: start buffering; the first diff asks for a snapshot."""
        self._reset()
        self._phase = _Phase.BUFFERING
        self._set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED)

    def disconnected(self, reason: HealthReason = HealthReason.DISCONNECTED, detail: str = "") -> None:
        """The stream dropped: nothing buffered is usable any more, and a snapshot in flight is moot."""
        self._reset()
        self._phase = _Phase.DISCONNECTED
        self._set_health(BookHealth.CONNECTING, reason, detail)

    def invalidate(self, reason: HealthReason, detail: str = "") -> None:
        """Something for this book was lost (an unreadable frame): resync now."""
        if self._phase is _Phase.DISCONNECTED:
            return
        self._begin_resync(reason, detail, None)
        self._request_snapshot(detail or reason.value)

    # -- stream input -------------------------------------------------------------------------------------

    def on_diff(self, msg: DepthUpdate, receive_ts_ns: int) -> BookDelta | None:
        """Feed one diff; returns the delta to publish now, or None (buffered, stale, or a gap)."""
        if self._phase is _Phase.LIVE and not self._awaiting_bridge:
            # The hot path: one comparison for staleness, one for contiguity.
            last_u = self._last_u
            if msg.last_update_id <= last_u:
                self.counters.stale_dropped += 1
                return None
            if (msg.prev_update_id == last_u) if self._futures else (msg.first_update_id == last_u + 1):
                self._last_u = msg.last_update_id
                # parsing.book_delta, written out: this runs for every diff.
                return BookDelta(venue=self.venue, symbol=self.symbol, bids=msg.bids, asks=msg.asks,
                                 first_seq=msg.first_update_id, last_seq=msg.last_update_id,
                                 prev_seq=msg.prev_update_id,
                                 exchange_ts_ns=(msg.transaction_time_ms or msg.event_time_ms) * 1_000_000,
                                 receive_ts_ns=receive_ts_ns)
            self._on_gap(msg, receive_ts_ns)
            return None
        return self._on_diff_slow(msg, receive_ts_ns)

    def _on_diff_slow(self, msg: DepthUpdate, receive_ts_ns: int) -> BookDelta | None:
        if self._phase is _Phase.BUFFERING:
            self._buffer_diff(msg, receive_ts_ns)
            if not self._pending_request:
                self._request_snapshot("initial")
            return None
        if self._phase is _Phase.DISCONNECTED:
            return None
        # LIVE, first diff after the snapshot: it must bridge it.
        snap_id = self._last_u
        if (msg.last_update_id < snap_id) if self._futures else (msg.last_update_id <= snap_id):
            self.counters.stale_dropped += 1
            return None
        if msg.first_update_id <= (snap_id if self._futures else snap_id + 1):
            self._awaiting_bridge = False
            self._last_u = msg.last_update_id
            return book_delta(msg, self.venue, self.symbol, receive_ts_ns)
        self._on_gap(msg, receive_ts_ns)
        return None

    def on_snapshot(self, snap: DepthSnapshotMessage, request_id: int, receive_ts_ns: int) -> None:
        """Feed the REST snapshot answering ``request_id``; outputs say what happened."""
        if self._phase is not _Phase.BUFFERING or request_id != self._pending_request:
            self.counters.snapshots_ignored += 1
            return
        self._pending_request = 0
        last_id = snap.last_update_id
        buffer = self._buffer
        if buffer and last_id < buffer[0][0].first_update_id:
            self.counters.snapshots_too_old += 1
            self._request_snapshot(
                f"snapshot too old: lastUpdateId={last_id} < first buffered U={buffer[0][0].first_update_id}"
            )
            return
        futures = self._futures
        while buffer and (
            buffer[0][0].last_update_id < last_id if futures else buffer[0][0].last_update_id <= last_id
        ):
            buffer.popleft()
            self.counters.stale_dropped += 1
        if buffer and buffer[0][0].first_update_id > (last_id if futures else last_id + 1):
            # The snapshot is recent enough, but a diff between the dropped ones and the rest is missing.
            first = buffer[0][0]
            self.counters.gaps += 1
            detail = (
                f"buffered diffs do not bridge the snapshot: lastUpdateId={last_id}, "
                f"next U={first.first_update_id} u={first.last_update_id}"
            )
            self._set_health(self.health, HealthReason.GAP, detail)
            self._request_snapshot(detail)
            return
        self.counters.snapshots_applied += 1
        self._phase = _Phase.LIVE
        self._last_u = last_id
        self._awaiting_bridge = True
        self.outputs.append(book_snapshot(snap, self.venue, self.symbol, receive_ts_ns))
        pending = list(buffer)
        buffer.clear()
        for msg, ts in pending:
            # A gap among the buffered diffs sends the machine back to BUFFERING, and the rest of
            # ``pending`` is buffered again through the same method.
            delta = self.on_diff(msg, ts)
            if delta is not None:
                self.outputs.append(delta)
        if self._phase is _Phase.LIVE:
            self._set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, f"lastUpdateId={last_id}")

    # -- internals ----------------------------------------------------------------------------------------

    def _on_gap(self, msg: DepthUpdate, receive_ts_ns: int) -> None:
        self.counters.gaps += 1
        if self._awaiting_bridge:
            detail = (
                f"first diff does not bridge the snapshot: lastUpdateId={self._last_u}, "
                f"U={msg.first_update_id} u={msg.last_update_id}"
            )
        elif self._futures:
            detail = f"pu={msg.prev_update_id} != previous u={self._last_u} (u={msg.last_update_id})"
        else:
            detail = f"U={msg.first_update_id} != previous u+1={self._last_u + 1} (u={msg.last_update_id})"
        self._begin_resync(HealthReason.GAP, detail, (msg, receive_ts_ns))
        self._request_snapshot(detail)

    def _begin_resync(self, reason: HealthReason, detail: str, keep: tuple[DepthUpdate, int] | None) -> None:
        self.counters.resyncs += 1
        self._reset()
        self._phase = _Phase.BUFFERING
        if keep is not None:
            self._buffer.append(keep)
        # A book that is not LIVE yet is already out of sync: it keeps its health, the reason is reported.
        health = BookHealth.RESYNCING if self.health is BookHealth.LIVE else self.health
        self._set_health(health, reason, detail)

    def _buffer_diff(self, msg: DepthUpdate, receive_ts_ns: int) -> None:
        buffer = self._buffer
        buffer.append((msg, receive_ts_ns))
        if len(buffer) > self._max_buffered:
            buffer.popleft()
            self.counters.buffer_overflows += 1

    def _request_snapshot(self, reason: str) -> None:
        request_id = self._next_request_id
        self._next_request_id += 1
        self._pending_request = request_id
        self.counters.snapshots_requested += 1
        self.outputs.append(NeedSnapshot(self.symbol, request_id, reason))

    def _reset(self) -> None:
        self._buffer.clear()
        self._pending_request = 0
        self._awaiting_bridge = False
        self._last_u = 0

    def _set_health(self, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        # A problem without a move (a gap while already resyncing) is reported too: the engine counts it.
        if health is self.health and reason in _ROUTINE_REASONS:
            return
        self.health = health
        self.outputs.append(HealthChange(self.symbol, health, reason, detail))
