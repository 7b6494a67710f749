"""Bybit v5 public wire formats decoded straight into typed structs, and their conversion to botframe events.

Pure code: bytes in, structs and events out. Prices and sizes are decoded to ``float`` by msgspec in C
(``strict=False`` reads Bybit's quoted numbers); instruments' trading rules stay exact strings.

Frames (``wss://stream.bybit.com/v5/public/{spot|linear|inverse}``, SPECS.md section 7)::

    orderbook    {"topic":"orderbook.200.ETHUSDT","type":"snapshot"|"delta","ts":ms,"cts":ms,
                  "data":{"s":"ETHUSDT","b":[["1922.27","5.91"]..],"a":[..],"u":14768461,"seq":430879399832}}
    publicTrade  {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":ms,"data":[{"T":ms,"s":"BTCUSDT",
                  "S":"Sell","v":"0.004","p":"65114.20","L":"MinusTick","i":"<id>","BT":false,"seq":..}]}
    subscribe    {"success":true,"ret_msg":"","conn_id":"..","req_id":"..","op":"subscribe"}
                 (``success: false`` with the reason in ``ret_msg`` when a topic is refused)
    pong         {"success":true,"ret_msg":"pong","conn_id":"..","op":"ping"}          (spot)
                 {"op":"pong","args":["1700000000000"],"conn_id":".."}                 (linear, inverse)

``u`` is the update id of an orderbook topic, +1 per message; ``u == 1`` means Bybit's service restarted
and that message is a full book, whatever its ``type``. ``seq`` is the cross sequence, comparable across
depths of one symbol. ``publicTrade`` frames are all typed ``snapshot`` but are new trades, never history.
Trade side ``S`` is the taker's (Bybit: "Side of taker"), so it is botframe's aggressor side as is.

Symbols: botframe uses ccxt's unified names. Spot ``BTCUSDT`` is ``BTC/USDT``; a linear perpetual
``BTCUSDT`` is ``BTC/USDT:USDT``; an inverse perpetual ``BTCUSD`` is ``BTC/USD:BTC``; a dated contract
adds its delivery date as YYMMDD (``BTC/USDT:USDT-250328``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from botframe.events import BookDelta, BookSnapshot, Level, Side, Trade
from botframe.venues import Instrument

__all__ = [
    "Category",
    "ControlMessage",
    "FrameDecoder",
    "FrameHeader",
    "InstrumentInfo",
    "InstrumentsPage",
    "OrderbookData",
    "PublicTrade",
    "StreamMessage",
    "SymbolMap",
    "UnknownSymbolError",
    "book_delta",
    "book_snapshot",
    "decode_control",
    "decode_instruments",
    "instrument_from_info",
    "op_frame",
    "orderbook_topic",
    "read_header",
    "trade",
    "trade_topic",
    "unified_symbol",
]

_NS_PER_MS = 1_000_000


class Category(enum.StrEnum):
    """Which Bybit product line a client streams; they differ in URL and symbol naming."""

    SPOT = "spot"
    LINEAR = "linear"
    INVERSE = "inverse"


def orderbook_topic(depth: int, venue_symbol: str) -> str:
    return f"orderbook.{depth}.{venue_symbol}"


def trade_topic(venue_symbol: str) -> str:
    return f"publicTrade.{venue_symbol}"


# -- streams --------------------------------------------------------------------------------------------
# gc=False: these structs never hold references back to themselves, and millions are created per hour.


class OrderbookData(msgspec.Struct, gc=False):
    """The book part of an orderbook frame; sizes are absolute, 0 deletes."""

    symbol: str = msgspec.field(name="s")
    bids: list[Level] = msgspec.field(name="b")
    asks: list[Level] = msgspec.field(name="a")
    update_id: int = msgspec.field(name="u")
    cross_seq: int = msgspec.field(name="seq", default=0)


class PublicTrade(msgspec.Struct, gc=False):
    """One public trade; ``side`` is the taker's."""

    time_ms: int = msgspec.field(name="T")
    symbol: str = msgspec.field(name="s")
    side: Literal["Buy", "Sell"] = msgspec.field(name="S")
    size: float = msgspec.field(name="v")
    price: float = msgspec.field(name="p")
    trade_id: str = msgspec.field(name="i")
    block_trade: bool = msgspec.field(name="BT", default=False)


class StreamMessage(msgspec.Struct, gc=False):
    """A topic frame: an orderbook (``data`` is an object) or publicTrade (``data`` is a list) push."""

    topic: str
    type: Literal["snapshot", "delta"]
    data: OrderbookData | list[PublicTrade]
    ts: int = 0
    cts: int = 0  # matching-engine time of orderbook frames


