"""Kraken spot market data (WebSocket v2 and v1) for botframe.

Files, as in every venue adapter: ``config.py`` (settings), ``parsing.py`` (wire formats, pure),
``sync.py`` (the book's snapshot/checksum/resync rules, pure), ``data.py`` (the streaming client),
``plugin.py`` (registration).
"""

from __future__ import annotations

from .config import KrakenSettings
from .data import KrakenDataClient

__all__ = ["KrakenDataClient", "KrakenSettings"]
