"""Bybit orderbook sync as a sans-I/O state machine, one per symbol: the ``u`` chain and its resets.

Bybit sends the book itself: a ``snapshot`` after each subscribe, then ``delta`` frames whose ``u``
(update id of the topic) goes +1 per message (SPECS.md section 7). The rules, for every frame:

1. A ``snapshot`` replaces the book, whenever it comes: after a subscribe, or unasked after a problem on
   Bybit's side (and every 3 s on a quiet ``orderbook.1``). The chain continues from its ``u``.
2. A ``delta`` with ``u == 1`` is a full book too (Bybit's service restarted): it replaces the book,
   whatever the book's state, and the chain restarts from 1. No resubscription is needed.
3. A ``delta`` with ``u == previous u + 1`` is applied.
4. Any other ``u`` is a gap: the book goes RESYNCING and is resubscribed (:class:`Resubscribe`); deltas are
   dropped until the new snapshot arrives.

``seq`` (the cross sequence, comparable across depths of one symbol) is kept as :attr:`BookSync.cross_seq`
and reported with a gap. The machine does no I/O: :meth:`BookSync.on_frame` says what to do with a frame
(:class:`Apply`), and health moves and resubscriptions are queued in :attr:`BookSync.outputs`::

    CONNECTING --connected--> SYNCING --snapshot--> LIVE --gap/crossed/parse error--> RESYNCING --snapshot--> LIVE
    any state --disconnected--> CONNECTING

A resync reported for a book that is not LIVE keeps its health (``L2Book.set_health`` counts the reason
and makes no move) and is not resubscribed again: the snapshot it waits for is already on its way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from botframe.events import BookHealth, HealthReason
from botframe.venues import HealthChange  # re-exported: the sync machine's outputs

__all__ = ["Apply", "BookSync", "HealthChange", "Resubscribe", "SyncCounters", "SyncOutput"]


class Apply(enum.Enum):
    """What to do with an orderbook frame."""

    DROP = 0  # not LIVE, or a gap: the frame is not applied
    DELTA = 1  # publish it as a BookDelta
    SNAPSHOT = 2  # publish it as a BookSnapshot (a snapshot, or a delta with u == 1)


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """Unsubscribe and subscribe the orderbook topic of ``symbol`` again, to get a fresh snapshot."""

    symbol: str
    reason: HealthReason
    detail: str = ""


SyncOutput = HealthChange | Resubscribe


@dataclass(slots=True)
class SyncCounters:
    """What happened to one book, for the venue's counters and for tests."""

    snapshots: int = 0
    unsolicited_snapshots: int = 0  # snapshots of a LIVE book
    restarts: int = 0  # deltas with u == 1
    deltas: int = 0
    gaps: int = 0
    resyncs: int = 0
    dropped_while_syncing: int = 0


class _Phase(enum.Enum):
    IDLE = 0  # not connected: frames are ignored
    AWAITING_SNAPSHOT = 1
    LIVE = 2


class BookSync:
    """Sync state of one symbol's book (see the module docstring for the rules)."""

    __slots__ = ("_phase", "counters", "cross_seq", "last_u", "outputs", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._phase = _Phase.IDLE
        #: ``u`` of the last frame applied (0 before the first snapshot).
        self.last_u = 0
        #: ``seq`` of the last frame applied: Bybit's cross sequence, kept for comparison across depths.
        self.cross_seq = 0
        self.counters = SyncCounters()
        self.outputs: list[SyncOutput] = []

    @property
    def is_live(self) -> bool:
        return self._phase is _Phase.LIVE

    @property
    def awaiting_snapshot(self) -> bool:
        return self._phase is _Phase.AWAITING_SNAPSHOT

    def take_outputs(self) -> list[SyncOutput]:
        """Return and clear the queued outputs."""
        out = self.outputs
        self.outputs = []
        return out

    # -- connection ---------------------------------------------------------------------------------------

    def connected(self) -> None:
        """The connection is (re)opened and the topic subscribed: wait for the snapshot."""
        self._phase = _Phase.AWAITING_SNAPSHOT
        self.last_u = 0
        self.outputs.append(HealthChange(self.symbol, BookHealth.SYNCING, HealthReason.SUBSCRIBED))

    def disconnected(self, reason: HealthReason = HealthReason.DISCONNECTED, detail: str = "") -> None:
        self._phase = _Phase.IDLE
        self.last_u = 0
        self.outputs.append(HealthChange(self.symbol, BookHealth.CONNECTING, reason, detail))

    # -- stream input -------------------------------------------------------------------------------------

    def on_frame(self, is_snapshot: bool, update_id: int, cross_seq: int) -> Apply:
        """Feed one orderbook frame's type and ids; the caller publishes it as the answer says.

        After :attr:`Apply.SNAPSHOT` the caller publishes the snapshot and then drains the outputs, so the
        book is LIVE only once it holds the snapshot.
        """
        phase = self._phase
        if phase is _Phase.LIVE and not is_snapshot and update_id == self.last_u + 1:
            # The hot path: one comparison.
            self.last_u = update_id
            self.cross_seq = cross_seq
            self.counters.deltas += 1
            return Apply.DELTA
        if phase is _Phase.IDLE:
            return Apply.DROP
        if is_snapshot or update_id == 1:
            return self._on_full_book(is_snapshot, update_id, cross_seq)
        if phase is _Phase.AWAITING_SNAPSHOT:
            self.counters.dropped_while_syncing += 1
            return Apply.DROP
        self.counters.gaps += 1
        detail = f"u={update_id} after u={self.last_u} (seq={cross_seq}, previous seq={self.cross_seq})"
        self.resync(HealthReason.GAP, detail)
        return Apply.DROP

    def _on_full_book(self, is_snapshot: bool, update_id: int, cross_seq: int) -> Apply:
        counters = self.counters
        if is_snapshot:
            counters.snapshots += 1
        else:
            counters.restarts += 1  # u == 1 on a delta: Bybit restarted and sent the whole book
        if self._phase is _Phase.LIVE:
            if is_snapshot:
                counters.unsolicited_snapshots += 1
        else:
            detail = f"u={update_id}" if is_snapshot else "u=1: service restart, full book"
            self.outputs.append(HealthChange(self.symbol, BookHealth.LIVE, HealthReason.SNAPSHOT, detail))
        self._phase = _Phase.LIVE
        self.last_u = update_id
        self.cross_seq = cross_seq
        return Apply.SNAPSHOT

    def resync(self, reason: HealthReason, detail: str = "") -> None:
        """Drop the book and wait for a fresh snapshot (a gap, a crossed or stale book, an unreadable frame)."""
        if self._phase is _Phase.IDLE:
            return
        self.outputs.append(HealthChange(self.symbol, BookHealth.RESYNCING, reason, detail))
        if self._phase is _Phase.LIVE:
            self._phase = _Phase.AWAITING_SNAPSHOT
            self.counters.resyncs += 1
            self.outputs.append(Resubscribe(self.symbol, reason, detail))
