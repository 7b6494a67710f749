"""OKX v5 public wire formats (WebSocket ``books`` and ``trades``, REST instruments), decoded into typed messages.

Pure code: bytes in, messages out. Every push decodes into one msgspec struct in C; book levels stay the
exchange's strings (``["30238.8","2","0","1"]``: price, size, deprecated, order count) because the
checksum hashes that text (SPECS.md section 3).

Frames::

    push      {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot"|"update","data":[{"asks":[..],
               "bids":[..],"ts":"ms","checksum":signed32,"seqId":n,"prevSeqId":n}]}
              {"arg":{"channel":"trades","instId":..},"data":[{"instId","tradeId","px","sz","side","ts"}]}
    events    {"event":"subscribe"|"unsubscribe","arg":{..},"connId":..}
              {"event":"error","code":"60012","msg":"..","connId":..}
              {"event":"notice","code":"64008","msg":"..service upgrade.."}   (reconnect soon)
    keepalive the text "ping" from us, the text "pong" back

Symbols: botframe uses ccxt's unified names. Spot ``BTC-USDT`` is ``BTC/USDT``; a perpetual swap
``BTC-USDT-SWAP`` is ``BTC/USDT:USDT`` (settle currency after the colon; inverse ``BTC-USD-SWAP`` is
``BTC/USD:BTC``); a future ``BTC-USD-220527`` is ``BTC/USD:BTC-220527``. Options are not supported.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from botframe.events import Side
from botframe.venues import Instrument

__all__ = [
    "FrameError",
    "Ignored",
    "InstType",
    "InstrumentInfo",
    "InstrumentsResponse",
    "Notice",
    "OkxBook",
    "OkxDecoder",
    "OkxMessage",
    "OkxSymbolMap",
    "OkxTrade",
    "Pong",
    "RequestError",
    "SubscriptionChange",
    "SubscriptionState",
    "UnknownSymbolError",
    "decode_instruments",
    "inst_type_of",
    "instrument_from_info",
    "request",
    "unified_symbol",
]

TextLevel = tuple[str, str]
_NS_PER_MS = 1_000_000


class FrameError(ValueError):
    """A frame that is not what OKX sends; ``symbol``/``channel`` name what it was about, if known."""

    def __init__(self, message: str, *, symbol: str = "", channel: str = "") -> None:
        super().__init__(message)
        self.symbol = symbol
        self.channel = channel


@dataclass(frozen=True, slots=True)
class OkxBook:
    """A ``books`` snapshot or update of one instrument; levels are ``(price_text, size_text)`` as sent.

    ``checksum`` 0 means absent (OKX sends 0 once it stops computing it); ``seq_id``/``prev_seq_id`` are
    None in frames from before OKX added them.
    """

    inst_id: str
    snapshot: bool
    bids: list[TextLevel]
    asks: list[TextLevel]
    checksum: int
    seq_id: int | None
    prev_seq_id: int | None
    exchange_ts_ns: int


@dataclass(frozen=True, slots=True)
class OkxTrade:
    """One public trade; ``side`` is the taker's."""

    inst_id: str
    price: float
    size: float
    side: Side
    trade_id: str
    exchange_ts_ns: int


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to our text ``ping``."""


class SubscriptionState(enum.StrEnum):
    SUBSCRIBED = "subscribe"
    UNSUBSCRIBED = "unsubscribe"


@dataclass(frozen=True, slots=True)
class SubscriptionChange:
    """An ack of a subscribe/unsubscribe for one channel of one instrument."""

    channel: str
    inst_id: str
    state: SubscriptionState


@dataclass(frozen=True, slots=True)
class RequestError:
    """``{"event":"error"}``: a refused request (OKX names the channel and instrument in ``message``)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """``{"event":"notice"}``: e.g. 64008, the connection will be closed soon for a service upgrade."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed frame of something the client does not read (tickers, connection counts...)."""

    what: str


OkxMessage = OkxBook | OkxTrade | Pong | SubscriptionChange | RequestError | Notice | Ignored


# -- decoding --------------------------------------------------------------------------------------------
# One struct for every frame (pushes and events differ only in which fields are present), so a frame is
# one decode in C; gc=False because none of them holds a reference cycle.


class _Arg(msgspec.Struct, gc=False, rename="camel"):
    channel: str = ""
    inst_id: str = ""


