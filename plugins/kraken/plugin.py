"""Registers the Kraken venue with botframe (the ``kraken`` entry point of the ``botframe`` group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botframe.hookspecs import hookimpl
from botframe.venues import VenueContext

from .config import KrakenSettings
from .data import KrakenDataClient

if TYPE_CHECKING:
    from botframe.plugins import Registry

__all__ = ["botframe_register_venues", "create_data_client"]


def create_data_client(settings: KrakenSettings, context: VenueContext) -> KrakenDataClient:
    """The venue factory: one data client for the ``[venues.kraken]`` section."""
    return KrakenDataClient(settings, context)


@hookimpl
def botframe_register_venues(registry: Registry[Any]) -> None:
    registry.add("kraken", create_data_client, KrakenSettings)
