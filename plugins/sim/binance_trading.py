"""Binance spot's trading API, sans I/O: signed REST requests, rate limits, listen keys, the WebSocket API.

:meth:`BinanceTradingApi.rest` answers one HTTP request (method, path, query, body, headers) with a
:class:`~.binance_protocol.RestResponse`, exactly as Binance would, for the subset ccxt's ``binance``
class uses to trade:

* public: ``GET /api/v3/ping``, ``/time``, ``/exchangeInfo``, ``/depth`` (delegated to
  :class:`~.binance_protocol.BinanceWire`);
* signed (``USER_DATA`` / ``TRADE``): ``POST|GET|DELETE /api/v3/order``, ``GET|DELETE /api/v3/openOrders``,
  ``GET /api/v3/account``, ``GET /api/v3/myTrades``, ``GET /sapi/v1/account/apiRestrictions``;
* ``USER_STREAM`` (API key only): ``POST|PUT|DELETE /api/v3/userDataStream`` (listen keys).

Signing follows Binance: ``X-MBX-APIKEY`` names the account, ``signature`` is the hex HMAC-SHA256 of the
query string followed by the body (everything but the ``signature`` parameter itself) with the account's
secret, ``timestamp`` must lie within ``recvWindow`` (default 5000 ms, at most 60000) before the server's
time and at most 1000 ms after it. Errors carry Binance's status, code and message: 401 -2014/-2015 for a
missing or unknown key, 400 -1021 for a stale timestamp, 400 -1022 for a bad signature, 429 -1003/-1015
for the request-weight and order-count limits, and the venue's own (:mod:`.trading`).

:meth:`BinanceTradingApi.ws_api` answers one WebSocket API request (``/ws-api/v3``): ``ping``, ``time``,
``userDataStream.subscribe.signature`` (what ccxt's ``watch_orders`` sends for spot),
``userDataStream.subscribe`` / ``unsubscribe``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from .binance_protocol import BinanceWire, RestResponse
from .trading import SimAccount, TradingVenue, VenueError

__all__ = ["BinanceTradingApi", "RateLimits", "WsApiResult"]

_json = msgspec.json.Encoder()

_SIGNED_ROUTES: dict[tuple[str, str], int] = {  # (method, path) -> request weight
    ("POST", "/api/v3/order"): 1,
    ("GET", "/api/v3/order"): 4,
    ("DELETE", "/api/v3/order"): 1,
    ("GET", "/api/v3/openOrders"): 6,
    ("DELETE", "/api/v3/openOrders"): 1,
    ("GET", "/api/v3/account"): 20,
    ("GET", "/api/v3/myTrades"): 20,
    ("GET", "/sapi/v1/account/apiRestrictions"): 1,
}
_STREAM_ROUTES = {("POST", "/api/v3/userDataStream"), ("PUT", "/api/v3/userDataStream"),
                  ("DELETE", "/api/v3/userDataStream")}
_PUBLIC_WEIGHTS = {"/api/v3/ping": 1, "/api/v3/time": 1, "/api/v3/exchangeInfo": 20, "/api/v3/depth": 5}


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The limits the simulator enforces (Binance's spot defaults)."""

    request_weight_per_min: int = 6000
    orders_per_10s: int = 100
    orders_per_day: int = 200_000
    max_recv_window_ms: int = 60_000


@dataclass(slots=True)
class _Window:
    """Counts in a sliding window of ``span_ms`` (sans I/O: times come from the caller)."""

    span_ms: int
    stamps: deque[tuple[int, int]] = field(default_factory=deque)
    total: int = 0

    def add(self, now_ms: int, n: int) -> int:
        self._expire(now_ms)
        self.stamps.append((now_ms, n))
        self.total += n
        return self.total

    def peek(self, now_ms: int) -> int:
        self._expire(now_ms)
        return self.total

    def _expire(self, now_ms: int) -> None:
        while self.stamps and self.stamps[0][0] <= now_ms - self.span_ms:
            self.total -= self.stamps.popleft()[1]


@dataclass(frozen=True, slots=True)
class WsApiResult:
    """The answer to one WebSocket API request, and the account it subscribed (if it did)."""

    frame: bytes
    subscribe: SimAccount | None = None
    subscription_id: int | None = None
    unsubscribe: int | None = None  # a subscription id, or -1 for all


def _error(status: int, code: int, msg: str, headers: tuple[tuple[str, str], ...] = ()) -> RestResponse:
    return RestResponse(status, _json.encode({"code": code, "msg": msg}), headers)


