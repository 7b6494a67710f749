"""Bitfinex v2 public market data (P0 books with SEQ_ALL and checksums, trades) for botframe.

Files, as in every venue adapter: ``config.py`` (settings), ``parsing.py`` (wire formats, pure),
``sync.py`` (the books' sequence/checksum/resync rules, pure), ``data.py`` (the streaming client),
``plugin.py`` (registration).
"""

from __future__ import annotations

from .config import BitfinexSettings
from .data import BitfinexDataClient

__all__ = ["BitfinexDataClient", "BitfinexSettings"]
