"""Coinbase market data (Advanced Trade, and the legacy Exchange feed) for botframe.

Files, as in every venue adapter: ``config.py`` (settings), ``parsing.py`` (wire formats, pure),
``sync.py`` (book states and the per-connection sequence chain, pure), ``data.py`` (the streaming
client), ``plugin.py`` (registration).
"""

from __future__ import annotations

from .config import CoinbaseSettings
from .data import CoinbaseDataClient

__all__ = ["CoinbaseDataClient", "CoinbaseSettings"]
