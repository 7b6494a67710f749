"""Settings of the OKX venue (the ``[venues.okx]`` section).

Real endpoints, the defaults: ``ws_url = "wss://ws.okx.com:8443/ws/v5/public"`` (the WebSocket itself; no
path is appended) and ``rest_url = "https://www.okx.com"`` (the client reads
``/api/v5/public/instruments?instType=..`` at start-up). ``"simulator"`` in either URL uses a simulator that
publishes ``okx.ws`` / ``okx.rest``.
"""

from __future__ import annotations

from pydantic import Field

from botframe.streams import VenueStreamSettings
from botframe.venues import UnifiedSymbols

__all__ = ["OKX_PUBLIC_URL", "OkxSettings"]

OKX_PUBLIC_URL = "wss://ws.okx.com:8443/ws/v5/public"


class OkxSettings(VenueStreamSettings):
    """Which OKX instruments to stream, and how to keep the connections healthy.

    The reconnect, watchdog, keepalive and timeout fields come from :class:`~botframe.streams.VenueStreamSettings`.
    """

    ws_url: str = Field(default=OKX_PUBLIC_URL, description="public WebSocket URL; 'simulator' uses the simulator")
    rest_url: str = Field(default="https://www.okx.com", description="REST base URL for the instruments")
    symbols: UnifiedSymbols = Field(
        default_factory=lambda: ["BTC/USDT"],
        min_length=1,
        description="unified symbols (ccxt names: BTC/USDT spot, BTC/USDT:USDT swap, BTC/USD:BTC-220527 future)",
    )
    trades: bool = Field(default=True, description="also stream public trades")
    max_symbols_per_connection: int = Field(
        default=50, ge=1, le=500, description="more symbols than this open more connections"
    )
    max_requests_per_sec: float = Field(
        default=3.0, gt=0, description="pace of subscribe/unsubscribe frames on one connection (OKX: 3/s)"
    )
    heartbeat_interval_secs: float = Field(
        default=20.0, gt=0, description="send OKX's text 'ping' after this long without a frame (OKX drops at 30 s)"
    )
    stale_after_ms: int = Field(
        default=30_000,
        ge=0,
        description="replace a connection that sent nothing, not even a pong, for this long; 0 disables",
    )

