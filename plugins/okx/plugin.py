"""Registers the OKX venue with botframe (the ``okx`` entry point of the ``botframe`` group)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botframe.hookspecs import hookimpl
from botframe.venues import VenueContext

from .config import OkxSettings
from .data import OkxDataClient

if TYPE_CHECKING:
    from botframe.plugins import Registry

__all__ = ["botframe_register_venues", "create_data_client"]


def create_data_client(settings: OkxSettings, context: VenueContext) -> OkxDataClient:
    """The venue factory: one data client for the ``[venues.okx]`` section."""
    return OkxDataClient(settings, context)


@hookimpl
def botframe_register_venues(registry: Registry[Any]) -> None:
    registry.add("okx", create_data_client, OkxSettings)
