"""Bitfinex book sync as sans-I/O state machines: one per book, and one sequence per connection.

Bitfinex proves a book two ways (SPECS.md section 4):

* SEQ_ALL: every channel frame of a connection, heartbeats included, carries the next number of one
  per-connection sequence (:class:`ConnectionSequence`). A missing number means some frame of that
  connection was lost, and no one can say whose: every book of the connection resyncs.
* OB_CHECKSUM: ``[chanId,"cs",CHECKSUM]`` frames carry a signed CRC32 of the top 25 levels per side
  (``price:amount`` wire text, asks with their negative amounts), checked against the book as it stands.

Book rules: a snapshot replaces the book; an update ``[PRICE, COUNT, AMOUNT]`` with COUNT > 0 sets the level
(AMOUNT > 0 a bid, < 0 an ask of size -AMOUNT), COUNT 0 deletes it (AMOUNT 1 from the bids, -1 from the
asks). Bitfinex sends one level per frame, so a book may cross for a moment between two frames of one change;
with checksums on, crossing is judged at each checksum frame (Bitfinex sends one after the change is
complete), otherwise after each update.

Out of sync means RESYNCING and a resubscription (:class:`Resubscribe`); updates are dropped until the fresh
snapshot. The book machine publishes events itself through the ``publish`` callable (the engine's
``VenueContext.publish``, which applies them to ``book`` before returning) and then checks ``book``::

    CONNECTING --subscribed--> SYNCING --snapshot--> LIVE --gap/mismatch/crossed--> RESYNCING --snapshot--> LIVE
    any state --disconnected--> CONNECTING
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from botframe.book import L2Book, WireText, bitfinex_book_checksum
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason

from .parsing import BookLevelText

__all__ = ["BookSync", "ConnectionSequence", "HealthChange", "Resubscribe", "SyncCounters", "SyncOutput"]


class ConnectionSequence:
    """The SEQ_ALL sequence of one connection: each channel frame must carry the last number plus one."""

    __slots__ = ("gaps", "last")

    def __init__(self) -> None:
        self.last: int | None = None  # None until the first numbered frame of a connection
        self.gaps = 0

    def reset(self) -> None:
        """A new connection starts a new sequence."""
        self.last = None

    def check(self, seq: int) -> int | None:
        """Take the next number; returns the number expected instead when frames were lost, else None."""
        last = self.last
        self.last = seq
        if last is None or seq == last + 1:
            return None
        self.gaps += 1
        return last + 1


@dataclass(frozen=True, slots=True)
class HealthChange:
    """The book's health moved (or a problem was seen while it was already out of sync)."""

    symbol: str
    health: BookHealth
    reason: HealthReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """Unsubscribe and subscribe the book of ``symbol`` again, to get a fresh snapshot."""

    symbol: str
    reason: str


SyncOutput = HealthChange | Resubscribe


@dataclass(slots=True)
class SyncCounters:
    """What happened to one book, for the venue's counters and for tests."""

    snapshots: int = 0
    updates: int = 0
    checksums_matched: int = 0
    checksum_failures: int = 0
    crossed: int = 0
    resyncs: int = 0
    dropped_while_syncing: int = 0


class _Phase(enum.Enum):
    IDLE = 0  # not subscribed: frames are ignored
    AWAITING_SNAPSHOT = 1
    LIVE = 2


_ROUTINE_REASONS = frozenset({HealthReason.START, HealthReason.SUBSCRIBED, HealthReason.SNAPSHOT})


