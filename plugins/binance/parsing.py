"""Binance wire formats decoded straight into typed structs, and their conversion to botframe events.

Pure code: bytes in, structs and events out. Prices and sizes of the streams are decoded to ``float`` by
msgspec in C (``strict=False`` accepts Binance's quoted numbers), so a diff frame becomes a
:class:`DepthUpdate` whose ``bids``/``asks`` are the very lists a :class:`~botframe.events.BookDelta`
carries, with no per-level Python loop. Trading rules from ``exchangeInfo`` (tick size, step size, min
notional) stay exact strings.

Frames handled (combined streams wrap every payload as ``{"stream": .., "data": {..}}``)::

    depthUpdate  spot/US:  {"e":"depthUpdate","E":ms,"s":"BTCUSDT","U":first,"u":last,"b":[[p,q]..],"a":..}
                 futures:  adds "T":ms (transaction time) and "pu":previous final update id
    aggTrade              {"e":"aggTrade","E":ms,"s":..,"a":id,"p":"..","q":"..","T":ms,"m":buyer_is_maker}
    REST depth            {"lastUpdateId":n,"bids":[[p,q]..],"asks":..}   (futures add "E","T")
    REST exchangeInfo     {"symbols":[{"symbol","baseAsset","quoteAsset","filters":[..]}..]}

Symbols: botframe uses ccxt's unified names. Spot ``BTCUSDT`` is ``BTC/USDT``; a USD-M perpetual
``BTCUSDT`` is ``BTC/USDT:USDT``; a COIN-M perpetual ``BTCUSD_PERP`` is ``BTC/USD:BTC``; a dated contract
``BTCUSDT_210924`` is ``BTC/USDT:USDT-210924`` (settle asset after the colon, expiry as YYMMDD).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

from botframe.events import BookDelta, BookSnapshot, Level, Side, Trade
from botframe.venues import Instrument

__all__ = [
    "AggTrade",
    "DepthSnapshotMessage",
    "DepthUpdate",
    "ExchangeInfo",
    "FrameDecoder",
    "Market",
    "StreamFrame",
    "SymbolFilter",
    "SymbolInfo",
    "SymbolMap",
    "UnknownSymbolError",
    "book_delta",
    "book_snapshot",
    "decode_depth_snapshot",
    "decode_exchange_info",
    "frame_stream_name",
    "instrument_from_info",
    "trade",
    "unified_symbol",
]

_NS_PER_MS = 1_000_000


class Market(enum.StrEnum):
    """Which Binance market a client talks to; they differ in URLs and in the book sync rules."""

    SPOT = "spot"  # api.binance.com / stream.binance.com
    US = "us"  # api.binance.us / stream.binance.us (spot rules)
    USDM = "usdm"  # fapi / fstream, USD-M futures
    COINM = "coinm"  # dapi / dstream, COIN-M futures

    @property
    def is_futures(self) -> bool:
        return self is Market.USDM or self is Market.COINM

    @property
    def rest_prefix(self) -> str:
        """Path prefix of the REST API (``/api/v3``, ``/fapi/v1``, ``/dapi/v1``)."""
        if self is Market.USDM:
            return "/fapi/v1"
        if self is Market.COINM:
            return "/dapi/v1"
        return "/api/v3"


# -- streams --------------------------------------------------------------------------------------------
# gc=False: these structs never hold references back to themselves, and millions are created per hour.


class DepthUpdate(msgspec.Struct, tag_field="e", tag="depthUpdate", gc=False):
    """One diff-depth event. Sizes are absolute; 0 deletes the level."""

    event_time_ms: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    first_update_id: int = msgspec.field(name="U")
    last_update_id: int = msgspec.field(name="u")
    bids: list[Level] = msgspec.field(name="b")
    asks: list[Level] = msgspec.field(name="a")
    # Futures only: the previous event's ``u`` (the contiguity rule there) and the matching-engine time.
    prev_update_id: int = msgspec.field(name="pu", default=0)
    transaction_time_ms: int = msgspec.field(name="T", default=0)


class AggTrade(msgspec.Struct, tag_field="e", tag="aggTrade", gc=False):
    """One aggregated public trade. ``buyer_is_maker`` true means the aggressor sold."""

    event_time_ms: int = msgspec.field(name="E")
    symbol: str = msgspec.field(name="s")
    agg_trade_id: int = msgspec.field(name="a")
    price: float = msgspec.field(name="p")
    quantity: float = msgspec.field(name="q")
    trade_time_ms: int = msgspec.field(name="T")
    buyer_is_maker: bool = msgspec.field(name="m")


class StreamFrame(msgspec.Struct, gc=False):
    """The combined-stream envelope; ``stream`` is not decoded because ``data.symbol`` says the same."""

    data: DepthUpdate | AggTrade


class _StreamName(msgspec.Struct):
    """Only the stream name of a frame, for frames the fast decoder refused."""

    stream: str


class FrameDecoder:
    """Decodes combined-stream frames into :class:`StreamFrame`; one instance per connection, reused.

    Raises ``msgspec.DecodeError`` (``ValidationError`` is a subclass) for anything that is not a depth
    or aggTrade event: callers tell ignorable frames from broken ones with :func:`frame_stream_name`.
    """

    __slots__ = ("decode",)

    def __init__(self) -> None:
        self.decode = msgspec.json.Decoder(StreamFrame, strict=False).decode


_STREAM_NAME_DECODER = msgspec.json.Decoder(_StreamName)
# Last resort for text that is not JSON at all: the stream name usually survives near the start.
_STREAM_NAME_RE = re.compile(rb'"stream"\s*:\s*"([^"]{1,100})"')


def frame_stream_name(frame: bytes | str) -> str | None:
    """The ``stream`` of a frame the fast decoder refused (``btcusdt@depth@100ms``), or None if unknown."""
    try:
        return _STREAM_NAME_DECODER.decode(frame).stream
    except msgspec.DecodeError:
        pass
    raw = frame.encode("utf-8", "replace") if isinstance(frame, str) else frame
    match = _STREAM_NAME_RE.search(raw)
    return match.group(1).decode("utf-8", "replace") if match else None


# -- REST -----------------------------------------------------------------------------------------------


class DepthSnapshotMessage(msgspec.Struct, gc=False):
    """``GET /api/v3/depth`` (or ``/fapi/v1/depth``, ``/dapi/v1/depth``): a full book at ``lastUpdateId``."""

    last_update_id: int = msgspec.field(name="lastUpdateId")
    bids: list[Level]
    asks: list[Level]
    event_time_ms: int = msgspec.field(name="E", default=0)
    transaction_time_ms: int = msgspec.field(name="T", default=0)


class SymbolFilter(msgspec.Struct):
    """One entry of a symbol's ``filters``; only the fields botframe uses, kept as exact strings."""

    filter_type: str = msgspec.field(name="filterType")
    tick_size: str = msgspec.field(name="tickSize", default="")
    step_size: str = msgspec.field(name="stepSize", default="")
    min_notional: str = msgspec.field(name="minNotional", default="")  # spot MIN_NOTIONAL / NOTIONAL
    notional: str = msgspec.field(name="notional", default="")  # USD-M MIN_NOTIONAL


