"""Kraken wire formats (WebSocket v1 and v2, REST AssetPairs), decoded into one set of typed messages.

Pure code: bytes in, messages out. Both protocol versions decode into the same messages, so the client
handles them alike; the one difference that matters is kept visible: a v1 book frame carries its numbers
as strings, kept as text (:class:`V1Book`) because the checksum hashes that text, while a v2 book frame
carries JSON numbers, decoded to floats in C by msgspec (:class:`V2Book`), whose checksum is recomputed
from the instrument's precision (SPECS.md section 2: the only method that survives a re-serialized frame).

Frames (SPECS.md sections 1 and 2)::

    v1  book       [chanId, {"as":[[p,v,ts],..],"bs":[..]}, "book-10", "XBT/USD"]          snapshot
                   [chanId, {"a":[[p,v,ts(,"r")],..]}(, {"b":[..],"c":"crc"}), "book-10", "XBT/USD"]
        trade      [chanId, [[p,v,time,"b"|"s","m"|"l",misc],..], "trade", "XBT/USD"]
        events     {"event":"heartbeat"|"systemStatus"|"subscriptionStatus"|"pong"|"error",..}
    v2  book       {"channel":"book","type":"snapshot"|"update","data":[{"symbol","bids":[{"price","qty"}],
                    "asks":[..],"checksum":crc,"timestamp":"RFC3339"}]}
        trade      {"channel":"trade","type":..,"data":[{"symbol","side","price","qty","trade_id","timestamp"}]}
        instrument {"channel":"instrument","type":..,"data":{"pairs":[{"symbol","price_precision",..}]}}
        heartbeat  {"channel":"heartbeat"};  status {"channel":"status","data":[{"system":"online",..}]}
        responses  {"method":"subscribe"|"unsubscribe"|"pong","success":bool,"error":..,"symbol":..}

Symbols: botframe uses ccxt's unified names. Kraken v1 names pairs by AssetPairs' ``wsname``
(``XBT/USD``); v2 uses ``BTC/USD`` (``XBT`` and ``XDG`` become ``BTC`` and ``DOGE``); the unified name
applies ccxt's Kraken currency table to the ``wsname`` halves (``XBT/USD`` -> ``BTC/USD``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

from botframe.events import Level, Side
from botframe.venues import Instrument

__all__ = [
    "AssetPair",
    "AssetPairsResponse",
    "FrameError",
    "Heartbeat",
    "Ignored",
    "InstrumentInfo",
    "InstrumentUpdate",
    "KrakenMessage",
    "KrakenPair",
    "KrakenSymbolMap",
    "KrakenTrade",
    "Pong",
    "RequestError",
    "SubscriptionChange",
    "SubscriptionState",
    "SystemStatus",
    "UnknownSymbolError",
    "V1Book",
    "V1Decoder",
    "V2Book",
    "V2Decoder",
    "decimals_step",
    "decode_asset_pairs",
    "pair_from_instrument",
    "rfc3339_ns",
    "seconds_text_ns",
    "unified_currency",
    "v1_request",
    "v2_request",
]

TextLevel = tuple[str, str]

#: ccxt's Kraken currency names (``commonCurrencies``), for the halves of a ``wsname``.
_UNIFIED_CURRENCY = {
    "XBT": "BTC",
    "XDG": "DOGE",
    "LUNA": "LUNC",
    "LUNA2": "LUNA",
    "UST": "USTC",
    "REP": "REPV1",
    "REPV2": "REP",
    "FEE": "KFEE",
}
#: What Kraken v2 renamed relative to v1's ``wsname``.
_V2_CURRENCY = {"XBT": "BTC", "XDG": "DOGE"}


def unified_currency(code: str) -> str:
    """ccxt's name of a Kraken currency code as written in a ``wsname`` (``XBT`` -> ``BTC``)."""
    return _UNIFIED_CURRENCY.get(code, code)


def decimals_step(decimals: int) -> str:
    """The step of a number with ``decimals`` places, as exact text (``3`` -> ``"0.001"``)."""
    return format(Decimal(1).scaleb(-decimals), "f")


def seconds_text_ns(text: str) -> int:
    """Kraken v1's ``"1618678133.383209"`` (seconds, as text) in integer nanoseconds, exactly."""
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def rfc3339_ns(text: str) -> int:
    """Kraken v2's ``"2025-05-06T09:17:26.208075Z"`` in integer nanoseconds (0 when empty)."""
    if not text:
        return 0
    head, _, frac = text.rstrip("Z").partition(".")
    secs = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


