"""Bitfinex book sync as sans-I/O state machines: one per book, and one sequence per connection.

Bitfinex proves a book two ways (SPECS.md section 4):

* SEQ_ALL: every channel frame of a connection, heartbeats included, carries the next number of one
  per-connection sequence (:class:`ConnectionSequence`). A missing number means some frame of that
  connection was lost, and no one can say whose: every book of the connection resyncs.
* OB_CHECKSUM: ``[chanId,"cs",CHECKSUM]`` frames carry a signed CRC32 of the top 25 levels per side
  (``price:amount`` wire text, asks with their negative amounts), checked against the book as it stands.

Book rules: a snapshot replaces the book; an update ``[PRICE, COUNT, AMOUNT]`` with COUNT > 0 sets the level
(AMOUNT > 0 a bid, < 0 an ask of size -AMOUNT), COUNT 0 deletes it (AMOUNT 1 from the bids, -1 from the
asks). Out of sync means RESYNCING and a resubscription (:class:`Resubscribe`); updates are dropped until
the fresh snapshot.

Nobody may read a book that is not proven (botframe never trades on a wrong book). With checksum frames
(the connection asked for them and Bitfinex confirmed the flag), a book is proven only by the ``cs`` frame
that follows a change, and a change may span several one-level frames (a book may even cross for a
moment between two of them). So the machine *holds* each snapshot and update as it arrives, untouched:
the engine's book keeps its last proven state. At the ``cs`` frame it applies everything held with the
``apply`` callable (the engine's ``VenueContext.apply``: the book changes, nobody is told), verifies the
checksum and then crossing, and only if both hold *publishes* the held events in order with ``publish``
(``VenueContext.publish``: strategies, signals and the paper executor see them; nothing is applied
twice). On a mismatch none of them is published and the book resyncs. Applying at the ``cs`` frame
rather than on arrival keeps the unproven state out of the engine's book between frames, where a
strategy's timer or another symbol's callback could read it as LIVE. The first ``cs`` after a snapshot
is what makes the book LIVE.

A ``cs`` that never comes must neither grow memory nor freeze the book in silence: the machine holds at
most ``max_held`` events (default :data:`MAX_HELD_EVENTS`, far more than one change of a P0 book, which
is one or two levels per order event and a few dozen when a sweep clears the top), and a book whose held
events outlast a whole heartbeat interval of their channel (Bitfinex sends ``hb`` every 15 s whatever the
traffic; one ``hb`` between a change and its ``cs`` is tolerated) is resynced (reason ``CHECKSUM``, counted
as ``checksums_missing``) rather than published unproven.

Without checksum frames each update is applied, checked for crossing, and published at once.

    CONNECTING --subscribed--> SYNCING --snapshot (+ its cs)--> LIVE --gap/mismatch/crossed--> RESYNCING
    RESYNCING --snapshot (+ its cs)--> LIVE;  any state --disconnected--> CONNECTING
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from botframe.book import L2Book, WireText, bitfinex_book_checksum
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason
from botframe.venues import ApplyBookEvent, HealthChange, Resubscribe  # re-exported: the sync machine's outputs

from .parsing import BookLevelText

__all__ = [
    "MAX_HELD_EVENTS",
    "ApplyBookEvent",
    "BookSync",
    "ConnectionSequence",
    "HealthChange",
    "Resubscribe",
    "SyncCounters",
    "SyncOutput",
]


#: Book events held for one ``cs`` frame at most, before the book is resynced instead.
MAX_HELD_EVENTS = 500


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


SyncOutput = HealthChange | Resubscribe


@dataclass(slots=True)
class SyncCounters:
    """What happened to one book, for the venue's counters and for tests."""

    snapshots: int = 0
    updates: int = 0
    checksums_matched: int = 0
    checksum_failures: int = 0
    checksums_missing: int = 0  # resyncs because no cs frame came for what was held
    crossed: int = 0
    resyncs: int = 0
    dropped_while_syncing: int = 0
    withheld: int = 0  # events held for a cs frame and dropped unpublished (mismatch, resync, disconnect)


class _Phase(enum.Enum):
    IDLE = 0  # not subscribed: frames are ignored
    AWAITING_SNAPSHOT = 1
    LIVE = 2


