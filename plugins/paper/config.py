"""Settings of the paper executor (``[executors.paper]``): fees, latency, queue model, rounding.

Every field has a default that simulates a reasonable retail connection to a major venue; fees are in
basis points of notional (negative is a rebate), latencies in milliseconds of event time.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from .engine import CancelAttribution, EngineConfig, FeeSchedule, LatencyModel, OffGridPolicy

__all__ = ["PaperSettings", "VenueFees"]

# A fee outside this range (in bps) is surely a unit mistake (percent or fraction typed as bps).
_MIN_FEE_BPS = -100
_MAX_FEE_BPS = 1_000


class VenueFees(BaseModel):
    """One venue's maker and taker fees, overriding the defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    maker_fee_bps: Decimal = Field(ge=_MIN_FEE_BPS, le=_MAX_FEE_BPS)
    taker_fee_bps: Decimal = Field(ge=_MIN_FEE_BPS, le=_MAX_FEE_BPS)


class PaperSettings(BaseModel):
    """How the paper executor simulates a venue; see ``botframe_plugins.paper.engine`` for the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Fee on fills that rested in the book, bps of notional, quote currency (negative: rebate).
    maker_fee_bps: Decimal = Field(default=Decimal("1"), ge=_MIN_FEE_BPS, le=_MAX_FEE_BPS)
    #: Fee on fills that took liquidity, bps of notional, quote currency.
    taker_fee_bps: Decimal = Field(default=Decimal("5"), ge=_MIN_FEE_BPS, le=_MAX_FEE_BPS)
    #: Per-venue fees, e.g. ``venue_fees.binance = { maker_fee_bps = 2, taker_fee_bps = 4 }``.
    venue_fees: dict[str, VenueFees] = Field(default_factory=dict)
    #: Delay from our request (submit, cancel, replace) to its arrival at the simulated venue.
    latency_ms: float = Field(default=5.0, ge=0, le=60_000)
    #: Extra uniform random delay in [0, latency_jitter_ms] per request (drawn from ``seed``).
    latency_jitter_ms: float = Field(default=0.0, ge=0, le=60_000)
    #: Delay from a venue event (ack, fill, cancel) to its report reaching us.
    report_latency_ms: float = Field(default=5.0, ge=0, le=60_000)
    report_latency_jitter_ms: float = Field(default=0.0, ge=0, le=60_000)
    #: Seed of the latency draws: the same events and seed give the same fills.
    seed: int = 0
    #: Where unexplained decreases of our price level come from: "pro_rata", "back" or "front".
    cancel_attribution: CancelAttribution = CancelAttribution.PRO_RATA
    #: Per-venue override of ``cancel_attribution`` (for venues whose feed says where cancels were).
    venue_cancel_attribution: dict[str, CancelAttribution] = Field(default_factory=dict)
    #: A price off the tick or a size off the lot: "reject" (as a venue does) or "round" it.
    off_grid: OffGridPolicy = OffGridPolicy.REJECT
    #: With the live clock, release due arrivals and reports on a timer too (not only on market events).
    release_on_timer: bool = True

    def engine_config(self) -> EngineConfig:
        """The fill engine's configuration from these settings."""
        return EngineConfig(
            fees=FeeSchedule(self.maker_fee_bps, self.taker_fee_bps),
            fees_by_venue={venue: FeeSchedule(fees.maker_fee_bps, fees.taker_fee_bps)
                           for venue, fees in self.venue_fees.items()},
            order_latency=LatencyModel.from_ms(self.latency_ms, self.latency_jitter_ms),
            report_latency=LatencyModel.from_ms(self.report_latency_ms, self.report_latency_jitter_ms),
            seed=self.seed,
            cancel_attribution=self.cancel_attribution,
            cancel_attribution_by_venue=dict(self.venue_cancel_attribution),
            off_grid=self.off_grid,
        )
