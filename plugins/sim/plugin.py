"""The simulator as a botframe service plugin: ``[services.sim]`` with ``enabled = true``.

It listens on 127.0.0.1 (an ephemeral port by default), steps the market with the engine's clock,
and publishes its URLs so venues configured with ``url = "simulator"`` find it:

* ``binance.ws``   -> ``ws://127.0.0.1:PORT``    (append ``/stream?streams=...`` or ``/ws``)
* ``binance.rest`` -> ``http://127.0.0.1:PORT``  (append ``/api/v3/...``)
* ``kraken.ws``    -> ``ws://127.0.0.1:PORT/v2`` (the Kraken v2 WebSocket itself)
* ``binance.api``  -> ``http://127.0.0.1:PORT2`` (Binance REST with trading; append ``/api/v3/...``)
* ``binance.ws_api`` -> ``ws://127.0.0.1:PORT/ws-api/v3`` (Binance's WebSocket API: user data)

A venue's keys are published only when some symbol is simulated on that venue, so a venue pointed at
a simulator that does not serve it fails at start-up with a message instead of waiting for data.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from botframe.hookspecs import hookimpl

from .config import SimSettings
from .server import SimServer

if TYPE_CHECKING:
    from typing import Any

    from botframe.plugins import Registry
    from botframe.services import ServiceContext

__all__ = [
    "ENDPOINT_BINANCE_API",
    "ENDPOINT_BINANCE_REST",
    "ENDPOINT_BINANCE_WS",
    "ENDPOINT_BINANCE_WS_API",
    "ENDPOINT_KRAKEN_WS",
    "SimService",
    "botframe_register_services",
    "create_service",
]

ENDPOINT_BINANCE_WS = "binance.ws"
ENDPOINT_BINANCE_REST = "binance.rest"
ENDPOINT_KRAKEN_WS = "kraken.ws"
ENDPOINT_BINANCE_API = "binance.api"
ENDPOINT_BINANCE_WS_API = "binance.ws_api"


class SimService:
    """The running simulator: a :class:`SimServer` plus the market loop the engine owns."""

    def __init__(self, settings: SimSettings, context: ServiceContext) -> None:
        self.settings = settings
        self.context = context
        self.server = SimServer(settings, clock=context.clock, log=context.log.bind(service="sim"))
        self._market: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.server.start()
        self._market = self.context.spawn(self.server.run_market(), name="sim.market")
        endpoints = self.context.endpoints
        venues = {s.venue for s in self.settings.symbols}
        if "binance" in venues:
            endpoints.set(ENDPOINT_BINANCE_WS, self.server.ws_url)
            endpoints.set(ENDPOINT_BINANCE_REST, self.server.rest_url)
            endpoints.set(ENDPOINT_BINANCE_API, self.server.api_url)
            endpoints.set(ENDPOINT_BINANCE_WS_API, self.server.ws_api_url)
        if "kraken" in venues:
            endpoints.set(ENDPOINT_KRAKEN_WS, self.server.kraken_url)

    async def stop(self) -> None:
        market, self._market = self._market, None
        if market is not None and not market.done():
            market.cancel()
            try:
                await market
            except asyncio.CancelledError:
                # Our own cancel; re-raise only if this task itself is being cancelled.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        await self.server.stop()


def create_service(settings: SimSettings, context: ServiceContext) -> SimService:
    """The factory registered for ``[services.sim]``."""
    return SimService(settings, context)


@hookimpl
def botframe_register_services(registry: Registry[Any]) -> None:
    """Register the exchange simulator as the service ``sim``."""
    registry.add("sim", create_service, SimSettings)