# -- messages both versions decode into ----------------------------------------------------------------


class FrameError(ValueError):
    """A frame that is not what its venue sends; ``symbol``/``channel`` name what it was about, if known."""

    def __init__(self, message: str, *, symbol: str = "", channel: str = "") -> None:
        super().__init__(message)
        self.symbol = symbol
        self.channel = channel


@dataclass(frozen=True, slots=True)
class V1Book:
    """A v1 book snapshot or update; levels are ``(price_text, volume_text)`` exactly as sent."""

    symbol: str  # the v1 pair name, "XBT/USD"
    snapshot: bool
    bids: list[TextLevel]
    asks: list[TextLevel]
    checksum: int | None  # None on snapshots (v1 snapshots carry none)
    exchange_ts_ns: int


@dataclass(frozen=True, slots=True)
class V2Book:
    """A v2 book snapshot or update for one symbol; levels are floats decoded from JSON numbers."""

    symbol: str  # the v2 symbol, "BTC/USD"
    snapshot: bool
    bids: list[Level]
    asks: list[Level]
    checksum: int | None  # never None on an update (the decoder refuses one without it)
    exchange_ts_ns: int


@dataclass(frozen=True, slots=True)
class KrakenTrade:
    """One public trade; ``side`` is the taker's."""

    symbol: str  # the version's own symbol
    price: float
    qty: float
    side: Side
    trade_id: str
    exchange_ts_ns: int
    snapshot: bool = False  # part of the recent-trades snapshot sent on subscribe (v2)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The venue's keep-alive; it only proves the connection is alive."""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to an application-level ping."""


@dataclass(frozen=True, slots=True)
class SystemStatus:
    """The exchange's state: ``online``, ``maintenance``, ``cancel_only``, ``post_only``, ``limit_only``."""

    status: str
    version: str = ""

    @property
    def online(self) -> bool:
        return self.status == "online"


class SubscriptionState(enum.StrEnum):
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """An ack (or refusal) of a subscribe/unsubscribe for one symbol of one channel."""

    channel: str  # "book", "trade", "instrument"
    symbol: str  # the version's own symbol; "" when the request named none
    state: SubscriptionState
    error: str = ""


@dataclass(frozen=True, slots=True)
class RequestError:
    """A request the venue refused without naming a subscription (malformed request, unknown method)."""

    error: str
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    """One pair of the v2 ``instrument`` channel: precisions and trading rules, rules kept as text."""

    symbol: str
    base: str
    quote: str
    price_precision: int
    qty_precision: int
    price_increment: str
    qty_increment: str
    cost_min: str
    status: str


