"""What a service plugin implements: a background component that is neither venue, strategy nor executor.

The bundled exchange simulator is a service; so would be a metrics exporter or a recorder. A plugin
registers ``registry.add(name, factory, SettingsModel)`` in ``botframe_register_services``; a service runs
when its ``[services.<name>]`` section says ``enabled = true``. The engine starts every service before any
venue connects (so a simulator's URLs are known) and stops them after the venues.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    import structlog

    from .clock import Clock
    from .venues import Endpoints

__all__ = ["Service", "ServiceContext"]


class ServiceContext(Protocol):
    @property
    def clock(self) -> Clock: ...

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger: ...

    @property
    def endpoints(self) -> Endpoints:
        """Publish the URLs you serve here, e.g. ``endpoints.set("binance.ws", url)``."""

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a task the engine owns (cancelled at shutdown; a crash stops the run)."""


class Service(Protocol):
    async def start(self) -> None:
        """Start serving; return once ready (endpoints published)."""

    async def stop(self) -> None:
        """Stop serving and release every socket and task."""