class FrameDecoder:
    """Decodes topic frames into :class:`StreamMessage`; one instance per client, reused.

    Raises ``msgspec.DecodeError`` for anything else (acks, pongs, other topics, broken frames):
    callers sort those out with :func:`decode_control` and :func:`read_header`.
    """

    __slots__ = ("decode",)

    def __init__(self) -> None:
        self.decode = msgspec.json.Decoder(StreamMessage, strict=False).decode


class ControlMessage(msgspec.Struct, frozen=True):
    """A reply to something we sent: a (un)subscribe ack or a pong."""

    op: str
    success: bool = True
    ret_msg: str = ""
    conn_id: str = ""
    req_id: str = ""
    args: list[Any] = msgspec.field(default_factory=list)

    @property
    def is_pong(self) -> bool:
        return self.op == "pong" or (self.op == "ping" and self.ret_msg == "pong")


_CONTROL_DECODER = msgspec.json.Decoder(ControlMessage)


def decode_control(frame: bytes | str) -> ControlMessage | None:
    """The control message of a frame, or None when it is not one."""
    try:
        return _CONTROL_DECODER.decode(frame)
    except msgspec.DecodeError:
        return None


class FrameHeader(msgspec.Struct, frozen=True):
    """What can be read of a frame nobody could decode: its topic, if any."""

    topic: str = ""

    @property
    def channel(self) -> str:
        return self.topic.split(".", 1)[0]

    @property
    def venue_symbol(self) -> str:
        return self.topic.rsplit(".", 1)[-1] if "." in self.topic else ""


class _LooseFrame(msgspec.Struct):
    topic: Any = None


_LOOSE_DECODER = msgspec.json.Decoder(_LooseFrame)
# Last resort for text that is not JSON at all: the topic usually survives near the start of a cut frame.
_TOPIC_RE = re.compile(rb'"topic"\s*:\s*"([A-Za-z0-9._-]{1,100})"')


def read_header(frame: bytes | str) -> FrameHeader | None:
    """The topic of a frame the decoders refused, or None when nothing can be read of it."""
    try:
        loose = _LOOSE_DECODER.decode(frame)
        return FrameHeader(topic=loose.topic) if isinstance(loose.topic, str) else None
    except msgspec.DecodeError:
        pass
    raw = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
    match = _TOPIC_RE.search(raw)
    return FrameHeader(topic=match.group(1).decode()) if match else None


def op_frame(op: str, args: Sequence[str] = (), req_id: str = "") -> str:
    """A request frame: ``{"op":"subscribe","args":[..],"req_id":".."}``, ``{"op":"ping"}``..."""
    message: dict[str, Any] = {"op": op}
    if args:
        message["args"] = list(args)
    if req_id:
        message["req_id"] = req_id
    return msgspec.json.encode(message).decode()


# -- events ---------------------------------------------------------------------------------------------


def book_snapshot(msg: StreamMessage, data: OrderbookData, venue: str, symbol: str, receive_ts_ns: int) -> BookSnapshot:
    """The :class:`BookSnapshot` of a snapshot frame, or of a delta whose ``u == 1`` (a full book)."""
    return BookSnapshot(
        venue=venue,
        symbol=symbol,
        bids=sorted(data.bids, reverse=True),
        asks=sorted(data.asks),
        sequence=data.update_id,
        exchange_ts_ns=(msg.cts or msg.ts) * _NS_PER_MS,
        receive_ts_ns=receive_ts_ns,
    )


def book_delta(msg: StreamMessage, data: OrderbookData, venue: str, symbol: str, receive_ts_ns: int) -> BookDelta:
    """The :class:`BookDelta` of a delta frame (the level lists are shared, not copied)."""
    return BookDelta(
        venue=venue,
        symbol=symbol,
        bids=data.bids,
        asks=data.asks,
        first_seq=data.update_id,
        last_seq=data.update_id,
        prev_seq=data.update_id - 1,
        exchange_ts_ns=(msg.cts or msg.ts) * _NS_PER_MS,
        receive_ts_ns=receive_ts_ns,
    )


def trade(msg: PublicTrade, venue: str, symbol: str, receive_ts_ns: int) -> Trade:
    """The :class:`Trade` of one publicTrade entry (Bybit's ``S`` is already the taker's side)."""
    return Trade(
        venue=venue,
        symbol=symbol,
        price=msg.price,
        size=msg.size,
        side=Side.BUY if msg.side == "Buy" else Side.SELL,
        trade_id=msg.trade_id,
        exchange_ts_ns=msg.time_ms * _NS_PER_MS,
        receive_ts_ns=receive_ts_ns,
    )


# -- REST: instruments-info -------------------------------------------------------------------------------


class _PriceFilter(msgspec.Struct):
    tick_size: str = msgspec.field(name="tickSize", default="")


class _LotSizeFilter(msgspec.Struct):
    base_precision: str = msgspec.field(name="basePrecision", default="")  # spot: the quantity step
    qty_step: str = msgspec.field(name="qtyStep", default="")  # linear, inverse
    min_order_amt: str = msgspec.field(name="minOrderAmt", default="")  # spot: min notional
    min_notional_value: str = msgspec.field(name="minNotionalValue", default="")  # linear


