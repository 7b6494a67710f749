"""The L2 order book of one (venue, symbol), its health state machine, and exchange checksums.

Storage (chosen by measurement, see ``benchmarks/book_apply.py``): each side is a ``dict`` from float
price to float size plus a sorted ``list`` of the same float objects. A delta level that changes the size
of an existing price costs one dict store; only a price that appears or disappears touches the sorted
list (``bisect``). Bids are keyed and kept ascending (best last); asks are keyed and kept by their
*negated* price, ascending (best last as well): the levels that come and go most often, near the touch,
sit at the end of each list where an insert or delete moves almost nothing, and the dict and the list
share one float per level (a 1000 + 1000-level book holds about 185 KB). Measured on 20 + 20-level
deltas against a 1000-level book, this pure-Python layout applies about 4.7 M level updates/s, against
1.5-2 M for ``sortedcontainers.SortedDict`` and 0.4-0.5 M for sorted ``numpy`` arrays: numpy does each
step in C, but a 20-level delta is too small to repay its dozen calls and the list-to-array conversion.

The per-level loop also exists in C (``botframe._bookext.apply_side``, built by ``pip install``): the
same dict and list, the same steps and float operations in the same order, about 6.9 M level updates/s.
It is used whenever it is built (``EXTENSION``; ``use_speedups`` switches, ``BOTFRAME_NO_EXTENSIONS=1``
turns it off); the Python loops below stay as the reference and the fallback, and the tests require the
two to leave identical books and bit-identical depth-band sums. Most of the C loop's time goes to float
hashing and dict probing, so a C-native side (sorted double arrays) would be the next step; it would
change what readers of ``_bid_prices``/``_bid_sizes`` see, so it is not taken yet.

``DepthTracker`` (``L2Book.track_depth(bps)``) keeps the quantity and notional within a bps band of mid
while deltas are applied: the book folds each level's size change into the band while the old size is
in hand, which is what makes the depth signals incremental (cost per delta level, not per band level).

Sizes are absolute; a size of 0 deletes; deleting an absent level is normal and does nothing. With a
``depth_limit`` (Kraken) each side is truncated to that many best levels after every snapshot and delta,
because the venue sends no deletes for levels that fall out of the subscribed depth.

Health (DESIGN.md "Book health"): ``CONNECTING -> SYNCING -> LIVE``, ``LIVE -> RESYNCING -> LIVE``.
The rules ``set_health`` applies, decided here and relied on by venue adapters:

* any state -> ``CONNECTING`` (disconnect, stop) and any state -> ``SYNCING`` (a fresh subscribe);
* ``SYNCING``/``RESYNCING`` -> ``LIVE`` (the book is in sync again);
* ``LIVE`` -> ``RESYNCING`` (gap, checksum mismatch, crossed book, stale feed, unparsable frame);
* a request to resync a book that is not ``LIVE`` is not a transition (it is already out of sync) but
  its reason is still counted; asking for the state the book is in is not a transition either;
* ``CONNECTING -> LIVE`` and ``CONNECTING -> RESYNCING`` cannot happen without a subscribe first:
  ``set_health`` raises ``ValueError`` for the former (an adapter bug) and ignores the latter.

Every transition returns the ``FeedStatus`` to publish; ``None`` means nothing changed.

Checksums hash the exchange's own text, never a float re-rendered (``4.8E-7`` is not ``0.00000048``).
The float book keeps no text; a venue adapter that needs checksums owns a ``WireText`` beside the
engine's book: it feeds the frame's ``(price_text, size_text)`` pairs to ``WireText.apply_*``, which
returns the float levels to put in the ``BookSnapshot``/``BookDelta`` and remembers the text of each
live price. After the engine has applied the event, ``kraken_book_checksum(book, text)`` (or the OKX /
Bitfinex variant) walks the book's top levels (sorted already) and hashes their stored text. Kraken v2,
whose frames carry JSON numbers, formats floats with the instrument's precision instead
(``kraken_book_checksum_from_precision``). The pure functions ``kraken_checksum``, ``okx_checksum`` and
``bitfinex_checksum`` take the levels' text directly. Bitfinex tells the side by the amount's sign and
deletes by count, so its adapter writes ``WireText.bids`` / ``WireText.asks`` (float price -> (price
text, amount text), ask amounts negative as sent) itself rather than through ``apply_delta_text``.

Sequence ids are the venue's own (``first_seq``/``last_seq``/``prev_seq`` of the last applied event, as
``BookDelta`` defines them); judging a gap is the adapter's job, since every venue defines it differently.
"""

from __future__ import annotations

import os
import zlib
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import mul
from types import ModuleType

from .events import BookDelta, BookHealth, BookSnapshot, FeedStatus, HealthReason, Level, Side

__all__ = [
    "BookCounters",
    "BookWalk",
    "DepthTracker",
    "L2Book",
    "WireText",
    "bitfinex_book_checksum",
    "bitfinex_checksum",
    "kraken_book_checksum",
    "kraken_book_checksum_from_precision",
    "kraken_checksum",
    "kraken_checksum_text",
    "okx_book_checksum",
    "okx_book_checksum_ok",
    "okx_checksum",
    "use_speedups",
]

TextLevel = tuple[str, str]
# (price, size change, level-count change) of one applied level, for depth trackers.
_Change = tuple[float, float, int]

