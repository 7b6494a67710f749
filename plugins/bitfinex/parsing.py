"""Bitfinex v2 public wire formats (WebSocket ``book`` P0 and ``trades``, REST pair list), decoded.

Pure code: bytes in, messages out. Channel frames are JSON arrays whose meaning depends on the channel
they belong to, known only from the ``subscribed`` event that named its ``chanId``; so the decoder returns
:class:`ChannelData` and the client, which keeps the channel map, reads it with :func:`book_level`,
:func:`book_snapshot_levels` or :func:`trade_execution`.

Numbers are kept as the text Bitfinex wrote (JavaScript's ``Number.toString``: ``1e-8``, ``6.6e-7``,
``0.0000011``): msgspec decodes every float literal with ``float_hook=str`` (SPECS.md section 4 asks for
``json.loads(parse_float=str)``; this is the same in C), and integers are rendered back with ``str``,
which is what JavaScript writes for them too. The checksum hashes that text.

Frames (with the SEQ_ALL flag, every channel frame ends with the connection's sequence number)::

    [chanId, [[PRICE, COUNT, AMOUNT], ..], seq]    book snapshot  (AMOUNT > 0 bid, < 0 ask)
    [chanId, [PRICE, COUNT, AMOUNT], seq]          book update    (COUNT 0 deletes: AMOUNT 1 bid, -1 ask)
    [chanId, [[ID, MTS, AMOUNT, PRICE], ..], seq]  trades snapshot (recent history)
    [chanId, "te", [ID, MTS, AMOUNT, PRICE], seq]  trade executed (AMOUNT < 0: the taker sold)
    [chanId, "tu", [ID, MTS, AMOUNT, PRICE], seq]  the same trade again, with its id settled: ignored
    [chanId, "hb", seq]                            heartbeat
    [chanId, "cs", CHECKSUM, seq]                  OB_CHECKSUM: signed CRC32 of the top 25 levels
    {"event":"info"|"conf"|"subscribed"|"unsubscribed"|"error"|"pong", ..}

Symbols: botframe uses ccxt's unified names. ``tBTCUSD`` is ``BTC/USD``; six-letter pairs split 3/3, longer
ones carry a colon (``tAAVE:USD``); currency codes follow ccxt's Bitfinex table (``UST`` -> ``USDT``,
``IOT`` -> ``IOTA``, ``MNA`` -> ``MANA``...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from botframe.events import Side
from botframe.venues import Instrument

__all__ = [
    "FLAG_OB_CHECKSUM",
    "FLAG_SEQ_ALL",
    "FLAG_TIMESTAMP",
    "INFO_MAINTENANCE_END",
    "INFO_MAINTENANCE_START",
    "INFO_RECONNECT",
    "BitfinexDecoder",
    "BitfinexMessage",
    "BitfinexSymbolMap",
    "BookLevelText",
    "ChannelData",
    "ChecksumFrame",
    "ConfAck",
    "ErrorEvent",
    "FrameError",
    "Heartbeat",
    "Ignored",
    "Info",
    "Pong",
    "Subscribed",
    "TradeExecution",
    "TradeFrame",
    "UnknownSymbolError",
    "Unsubscribed",
    "book_level",
    "book_snapshot_levels",
    "conf_request",
    "decode_pair_list",
    "instrument_for_pair",
    "split_pair",
    "subscribe_request",
    "trade_execution",
    "unified_currency",
    "unsubscribe_request",
]

#: ``conf`` flags (SPECS.md section 4).
FLAG_TIMESTAMP = 32768
FLAG_SEQ_ALL = 65536
FLAG_OB_CHECKSUM = 131072

#: Info codes: please reconnect; maintenance starts; maintenance ended (resubscribe everything).
INFO_RECONNECT = 20051
INFO_MAINTENANCE_START = 20060
INFO_MAINTENANCE_END = 20061

_NS_PER_MS = 1_000_000

#: ccxt's Bitfinex currency names (``commonCurrencies``).
_UNIFIED_CURRENCY = {
    "UST": "USDT", "EUTF0": "EURT", "USTF0": "USDT", "ALG": "ALGO", "AMP": "AMPL", "ATO": "ATOM",
    "BCHABC": "XEC", "BCHN": "BCH", "DAT": "DATA", "DOG": "MDOGE", "DSH": "DASH", "EDO": "PNT", "EUS": "EURS",
    "EUT": "EURT", "HTX": "HT", "IDX": "ID", "IOT": "IOTA", "IQX": "IQ", "LUNA": "LUNC", "LUNA2": "LUNA",
    "MNA": "MANA", "ORS": "ORS Group", "PAS": "PASS", "QSH": "QASH", "QTM": "QTUM", "RBT": "RBTC", "SNG": "SNGLS",
    "STJ": "STORJ", "TERRAUST": "USTC", "TSD": "TUSD", "YGG": "YEED", "YYW": "YOYOW", "UDC": "USDC", "VSY": "VSYS",
    "WAX": "WAXP", "XCH": "XCHF", "ZBT": "ZB",
}


def unified_currency(code: str) -> str:
    """ccxt's name of a Bitfinex currency code (``UST`` -> ``USDT``)."""
    return _UNIFIED_CURRENCY.get(code, code)


