"""An append-only SQLite journal of what happened to our orders, and recovery from it after a restart.

The journal records every order intent, risk denial, order update, fill and trading-state change, in
the order the engine saw them, one row each (``seq``, a type name in ``kind``, the client order id
for lookups, and the event encoded with msgspec MessagePack). Nothing is ever updated or deleted.
:meth:`Journal.recover` replays the rows into what a restarted bot needs: the orders that were still
open, every fill once (a fill recorded twice, same ``fill_id``, counts once), the last trading state
and the highest client order id counter used, so ids never repeat across restarts.

Durability (``fsync``), chosen per deployment; the engine calls :meth:`Journal.record` synchronously
on the event path and :meth:`Journal.flush` once per event-loop tick (every 50 ms):

``"batch"`` (the default)
    WAL with ``synchronous=NORMAL``. Rows are appended inside one open transaction that commits on
    :meth:`~Journal.flush`, every ``batch_size`` rows, and *immediately when an intent or a fill is
    recorded*: an order is never sent before it, and every event before it, is committed, and a
    fill is durable before any strategy sees it. Where orders never leave the process (the paper
    executor: ``Executor.orders_leave_process = False``), an intent is held in memory and written,
    in its place in the sequence, with the next row of another kind, the next fill's commit or the
    tick (``Journal.commit_intents_at_once``): an order that exists nowhere but in the process needs
    no durable record of its own (it dies with the process, and its client order id cannot repeat:
    the run id in it sees to that), and the order's way out does no SQLite work, measured as the
    costliest part of a cold order (about half of it). A commit in WAL mode with NORMAL writes the WAL
    file without an fsync (tens of microseconds), so it survives a crash of the process (the
    operating system still has the data) but the last commits may be lost if the machine loses
    power; the database is never corrupted either way. Order updates recorded since the last
    commit are lost with the process; a live venue re-reports them at reconciliation.
``"always"``
    WAL with ``synchronous=FULL`` and a commit (with fsync) per row: every row survives a power
    loss once ``record`` returns. Costs one fsync per event (see ``benchmarks/journal_writes.py``).
``"off"``
    WAL with ``synchronous=OFF``, commits only on ``flush`` and every ``batch_size`` rows, intents
    included. For replays and backtests, where the journal can be rebuilt by running again.

WAL mode also lets another process (``sqlite3``, a dashboard) read the journal while the bot writes.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Final

import msgspec
import structlog

from .events import (
    Fill,
    OrderDenied,
    OrderIntent,
    OrderStatus,
    OrderUpdate,
    TradingState,
    TradingStateChanged,
)

__all__ = [
    "SCHEMA_VERSION",
    "FsyncPolicy",
    "Journal",
    "JournalError",
    "JournalEvent",
    "Recovered",
    "client_order_counter",
]

_log = structlog.get_logger("botframe.journal")

#: Stored in ``PRAGMA user_version``; a journal written by a newer schema is refused, not misread.
SCHEMA_VERSION: Final = 1

#: What the journal records.
JournalEvent = OrderIntent | OrderDenied | OrderUpdate | Fill | TradingStateChanged

_KIND_OF: Final[dict[type[JournalEvent], str]] = {
    OrderIntent: "intent",
    OrderDenied: "denied",
    OrderUpdate: "order_update",
    Fill: "fill",
    TradingStateChanged: "trading_state",
}
_DECODERS: Final[dict[str, msgspec.msgpack.Decoder[JournalEvent]]] = {
    kind: msgspec.msgpack.Decoder(cls) for cls, kind in _KIND_OF.items()
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    client_order_id TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""
_INSERT = "INSERT INTO journal (kind, ts_ns, client_order_id, payload) VALUES (?, ?, ?, ?)"


class FsyncPolicy(enum.StrEnum):
    """How durable a recorded event is when ``record`` returns; see the module docstring."""

    ALWAYS = "always"
    BATCH = "batch"
    OFF = "off"


#: Kinds that the batch policy commits at once: nothing is sent before its intent is durable, and
#: nothing acts on a fill before the fill is durable.
_COMMIT_AT_ONCE: Final = frozenset({"intent", "fill"})

_SYNCHRONOUS: Final = {FsyncPolicy.ALWAYS: "FULL", FsyncPolicy.BATCH: "NORMAL", FsyncPolicy.OFF: "OFF"}


class JournalError(Exception):
    """The journal cannot be opened or written (wrong file, newer schema, disk full)."""


def client_order_counter(client_order_id: str) -> int | None:
    """The counter at the end of a client order id ``<...>-<counter in base 36>``, or None.

    This is the shape :class:`botframe.orders.ClientOrderIds` makes (``-`` or ``_`` separator). A
    decimal counter read as base 36 comes out larger, never smaller, so ids still never repeat.
    """
    for sep in ("-", "_"):
        _head, found, tail = client_order_id.rpartition(sep)
        if found:
            if tail and tail.isascii() and tail.isalnum():
                return int(tail, 36)
            return None
    return None


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a restarted bot needs from the journal."""

    #: The last known state of each order that was not finished, oldest first (intents that were
    #: neither denied nor reported on show as ``NEW``). ``filled_quantity`` counts the journaled fills.
    open_orders: list[OrderUpdate]
    #: The intents of those open orders, by client order id (strategy, flags).
    intents: dict[str, OrderIntent]
    #: Every fill, once, in the order recorded.
    fills: list[Fill]
    #: The last trading state recorded, or None when it never changed.
    trading_state: TradingState | None
    #: The highest client order id counter seen (0 when none): continue counting after it.
    max_client_order_counter: int
    #: Rows read, fills recorded more than once (ignored), rows that could not be decoded (skipped).
    events: int = 0
    duplicate_fills: int = 0
    unreadable: int = 0
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)