class _Data(msgspec.Struct, gc=False, rename="camel"):
    # books
    asks: list[list[str]] = []
    bids: list[list[str]] = []
    checksum: int = 0
    seq_id: int | None = None
    prev_seq_id: int | None = None
    ts: str = "0"
    # trades
    inst_id: str = ""
    trade_id: str = ""
    px: str = ""
    sz: str = ""
    side: str = ""


class _Frame(msgspec.Struct, gc=False):
    event: str = ""
    arg: _Arg | None = None
    action: str = ""
    data: list[_Data] = []
    code: str | int = ""
    msg: str = ""


_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_INST_ID = re.compile(rb'"instId"\s*:\s*"([^"]{1,64})"')
_CHANNEL = re.compile(rb'"channel"\s*:\s*"([^"]{1,40})"')


def _levels(raw: list[list[str]]) -> list[TextLevel]:
    return [(lv[0], lv[1]) for lv in raw]


class OkxDecoder:
    """Decodes OKX v5 public frames; one instance per client, reused."""

    __slots__ = ("_decode",)

    def __init__(self) -> None:
        self._decode = msgspec.json.Decoder(_Frame).decode

    def decode(self, frame: bytes | str) -> list[OkxMessage]:
        """The messages of one frame; raises :class:`FrameError` for anything OKX does not send."""
        if frame == b"pong" or frame == "pong":
            return [Pong()]
        try:
            msg = self._decode(frame)
        except msgspec.DecodeError as exc:
            raise FrameError(f"unexpected frame: {exc}", **_identity(frame)) from None
        arg = msg.arg
        if msg.event:
            return [self._event(msg)]
        if arg is None:
            raise FrameError("a push without an arg", **_identity(frame))
        try:
            if arg.channel == "books":
                snapshot = msg.action == "snapshot"
                return [
                    OkxBook(
                        arg.inst_id,
                        snapshot,
                        _levels(d.bids),
                        _levels(d.asks),
                        d.checksum,
                        d.seq_id,
                        d.prev_seq_id,
                        int(d.ts) * _NS_PER_MS,
                    )
                    for d in msg.data
                ]
            if arg.channel == "trades":
                return [
                    OkxTrade(d.inst_id or arg.inst_id, float(d.px), float(d.sz), _SIDES[d.side], d.trade_id,
                             int(d.ts) * _NS_PER_MS)
                    for d in msg.data
                ]
        except (IndexError, KeyError, ValueError) as exc:
            raise FrameError(f"unexpected {arg.channel} push: {exc!r}", symbol=arg.inst_id,
                             channel=arg.channel) from None
        return [Ignored(arg.channel)]

    @staticmethod
    def _event(msg: _Frame) -> OkxMessage:
        arg = msg.arg
        if msg.event in ("subscribe", "unsubscribe") and arg is not None:
            return SubscriptionChange(arg.channel, arg.inst_id, SubscriptionState(msg.event))
        if msg.event == "error":
            return RequestError(str(msg.code), msg.msg)
        if msg.event == "notice":
            return Notice(str(msg.code), msg.msg)
        return Ignored(f"event {msg.event}")


def _identity(frame: bytes | str) -> dict[str, str]:
    """Channel and instrument of a frame that did not decode, when its text still shows them."""
    raw = frame.encode("utf-8", "replace") if isinstance(frame, str) else bytes(frame)
    out = {}
    m = _CHANNEL.search(raw)
    if m is not None:
        out["channel"] = m.group(1).decode("utf-8", "replace")
    m = _INST_ID.search(raw)
    if m is not None:
        out["symbol"] = m.group(1).decode("utf-8", "replace")
    return out


def request(op: str, args: list[tuple[str, str]]) -> str:
    """``{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT"},..]}`` for (channel, instId) pairs."""
    return msgspec.json.encode({"op": op, "args": [{"channel": c, "instId": i} for c, i in args]}).decode()


# -- REST instruments, symbols ---------------------------------------------------------------------------


class InstType(enum.StrEnum):
    """OKX instrument types botframe streams (options are not supported)."""

    SPOT = "SPOT"
    SWAP = "SWAP"
    FUTURES = "FUTURES"


