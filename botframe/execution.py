"""What an executor plugin (paper or live) implements, and what the engine hands it.

An executor plugin registers ``registry.add(name, factory, SettingsModel)`` in
``botframe_register_executors``; the engine calls ``factory(settings, context)`` once.
Intents reach ``submit`` only after the risk gate approved them. The executor reports every
order status change and fill through ``context.report`` (which puts them on the bus, the journal and
the portfolio, in that order); it never calls strategies itself.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from .events import Fill, OrderIntent, OrderUpdate

if TYPE_CHECKING:
    import structlog

    from .book import L2Book
    from .bus import EventBus
    from .clock import Clock
    from .journal import Recovered
    from .venues import Endpoints, Instrument

__all__ = ["Executor", "ExecutorContext"]


class ExecutorContext(Protocol):
    @property
    def clock(self) -> Clock: ...

    @property
    def bus(self) -> EventBus:
        """Subscribe here to market events (a paper executor needs books and trades)."""

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger: ...

    @property
    def endpoints(self) -> Endpoints: ...

    def book(self, venue: str, symbol: str) -> L2Book | None: ...

    def instrument(self, venue: str, symbol: str) -> Instrument | None: ...

    def report(self, event: OrderUpdate | Fill) -> None:
        """Report an order update or a fill; synchronous, never blocks."""


class Executor(Protocol):
    """Places, cancels and replaces orders on one or more venues.

    An executor whose orders never leave the process (a simulated venue) may set a class attribute
    ``orders_leave_process = False``: the journal then commits an intent with the next fill or tick
    instead of before the order is handed over. Without it (every live executor) each intent is
    durable before ``submit`` is called.
    """

    def restore(self, recovered: Recovered) -> Collection[str]:
        """What the journal recovered at start-up, given once before ``start``.

        Returns the client order ids of the recovered open orders this executor keeps working (a live
        venue still has them; they are reconciled in ``start``); the engine tracks those and records
        the others as expired. A simulated venue (paper) seeds its positions and keeps nothing.
        """

    async def start(self) -> None:
        """Connect and reconcile; return when ready to take orders."""

    async def stop(self) -> None:
        """Stop; the engine has already asked to cancel open orders."""

    def submit(self, intent: OrderIntent) -> None:
        """Send an approved order; must not block (results come back through ``context.report``)."""

    def cancel(self, client_order_id: str) -> None:
        """Ask to cancel one open order; unknown or finished ids are reported, not raised."""

    def replace(self, client_order_id: str, new_client_order_id: str, *, quantity: Decimal,
                price: Decimal | None) -> None:
        """Change an open order's size or price (cancel + new where the venue cannot amend)."""