#: Signature of ``botframe._bookext.apply_side``: (sizes, prices, levels, negate, band edges).
_ApplySide = Callable[
    [dict[float, float], list[float], Sequence[Level], bool, tuple[float, ...]], "tuple[float, ...] | None"
]


def _load_extension() -> ModuleType | None:
    """The C speedups module, or None when it was not built or ``BOTFRAME_NO_EXTENSIONS`` is set."""
    if os.environ.get("BOTFRAME_NO_EXTENSIONS"):
        return None
    try:
        from . import _bookext
    except ImportError:
        return None
    return _bookext


#: ``botframe._bookext`` when it was built and not turned off by ``BOTFRAME_NO_EXTENSIONS``, else None.
EXTENSION = _load_extension()
# The C loops in use (``use_speedups``); None selects the pure-Python code, which gives the same results.
_c_apply_side: _ApplySide | None = None
_c_exp_weighted: Callable[[Sequence[float], Sequence[float], float, float, bool], float] | None = None


def use_speedups(enabled: bool) -> bool:
    """Run the book's per-level loop and the bps-weighted sums in C (``enabled``) or in pure Python.

    Both give identical books and bit-identical signal values (the tests hold them to that); the C
    loops are the default whenever the extension is built. Returns whether C is now in use (False when
    asked for but not built). Benchmarks and tests switch with this; call it before building engines.
    """
    global _c_apply_side, _c_exp_weighted
    on = enabled and EXTENSION is not None
    _c_apply_side = EXTENSION.apply_side if on and EXTENSION is not None else None
    _c_exp_weighted = EXTENSION.exp_weighted if on and EXTENSION is not None else None
    return on


use_speedups(True)


@dataclass(slots=True)
class BookCounters:
    """What happened to one book, for the run summary and metrics.

    ``transitions`` counts health transitions by reason; ``gaps``/``checksum_failures``/``crossed``/
    ``stale``/``parse_errors`` count every report of that reason, including reports made while the book
    was already resyncing. ``not_live_ns`` is the time spent outside ``LIVE`` from the first health move on
    (closed stretches only; see ``L2Book.not_live_ns`` for the running figure).
    """

    snapshots: int = 0
    deltas: int = 0
    transitions: dict[HealthReason, int] = field(default_factory=dict)
    gaps: int = 0
    checksum_failures: int = 0
    crossed: int = 0
    stale: int = 0
    parse_errors: int = 0
    resyncs: int = 0
    not_live_ns: int = 0


@dataclass(frozen=True, slots=True)
class BookWalk:
    """The outcome of taking ``size`` from one side of the book (a market order's fill, estimated).

    ``slippage_bps`` compares the average price with the touch (best price of the walked side), in basis
    points, positive when the fill is worse than the touch. ``filled < requested`` when the side runs out.
    """

    requested: float
    filled: float
    notional: float
    average_price: float
    worst_price: float
    slippage_bps: float


