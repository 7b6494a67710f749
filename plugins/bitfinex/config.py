"""Settings of the Bitfinex venue (the ``[venues.bitfinex]`` section).

Real endpoints, the defaults: ``ws_url = "wss://api-pub.bitfinex.com/ws/2"`` (the public WebSocket itself;
no path is appended) and ``rest_url = "https://api-pub.bitfinex.com"`` (the client reads
``/v2/conf/pub:list:pair:exchange`` at start-up). ``"simulator"`` in either URL uses a simulator that
publishes ``bitfinex.ws`` / ``bitfinex.rest``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from botframe.streams import VenueStreamSettings
from botframe.venues import UnifiedSymbols

__all__ = ["BITFINEX_PUBLIC_URL", "BitfinexSettings"]

BITFINEX_PUBLIC_URL = "wss://api-pub.bitfinex.com/ws/2"


class BitfinexSettings(VenueStreamSettings):
    """Which Bitfinex pairs to stream, and how to keep the connections healthy.

    The reconnect, watchdog, keepalive and timeout fields come from :class:`~botframe.streams.VenueStreamSettings`.
    """

    ws_url: str = Field(
        default=BITFINEX_PUBLIC_URL, description="public WebSocket URL; 'simulator' uses the simulator"
    )
    rest_url: str = Field(
        default="https://api-pub.bitfinex.com", description="REST base URL for the pair list"
    )
    symbols: UnifiedSymbols = Field(
        default_factory=lambda: ["BTC/USD"],
        min_length=1,
        description="unified symbols (ccxt names: BTC/USD, BTC/USDT for Bitfinex's BTCUST, IOTA/ETH for IOTETH)",
    )
    depth: Literal[1, 25, 100, 250] = Field(
        default=25, description="price levels per side of the P0 book (the checksum covers the top 25)"
    )
    trades: bool = Field(default=True, description="also stream public trades")
    checksums: bool = Field(
        default=True, description="ask for OB_CHECKSUM frames (a CRC32 of the top 25 levels after changes)"
    )
    max_channels_per_connection: int = Field(
        default=25, ge=1, le=30, description="Bitfinex allows 25-30 public subscriptions per connection"
    )
    max_requests_per_sec: float = Field(
        default=10.0, gt=0, description="pace of subscribe/unsubscribe frames sent on one connection"
    )
    stale_after_ms: int = Field(
        default=30_000,
        ge=0,
        description="replace a connection that sent nothing (heartbeats come every 15 s) for this long; 0 disables",
    )

