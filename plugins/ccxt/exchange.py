"""Building a ccxt client for botframe, and reading its errors; pure functions where possible.

* :func:`create_exchange` makes the async (``ccxt.pro`` where it exists) client of an exchange id with the
  rate limiter, timeout and credentials, and the options that keep ``load_markets`` to the spot market
  data it needs (no currency or margin endpoints that need other permissions);
* :func:`override_urls` repoints every REST and WebSocket URL ccxt has for the exchange at a base URL (the
  simulator), keeping each URL's path, so ccxt never reaches the real venue in a test;
  :func:`non_loopback_urls` lists any URL that would still leave the machine;
* :func:`classify_error` turns a ccxt exception into a :class:`Rejection` with a clear reason and the
  venue's own message, and says whether the request may have reached the venue (a network error: look
  the order up before anything else).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import ccxt
import ccxt.async_support as ccxt_async

from botframe.secrets import ApiCredentials

__all__ = [
    "ErrorKind",
    "Rejection",
    "classify_error",
    "create_exchange",
    "iter_urls",
    "non_loopback_urls",
    "override_urls",
]

try:  # ccxt.pro ships with ccxt; an exchange it lacks falls back to the REST-only class
    import ccxt.pro as ccxt_pro
except ImportError:  # pragma: no cover - every ccxt 4 has it
    ccxt_pro = None


def create_exchange(exchange_id: str, *, credentials: ApiCredentials | None = None, timeout_secs: float = 10.0,
                    enable_rate_limit: bool = True, recv_window_ms: int | None = None, sandbox: bool = False,
                    options: dict[str, Any] | None = None) -> Any:
    """An async ccxt client (``ccxt.pro`` when the exchange has one); the caller must ``await close()``."""
    module = ccxt_pro if ccxt_pro is not None and hasattr(ccxt_pro, exchange_id) else ccxt_async
    cls = getattr(module, exchange_id)
    merged: dict[str, Any] = {
        # load_markets reads public market data only: no currency or margin endpoints (other permissions).
        "fetchCurrencies": False,
        "fetchMargins": False,
        "fetchMarkets": {"types": ["spot"]},
        # botframe asks for all open orders at reconciliation on purpose, at a known weight.
        "warnOnFetchOpenOrdersWithoutSymbol": False,
        "defaultType": "spot",
    }
    if recv_window_ms is not None:
        merged["recvWindow"] = recv_window_ms
    merged.update(options or {})
    config: dict[str, Any] = {
        "enableRateLimit": enable_rate_limit,
        "timeout": int(timeout_secs * 1000),
        "options": merged,
    }
    if credentials is not None:
        config["apiKey"] = credentials.api_key.get_secret_value()
        config["secret"] = credentials.secret.get_secret_value()
        if credentials.password is not None:
            config["password"] = credentials.password.get_secret_value()
    exchange = cls(config)
    if sandbox:
        exchange.set_sandbox_mode(True)
    return exchange


def iter_urls(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every URL string in a (nested) ccxt ``urls['api']`` structure, with its key path."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from iter_urls(value, (*path, str(key)))


def _rebase(url: str, base: str) -> str:
    parts = urlsplit(url)
    new = urlsplit(base)
    path = new.path.rstrip("/") + parts.path
    return urlunsplit((new.scheme, new.netloc, path, parts.query, parts.fragment))


def override_urls(exchange: Any, *, rest_base: str = "", ws_base: str = "") -> None:
    """Point each of the exchange's API URLs at ``rest_base`` (http) or ``ws_base`` (ws), keeping paths.

    ``https://api.binance.com/api/v3`` becomes ``http://127.0.0.1:PORT/api/v3`` and
    ``wss://ws-api.binance.com:443/ws-api/v3`` becomes ``ws://127.0.0.1:PORT/ws-api/v3``. An empty base
    leaves that kind of URL alone.
    """

    def walk(node: MutableMapping[str, Any]) -> None:
        for key, value in list(node.items()):
            if isinstance(value, dict):
                walk(value)
            elif isinstance(value, str):
                scheme = urlsplit(value).scheme
                if scheme in ("ws", "wss") and ws_base:
                    node[key] = _rebase(value, ws_base)
                elif scheme in ("http", "https") and rest_base:
                    node[key] = _rebase(value, rest_base)

    api = exchange.urls.get("api")
    if isinstance(api, dict):
        walk(api)
    elif isinstance(api, str) and rest_base:
        exchange.urls["api"] = _rebase(api, rest_base)


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def non_loopback_urls(exchange: Any) -> list[str]:
    """The exchange's API URLs that would leave this machine (empty after a full override to 127.0.0.1)."""
    return [url for _path, url in iter_urls(exchange.urls.get("api")) if not _is_loopback(url)]


