"""Registers the Binance venue with botframe (the ``binance`` entry point of the ``botframe`` group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botframe.hookspecs import hookimpl
from botframe.venues import VenueContext

from .config import BinanceSettings
from .data import BinanceDataClient

if TYPE_CHECKING:
    from botframe.plugins import Registry

__all__ = ["botframe_register_venues", "create_data_client"]


def create_data_client(settings: BinanceSettings, context: VenueContext) -> BinanceDataClient:
    """The venue factory: one data client for the ``[venues.binance]`` section."""
    return BinanceDataClient(settings, context)


@hookimpl
def botframe_register_venues(registry: Registry[Any]) -> None:
    registry.add("binance", create_data_client, BinanceSettings)
