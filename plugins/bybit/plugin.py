"""Registers the Bybit venue with botframe (the ``bybit`` entry point of the ``botframe`` group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botframe.hookspecs import hookimpl
from botframe.venues import VenueContext

from .config import BybitSettings
from .data import BybitDataClient

if TYPE_CHECKING:
    from botframe.plugins import Registry

__all__ = ["botframe_register_venues", "create_data_client"]


def create_data_client(settings: BybitSettings, context: VenueContext) -> BybitDataClient:
    """The venue factory: one data client for the ``[venues.bybit]`` section."""
    return BybitDataClient(settings, context)


@hookimpl
def botframe_register_venues(registry: Registry[Any]) -> None:
    registry.add("bybit", create_data_client, BybitSettings)