@dataclass(frozen=True, slots=True)
class InstrumentUpdate:
    """The v2 ``instrument`` channel's pairs (a snapshot lists all of them)."""

    pairs: list[InstrumentInfo]
    snapshot: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed frame of something the client does not read (ticker, ohlc, spread...)."""

    what: str


KrakenMessage = (
    V1Book
    | V2Book
    | KrakenTrade
    | Heartbeat
    | Pong
    | SystemStatus
    | SubscriptionChange
    | RequestError
    | InstrumentUpdate
    | Ignored
)


# -- v1 -------------------------------------------------------------------------------------------------

_SIDES = {"b": Side.BUY, "s": Side.SELL, "buy": Side.BUY, "sell": Side.SELL}


def _text_levels(raw: Any) -> list[TextLevel]:
    if not isinstance(raw, list):
        raise TypeError("levels are not a list")
    out: list[TextLevel] = []
    for lv in raw:
        p, v = lv[0], lv[1]
        if not isinstance(p, str) or not isinstance(v, str):
            raise TypeError("a level's price or volume is not a string")
        out.append((p, v))
    return out


def _last_level_ts(asks: list[Any], bids: list[Any]) -> int:
    """The newest level timestamp of a v1 frame (each level is ``[price, volume, "seconds.micros"]``)."""
    return max((seconds_text_ns(lv[2]) for lv in (*asks[-1:], *bids[-1:])), default=0)


class V1Decoder:
    """Decodes Kraken v1 frames; one instance per client, reused."""

    __slots__ = ("_decode",)

    def __init__(self) -> None:
        self._decode = msgspec.json.Decoder().decode

    def decode(self, frame: bytes | str) -> list[KrakenMessage]:
        """The messages of one frame; raises :class:`FrameError` for anything Kraken v1 does not send."""
        try:
            obj = self._decode(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"not JSON: {exc}", **_v1_identity(frame)) from None
        try:
            if isinstance(obj, list):
                return self._channel_frame(obj)
            if isinstance(obj, dict):
                return [_v1_event(obj)]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            if isinstance(exc, FrameError):
                raise
            # A channel frame ends with its channel name and pair; anything shorter names nothing.
            named = isinstance(obj, list) and len(obj) >= 4 and isinstance(obj[-1], str) and "/" in obj[-1]
            symbol = obj[-1] if named else ""
            channel = obj[-2] if named and isinstance(obj[-2], str) else ""
            raise FrameError(f"unexpected v1 frame: {exc!r}", symbol=symbol, channel=channel) from None
        raise FrameError("a v1 frame is an array or an object")

    @staticmethod
    def _channel_frame(obj: list[Any]) -> list[KrakenMessage]:
        channel = obj[-2]
        pair = obj[-1]
        if not isinstance(channel, str) or not isinstance(pair, str) or len(obj) < 4:
            raise TypeError("channel name and pair must close a channel frame")
        if channel.startswith("book"):
            parts = obj[1:-2]
            first = parts[0]
            if "as" in first or "bs" in first:
                raw_asks = first.get("as", [])
                raw_bids = first.get("bs", [])
                return [V1Book(pair, True, _text_levels(raw_bids), _text_levels(raw_asks), None,
                               _last_level_ts(raw_asks, raw_bids))]
            raw_asks = []
            raw_bids = []
            for part in parts:
                raw_asks += part.get("a", ())
                raw_bids += part.get("b", ())
            checksum = parts[-1].get("c")
            if not isinstance(checksum, str):
                raise TypeError('a v1 book update has no "c" checksum in its last part')
            return [V1Book(pair, False, _text_levels(raw_bids), _text_levels(raw_asks), int(checksum),
                           _last_level_ts(raw_asks, raw_bids))]
        if channel == "trade":
            # v1 trades carry no id; price, volume, time, side (b/s), order type (m/l), misc.
            return [KrakenTrade(pair, float(t[0]), float(t[1]), _SIDES[t[3]], "", seconds_text_ns(t[2]))
                    for t in obj[1]]
        return [Ignored(channel)]


def _v1_identity(frame: bytes | str) -> dict[str, str]:
    """Channel and pair of a v1 frame that did not parse, from its tail (``..,"book-10","XBT/USD"]``)."""
    raw = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
    m = _V1_TAIL.search(raw[-80:])
    if m is None:
        return {}
    return {"channel": m.group(1).decode("utf-8", "replace"), "symbol": m.group(2).decode("utf-8", "replace")}


_V1_TAIL = re.compile(rb'"([a-z]+(?:-\d+)?)"\s*,\s*"([A-Za-z0-9.]+/[A-Za-z0-9.]+)"\s*\]\s*$')


def _v1_event(obj: dict[str, Any]) -> KrakenMessage:
    event = obj["event"]
    if event == "heartbeat":
        return Heartbeat()
    if event == "systemStatus":
        return SystemStatus(str(obj["status"]), str(obj.get("version", "")))
    if event == "subscriptionStatus":
        sub = obj.get("subscription") or {}
        name = str(sub.get("name") or obj.get("channelName", "")).split("-", 1)[0]
        return SubscriptionChange(
            name, str(obj.get("pair", "")), SubscriptionState(obj["status"]), str(obj.get("errorMessage", ""))
        )
    if event == "pong":
        return Pong()
    if event == "error":
        return RequestError(str(obj.get("errorMessage", "")))
    return Ignored(f"event {event}")


# -- v2 -------------------------------------------------------------------------------------------------
# gc=False: these structs hold no reference cycles, and one is made per level.


class _V2Level(msgspec.Struct, gc=False):
    price: float
    qty: float


class _V2BookData(msgspec.Struct, gc=False):
    symbol: str
    bids: list[_V2Level] = []
    asks: list[_V2Level] = []
    checksum: int | None = None
    timestamp: str = ""


class _V2BookFrame(msgspec.Struct, tag_field="channel", tag="book", gc=False):
    type: str
    data: list[_V2BookData]


class _V2TradeData(msgspec.Struct, gc=False):
    symbol: str
    side: Literal["buy", "sell"]
    price: float
    qty: float
    trade_id: int = 0
    timestamp: str = ""


class _V2TradeFrame(msgspec.Struct, tag_field="channel", tag="trade", gc=False):
    type: str
    data: list[_V2TradeData]


class _V2Heartbeat(msgspec.Struct, tag_field="channel", tag="heartbeat"):
    pass


class _V2StatusData(msgspec.Struct):
    system: str = ""
    version: str = ""


class _V2StatusFrame(msgspec.Struct, tag_field="channel", tag="status"):
    type: str = ""
    data: list[_V2StatusData] = []


class _V2InstrumentPair(msgspec.Struct):
    symbol: str
    price_precision: int
    qty_precision: int
    base: str = ""
    quote: str = ""
    status: str = ""
    # Raw: the exact JSON text of the number, so a tick of 1e-05 stays exact.
    price_increment: msgspec.Raw = msgspec.Raw(b"0")
    qty_increment: msgspec.Raw = msgspec.Raw(b"0")
    cost_min: msgspec.Raw = msgspec.Raw(b"0")


class _V2InstrumentData(msgspec.Struct):
    pairs: list[_V2InstrumentPair] = []


class _V2InstrumentFrame(msgspec.Struct, tag_field="channel", tag="instrument"):
    type: str
    data: _V2InstrumentData


_V2ChannelFrame = _V2BookFrame | _V2TradeFrame | _V2Heartbeat | _V2StatusFrame | _V2InstrumentFrame


class _V2Result(msgspec.Struct):
    channel: str = ""
    symbol: str = ""


class _V2Response(msgspec.Struct):
    method: str
    success: bool = True
    error: str = ""
    symbol: str = ""
    result: _V2Result | None = None


class _V2Envelope(msgspec.Struct):
    channel: str = ""
    method: str = ""


def _number_text(raw: msgspec.Raw) -> str:
    """A JSON number's text as a plain decimal (``1e-05`` -> ``0.00001``); ``"0"`` when not a number."""
    try:
        return format(Decimal(bytes(raw).decode()).normalize(), "f")
    except (InvalidOperation, UnicodeDecodeError):
        return "0"