class BinanceTradingApi:
    """Binance's trading REST and WebSocket API over a :class:`~.trading.TradingVenue`."""

    def __init__(self, wire: BinanceWire, venue: TradingVenue, limits: RateLimits | None = None,
                 *, new_listen_key: Callable[[], str] | None = None) -> None:
        self.wire = wire
        self.venue = venue
        self.limits = limits or RateLimits()
        self._weights: dict[str, _Window] = {}
        self._orders_10s: dict[str, _Window] = {}
        self._orders_day: dict[str, _Window] = {}
        self.listen_keys: dict[str, SimAccount] = {}
        self._new_listen_key = new_listen_key or (lambda: secrets.token_hex(30))
        self._subscription_ids = 0

    # -- REST --------------------------------------------------------------------------------------

    def rest(self, method: str, target: str, body: str, headers: Mapping[str, str], *, now_ms: int,
             client: str = "127.0.0.1") -> RestResponse:
        """Answer one HTTP request (``target`` is the path with its query string)."""
        parts = urlsplit(target)
        route = parts.path.rstrip("/") or "/"
        key = (method, route)
        weight = _SIGNED_ROUTES.get(key)
        if weight is None and key not in _STREAM_ROUTES:
            if method != "GET":
                if route in _PUBLIC_WEIGHTS:
                    return _error(405, -1000, f"Method {method} is not allowed on {route}.")
                return RestResponse(404, b"")
            limited = self._weigh(client, _PUBLIC_WEIGHTS.get(route, 1), now_ms)
            if limited is not None:
                return limited
            answer = self.wire.rest(target, now_ms=now_ms)
            return answer if answer is not None else RestResponse(404, b"")
        limited = self._weigh(client, weight or 1, now_ms)
        if limited is not None:
            return limited
        api_key = headers.get("X-MBX-APIKEY", headers.get("x-mbx-apikey", ""))
        if not api_key:
            return _error(401, -2014, "API-key format invalid.")
        account = self.venue.accounts.get(api_key)
        if account is None:
            return _error(401, -2015, "Invalid API-key, IP, or permissions for action.")
        raw = parts.query + body if parts.query and body else parts.query or body
        params = dict(parse_qsl(raw, keep_blank_values=True))
        try:
            if key in _STREAM_ROUTES:
                return self._listen_key(method, account, params)
            self._check_signature(account, raw, params, now_ms)
            if key == ("POST", "/api/v3/order"):
                counted = self._count_order(account, now_ms)
                if counted is not None:
                    return counted
            result = self._signed(key, account, params, now_ms)
        except VenueError as exc:
            return _error(exc.status, exc.code, exc.msg)
        return RestResponse(200, _json.encode(result), self._usage_headers(client, account, now_ms))

    def _signed(self, key: tuple[str, str], account: SimAccount, params: Mapping[str, str], now_ms: int) -> Any:
        venue = self.venue
        if key == ("POST", "/api/v3/order"):
            return venue.new_order(account, params, now_ms)
        if key == ("GET", "/api/v3/order"):
            return venue.query_order(account, params)
        if key == ("DELETE", "/api/v3/order"):
            return venue.cancel_order(account, params, now_ms)
        if key == ("GET", "/api/v3/openOrders"):
            return venue.open_orders(account, params)
        if key == ("DELETE", "/api/v3/openOrders"):
            return venue.cancel_open_orders(account, params, now_ms)
        if key == ("GET", "/api/v3/account"):
            return venue.account_info(account, now_ms)
        if key == ("GET", "/api/v3/myTrades"):
            return venue.my_trades(account, params)
        # GET /sapi/v1/account/apiRestrictions: what this key may do
        return {
            "ipRestrict": False, "createTime": 1_700_000_000_000, "enableReading": True,
            "enableSpotAndMarginTrading": account.can_trade, "enableWithdrawals": account.can_withdraw,
            "enableInternalTransfer": False, "enableMargin": False, "enableFutures": False,
            "permitsUniversalTransfer": False, "enableVanillaOptions": False, "enableFixApiTrade": False,
            "enableFixReadOnly": False, "enablePortfolioMarginTrading": False,
        }

    def _check_signature(self, account: SimAccount, raw: str, params: Mapping[str, str], now_ms: int) -> None:
        stamp = params.get("timestamp", "")
        if not stamp:
            raise VenueError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or "
                                         "malformed.")
        if not stamp.isdigit():
            raise VenueError(400, -1100, "Illegal characters found in parameter 'timestamp'; legal range is "
                                         "'^[0-9]{1,20}$'.")
        window_text = params.get("recvWindow", "5000")
        try:
            window = float(window_text)
        except ValueError:
            raise VenueError(400, -1100, "Illegal characters found in parameter 'recvWindow'.") from None
        if window > self.limits.max_recv_window_ms or window <= 0:
            raise VenueError(400, -1131, "recvWindow must be less than 60000")
        ts = int(stamp)
        if ts >= now_ms + 1000:
            raise VenueError(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now_ms - ts > window:
            raise VenueError(400, -1021, "Timestamp for this request is outside of the recvWindow.")
        signature = params.get("signature", "")
        if not signature:
            raise VenueError(400, -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or "
                                         "malformed.")
        signed = "&".join(p for p in raw.split("&") if not p.startswith("signature="))
        expected = hmac.new(account.secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise VenueError(400, -1022, "Signature for this request is not valid.")

    def _listen_key(self, method: str, account: SimAccount, params: Mapping[str, str]) -> RestResponse:
        if method == "POST":
            for key, owner in self.listen_keys.items():
                if owner is account:  # Binance returns the account's existing key while it is valid
                    return RestResponse(200, _json.encode({"listenKey": key}))
            key = self._new_listen_key()
            self.listen_keys[key] = account
            return RestResponse(200, _json.encode({"listenKey": key}))
        key = params.get("listenKey", "")
        if not key:
            return _error(400, -1102, "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed.")
        if self.listen_keys.get(key) is not account:
            return _error(400, -1125, "This listenKey does not exist.")
        if method == "DELETE":
            del self.listen_keys[key]
        return RestResponse(200, b"{}")

    # -- limits ------------------------------------------------------------------------------------

    def _weigh(self, client: str, weight: int, now_ms: int) -> RestResponse | None:
        window = self._weights.setdefault(client, _Window(60_000))
        limit = self.limits.request_weight_per_min
        if window.peek(now_ms) + weight > limit:
            return _error(429, -1003, f"Too many requests; current limit of IP({client}) request weight is "
                                      f"{limit} per 1 MINUTE. Please use WebSocket Streams for live updates to "
                                      "avoid polling the API.", (("Retry-After", "60"),))
        window.add(now_ms, weight)
        return None

    def _count_order(self, account: SimAccount, now_ms: int) -> RestResponse | None:
        ten = self._orders_10s.setdefault(account.api_key, _Window(10_000))
        day = self._orders_day.setdefault(account.api_key, _Window(86_400_000))
        if ten.peek(now_ms) + 1 > self.limits.orders_per_10s:
            return _error(429, -1015, f"Too many new orders; current limit is {self.limits.orders_per_10s} "
                                      "orders per 10 SECOND.", (("Retry-After", "10"),))
        if day.peek(now_ms) + 1 > self.limits.orders_per_day:
            return _error(429, -1015, f"Too many new orders; current limit is {self.limits.orders_per_day} "
                                      "orders per 1 DAY.")
        ten.add(now_ms, 1)
        day.add(now_ms, 1)
        return None

    def _usage_headers(self, client: str, account: SimAccount, now_ms: int) -> tuple[tuple[str, str], ...]:
        weight = self._weights[client].peek(now_ms)
        orders = self._orders_10s.get(account.api_key)
        out = [("X-MBX-USED-WEIGHT-1M", str(weight))]
        if orders is not None:
            out.append(("X-MBX-ORDER-COUNT-10S", str(orders.peek(now_ms))))
        return tuple(out)

    # -- WebSocket API -------------------------------------------------------------------------------

    def ws_api(self, frame: str | bytes, *, now_ms: int) -> WsApiResult:
        """Answer one WebSocket API request frame."""
        try:
            req = json.loads(frame)
        except (ValueError, UnicodeDecodeError):
            return WsApiResult(self._ws_error(None, 400, -1000, "Malformed request."))
        if not isinstance(req, dict):
            return WsApiResult(self._ws_error(None, 400, -1000, "Malformed request."))
        req_id = req.get("id")
        method = req.get("method")
        params = req.get("params") or {}
        if not isinstance(params, dict):
            return WsApiResult(self._ws_error(req_id, 400, -1000, "Malformed request: params must be an object."))
        if method == "ping":
            return WsApiResult(self._ws_ok(req_id, {}))
        if method == "time":
            return WsApiResult(self._ws_ok(req_id, {"serverTime": now_ms}))
        if method == "userDataStream.subscribe.signature":
            api_key = str(params.get("apiKey", ""))
            account = self.venue.accounts.get(api_key)
            if account is None:
                return WsApiResult(self._ws_error(req_id, 401, -2015,
                                                  "Invalid API-key, IP, or permissions for action."))
            text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
            raw = "&".join(f"{k}={v}" for k, v in sorted(text.items()) if k != "signature")
            raw += f"&signature={text.get('signature', '')}"
            try:
                self._check_signature(account, raw, text, now_ms)
            except VenueError as exc:
                return WsApiResult(self._ws_error(req_id, exc.status, exc.code, exc.msg))
            self._subscription_ids += 1
            sid = self._subscription_ids
            return WsApiResult(self._ws_ok(req_id, {"subscriptionId": sid}), subscribe=account,
                               subscription_id=sid)
        if method == "userDataStream.unsubscribe":
            raw_sid = params.get("subscriptionId")
            sid = int(raw_sid) if isinstance(raw_sid, int) else -1
            return WsApiResult(self._ws_ok(req_id, {}), unsubscribe=sid)
        return WsApiResult(self._ws_error(req_id, 400, -1000, f"Unknown method {method!r}."))

    @staticmethod
    def _ws_ok(req_id: object, result: object) -> bytes:
        return _json.encode({"id": req_id, "status": 200, "result": result, "rateLimits": []})

    @staticmethod
    def _ws_error(req_id: object, status: int, code: int, msg: str) -> bytes:
        return _json.encode({"id": req_id, "status": status, "error": {"code": code, "msg": msg}})
