"""OKX v5 public market data (spot, swaps, futures) for botframe.

Files, as in every venue adapter: ``config.py`` (settings), ``parsing.py`` (wire formats, pure),
``sync.py`` (the book's sequence/checksum/resync rules, pure), ``data.py`` (the streaming client),
``plugin.py`` (registration).
"""

from __future__ import annotations

from .config import OkxSettings
from .data import OkxDataClient

__all__ = ["OkxDataClient", "OkxSettings"]