class InstrumentInfo(msgspec.Struct):
    """One entry of ``GET /v5/market/instruments-info``, with the fields botframe uses."""

    symbol: str
    base_coin: str = msgspec.field(name="baseCoin")
    quote_coin: str = msgspec.field(name="quoteCoin")
    settle_coin: str = msgspec.field(name="settleCoin", default="")
    contract_type: str = msgspec.field(name="contractType", default="")
    status: str = ""
    delivery_time_ms: str = msgspec.field(name="deliveryTime", default="0")
    price_filter: _PriceFilter = msgspec.field(name="priceFilter", default_factory=_PriceFilter)
    lot_size_filter: _LotSizeFilter = msgspec.field(name="lotSizeFilter", default_factory=_LotSizeFilter)


class _Result(msgspec.Struct):
    items: list[InstrumentInfo] = msgspec.field(name="list", default_factory=list)
    category: str = ""
    next_page_cursor: str = msgspec.field(name="nextPageCursor", default="")


class _Response(msgspec.Struct):
    ret_code: int = msgspec.field(name="retCode")
    ret_msg: str = msgspec.field(name="retMsg", default="")
    result: _Result | None = None


class InstrumentsPage(msgspec.Struct, frozen=True):
    """One page of instruments, and the cursor of the next ("" when it was the last)."""

    instruments: list[InstrumentInfo]
    next_cursor: str = ""


_INSTRUMENTS_DECODER = msgspec.json.Decoder(_Response)


def decode_instruments(body: bytes | str) -> InstrumentsPage:
    """Decode an instruments-info answer; ``ValueError`` when Bybit refused (retCode != 0) or it is unreadable."""
    try:
        response = _INSTRUMENTS_DECODER.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"unreadable instruments-info answer: {exc}") from exc
    if response.ret_code != 0 or response.result is None:
        raise ValueError(f"instruments-info refused: retCode={response.ret_code} retMsg={response.ret_msg!r}")
    return InstrumentsPage(response.result.items, response.result.next_page_cursor)


class UnknownSymbolError(KeyError):
    """A configured symbol that the venue's instruments list does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


def unified_symbol(info: InstrumentInfo, category: Category) -> str:
    """ccxt's unified name of a Bybit instrument (see the module docstring for the forms)."""
    spot_name = f"{info.base_coin}/{info.quote_coin}"
    if category is Category.SPOT:
        return spot_name
    settle = info.settle_coin or (info.base_coin if category is Category.INVERSE else info.quote_coin)
    delivery = int(info.delivery_time_ms or 0) if info.delivery_time_ms.isdigit() else 0
    if "Perpetual" in info.contract_type or not delivery:
        return f"{spot_name}:{settle}"
    expiry = datetime.fromtimestamp(delivery / 1000, tz=UTC).strftime("%y%m%d")
    return f"{spot_name}:{settle}-{expiry}"


def instrument_from_info(info: InstrumentInfo, venue: str, category: Category) -> Instrument:
    """The :class:`~botframe.venues.Instrument` of one instruments-info entry, rules kept as exact text."""
    lots = info.lot_size_filter
    return Instrument(
        venue=venue,
        symbol=unified_symbol(info, category),
        venue_symbol=info.symbol,
        base=info.base_coin,
        quote=info.quote_coin,
        tick_size=info.price_filter.tick_size or "0",
        lot_size=lots.qty_step or lots.base_precision or "0",
        min_notional=lots.min_order_amt or lots.min_notional_value or "0",
    )


class SymbolMap:
    """Unified symbol <-> Bybit symbol, built from instruments-info.

    ``venue_symbol("BTC/USDT") == "BTCUSDT"``, ``unified("BTCUSDT") == "BTC/USDT"``.
    """

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        self._by_unified: dict[str, Instrument] = {}
        self._by_venue: dict[str, Instrument] = {}
        for inst in instruments:
            self._by_unified[inst.symbol] = inst
            self._by_venue[inst.venue_symbol] = inst

    @classmethod
    def from_infos(cls, infos: Iterable[InstrumentInfo], venue: str, category: Category) -> SymbolMap:
        return cls(instrument_from_info(info, venue, category) for info in infos)

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
                hint = f"; contracts carry the settle coin, e.g. {', '.join(map(repr, close))}"
        raise UnknownSymbolError(f"symbol {unified!r} is not listed by the venue{hint}")

    def venue_symbol(self, unified: str) -> str:
        return self.instrument(unified).venue_symbol

    def unified(self, venue_symbol: str) -> str:
        inst = self._by_venue.get(venue_symbol)
        if inst is None:
            raise UnknownSymbolError(f"venue symbol {venue_symbol!r} is not listed by the venue")
        return inst.symbol