_V2_BOOK_TYPES = frozenset({"snapshot", "update"})


def _first_symbol(data: list[_V2BookData]) -> str:
    """The symbol of a v2 book frame's first entry: names the book an unreadable frame concerns."""
    return data[0].symbol if data else ""


_V2_SYMBOL = re.compile(rb'"symbol"\s*:\s*"([^"]{1,40})"')
_V2_CHANNEL = re.compile(rb'"channel"\s*:\s*"([a-z]{1,20})"')


class V2Decoder:
    """Decodes Kraken v2 frames; one instance per client, reused."""

    __slots__ = ("_channel", "_envelope", "_response")

    def __init__(self) -> None:
        self._channel = msgspec.json.Decoder(_V2ChannelFrame).decode
        self._response = msgspec.json.Decoder(_V2Response).decode
        self._envelope = msgspec.json.Decoder(_V2Envelope).decode

    def decode(self, frame: bytes | str) -> list[KrakenMessage]:
        """The messages of one frame; raises :class:`FrameError` for anything Kraken v2 does not send."""
        try:
            msg = self._channel(frame)
        except msgspec.DecodeError:
            return [self._other(frame)]
        if isinstance(msg, _V2BookFrame):
            if msg.type not in _V2_BOOK_TYPES:
                # Read as an update it would change the book unproven: as unreadable as broken JSON.
                raise FrameError(f"unknown book frame type {msg.type!r}", symbol=_first_symbol(msg.data),
                                 channel="book")
            snapshot = msg.type == "snapshot"
            if not snapshot:
                for d in msg.data:
                    if d.checksum is None:
                        # Kraken v2 always sends one; an update without it could only be applied unproven.
                        raise FrameError("book update without its checksum", symbol=d.symbol, channel="book")
            return [
                V2Book(
                    d.symbol,
                    snapshot,
                    [(lv.price, lv.qty) for lv in d.bids],
                    [(lv.price, lv.qty) for lv in d.asks],
                    d.checksum,
                    rfc3339_ns(d.timestamp) if d.timestamp else 0,
                )
                for d in msg.data
            ]
        if isinstance(msg, _V2TradeFrame):
            snapshot = msg.type == "snapshot"
            return [
                KrakenTrade(
                    t.symbol, t.price, t.qty, _SIDES[t.side], str(t.trade_id), rfc3339_ns(t.timestamp), snapshot
                )
                for t in msg.data
            ]
        if isinstance(msg, _V2Heartbeat):
            return [Heartbeat()]
        if isinstance(msg, _V2StatusFrame):
            data = msg.data[0] if msg.data else _V2StatusData()
            return [SystemStatus(data.system, data.version)]
        return [
            InstrumentUpdate(
                [
                    InstrumentInfo(
                        p.symbol,
                        p.base,
                        p.quote,
                        p.price_precision,
                        p.qty_precision,
                        _number_text(p.price_increment),
                        _number_text(p.qty_increment),
                        _number_text(p.cost_min),
                        p.status,
                    )
                    for p in msg.data.pairs
                ],
                msg.type == "snapshot",
            )
        ]

    def _other(self, frame: bytes | str) -> KrakenMessage:
        try:
            resp = self._response(frame)
        except msgspec.DecodeError:
            pass
        else:
            if resp.method == "pong":
                return Pong()
            result = resp.result
            channel = result.channel if result is not None else ""
            symbol = resp.symbol or (result.symbol if result is not None else "")
            if not resp.success:
                if channel or resp.method in ("subscribe", "unsubscribe"):
                    return SubscriptionChange(channel, symbol, SubscriptionState.ERROR, resp.error)
                return RequestError(resp.error, symbol)
            state = SubscriptionState.UNSUBSCRIBED if resp.method == "unsubscribe" else SubscriptionState.SUBSCRIBED
            return SubscriptionChange(channel, symbol, state)
        try:
            env = self._envelope(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"not JSON: {exc}", **_v2_identity(frame)) from None
        if env.channel and env.channel not in ("book", "trade", "heartbeat", "status", "instrument"):
            return Ignored(env.channel)
        if env.method and not env.channel:
            return Ignored(f"method {env.method}")
        raise FrameError(f"unexpected v2 frame on channel {env.channel!r}", **_v2_identity(frame))


