"""Registers the Coinbase venue with botframe (the ``coinbase`` entry point of the ``botframe`` group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botframe.hookspecs import hookimpl
from botframe.venues import VenueContext

from .config import CoinbaseSettings
from .data import CoinbaseDataClient

if TYPE_CHECKING:
    from botframe.plugins import Registry

__all__ = ["botframe_register_venues", "create_data_client"]


def create_data_client(settings: CoinbaseSettings, context: VenueContext) -> CoinbaseDataClient:
    """The venue factory: one data client for the ``[venues.coinbase]`` section."""
    return CoinbaseDataClient(settings, context)


@hookimpl
def botframe_register_venues(registry: Registry[Any]) -> None:
    registry.add("coinbase", create_data_client, CoinbaseSettings)
