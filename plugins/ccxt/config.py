"""Settings of the ccxt plugin: ``[executors.ccxt]`` (live trading) and ``[venues.ccxt]`` (market data).

URLs: an empty string keeps ccxt's own URLs for the exchange (the real venue); ``"simulator"`` points every
REST and WebSocket URL of the exchange at the bundled simulator (``[services.sim]``); any other value is a
base URL (``http://host:port`` for REST, ``ws://host:port`` for WebSocket) that replaces the scheme and host
of each of ccxt's URLs, keeping their paths.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CcxtExecutorSettings", "CcxtVenueSettings", "UnknownOrderPolicy"]


class UnknownOrderPolicy(enum.StrEnum):
    """What start-up reconciliation does with an open order on the venue that the journal does not know."""

    ADOPT = "adopt"  # track it and report its fills (it was ours, e.g. placed by a run whose journal was lost)
    CANCEL = "cancel"  # cancel it before trading starts
    IGNORE = "ignore"  # leave it alone and only report it


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exchange_id: str = "binance"  # ccxt's id of the exchange
    rest_url: str = ""  # "" = ccxt's own, "simulator", or a base URL replacing ccxt's hosts
    ws_url: str = ""  # "" = ccxt's own, "simulator", or a base URL replacing ccxt's WebSocket hosts
    sandbox: bool = False  # ccxt's set_sandbox_mode (the exchange's testnet), where it has one
    http_timeout_secs: float = Field(default=10.0, gt=0, le=120)
    options: dict[str, Any] = Field(default_factory=dict)  # extra ccxt options, merged over the plugin's

    @field_validator("exchange_id")
    @classmethod
    def _known(cls, v: str) -> str:
        import ccxt

        if v not in ccxt.exchanges:
            raise ValueError(f"ccxt has no exchange {v!r} (ccxt.exchanges lists them)")
        return v


class CcxtExecutorSettings(_Common):
    """``[executors.ccxt]``: real orders on one venue through ccxt."""

    venue: str = "binance"  # the botframe venue name whose orders this executor sends (intent.venue)
    symbols: list[str] = Field(default_factory=list)  # reconciled at start and on halt; also every traded one
    # Credentials: environment variables first, then a TOML file outside the repository.
    api_key_env: str = "BOTFRAME_CCXT_API_KEY"
    secret_env: str = "BOTFRAME_CCXT_SECRET"
    password_env: str = "BOTFRAME_CCXT_PASSWORD"
    secrets_file: str = ""  # e.g. "~/.config/botframe/secrets.toml"; keys api_key, secret[, password]
    secrets_section: str = ""  # a table of that file to read, e.g. "binance"
    enable_rate_limit: bool = True  # ccxt's own rate limiter (spaces requests by the exchange's limits)
    recv_window_ms: int = Field(default=5000, ge=1, le=60000)  # where the exchange signs with one
    use_websocket: bool = True  # order updates from watch_orders / watch_my_trades where ccxt has them
    poll_interval_secs: float = Field(default=1.0, gt=0)  # polling when there is no WebSocket
    safety_poll_interval_secs: float = Field(default=5.0, gt=0)  # polling beside the WebSocket, for gaps
    lookup_attempts: int = Field(default=5, ge=1)  # lookups by client id after a network error
    lookup_delay_secs: float = Field(default=0.2, ge=0)  # between those lookups
    max_resubmits: int = Field(default=1, ge=0)  # resubmits after a lookup proved the order absent
    unknown_orders: UnknownOrderPolicy = UnknownOrderPolicy.CANCEL
    client_order_id_prefix: str = "bf-"  # botframe's ids (botframe.orders.ClientOrderIds): fills of these are ours
    recent_fills_hours: float = Field(default=24.0, gt=0)  # how far back reconciliation reads fills
    stop_timeout_secs: float = Field(default=5.0, gt=0)  # waiting for requests in flight at stop


class CcxtVenueSettings(_Common):
    """``[venues.ccxt]``: market data (books, trades) for any exchange ccxt supports, over its WebSocket."""

    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT"])
    book_depth: int | None = Field(default=None, ge=1)  # limit passed to watch_order_book
    trades: bool = True  # watch_trades too
    stale_after_ms: int = Field(default=30_000, ge=1)  # no book update this long: resync
    reconnect_delay_secs: float = Field(default=1.0, ge=0)
    max_reconnect_delay_secs: float = Field(default=30.0, ge=0)
