"""Settings of the Coinbase venue (the ``[venues.coinbase]`` section).

Two feeds, chosen with ``feed``; the URLs default to the real ones of that feed::

    feed            ws_url                                  rest_url (instruments)
    advanced_trade  wss://advanced-trade-ws.coinbase.com    https://api.coinbase.com
                                                            + /api/v3/brokerage/market/products
    exchange        wss://ws-feed.exchange.coinbase.com     https://api.exchange.coinbase.com + /products

``ws_url`` is the WebSocket itself (no path is appended); the client appends the feed's products path to
``rest_url``. ``"simulator"`` in either URL resolves through the engine's endpoints (``coinbase.ws`` /
``coinbase.rest``), for a local server that speaks the feed's protocol.

There is no depth setting: both ``level2`` channels always send the whole book.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from botframe.streams import VenueStreamSettings
from botframe.venues import UnifiedSymbols

__all__ = [
    "ADVANCED_TRADE_REST_URL",
    "ADVANCED_TRADE_WS_URL",
    "EXCHANGE_REST_URL",
    "EXCHANGE_WS_URL",
    "CoinbaseSettings",
]

ADVANCED_TRADE_WS_URL = "wss://advanced-trade-ws.coinbase.com"
ADVANCED_TRADE_REST_URL = "https://api.coinbase.com"
EXCHANGE_WS_URL = "wss://ws-feed.exchange.coinbase.com"
EXCHANGE_REST_URL = "https://api.exchange.coinbase.com"

_DEFAULT_URLS = {
    "advanced_trade": (ADVANCED_TRADE_WS_URL, ADVANCED_TRADE_REST_URL),
    "exchange": (EXCHANGE_WS_URL, EXCHANGE_REST_URL),
}


class CoinbaseSettings(VenueStreamSettings):
    """Which Coinbase feed and symbols to stream, and how to keep the connections healthy.

    The reconnect, watchdog, keepalive and timeout fields come from :class:`~botframe.streams.VenueStreamSettings`.
    """

    feed: Literal["advanced_trade", "exchange"] = Field(
        default="advanced_trade",
        description="advanced_trade (level2 as l2_data, one sequence_num per connection) or exchange "
        "(the legacy Exchange feed: snapshot + l2update, no sequence numbers on level2)",
    )
    ws_url: str = Field(
        default=ADVANCED_TRADE_WS_URL,
        description="WebSocket URL (default: the real one of the feed); 'simulator' uses the simulator",
    )
    rest_url: str = Field(
        default=ADVANCED_TRADE_REST_URL,
        description="REST base URL the products list is read from (default: the real one of the feed)",
    )
    symbols: UnifiedSymbols = Field(
        default_factory=lambda: ["BTC/USD"],
        min_length=1,
        description="unified symbols (ccxt names: BTC/USD for the product BTC-USD)",
    )
    trades: bool = Field(default=True, description="also stream public trades (market_trades / matches)")
    exchange_book_channel: Literal["level2", "level2_batch"] = Field(
        default="level2_batch",
        description="exchange feed only: level2 needs an authenticated connection today; level2_batch "
        "sends the same messages batched every 50 ms without one",
    )
    max_symbols_per_connection: int = Field(
        default=30, ge=1, le=500, description="more symbols than this open more connections"
    )
    max_requests_per_sec: float = Field(
        default=8.0,
        gt=0,
        description="subscribe/unsubscribe frames per second over all connections (Coinbase allows 8 "
        "unauthenticated messages per second per IP); connections are opened at this pace too",
    )
    stale_after_ms: int = Field(
        default=10_000,
        ge=0,
        description="replace a connection that sent nothing for this long (heartbeats arrive every "
        "second, so silence means a dead connection); 0 disables",
    )
    max_message_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="largest frame accepted; a level2 snapshot of a deep book runs to several megabytes",
    )

    @model_validator(mode="before")
    @classmethod
    def _urls_follow_the_feed(cls, data: Any) -> Any:
        # The declared defaults are the Advanced Trade URLs; another feed without explicit URLs gets its own.
        if isinstance(data, dict) and data.get("feed") in _DEFAULT_URLS:
            ws_url, rest_url = _DEFAULT_URLS[data["feed"]]
            return {"ws_url": ws_url, "rest_url": rest_url, **data}
        return data