def _v2_identity(frame: bytes | str) -> dict[str, str]:
    raw = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
    out = {}
    m = _V2_CHANNEL.search(raw)
    if m is not None:
        out["channel"] = m.group(1).decode()
    m = _V2_SYMBOL.search(raw)
    if m is not None:
        out["symbol"] = m.group(1).decode("utf-8", "replace")
    return out


# -- requests -------------------------------------------------------------------------------------------

_encode = msgspec.json.encode


def v1_request(event: Literal["subscribe", "unsubscribe"], channel: str, pairs: list[str], depth: int = 0) -> str:
    """A v1 (un)subscribe frame: ``{"event":"subscribe","pair":[..],"subscription":{"name":"book",..}}``."""
    subscription: dict[str, Any] = {"name": channel}
    if channel == "book" and depth:
        subscription["depth"] = depth
    return _encode({"event": event, "pair": pairs, "subscription": subscription}).decode()


def v2_request(
    method: Literal["subscribe", "unsubscribe"],
    channel: str,
    symbols: list[str] | None = None,
    depth: int = 0,
) -> str:
    """A v2 (un)subscribe frame: ``{"method":"subscribe","params":{"channel":"book","symbol":[..],..}}``."""
    params: dict[str, Any] = {"channel": channel}
    if symbols is not None:
        params["symbol"] = symbols
    if channel == "book" and depth:
        params["depth"] = depth
    if method == "subscribe":
        params["snapshot"] = channel != "trade"  # recent trades are history, not news
    return _encode({"method": method, "params": params}).decode()


# -- REST AssetPairs, symbols and instruments -------------------------------------------------------------


class AssetPair(msgspec.Struct):
    """One entry of ``GET /0/public/AssetPairs`` (only what botframe uses; rules kept as text)."""

    altname: str = ""
    wsname: str = ""
    base: str = ""
    quote: str = ""
    pair_decimals: int = 0
    lot_decimals: int = 8
    ordermin: str = ""
    costmin: str = ""
    tick_size: str = ""
    status: str = "online"