class DepthTracker:
    """Quantity and notional resting within ``bps`` basis points of mid, kept current by the book.

    Bids count from mid down to ``lo = mid * (1 - bps / 1e4)`` and asks up to ``hi = mid * (1 + bps /
    1e4)``, both inclusive (the same edges as ``L2Book.depth_within_bps``). The book folds each applied
    level's size change into the band while it has the old size in hand, then moves the edges to the new
    mid, adding or removing only the levels the edges swept over (found by bisection). So a delta costs
    its own levels plus the swept ones, never the band's size. The sums are re-computed from the book
    once per many changes so float rounding cannot build up, and are exactly 0.0 when no level is in the
    band. ``valid`` is False while either side of the book is empty (there is no mid).
    """

    __slots__ = (
        "_mid",
        "_ops",
        "ask_levels",
        "ask_notional",
        "ask_qty",
        "bid_levels",
        "bid_notional",
        "bid_qty",
        "bps",
        "hi",
        "lo",
        "valid",
    )

    def __init__(self, bps: float) -> None:
        self.bps = bps
        self.lo = self.hi = 0.0
        self.bid_qty = self.bid_notional = self.ask_qty = self.ask_notional = 0.0
        self.bid_levels = self.ask_levels = 0
        self.valid = False
        self._ops = 0
        self._mid = 0.0  # mid the edges were last placed at

    def __repr__(self) -> str:
        return (
            f"DepthTracker({self.bps:g}bps, bids={self.bid_qty:g}/{self.bid_levels} levels, "
            f"asks={self.ask_qty:g}/{self.ask_levels} levels, valid={self.valid})"
        )

    def _rebuild(self, book: L2Book) -> None:
        bp = book._bid_prices
        ap = book._ask_prices
        self._ops = 0
        if not bp or not ap:
            self.valid = False
            self.bid_qty = self.bid_notional = self.ask_qty = self.ask_notional = 0.0
            self.bid_levels = self.ask_levels = 0
            return
        self.valid = True
        self._mid = mid = (bp[-1] - ap[-1]) * 0.5
        self.lo = lo = mid * (1.0 - self.bps * 1e-4)
        self.hi = hi = mid * (1.0 + self.bps * 1e-4)
        bids = bp[bisect_left(bp, lo) :]
        negs = ap[bisect_left(ap, -hi) :]  # negated ask prices
        bsz = list(map(book._bid_sizes.__getitem__, bids))
        asz = list(map(book._ask_sizes.__getitem__, negs))
        self.bid_levels = len(bids)
        self.ask_levels = len(negs)
        self.bid_qty = sum(bsz)
        self.bid_notional = sum(map(mul, bids, bsz))
        self.ask_qty = sum(asz)
        self.ask_notional = -sum(map(mul, negs, asz))

    def _fold(self, bid_changes: list[_Change], ask_changes: list[_Change]) -> None:
        """Add the size changes (price, size change, level count change) that fall inside the band.

        Ask changes carry the negated price, as the book keeps it.
        """
        lo = self.lo
        dq = dn = 0.0
        dc = 0
        for p, d, c in bid_changes:
            if p >= lo:
                dq += d
                dn += p * d
                dc += c
        self.bid_qty += dq
        self.bid_notional += dn
        self.bid_levels += dc
        neg_hi = -self.hi
        dq = dn = 0.0
        dc = 0
        for q, d, c in ask_changes:
            if q >= neg_hi:
                dq += d
                dn -= q * d
                dc += c
        self.ask_qty += dq
        self.ask_notional += dn
        self.ask_levels += dc

    def _shift(self, book: L2Book) -> None:
        """Move the edges to the book's new mid, sweeping levels in or out of the band."""
        bp = book._bid_prices
        ap = book._ask_prices
        if not self.valid or not bp or not ap:
            self._rebuild(book)
            return
        mid = (bp[-1] - ap[-1]) * 0.5
        if mid != self._mid:  # most events leave mid, and so both edges, where they were
            self._move_edges(book, mid)
        if self._ops > 16 * (self.bid_levels + self.ask_levels) + 1024:
            self._rebuild(book)
            return
        if not self.bid_levels:
            self.bid_qty = self.bid_notional = 0.0
        if not self.ask_levels:
            self.ask_qty = self.ask_notional = 0.0

    def _move_edges(self, book: L2Book, mid: float) -> None:
        """Place the edges around ``mid``, adding or removing the levels they swept over."""
        bp = book._bid_prices
        ap = book._ask_prices
        self._mid = mid
        lo = self.lo
        new_lo = mid * (1.0 - self.bps * 1e-4)
        if new_lo != lo:
            if new_lo > lo:  # bids in [lo, new_lo) leave the band
                swept = bp[bisect_left(bp, lo) : bisect_left(bp, new_lo)]
                sign = -1.0
            else:  # bids in [new_lo, lo) enter it
                swept = bp[bisect_left(bp, new_lo) : bisect_left(bp, lo)]
                sign = 1.0
            if swept:
                sz = list(map(book._bid_sizes.__getitem__, swept))
                self.bid_qty += sign * sum(sz)
                self.bid_notional += sign * sum(map(mul, swept, sz))
                self.bid_levels += int(sign) * len(swept)
                self._ops += len(swept)
            self.lo = new_lo
        hi = self.hi
        new_hi = mid * (1.0 + self.bps * 1e-4)
        if new_hi != hi:
            if new_hi < hi:  # asks in (new_hi, hi] leave: negated, [-hi, -new_hi)
                swept = ap[bisect_left(ap, -hi) : bisect_left(ap, -new_hi)]
                sign = -1.0
            else:  # asks in (hi, new_hi] enter
                swept = ap[bisect_left(ap, -new_hi) : bisect_left(ap, -hi)]
                sign = 1.0
            if swept:
                sz = list(map(book._ask_sizes.__getitem__, swept))
                self.ask_qty += sign * sum(sz)
                self.ask_notional -= sign * sum(map(mul, swept, sz))
                self.ask_levels += int(sign) * len(swept)
                self._ops += len(swept)
            self.hi = new_hi


