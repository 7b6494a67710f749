"""Placeholder replaced in step 6."""

from __future__ import annotations

__all__ = ["CcxtVenueClient"]


class CcxtVenueClient:
    """Replaced below."""

    def __init__(self, settings: object, context: object) -> None:
        self.symbols: list[str] = []
