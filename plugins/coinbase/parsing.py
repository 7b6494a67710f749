"""Coinbase wire formats decoded straight into typed structs, and their conversion to botframe events.

Pure code: bytes in, structs and events out. Prices and sizes are decoded to ``float`` by msgspec in C
(``strict=False`` reads Coinbase's quoted numbers); products' trading rules stay exact strings.

Advanced Trade (``wss://advanced-trade-ws.coinbase.com``), SPECS.md section 6. Every frame names its
``channel`` and carries ``sequence_num``, ONE counter per connection shared by every channel (+1 per
message, heartbeats and subscription acks included)::

    l2_data        {"channel":"l2_data","timestamp":..,"sequence_num":13,"events":[{"type":"snapshot"|"update",
                    "product_id":"BTC-USD","updates":[{"side":"bid"|"offer","event_time":..,
                    "price_level":"65083.66","new_quantity":"0.2"}]}]}
    market_trades  {"channel":"market_trades",..,"events":[{"type":"snapshot"|"update","trades":[{"product_id",
                    "trade_id":"1068572091","price","size","time","side":"BUY"|"SELL"}]}]}
    heartbeats     {"channel":"heartbeats",..,"events":[{"current_time":..,"heartbeat_counter":..}]}
    subscriptions  {"channel":"subscriptions",..,"events":[{"subscriptions":{"level2":["BTC-USD"],..}}]}
    error          {"type":"error","message":"failure to subscribe",..}   (no channel)

The ask side of ``l2_data`` is spelled ``"offer"``, not ``"ask"``: the decoder accepts exactly ``bid`` and
``offer``, so any other spelling is a parse error rather than a silently misplaced level.

Exchange feed (legacy ``wss://ws-feed.exchange.coinbase.com``): frames name their ``type``::

    snapshot       {"type":"snapshot","product_id":"SKL-BTC","bids":[[px,sz]..],"asks":[[px,sz]..]}
    l2update       {"type":"l2update","product_id":..,"changes":[["buy"|"sell",px,sz]..],"time":..}
    match          {"type":"match","trade_id":280232,"side":"sell","size":..,"price":..,"product_id":..,
                    "sequence":177100030,"time":..}          (last_match: the last one before subscribing)
    heartbeat, subscriptions, error                          (ticker and others: not read)

The level2 channel has no sequence numbers (the feed guarantees delivery); a lost update shows only as
a crossed book, which the engine reports through ``resync``.

Trade sides: both feeds give the side of the **maker** order, so the aggressor (botframe's ``Trade.side``)
is the opposite. For ``match`` this is Coinbase's own documentation ("The side field indicates the maker
order side"). For ``market_trades`` SPECS.md shows ``"side":"SELL"`` at 65083.67 while the book's best
bid is 65083.66: a trade one tick above the best bid happened at the ask, so a buyer was the aggressor
and ``SELL`` names the maker; NautilusTrader's adapter reads it the same way. The recorded legacy
session agrees: 44 of 45 ``sell`` matches print at the ask and 46 of 48 ``buy`` matches at the bid
(the test suite checks this on the capture).

Symbols: botframe uses ccxt's unified names: the product ``BTC-USD`` is ``BTC/USD``. Only spot products
are mapped (Advanced Trade also lists futures, which this adapter does not stream).
"""

from __future__ import annotations

import calendar
import enum
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

import msgspec

from botframe.events import BookDelta, BookSnapshot, Level, Side, Trade
from botframe.venues import Instrument

__all__ = [
    "AdvancedFrame",
    "AdvancedFrameDecoder",
    "ExchangeError",
    "ExchangeFrame",
    "ExchangeFrameDecoder",
    "ExchangeHeartbeat",
    "ExchangeL2Update",
    "ExchangeLastMatch",
    "ExchangeMatch",
    "ExchangeSnapshot",
    "ExchangeSubscriptions",
    "Feed",
    "FrameHeader",
    "HeartbeatsMessage",
    "L2Event",
    "L2Level",
    "L2Message",
    "MarketTrade",
    "MarketTradesEvent",
    "MarketTradesMessage",
    "Product",
    "SubscriptionsMessage",
    "SymbolMap",
    "UnknownSymbolError",
    "advanced_book_event",
    "advanced_subscription",
    "advanced_trade",
    "aggressor_side",
    "decode_products",
    "exchange_delta",
    "exchange_snapshot",
    "exchange_subscription",
    "exchange_trade",
    "instrument_from_product",
    "read_header",
    "rfc3339_ns",
    "trade_key",
]