class L2Book:
    """An aggregated (L2) order book of one venue and symbol, with its sequence ids and health.

    Read it freely; change it only through ``apply_snapshot`` / ``apply_delta`` / ``clear`` (the engine
    does that when a venue publishes book events) and ``set_health``.
    """

    __slots__ = (
        "_ask_prices",
        "_ask_sizes",
        "_bid_prices",
        "_bid_sizes",
        "_health",
        "_health_since_ns",
        "_one_tracker",
        "_trackers",
        "counters",
        "depth_limit",
        "exchange_ts_ns",
        "first_seq",
        "generation",
        "last_seq",
        "prev_seq",
        "receive_ts_ns",
        "symbol",
        "venue",
    )

    def __init__(self, venue: str, symbol: str, *, depth_limit: int | None = None) -> None:
        if depth_limit is not None and depth_limit < 1:
            raise ValueError(f"depth_limit must be >= 1 or None, got {depth_limit}")
        self.venue = venue
        self.symbol = symbol
        self.depth_limit = depth_limit
        self._bid_sizes: dict[float, float] = {}
        self._bid_prices: list[float] = []  # ascending: best bid last
        # Asks are keyed and sorted by their NEGATED price, so the dict and the list share one float per
        # level (a second, negated copy of every ask price would cost 24 KB per 1000 levels).
        self._ask_sizes: dict[float, float] = {}  # -price -> size
        self._ask_prices: list[float] = []  # -price, ascending: best ask last
        #: Exchange sequence ids of the last applied event (0 where the venue has none).
        self.first_seq = 0
        self.last_seq = 0
        self.prev_seq = 0
        self.exchange_ts_ns = 0
        self.receive_ts_ns = 0
        self._health = BookHealth.CONNECTING
        self._health_since_ns: int | None = None
        self.counters = BookCounters()
        #: Bumped when the book is replaced or cleared, so readers that keep derived state know to rebuild.
        self.generation = 0
        self._trackers: dict[float, DepthTracker] = {}
        self._one_tracker: DepthTracker | None = None  # the tracker when there is exactly one

    def __repr__(self) -> str:
        return (
            f"L2Book({self.venue!r}, {self.symbol!r}, bids={len(self._bid_sizes)}, "
            f"asks={len(self._ask_sizes)}, best={self.best_bid()}/{self.best_ask()}, {self._health.value})"
        )

    # ------------------------------------------------------------------ changes

    def apply_snapshot(self, snap: BookSnapshot) -> None:
        """Replace the whole book with ``snap``: as if emptied, then each level applied in order."""
        bids = {p: s for p, s in dict(snap.bids).items() if s}
        asks = {-p: s for p, s in dict(snap.asks).items() if s}
        self._bid_sizes = bids
        self._bid_prices = sorted(bids)
        self._ask_sizes = asks
        self._ask_prices = sorted(asks)
        if self.depth_limit is not None:
            self._truncate(self.depth_limit)
        self.first_seq = self.last_seq = snap.sequence
        self.prev_seq = 0
        self.exchange_ts_ns = snap.exchange_ts_ns
        self.receive_ts_ns = snap.receive_ts_ns
        self.counters.snapshots += 1
        self.generation += 1
        for t in self._trackers.values():
            t._rebuild(self)

    def apply_delta(self, delta: BookDelta) -> None:
        """Set the absolute size of every level in ``delta``, in list order; size 0 deletes."""
        c_apply = _c_apply_side
        if c_apply is not None:
            if self._trackers:
                self._apply_tracked_c(delta, c_apply)
            else:
                c_apply(self._bid_sizes, self._bid_prices, delta.bids, False, ())
                c_apply(self._ask_sizes, self._ask_prices, delta.asks, True, ())
                if self.depth_limit is not None:
                    self._truncate(self.depth_limit)
        elif self._trackers:
            one = self._one_tracker
            if one is not None and one.valid:
                self._apply_one_tracker(delta, one)
            else:
                self._apply_tracked(delta)
        else:
            # One loop per side, written out: a per-level method call would cost more than the work.
            levels = delta.bids
            if levels:
                sizes = self._bid_sizes
                prices = self._bid_prices
                for p, s in levels:
                    if s:
                        if p not in sizes:
                            insort(prices, p)
                        sizes[p] = s
                    elif p in sizes:
                        del sizes[p]
                        del prices[bisect_left(prices, p)]
            levels = delta.asks
            if levels:
                sizes = self._ask_sizes
                prices = self._ask_prices
                for p, s in levels:
                    q = -p
                    if s:
                        if q not in sizes:
                            insort(prices, q)
                        sizes[q] = s
                    elif q in sizes:
                        del sizes[q]
                        del prices[bisect_left(prices, q)]
            if self.depth_limit is not None:
                self._truncate(self.depth_limit)
        self.first_seq = delta.first_seq
        self.last_seq = delta.last_seq
        self.prev_seq = delta.prev_seq
        self.exchange_ts_ns = delta.exchange_ts_ns
        self.receive_ts_ns = delta.receive_ts_ns
        self.counters.deltas += 1

    def _apply_tracked_c(self, delta: BookDelta, c_apply: _ApplySide) -> None:
        """``apply_delta`` with depth trackers, the per-level loop in C (``botframe._bookext``).

        The same arithmetic in the same order as ``_apply_one_tracker`` / ``_apply_tracked``: the band
        sums come out bit-identical to the pure-Python path's.
        """
        one = self._one_tracker
        n = len(delta.bids) + len(delta.asks)
        if one is not None and one.valid:
            rb = c_apply(self._bid_sizes, self._bid_prices, delta.bids, False, (one.lo,))
            ra = c_apply(self._ask_sizes, self._ask_prices, delta.asks, True, (-one.hi,))
            assert rb is not None and ra is not None
            one.bid_qty += rb[0]
            one.bid_notional += rb[1]
            one.bid_levels += int(rb[2])
            one.ask_qty += ra[0]
            one.ask_notional += ra[1]
            one.ask_levels += int(ra[2])
            one._ops += n
            if self.depth_limit is not None:
                self._truncate(self.depth_limit)
            one._shift(self)
            return
        trackers = list(self._trackers.values())
        live = [t for t in trackers if t.valid]
        if len(live) > 16:  # the C loop takes at most 16 bands
            self._apply_tracked(delta)
            return
        rb = c_apply(self._bid_sizes, self._bid_prices, delta.bids, False, tuple(t.lo for t in live))
        ra = c_apply(self._ask_sizes, self._ask_prices, delta.asks, True, tuple(-t.hi for t in live))
        if rb is not None and ra is not None:
            for i, t in enumerate(live):
                j = 3 * i
                t.bid_qty += rb[j]
                t.bid_notional += rb[j + 1]
                t.bid_levels += int(rb[j + 2])
                t.ask_qty += ra[j]
                t.ask_notional += ra[j + 1]
                t.ask_levels += int(ra[j + 2])
                t._ops += n
        if self.depth_limit is not None:
            self._truncate(self.depth_limit)
        for t in trackers:
            t._shift(self)

    def _apply_tracked(self, delta: BookDelta) -> None:
        """``apply_delta`` that also keeps every ``DepthTracker`` current from the sizes it replaces.

        Each level inside a band (judged against the band's edges before the delta) adds its size change
        to that band; afterwards each tracker moves its edges to the new mid (``DepthTracker._shift``).
        """
        trackers = list(self._trackers.values())
        live = [t for t in trackers if t.valid]
        # Band edges as of before the delta; a side outside every band compares against +-inf.
        inf = float("inf")
        lo = min((t.lo for t in live), default=inf)
        neg_hi = -max((t.hi for t in live), default=-inf)
        bid_changes: list[_Change] = []
        ask_changes: list[_Change] = []
        levels = delta.bids
        if levels:
            sizes = self._bid_sizes
            prices = self._bid_prices
            get = sizes.get
            for p, s in levels:
                old = get(p)
                if s:
                    if old is None:
                        insort(prices, p)
                        if p >= lo:
                            bid_changes.append((p, s, 1))
                    elif p >= lo:
                        bid_changes.append((p, s - old, 0))
                    sizes[p] = s
                elif old is not None:
                    del sizes[p]
                    del prices[bisect_left(prices, p)]
                    if p >= lo:
                        bid_changes.append((p, -old, -1))
        levels = delta.asks
        if levels:
            sizes = self._ask_sizes
            prices = self._ask_prices
            get = sizes.get
            for p, s in levels:
                q = -p
                old = get(q)
                if s:
                    if old is None:
                        insort(prices, q)
                        if q >= neg_hi:
                            ask_changes.append((q, s, 1))
                    elif q >= neg_hi:
                        ask_changes.append((q, s - old, 0))
                    sizes[q] = s
                elif old is not None:
                    del sizes[q]
                    del prices[bisect_left(prices, q)]
                    if q >= neg_hi:
                        ask_changes.append((q, -old, -1))
        n = len(delta.bids) + len(delta.asks)
        for t in live:
            t._fold(bid_changes, ask_changes)
            t._ops += n
        if self.depth_limit is not None:
            self._truncate(self.depth_limit)
        for t in trackers:
            t._shift(self)

    def _apply_one_tracker(self, delta: BookDelta, t: DepthTracker) -> None:
        """``_apply_tracked`` for the common case of a single valid band, with the band sums inline."""
        lo = t.lo
        dq = dn = 0.0
        dc = 0
        levels = delta.bids
        if levels:
            sizes = self._bid_sizes
            prices = self._bid_prices
            get = sizes.get
            for p, s in levels:
                old = get(p)
                if s:
                    sizes[p] = s
                    if old is None:
                        insort(prices, p)
                        if p >= lo:
                            dq += s
                            dn += p * s
                            dc += 1
                    elif p >= lo:
                        d = s - old
                        dq += d
                        dn += p * d
                elif old is not None:
                    del sizes[p]
                    del prices[bisect_left(prices, p)]
                    if p >= lo:
                        dq -= old
                        dn -= p * old
                        dc -= 1
            t.bid_qty += dq
            t.bid_notional += dn
            t.bid_levels += dc
        neg_hi = -t.hi
        dq = dn = 0.0
        dc = 0
        levels = delta.asks
        if levels:
            sizes = self._ask_sizes
            prices = self._ask_prices
            get = sizes.get
            for p, s in levels:
                q = -p
                old = get(q)
                if s:
                    sizes[q] = s
                    if old is None:
                        insort(prices, q)
                        if q >= neg_hi:
                            dq += s
                            dn += p * s
                            dc += 1
                    elif q >= neg_hi:
                        d = s - old
                        dq += d
                        dn += p * d
                elif old is not None:
                    del sizes[q]
                    del prices[bisect_left(prices, q)]
                    if q >= neg_hi:
                        dq -= old
                        dn -= p * old
                        dc -= 1
            t.ask_qty += dq
            t.ask_notional += dn
            t.ask_levels += dc
        t._ops += len(delta.bids) + len(delta.asks)
        if self.depth_limit is not None:
            self._truncate(self.depth_limit)
        t._shift(self)

    def clear(self) -> None:
        """Empty both sides and forget the sequence ids (health is left to ``set_health``)."""
        self._bid_sizes = {}
        self._bid_prices = []
        self._ask_sizes = {}
        self._ask_prices = []
        self.first_seq = self.last_seq = self.prev_seq = 0
        self.generation += 1
        for t in self._trackers.values():
            t._rebuild(self)

    def _truncate(self, depth: int) -> None:
        cut = False
        prices = self._bid_prices
        extra = len(prices) - depth
        if extra > 0:
            sizes = self._bid_sizes
            for p in prices[:extra]:
                del sizes[p]
            del prices[:extra]
            cut = True
        prices = self._ask_prices
        extra = len(prices) - depth
        if extra > 0:
            sizes = self._ask_sizes
            for q in prices[:extra]:
                del sizes[q]
            del prices[:extra]
            cut = True
        if cut:
            # Rare and on shallow books only (Kraken depth): recompute bands rather than track the cut.
            for t in self._trackers.values():
                t._rebuild(self)

    # ------------------------------------------------------------------ reads

    @property
    def bid_count(self) -> int:
        """Number of bid levels."""
        return len(self._bid_prices)

    @property
    def ask_count(self) -> int:
        """Number of ask levels."""
        return len(self._ask_prices)

    def best_bid(self) -> Level | None:
        """(price, size) of the highest bid, or None when there are no bids."""
        prices = self._bid_prices
        if not prices:
            return None
        p = prices[-1]
        return (p, self._bid_sizes[p])

    def best_ask(self) -> Level | None:
        """(price, size) of the lowest ask, or None when there are no asks."""
        prices = self._ask_prices
        if not prices:
            return None
        q = prices[-1]
        return (-q, self._ask_sizes[q])

    def best_bid_price(self) -> float | None:
        """Highest bid price, or None."""
        prices = self._bid_prices
        return prices[-1] if prices else None

    def best_ask_price(self) -> float | None:
        """Lowest ask price, or None."""
        prices = self._ask_prices
        return -prices[-1] if prices else None

    def mid(self) -> float | None:
        """(best bid + best ask) / 2, or None when a side is empty."""
        b = self._bid_prices
        a = self._ask_prices
        if not b or not a:
            return None
        return (b[-1] - a[-1]) * 0.5

    def spread(self) -> float | None:
        """best ask - best bid (negative when crossed), or None when a side is empty."""
        b = self._bid_prices
        a = self._ask_prices
        if not b or not a:
            return None
        return -a[-1] - b[-1]

    def is_crossed(self) -> bool:
        """True when the best bid is at or above the best ask (a locked book counts as crossed)."""
        b = self._bid_prices
        a = self._ask_prices
        return bool(b and a and b[-1] >= -a[-1])

    def bids(self, n: int | None = None) -> list[Level]:
        """The best ``n`` bids (all when None), best first."""
        prices = self._bid_prices
        top = prices[::-1] if n is None else prices[: -n - 1 : -1] if n > 0 else []
        sizes = self._bid_sizes
        return [(p, sizes[p]) for p in top]

    def asks(self, n: int | None = None) -> list[Level]:
        """The best ``n`` asks (all when None), best first."""
        prices = self._ask_prices
        top = prices[::-1] if n is None else prices[: -n - 1 : -1] if n > 0 else []
        sizes = self._ask_sizes
        return [(-q, sizes[q]) for q in top]

    def size_at(self, side: Side, price: float) -> float:
        """Size resting at ``price`` on the bid (BUY) or ask (SELL) side; 0 when there is none."""
        if side is Side.BUY:
            return self._bid_sizes.get(price, 0.0)
        return self._ask_sizes.get(-price, 0.0)

    def cumulative_depth(self, side: Side, n: int) -> list[Level]:
        """(price, size summed from the touch down to that price) for the best ``n`` levels of a side.

        ``side`` names the resting side: ``Side.BUY`` for bids, ``Side.SELL`` for asks.
        """
        levels = self.bids(n) if side is Side.BUY else self.asks(n)
        out: list[Level] = []
        total = 0.0
        for p, s in levels:
            total += s
            out.append((p, total))
        return out

    def depth_within_bps(self, side: Side, bps: float) -> tuple[float, float]:
        """(quantity, notional) resting on a side within ``bps`` basis points of mid, inclusive.

        Bids count from mid down to ``mid * (1 - bps/1e4)``, asks from mid up to ``mid * (1 + bps/1e4)``.
        Returns (0.0, 0.0) when either side is empty (there is no mid). Cost: the levels inside the band.
        """
        b = self._bid_prices
        a = self._ask_prices
        if not b or not a:
            return (0.0, 0.0)
        mid = (b[-1] - a[-1]) * 0.5
        if side is Side.BUY:
            lo = mid * (1.0 - bps * 1e-4)
            sizes = self._bid_sizes
            band = b[bisect_left(b, lo) :]
            qty = 0.0
            notional = 0.0
            for p in band:
                s = sizes[p]
                qty += s
                notional += p * s
            return (qty, notional)
        hi = mid * (1.0 + bps * 1e-4)
        sizes = self._ask_sizes
        band = a[bisect_left(a, -hi) :]
        qty = 0.0
        notional = 0.0
        for q in band:
            s = sizes[q]
            qty += s
            notional -= q * s
        return (qty, notional)

    def track_depth(self, bps: float) -> DepthTracker:
        """A ``DepthTracker`` of the band ``bps`` around mid, kept current by every change to the book.

        Trackers of the same ``bps`` are shared. While any tracker exists, ``apply_delta`` takes a path
        that reads each level's old size (about a third slower); ``untrack_depth`` removes a tracker.
        """
        if not bps > 0.0:
            raise ValueError(f"bps must be > 0, got {bps}")
        t = self._trackers.get(bps)
        if t is None:
            t = self._trackers[bps] = DepthTracker(bps)
            t._rebuild(self)
            self._one_tracker = t if len(self._trackers) == 1 else None
        return t

    def untrack_depth(self, bps: float) -> None:
        """Stop keeping the band ``bps`` (no-op when it is not tracked)."""
        self._trackers.pop(bps, None)
        self._one_tracker = next(iter(self._trackers.values())) if len(self._trackers) == 1 else None

    def walk(self, side: Side, size: float) -> BookWalk | None:
        """Estimate a market order of ``size`` taking liquidity: ``Side.BUY`` walks the asks.

        Returns None when the walked side is empty or ``size`` is not positive.
        """
        if size <= 0.0:
            return None
        if side is Side.BUY:
            prices = self._ask_prices
            sizes = self._ask_sizes
            sign = -1.0
        else:
            prices = self._bid_prices
            sizes = self._bid_sizes
            sign = 1.0
        if not prices:
            return None
        touch = sign * prices[-1]
        left = size
        notional = 0.0
        worst = touch
        for i in range(len(prices) - 1, -1, -1):
            key = prices[i]
            p = sign * key
            s = sizes[key]
            take = s if s < left else left
            notional += take * p
            left -= take
            worst = p
            if left <= 0.0:
                left = 0.0
                break
        filled = size - left
        avg = notional / filled
        slip = (avg - touch) / touch * 1e4 if side is Side.BUY else (touch - avg) / touch * 1e4
        return BookWalk(size, filled, notional, avg, worst, slip)

    def average_fill_price(self, side: Side, size: float) -> float | None:
        """Average price of taking ``size`` (``Side.BUY`` walks asks); None if the side cannot fill it."""
        w = self.walk(side, size)
        if w is None or w.filled < size:
            return None
        return w.average_price

    def slippage_bps(self, side: Side, size: float) -> float | None:
        """Slippage in bps versus the touch of taking ``size``; None if the side cannot fill it."""
        w = self.walk(side, size)
        if w is None or w.filled < size:
            return None
        return w.slippage_bps

    # ------------------------------------------------------------------ health

    @property
    def health(self) -> BookHealth:
        """Where the book is in its life: CONNECTING, SYNCING, LIVE or RESYNCING."""
        return self._health

    @property
    def is_live(self) -> bool:
        """True when strategies may trust the book."""
        return self._health is BookHealth.LIVE

    def is_stale(self, now_ns: int, max_age_ns: int) -> bool:
        """True when the last applied event was received ``max_age_ns`` or more before ``now_ns``.

        Feeds the stale-feed watchdog: a venue calls ``set_health(RESYNCING, HealthReason.STALE, ...)``.
        A book that has never received an event is not stale (it is not live either).
        """
        return self.receive_ts_ns > 0 and now_ns - self.receive_ts_ns >= max_age_ns

    def not_live_ns(self, now_ns: int) -> int:
        """Total time outside LIVE up to ``now_ns``, the current interval included."""
        total = self.counters.not_live_ns
        since = self._health_since_ns
        if self._health is not BookHealth.LIVE and since is not None and now_ns > since:
            total += now_ns - since
        return total

    def set_health(
        self, health: BookHealth, reason: HealthReason, ts_ns: int, detail: str = ""
    ) -> FeedStatus | None:
        """Move the book's health; returns the ``FeedStatus`` to publish, or None when nothing changed.

        See the module docstring for the legal moves. Reasons are counted even when no move happens.
        """
        c = self.counters
        if reason is HealthReason.GAP:
            c.gaps += 1
        elif reason is HealthReason.CHECKSUM:
            c.checksum_failures += 1
        elif reason is HealthReason.CROSSED:
            c.crossed += 1
        elif reason is HealthReason.STALE:
            c.stale += 1
        elif reason is HealthReason.PARSE_ERROR:
            c.parse_errors += 1
        previous = self._health
        if health is previous:
            return None
        if health is BookHealth.LIVE and previous is BookHealth.CONNECTING:
            raise ValueError(
                f"{self.venue} {self.symbol}: CONNECTING -> LIVE skips SYNCING; set SYNCING when subscribed"
            )
        if health is BookHealth.RESYNCING:
            if previous is not BookHealth.LIVE:
                return None
            c.resyncs += 1
        # _health_since_ns marks the start of the current stretch outside LIVE (None before the first
        # move), so CONNECTING -> SYNCING -> LIVE counts the whole stretch, not only its last state.
        if health is BookHealth.LIVE:
            since = self._health_since_ns
            if since is not None and ts_ns > since:
                c.not_live_ns += ts_ns - since
            self._health_since_ns = None
        elif previous is BookHealth.LIVE or self._health_since_ns is None:
            self._health_since_ns = ts_ns
        self._health = health
        c.transitions[reason] = c.transitions.get(reason, 0) + 1
        return FeedStatus(
            venue=self.venue,
            symbol=self.symbol,
            previous=previous,
            health=health,
            reason=reason,
            detail=detail,
            ts_ns=ts_ns,
        )


