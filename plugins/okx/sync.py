"""OKX ``books`` sync as a sans-I/O state machine, one per instrument: snapshot, chained updates, checksum.

OKX proves a book two ways (SPECS.md section 3), and the machine uses whichever a frame carries:

* ``seqId``/``prevSeqId``: an update applies only when its ``prevSeqId`` equals the ``seqId`` of the frame
  before (a snapshot has ``prevSeqId`` -1). ``seqId`` may jump by more than 1; an update with no change
  comes about once a minute with empty sides and ``prevSeqId == seqId``; after maintenance ``seqId`` may
  restart lower than ``prevSeqId``. The chain rule covers all three. Any break is a gap.
* ``checksum``: a signed CRC32 of the top 25 levels per side (interleaved ``price:size`` wire text), checked
  after the frame is applied. 0 means absent (OKX stopped computing it in June 2026).

Then, as on every venue: a crossed book is out of sync too. Out of sync means RESYNCING and a resubscription
(:class:`Resubscribe`); updates are dropped until the fresh snapshot.

Nobody may read a book that is not proven (botframe never trades on a wrong book). The chain is checked
before a frame touches the book; the checksum and crossing can only be checked on the changed book, so
the machine first *applies* the frame's event with the ``apply`` callable (the engine's
``VenueContext.apply``: the book changes, nobody is told), checks ``book``, and only if it verified
*publishes* the same event with ``publish`` (``VenueContext.publish``: strategies, signals and the paper
executor see it; it is not applied twice). A frame that fails is never published: the book goes to
RESYNCING at once and the next snapshot replaces what it changed. Health moves and resubscriptions are
queued in :attr:`BookSync.outputs`::

    CONNECTING --subscribed--> SYNCING --snapshot--> LIVE --gap/mismatch/crossed--> RESYNCING --snapshot--> LIVE
    any state --disconnected--> CONNECTING
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from botframe.book import L2Book, WireText, okx_book_checksum
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason
from botframe.venues import ApplyBookEvent, HealthChange, Resubscribe  # re-exported: the sync machine's outputs

__all__ = ["ApplyBookEvent", "BookSync", "HealthChange", "Resubscribe", "SyncCounters", "SyncOutput"]


TextLevel = tuple[str, str]


SyncOutput = HealthChange | Resubscribe


@dataclass(slots=True)
class SyncCounters:
    """What happened to one book, for the venue's counters and for tests."""

    snapshots: int = 0
    updates: int = 0
    keepalives: int = 0  # empty updates with prevSeqId == seqId
    checksums_matched: int = 0
    checksum_failures: int = 0
    checksums_absent: int = 0  # frames with checksum 0
    gaps: int = 0
    seq_resets: int = 0  # seqId lower than prevSeqId (after maintenance)
    crossed: int = 0
    resyncs: int = 0
    dropped_while_syncing: int = 0


class _Phase(enum.Enum):
    IDLE = 0  # not subscribed: frames are ignored
    AWAITING_SNAPSHOT = 1
    LIVE = 2


_ROUTINE_REASONS = frozenset({HealthReason.START, HealthReason.SUBSCRIBED, HealthReason.SNAPSHOT})


