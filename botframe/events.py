"""Typed, immutable events that travel on the bus.

Every market event carries the venue, the unified symbol (``BTC/USDT``, as ccxt writes it), the
exchange's own timestamp and our receive timestamp, both in integer nanoseconds since the epoch.

Hot-path market data uses floats for price and size (decoded straight from the wire by msgspec);
anything that is money or is sent to a venue uses ``Decimal`` (see DESIGN.md, principle 5).
"""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec

__all__ = [
    "BookDelta",
    "BookHealth",
    "BookSnapshot",
    "Event",
    "FeedStatus",
    "Fill",
    "HealthReason",
    "Level",
    "OrderDenied",
    "OrderIntent",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "Side",
    "SignalUpdate",
    "TimeInForce",
    "Trade",
    "TradingState",
    "TradingStateChanged",
]

#: One price level: (price, size). A size of 0 in a delta deletes the level.
Level = tuple[float, float]


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class BookHealth(enum.StrEnum):
    """Where a (venue, symbol) book is in its life; see DESIGN.md "Book health"."""

    CONNECTING = "connecting"
    SYNCING = "syncing"
    LIVE = "live"
    RESYNCING = "resyncing"


class HealthReason(enum.StrEnum):
    """Why a book changed health."""

    START = "start"
    SUBSCRIBED = "subscribed"
    SNAPSHOT = "snapshot"
    GAP = "gap"
    CHECKSUM = "checksum"
    CROSSED = "crossed"
    STALE = "stale"
    DISCONNECTED = "disconnected"
    PARSE_ERROR = "parse_error"
    STOPPED = "stopped"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(enum.StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class OrderStatus(enum.StrEnum):
    """Order life cycle; legal moves are enforced in ``botframe.orders``."""

    NEW = "new"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCEL_PENDING = "cancel_pending"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class TradingState(enum.StrEnum):
    """ACTIVE trades freely; REDUCING allows only position-reducing orders; HALTED allows nothing."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every bus event."""


class BookSnapshot(Event, frozen=True, kw_only=True):
    """A full replacement of one book. ``bids`` best-first (descending), ``asks`` best-first (ascending)."""

    venue: str
    symbol: str
    bids: list[Level]
    asks: list[Level]
    sequence: int = 0
    exchange_ts_ns: int = 0
    receive_ts_ns: int = 0


class BookDelta(Event, frozen=True, kw_only=True):
    """Absolute new sizes for some levels of one book (size 0 deletes), applied in list order.

    ``first_seq``/``last_seq``/``prev_seq`` keep the exchange's own ids as the venue defines them
    (Binance ``U``/``u``/``pu``, OKX ``prevSeqId``/``seqId``); 0 where the venue has none.
    """

    venue: str
    symbol: str
    bids: list[Level]
    asks: list[Level]
    first_seq: int = 0
    last_seq: int = 0
    prev_seq: int = 0
    exchange_ts_ns: int = 0
    receive_ts_ns: int = 0


class Trade(Event, frozen=True, kw_only=True):
    """A public trade. ``side`` is the aggressor (taker) side."""

    venue: str
    symbol: str
    price: float
    size: float
    side: Side
    trade_id: str = ""
    exchange_ts_ns: int = 0
    receive_ts_ns: int = 0


class FeedStatus(Event, frozen=True, kw_only=True):
    """A book's health changed (published on every transition)."""

    venue: str
    symbol: str
    previous: BookHealth
    health: BookHealth
    reason: HealthReason
    detail: str = ""
    ts_ns: int = 0


class SignalUpdate(Event, frozen=True, kw_only=True):
    """A signal's new value, published only when someone subscribed to signal events."""

    venue: str
    symbol: str
    name: str
    value: float
    ts_ns: int = 0


class OrderIntent(Event, frozen=True, kw_only=True):
    """What a strategy wants; it becomes an order only after the risk gate approves it.

    ``price`` is required for limit orders and ignored for market orders. Quantities and prices are
    ``Decimal`` because they are sent to a venue, rounded exactly to its tick and lot.
    """

    client_order_id: str
    strategy: str
    venue: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.LIMIT
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    reduce_only: bool = False
    ts_ns: int = 0


class OrderDenied(Event, frozen=True, kw_only=True):
    """The risk gate refused an intent; one entry per denying check."""

    intent: OrderIntent
    code: str
    check: str
    reason: str
    ts_ns: int = 0


class OrderUpdate(Event, frozen=True, kw_only=True):
    """An order changed status, as reported by an executor."""

    client_order_id: str
    venue: str
    symbol: str
    status: OrderStatus
    side: Side
    quantity: Decimal
    filled_quantity: Decimal = Decimal(0)
    price: Decimal | None = None
    venue_order_id: str = ""
    reason: str = ""
    ts_ns: int = 0


class Fill(Event, frozen=True, kw_only=True):
    """A (partial) execution of one of our orders. ``fee`` is in the quote currency."""

    client_order_id: str
    venue: str
    symbol: str
    side: Side
    price: Decimal
    quantity: Decimal
    fee: Decimal
    liquidity: str  # "maker" or "taker"
    fill_id: str = ""
    ts_ns: int = 0


class TradingStateChanged(Event, frozen=True, kw_only=True):
    previous: TradingState
    state: TradingState
    reason: str
    ts_ns: int = 0