# ---------------------------------------------------------------------- wire text for checksums


class WireText:
    """The exchange's own text of each live level of one book, for checksum venues.

    A venue adapter owns one per book. ``apply_snapshot_text`` / ``apply_delta_text`` take the frame's
    ``(price_text, size_text)`` pairs of each side, remember or forget the text by float price (a size
    that parses to 0 deletes), and return the float levels for the ``BookSnapshot`` / ``BookDelta``.
    Texts of levels that the book later truncates (Kraken depth) linger harmlessly until ``prune``:
    a checksum only looks up prices that are in the book, and a price can only come back with new text.
    """

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: dict[float, TextLevel] = {}
        self.asks: dict[float, TextLevel] = {}

    def clear(self) -> None:
        """Forget every level (on resync)."""
        self.bids = {}
        self.asks = {}

    def apply_snapshot_text(
        self, bids: Iterable[TextLevel], asks: Iterable[TextLevel]
    ) -> tuple[list[Level], list[Level]]:
        """Replace all text with a snapshot's; returns (bids, asks) as float levels."""
        self.bids = {}
        self.asks = {}
        return self.apply_delta_text(bids, asks)

    def apply_delta_text(
        self, bids: Iterable[TextLevel], asks: Iterable[TextLevel]
    ) -> tuple[list[Level], list[Level]]:
        """Apply a delta's text; returns (bids, asks) as float levels in the same order.

        Raises ``ValueError`` when a text is not a number (the adapter counts it as a parse error).
        """
        return (_apply_text(self.bids, bids), _apply_text(self.asks, asks))

    def prune(self, book: L2Book) -> None:
        """Drop texts of prices the book no longer holds (call after Kraken truncation, now and then)."""
        bid_sizes = book._bid_sizes
        ask_sizes = book._ask_sizes
        self.bids = {p: t for p, t in self.bids.items() if p in bid_sizes}
        self.asks = {p: t for p, t in self.asks.items() if -p in ask_sizes}


