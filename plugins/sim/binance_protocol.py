"""Binance spot's wire protocol, sans I/O: stream names, stream payloads and REST responses.

Everything here turns model output into the exact bytes Binance sends (field names and order as in
the real captures, prices and sizes as decimal strings with 8 places, Binance's asset precision), and
parses what a client sends. The server owns the sockets; see :mod:`.server`.

Streams served (``<sym>`` is the lower-case venue symbol, e.g. ``btcusdt``):

* ``<sym>@depth@100ms`` (every step with a change) and ``<sym>@depth`` (1000 ms, merged);
* ``<sym>@depth<5|10|20>`` and ``...@100ms``: partial book depth;
* ``<sym>@aggTrade``, ``<sym>@trade``, ``<sym>@bookTicker``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import msgspec

from botframe.events import Side

from .model import FixedPoint, MarketStep, SymbolModel, SymbolSpec, SymbolStep

__all__ = [
    "BINANCE_DECIMALS",
    "BinanceSymbol",
    "BinanceWire",
    "ClientRequest",
    "RestResponse",
    "combined_frame",
    "parse_client_request",
    "valid_stream",
    "venue_symbol",
]

#: Binance writes every spot price and quantity with 8 decimals (its base/quote asset precision).
BINANCE_DECIMALS = 8

_STREAM_RE = re.compile(r"^([a-z0-9]+)@(depth(?:5|10|20)?(?:@100ms|@1000ms)?|aggTrade|trade|bookTicker)$")
_json = msgspec.json.Encoder()


def venue_symbol(symbol: str) -> str:
    """Binance's name of a unified symbol: ``BTC/USDT`` -> ``BTCUSDT``."""
    return symbol.replace("/", "").upper()


def combined_frame(stream: str, payload: bytes) -> bytes:
    """Wrap a raw stream payload as a combined-stream frame ``{"stream":..,"data":..}``."""
    return b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"


