"""Every botframe hook, grouped by phase. Nothing else lives here.

Hooks are for discovery, lifecycle, decisions and observation; never per market event (the per-event
path is direct method calls resolved at start-up, see DESIGN.md principle 2). Core code calls them only
through the typed facade :class:`botframe.plugins.Hooks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .engine import Engine
    from .events import FeedStatus, Fill, OrderIntent, OrderUpdate
    from .plugins import Registry
    from .risk import Denial, RiskContext
    from .settings import Settings

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "botframe"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -- discovery: called once at start-up, each with a registry; return nothing ------------------------


@hookspec
def botframe_register_venues(registry: Registry[Any]) -> None:
    """Register market-data venues.

    Called once, before settings are validated. Call ``registry.add(name, factory, settings_model)``
    where ``factory(settings, context)`` builds the venue's data client and ``settings_model`` is the
    pydantic model of its ``[venues.<name>]`` section. A duplicate name is an error at start-up.
    """


@hookspec
def botframe_register_strategies(registry: Registry[Any]) -> None:
    """Register strategies: ``registry.add(name, strategy_class, settings_model)``.

    The strategy's section is ``[strategies.<name>]``. Called once, before settings are validated.
    """


@hookspec
def botframe_register_executors(registry: Registry[Any]) -> None:
    """Register order executors (``paper``, live ones): ``registry.add(name, factory, settings_model)``.

    The section is ``[executors.<name>]``. Called once, before settings are validated.
    """


@hookspec
def botframe_register_services(registry: Registry[Any]) -> None:
    """Register background services (the exchange simulator, recorders, exporters).

    ``registry.add(name, factory, settings_model)``; ``factory(settings, context)`` returns a
    :class:`~botframe.services.Service`. The section is ``[services.<name>]``; a service runs only when
    its section sets ``enabled = true``. Called once, before settings are validated.
    """


# -- lifecycle -----------------------------------------------------------------------------------------


@hookspec
def botframe_configure(settings: Settings) -> None:
    """Called once with the validated settings, before anything connects.

    A plugin may keep what it needs from ``settings``; raising here stops start-up with its message.
    """


@hookspec
def botframe_startup(engine: Engine) -> None:
    """Called once when the engine has built every component and before market data flows.

    A plugin may start its own tasks with ``engine.spawn(coro, name=...)``, which the engine owns.
    """


@hookspec
def botframe_shutdown(engine: Engine) -> None:
    """Called once while the engine stops, after strategies stopped and open orders were cancelled."""


# -- decision --------------------------------------------------------------------------------------------


@hookspec
def botframe_check_order(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Vet one order intent before any executor sees it.

    Every implementation runs (this is not ``firstresult``); return a :class:`~botframe.risk.Denial`
    to block the order, or ``None`` to let it pass. Any one denial blocks; each denial is published as
    an ``OrderDenied`` event, logged and counted. ``context`` gives read access to books, signals,
    positions, open orders and the trading state. Must be fast and must not block.
    """
    raise NotImplementedError  # pragma: no cover - a spec, never called


# -- observation: must not block -------------------------------------------------------------------------


@hookspec
def botframe_on_fill(fill: Fill) -> None:
    """Called for each fill of one of our orders, after the portfolio and journal recorded it."""


@hookspec
def botframe_on_order_update(update: OrderUpdate) -> None:
    """Called for each order status change reported by an executor."""


@hookspec
def botframe_on_feed_status(status: FeedStatus) -> None:
    """Called on every book health transition (CONNECTING, SYNCING, LIVE, RESYNCING)."""
