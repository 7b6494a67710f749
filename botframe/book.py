"""The L2 order book of one (venue, symbol), its health state machine, and exchange checksums.

Storage (chosen by measurement, see ``benchmarks/book_apply.py``): each side is a ``dict`` from float
price to float size plus a sorted ``list`` of the same price objects. A delta level that changes the size
of an existing price costs one dict store; only a price that appears or disappears touches the sorted
list (``bisect``). Bids are kept ascending (best last) and asks are kept as *negated* prices ascending
(best last as well), so the levels that come and go most often, near the touch, sit at the end of each
list where an insert or delete moves almost nothing.

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
``bitfinex_checksum`` take the levels' text directly.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .events import BookDelta, BookHealth, BookSnapshot, FeedStatus, HealthReason, Level, Side

__all__ = [
    "BookCounters",
    "BookWalk",
    "L2Book",
    "WireText",
    "bitfinex_book_checksum",
    "bitfinex_checksum",
    "kraken_book_checksum",
    "kraken_book_checksum_from_precision",
    "kraken_checksum",
    "kraken_checksum_text",
    "okx_book_checksum",
    "okx_checksum",
]

TextLevel = tuple[str, str]


@dataclass(slots=True)
class BookCounters:
    """What happened to one book, for the run summary and metrics.

    ``transitions`` counts health transitions by reason; ``gaps``/``checksum_failures``/``crossed``/
    ``stale``/``parse_errors`` count every report of that reason, including reports made while the book
    was already resyncing. ``not_live_ns`` is the time spent outside ``LIVE`` (closed intervals only; see
    ``L2Book.not_live_ns`` for the running figure).
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
        "counters",
        "depth_limit",
        "exchange_ts_ns",
        "first_seq",
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
        self._ask_sizes: dict[float, float] = {}
        self._ask_prices: list[float] = []  # negated prices, ascending: best ask last
        #: Exchange sequence ids of the last applied event (0 where the venue has none).
        self.first_seq = 0
        self.last_seq = 0
        self.prev_seq = 0
        self.exchange_ts_ns = 0
        self.receive_ts_ns = 0
        self._health = BookHealth.CONNECTING
        self._health_since_ns = 0
        self.counters = BookCounters()

    def __repr__(self) -> str:
        return (
            f"L2Book({self.venue!r}, {self.symbol!r}, bids={len(self._bid_sizes)}, "
            f"asks={len(self._ask_sizes)}, best={self.best_bid()}/{self.best_ask()}, {self._health.value})"
        )

    # ------------------------------------------------------------------ changes

    def apply_snapshot(self, snap: BookSnapshot) -> None:
        """Replace the whole book with ``snap`` (levels with size 0 are ignored)."""
        bids = {p: s for p, s in snap.bids if s}
        asks = {p: s for p, s in snap.asks if s}
        self._bid_sizes = bids
        self._bid_prices = sorted(bids)
        self._ask_sizes = asks
        self._ask_prices = sorted(-p for p in asks)
        if self.depth_limit is not None:
            self._truncate(self.depth_limit)
        self.first_seq = self.last_seq = snap.sequence
        self.prev_seq = 0
        self.exchange_ts_ns = snap.exchange_ts_ns
        self.receive_ts_ns = snap.receive_ts_ns
        self.counters.snapshots += 1

    def apply_delta(self, delta: BookDelta) -> None:
        """Set the absolute size of every level in ``delta``, in list order; size 0 deletes."""
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
                if s:
                    if p not in sizes:
                        insort(prices, -p)
                    sizes[p] = s
                elif p in sizes:
                    del sizes[p]
                    del prices[bisect_left(prices, -p)]
        if self.depth_limit is not None:
            self._truncate(self.depth_limit)
        self.first_seq = delta.first_seq
        self.last_seq = delta.last_seq
        self.prev_seq = delta.prev_seq
        self.exchange_ts_ns = delta.exchange_ts_ns
        self.receive_ts_ns = delta.receive_ts_ns
        self.counters.deltas += 1

    def clear(self) -> None:
        """Empty both sides and forget the sequence ids (health is left to ``set_health``)."""
        self._bid_sizes = {}
        self._bid_prices = []
        self._ask_sizes = {}
        self._ask_prices = []
        self.first_seq = self.last_seq = self.prev_seq = 0

    def _truncate(self, depth: int) -> None:
        prices = self._bid_prices
        extra = len(prices) - depth
        if extra > 0:
            sizes = self._bid_sizes
            for p in prices[:extra]:
                del sizes[p]
            del prices[:extra]
        prices = self._ask_prices
        extra = len(prices) - depth
        if extra > 0:
            sizes = self._ask_sizes
            for q in prices[:extra]:
                del sizes[-q]
            del prices[:extra]

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
        p = -prices[-1]
        return (p, self._ask_sizes[p])

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
        return [(-q, sizes[-q]) for q in top]

    def size_at(self, side: Side, price: float) -> float:
        """Size resting at ``price`` on the bid (BUY) or ask (SELL) side; 0 when there is none."""
        sizes = self._bid_sizes if side is Side.BUY else self._ask_sizes
        return sizes.get(price, 0.0)

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
            s = sizes[-q]
            qty += s
            notional -= q * s
        return (qty, notional)

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
            p = sign * prices[i]
            s = sizes[p]
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

    def not_live_ns(self, now_ns: int) -> int:
        """Total time outside LIVE up to ``now_ns``, the current interval included."""
        total = self.counters.not_live_ns
        if self._health is not BookHealth.LIVE and now_ns > self._health_since_ns:
            total += now_ns - self._health_since_ns
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
        if previous is not BookHealth.LIVE and health is BookHealth.LIVE and ts_ns > self._health_since_ns:
            c.not_live_ns += ts_ns - self._health_since_ns
        self._health = health
        self._health_since_ns = ts_ns
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
        self.asks = {p: t for p, t in self.asks.items() if p in ask_sizes}


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


def bitfinex_book_checksum(book: L2Book, text: WireText) -> int:
    """Bitfinex checksum of ``book``'s top 25 levels per side, hashed from ``text``.

    The ask texts must hold the wire's negative amounts (the float book keeps positive ask sizes).
    """
    bids, asks = _top_text(book, text, 25)
    return bitfinex_checksum(bids, asks)