@dataclass(frozen=True, slots=True)
class RestResponse:
    """An HTTP answer: status, JSON body, extra headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: int, code: int, msg: str) -> RestResponse:
    return RestResponse(status, _json.encode({"code": code, "msg": msg}))


@dataclass(slots=True)
class BinanceSymbol:
    """One symbol as Binance shows it: name, formatters, and the per-stream state it needs."""

    spec: SymbolSpec
    model: SymbolModel
    name: str  # "BTCUSDT"
    stream_prefix: str  # "btcusdt"
    price: FixedPoint
    qty: FixedPoint
    last_top: tuple[int, int, int, int] | None = None  # bid, bid size, ask, ask size
    slow_first_id: int | None = None  # @depth (1000 ms): merged changes since the last emission
    slow_bids: dict[int, int] = field(default_factory=dict)
    slow_asks: dict[int, int] = field(default_factory=dict)

    def levels(self, levels: Iterable[tuple[int, int]]) -> list[list[str]]:
        pt, qt = self.price.text, self.qty.text
        return [[pt(p), qt(q)] for p, q in levels]


@dataclass(frozen=True, slots=True)
class ClientRequest:
    """A method frame a client sent on the WebSocket (``SUBSCRIBE`` and friends)."""

    method: str
    params: list[object]
    id: int | str | None


def parse_client_request(frame: str | bytes) -> ClientRequest | tuple[int, str, int | str | None]:
    """Parse a client's method frame, or return Binance's ``(code, msg, id)`` error for it."""
    try:
        obj = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        return (3, f"Invalid JSON: {exc}", None)
    if not isinstance(obj, dict):
        return (3, "Invalid JSON: expected an object", None)
    req_id = obj.get("id")
    if req_id is not None and not isinstance(req_id, (int, str)):
        return (2, "Invalid request: request ID must be an unsigned integer", None)
    method = obj.get("method")
    if method not in ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY"):
        return (2, "Invalid request: unknown variant", req_id)
    params = obj.get("params", [])
    if not isinstance(params, list):
        return (2, "Invalid request: params must be a list", req_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        for p in params:
            if not isinstance(p, str) or not _STREAM_RE.match(p):
                return (2, f"Invalid request: invalid stream name {p!r}", req_id)
    return ClientRequest(method, list(params), req_id)


def valid_stream(name: str) -> bool:
    """Whether ``name`` is a stream name this simulator serves (any symbol)."""
    return _STREAM_RE.match(name) is not None


class BinanceWire:
    """Binance frames and REST answers for the simulator's ``binance`` symbols."""

    def __init__(self, models: Sequence[SymbolModel], *, update_interval_ms: int = 100) -> None:
        self.symbols: dict[str, BinanceSymbol] = {}
        self._by_prefix: dict[str, BinanceSymbol] = {}
        for m in models:
            spec = m.spec
            decimals = max(BINANCE_DECIMALS, spec.price_decimals, spec.qty_decimals)
            name = venue_symbol(spec.symbol)
            bs = BinanceSymbol(
                spec,
                m,
                name,
                name.lower(),
                FixedPoint(spec.tick_size, decimals),
                FixedPoint(spec.lot_size, decimals),
            )
            bs.last_top = self._top(bs)
            self.symbols[name] = bs
            self._by_prefix[bs.stream_prefix] = bs
        # @depth without a speed suffix is Binance's 1000 ms stream: merge this many steps per frame.
        self._slow_every = max(1, round(1000 / update_interval_ms))

    @staticmethod
    def _top(bs: BinanceSymbol) -> tuple[int, int, int, int]:
        m = bs.model
        bb, ba = m.best_bid(), m.best_ask()
        return (bb or 0, m.bids.get(bb, 0) if bb else 0, ba or 0, m.asks.get(ba, 0) if ba else 0)

    # -- streams ---------------------------------------------------------------------------------------

    def stream_payloads(self, step: MarketStep, wanted: Mapping[str, object]) -> dict[str, list[bytes]]:
        """Raw payloads of one step, per stream name, for the streams in ``wanted`` only.

        State that must advance every step (the 1000 ms merge, the last best prices) advances even
        when nobody listens, so a later subscriber sees the same stream as an early one.
        """
        out: dict[str, list[bytes]] = {}
        e_ms = step.ts_ns // 1_000_000
        by_symbol = {s.symbol: s for s in step.symbols if s.venue == "binance"}
        for bs in self.symbols.values():
            st = by_symbol.get(bs.spec.symbol)
            prefix = bs.stream_prefix
            if st is not None:
                if st.trades:
                    if f"{prefix}@aggTrade" in wanted:
                        out[f"{prefix}@aggTrade"] = self._agg_trades(bs, st, e_ms)
                    if f"{prefix}@trade" in wanted:
                        out[f"{prefix}@trade"] = self._trades(bs, st, e_ms)
                if st.has_book_changes:
                    payload = self._depth_update(
                        bs, st.first_update_id, st.last_update_id, st.bids, st.asks, e_ms
                    )
                    out[f"{prefix}@depth@100ms"] = [payload]
                    self._merge_slow(bs, st)
            if step.index % self._slow_every == 0 and bs.slow_first_id is not None:
                out[f"{prefix}@depth"] = [
                    self._depth_update(
                        bs,
                        bs.slow_first_id,
                        bs.model.last_update_id,
                        sorted(bs.slow_bids.items(), reverse=True),
                        sorted(bs.slow_asks.items()),
                        e_ms,
                    )
                ]
                out[f"{prefix}@depth@1000ms"] = out[f"{prefix}@depth"]
                bs.slow_first_id = None
                bs.slow_bids.clear()
                bs.slow_asks.clear()
            top = self._top(bs)
            if top != bs.last_top:
                bs.last_top = top
                if f"{prefix}@bookTicker" in wanted:
                    out[f"{prefix}@bookTicker"] = [self._book_ticker(bs, top)]
            for n in (5, 10, 20):
                for suffix, every in (("@100ms", 1), ("", self._slow_every), ("@1000ms", self._slow_every)):
                    name = f"{prefix}@depth{n}{suffix}"
                    if name in wanted and step.index % every == 0:
                        out[name] = [self._partial_depth(bs, n)]
        return out

    def _merge_slow(self, bs: BinanceSymbol, st: SymbolStep) -> None:
        if bs.slow_first_id is None:
            bs.slow_first_id = st.first_update_id
        bs.slow_bids.update(st.bids)
        bs.slow_asks.update(st.asks)

    def _depth_update(
        self,
        bs: BinanceSymbol,
        first: int,
        last: int,
        bids: Iterable[tuple[int, int]],
        asks: Iterable[tuple[int, int]],
        e_ms: int,
    ) -> bytes:
        return _json.encode(
            {
                "e": "depthUpdate",
                "E": e_ms,
                "s": bs.name,
                "U": first,
                "u": last,
                "b": bs.levels(bids),
                "a": bs.levels(asks),
            }
        )

    def _agg_trades(self, bs: BinanceSymbol, st: SymbolStep, e_ms: int) -> list[bytes]:
        pt, qt = bs.price.text, bs.qty.text
        return [
            _json.encode(
                {
                    "e": "aggTrade",
                    "E": e_ms,
                    "s": bs.name,
                    "a": t.trade_id,
                    "p": pt(t.price_ticks),
                    "q": qt(t.qty_lots),
                    "f": t.trade_id,
                    "l": t.trade_id,
                    "T": e_ms,
                    "m": t.aggressor is Side.SELL,
                    "M": True,
                }
            )
            for t in st.trades
        ]

    def _trades(self, bs: BinanceSymbol, st: SymbolStep, e_ms: int) -> list[bytes]:
        pt, qt = bs.price.text, bs.qty.text
        return [
            _json.encode(
                {
                    "e": "trade",
                    "E": e_ms,
                    "s": bs.name,
                    "t": t.trade_id,
                    "p": pt(t.price_ticks),
                    "q": qt(t.qty_lots),
                    "T": e_ms,
                    "m": t.aggressor is Side.SELL,
                    "M": True,
                }
            )
            for t in st.trades
        ]

    def _book_ticker(self, bs: BinanceSymbol, top: tuple[int, int, int, int]) -> bytes:
        pt, qt = bs.price.text, bs.qty.text
        return _json.encode(
            {
                "u": bs.model.last_update_id,
                "s": bs.name,
                "b": pt(top[0]),
                "B": qt(top[1]),
                "a": pt(top[2]),
                "A": qt(top[3]),
            }
        )

    def _partial_depth(self, bs: BinanceSymbol, n: int) -> bytes:
        m = bs.model
        return _json.encode(
            {
                "lastUpdateId": m.last_update_id,
                "bids": bs.levels(m.top_bids(n)),
                "asks": bs.levels(m.top_asks(n)),
            }
        )

    # -- REST ------------------------------------------------------------------------------------------

    def rest(self, path: str, *, now_ms: int, stale_update_id: int | None = None) -> RestResponse | None:
        """Answer ``GET path`` (with its query), or ``None`` when the path is not a Binance REST path.

        ``stale_update_id``, when given, serves the depth snapshot as the book was at that id (the
        stale-snapshot fault); ids older than the kept history fall back to the oldest kept.
        """
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        route = parts.path.rstrip("/")
        if route == "/api/v3/ping":
            return RestResponse(200, b"{}")
        if route == "/api/v3/time":
            return RestResponse(200, _json.encode({"serverTime": now_ms}))
        if route == "/api/v3/exchangeInfo":
            return self._exchange_info(query, now_ms)
        if route == "/api/v3/depth":
            return self._depth(query, stale_update_id)
        if route.startswith("/api/"):
            return RestResponse(404, b"")
        return None

    def _depth(self, query: Mapping[str, str], stale_update_id: int | None) -> RestResponse:
        symbol = query.get("symbol", "")
        if not symbol:
            return _error(
                400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        bs = self.symbols.get(symbol)
        if bs is None:
            return _error(400, -1121, "Invalid symbol.")
        raw_limit = query.get("limit", "100")
        if not raw_limit.isdigit():
            return _error(
                400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            )
        limit = min(int(raw_limit), 5000)
        if limit < 1:
            return _error(
                400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'."
            )
        m = bs.model
        if stale_update_id is None:
            last_id, bids, asks = m.last_update_id, m.top_bids(limit), m.top_asks(limit)
        else:
            state = m.book_at(max(stale_update_id, m.oldest_update_id))
            last_id, bids, asks = state.update_id, state.bids[:limit], state.asks[:limit]
        body = _json.encode({"lastUpdateId": last_id, "bids": bs.levels(bids), "asks": bs.levels(asks)})
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        return RestResponse(200, body, (("X-MBX-USED-WEIGHT-1M", str(weight)),))

    def _exchange_info(self, query: Mapping[str, str], now_ms: int) -> RestResponse:
        names: list[str]
        if "symbol" in query:
            names = [query["symbol"]]
        elif "symbols" in query:
            try:
                parsed = json.loads(query["symbols"])
            except ValueError:
                return _error(400, -1100, "Illegal characters found in parameter 'symbols'.")
            if not isinstance(parsed, list) or not all(isinstance(s, str) for s in parsed):
                return _error(400, -1100, "Illegal characters found in parameter 'symbols'.")
            names = parsed
        else:
            names = list(self.symbols)
        for n in names:
            if n not in self.symbols:
                return _error(400, -1121, "Invalid symbol.")
        return RestResponse(
            200,
            _json.encode(
                {
                    "timezone": "UTC",
                    "serverTime": now_ms,
                    "rateLimits": [
                        {
                            "rateLimitType": "REQUEST_WEIGHT",
                            "interval": "MINUTE",
                            "intervalNum": 1,
                            "limit": 6000,
                        },
                        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                        {
                            "rateLimitType": "RAW_REQUESTS",
                            "interval": "MINUTE",
                            "intervalNum": 5,
                            "limit": 61000,
                        },
                    ],
                    "exchangeFilters": [],
                    "symbols": [self._symbol_info(self.symbols[n]) for n in names],
                }
            ),
        )

    @staticmethod
    def _symbol_info(bs: BinanceSymbol) -> dict[str, object]:
        spec = bs.spec
        d = bs.price.decimals

        def text(value: object) -> str:
            return f"{value:.{d}f}"

        return {
            "symbol": bs.name,
            "status": "TRADING",
            "baseAsset": spec.base,
            "baseAssetPrecision": 8,
            "quoteAsset": spec.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
            "icebergAllowed": True,
            "ocoAllowed": True,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": True,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": text(spec.tick_size),
                    "maxPrice": text(1_000_000),
                    "tickSize": text(spec.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": text(spec.lot_size),
                    "maxQty": text(9000),
                    "stepSize": text(spec.lot_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": text(spec.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": text(9_000_000),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }
