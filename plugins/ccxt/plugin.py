"""The ccxt plugin: the live executor ``ccxt`` and the market-data venue ``ccxt``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botframe.hookspecs import hookimpl

from .config import CcxtExecutorSettings, CcxtVenueSettings
from .execution import CcxtExecutor

if TYPE_CHECKING:
    from botframe.execution import ExecutorContext
    from botframe.plugins import Registry
    from botframe.venues import VenueContext

    from .data import CcxtVenueClient

__all__ = ["botframe_register_executors", "botframe_register_venues", "create_executor", "create_venue"]


def create_executor(settings: CcxtExecutorSettings, context: ExecutorContext) -> CcxtExecutor:
    """The factory of ``[executors.ccxt]``."""
    return CcxtExecutor(settings, context)


def create_venue(settings: CcxtVenueSettings, context: VenueContext) -> CcxtVenueClient:
    """The factory of ``[venues.ccxt]``."""
    from .data import CcxtVenueClient

    return CcxtVenueClient(settings, context)


@hookimpl
def botframe_register_executors(registry: Registry[Any]) -> None:
    """Register the live executor ``ccxt``."""
    registry.add("ccxt", create_executor, CcxtExecutorSettings)


@hookimpl
def botframe_register_venues(registry: Registry[Any]) -> None:
    """Register the generic market-data venue ``ccxt``."""
    registry.add("ccxt", create_venue, CcxtVenueSettings)