_NS_PER_SEC = 1_000_000_000


class Feed(enum.StrEnum):
    """Which Coinbase WebSocket feed a client talks to."""

    ADVANCED_TRADE = "advanced_trade"
    EXCHANGE = "exchange"

    @property
    def products_path(self) -> str:
        """REST path of the public products list, appended to ``rest_url``."""
        if self is Feed.ADVANCED_TRADE:
            return "/api/v3/brokerage/market/products"
        return "/products"


# -- timestamps -----------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _epoch_seconds(prefix: str) -> int:
    # Frames of one second share this prefix, so the calendar arithmetic runs about once per second.
    return calendar.timegm(
        (int(prefix[0:4]), int(prefix[5:7]), int(prefix[8:10]), int(prefix[11:13]), int(prefix[14:16]),
         int(prefix[17:19]), 0, 0, 0)
    )


def rfc3339_ns(text: str) -> int:
    """Nanoseconds since the epoch of ``2026-08-09T21:05:48.483587501Z`` (any fraction length); 0 if unreadable.

    ``datetime.fromisoformat`` keeps only microseconds, and Advanced Trade sends nanoseconds.
    """
    try:
        if len(text) >= 20 and text[-1] == "Z" and text[10] == "T":
            seconds = _epoch_seconds(text[:19])
            if len(text) == 20:
                return seconds * _NS_PER_SEC
            if text[19] == ".":
                digits = text[20:-1]
                if digits.isdigit():
                    return seconds * _NS_PER_SEC + int(digits[:9].ljust(9, "0"))
        # Other offsets or layouts: the standard parser, to the microsecond.
        when = datetime.fromisoformat(text)
        return int(when.timestamp() * 1_000_000) * 1000
    except (ValueError, IndexError, OverflowError):
        return 0


# -- Advanced Trade -------------------------------------------------------------------------------------
# gc=False: these structs never hold references back to themselves, and millions are created per hour.


class L2Level(msgspec.Struct, gc=False):
    """One price level of an ``l2_data`` event; ``new_quantity`` is absolute, 0 removes the level."""

    side: Literal["bid", "offer"]
    price_level: float
    new_quantity: float


class L2Event(msgspec.Struct, gc=False):
    """The book of one product: a full ``snapshot`` or an ``update`` of some levels."""

    type: Literal["snapshot", "update"]
    product_id: str
    updates: list[L2Level]


class _AdvancedMessage(msgspec.Struct, tag_field="channel", gc=False):
    """Fields every Advanced Trade frame carries."""

    sequence_num: int
    timestamp: str = ""


class L2Message(_AdvancedMessage, tag="l2_data", gc=False):
    """The ``level2`` channel's frames (they arrive named ``l2_data``)."""

    events: list[L2Event] = msgspec.field(default_factory=list)


class MarketTrade(msgspec.Struct, gc=False):
    """One public trade; ``side`` is the MAKER's side (see the module docstring)."""

    product_id: str
    trade_id: str
    price: float
    size: float
    side: Literal["BUY", "SELL"]
    time: str = ""


class MarketTradesEvent(msgspec.Struct, gc=False):
    """Trades of one frame: the first ``snapshot`` after subscribing is history, ``update`` is new."""

    type: Literal["snapshot", "update"]
    trades: list[MarketTrade]


class MarketTradesMessage(_AdvancedMessage, tag="market_trades", gc=False):
    events: list[MarketTradesEvent] = msgspec.field(default_factory=list)


class HeartbeatsMessage(_AdvancedMessage, tag="heartbeats", gc=False):
    """Sent every second on a connection subscribed to ``heartbeats``; only its sequence number matters."""


