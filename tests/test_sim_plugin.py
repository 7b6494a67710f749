"""The simulator as a service plugin: registration, settings, start/stop and published endpoints."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any

import pydantic
import pytest
import structlog
from websockets.asyncio.client import connect

from botframe.clock import SimulatedClock
from botframe.venues import Endpoints
from botframe_plugins.sim import plugin
from botframe_plugins.sim.config import SimSettings


class _Registry:
    """A stand-in for botframe.plugins.Registry: records what was added."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[Any, type[pydantic.BaseModel]]] = {}

    def add(self, name: str, factory: Any, settings_model: type[pydantic.BaseModel]) -> None:
        assert name not in self.entries
        self.entries[name] = (factory, settings_model)


class _Context:
    """A stand-in ServiceContext: a simulated clock, real Endpoints, and tasks it owns."""

    def __init__(self) -> None:
        self.clock = SimulatedClock()
        self.log = structlog.get_logger("test")
        self.endpoints = Endpoints()
        self.tasks: list[asyncio.Task[None]] = []

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task


def test_plugin_registers_service_sim_with_its_settings_model() -> None:
    registry = _Registry()
    plugin.botframe_register_services(registry)
    factory, model = registry.entries["sim"]
    assert model is SimSettings
    assert callable(factory)


def test_settings_reject_unknown_keys_and_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        SimSettings.model_validate({"enabled": True, "prot": 1})
    settings = SimSettings.model_validate({"enabled": True, "port": 0})
    with pytest.raises(pydantic.ValidationError):
        settings.seed = 1


async def test_only_the_simulated_venues_are_published() -> None:
    context = _Context()
    entry = {
        "symbol": "BTC/USD",
        "venue": "kraken",
        "start_price": "100",
        "tick_size": "0.1",
        "lot_size": "0.001",
    }
    service = plugin.create_service(SimSettings.model_validate({"symbols": [entry]}), context)
    await service.start()
    await service.stop()
    assert context.endpoints.get("binance.ws") is None
    assert context.endpoints.get("kraken.ws") is not None


def test_settings_validate_symbols() -> None:
    entry = {"symbol": "BTC/USDT", "start_price": "100", "tick_size": "0.01", "lot_size": "0.001"}
    with pytest.raises(pydantic.ValidationError, match="twice"):
        SimSettings.model_validate({"symbols": [entry, entry]})
    with pytest.raises(pydantic.ValidationError, match="unified"):
        SimSettings.model_validate({"symbols": [{**entry, "symbol": "BTCUSDT"}]})
    parsed = SimSettings.model_validate({"symbols": [entry]})
    assert parsed.symbols[0].tick_size == Decimal("0.01")


async def test_service_start_publishes_endpoints_and_streams_until_stopped() -> None:
    context = _Context()
    settings = SimSettings(wait_for_clients=True)
    service = plugin.create_service(settings, context)

    await service.start()
    try:
        ws_url = context.endpoints.get("binance.ws")
        rest_url = context.endpoints.get("binance.rest")
        assert ws_url is not None
        assert ws_url.startswith("ws://127.0.0.1:")
        assert rest_url == ws_url.replace("ws://", "http://")
        assert context.endpoints.get("kraken.ws") == f"{ws_url}/v2"
        async with connect(f"{ws_url}/stream?streams=btcusdt@depth@100ms", max_queue=None) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["stream"] == "btcusdt@depth@100ms"
    finally:
        await service.stop()

    assert all(task.done() for task in context.tasks)
    with pytest.raises(ConnectionRefusedError):
        async with connect(ws_url, open_timeout=5):
            pass
