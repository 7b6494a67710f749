"""Bybit v5 public market data (spot, linear and inverse) for botframe.

Files, as in every venue adapter: ``config.py`` (settings), ``parsing.py`` (wire formats, pure),
``sync.py`` (the per-book ``u`` chain, pure), ``data.py`` (the streaming client), ``plugin.py``
(registration).
"""

from __future__ import annotations

from .config import BybitSettings
from .data import BybitDataClient

__all__ = ["BybitDataClient", "BybitSettings"]