class InstrumentInfo(msgspec.Struct, rename="camel"):
    """One entry of ``GET /api/v5/public/instruments`` (only what botframe uses; numbers kept as text)."""

    inst_id: str
    inst_type: str
    base_ccy: str = ""
    quote_ccy: str = ""
    settle_ccy: str = ""
    uly: str = ""
    inst_family: str = ""
    tick_sz: str = "0"
    lot_sz: str = "0"
    min_sz: str = "0"
    exp_time: str = ""
    state: str = "live"


class InstrumentsResponse(msgspec.Struct):
    code: str
    data: list[InstrumentInfo] = []
    msg: str = ""


_INSTRUMENTS = msgspec.json.Decoder(InstrumentsResponse)


def decode_instruments(body: bytes | str) -> InstrumentsResponse:
    """Decode a REST instruments response; raises ``msgspec.DecodeError`` when it is not one."""
    return _INSTRUMENTS.decode(body)


def inst_type_of(unified: str) -> InstType:
    """Which instrument type a unified symbol names: ``BTC/USDT`` spot, ``..:USDT`` swap, ``..:BTC-220527`` future."""
    _, colon, settle = unified.partition(":")
    if not colon:
        return InstType.SPOT
    return InstType.FUTURES if "-" in settle else InstType.SWAP


def unified_symbol(info: InstrumentInfo) -> str:
    """ccxt's unified name of an OKX instrument (see the module docstring for the forms)."""
    if info.inst_type == InstType.SPOT:
        return f"{info.base_ccy}/{info.quote_ccy}"
    family = info.inst_family or info.uly  # "BTC-USD"
    base, _, quote = family.partition("-")
    name = f"{base}/{quote}:{info.settle_ccy}"
    if info.inst_type == InstType.FUTURES:
        name += "-" + info.inst_id.rsplit("-", 1)[-1]  # the expiry, YYMMDD, as in the instId
    return name


def instrument_from_info(info: InstrumentInfo, venue: str) -> Instrument:
    """The :class:`~botframe.venues.Instrument` of one REST instrument (rules as exact text).

    OKX has no minimum notional; ``minSz`` (the minimum order size) is not part of ``Instrument``.
    Derivative sizes (book and orders alike) are in contracts.
    """
    unified = unified_symbol(info)
    base, _, rest = unified.partition("/")
    return Instrument(
        venue=venue,
        symbol=unified,
        venue_symbol=info.inst_id,
        base=base,
        quote=rest.partition(":")[0],
        tick_size=info.tick_sz,
        lot_size=info.lot_sz,
        min_notional="0",
    )


class UnknownSymbolError(KeyError):
    """A configured symbol that OKX does not list."""

    def __str__(self) -> str:  # KeyError would repr() the message, quotes and all
        return str(self.args[0]) if self.args else ""


class OkxSymbolMap:
    """Unified symbol <-> OKX ``instId``, built from REST instruments."""

    def __init__(self, infos: Iterable[InstrumentInfo], venue: str) -> None:
        self._by_unified: dict[str, tuple[Instrument, InstrumentInfo]] = {}
        self._by_inst_id: dict[str, Instrument] = {}
        for info in infos:
            if info.inst_type not in InstType.__members__:
                continue
            inst = instrument_from_info(info, venue)
            self._by_unified[inst.symbol] = (inst, info)
            self._by_inst_id[inst.venue_symbol] = inst

    def __len__(self) -> int:
        return len(self._by_unified)

    def instrument(self, unified: str) -> Instrument:
        """The instrument of a unified symbol; the error suggests the unified spelling of an ``instId``."""
        found = self._by_unified.get(unified)
        if found is not None:
            return found[0]
        by_id = self._by_inst_id.get(unified) or self._by_inst_id.get(unified.replace("/", "-").upper())
        hint = f"; did you mean {by_id.symbol!r}?" if by_id is not None else ""
        if not hint and ":" not in unified:
            close = sorted(s for s in self._by_unified if s.startswith(unified + ":"))[:3]
            if close:
                hint = f"; derivatives carry the settle currency, e.g. {', '.join(map(repr, close))}"
        raise UnknownSymbolError(f"symbol {unified!r} is not listed by OKX{hint}")

    def state(self, unified: str) -> str:
        """OKX's ``state`` of the instrument: ``live``, ``suspend``, ``preopen``..."""
        return self._by_unified[unified][1].state