def _apply_text(store: dict[float, TextLevel], levels: Iterable[TextLevel]) -> list[Level]:
    out: list[Level] = []
    for pt, st in levels:
        p = float(pt)
        s = float(st)
        if s:
            store[p] = (pt, st)
        else:
            store.pop(p, None)
        out.append((p, s))
    return out


def _top_text(book: L2Book, text: WireText, n: int) -> tuple[list[TextLevel], list[TextLevel]]:
    bp = book._bid_prices
    ap = book._ask_prices
    bt = text.bids
    at = text.asks
    bids = [bt[p] for p in bp[: -n - 1 : -1]]
    asks = [at[-q] for q in ap[: -n - 1 : -1]]
    return bids, asks


# ---------------------------------------------------------------------- checksums


def _signed32(crc: int) -> int:
    return crc - 0x100000000 if crc >= 0x80000000 else crc


def kraken_checksum_text(text: str) -> str:
    """One Kraken number as the checksum wants it: ``"."`` removed, leading zeros stripped."""
    return text.replace(".", "").lstrip("0")


def kraken_checksum(asks: Sequence[TextLevel], bids: Sequence[TextLevel]) -> int:
    """Kraken book checksum (WS v1 and v2): unsigned CRC32 over the top 10 asks then top 10 bids.

    ``asks`` best first (ascending), ``bids`` best first (descending), each ``(price_text, size_text)``
    exactly as on the wire (v1) or formatted with the instrument's precision (v2). Only the first 10 of
    each are used.
    """
    parts = [kraken_checksum_text(p) + kraken_checksum_text(s) for p, s in asks[:10]]
    parts += [kraken_checksum_text(p) + kraken_checksum_text(s) for p, s in bids[:10]]
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