class BookSync:
    """Sync state of one OKX book; see the module docstring for the rules.

    ``apply`` and ``publish`` are the engine's ``VenueContext.apply`` / ``publish`` (a test passes its
    own, e.g. :class:`botframe.testing.RecordingVenueContext`'s); ``book`` is the book ``apply`` changes.
    """

    __slots__ = ("_apply", "_last_seq", "_phase", "_publish", "book", "counters", "health", "outputs", "symbol",
                 "text", "venue")

    def __init__(self, venue: str, symbol: str, book: L2Book, *, apply: ApplyBookEvent,
                 publish: Callable[[Event], None]) -> None:
        self.venue = venue
        self.symbol = symbol
        self.book = book
        self._apply = apply
        self._publish = publish
        self.text = WireText()
        self._phase = _Phase.IDLE
        self._last_seq: int | None = None  # seqId of the last applied frame; None when frames carry none
        self.health = BookHealth.CONNECTING
        self.counters = SyncCounters()
        #: Outputs queued for the caller, in order; take them with :meth:`take_outputs`.
        self.outputs: list[SyncOutput] = []

    @property
    def is_live(self) -> bool:
        return self._phase is _Phase.LIVE

    @property
    def awaiting_snapshot(self) -> bool:
        return self._phase is _Phase.AWAITING_SNAPSHOT

    @property
    def last_seq_id(self) -> int | None:
        return self._last_seq

    def take_outputs(self) -> list[SyncOutput]:
        """Return and clear the queued outputs."""
        out = self.outputs
        self.outputs = []
        return out

    # -- connection ---------------------------------------------------------------------------------------

    def subscribed(self) -> None:
        """A subscription was sent on a fresh connection: wait for the snapshot."""
        self._phase = _Phase.AWAITING_SNAPSHOT
        self._set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED)

    def disconnected(self, reason: HealthReason = HealthReason.DISCONNECTED, detail: str = "") -> None:
        """The connection dropped: the book is unprovable until the next snapshot."""
        self._phase = _Phase.IDLE
        self._last_seq = None
        self._set_health(BookHealth.CONNECTING, reason, detail)

    def invalidate(self, reason: HealthReason, detail: str = "") -> None:
        """Something for this book was lost (an unreadable frame): resync now."""
        if self._phase is _Phase.IDLE:
            return
        self._resync(reason, detail)

    # -- frames ---------------------------------------------------------------------------------------------

    def on_snapshot(self, bids: list[TextLevel], asks: list[TextLevel], checksum: int, seq_id: int | None,
                    exchange_ts_ns: int, receive_ts_ns: int) -> None:
        """A snapshot replaces the book and starts the chain.

        Raises ``ValueError`` when a level is not a number; the caller counts the frame as unreadable and
        calls :meth:`invalidate`.
        """
        if self._phase is _Phase.IDLE:
            return
        fbids, fasks = self.text.apply_snapshot_text(bids, asks)
        self.counters.snapshots += 1
        event = BookSnapshot(venue=self.venue, symbol=self.symbol, bids=fbids, asks=fasks, sequence=seq_id or 0,
                             exchange_ts_ns=exchange_ts_ns, receive_ts_ns=receive_ts_ns)
        self._apply(event)
        if not self._verify(checksum, "snapshot"):
            return  # never published: the book stays out of sync until the next snapshot
        self._phase = _Phase.LIVE
        self._last_seq = seq_id
        self._publish(event)
        self._set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, f"seqId={seq_id}" if seq_id is not None else "")

    def on_update(self, bids: list[TextLevel], asks: list[TextLevel], checksum: int, seq_id: int | None,
                  prev_seq_id: int | None, exchange_ts_ns: int, receive_ts_ns: int) -> None:
        """An update: chained to the last frame by ``prevSeqId`` when present, then checked (``ValueError``
        as for snapshots)."""
        if self._phase is not _Phase.LIVE:
            if self._phase is _Phase.AWAITING_SNAPSHOT:
                self.counters.dropped_while_syncing += 1
            return
        last = self._last_seq
        if seq_id is not None and last is not None:
            if prev_seq_id != last:
                self.counters.gaps += 1
                self._resync(HealthReason.GAP, f"prevSeqId={prev_seq_id} != last seqId={last} (seqId={seq_id})")
                return
            if prev_seq_id is not None and seq_id < prev_seq_id:
                self.counters.seq_resets += 1  # OKX restarted the sequence (maintenance): still chained
        self._last_seq = seq_id
        if not bids and not asks:
            # The keep-alive update (prevSeqId == seqId): nothing to apply, the chain and checksum still hold.
            self.counters.keepalives += 1
            self._verify(checksum, "keep-alive")
            return
        fbids, fasks = self.text.apply_delta_text(bids, asks)
        self.counters.updates += 1
        seq = seq_id or 0
        event = BookDelta(venue=self.venue, symbol=self.symbol, bids=fbids, asks=fasks, first_seq=seq, last_seq=seq,
                          prev_seq=prev_seq_id or 0, exchange_ts_ns=exchange_ts_ns, receive_ts_ns=receive_ts_ns)
        self._apply(event)
        if self._verify(checksum, "update"):
            self._publish(event)

    # -- internals ----------------------------------------------------------------------------------------

    def _verify(self, checksum: int, what: str) -> bool:
        """Checksum (when present), then crossing, of the applied (not yet published) book; resyncs on failure."""
        if checksum:
            ours = okx_book_checksum(self.book, self.text)
            if ours != checksum:
                self.counters.checksum_failures += 1
                self._resync(HealthReason.CHECKSUM, f"{what} checksum {checksum} != computed {ours}")
                return False
            self.counters.checksums_matched += 1
        else:
            self.counters.checksums_absent += 1
        if self.book.is_crossed():
            self.counters.crossed += 1
            self._resync(
                HealthReason.CROSSED, f"best bid {self.book.best_bid_price()} >= best ask {self.book.best_ask_price()}"
            )
            return False
        return True

    def _resync(self, reason: HealthReason, detail: str) -> None:
        self.counters.resyncs += 1
        self._phase = _Phase.AWAITING_SNAPSHOT
        self._last_seq = None
        health = BookHealth.RESYNCING if self.health is BookHealth.LIVE else self.health
        self._set_health(health, reason, detail)
        self.outputs.append(Resubscribe(self.symbol, detail or reason.value))

    def _set_health(self, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        # A problem without a move (a gap while already resyncing) is reported too: the engine counts it.
        if health is self.health and reason in _ROUTINE_REASONS:
            return
        self.health = health
        self.outputs.append(HealthChange(self.symbol, health, reason, detail))
