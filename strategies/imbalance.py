"""Order-book imbalance taker: trade in the direction the resting size near the touch leans.

The idea. When far more size rests on the bid than on the ask near the touch, the next mid move is
more likely up than down: the thin side is consumed or pulled first. This "queue imbalance" effect is
documented by Cartea, Donnelly and Jaimungal (2018, *Enhancing trading strategies with order book
signals*) and by Gould and Bonart (2016, *Queue imbalance as a one-tick-ahead price predictor in a
limit order book*). The strategy reads two signals of each book:

* the distance-weighted imbalance over the best ``levels`` of each side, where a level ``d`` basis
  points from the mid counts with weight ``0.5 ** (d / weight_halflife_bps)``, so size far from the
  touch, which rarely trades soon, barely counts::

      I = (sum w_i bid_i - sum w_j ask_j) / (sum w_i bid_i + sum w_j ask_j)       in [-1, 1]

* the microprice ``(bid_px * ask_qty + ask_px * bid_qty) / (bid_qty + ask_qty)``, whose distance from
  the mid (in bps) confirms the direction at the touch itself.

Rules. Enter long when ``I > entry_threshold`` and the microprice is at least ``microprice_edge_bps``
above the mid (short: the mirror image), by ``order_qty`` at a time, up to ``max_position`` (base
units, either way). Close a long when ``I < -exit_threshold`` (a short when ``I > exit_threshold``).
Orders take liquidity as immediate-or-cancel limits at most ``max_slippage_bps`` through the touch, so
a thin book never fills far away. After each order the strategy waits ``cooldown_ms`` and it never has
more than one order in flight per symbol.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import cached_property

from pydantic import Field

from botframe.book import L2Book
from botframe.events import OrderStatus, OrderUpdate, Side, TimeInForce
from botframe.signals import Microprice, SignalSpec, WeightedImbalance
from botframe.strategy import Strategy, StrategySettings

__all__ = ["ImbalanceSettings", "ImbalanceStrategy"]


class ImbalanceSettings(StrategySettings):
    """``[strategies.imbalance]``: thresholds are unitless imbalances in [-1, 1]; quantities base units."""

    levels: int = Field(default=5, ge=1, le=100)  # best levels of each side in the imbalance
    weight_halflife_bps: float = Field(default=2.0, gt=0)  # a level this far from mid counts half
    entry_threshold: float = Field(default=0.4, gt=0, le=1)
    exit_threshold: float = Field(default=0.1, ge=0, le=1)
    microprice_edge_bps: float = Field(default=0.0, ge=0)  # microprice beyond mid needed to enter
    order_qty: Decimal = Field(default=Decimal("0.01"), gt=0)
    max_position: Decimal = Field(default=Decimal("0.05"), gt=0)
    max_slippage_bps: float = Field(default=5.0, gt=0)  # limit price this far through the touch
    cooldown_ms: int = Field(default=1000, ge=0)


class ImbalanceStrategy(Strategy[ImbalanceSettings]):
    """Takes liquidity in the direction of distance-weighted top-N imbalance, within a position limit."""

    Settings = ImbalanceSettings
    microprice = Microprice()

    def signal_specs(self) -> Sequence[SignalSpec]:
        return [self.imbalance, self.microprice]

    @cached_property
    def imbalance(self) -> WeightedImbalance:
        s = self.settings
        return WeightedImbalance(levels=s.levels, decay=0.5 ** (1.0 / s.weight_halflife_bps), mode="bps")

    def on_start(self) -> None:
        self._next_order_ns: dict[str, int] = {}  # per symbol: no order before this time (cool-down)

    def on_book(self, book: L2Book) -> None:
        s, ctx, symbol = self.settings, self.ctx, book.symbol
        now = ctx.now_ns()
        if now < self._next_order_ns.get(symbol, 0) or ctx.open_orders(symbol):
            return
        imbalance = ctx.signal(symbol, self.imbalance)
        micro, mid = ctx.signal(symbol, self.microprice), book.mid()
        if imbalance is None or micro is None or mid is None:
            return
        edge_bps = (micro - mid) / mid * 1e4
        position = ctx.position(symbol)
        if position > 0 and imbalance < -s.exit_threshold:
            sent = self._take(book, Side.SELL, position, reduce_only=True)
        elif position < 0 and imbalance > s.exit_threshold:
            sent = self._take(book, Side.BUY, -position, reduce_only=True)
        elif (imbalance > s.entry_threshold and edge_bps >= s.microprice_edge_bps
              and position + s.order_qty <= s.max_position):
            sent = self._take(book, Side.BUY, s.order_qty)
        elif (imbalance < -s.entry_threshold and -edge_bps >= s.microprice_edge_bps
              and position - s.order_qty >= -s.max_position):
            sent = self._take(book, Side.SELL, s.order_qty)
        else:
            return
        if sent is not None:
            self._next_order_ns[symbol] = now + s.cooldown_ms * 1_000_000

    def _take(self, book: L2Book, side: Side, qty: Decimal, *, reduce_only: bool = False) -> str | None:
        """An immediate-or-cancel limit at most ``max_slippage_bps`` through the touch."""
        slip = self.settings.max_slippage_bps / 1e4
        if side is Side.BUY:
            ask = book.best_ask_price()
            return None if ask is None else self.ctx.buy(
                book.symbol, qty, ask * (1 + slip), time_in_force=TimeInForce.IOC, reduce_only=reduce_only)
        bid = book.best_bid_price()
        return None if bid is None else self.ctx.sell(
            book.symbol, qty, bid * (1 - slip), time_in_force=TimeInForce.IOC, reduce_only=reduce_only)

    def on_order_update(self, update: OrderUpdate) -> None:
        if update.status is OrderStatus.REJECTED:
            self.ctx.log.info("order rejected", symbol=update.symbol, reason=update.reason)
