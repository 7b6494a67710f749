"""Settings of the Kraken venue (the ``[venues.kraken]`` section).

Real endpoints, the defaults::

    api_version  ws_url                     rest_url
    v2           wss://ws.kraken.com/v2     https://api.kraken.com
    v1           wss://ws.kraken.com        https://api.kraken.com

``ws_url`` is the WebSocket itself (no path is appended); the client reads ``<rest_url>/0/public/AssetPairs``
at start-up. ``"simulator"`` in either URL uses the bundled exchange simulator, which speaks v2 and serves
no REST: with it, set ``rest_url = ""`` and the instruments come from the v2 ``instrument`` channel.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from botframe.streams import VenueStreamSettings
from botframe.venues import UnifiedSymbols

__all__ = ["KRAKEN_V1_URL", "KRAKEN_V2_URL", "KrakenSettings"]

KRAKEN_V2_URL = "wss://ws.kraken.com/v2"
KRAKEN_V1_URL = "wss://ws.kraken.com"


class KrakenSettings(VenueStreamSettings):
    """Which Kraken protocol and symbols to stream, and how to keep the connections healthy.

    The reconnect, watchdog, keepalive and timeout fields come from :class:`~botframe.streams.VenueStreamSettings`.
    """

    api_version: Literal["v2", "v1"] = Field(
        default="v2", description="WebSocket protocol: v2 (JSON numbers) or v1 (number strings)"
    )
    ws_url: str = Field(
        default=KRAKEN_V2_URL,
        description="WebSocket URL (default: the real one for api_version); 'simulator' uses the simulator",
    )
    rest_url: str = Field(
        default="https://api.kraken.com",
        description="REST base URL for AssetPairs; '' reads the instruments from the v2 instrument channel",
    )
    symbols: UnifiedSymbols = Field(
        default_factory=lambda: ["BTC/USD"],
        min_length=1,
        description="unified symbols (ccxt names: BTC/USD, not XBT/USD)",
    )
    depth: Literal[10, 25, 100, 500, 1000] = Field(
        default=10,
        description="book levels per side subscribed; the book is truncated to this after each update. "
        "Kraken's checksum covers only the top 10 levels: above 10, a lost update below level 10 is not "
        "caught by the checksum (only by the engine's crossed and stale checks), so keep 10 for a book "
        "verified level by level",
    )
    trades: bool = Field(default=True, description="also stream public trades")
    instrument_channel: bool = Field(
        default=True, description="v2: subscribe to the instrument channel for live price/qty precisions"
    )
    max_symbols_per_connection: int = Field(
        default=50, ge=1, le=500, description="more symbols than this open more connections"
    )
    max_requests_per_sec: float = Field(
        default=5.0, gt=0, description="pace of subscribe/unsubscribe frames sent on one connection"
    )
    stale_after_ms: int = Field(
        default=10_000,
        ge=0,
        description="replace a connection that sent nothing (not even a heartbeat) for this long; 0 disables",
    )

    @model_validator(mode="before")
    @classmethod
    def _url_follows_api_version(cls, data: Any) -> Any:
        # The default URL is the v2 one; v1 without an explicit URL means the v1 endpoint.
        if isinstance(data, dict) and data.get("api_version") == "v1" and "ws_url" not in data:
            return {**data, "ws_url": KRAKEN_V1_URL}
        return data

    @model_validator(mode="after")
    def _instruments_have_a_source(self) -> KrakenSettings:
        if not self.rest_url and (self.api_version == "v1" or not self.instrument_channel):
            raise ValueError(
                "rest_url is empty, so instruments must come from the v2 instrument channel: "
                "set api_version = 'v2' and instrument_channel = true, or set rest_url"
            )
        return self