class ErrorKind(enum.StrEnum):
    """Why the venue refused a request, in botframe's words."""

    AUTH_FAILED = "auth failed"
    INSUFFICIENT_FUNDS = "insufficient funds"
    INVALID_PRICE = "invalid price"
    INVALID_QUANTITY = "invalid quantity"
    BELOW_MIN_NOTIONAL = "below minimum notional"
    INVALID_ORDER = "invalid order"
    RATE_LIMITED = "rate limited"
    CLOCK_SKEW = "timestamp outside the venue's receive window"
    ORDER_NOT_FOUND = "order not found"
    DUPLICATE_ORDER = "duplicate client order id"
    NETWORK = "network error"
    REJECTED = "rejected by the venue"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A classified error: the kind, the venue's own message, and whether the request may have landed."""

    kind: ErrorKind
    message: str
    maybe_executed: bool = False  # a timeout or lost connection: the venue may have acted on it

    @property
    def reason(self) -> str:
        return f"{self.kind.value}: {self.message}"


_RULES: list[tuple[type[BaseException], Callable[[str], ErrorKind]]] = [
    (ccxt.AuthenticationError, lambda _m: ErrorKind.AUTH_FAILED),  # incl. PermissionDenied, AccountSuspended
    (ccxt.InsufficientFunds, lambda _m: ErrorKind.INSUFFICIENT_FUNDS),
    (ccxt.OrderNotFound, lambda _m: ErrorKind.ORDER_NOT_FOUND),
    (ccxt.DuplicateOrderId, lambda _m: ErrorKind.DUPLICATE_ORDER),
    (ccxt.RateLimitExceeded, lambda _m: ErrorKind.RATE_LIMITED),
    (ccxt.DDoSProtection, lambda _m: ErrorKind.RATE_LIMITED),
]


def _order_kind(message: str) -> ErrorKind:
    text = message.upper()
    if "PRICE_FILTER" in text or "PERCENT_PRICE" in text or "INVALID PRICE" in text:
        return ErrorKind.INVALID_PRICE
    if "LOT_SIZE" in text or "INVALID QUANTITY" in text:
        return ErrorKind.INVALID_QUANTITY
    if "NOTIONAL" in text:
        return ErrorKind.BELOW_MIN_NOTIONAL
    if "INSUFFICIENT BALANCE" in text:
        return ErrorKind.INSUFFICIENT_FUNDS
    if "DUPLICATE ORDER" in text:
        return ErrorKind.DUPLICATE_ORDER
    if "RATE LIMIT" in text or "TOO MANY" in text:
        return ErrorKind.RATE_LIMITED
    return ErrorKind.INVALID_ORDER


def classify_error(exc: BaseException) -> Rejection:
    """Classify a ccxt exception (see :class:`ErrorKind`); the venue's message is kept verbatim."""
    message = str(exc)
    # Network errors first: a timeout or a dropped connection says nothing about whether the order landed.
    # (RateLimitExceeded and DDoSProtection are NetworkError subclasses in ccxt but are answers, not losses.)
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return Rejection(ErrorKind.RATE_LIMITED, message)
    if isinstance(exc, ccxt.InvalidNonce):  # a NetworkError in ccxt, but the venue refused the request
        return Rejection(ErrorKind.CLOCK_SKEW, message)
    if isinstance(exc, (ccxt.NetworkError, TimeoutError, ConnectionError, OSError)):
        return Rejection(ErrorKind.NETWORK, message, maybe_executed=True)
    for cls, kind_of in _RULES:
        if isinstance(exc, cls):
            return Rejection(kind_of(message), message)
    if isinstance(exc, (ccxt.InvalidOrder, ccxt.BadRequest, ccxt.BadSymbol)):
        return Rejection(_order_kind(message), message)
    if isinstance(exc, ccxt.ExchangeError):
        kind = _order_kind(message)
        return Rejection(kind if kind is not ErrorKind.INVALID_ORDER else ErrorKind.REJECTED, message)
    return Rejection(ErrorKind.REJECTED, f"{type(exc).__name__}: {message}")
