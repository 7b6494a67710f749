"""Registers the Bitfinex venue with botframe (the ``bitfinex`` entry point of the ``botframe`` group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botframe.hookspecs import hookimpl
from botframe.venues import VenueContext

from .config import BitfinexSettings
from .data import BitfinexDataClient

if TYPE_CHECKING:
    from botframe.plugins import Registry

__all__ = ["botframe_register_venues", "create_data_client"]


def create_data_client(settings: BitfinexSettings, context: VenueContext) -> BitfinexDataClient:
    """The venue factory: one data client for the ``[venues.bitfinex]`` section."""
    return BitfinexDataClient(settings, context)


@hookimpl
def botframe_register_venues(registry: Registry[Any]) -> None:
    registry.add("bitfinex", create_data_client, BitfinexSettings)
