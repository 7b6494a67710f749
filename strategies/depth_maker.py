"""Depth market maker: quote both sides around the microprice, and step back when the market turns risky.

The idea. A market maker earns the spread between its bid and its ask and loses when the price runs
through its quotes (adverse selection) or when it is stuck with inventory as the price moves. Each rule
here answers one of those risks:

* **Where to quote.** Around the microprice ``(bid_px * ask_qty + ask_px * bid_qty) / (bid_qty +
  ask_qty)`` rather than the mid: it leans toward the side likely to trade next, so the quote on the
  thin side is not the one picked off first (Stoikov, 2018, *The micro-price*).
* **How wide.** ``half_spread_bps = base_half_spread_bps + vol_multiplier * sigma_bps``, capped at
  ``max_half_spread_bps``, where ``sigma_bps`` is the standard deviation of the mid's move over
  ``vol_sample_ms``, an exponentially weighted estimate with a half-life of ``vol_halflife_secs``. When
  the price moves more, a wider spread pays for the larger adverse moves, as in the optimal spread of
  Avellaneda and Stoikov (2008, *High-frequency trading in a limit order book*), which grows with
  volatility.
* **How much.** ``order_qty`` per side, skewed by inventory: with ``q = position / max_position``
  in [-1, 1], the bid quotes ``order_qty * (1 - inventory_skew * q)`` and the ask ``order_qty *
  (1 + inventory_skew * q)``, so a long book sells more readily than it buys and drifts back to flat.
  A quote never lets the position pass ``max_position`` (base units) even if it fills completely, and
  a side whose size rounds to nothing (or below the venue's minimum notional) is not quoted.
* **When to step back.** Both quotes are pulled while the resting notional within ``depth_band_bps``
  of the mid, on either side, is below ``min_depth_notional`` (quote currency): thin depth means the
  next market order moves the price far, through our quote. They are pulled as well as soon as the
  book stops being LIVE (a gap, a stale feed): a quote priced off a wrong book is a gift.

Quotes are post-only limit orders, one per side (``StrategyContext.quote``); a quote is moved only when
the wanted price is more than ``requote_threshold_bps`` away from it or its size changed, which keeps
the order and cancel rates well inside the risk limits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from functools import cached_property

from pydantic import Field

from botframe.book import L2Book
from botframe.events import BookHealth, FeedStatus, Side
from botframe.signals import Depth, Microprice, SignalSpec
from botframe.strategy import Strategy, StrategySettings, to_decimal

__all__ = ["DepthMakerSettings", "DepthMakerStrategy"]


class DepthMakerSettings(StrategySettings):
    """``[strategies.depth_maker]``: spreads in bps of the microprice, quantities in base units."""

    base_half_spread_bps: float = Field(default=1.0, gt=0)
    max_half_spread_bps: float = Field(default=20.0, gt=0)
    vol_multiplier: float = Field(default=1.0, ge=0)  # half spread widens by this many sigmas
    vol_sample_ms: int = Field(default=1000, ge=10)
    vol_halflife_secs: float = Field(default=30.0, gt=0)
    order_qty: Decimal = Field(default=Decimal("0.001"), gt=0)
    max_position: Decimal = Field(default=Decimal("0.005"), gt=0)
    inventory_skew: float = Field(default=1.0, ge=0, le=1)  # 0: same size both sides; 1: none at the limit
    depth_band_bps: float = Field(default=5.0, gt=0)
    min_depth_notional: float = Field(default=10_000.0, ge=0)  # quote currency, each side, within the band
    requote_threshold_bps: float = Field(default=0.5, ge=0)


class DepthMakerStrategy(Strategy[DepthMakerSettings]):
    """Quotes both sides around the microprice; volatility widens, inventory skews, thin depth pulls."""

    Settings = DepthMakerSettings
    microprice = Microprice()

    @cached_property
    def bid_depth(self) -> Depth:
        return Depth(band_bps=self.settings.depth_band_bps, measure="bid_notional")

    @cached_property
    def ask_depth(self) -> Depth:
        return Depth(band_bps=self.settings.depth_band_bps, measure="ask_notional")

    def signal_specs(self) -> Sequence[SignalSpec]:
        return [self.microprice, self.bid_depth, self.ask_depth]

    def on_start(self) -> None:
        self._last_mid: dict[str, float] = {}
        self._variance: dict[str, float] = {}  # EWMA of squared mid moves per sample, bps^2
        self._quoting: set[str] = set()  # symbols with quotes out, to log when that changes
        self.ctx.set_timer("volatility", self.settings.vol_sample_ms / 1000)

    def sigma_bps(self, symbol: str) -> float:
        """The current volatility estimate: standard deviation of the mid's move per sample, in bps."""
        return math.sqrt(self._variance.get(symbol, 0.0))

    def on_timer(self, name: str, now_ns: int) -> None:
        s = self.settings
        weight = 1.0 - 0.5 ** (s.vol_sample_ms / 1000 / s.vol_halflife_secs)
        for symbol in s.symbols:
            book = self.ctx.book(symbol)
            mid = book.mid() if book is not None and book.is_live else None
            if mid is None:
                continue
            last = self._last_mid.get(symbol)
            self._last_mid[symbol] = mid
            if last is not None:
                move_bps = math.log(mid / last) * 1e4
                self._variance[symbol] = (1 - weight) * self._variance.get(symbol, 0.0) + weight * move_bps**2

    def on_book(self, book: L2Book) -> None:
        s, ctx, symbol = self.settings, self.ctx, book.symbol
        center = ctx.signal(symbol, self.microprice)
        bid_depth, ask_depth = ctx.signal(symbol, self.bid_depth), ctx.signal(symbol, self.ask_depth)
        if center is None or bid_depth is None or ask_depth is None \
                or min(bid_depth, ask_depth) < s.min_depth_notional:
            self._pull(symbol, "depth within the band is thin", bid_depth=bid_depth, ask_depth=ask_depth)
            return
        if symbol not in self._quoting:
            self._quoting.add(symbol)
            ctx.log.info("quoting", symbol=symbol)
        half = min(s.base_half_spread_bps + s.vol_multiplier * self.sigma_bps(symbol), s.max_half_spread_bps) / 1e4
        position = ctx.position(symbol)
        skew = position / s.max_position * to_decimal(s.inventory_skew)
        bid_qty = min(s.order_qty * (1 - skew), s.max_position - position)
        ask_qty = min(s.order_qty * (1 + skew), s.max_position + position)
        tolerance = center * s.requote_threshold_bps / 1e4
        ctx.quote(symbol, Side.BUY, center * (1 - half), bid_qty, tolerance=tolerance)
        ctx.quote(symbol, Side.SELL, center * (1 + half), ask_qty, tolerance=tolerance)

    def on_feed_status(self, status: FeedStatus) -> None:
        if status.health is not BookHealth.LIVE:
            self._pull(status.symbol, "book not live", health=status.health.value)

    def _pull(self, symbol: str, why: str, **context: object) -> None:
        self.ctx.cancel_all(symbol)
        if symbol in self._quoting:
            self._quoting.discard(symbol)
            self.ctx.log.info("quotes pulled", symbol=symbol, why=why, **context)