class AssetPairsResponse(msgspec.Struct):
    error: list[str]
    result: dict[str, AssetPair] = {}


_ASSET_PAIRS = msgspec.json.Decoder(AssetPairsResponse)


def decode_asset_pairs(body: bytes | str) -> AssetPairsResponse:
    """Decode a REST AssetPairs response; raises ``msgspec.DecodeError`` when it is not one."""
    return _ASSET_PAIRS.decode(body)


class UnknownSymbolError(KeyError):
    """A configured symbol that the venue does not list."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class KrakenPair:
    """One pair under its three names, with the precisions its checksums and orders use."""

    instrument: Instrument
    v1_name: str  # "XBT/USD"; "" when known only from the v2 instrument channel
    v2_name: str  # "BTC/USD"
    price_decimals: int
    qty_decimals: int


def _pair_from_rest(venue: str, p: AssetPair, api_version: str) -> KrakenPair | None:
    if "/" not in p.wsname:
        return None  # dark-pool and other pairs without a WebSocket name
    base, quote = p.wsname.split("/", 1)
    v2_name = f"{_V2_CURRENCY.get(base, base)}/{_V2_CURRENCY.get(quote, quote)}"
    unified = f"{unified_currency(base)}/{unified_currency(quote)}"
    return KrakenPair(
        instrument=Instrument(
            venue=venue,
            symbol=unified,
            venue_symbol=p.wsname if api_version == "v1" else v2_name,
            base=unified_currency(base),
            quote=unified_currency(quote),
            tick_size=p.tick_size or decimals_step(p.pair_decimals),
            lot_size=decimals_step(p.lot_decimals),
            min_notional=p.costmin or "0",
        ),
        v1_name=p.wsname,
        v2_name=v2_name,
        price_decimals=p.pair_decimals,
        qty_decimals=p.lot_decimals,
    )


def pair_from_instrument(venue: str, info: InstrumentInfo) -> KrakenPair:
    """The pair of a v2 ``instrument`` channel entry (used when no REST URL is configured)."""
    base, _, quote = info.symbol.partition("/")
    unified = f"{unified_currency(info.base or base)}/{unified_currency(info.quote or quote)}"
    return KrakenPair(
        instrument=Instrument(
            venue=venue,
            symbol=unified,
            venue_symbol=info.symbol,
            base=unified.split("/", 1)[0],
            quote=unified.split("/", 1)[1],
            tick_size=info.price_increment if info.price_increment != "0" else decimals_step(info.price_precision),
            lot_size=info.qty_increment if info.qty_increment != "0" else decimals_step(info.qty_precision),
            min_notional=info.cost_min,
        ),
        v1_name="",
        v2_name=info.symbol,
        price_decimals=info.price_precision,
        qty_decimals=info.qty_precision,
    )


class KrakenSymbolMap:
    """Unified symbol <-> Kraken pair (v1 and v2 names), built from AssetPairs or the instrument channel."""

    def __init__(self, pairs: Iterable[KrakenPair]) -> None:
        self._by_unified: dict[str, KrakenPair] = {}
        self._by_wire: dict[str, KrakenPair] = {}
        for pair in pairs:
            self._by_unified[pair.instrument.symbol] = pair
            if pair.v1_name:
                self._by_wire[pair.v1_name] = pair
            self._by_wire[pair.v2_name] = pair

    @classmethod
    def from_asset_pairs(cls, resp: AssetPairsResponse, venue: str, api_version: str) -> KrakenSymbolMap:
        pairs = (_pair_from_rest(venue, p, api_version) for p in resp.result.values())
        return cls(p for p in pairs if p is not None)

    def __len__(self) -> int:
        return len(self._by_unified)

    def __contains__(self, unified: object) -> bool:
        return unified in self._by_unified

    def pair(self, unified: str) -> KrakenPair:
        """The pair of a unified symbol; the error suggests the unified spelling of a Kraken name."""
        found = self._by_unified.get(unified)
        if found is not None:
            return found
        by_wire = self._by_wire.get(unified) or self._by_wire.get(unified.upper())
        hint = f"; did you mean {by_wire.instrument.symbol!r}?" if by_wire is not None else ""
        raise UnknownSymbolError(f"symbol {unified!r} is not listed by Kraken{hint}")