class SymbolInfo(msgspec.Struct):
    """One symbol of ``exchangeInfo`` (spot, USD-M and COIN-M spell a few fields differently)."""

    symbol: str
    base_asset: str = msgspec.field(name="baseAsset")
    quote_asset: str = msgspec.field(name="quoteAsset")
    status: str = ""
    contract_status: str = msgspec.field(name="contractStatus", default="")  # COIN-M's name for status
    contract_type: str = msgspec.field(name="contractType", default="")  # futures: PERPETUAL, *_QUARTER
    margin_asset: str = msgspec.field(name="marginAsset", default="")  # futures settle asset
    delivery_date_ms: int = msgspec.field(name="deliveryDate", default=0)
    filters: list[SymbolFilter] = msgspec.field(default_factory=list)

    def filter(self, filter_type: str) -> SymbolFilter | None:
        for f in self.filters:
            if f.filter_type == filter_type:
                return f
        return None


class ExchangeInfo(msgspec.Struct):
    """``GET /api/v3/exchangeInfo`` (or the futures equivalents), reduced to the symbol list."""

    symbols: list[SymbolInfo]


_SNAPSHOT_DECODER = msgspec.json.Decoder(DepthSnapshotMessage, strict=False)
_EXCHANGE_INFO_DECODER = msgspec.json.Decoder(ExchangeInfo)


def decode_depth_snapshot(body: bytes | str) -> DepthSnapshotMessage:
    """Decode a REST depth response; raises ``msgspec.DecodeError`` when it is not one."""
    return _SNAPSHOT_DECODER.decode(body)


def decode_exchange_info(body: bytes | str) -> ExchangeInfo:
    """Decode a REST exchangeInfo response; raises ``msgspec.DecodeError`` when it is not one."""
    return _EXCHANGE_INFO_DECODER.decode(body)


# -- symbols and instruments ----------------------------------------------------------------------------


class UnknownSymbolError(KeyError):
    """A configured symbol that the venue's exchangeInfo does not list."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


def unified_symbol(info: SymbolInfo, market: Market) -> str:
    """ccxt's unified name of a Binance symbol (see the module docstring for the forms)."""
    spot_name = f"{info.base_asset}/{info.quote_asset}"
    if not market.is_futures:
        return spot_name
    settle = info.margin_asset or info.quote_asset
    if info.contract_type.startswith("PERPETUAL") or not info.delivery_date_ms:
        return f"{spot_name}:{settle}"
    expiry = datetime.fromtimestamp(info.delivery_date_ms / 1000, tz=UTC).strftime("%y%m%d")
    return f"{spot_name}:{settle}-{expiry}"


