"""Settings of the Binance venue (the ``[venues.binance]`` section).

Real endpoints, for ``ws_url`` / ``rest_url`` when not using the bundled simulator::

    market  ws_url                              rest_url
    spot    wss://stream.binance.com:9443       https://api.binance.com
    us      wss://stream.binance.us:9443        https://api.binance.us
    usdm    wss://fstream.binance.com           https://fapi.binance.com
    coinm   wss://dstream.binance.com           https://dapi.binance.com

The client appends ``/stream?streams=...`` to ``ws_url`` and the market's REST paths to ``rest_url``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from botframe.streams import VenueStreamSettings
from botframe.venues import UnifiedSymbols

__all__ = ["BinanceSettings"]


class BinanceSettings(VenueStreamSettings):
    """Which Binance market to stream, which symbols, and how to keep the connection healthy.

    The reconnect, watchdog, keepalive and timeout fields come from :class:`~botframe.streams.VenueStreamSettings`.
    """

    market: Literal["spot", "us", "usdm", "coinm"] = Field(
        default="spot", description="spot, us (Binance.US), usdm (USD-M futures) or coinm (COIN-M futures)"
    )
    ws_url: str = Field(
        default="simulator", description="stream base URL; 'simulator' uses the bundled exchange simulator"
    )
    rest_url: str = Field(
        default="simulator", description="REST base URL; 'simulator' uses the bundled exchange simulator"
    )
    symbols: UnifiedSymbols = Field(
        default_factory=lambda: ["BTC/USDT"],
        min_length=1,
        description="unified symbols (ccxt names: BTC/USDT spot, BTC/USDT:USDT USD-M perpetual)",
    )
    snapshot_depth: int = Field(default=1000, ge=1, le=5000, description="levels per REST depth snapshot")
    trades: bool = Field(default=True, description="also stream aggTrade (public trades)")
    stale_after_ms: int = Field(
        default=30_000,
        ge=0,
        description="replace the connection when no frame arrived for this long (0 disables); "
        "raise it for quiet symbols, whose depth stream is silent while nothing changes",
    )
    max_buffered_diffs: int = Field(
        default=10_000, ge=1, description="diffs kept per symbol while its snapshot is fetched"
    )