class BookSync:
    """Sync state of one Bitfinex P0 book; see the module docstring for the rules.

    ``checksums`` says whether the connection asked for checksum frames (crossing is then judged on them).
    """

    __slots__ = ("_checksums", "_phase", "_publish", "book", "counters", "health", "outputs", "symbol", "text",
                 "venue")

    def __init__(self, venue: str, symbol: str, book: L2Book, publish: Callable[[Event], None], *,
                 checksums: bool = True) -> None:
        self.venue = venue
        self.symbol = symbol
        self.book = book
        self._publish = publish
        self._checksums = checksums
        self.text = WireText()  # asks keep their negative amount text, as the checksum wants them
        self._phase = _Phase.IDLE
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
        self._set_health(BookHealth.CONNECTING, reason, detail)

    def invalidate(self, reason: HealthReason, detail: str = "") -> None:
        """Something for this book may be lost (a sequence gap, an unreadable frame, maintenance): resync."""
        if self._phase is _Phase.IDLE:
            return
        self._resync(reason, detail)

    # -- frames ---------------------------------------------------------------------------------------------

    def on_snapshot(self, levels: list[BookLevelText], receive_ts_ns: int) -> None:
        """A snapshot replaces the book (its first checksum frame follows).

        Raises ``ValueError`` when a level is not a number; the caller counts the frame as unreadable and
        calls :meth:`invalidate`.
        """
        if self._phase is _Phase.IDLE:
            return
        bids = [(p, a) for p, _, a in levels if not a.startswith("-")]
        asks = [(p, a) for p, _, a in levels if a.startswith("-")]
        fbids, fasks = self.text.apply_snapshot_text(bids, asks)
        self.counters.snapshots += 1
        self._publish(BookSnapshot(venue=self.venue, symbol=self.symbol, bids=fbids,
                                   asks=[(p, abs(s)) for p, s in fasks], receive_ts_ns=receive_ts_ns))
        self._phase = _Phase.LIVE
        if self._uncrossed():
            self._set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, f"{len(bids)} bids, {len(asks)} asks")

    def on_update(self, level: BookLevelText, seq: int | None, receive_ts_ns: int) -> None:
        """One level changed (``ValueError`` as for snapshots)."""
        if self._phase is not _Phase.LIVE:
            if self._phase is _Phase.AWAITING_SNAPSHOT:
                self.counters.dropped_while_syncing += 1
            return
        price, count, amount = level
        is_ask = amount.startswith("-")
        text_level = [(price, amount if count else "0")]
        if is_ask:
            [(p, s)] = self.text.apply_delta_text((), text_level)[1]
            bids, asks = [], [(p, abs(s))]  # the book keeps ask sizes positive
        else:
            bids, asks = self.text.apply_delta_text(text_level, ())[0], []
        self.counters.updates += 1
        self._publish(BookDelta(venue=self.venue, symbol=self.symbol, bids=bids, asks=asks, last_seq=seq or 0,
                                receive_ts_ns=receive_ts_ns))
        if not self._checksums:
            self._uncrossed()

    def on_checksum(self, checksum: int) -> None:
        """Bitfinex's checksum of the book as it should stand now."""
        if self._phase is not _Phase.LIVE:
            return
        ours = bitfinex_book_checksum(self.book, self.text)
        if ours != checksum:
            self.counters.checksum_failures += 1
            self._resync(HealthReason.CHECKSUM, f"checksum {checksum} != computed {ours}")
            return
        self.counters.checksums_matched += 1
        self._uncrossed()

    # -- internals ----------------------------------------------------------------------------------------

    def _uncrossed(self) -> bool:
        if not self.book.is_crossed():
            return True
        self.counters.crossed += 1
        self._resync(
            HealthReason.CROSSED, f"best bid {self.book.best_bid_price()} >= best ask {self.book.best_ask_price()}"
        )
        return False

    def _resync(self, reason: HealthReason, detail: str) -> None:
        self.counters.resyncs += 1
        self._phase = _Phase.AWAITING_SNAPSHOT
        health = BookHealth.RESYNCING if self.health is BookHealth.LIVE else self.health
        self._set_health(health, reason, detail)
        self.outputs.append(Resubscribe(self.symbol, detail or reason.value))

    def _set_health(self, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        # A problem without a move (a gap while already resyncing) is reported too: the engine counts it.
        if health is self.health and reason in _ROUTINE_REASONS:
            return
        self.health = health
        self.outputs.append(HealthChange(self.symbol, health, reason, detail))
