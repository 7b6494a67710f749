"""The ccxt plugin's pure parts: error classification, URL overrides, and turning ccxt structures into events."""

from __future__ import annotations

from decimal import Decimal

import ccxt
import pytest

from botframe.events import OrderIntent, OrderStatus, OrderType, Side
from botframe_plugins.ccxt.exchange import ErrorKind, classify_error, create_exchange, non_loopback_urls, override_urls
from botframe_plugins.ccxt.execution import LiveOrder
from botframe_plugins.ccxt.parsing import fill_from_trade, scrub, status_from_order


@pytest.mark.parametrize(("exc", "kind", "maybe_executed"), [
    (ccxt.AuthenticationError("binance {\"code\":-1022}"), ErrorKind.AUTH_FAILED, False),
    (ccxt.PermissionDenied("no trading"), ErrorKind.AUTH_FAILED, False),
    (ccxt.InsufficientFunds("Account has insufficient balance"), ErrorKind.INSUFFICIENT_FUNDS, False),
    (ccxt.InvalidOrder("binance Filter failure: PRICE_FILTER"), ErrorKind.INVALID_PRICE, False),
    (ccxt.BadRequest("binance {\"code\":-1013,\"msg\":\"Filter failure: LOT_SIZE\"}"), ErrorKind.INVALID_QUANTITY,
     False),
    (ccxt.BadRequest("binance {\"code\":-1013,\"msg\":\"Filter failure: NOTIONAL\"}"), ErrorKind.BELOW_MIN_NOTIONAL,
     False),
    (ccxt.RateLimitExceeded("binance {\"code\":-1015}"), ErrorKind.RATE_LIMITED, False),
    (ccxt.DDoSProtection("429"), ErrorKind.RATE_LIMITED, False),
    (ccxt.InvalidNonce("binance -1021 outside of the recvWindow"), ErrorKind.CLOCK_SKEW, False),
    (ccxt.OrderNotFound("-2013"), ErrorKind.ORDER_NOT_FOUND, False),
    (ccxt.RequestTimeout("binance POST timed out"), ErrorKind.NETWORK, True),
    (ccxt.ExchangeNotAvailable("503"), ErrorKind.NETWORK, True),
    (ccxt.ExchangeError("something else"), ErrorKind.REJECTED, False),
])
def test_ccxt_errors_are_classified_with_the_venue_message_kept(exc: Exception, kind: ErrorKind,
                                                                maybe_executed: bool) -> None:
    rejection = classify_error(exc)

    assert rejection.kind is kind
    assert rejection.maybe_executed is maybe_executed
    assert rejection.reason == f"{kind.value}: {exc}"


async def test_override_points_every_api_url_at_loopback_keeping_paths() -> None:
    exchange = create_exchange("binance")
    try:
        override_urls(exchange, rest_base="http://127.0.0.1:8001", ws_base="ws://127.0.0.1:8002")

        api = exchange.urls["api"]
        assert api["public"] == "http://127.0.0.1:8001/api/v3"
        assert api["sapi"] == "http://127.0.0.1:8001/sapi/v1"
        assert api["ws"]["spot"] == "ws://127.0.0.1:8002/ws"
        assert api["ws"]["ws-api"]["spot"] == "ws://127.0.0.1:8002/ws-api/v3"
        assert non_loopback_urls(exchange) == []
    finally:
        await exchange.close()


async def test_an_unoverridden_exchange_reaches_the_internet() -> None:
    exchange = create_exchange("kraken")
    try:
        assert non_loopback_urls(exchange)
    finally:
        await exchange.close()


def _live(qty: str = "0.5") -> LiveOrder:
    return LiveOrder(OrderIntent(client_order_id="bf-x-1", strategy="s", venue="binance", symbol="BTC/USDT",
                                 side=Side.BUY, quantity=Decimal(qty), order_type=OrderType.LIMIT,
                                 price=Decimal("60000")))


@pytest.mark.parametrize(("fee", "expected"), [
    ({"cost": 1.5, "currency": "USDT"}, Decimal("1.5")),
    ({"cost": 0.0001, "currency": "BTC"}, Decimal("0.0001") * Decimal("60000.01")),
    ({"cost": 0.01, "currency": "BNB"}, Decimal(0)),
    (None, Decimal(0)),
])
def test_fills_are_exact_with_fees_in_the_quote_currency(fee: dict[str, object] | None, expected: Decimal) -> None:
    trade = {"id": "77", "symbol": "BTC/USDT", "price": 60000.01, "amount": 0.1, "fee": fee,
             "takerOrMaker": "maker", "timestamp": 1_700_000_000_123}

    fill = fill_from_trade(trade, _live(), exchange_id="binance", quote="USDT", base="BTC", now_ns=0)

    assert fill is not None
    assert (fill.price, fill.quantity, fill.fee) == (Decimal("60000.01"), Decimal("0.1"), expected)
    assert fill.fill_id == "binance:BTC/USDT:77" and fill.liquidity == "maker"
    assert fill.ts_ns == 1_700_000_000_123_000_000


@pytest.mark.parametrize(("order", "status"), [
    ({"status": "open", "filled": 0}, OrderStatus.ACCEPTED),
    ({"status": "open", "filled": 0.1}, None),
    ({"status": "closed", "filled": 0.5}, OrderStatus.FILLED),
    ({"status": "canceled"}, OrderStatus.CANCELLED),
    ({"status": "expired"}, OrderStatus.EXPIRED),
    ({"status": "rejected"}, OrderStatus.REJECTED),
])
def test_ccxt_order_statuses_map_to_botframe(order: dict[str, object], status: OrderStatus | None) -> None:
    assert status_from_order(order) is status


def test_signatures_are_scrubbed_from_messages() -> None:
    text = "binance GET http://127.0.0.1/api/v3/order?timestamp=1&signature=abcdef0123 404"

    assert scrub(text) == "binance GET http://127.0.0.1/api/v3/order?timestamp=1&signature=*** 404"