def instrument_from_info(info: SymbolInfo, venue: str, market: Market) -> Instrument:
    """The :class:`~botframe.venues.Instrument` of one exchangeInfo symbol, filters kept as exact text."""
    price_filter = info.filter("PRICE_FILTER")
    lot_filter = info.filter("LOT_SIZE")
    notional_filter = info.filter("MIN_NOTIONAL") or info.filter("NOTIONAL")
    min_notional = "0"
    if notional_filter is not None:
        min_notional = notional_filter.min_notional or notional_filter.notional or "0"
    return Instrument(
        venue=venue,
        symbol=unified_symbol(info, market),
        venue_symbol=info.symbol,
        base=info.base_asset,
        quote=info.quote_asset,
        tick_size=price_filter.tick_size if price_filter and price_filter.tick_size else "0",
        lot_size=lot_filter.step_size if lot_filter and lot_filter.step_size else "0",
        min_notional=min_notional,
    )


class SymbolMap:
    """Unified symbol <-> Binance symbol, built from exchangeInfo.

    ``venue_symbol("BTC/USDT") == "BTCUSDT"``, ``stream_symbol("BTC/USDT") == "btcusdt"`` (stream names
    are lower case), ``unified("BTCUSDT") == "BTC/USDT"``.
    """

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_unified: dict[str, Instrument] = {}
        self._by_venue: dict[str, Instrument] = {}
        for inst in instruments:
            self._by_unified[inst.symbol] = inst
            self._by_venue[inst.venue_symbol] = inst

    @classmethod
    def from_exchange_info(cls, info: ExchangeInfo, venue: str, market: Market) -> SymbolMap:
        return cls(instrument_from_info(s, venue, market) for s in info.symbols)

    def __len__(self) -> int:
        return len(self._by_unified)

    def __contains__(self, unified: object) -> bool:
        return unified in self._by_unified

    def instrument(self, unified: str) -> Instrument:
        """The instrument of a unified symbol; the error names close matches (``BTCUSDT`` -> ``BTC/USDT``)."""
        inst = self._by_unified.get(unified)
        if inst is not None:
            return inst
        by_venue = self._by_venue.get(unified.replace("/", "").upper())
        hint = f"; did you mean {by_venue.symbol!r}?" if by_venue is not None else ""
        if not hint:
            prefix = unified + ":"
            close = sorted(s for s in self._by_unified if s.startswith(prefix))[:3]
            if close:
                hint = f"; futures symbols carry the settle asset, e.g. {', '.join(map(repr, close))}"
        raise UnknownSymbolError(f"symbol {unified!r} is not listed by the venue{hint}")

    def venue_symbol(self, unified: str) -> str:
        return self.instrument(unified).venue_symbol

    def stream_symbol(self, unified: str) -> str:
        return self.instrument(unified).venue_symbol.lower()

    def unified(self, venue_symbol: str) -> str:
        inst = self._by_venue.get(venue_symbol) or self._by_venue.get(venue_symbol.upper())
        if inst is None:
            raise UnknownSymbolError(f"venue symbol {venue_symbol!r} is not listed by the venue")
        return inst.symbol


# -- events ---------------------------------------------------------------------------------------------


def book_delta(msg: DepthUpdate, venue: str, symbol: str, receive_ts_ns: int) -> BookDelta:
    """The :class:`BookDelta` of one diff (the level lists are shared, not copied)."""
    # Futures carry the matching-engine time T; spot only the event time E.
    ts_ms = msg.transaction_time_ms or msg.event_time_ms
    return BookDelta(
        venue=venue,
        symbol=symbol,
        bids=msg.bids,
        asks=msg.asks,
        first_seq=msg.first_update_id,
        last_seq=msg.last_update_id,
        prev_seq=msg.prev_update_id,
        exchange_ts_ns=ts_ms * _NS_PER_MS,
        receive_ts_ns=receive_ts_ns,
    )


def book_snapshot(msg: DepthSnapshotMessage, venue: str, symbol: str, receive_ts_ns: int) -> BookSnapshot:
    """The :class:`BookSnapshot` of a REST depth response (Binance already sorts both sides best first)."""
    ts_ms = msg.transaction_time_ms or msg.event_time_ms
    return BookSnapshot(
        venue=venue,
        symbol=symbol,
        bids=msg.bids,
        asks=msg.asks,
        sequence=msg.last_update_id,
        exchange_ts_ns=ts_ms * _NS_PER_MS,
        receive_ts_ns=receive_ts_ns,
    )


def trade(msg: AggTrade, venue: str, symbol: str, receive_ts_ns: int) -> Trade:
    """The :class:`Trade` of an aggTrade; the buyer being the maker means a seller hit the bid."""
    return Trade(
        venue=venue,
        symbol=symbol,
        price=msg.price,
        size=msg.quantity,
        side=Side.SELL if msg.buyer_is_maker else Side.BUY,
        trade_id=str(msg.agg_trade_id),
        exchange_ts_ns=msg.trade_time_ms * _NS_PER_MS,
        receive_ts_ns=receive_ts_ns,
    )
