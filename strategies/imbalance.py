"""Order-book imbalance taker.

The idea: when resting size near the touch is heavily skewed to one side, the next price move tends to
go the other way from the thin side (the "queue imbalance" effect documented by Cartea, Donnelly and
Jaimungal, and by Gould and Bonart, 2016). This strategy reads the top-N imbalance

    I = (sum bid sizes - sum ask sizes) / (sum bid sizes + sum ask sizes)   over the best N levels

and takes liquidity in its direction: buy when ``I > entry_threshold``, sell when ``I < -entry_threshold``,
within ``max_position`` (base units). An open long is closed when ``I`` falls below ``-exit_threshold`` (a
short when it rises above ``exit_threshold``). After each order it waits ``cooldown_ms`` and never has more
than one order in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import Field

from botframe.book import L2Book
from botframe.events import OrderUpdate
from botframe.signals import Imbalance, SignalSpec
from botframe.strategy import Strategy, StrategySettings

__all__ = ["ImbalanceSettings", "ImbalanceStrategy"]


class ImbalanceSettings(StrategySettings):
    levels: int = Field(default=5, ge=1, le=100)
    entry_threshold: float = Field(default=0.4, gt=0, le=1)
    exit_threshold: float = Field(default=0.1, ge=0, le=1)
    order_qty: Decimal = Field(default=Decimal("0.01"), gt=0)
    max_position: Decimal = Field(default=Decimal("0.05"), gt=0)
    cooldown_ms: int = Field(default=1000, ge=0)


class ImbalanceStrategy(Strategy[ImbalanceSettings]):
    """Takes liquidity in the direction of top-N order-book imbalance, within a position limit."""

    Settings = ImbalanceSettings

    def on_start(self) -> None:
        self._spec = Imbalance(levels=self.settings.levels)
        self._next_order_ns = 0

    def signal_specs(self) -> Sequence[SignalSpec]:
        return [Imbalance(levels=self.settings.levels)]

    def on_book(self, book: L2Book) -> None:
        s = self.settings
        now = self.ctx.now_ns()
        if now < self._next_order_ns or self.ctx.open_orders(book.symbol):
            return
        imbalance = self.ctx.signal(book.symbol, self._spec.name)
        if imbalance is None:
            return
        position = self.ctx.position(book.symbol)
        order_id: str | None = None
        if position > 0 and imbalance < -s.exit_threshold:
            order_id = self.ctx.sell(book.symbol, position, reduce_only=True)
        elif position < 0 and imbalance > s.exit_threshold:
            order_id = self.ctx.buy(book.symbol, -position, reduce_only=True)
        elif imbalance > s.entry_threshold and position + s.order_qty <= s.max_position:
            order_id = self.ctx.buy(book.symbol, s.order_qty)
        elif imbalance < -s.entry_threshold and position - s.order_qty >= -s.max_position:
            order_id = self.ctx.sell(book.symbol, s.order_qty)
        if order_id is not None:
            self._next_order_ns = now + s.cooldown_ms * 1_000_000

    def on_order_update(self, update: OrderUpdate) -> None:
        if update.status.value == "rejected":
            self.ctx.log.info("order rejected", symbol=update.symbol, reason=update.reason)
