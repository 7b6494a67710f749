"""Binance market data (spot, Binance.US, USD-M and COIN-M futures) for botframe.

Files, as in every venue adapter: ``config.py`` (settings), ``parsing.py`` (wire formats, pure),
``sync.py`` (the diff-depth sync procedure, pure), ``data.py`` (the streaming client), ``plugin.py``
(registration).
"""

from __future__ import annotations

from .config import BinanceSettings
from .data import BinanceDataClient

__all__ = ["BinanceDataClient", "BinanceSettings"]
