"""Settings of the exchange simulator (``[services.sim]``): symbols, pace, order-flow rates and faults.

Every rate is per second of simulated time; every fault rate is a probability per opportunity (per
frame, per step or per request, as each field says) and defaults to 0, so a default simulator is a
well-behaved exchange.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .model import FlowParams, SymbolSpec

__all__ = [
    "FaultSettings",
    "FlowSettings",
    "SimAccountSettings",
    "SimSettings",
    "SimSymbolSettings",
    "VenueProtocol",
]

#: The wire protocols the simulator can speak; each simulated symbol belongs to one of them.
VenueProtocol = Literal["binance", "kraken"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FlowSettings(_Frozen):
    """Order-flow intensities of the Cont-Stoikov-Talreja style model (see :mod:`.model`).

    Distances are in ticks from the opposite best price: a buy limit order at distance 1 joins or
    improves the best bid by landing one tick below the best ask.
    """

    # CST 2010 fit a power law lambda(d) = k / d^alpha to limit-order arrivals; alpha ~ 0.52 there.
    limit_rate_per_sec: float = Field(default=1.0, ge=0)  # per side, at distance 1
    limit_decay_exponent: float = Field(default=0.52, ge=0)
    # Cancels per resting order fall off faster than arrivals, so depth builds away from the touch.
    cancel_rate_per_sec: float = Field(default=1.0, ge=0)  # per resting order at distance 1
    cancel_decay_exponent: float = Field(default=0.8, ge=0)
    market_rate_per_sec: float = Field(default=2.0, ge=0)  # market orders per side
    window_ticks: int = Field(default=40, ge=1)  # limit orders land within this distance
    max_distance_ticks: int = Field(default=120, ge=1)  # levels further away are removed
    mean_order_notional: float = Field(default=2000.0, gt=0)  # quote units, exponential sizes
    mean_market_notional: float = Field(default=3000.0, gt=0)  # quote units, exponential sizes

    @model_validator(mode="after")
    def _window_inside_max_distance(self) -> FlowSettings:
        if self.max_distance_ticks < self.window_ticks:
            raise ValueError("max_distance_ticks must be at least window_ticks")
        return self

    def params(self) -> FlowParams:
        return FlowParams(
            limit_rate_per_sec=self.limit_rate_per_sec,
            limit_decay_exponent=self.limit_decay_exponent,
            cancel_rate_per_sec=self.cancel_rate_per_sec,
            cancel_decay_exponent=self.cancel_decay_exponent,
            market_rate_per_sec=self.market_rate_per_sec,
            window_ticks=self.window_ticks,
            max_distance_ticks=self.max_distance_ticks,
            mean_order_notional=self.mean_order_notional,
            mean_market_notional=self.mean_market_notional,
        )


class SimSymbolSettings(_Frozen):
    """One simulated instrument: its unified symbol, the venue protocol it is served on, and its rules."""

    symbol: str  # unified, "BASE/QUOTE"
    venue: VenueProtocol = "binance"
    start_price: Decimal = Field(gt=0)
    tick_size: Decimal = Field(gt=0)
    lot_size: Decimal = Field(gt=0)
    min_notional: Decimal = Field(default=Decimal("5"), ge=0)
    flow: FlowSettings | None = None  # overrides the simulator-wide [services.sim.flow]

    @field_validator("symbol")
    @classmethod
    def _unified(cls, v: str) -> str:
        base, sep, quote = v.partition("/")
        if not sep or not base.isalnum() or not quote.isalnum():
            raise ValueError("must be a unified symbol like 'BTC/USDT'")
        return v.upper()

    def spec(self) -> SymbolSpec:
        return SymbolSpec(
            symbol=self.symbol,
            start_price=self.start_price,
            tick_size=self.tick_size,
            lot_size=self.lot_size,
            min_notional=self.min_notional,
            venue=self.venue,
        )


class FaultSettings(_Frozen):
    """Faults the simulator injects, each with its own rate; all default to 0 (none)."""

    seed: int = 7  # faults draw from their own stream, so enabling one does not change the market
    # per connection, per step: the server drops the connection
    drop_clean_rate: float = Field(default=0.0, ge=0, le=1)  # close frame 1000 then TCP close
    drop_abrupt_rate: float = Field(default=0.0, ge=0, le=1)  # TCP reset, no close frame
    # per step: the server sends nothing for stall_ms (frames are held, then delivered)
    stall_rate: float = Field(default=0.0, ge=0, le=1)
    stall_ms: int = Field(default=3000, ge=0)
    # per book frame sent
    gap_rate: float = Field(default=0.0, ge=0, le=1)  # the frame is skipped
    duplicate_rate: float = Field(default=0.0, ge=0, le=1)  # the frame is sent twice
    reorder_rate: float = Field(default=0.0, ge=0, le=1)  # the frame is held and sent after the next
    corrupt_rate: float = Field(default=0.0, ge=0, le=1)  # a level's size (or Kraken's checksum) is wrong
    malformed_rate: float = Field(default=0.0, ge=0, le=1)  # a truncated, unparsable frame is sent
    # per REST depth snapshot request
    snapshot_slow_rate: float = Field(default=0.0, ge=0, le=1)
    snapshot_slow_ms: int = Field(default=2000, ge=0)
    snapshot_stale_rate: float = Field(default=0.0, ge=0, le=1)  # older than the buffered updates
    snapshot_stale_steps: int = Field(default=20, ge=1)  # how far back a stale snapshot is
    rest_429_rate: float = Field(default=0.0, ge=0, le=1)
    rest_500_rate: float = Field(default=0.0, ge=0, le=1)
    # per step: the whole server goes away (every connection dropped, port closed) and comes back
    restart_rate: float = Field(default=0.0, ge=0, le=1)
    restart_downtime_ms: int = Field(default=1000, ge=0)
    # per POST /api/v3/order: the order is accepted (and matched), then the answer is held this long,
    # so a client with a shorter timeout sees a timeout for an order that exists
    order_timeout_rate: float = Field(default=0.0, ge=0, le=1)
    order_timeout_ms: int = Field(default=5000, ge=0)


class SimAccountSettings(_Frozen):
    """A trading account of the simulator: its API key and secret, its starting balances, its permissions.

    These are the simulator's own (local, made-up) credentials, not an exchange's: the live executor
    pointed at the simulator is given the same pair through its usual secrets source.
    """

    api_key: str = Field(min_length=1)
    secret: str = Field(min_length=1, repr=False)
    balances: dict[str, Decimal] = Field(default_factory=lambda: {"USDT": Decimal("10000")})
    can_trade: bool = True
    can_withdraw: bool = False


def _default_symbols() -> list[SimSymbolSettings]:
    return [
        SimSymbolSettings(
            symbol="BTC/USDT",
            start_price=Decimal("60000"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.00001"),
            min_notional=Decimal("5"),
        ),
        SimSymbolSettings(
            symbol="ETH/USDT",
            start_price=Decimal("3000"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.0001"),
            min_notional=Decimal("5"),
        ),
        SimSymbolSettings(
            symbol="BTC/USD",
            venue="kraken",
            start_price=Decimal("60000"),
            tick_size=Decimal("0.1"),
            lot_size=Decimal("0.00000001"),
            min_notional=Decimal("0.5"),
        ),
        SimSymbolSettings(
            symbol="ETH/USD",
            venue="kraken",
            start_price=Decimal("3000"),
            tick_size=Decimal("0.01"),
            lot_size=Decimal("0.00000001"),
            min_notional=Decimal("0.5"),
        ),
    ]


class SimSettings(_Frozen):
    """``[services.sim]``: where the simulator listens, how fast it runs, what it trades."""

    enabled: bool = False  # read by the engine: the service runs only when true
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0 = an ephemeral port, published as endpoints
    seed: int = 42  # same seed, same market, whatever the wall clock says
    update_interval_ms: int = Field(default=100, ge=1)  # one model step per interval of simulated time
    speed: float = Field(default=1.0, gt=0)  # 1.0 = real time; 10.0 = ten steps per real interval
    # Step only once every client was sent all earlier frames: lossless and, with a simulated
    # clock, as fast as the clients read (tests, benchmarks). Off = a real exchange's pace.
    wait_for_clients: bool = False
    history_updates: int = Field(default=200_000, ge=1)  # level changes kept to rebuild past books
    max_client_queue_frames: int = Field(default=20_000, ge=1)  # a slower client is disconnected
    kraken_heartbeat_interval_ms: int = Field(default=1000, ge=1)
    symbols: list[SimSymbolSettings] = Field(default_factory=_default_symbols, min_length=1)
    flow: FlowSettings = FlowSettings()
    faults: FaultSettings = FaultSettings()
    # The trading API (Binance spot REST on its own port, user data over the WebSocket port).
    accounts: list[SimAccountSettings] = Field(default_factory=list)
    api_port: int = Field(default=0, ge=0, le=65535)  # 0 = ephemeral; published as endpoint binance.api
    maker_fee_bps: Decimal = Field(default=Decimal("1"), ge=-100, le=1000)
    taker_fee_bps: Decimal = Field(default=Decimal("5"), ge=-100, le=1000)
    orders_per_10s: int = Field(default=100, ge=1)  # Binance's ORDERS limit per account
    request_weight_per_min: int = Field(default=6000, ge=1)  # Binance's REQUEST_WEIGHT limit per IP

    @model_validator(mode="after")
    def _unique_symbols(self) -> SimSettings:
        seen: set[tuple[str, str]] = set()
        for s in self.symbols:
            key = (s.venue, s.symbol)
            if key in seen:
                raise ValueError(f"symbol {s.symbol!r} is listed twice for venue {s.venue!r}")
            seen.add(key)
        keys = [a.api_key for a in self.accounts]
        if len(keys) != len(set(keys)):
            raise ValueError("two accounts share an api_key")
        return self

    def flow_for(self, entry: SimSymbolSettings) -> FlowParams:
        return (entry.flow or self.flow).params()