class _Subscriptions(msgspec.Struct, gc=False):
    subscriptions: dict[str, list[str]] = msgspec.field(default_factory=dict)


class SubscriptionsMessage(_AdvancedMessage, tag="subscriptions", gc=False):
    """The answer to every subscribe and unsubscribe: what the connection is subscribed to now."""

    events: list[_Subscriptions] = msgspec.field(default_factory=list)

    def channels(self) -> dict[str, list[str]]:
        merged: dict[str, list[str]] = {}
        for event in self.events:
            merged.update(event.subscriptions)
        return merged


AdvancedFrame = L2Message | MarketTradesMessage | HeartbeatsMessage | SubscriptionsMessage


class AdvancedFrameDecoder:
    """Decodes Advanced Trade frames; one instance per client, reused.

    Raises ``msgspec.DecodeError`` for anything else (error frames, channels not read, broken frames):
    callers sort those out with :func:`read_header`.
    """

    __slots__ = ("decode",)

    def __init__(self) -> None:
        self.decode = msgspec.json.Decoder(AdvancedFrame, strict=False).decode


# -- Exchange feed --------------------------------------------------------------------------------------


class _ExchangeMessage(msgspec.Struct, tag_field="type", gc=False):
    """Base of the Exchange feed's frames, told apart by ``type``."""


class ExchangeSnapshot(_ExchangeMessage, tag="snapshot", gc=False):
    """The whole book of one product, sent after subscribing to ``level2``."""

    product_id: str
    bids: list[Level]
    asks: list[Level]
    time: str = ""


class ExchangeL2Update(_ExchangeMessage, tag="l2update", gc=False):
    """Absolute new sizes of some levels; side ``buy`` is a bid, ``sell`` an ask; size 0 removes."""

    product_id: str
    changes: list[tuple[Literal["buy", "sell"], float, float]]
    time: str = ""


class _MatchFields(_ExchangeMessage, gc=False):
    product_id: str
    trade_id: int
    side: Literal["buy", "sell"]
    size: float
    price: float
    sequence: int = 0
    time: str = ""


class ExchangeMatch(_MatchFields, tag="match", gc=False):
    """A public trade; ``side`` is the MAKER's side; ``sequence`` is the product's feed sequence."""


class ExchangeLastMatch(_MatchFields, tag="last_match", gc=False):
    """The product's last trade before we subscribed: history, never published."""


class ExchangeHeartbeat(_ExchangeMessage, tag="heartbeat", gc=False):
    """One per product per second on the ``heartbeat`` channel."""

    product_id: str = ""
    sequence: int = 0
    last_trade_id: int = 0
    time: str = ""


class ExchangeSubscriptions(_ExchangeMessage, tag="subscriptions", gc=False):
    """The answer to every subscribe and unsubscribe."""

    channels: list[Any] = msgspec.field(default_factory=list)


class ExchangeError(_ExchangeMessage, tag="error", gc=False):
    """A refused request (``"Failed to subscribe"``, an unknown product...)."""

    message: str = ""
    reason: str = ""


ExchangeFrame = (
    ExchangeL2Update
    | ExchangeSnapshot
    | ExchangeMatch
    | ExchangeLastMatch
    | ExchangeHeartbeat
    | ExchangeSubscriptions
    | ExchangeError
)


class ExchangeFrameDecoder:
    """Decodes Exchange feed frames; raises ``msgspec.DecodeError`` for others (see :func:`read_header`)."""

    __slots__ = ("decode",)

    def __init__(self) -> None:
        self.decode = msgspec.json.Decoder(ExchangeFrame, strict=False).decode


# -- frames the fast decoders refused -------------------------------------------------------------------


class _LooseFrame(msgspec.Struct):
    """Any JSON object, with the fields that say what a frame was about."""

    channel: Any = None
    type: Any = None
    sequence_num: Any = None
    product_id: Any = None
    message: Any = None
    reason: Any = None
    events: Any = None


