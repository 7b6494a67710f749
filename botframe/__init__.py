"""botframe: a plugin-based, stream-driven trading bot framework for order-book strategies.

This module is the public API for plugin authors: import what you need from ``botframe``.
"""

from __future__ import annotations

from .book import L2Book
from .clock import Clock, LiveClock, SimulatedClock
from .events import (
    BookDelta,
    BookHealth,
    BookSnapshot,
    FeedStatus,
    Fill,
    HealthReason,
    OrderDenied,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    Trade,
    TradingState,
)
from .hookspecs import hookimpl
from .plugins import Registry
from .risk import Denial, RiskContext
from .signals import (
    Depth,
    Imbalance,
    Microprice,
    OrderFlowImbalance,
    SignalSpec,
    Spread,
    TradeFlowImbalance,
    WeightedImbalance,
)
from .strategy import PnL, Strategy, StrategyContext, StrategySettings
from .venues import Instrument

__all__ = [
    "BookDelta",
    "BookHealth",
    "BookSnapshot",
    "Clock",
    "Denial",
    "Depth",
    "FeedStatus",
    "Fill",
    "HealthReason",
    "Imbalance",
    "Instrument",
    "L2Book",
    "LiveClock",
    "Microprice",
    "OrderDenied",
    "OrderFlowImbalance",
    "OrderIntent",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "PnL",
    "Registry",
    "RiskContext",
    "Side",
    "SignalSpec",
    "SimulatedClock",
    "Spread",
    "Strategy",
    "StrategyContext",
    "StrategySettings",
    "TimeInForce",
    "Trade",
    "TradeFlowImbalance",
    "TradingState",
    "WeightedImbalance",
    "hookimpl",
]

__version__ = "0.1.0"
