"""Bundled strategies of botframe (installed as ``botframe_strategies``).

Registered through the entry point ``strategies`` in the group ``botframe``, exactly as a third-party
strategy package would be:

* ``imbalance`` (:mod:`.imbalance`): a taker driven by distance-weighted top-N imbalance and microprice;
* ``depth_maker`` (:mod:`.depth_maker`): a market maker quoting around the microprice, widened by
  volatility, skewed by inventory, pulled when depth thins or the book is not LIVE.
"""

from __future__ import annotations

from typing import Any

from botframe.hookspecs import hookimpl
from botframe.plugins import Registry

from .depth_maker import DepthMakerSettings, DepthMakerStrategy
from .imbalance import ImbalanceSettings, ImbalanceStrategy

__all__ = [
    "DepthMakerSettings",
    "DepthMakerStrategy",
    "ImbalanceSettings",
    "ImbalanceStrategy",
    "botframe_register_strategies",
]


@hookimpl
def botframe_register_strategies(registry: Registry[Any]) -> None:
    """Register ``imbalance`` and ``depth_maker``."""
    registry.add("imbalance", ImbalanceStrategy, ImbalanceStrategy.Settings)
    registry.add("depth_maker", DepthMakerStrategy, DepthMakerStrategy.Settings)
