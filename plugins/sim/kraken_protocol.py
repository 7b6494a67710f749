"""Kraken spot WebSocket v2's wire protocol, sans I/O: requests, acks, book, trade and instrument frames.

What Kraken v2 sends (SPECS.md section 2) and what this module reproduces:

* on connect, a ``status`` frame; ``{"channel":"heartbeat"}`` about once a second while subscribed;
* ``subscribe``/``unsubscribe`` with ``params.channel`` in ``book``, ``trade``, ``instrument``; one ack
  per symbol (``success``, ``time_in``, ``time_out``, the client's ``req_id``);
* ``book``: a snapshot of the subscribed depth, then updates. Both carry ``checksum``: unsigned CRC32
  over the top 10 asks (ascending) then top 10 bids (descending), each price and qty formatted with the
  instrument's precision, ``.`` removed and leading zeros stripped. Numbers are JSON numbers written
  at that precision (``60000.0``, ``0.00000000``), so hashing the wire text or re-formatting with
  ``price_precision``/``qty_precision`` gives the same result;
* like Kraken, levels pushed out of the subscribed depth by better ones are not deleted explicitly:
  the client truncates to its depth after each update.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from .model import FixedPoint, SimTrade, SymbolModel, SymbolSpec

__all__ = [
    "KRAKEN_DEPTHS",
    "KrakenBookView",
    "KrakenRequest",
    "KrakenSymbol",
    "KrakenWire",
    "kraken_checksum",
    "parse_kraken_request",
    "rfc3339",
]

#: The book depths Kraken v2 accepts.
KRAKEN_DEPTHS = (10, 25, 100, 500, 1000)
_CHANNELS = ("book", "trade", "instrument")
_json = msgspec.json.Encoder()


def rfc3339(ts_ns: int) -> str:
    """Kraken's timestamp text: RFC 3339, UTC, microseconds (``2025-05-06T09:17:26.208075Z``)."""
    secs, ns = divmod(ts_ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(secs, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ns // 1000:06d}Z"


def _checksum_part(text: str) -> str:
    return text.replace(".", "").lstrip("0")


def kraken_checksum(asks: Sequence[tuple[str, str]], bids: Sequence[tuple[str, str]]) -> int:
    """Kraken's book checksum over ``(price_text, qty_text)`` levels, each side best first."""
    parts = [_checksum_part(p) + _checksum_part(q) for p, q in asks[:10]]
    parts += [_checksum_part(p) + _checksum_part(q) for p, q in bids[:10]]
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class KrakenRequest:
    """A method frame from a client: ``subscribe``, ``unsubscribe`` or ``ping``."""

    method: str
    channel: str
    symbols: list[str]
    depth: int
    snapshot: bool
    req_id: int | None


def parse_kraken_request(frame: str | bytes) -> KrakenRequest | tuple[str, str, int | None]:
    """Parse a client frame, or return ``(method, error text, req_id)`` for Kraken's error reply."""
    try:
        obj = json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return ("", "Malformed request", None)
    if not isinstance(obj, dict):
        return ("", "Malformed request", None)
    req_id = obj.get("req_id")
    if req_id is not None and not isinstance(req_id, int):
        return (str(obj.get("method", "")), "Invalid req_id", None)
    method = obj.get("method")
    if method == "ping":
        return KrakenRequest("ping", "", [], 0, False, req_id)
    if method not in ("subscribe", "unsubscribe"):
        return (str(method or ""), "Method not found", req_id)
    params = obj.get("params")
    if not isinstance(params, dict):
        return (method, "Missing params", req_id)
    channel = params.get("channel")
    if channel not in _CHANNELS:
        return (method, f"Channel {channel} not found", req_id)
    symbols = params.get("symbol", [])
    if channel != "instrument" and (
        not isinstance(symbols, list) or not symbols or not all(isinstance(s, str) for s in symbols)
    ):
        return (method, "Missing or invalid symbol", req_id)
    depth = params.get("depth", 10)
    if channel == "book" and depth not in KRAKEN_DEPTHS:
        return (method, f"Invalid depth: {depth}", req_id)
    snapshot = params.get("snapshot", True)
    if not isinstance(snapshot, bool):
        return (method, "Invalid snapshot", req_id)
    return KrakenRequest(
        method, channel, list(symbols) if channel != "instrument" else [], int(depth), snapshot, req_id
    )


@dataclass(slots=True)
class KrakenSymbol:
    """One symbol as Kraken v2 shows it: formatters and the last trades for a trade snapshot."""

    spec: SymbolSpec
    model: SymbolModel
    price: FixedPoint
    qty: FixedPoint
    recent_trades: deque[bytes] = field(default_factory=lambda: deque(maxlen=50))

    def level(self, price: int, lots: int) -> bytes:
        # Written by hand: numbers must appear at the instrument's precision, not float repr.
        return (
            b'{"price":' + self.price.text(price).encode() + b',"qty":' + self.qty.text(lots).encode() + b"}"
        )

    def levels(self, levels: Sequence[tuple[int, int]]) -> bytes:
        return b"[" + b",".join(self.level(p, q) for p, q in levels) + b"]"

    def checksum(self, bids: Sequence[tuple[int, int]], asks: Sequence[tuple[int, int]]) -> int:
        pt, qt = self.price.text, self.qty.text
        return kraken_checksum([(pt(p), qt(q)) for p, q in asks[:10]], [(pt(p), qt(q)) for p, q in bids[:10]])


class KrakenBookView:
    """What one client's book holds for one symbol at its subscribed depth; diffs it against the truth."""

    __slots__ = ("asks", "bids", "depth", "sym")

    def __init__(self, sym: KrakenSymbol, depth: int) -> None:
        self.sym = sym
        self.depth = depth
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def snapshot(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
        """Reset the view to the true top ``depth``; return (bids, asks, checksum)."""
        m = self.sym.model
        bids, asks = m.top_bids(self.depth), m.top_asks(self.depth)
        self.bids, self.asks = dict(bids), dict(asks)
        return bids, asks, self.sym.checksum(bids, asks)

    def update(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int] | None:
        """Move the view to the true top ``depth``; return the levels to send and the new checksum.

        Sent: every level of the new top whose size differs from the view (new ones included), and a
        0 for every level of the view that left the book. A level that only fell out of the depth is
        not sent: the client truncates it, as on Kraken. ``None`` when nothing changed.
        """
        m = self.sym.model
        new_bids, new_asks = m.top_bids(self.depth), m.top_asks(self.depth)
        out_bids = self._diff(self.bids, new_bids, m.bids)
        out_asks = self._diff(self.asks, new_asks, m.asks)
        if not out_bids and not out_asks:
            return None
        out_bids.sort(reverse=True)
        out_asks.sort()
        self.bids, self.asks = dict(new_bids), dict(new_asks)
        return out_bids, out_asks, self.sym.checksum(new_bids, new_asks)

    @staticmethod
    def _diff(
        view: dict[int, int], new: list[tuple[int, int]], truth: dict[int, int]
    ) -> list[tuple[int, int]]:
        out = [(p, q) for p, q in new if view.get(p) != q]
        out += [(p, 0) for p in view if p not in truth]
        return out


class KrakenWire:
    """Kraken v2 frames for the simulator's ``kraken`` symbols."""

    def __init__(self, models: Sequence[SymbolModel]) -> None:
        self.symbols: dict[str, KrakenSymbol] = {}
        for m in models:
            spec = m.spec
            self.symbols[spec.symbol] = KrakenSymbol(
                spec,
                m,
                FixedPoint(spec.tick_size, spec.price_decimals),
                FixedPoint(spec.lot_size, spec.qty_decimals),
            )

    # -- control frames --------------------------------------------------------------------------------

    @staticmethod
    def status(connection_id: int) -> bytes:
        return _json.encode(
            {
                "channel": "status",
                "type": "update",
                "data": [
                    {
                        "api_version": "v2",
                        "connection_id": connection_id,
                        "system": "online",
                        "version": "2.0.10",
                    }
                ],
            }
        )

    @staticmethod
    def heartbeat() -> bytes:
        return b'{"channel":"heartbeat"}'

    @staticmethod
    def pong(req_id: int | None, time_in: str, time_out: str) -> bytes:
        obj: dict[str, object] = {"method": "pong"}
        if req_id is not None:
            obj["req_id"] = req_id
        obj["time_in"] = time_in
        obj["time_out"] = time_out
        return _json.encode(obj)

    @staticmethod
    def ack(req: KrakenRequest, symbol: str | None, time_in: str, time_out: str) -> bytes:
        result: dict[str, object] = {"channel": req.channel}
        if req.channel == "book":
            result["depth"] = req.depth
        result["snapshot"] = req.snapshot
        if symbol is not None:
            result["symbol"] = symbol
        obj: dict[str, object] = {
            "method": req.method,
            "result": result,
            "success": True,
            "time_in": time_in,
            "time_out": time_out,
        }
        if req.req_id is not None:
            obj["req_id"] = req.req_id
        return _json.encode(obj)

    @staticmethod
    def error(
        method: str, error: str, req_id: int | None, symbol: str | None, time_in: str, time_out: str
    ) -> bytes:
        obj: dict[str, object] = {"error": error, "method": method}
        if req_id is not None:
            obj["req_id"] = req_id
        obj["success"] = False
        if symbol is not None:
            obj["symbol"] = symbol
        obj["time_in"] = time_in
        obj["time_out"] = time_out
        return _json.encode(obj)

    # -- market frames ---------------------------------------------------------------------------------

    @staticmethod
    def book_frame(
        sym: KrakenSymbol,
        kind: str,
        bids: Sequence[tuple[int, int]],
        asks: Sequence[tuple[int, int]],
        checksum: int,
        ts_ns: int | None,
    ) -> bytes:
        """A ``book`` snapshot or update frame (``kind`` is ``"snapshot"`` or ``"update"``)."""
        tail = b"" if ts_ns is None else b',"timestamp":"' + rfc3339(ts_ns).encode() + b'"'
        return (
            b'{"channel":"book","type":"'
            + kind.encode()
            + b'","data":[{"symbol":"'
            + sym.spec.symbol.encode()
            + b'","bids":'
            + sym.levels(bids)
            + b',"asks":'
            + sym.levels(asks)
            + b',"checksum":'
            + str(checksum).encode()
            + tail
            + b"}]}"
        )

    @staticmethod
    def trade_entry(sym: KrakenSymbol, trade: SimTrade, ts_ns: int) -> bytes:
        return (
            b'{"symbol":"'
            + sym.spec.symbol.encode()
            + b'","side":"'
            + trade.aggressor.value.encode()
            + b'","price":'
            + sym.price.text(trade.price_ticks).encode()
            + b',"qty":'
            + sym.qty.text(trade.qty_lots).encode()
            + b',"ord_type":"market","trade_id":'
            + str(trade.trade_id).encode()
            + b',"timestamp":"'
            + rfc3339(ts_ns).encode()
            + b'"}'
        )

    @staticmethod
    def trade_frame(kind: str, entries: Sequence[bytes]) -> bytes:
        return b'{"channel":"trade","type":"' + kind.encode() + b'","data":[' + b",".join(entries) + b"]}"

    def instrument_snapshot(self) -> bytes:
        assets: dict[str, dict[str, object]] = {}
        pairs = []
        for sym in self.symbols.values():
            spec = sym.spec
            for asset in (spec.base, spec.quote):
                assets.setdefault(
                    asset,
                    {
                        "id": asset,
                        "status": "enabled",
                        "precision": 10,
                        "precision_display": 5,
                        "borrowable": False,
                        "collateral_value": 0.0,
                        "margin_rate": 0.0,
                    },
                )
            pairs.append(
                {
                    "symbol": spec.symbol,
                    "base": spec.base,
                    "quote": spec.quote,
                    "status": "online",
                    "qty_precision": spec.qty_decimals,
                    "qty_increment": float(spec.lot_size),
                    "price_precision": spec.price_decimals,
                    "price_increment": float(spec.tick_size),
                    "cost_precision": 5,
                    "cost_min": float(spec.min_notional),
                    "qty_min": float(spec.lot_size),
                    "marginable": False,
                    "has_index": True,
                }
            )
        return _json.encode(
            {
                "channel": "instrument",
                "type": "snapshot",
                "data": {"assets": list(assets.values()), "pairs": pairs},
            }
        )
