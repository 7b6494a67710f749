"""Coinbase book sync as a sans-I/O state machine, one per connection, and the public-trade de-duplicator.

Coinbase sends the book itself: a ``snapshot`` after each subscribe, then updates. What can go wrong, and
what the machine does about it (SPECS.md section 6):

* Advanced Trade numbers every frame of a connection with ONE ``sequence_num`` shared by all channels
  (book, trades, heartbeats, subscription acks), +1 per frame. A jump means some frame was lost, and any
  book of the connection may have lost an update: every LIVE book goes RESYNCING and is resubscribed
  (:class:`Resubscribe`); its updates are dropped until its new snapshot arrives. The chain goes on from
  the new number (the counter does not restart on a resubscribe, only on a new connection).
* The Exchange feed's level2 channel has no sequence numbers. A lost update shows only as a crossed
  book, which the engine detects and reports through the client's ``resync``; an unreadable frame that
  might have been a book update resyncs the books it may concern.

Any resync (gap, crossed, stale, unreadable frame) goes through :meth:`ConnectionSync.resync`.
The machine does no I/O; it queues :class:`HealthChange` and :class:`Resubscribe` in
:attr:`ConnectionSync.outputs` for the caller (``take_outputs``)::

    CONNECTING --connected--> SYNCING --snapshot--> LIVE --gap/crossed/parse error--> RESYNCING --snapshot--> LIVE
    any state --disconnected--> CONNECTING

A resync reported for a book that is not LIVE keeps its health (``L2Book.set_health`` counts the reason
and makes no move), and it is not resubscribed again: the snapshot it waits for is already on its way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import TypeVar

from botframe.events import BookHealth, HealthReason
from botframe.venues import HealthChange  # re-exported: the sync machine's outputs

__all__ = ["ConnectionSync", "HealthChange", "Resubscribe", "SyncCounters", "SyncOutput", "TradeDedup"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """Unsubscribe and subscribe the books of ``product_ids`` again, to get fresh snapshots."""

    product_ids: tuple[str, ...]
    reason: HealthReason
    detail: str = ""


SyncOutput = HealthChange | Resubscribe


@dataclass(slots=True)
class SyncCounters:
    """What happened on one connection, for the venue's counters and for tests."""

    gaps: int = 0
    resyncs: int = 0  # books sent back to a snapshot
    snapshots: int = 0
    dropped_while_syncing: int = 0  # updates of a book that waited for its snapshot
    unknown_products: int = 0  # book events of a product this connection does not carry


class _Phase(enum.Enum):
    IDLE = 0  # not connected: frames are ignored
    AWAITING_SNAPSHOT = 1
    LIVE = 2


class ConnectionSync:
    """Book states of the products of one connection, and (Advanced Trade) its ``sequence_num`` chain.

    ``products`` maps each Coinbase product id of the connection to its unified symbol.
    """

    __slots__ = ("_phase", "_symbols", "counters", "last_gap", "last_sequence", "outputs")

    def __init__(self, products: Mapping[str, str]) -> None:
        self._symbols = dict(products)
        self._phase = dict.fromkeys(self._symbols, _Phase.IDLE)
        #: ``sequence_num`` of the last frame of this connection (None until the first frame).
        self.last_sequence: int | None = None
        #: The last jump seen, as ``(previous, received)``.
        self.last_gap: tuple[int, int] | None = None
        self.counters = SyncCounters()
        self.outputs: list[SyncOutput] = []

    # -- queries ------------------------------------------------------------------------------------------

    @property
    def product_ids(self) -> list[str]:
        return list(self._symbols)

    def symbol(self, product_id: str) -> str | None:
        return self._symbols.get(product_id)

    def is_live(self, product_id: str) -> bool:
        return self._phase.get(product_id) is _Phase.LIVE

    def awaiting_snapshot(self) -> list[str]:
        """Products whose book waits for a snapshot."""
        return [p for p, phase in self._phase.items() if phase is _Phase.AWAITING_SNAPSHOT]

    def take_outputs(self) -> list[SyncOutput]:
        """Return and clear the queued outputs."""
        out = self.outputs
        self.outputs = []
        return out

    # -- connection ---------------------------------------------------------------------------------------

    def connected(self) -> None:
        """A new connection: every book waits for its snapshot; the sequence chain starts afresh."""
        self.last_sequence = None
        for product, symbol in self._symbols.items():
            self._phase[product] = _Phase.AWAITING_SNAPSHOT
            self.outputs.append(HealthChange(symbol, BookHealth.SYNCING, HealthReason.SUBSCRIBED))

    def disconnected(self, reason: HealthReason = HealthReason.DISCONNECTED, detail: str = "") -> None:
        """The connection dropped: nothing it sent before can be continued."""
        self.last_sequence = None
        for product, symbol in self._symbols.items():
            self._phase[product] = _Phase.IDLE
            self.outputs.append(HealthChange(symbol, BookHealth.CONNECTING, reason, detail))

    # -- stream input -------------------------------------------------------------------------------------

    def check_sequence(self, sequence: int) -> bool:
        """Feed the ``sequence_num`` of every frame; False when it jumped (every LIVE book then resyncs)."""
        last = self.last_sequence
        self.last_sequence = sequence
        if last is None or sequence == last + 1:
            return True
        self.counters.gaps += 1
        self.last_gap = (last, sequence)
        self.resync(None, HealthReason.GAP, f"sequence_num {sequence} after {last}")
        return False

    def on_snapshot(self, product_id: str) -> str | None:
        """A snapshot of ``product_id`` arrived: the symbol to publish it under, or None to ignore it.

        The caller publishes the snapshot and then drains the outputs, so the book is LIVE only once it
        holds the snapshot. A snapshot of a LIVE book (sent unasked) simply replaces it.
        """
        phase = self._phase.get(product_id)
        if phase is None:
            self.counters.unknown_products += 1
            return None
        if phase is _Phase.IDLE:
            return None
        symbol = self._symbols[product_id]
        self.counters.snapshots += 1
        if phase is _Phase.AWAITING_SNAPSHOT:
            self._phase[product_id] = _Phase.LIVE
            self.outputs.append(HealthChange(symbol, BookHealth.LIVE, HealthReason.SNAPSHOT))
        return symbol

    def live_symbol(self, product_id: str) -> str | None:
        """The symbol to publish an update of ``product_id`` under, or None while its book is not LIVE."""
        if self._phase.get(product_id) is _Phase.LIVE:
            return self._symbols[product_id]
        if product_id in self._phase:
            self.counters.dropped_while_syncing += 1
        else:
            self.counters.unknown_products += 1
        return None

    def resync(self, product_ids: Iterable[str] | None, reason: HealthReason, detail: str = "") -> None:
        """Send the books of ``product_ids`` (None: all of this connection) back to a fresh snapshot."""
        targets = self._symbols if product_ids is None else [p for p in product_ids if p in self._symbols]
        again: list[str] = []
        for product in targets:
            phase = self._phase[product]
            if phase is _Phase.IDLE:
                continue
            self.outputs.append(HealthChange(self._symbols[product], BookHealth.RESYNCING, reason, detail))
            if phase is _Phase.LIVE:
                self._phase[product] = _Phase.AWAITING_SNAPSHOT
                again.append(product)
        if again:
            self.counters.resyncs += len(again)
            self.outputs.append(Resubscribe(tuple(again), reason, detail))


class TradeDedup:
    """Publishes each public trade once, across trade snapshots, resubscriptions and reconnects.

    Keeps the highest trade key (Coinbase trade ids, or feed sequences, grow per product) published per
    product. A batch marked ``history`` (Advanced Trade's first ``market_trades`` message after a
    subscribe, a snapshot of recent trades) publishes only trades newer than that mark; for a product
    with no mark yet it publishes nothing and only sets the mark, because those trades happened before
    we listened. Trades whose key cannot be read are published in ``update`` batches, never from history.
    """

    __slots__ = ("_last", "duplicates")

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self.duplicates = 0

    def last_key(self, product_id: str) -> int | None:
        return self._last.get(product_id)

    def accept(self, product_id: str, key: int) -> bool:
        """One trade: True (and remember it) when it is newer than every trade published for the product."""
        last = self._last.get(product_id)
        if last is not None and key <= last:
            self.duplicates += 1
            return False
        self._last[product_id] = key
        return True

    def select(
        self,
        trades: Sequence[T],
        product_of: Callable[[T], str],
        key_of: Callable[[T], int | None],
        *,
        history: bool,
    ) -> list[T]:
        """The trades of a batch to publish, oldest first within each product."""
        # Oldest first within each product; products in the order they first appear.
        rank: dict[str, int] = {}
        keyed: list[tuple[int, int, int, str, T]] = []
        unkeyed: list[T] = []
        for index, trade in enumerate(trades):
            key = key_of(trade)
            if key is None:
                unkeyed.append(trade)
            else:
                product = product_of(trade)
                keyed.append((rank.setdefault(product, len(rank)), key, index, product, trade))
        keyed.sort(key=itemgetter(0, 1, 2))
        last = self._last
        silent: set[str] = set()  # products whose history only sets the mark
        out: list[T] = []
        for _rank, key, _index, product, trade in keyed:
            mark = last.get(product)
            if history and (mark is None or product in silent):
                silent.add(product)
                if mark is None or key > mark:
                    last[product] = key
                continue
            if mark is not None and key <= mark:
                self.duplicates += 1
                continue
            last[product] = key
            out.append(trade)
        if not history:
            out.extend(unkeyed)
        return out