class Journal:
    """The append-only journal file; see the module docstring for ``fsync``.

    ``batch_size`` bounds how many rows one transaction holds when ``flush`` is not called (a long
    tick). Not thread-safe: record, flush and close from one thread (the engine's event loop).
    """

    def __init__(self, path: str | Path, *, fsync: FsyncPolicy | str = FsyncPolicy.BATCH,
                 batch_size: int = 256) -> None:
        try:
            self.fsync = FsyncPolicy(fsync)
        except ValueError:
            raise JournalError(f"journal fsync must be 'always', 'batch' or 'off', not {fsync!r}") from None
        if batch_size < 1:
            raise JournalError(f"journal batch_size must be >= 1, got {batch_size}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a batch is one transaction.
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            self._db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.fsync]}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(f"{self.path} was written by a newer botframe (schema {version}, "
                                   f"this one reads {SCHEMA_VERSION}); use a new journal path or upgrade")
            self._db.execute(_SCHEMA)
            if version < SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from exc
        self._encoder = msgspec.msgpack.Encoder()
        self._commit_at_once = _COMMIT_AT_ONCE
        self._defer_intents = False
        # Intents held back while ``commit_intents_at_once`` is off: (kind, ts_ns, client order id, event).
        self._deferred: list[tuple[str, int, str, JournalEvent]] = []
        self._in_transaction = False
        self._uncommitted = 0
        self._closed = False
        #: Rows written and commits made since opening.
        self.written = 0
        self.commits = 0

    @property
    def commit_intents_at_once(self) -> bool:
        """Whether the ``batch`` policy writes and commits an intent as soon as it is recorded (default).

        The engine turns this off when its executor's orders never leave the process (paper): an
        intent is then held in memory and written, in its place in the sequence, just before the next
        row of any other kind, or on ``flush`` (the tick), so an order costs no SQLite work on its way
        out. Fills are committed at once either way, and every held intent with them.
        """
        return not self._defer_intents

    @commit_intents_at_once.setter
    def commit_intents_at_once(self, value: bool) -> None:
        if value and self._deferred:
            self._write_deferred()
        self._defer_intents = not value and self.fsync is FsyncPolicy.BATCH
        self._commit_at_once = _COMMIT_AT_ONCE if value else _COMMIT_AT_ONCE - {"intent"}

    # -- writing ------------------------------------------------------------------------------------

    def record(self, event: JournalEvent) -> None:
        """Append one event (synchronous and fast: no commit unless the policy asks for one)."""
        kind = _KIND_OF.get(type(event))
        if kind is None:
            raise TypeError(f"the journal does not record {type(event).__name__} events")
        if isinstance(event, OrderDenied):
            cid = event.intent.client_order_id
        elif isinstance(event, TradingStateChanged):
            cid = ""
        else:
            cid = event.client_order_id
        if self._defer_intents and kind == "intent":
            self._deferred.append((kind, event.ts_ns, cid, event))
            return
        if self._deferred:
            self._write_deferred()
        try:
            if not self._in_transaction:
                self._db.execute("BEGIN")
                self._in_transaction = True
            self._db.execute(_INSERT, (kind, event.ts_ns, cid, self._encoder.encode(event)))
        except sqlite3.Error as exc:
            _log.error("journal write failed", path=str(self.path), kind=kind, client_order_id=cid,
                       error=str(exc))
            raise JournalError(f"cannot write to the journal {self.path}: {exc}") from exc
        self.written += 1
        self._uncommitted += 1
        policy = self.fsync
        if (policy is FsyncPolicy.ALWAYS or self._uncommitted >= self.batch_size
                or (policy is FsyncPolicy.BATCH and kind in self._commit_at_once)):
            self.flush()

    def _write_deferred(self) -> None:
        """Write the held intents (in the order recorded) into the open transaction."""
        rows = self._deferred
        self._deferred = []
        encode = self._encoder.encode
        try:
            if not self._in_transaction:
                self._db.execute("BEGIN")
                self._in_transaction = True
            self._db.executemany(_INSERT, [(kind, ts, cid, encode(ev)) for kind, ts, cid, ev in rows])
        except sqlite3.Error as exc:
            _log.error("journal write failed", path=str(self.path), kind="intent", rows=len(rows),
                       client_order_id=rows[0][2], error=str(exc))
            raise JournalError(f"cannot write to the journal {self.path}: {exc}") from exc
        self.written += len(rows)
        self._uncommitted += len(rows)

    def flush(self) -> None:
        """Commit what was recorded since the last commit (the engine calls this once per tick)."""
        if self._deferred:
            self._write_deferred()
        if not self._in_transaction:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            _log.error("journal commit failed", path=str(self.path), rows=self._uncommitted, error=str(exc))
            raise JournalError(f"cannot commit to the journal {self.path}: {exc}") from exc
        self._in_transaction = False
        self._uncommitted = 0
        self.commits += 1

    def close(self) -> None:
        """Commit and close; closing twice is harmless."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------------

    def events(self) -> Iterator[JournalEvent]:
        """Every readable event in the order recorded (rows that cannot be decoded are logged, skipped)."""
        for _seq, _kind, event in self._rows():
            if event is not None:
                yield event

    def _rows(self) -> Iterator[tuple[int, str, JournalEvent | None]]:
        if self._deferred:
            self._write_deferred()  # what was recorded is read back, held or not
        cursor = self._db.execute("SELECT seq, kind, payload FROM journal ORDER BY seq")
        for seq, kind, payload in cursor:
            decoder = _DECODERS.get(kind)
            event: JournalEvent | None = None
            if decoder is None:
                _log.warning("journal row of an unknown kind skipped", path=str(self.path), seq=seq,
                             kind=kind)
            else:
                try:
                    event = decoder.decode(payload)
                except (msgspec.DecodeError, TypeError) as exc:
                    _log.warning("unreadable journal row skipped", path=str(self.path), seq=seq, kind=kind,
                                 error=str(exc))
            yield seq, kind, event

    def recover(self, counter_of: Callable[[str], int | None] = client_order_counter) -> Recovered:
        """Rebuild open orders, fills (once each), trading state and the id counter from the journal.

        ``counter_of`` reads the counter out of a client order id (default: :func:`client_order_counter`;
        pass ``ClientOrderIds.counter_of`` for ids of another shape).
        """
        latest: dict[str, OrderUpdate] = {}
        intents: dict[str, OrderIntent] = {}
        fills: list[Fill] = []
        fill_keys: set[object] = set()
        filled: dict[str, Decimal] = {}
        positions: dict[tuple[str, str], Decimal] = {}
        state: TradingState | None = None
        max_counter = 0
        rows = duplicates = unreadable = 0

        def count(cid: str) -> None:
            nonlocal max_counter
            n = counter_of(cid) if cid else None
            if n is not None and n > max_counter:
                max_counter = n

        for _seq, _kind, event in self._rows():
            rows += 1
            if event is None:
                unreadable += 1
            elif isinstance(event, OrderIntent):
                cid = event.client_order_id
                count(cid)
                intents[cid] = event
                latest.setdefault(cid, OrderUpdate(
                    client_order_id=cid, venue=event.venue, symbol=event.symbol, status=OrderStatus.NEW,
                    side=event.side, quantity=event.quantity, price=event.price, ts_ns=event.ts_ns))
            elif isinstance(event, OrderDenied):
                cid = event.intent.client_order_id
                count(cid)
                latest[cid] = OrderUpdate(
                    client_order_id=cid, venue=event.intent.venue, symbol=event.intent.symbol,
                    status=OrderStatus.REJECTED, side=event.intent.side, quantity=event.intent.quantity,
                    price=event.intent.price, reason=f"denied by {event.check}: {event.reason}",
                    ts_ns=event.ts_ns)
            elif isinstance(event, OrderUpdate):
                cid = event.client_order_id
                count(cid)
                previous = latest.get(cid)
                if previous is not None and previous.status.is_terminal:
                    continue  # a finished order stays finished (a late or repeated report)
                if previous is not None and previous.filled_quantity > event.filled_quantity:
                    event = msgspec.structs.replace(event, filled_quantity=previous.filled_quantity)
                latest[cid] = event
            elif isinstance(event, Fill):
                key: object = event.fill_id or (event.client_order_id, event.ts_ns, event.side, event.price,
                                               event.quantity)
                if key in fill_keys:
                    duplicates += 1
                    continue
                fill_keys.add(key)
                fills.append(event)
                cid = event.client_order_id
                filled[cid] = filled.get(cid, Decimal(0)) + event.quantity
                pk = (event.venue, event.symbol)
                positions[pk] = positions.get(pk, Decimal(0)) + event.side.sign * event.quantity
            else:
                state = event.state
        open_orders = []
        for cid, update in latest.items():
            if update.status.is_terminal:
                continue
            by_fills = filled.get(cid, Decimal(0))
            if by_fills > update.filled_quantity:
                update = msgspec.structs.replace(update, filled_quantity=by_fills)
            open_orders.append(update)
        if duplicates or unreadable:
            _log.warning("journal recovered with problems", path=str(self.path), duplicate_fills=duplicates,
                         unreadable=unreadable)
        return Recovered(
            open_orders=open_orders,
            intents={u.client_order_id: intents[u.client_order_id] for u in open_orders
                     if u.client_order_id in intents},
            fills=fills,
            trading_state=state,
            max_client_order_counter=max_counter,
            events=rows,
            duplicate_fills=duplicates,
            unreadable=unreadable,
            positions=positions,
        )