class FrameError(ValueError):
    """A frame that is not what Bitfinex sends."""


# -- messages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelData:
    """A snapshot or update on channel ``chan_id``; what ``payload`` means depends on the channel."""

    chan_id: int
    payload: list[Any]
    seq: int | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """``[chanId,"hb",seq]``: the channel is alive (and the sequence moves on)."""

    chan_id: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class ChecksumFrame:
    """``[chanId,"cs",checksum,seq]``: Bitfinex's signed CRC32 of the book's top 25 levels."""

    chan_id: int
    checksum: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class TradeFrame:
    """``[chanId,"te"|"tu",[ID,MTS,AMOUNT,PRICE],seq]``."""

    chan_id: int
    kind: str  # "te" (executed) or "tu" (updated: the same trade again)
    payload: list[Any]
    seq: int | None


@dataclass(frozen=True, slots=True)
class Info:
    """``{"event":"info"}``: the greeting (``version``, platform status) or a code (20051, 20060, 20061)."""

    code: int
    message: str
    platform_status: int | None  # 1 operative, 0 maintenance; None when not said


@dataclass(frozen=True, slots=True)
class ConfAck:
    """``{"event":"conf","status":"OK","flags":F}``."""

    status: str
    flags: int


@dataclass(frozen=True, slots=True)
class Subscribed:
    """``{"event":"subscribed"}``: ``chan_id`` now carries ``channel`` for ``symbol`` (``tBTCUSD``)."""

    channel: str
    chan_id: int
    symbol: str
    prec: str = ""
    length: str = ""


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    chan_id: int
    status: str


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """``{"event":"error"}``: a refused request (10300 subscription failed, 10301 already subscribed...)."""

    code: int
    message: str
    channel: str = ""
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to an application-level ping."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed frame the client does not read."""

    what: str


BitfinexMessage = (
    ChannelData | Heartbeat | ChecksumFrame | TradeFrame | Info | ConfAck | Subscribed | Unsubscribed | ErrorEvent
    | Pong | Ignored
)


# -- decoding --------------------------------------------------------------------------------------------


def _seq(frame: list[Any], at: int) -> int | None:
    """The SEQ_ALL sequence number at ``frame[at]``, when the connection asked for it."""
    if len(frame) > at:
        seq = frame[at]
        if type(seq) is not int:
            raise FrameError(f"sequence number is not an integer: {seq!r}")
        return seq
    return None