def okx_checksum(bids: Sequence[TextLevel], asks: Sequence[TextLevel]) -> int:
    """OKX v5 ``books`` checksum: signed CRC32 over interleaved top-25 ``price:size`` original strings.

    Order is bid 1, ask 1, bid 2, ask 2, ...; when one side is shorter the other just continues.
    (OKX sends 0 when it no longer computes the checksum; the caller treats 0 as absent.)
    """
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            p, s = bids[i]
            parts.append(f"{p}:{s}")
        if i < len(asks):
            p, s = asks[i]
            parts.append(f"{p}:{s}")
    return _signed32(zlib.crc32(":".join(parts).encode()))


def bitfinex_checksum(bids: Sequence[TextLevel], asks: Sequence[TextLevel]) -> int:
    """Bitfinex v2 ``book`` checksum: signed CRC32 over interleaved top-25 ``price:amount`` texts.

    ``asks`` amounts are the wire's negative amounts (``"-0.5"``). Texts must be as Bitfinex rendered
    them (JS ``Number.toString``: ``1e-8``), so parse the frame with ``parse_float=str``.
    """
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            p, s = bids[i]
            parts.append(p)
            parts.append(s)
        if i < len(asks):
            p, s = asks[i]
            parts.append(p)
            parts.append(s)
    return _signed32(zlib.crc32(":".join(parts).encode()))