class FrameHeader(msgspec.Struct, frozen=True):
    """What can be read of a frame the fast decoder refused: its kind, sequence number and products."""

    channel: str = ""
    type: str = ""
    sequence_num: int | None = None
    product_ids: tuple[str, ...] = ()
    message: str = ""
    reason: str = ""

    @property
    def is_error(self) -> bool:
        return self.type == "error" or self.channel == "error"


_LOOSE_DECODER = msgspec.json.Decoder(_LooseFrame)
# Last resort for text that is not JSON at all: these usually survive near the start of a cut frame.
_SEQUENCE_RE = re.compile(rb'"sequence_num"\s*:\s*(\d{1,19})')
_CHANNEL_RE = re.compile(rb'"(channel|type)"\s*:\s*"([a-z0-9_]{1,40})"')
_PRODUCT_RE = re.compile(rb'"product_id"\s*:\s*"([A-Za-z0-9._-]{1,40})"')


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _event_products(events: Any) -> tuple[str, ...]:
    found: list[str] = []
    if isinstance(events, list):
        for event in events:
            if isinstance(event, dict):
                product = event.get("product_id")
                if isinstance(product, str) and product not in found:
                    found.append(product)
    return tuple(found)


def read_header(frame: bytes | str) -> FrameHeader | None:
    """The header of a frame the fast decoder refused, or None when nothing can be read of it."""
    try:
        loose = _LOOSE_DECODER.decode(frame)
    except msgspec.DecodeError:
        loose = None
    if loose is not None:
        sequence = loose.sequence_num
        products = _event_products(loose.events)
        if not products and isinstance(loose.product_id, str):
            products = (loose.product_id,)
        return FrameHeader(
            channel=_text(loose.channel),
            type=_text(loose.type),
            sequence_num=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
            product_ids=products,
            message=_text(loose.message),
            reason=_text(loose.reason),
        )
    raw = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
    seq_match = _SEQUENCE_RE.search(raw)
    kind_match = _CHANNEL_RE.search(raw)
    product_match = _PRODUCT_RE.search(raw)
    if seq_match is None and kind_match is None and product_match is None:
        return None
    channel = kind = ""
    if kind_match is not None:
        value = kind_match.group(2).decode()
        if kind_match.group(1) == b"channel":
            channel = value
        else:
            kind = value
    return FrameHeader(
        channel=channel,
        type=kind,
        sequence_num=int(seq_match.group(1)) if seq_match else None,
        product_ids=(product_match.group(1).decode(),) if product_match else (),
    )


# -- subscriptions --------------------------------------------------------------------------------------

_ENCODE = msgspec.json.encode


def advanced_subscription(channel: str, product_ids: Sequence[str], *, subscribe: bool = True) -> str:
    """An Advanced Trade (un)subscribe frame: one channel per frame, as the feed requires."""
    message: dict[str, Any] = {"type": "subscribe" if subscribe else "unsubscribe"}
    if product_ids:
        message["product_ids"] = list(product_ids)
    message["channel"] = channel
    return _ENCODE(message).decode()


def exchange_subscription(channels: Sequence[str], product_ids: Sequence[str], *, subscribe: bool = True) -> str:
    """An Exchange feed (un)subscribe frame (several channels may share one frame)."""
    return _ENCODE(
        {"type": "subscribe" if subscribe else "unsubscribe", "product_ids": list(product_ids),
         "channels": list(channels)}
    ).decode()


# -- events ---------------------------------------------------------------------------------------------


def _split_sides(updates: list[L2Level]) -> tuple[list[Level], list[Level]]:
    bids: list[Level] = []
    asks: list[Level] = []
    add_bid = bids.append
    add_ask = asks.append
    for level in updates:
        if level.side == "bid":
            add_bid((level.price_level, level.new_quantity))
        else:
            add_ask((level.price_level, level.new_quantity))
    return bids, asks