_ROUTINE_REASONS = frozenset({HealthReason.START, HealthReason.SUBSCRIBED, HealthReason.SNAPSHOT})


class BookSync:
    """Sync state of one Bitfinex P0 book; see the module docstring for the rules.

    ``apply`` and ``publish`` are the engine's ``VenueContext.apply`` / ``publish`` (a test passes its
    own, e.g. :class:`botframe.testing.RecordingVenueContext`'s); ``book`` is the book ``apply`` changes.
    ``checksums`` says whether ``cs`` frames are expected; :meth:`expect_checksums` changes it once Bitfinex
    has answered the connection's ``conf``.
    """

    __slots__ = ("_apply", "_checksums", "_held", "_held_at_heartbeat", "_max_held", "_phase", "_publish", "book",
                 "counters", "health", "outputs", "symbol", "text", "venue")

    def __init__(self, venue: str, symbol: str, book: L2Book, *, apply: ApplyBookEvent,
                 publish: Callable[[Event], None], checksums: bool = True, max_held: int = MAX_HELD_EVENTS) -> None:
        self.venue = venue
        self.symbol = symbol
        self.book = book
        self._apply = apply
        self._publish = publish
        self._checksums = checksums
        self._max_held = max_held
        # Events waiting for the next cs frame, not yet applied (the snapshot first, if it is unproven).
        self._held: list[BookSnapshot | BookDelta] = []
        self._held_at_heartbeat = False  # something was held at the channel's last heartbeat, and still is
        self.text = WireText()  # asks keep their negative amount text, as the checksum wants them
        self._phase = _Phase.IDLE
        self.health = BookHealth.CONNECTING
        self.counters = SyncCounters()
        #: Outputs queued for the caller, in order; take them with :meth:`take_outputs`.
        self.outputs: list[SyncOutput] = []

    @property
    def is_live(self) -> bool:
        """The book is proven and follows the stream."""
        return self._phase is _Phase.LIVE and self.health is BookHealth.LIVE

    @property
    def awaiting_snapshot(self) -> bool:
        return self._phase is _Phase.AWAITING_SNAPSHOT

    @property
    def checksums(self) -> bool:
        """Whether ``cs`` frames are expected (and so whether events wait for one before they are published)."""
        return self._checksums

    @property
    def held(self) -> int:
        """Events waiting for the next ``cs`` frame."""
        return len(self._held)

    def take_outputs(self) -> list[SyncOutput]:
        """Return and clear the queued outputs."""
        out = self.outputs
        self.outputs = []
        return out

    # -- connection ---------------------------------------------------------------------------------------

    def subscribed(self) -> None:
        """A subscription was sent on a fresh connection: wait for the snapshot."""
        self._drop_held()
        self._phase = _Phase.AWAITING_SNAPSHOT
        self._set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED)

    def disconnected(self, reason: HealthReason = HealthReason.DISCONNECTED, detail: str = "") -> None:
        """The connection dropped: the book is unprovable until the next snapshot."""
        self._drop_held()
        self._phase = _Phase.IDLE
        self._set_health(BookHealth.CONNECTING, reason, detail)

    def invalidate(self, reason: HealthReason, detail: str = "") -> None:
        """Something for this book may be lost (a sequence gap, an unreadable frame, maintenance): resync."""
        if self._phase is _Phase.IDLE:
            return
        self._resync(reason, detail)

    def expect_checksums(self, on: bool) -> None:
        """Whether this connection carries ``cs`` frames (Bitfinex's answer to ``conf``, or a new connection).

        Events held for a ``cs`` that will now never come cannot be proven: the book resyncs.
        """
        if on == self._checksums:
            return
        self._checksums = on
        if not on and self._held and self._phase is _Phase.LIVE:
            self.counters.checksums_missing += 1
            self._resync(HealthReason.CHECKSUM, "Bitfinex did not confirm checksum frames", "checksums_missing")

    # -- frames ---------------------------------------------------------------------------------------------

    def on_snapshot(self, levels: list[BookLevelText], receive_ts_ns: int) -> None:
        """A snapshot replaces the book (with checksums, once its ``cs`` frame proves it).

        Raises ``ValueError`` when a level is not a number; the caller counts the frame as unreadable and
        calls :meth:`invalidate`.
        """
        if self._phase is _Phase.IDLE:
            return
        bids = [(p, a) for p, _, a in levels if not a.startswith("-")]
        asks = [(p, a) for p, _, a in levels if a.startswith("-")]
        fbids, fasks = self.text.apply_snapshot_text(bids, asks)
        self.counters.snapshots += 1
        event = BookSnapshot(venue=self.venue, symbol=self.symbol, bids=fbids, asks=[(p, abs(s)) for p, s in fasks],
                             receive_ts_ns=receive_ts_ns)
        self._phase = _Phase.LIVE
        self._drop_held()  # whatever was held belonged to the book this snapshot replaces
        if self._checksums:
            self._held.append(event)
            return
        self._apply(event)
        if self._uncrossed():
            self._publish(event)
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
        event = BookDelta(venue=self.venue, symbol=self.symbol, bids=bids, asks=asks, last_seq=seq or 0,
                          receive_ts_ns=receive_ts_ns)
        if self._checksums:
            self._held.append(event)
            if len(self._held) > self._max_held:
                self.counters.checksums_missing += 1
                self._resync(HealthReason.CHECKSUM, f"no checksum frame after {len(self._held)} book events",
                             "checksums_missing")
            return
        self._apply(event)
        if self._uncrossed():
            self._publish(event)

    def on_checksum(self, checksum: int) -> None:
        """Bitfinex's checksum of the book as it should stand now: prove what is held, then publish it."""
        if self._phase is not _Phase.LIVE:
            return
        held = self._held
        self._held = []
        self._held_at_heartbeat = False
        apply = self._apply
        for event in held:
            apply(event)
        ours = bitfinex_book_checksum(self.book, self.text)
        if ours != checksum:
            self.counters.checksum_failures += 1
            self.counters.withheld += len(held)
            self._resync(HealthReason.CHECKSUM, f"checksum {checksum} != computed {ours}")
            return
        self.counters.checksums_matched += 1
        if not self._uncrossed():
            self.counters.withheld += len(held)
            return
        publish = self._publish
        for event in held:
            publish(event)
        if held and isinstance(held[0], BookSnapshot):
            self._set_health(BookHealth.LIVE, HealthReason.SNAPSHOT,
                             f"{len(held[0].bids)} bids, {len(held[0].asks)} asks")

    def on_heartbeat(self) -> None:
        """The book's channel is alive; events held since its previous heartbeat mean the ``cs`` is not coming."""
        if not self._held or self._phase is not _Phase.LIVE:
            self._held_at_heartbeat = False
            return
        if not self._held_at_heartbeat:
            self._held_at_heartbeat = True  # one heartbeat between a change and its cs: wait for the next
            return
        self.counters.checksums_missing += 1
        self._resync(HealthReason.CHECKSUM,
                     f"no checksum frame for {len(self._held)} book events over a heartbeat interval",
                     "checksums_missing")

    # -- internals ----------------------------------------------------------------------------------------

    def _drop_held(self) -> None:
        self.counters.withheld += len(self._held)
        self._held = []
        self._held_at_heartbeat = False

    def _uncrossed(self) -> bool:
        if not self.book.is_crossed():
            return True
        self.counters.crossed += 1
        self._resync(
            HealthReason.CROSSED, f"best bid {self.book.best_bid_price()} >= best ask {self.book.best_ask_price()}"
        )
        return False

    def _resync(self, reason: HealthReason, detail: str, counter: str = "") -> None:
        self._drop_held()
        self.counters.resyncs += 1
        self._phase = _Phase.AWAITING_SNAPSHOT
        health = BookHealth.RESYNCING if self.health is BookHealth.LIVE else self.health
        self._set_health(health, reason, detail, counter)
        self.outputs.append(Resubscribe(self.symbol, detail or reason.value))

    def _set_health(self, health: BookHealth, reason: HealthReason, detail: str = "", counter: str = "") -> None:
        # A problem without a move (a gap while already resyncing) is reported too: the engine counts it.
        if health is self.health and reason in _ROUTINE_REASONS:
            return
        self.health = health
        self.outputs.append(HealthChange(self.symbol, health, reason, detail, counter))
