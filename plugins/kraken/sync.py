"""Kraken book sync as a sans-I/O state machine, one per symbol: snapshot, updates, checksum, resync.

Kraken sends no sequence numbers; every update carries a CRC32 of the top 10 levels per side after it is
applied (SPECS.md sections 1 and 2), so a lost, duplicated or corrupted frame shows as a mismatch on the
next update of that book. The rules, in order, for every frame:

1. A snapshot replaces the book (v2 snapshots carry a checksum too; v1 ones do not).
2. An update is applied whole (every level, in array order, size 0 deletes), then each side is truncated
   to the subscribed depth (``L2Book.depth_limit``: Kraken sends no deletes for levels pushed out of it).
3. The checksum is recomputed from the book: v1 hashes the wire text of the top levels (``WireText``),
   v2 formats the floats with the instrument's precision (the method that survives re-serialized JSON).
4. A mismatch or a crossed book sends the book to RESYNCING and asks for a resubscription
   (:class:`Resubscribe`); updates are dropped until the new snapshot arrives.

Nobody may read a book that is not proven (botframe never trades on a wrong book), so each frame goes
through two phases: the machine *applies* its event with the ``apply`` callable (the engine's
``VenueContext.apply``: the book changes, nobody is told), checks ``book``, and only if the frame verified
*publishes* the same event with ``publish`` (``VenueContext.publish``: strategies, signals and the paper
executor see it; it is not applied twice). A frame that fails is never published: the book goes to
RESYNCING at once, and the next snapshot replaces what it changed. Health moves and resubscriptions are
queued in :attr:`BookSync.outputs` for the caller::

    CONNECTING --subscribed--> SYNCING --snapshot--> LIVE --mismatch/crossed--> RESYNCING --snapshot--> LIVE
    any state --disconnected--> CONNECTING

The protocol's limit (found by the chaos harness): the checksum covers only the top 10 levels per side,
whatever the subscribed depth. With ``depth`` above 10, a lost or damaged update below level 10 leaves
the book wrong where no checksum looks: it shows only if that level later rises into the top 10, or
through the engine's crossed and stale checks. ``depth = 10`` (the default) is the only depth whose
every level is checksum-verified; choose it when the whole book must be proven.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from botframe.book import L2Book, WireText, kraken_book_checksum, kraken_book_checksum_from_precision
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason, Level
from botframe.venues import ApplyBookEvent, HealthChange, Resubscribe  # re-exported: the sync machine's outputs

__all__ = ["ApplyBookEvent", "BookSync", "HealthChange", "Resubscribe", "SyncCounters", "SyncOutput"]

TextLevel = tuple[str, str]


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
    dropped_while_syncing: int = 0  # updates between a resync and the next snapshot
    unverifiable: int = 0  # v2 frames that arrived before the instrument's precision was known


class _Phase(enum.Enum):
    IDLE = 0  # not subscribed: frames are ignored
    AWAITING_SNAPSHOT = 1
    LIVE = 2


_ROUTINE_REASONS = frozenset({HealthReason.START, HealthReason.SUBSCRIBED, HealthReason.SNAPSHOT})
_TEXT_SLACK = 64  # WireText entries beyond 2 x depth before stale texts of truncated levels are pruned


class BookSync:
    """Sync state of one Kraken book; see the module docstring for the rules.

    ``apply`` and ``publish`` are the engine's ``VenueContext.apply`` / ``publish`` (a test passes its
    own, e.g. :class:`botframe.testing.RecordingVenueContext`'s); ``book`` is the book ``apply`` changes.
    ``price_decimals``/``qty_decimals`` select the v2 checksum (formatting floats); leave them None for v1,
    whose frames go through :meth:`on_text_snapshot` / :meth:`on_text_update` and hash the wire text.
    """

    __slots__ = (
        "_apply",
        "_awaiting_precision",
        "_phase",
        "_prune_at",
        "_publish",
        "book",
        "counters",
        "depth",
        "health",
        "outputs",
        "price_decimals",
        "qty_decimals",
        "symbol",
        "text",
        "venue",
    )

    def __init__(
        self,
        venue: str,
        symbol: str,
        book: L2Book,
        *,
        apply: ApplyBookEvent,
        publish: Callable[[Event], None],
        depth: int,
        price_decimals: int | None = None,
        qty_decimals: int | None = None,
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.book = book
        # Kraken never deletes levels that fall out of the subscribed depth: the book must drop them.
        book.depth_limit = depth
        self.depth = depth
        self._apply = apply
        self._publish = publish
        self.price_decimals = price_decimals
        self.qty_decimals = qty_decimals
        self.text = WireText()
        self._prune_at = 2 * depth + _TEXT_SLACK
        self._phase = _Phase.IDLE
        self._awaiting_precision = False
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
        self._awaiting_precision = False
        self._set_health(BookHealth.CONNECTING, reason, detail)

    def invalidate(self, reason: HealthReason, detail: str = "") -> None:
        """Something for this book was lost (an unreadable frame, venue maintenance): resync now."""
        if self._phase is _Phase.IDLE:
            return
        self._resync(reason, detail)

    def set_precision(self, price_decimals: int, qty_decimals: int) -> None:
        """The instrument's precisions (v2), from REST or the instrument channel; they can change."""
        self.price_decimals = price_decimals
        self.qty_decimals = qty_decimals
        if self._awaiting_precision:
            self._awaiting_precision = False
            self.outputs.append(Resubscribe(self.symbol, "instrument precision now known"))

    # -- v1: text levels ----------------------------------------------------------------------------------

    def on_text_snapshot(self, bids: list[TextLevel], asks: list[TextLevel], exchange_ts_ns: int,
                         receive_ts_ns: int) -> None:
        """A v1 snapshot (no checksum): the book is LIVE once it is applied and uncrossed.

        Raises ``ValueError`` when a level is not a number; the caller counts the frame as unreadable and
        calls :meth:`invalidate`.
        """
        if self._phase is _Phase.IDLE:
            return
        fbids, fasks = self.text.apply_snapshot_text(bids, asks)
        self._apply_snapshot(fbids, fasks, None, exchange_ts_ns, receive_ts_ns)

    def on_text_update(self, bids: list[TextLevel], asks: list[TextLevel], checksum: int, exchange_ts_ns: int,
                       receive_ts_ns: int) -> None:
        """A v1 update with its checksum over the wire text (``ValueError`` as for snapshots)."""
        if self._phase is not _Phase.LIVE:
            self._dropped()
            return
        text = self.text
        fbids, fasks = text.apply_delta_text(bids, asks)
        self._apply_update(fbids, fasks, checksum, exchange_ts_ns, receive_ts_ns)
        if len(text.bids) > self._prune_at or len(text.asks) > self._prune_at:
            text.prune(self.book)

    # -- v2: float levels ---------------------------------------------------------------------------------

    def on_snapshot(self, bids: list[Level], asks: list[Level], checksum: int | None, exchange_ts_ns: int,
                    receive_ts_ns: int) -> None:
        """A v2 snapshot; its checksum is verified with the instrument's precision."""
        if self._phase is _Phase.IDLE:
            return
        if self.price_decimals is None and checksum is not None:
            self._unverifiable()
            return
        self._apply_snapshot(bids, asks, checksum, exchange_ts_ns, receive_ts_ns)

    def on_update(self, bids: list[Level], asks: list[Level], checksum: int | None, exchange_ts_ns: int,
                  receive_ts_ns: int) -> None:
        """A v2 update."""
        if self._phase is not _Phase.LIVE:
            self._dropped()
            return
        self._apply_update(bids, asks, checksum, exchange_ts_ns, receive_ts_ns)

    # -- internals ----------------------------------------------------------------------------------------

    def _apply_snapshot(self, bids: list[Level], asks: list[Level], checksum: int | None, exchange_ts_ns: int,
                        receive_ts_ns: int) -> None:
        self.counters.snapshots += 1
        event = BookSnapshot(venue=self.venue, symbol=self.symbol, bids=bids, asks=asks,
                             exchange_ts_ns=exchange_ts_ns, receive_ts_ns=receive_ts_ns)
        self._apply(event)
        if not self._verify(checksum, "snapshot"):
            return  # never published: the book stays out of sync until the next snapshot
        self._phase = _Phase.LIVE
        self._publish(event)
        self._set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, f"{len(bids)} bids, {len(asks)} asks")

    def _apply_update(self, bids: list[Level], asks: list[Level], checksum: int | None, exchange_ts_ns: int,
                      receive_ts_ns: int) -> None:
        self.counters.updates += 1
        event = BookDelta(venue=self.venue, symbol=self.symbol, bids=bids, asks=asks,
                          exchange_ts_ns=exchange_ts_ns, receive_ts_ns=receive_ts_ns)
        self._apply(event)
        if self._verify(checksum, "update"):
            self._publish(event)

    def _verify(self, checksum: int | None, what: str) -> bool:
        """Checksum, then crossing, of the applied (not yet published) book; resyncs and returns False on failure."""
        if checksum is not None:
            pd = self.price_decimals
            if pd is None:
                ours = kraken_book_checksum(self.book, self.text)
            else:
                qd = self.qty_decimals if self.qty_decimals is not None else 8
                ours = kraken_book_checksum_from_precision(self.book, pd, qd)
            if ours != checksum:
                self.counters.checksum_failures += 1
                self._resync(HealthReason.CHECKSUM, f"{what} checksum {checksum} != computed {ours}")
                return False
            self.counters.checksums_matched += 1
        if self.book.is_crossed():
            self.counters.crossed += 1
            self._resync(
                HealthReason.CROSSED, f"best bid {self.book.best_bid_price()} >= best ask {self.book.best_ask_price()}"
            )
            return False
        return True

    def _dropped(self) -> None:
        if self._phase is _Phase.AWAITING_SNAPSHOT:
            self.counters.dropped_while_syncing += 1

    def _unverifiable(self) -> None:
        # Only reachable with no REST instruments and the book frame ahead of the instrument channel.
        self.counters.unverifiable += 1
        self._awaiting_precision = True

    def _resync(self, reason: HealthReason, detail: str) -> None:
        self.counters.resyncs += 1
        self._phase = _Phase.AWAITING_SNAPSHOT
        health = BookHealth.RESYNCING if self.health is BookHealth.LIVE else self.health
        self._set_health(health, reason, detail)
        self.outputs.append(Resubscribe(self.symbol, detail or reason.value))

    def _set_health(self, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        # A problem without a move (a mismatch while already resyncing) is reported too: the engine counts it.
        if health is self.health and reason in _ROUTINE_REASONS:
            return
        self.health = health
        self.outputs.append(HealthChange(self.symbol, health, reason, detail))