def kraken_book_checksum(book: L2Book, text: WireText) -> int:
    """Kraken checksum of ``book``'s top 10 levels per side, hashed from ``text`` (WS v1)."""
    bids, asks = _top_text(book, text, 10)
    return kraken_checksum(asks, bids)


def kraken_book_checksum_from_precision(book: L2Book, price_decimals: int, qty_decimals: int) -> int:
    """Kraken checksum of ``book`` with numbers formatted by the instrument's precision (WS v2).

    ``price_decimals``/``qty_decimals`` are the ``instrument`` channel's ``price_precision`` and
    ``qty_precision`` (v1: ``pair_decimals`` and ``lot_decimals``). Fixed-point formatting of the float
    gives the exchange's digits back (``4.8e-07`` -> ``"0.00000048"``) for any realistic precision.
    """
    pf = f"{{:.{price_decimals}f}}".format
    qf = f"{{:.{qty_decimals}f}}".format
    asks = [(pf(p), qf(s)) for p, s in book.asks(10)]
    bids = [(pf(p), qf(s)) for p, s in book.bids(10)]
    return kraken_checksum(asks, bids)


def okx_book_checksum(book: L2Book, text: WireText) -> int:
    """OKX checksum of ``book``'s top 25 levels per side, hashed from ``text``."""
    bids, asks = _top_text(book, text, 25)
    return okx_checksum(bids, asks)


def okx_book_checksum_ok(book: L2Book, text: WireText, expected: int) -> bool | None:
    """Whether ``book`` matches OKX's ``checksum``; None when OKX sent 0, which means "not computed".

    From 23 June 2026 OKX sends 0 in every ``books`` checksum (SPECS.md); then only ``seqId`` /
    ``prevSeqId`` guard the book.
    """
    if expected == 0:
        return None
    return okx_book_checksum(book, text) == expected


def bitfinex_book_checksum(book: L2Book, text: WireText) -> int:
    """Bitfinex checksum of ``book``'s top 25 levels per side, hashed from ``text``.

    The ask texts must hold the wire's negative amounts (the float book keeps positive ask sizes).
    """
    bids, asks = _top_text(book, text, 25)
    return bitfinex_checksum(bids, asks)