class BitfinexDecoder:
    """Decodes Bitfinex v2 frames; one instance per client, reused."""

    __slots__ = ("_decode",)

    def __init__(self) -> None:
        # float_hook=str: every float literal stays the exact text Bitfinex wrote, for the checksum.
        self._decode = msgspec.json.Decoder(float_hook=str).decode

    def decode(self, frame: bytes | str) -> BitfinexMessage:
        """The message of one frame; raises :class:`FrameError` for anything Bitfinex does not send."""
        try:
            obj = self._decode(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"not JSON: {exc}") from None
        if isinstance(obj, list):
            if len(obj) < 2 or type(obj[0]) is not int:
                raise FrameError("a channel frame starts with its chanId")
            chan_id = obj[0]
            body = obj[1]
            if isinstance(body, list):
                return ChannelData(chan_id, body, _seq(obj, 2))
            if body == "hb":
                return Heartbeat(chan_id, _seq(obj, 2))
            if body == "cs":
                checksum = obj[2] if len(obj) > 2 else None
                if type(checksum) is not int:
                    raise FrameError(f"checksum is not an integer: {checksum!r}")
                return ChecksumFrame(chan_id, checksum, _seq(obj, 3))
            if body in ("te", "tu", "fte", "ftu"):
                payload = obj[2] if len(obj) > 2 else None
                if not isinstance(payload, list):
                    raise FrameError("a trade frame carries a trade array")
                return TradeFrame(chan_id, body.removeprefix("f"), payload, _seq(obj, 3))
            raise FrameError(f"unknown channel frame kind {body!r}")
        if isinstance(obj, dict):
            try:
                return _event(obj)
            except (KeyError, TypeError, ValueError) as exc:
                raise FrameError(f"unexpected event: {exc!r}") from None
        raise FrameError("a frame is an array or an object")


def _event(obj: dict[str, Any]) -> BitfinexMessage:
    event = obj["event"]
    if event == "info":
        platform = obj.get("platform")
        status = platform.get("status") if isinstance(platform, dict) else None
        return Info(int(obj.get("code", 0)), str(obj.get("msg", "")), status if type(status) is int else None)
    if event == "conf":
        return ConfAck(str(obj.get("status", "")), int(obj.get("flags", 0)))
    if event == "subscribed":
        return Subscribed(str(obj["channel"]), int(obj["chanId"]), str(obj.get("symbol", "")),
                          str(obj.get("prec", "")), str(obj.get("len", "")))
    if event == "unsubscribed":
        return Unsubscribed(int(obj["chanId"]), str(obj.get("status", "")))
    if event == "error":
        return ErrorEvent(int(obj.get("code", 0)), str(obj.get("msg", "")), str(obj.get("channel", "")),
                          str(obj.get("symbol", "")))
    if event == "pong":
        return Pong()
    return Ignored(f"event {event}")


# -- channel payloads --------------------------------------------------------------------------------------

BookLevelText = tuple[str, int, str]  # (price text, count, amount text); the amount keeps its sign


def _text(value: Any) -> str:
    """A number as Bitfinex wrote it: floats arrive as their text, integers are rendered back."""
    if isinstance(value, str):
        return value
    if type(value) is int:
        return str(value)
    raise FrameError(f"not a number: {value!r}")


def book_level(payload: list[Any]) -> BookLevelText:
    """One P0 book level ``[PRICE, COUNT, AMOUNT]`` as (price text, count, amount text)."""
    if len(payload) != 3 or type(payload[1]) is not int:
        raise FrameError(f"a book level is [PRICE, COUNT, AMOUNT], not {payload!r}"[:200])
    return (_text(payload[0]), payload[1], _text(payload[2]))


def book_snapshot_levels(payload: list[Any]) -> list[BookLevelText]:
    """Every level of a book snapshot (an empty list is an empty book)."""
    return [book_level(lv) if isinstance(lv, list) else _not_a_level(lv) for lv in payload]


def _not_a_level(value: Any) -> BookLevelText:
    raise FrameError(f"a book snapshot holds levels, not {value!r}"[:200])


@dataclass(frozen=True, slots=True)
class TradeExecution:
    """One public trade; ``side`` is the taker's (a negative amount: the taker sold)."""

    trade_id: str
    price: float
    size: float
    side: Side
    exchange_ts_ns: int