def advanced_book_event(
    event: L2Event, venue: str, symbol: str, sequence: int, exchange_ts_ns: int, receive_ts_ns: int
) -> BookSnapshot | BookDelta:
    """The :class:`BookSnapshot` or :class:`BookDelta` of one ``l2_data`` event (``offer`` levels are asks)."""
    bids, asks = _split_sides(event.updates)
    if event.type == "snapshot":
        # BookSnapshot lists are best first; Coinbase sends them so, but a snapshot is rare enough to make sure.
        bids.sort(reverse=True)
        asks.sort()
        return BookSnapshot(
            venue=venue, symbol=symbol, bids=bids, asks=asks, sequence=sequence,
            exchange_ts_ns=exchange_ts_ns, receive_ts_ns=receive_ts_ns,
        )
    return BookDelta(
        venue=venue, symbol=symbol, bids=bids, asks=asks, first_seq=sequence, last_seq=sequence,
        exchange_ts_ns=exchange_ts_ns, receive_ts_ns=receive_ts_ns,
    )


def exchange_snapshot(msg: ExchangeSnapshot, venue: str, symbol: str, receive_ts_ns: int) -> BookSnapshot:
    """The :class:`BookSnapshot` of an Exchange feed ``snapshot``."""
    bids = sorted(msg.bids, reverse=True)
    asks = sorted(msg.asks)
    return BookSnapshot(
        venue=venue, symbol=symbol, bids=bids, asks=asks,
        exchange_ts_ns=rfc3339_ns(msg.time) if msg.time else 0, receive_ts_ns=receive_ts_ns,
    )


def exchange_delta(msg: ExchangeL2Update, venue: str, symbol: str, receive_ts_ns: int) -> BookDelta:
    """The :class:`BookDelta` of an ``l2update`` (changes keep their order within each side)."""
    bids: list[Level] = []
    asks: list[Level] = []
    for side, price, size in msg.changes:
        if side == "buy":
            bids.append((price, size))
        else:
            asks.append((price, size))
    return BookDelta(
        venue=venue, symbol=symbol, bids=bids, asks=asks,
        exchange_ts_ns=rfc3339_ns(msg.time) if msg.time else 0, receive_ts_ns=receive_ts_ns,
    )


_AGGRESSOR = {"SELL": Side.BUY, "sell": Side.BUY, "BUY": Side.SELL, "buy": Side.SELL}


def aggressor_side(maker_side: str) -> Side:
    """The aggressor of a Coinbase trade, whose ``side`` names the maker (see the module docstring)."""
    return _AGGRESSOR[maker_side]


def advanced_trade(msg: MarketTrade, venue: str, symbol: str, receive_ts_ns: int) -> Trade:
    """The :class:`Trade` of one ``market_trades`` entry."""
    return Trade(
        venue=venue, symbol=symbol, price=msg.price, size=msg.size, side=_AGGRESSOR[msg.side],
        trade_id=msg.trade_id, exchange_ts_ns=rfc3339_ns(msg.time) if msg.time else 0,
        receive_ts_ns=receive_ts_ns,
    )


def exchange_trade(msg: ExchangeMatch, venue: str, symbol: str, receive_ts_ns: int) -> Trade:
    """The :class:`Trade` of one ``match``."""
    return Trade(
        venue=venue, symbol=symbol, price=msg.price, size=msg.size, side=_AGGRESSOR[msg.side],
        trade_id=str(msg.trade_id), exchange_ts_ns=rfc3339_ns(msg.time) if msg.time else 0,
        receive_ts_ns=receive_ts_ns,
    )


def trade_key(msg: MarketTrade) -> int | None:
    """The trade id as a number (Coinbase's ids grow per product), or None when it is not one."""
    try:
        return int(msg.trade_id)
    except ValueError:
        return None


# -- REST: products -------------------------------------------------------------------------------------


