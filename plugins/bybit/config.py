"""Settings of the Bybit venue (the ``[venues.bybit]`` section).

Real endpoints, the defaults (``ws_url`` follows ``category`` unless it is set)::

    category  ws_url                                       rest_url (instruments)
    spot      wss://stream.bybit.com/v5/public/spot        https://api.bybit.com
    linear    wss://stream.bybit.com/v5/public/linear      + /v5/market/instruments-info?category=...
    inverse   wss://stream.bybit.com/v5/public/inverse

``ws_url`` is the WebSocket itself (no path is appended). ``"simulator"`` in either URL resolves through
the engine's endpoints (``bybit.ws`` / ``bybit.rest``), for a local server that speaks Bybit v5.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from botframe.streams import VenueStreamSettings
from botframe.venues import UnifiedSymbols

__all__ = ["BYBIT_REST_URL", "BybitSettings", "bybit_ws_url"]

BYBIT_REST_URL = "https://api.bybit.com"


def bybit_ws_url(category: str) -> str:
    """The real public stream of a category."""
    return f"wss://stream.bybit.com/v5/public/{category}"


class BybitSettings(VenueStreamSettings):
    """Which Bybit category and symbols to stream, and how to keep the connections healthy.

    The reconnect, watchdog, keepalive and timeout fields come from :class:`~botframe.streams.VenueStreamSettings`.
    """

    category: Literal["spot", "linear", "inverse"] = Field(
        default="spot", description="spot, linear (USDT/USDC contracts) or inverse (coin-margined contracts)"
    )
    ws_url: str = Field(
        default=bybit_ws_url("spot"),
        description="public stream URL (default: the real one of the category); 'simulator' uses the simulator",
    )
    rest_url: str = Field(
        default=BYBIT_REST_URL, description="REST base URL the instruments are read from at start-up"
    )
    symbols: UnifiedSymbols = Field(
        default_factory=lambda: ["BTC/USDT"],
        min_length=1,
        description="unified symbols (ccxt names: BTC/USDT spot, BTC/USDT:USDT linear, BTC/USD:BTC inverse)",
    )
    depth: Literal[1, 50, 200, 1000] = Field(
        default=50, description="levels per side of the orderbook.<depth>.<symbol> topic"
    )
    trades: bool = Field(default=True, description="also stream publicTrade (public trades)")
    max_symbols_per_connection: int = Field(
        default=50, ge=1, le=500, description="more symbols than this open more connections"
    )
    max_topics_per_request: int = Field(
        default=10, ge=1, le=100, description="topics per subscribe frame (Bybit spot accepts at most 10)"
    )
    max_requests_per_sec: float = Field(
        default=5.0,
        gt=0,
        description="frames sent per second over all connections (subscribes, pings); connections are "
        "opened at this pace too (Bybit allows 500 connections per 5 minutes per IP)",
    )
    heartbeat_interval_secs: float = Field(
        default=20.0, gt=0, description="send {\"op\":\"ping\"} this often; Bybit drops silent clients"
    )
    stale_after_ms: int = Field(
        default=45_000,
        ge=0,
        description="replace a connection that sent nothing for this long (pongs count, so keep it above "
        "heartbeat_interval_secs); 0 disables",
    )

    @model_validator(mode="before")
    @classmethod
    def _url_follows_the_category(cls, data: Any) -> Any:
        # The declared default is the spot stream; another category without an explicit URL gets its own.
        if isinstance(data, dict) and data.get("category") in ("linear", "inverse") and "ws_url" not in data:
            return {**data, "ws_url": bybit_ws_url(data["category"])}
        return data

    @model_validator(mode="after")
    def _watchdog_outlasts_the_heartbeat(self) -> BybitSettings:
        if self.stale_after_ms and self.stale_after_ms <= self.heartbeat_interval_secs * 1000:
            raise ValueError(
                f"stale_after_ms ({self.stale_after_ms}) must exceed heartbeat_interval_secs * 1000 "
                f"({self.heartbeat_interval_secs * 1000:g}): a quiet book is silent between pongs"
            )
        return self