def trade_execution(payload: list[Any]) -> TradeExecution:
    """The trade of a ``te`` frame: ``[ID, MTS, AMOUNT, PRICE]``."""
    if len(payload) < 4 or type(payload[0]) is not int or type(payload[1]) is not int:
        raise FrameError(f"a trade is [ID, MTS, AMOUNT, PRICE], not {payload!r}"[:200])
    amount = float(_text(payload[2]))
    return TradeExecution(
        str(payload[0]),
        float(_text(payload[3])),
        abs(amount),
        Side.SELL if amount < 0 else Side.BUY,
        payload[1] * _NS_PER_MS,
    )


# -- requests -------------------------------------------------------------------------------------------

_encode = msgspec.json.encode


def conf_request(*, checksums: bool) -> str:
    """``{"event":"conf","flags":..}``: SEQ_ALL always (gaps), OB_CHECKSUM when asked."""
    flags = FLAG_SEQ_ALL | (FLAG_OB_CHECKSUM if checksums else 0)
    return _encode({"event": "conf", "flags": flags}).decode()


def subscribe_request(channel: str, symbol: str, depth: int = 25) -> str:
    """``{"event":"subscribe","channel":"book","symbol":"tBTCUSD","prec":"P0","freq":"F0","len":"25"}``."""
    request: dict[str, str] = {"event": "subscribe", "channel": channel, "symbol": symbol}
    if channel == "book":
        request.update(prec="P0", freq="F0", len=str(depth))
    return _encode(request).decode()


def unsubscribe_request(chan_id: int) -> str:
    return _encode({"event": "unsubscribe", "chanId": chan_id}).decode()


# -- REST pair list, symbols ------------------------------------------------------------------------------

_PAIR_LIST = msgspec.json.Decoder(list[list[str]])


def decode_pair_list(body: bytes | str) -> list[str]:
    """``GET /v2/conf/pub:list:pair:exchange`` -> ``["BTCUSD", "AAVE:USD", ..]``; ``msgspec.DecodeError`` if not."""
    lists = _PAIR_LIST.decode(body)
    return lists[0] if lists else []


class UnknownSymbolError(KeyError):
    """A configured symbol that Bitfinex does not list."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


def split_pair(pair: str) -> tuple[str, str]:
    """``BTCUSD`` -> (``BTC``, ``USD``); ``AAVE:USD`` -> (``AAVE``, ``USD``)."""
    if ":" in pair:
        base, _, quote = pair.partition(":")
        return base, quote
    return pair[:3], pair[3:]


def instrument_for_pair(pair: str, venue: str) -> Instrument:
    """The instrument of a listed pair. Bitfinex prices have 5 significant digits, not a fixed tick, so
    ``tick_size`` is ``"0"`` (no constraint); amounts have 8 decimals; there is no minimum notional."""
    base, quote = split_pair(pair)
    ubase, uquote = unified_currency(base), unified_currency(quote)
    return Instrument(venue=venue, symbol=f"{ubase}/{uquote}", venue_symbol=f"t{pair}", base=ubase, quote=uquote,
                      tick_size="0", lot_size="0.00000001", min_notional="0")


class BitfinexSymbolMap:
    """Unified symbol <-> Bitfinex trading symbol (``tBTCUSD``), built from the REST pair list."""

    def __init__(self, pairs: Iterable[str], venue: str) -> None:
        self._by_unified: dict[str, Instrument] = {}
        self._by_symbol: dict[str, Instrument] = {}
        for pair in pairs:
            inst = instrument_for_pair(pair, venue)
            self._by_unified[inst.symbol] = inst
            self._by_symbol[inst.venue_symbol] = inst

    def __len__(self) -> int:
        return len(self._by_unified)

    def instrument(self, unified: str) -> Instrument:
        """The instrument of a unified symbol; the error suggests the unified spelling of a Bitfinex name."""
        found = self._by_unified.get(unified)
        if found is not None:
            return found
        raw = unified.replace("/", "").upper()
        by_symbol = self._by_symbol.get(f"t{raw}") or self._by_symbol.get("t" + unified.replace("/", ":").upper())
        hint = f"; did you mean {by_symbol.symbol!r}?" if by_symbol is not None else ""
        raise UnknownSymbolError(f"symbol {unified!r} is not listed by Bitfinex{hint}")