class Product(msgspec.Struct):
    """One product of either products endpoint; the two spell a few fields differently.

    Exchange ``GET /products``: ``id``, ``base_currency``, ``quote_currency``, ``quote_increment`` (the tick),
    ``base_increment``, ``min_market_funds``. Advanced Trade ``GET /api/v3/brokerage/market/products``:
    ``product_id``, ``base_currency_id``, ``quote_currency_id``, ``price_increment`` (the tick),
    ``base_increment``, ``quote_min_size``, ``product_type``.
    """

    id: str = ""
    product_id: str = ""
    base_currency: str = ""
    quote_currency: str = ""
    base_currency_id: str = ""
    quote_currency_id: str = ""
    base_increment: str = ""
    quote_increment: str = ""
    price_increment: str = ""
    min_market_funds: str | None = None
    quote_min_size: str | None = None
    product_type: str = "SPOT"
    status: str = ""

    @property
    def venue_symbol(self) -> str:
        return self.product_id or self.id


class _AdvancedProducts(msgspec.Struct):
    products: list[Product]


_EXCHANGE_PRODUCTS = msgspec.json.Decoder(list[Product])
_ADVANCED_PRODUCTS = msgspec.json.Decoder(_AdvancedProducts)


def decode_products(body: bytes | str, feed: Feed) -> list[Product]:
    """Decode the products list of ``feed``; raises ``msgspec.DecodeError`` when it is not one."""
    if feed is Feed.ADVANCED_TRADE:
        return _ADVANCED_PRODUCTS.decode(body).products
    return _EXCHANGE_PRODUCTS.decode(body)


def instrument_from_product(product: Product, venue: str) -> Instrument | None:
    """The :class:`~botframe.venues.Instrument` of a spot product (None for futures and nameless entries)."""
    if product.product_type.upper() != "SPOT":
        return None
    venue_symbol = product.venue_symbol
    base = product.base_currency or product.base_currency_id
    quote = product.quote_currency or product.quote_currency_id
    if not (base and quote) and venue_symbol.count("-") == 1:
        base, quote = venue_symbol.split("-")
    if not (venue_symbol and base and quote):
        return None
    return Instrument(
        venue=venue,
        symbol=f"{base}/{quote}",
        venue_symbol=venue_symbol,
        base=base,
        quote=quote,
        tick_size=product.price_increment or product.quote_increment or "0",
        lot_size=product.base_increment or "0",
        min_notional=product.min_market_funds or product.quote_min_size or "0",
    )


class UnknownSymbolError(KeyError):
    """A configured symbol that the venue's products list does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


class SymbolMap:
    """Unified symbol <-> Coinbase product id, built from the products list.

    ``venue_symbol("BTC/USD") == "BTC-USD"``, ``unified("BTC-USD") == "BTC/USD"``.
    """

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_unified: dict[str, Instrument] = {}
        self._by_venue: dict[str, Instrument] = {}
        for inst in instruments:
            self._by_unified[inst.symbol] = inst
            self._by_venue[inst.venue_symbol] = inst

    @classmethod
    def from_products(cls, products: Iterable[Product], venue: str) -> SymbolMap:
        found = (instrument_from_product(p, venue) for p in products)
        return cls(inst for inst in found if inst is not None)

    def __len__(self) -> int:
        return len(self._by_unified)

    def __contains__(self, unified: object) -> bool:
        return unified in self._by_unified

    def instrument(self, unified: str) -> Instrument:
        """The instrument of a unified symbol; the error names a likely fix (``BTC-USD`` -> ``BTC/USD``)."""
        inst = self._by_unified.get(unified)
        if inst is not None:
            return inst
        by_venue = self._by_venue.get(unified.replace("/", "-").upper())
        if by_venue is not None:
            hint = f"; did you mean {by_venue.symbol!r}?"
        else:
            base = unified.split("/", 1)[0].upper()
            others = sorted(s for s in self._by_unified if s.split("/", 1)[0] == base)[:5]
            hint = f"; listed with base {base}: {', '.join(map(repr, others))}" if others else ""
        raise UnknownSymbolError(f"symbol {unified!r} is not listed by the venue{hint}")

    def venue_symbol(self, unified: str) -> str:
        return self.instrument(unified).venue_symbol

    def unified(self, venue_symbol: str) -> str:
        inst = self._by_venue.get(venue_symbol)
        if inst is None:
            raise UnknownSymbolError(f"product {venue_symbol!r} is not listed by the venue")
        return inst.symbol
