"""What a venue (market-data) plugin implements, and what the engine hands it.

A venue plugin registers ``registry.add(name, factory, SettingsModel)`` in
``botframe_register_venues``; the engine calls ``factory(settings, context)`` once and runs the
returned client's ``run()`` as a task it owns until shutdown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Protocol

from pydantic import AfterValidator

from .events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason

if TYPE_CHECKING:
    import structlog

    from .book import L2Book
    from .clock import Clock
    from .streams import StreamCounters

__all__ = [
    "ApplyBookEvent",
    "Endpoints",
    "HealthChange",
    "Instrument",
    "Resubscribe",
    "UnifiedSymbols",
    "VenueClient",
    "VenueContext",
    "check_unified_symbols",
]


def check_unified_symbols(value: list[str]) -> list[str]:
    """Symbols in the project's one form (``BTC/USDT``, ``BTC/USDT:USDT``, as ccxt writes them), once each."""
    for symbol in value:
        if "/" not in symbol:
            raise ValueError(f"{symbol!r} is not a unified symbol; write it as ccxt does, like 'BTC/USDT'")
    if len(set(value)) != len(value):
        raise ValueError("a symbol is listed twice")
    return value


#: A venue setting's list of symbols, validated by :func:`check_unified_symbols`.
UnifiedSymbols = Annotated[list[str], AfterValidator(check_unified_symbols)]


#: Applies a book event to the engine's book without anyone seeing it (``VenueContext.apply``).
ApplyBookEvent = Callable[[BookSnapshot | BookDelta], "L2Book"]


@dataclass(frozen=True, slots=True)
class HealthChange:
    """What a venue's sync machine asks its client to report: a book's health moved (or a problem was
    seen while it was already out of sync). ``counter`` names a venue counter to add one to, if any."""

    symbol: str
    health: BookHealth
    reason: HealthReason
    detail: str = ""
    counter: str = ""


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """What a sync machine asks its client to do: unsubscribe and subscribe ``symbol``'s book again."""

    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class Instrument:
    """Trading rules of one symbol, as the venue reports them (strings kept exact)."""

    venue: str
    symbol: str  # unified, e.g. "BTC/USDT"
    venue_symbol: str  # the venue's own, e.g. "BTCUSDT"
    base: str
    quote: str
    tick_size: str
    lot_size: str
    min_notional: str = "0"


class Endpoints:
    """URLs of local services (the exchange simulator) that settings refer to as ``"simulator"``.

    A service publishes ``endpoints.set("binance.ws", "ws://127.0.0.1:54321")`` when it starts; a
    venue resolves its configured URL with ``endpoints.resolve(url, "binance.ws")``.
    """

    SIMULATOR = "simulator"

    def __init__(self) -> None:
        self._urls: dict[str, str] = {}

    def set(self, key: str, url: str) -> None:
        self._urls[key] = url

    def get(self, key: str) -> str | None:
        return self._urls.get(key)

    def resolve(self, configured: str, key: str) -> str:
        if configured != self.SIMULATOR:
            return configured
        url = self._urls.get(key)
        if url is None:
            raise LookupError(
                f"the URL is set to 'simulator' but no simulator serves {key!r}; "
                "enable [services.sim] or set the venue's real URL"
            )
        return url


class VenueContext(Protocol):
    """The engine's side of a venue client: where it sends events and health, and what it may read."""

    @property
    def venue(self) -> str: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger: ...

    @property
    def endpoints(self) -> Endpoints: ...

    def publish(self, event: Event) -> None:
        """Put a market event on the bus; book events are applied to the book before this returns."""

    def apply(self, event: BookSnapshot | BookDelta) -> L2Book:
        """Apply a book event to the engine's book WITHOUT anyone seeing it yet; returns the book.

        For venues that verify a book after each change (checksums): apply, verify, then ``publish``
        the same event, which is not applied twice. An event that fails verification is simply never
        published (move the book to RESYNCING instead): no strategy, signal or executor saw it.
        """

    def set_health(self, symbol: str, health: BookHealth, reason: HealthReason, detail: str = "") -> None:
        """Move a book's health; publishes a ``FeedStatus`` when it changes."""

    def book(self, symbol: str) -> L2Book:
        """The engine's book for ``symbol`` (read it; change it only through ``publish``)."""

    def add_instrument(self, instrument: Instrument) -> None:
        """Make an instrument's tick/lot/min-notional known to risk and execution."""

    def count(self, name: str, symbol: str = "", n: int = 1) -> None:
        """Add to a named counter of this venue (per symbol when given): ``parse_errors``, ``gaps``..."""


class VenueClient(Protocol):
    """A running market-data connection set for one venue."""

    symbols: list[str]

    async def run(self) -> None:
        """Connect, subscribe and stream until cancelled; reconnects by itself; never returns normally."""

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        """Drop one book and re-sync it from a fresh snapshot (the engine found it crossed).

        Must move the book to RESYNCING through ``context.set_health`` and keep buffering updates
        while the snapshot is fetched, as the venue's own gap handling does.
        """

    def stream_counters(self) -> list[StreamCounters]:
        """Live counters of each connection (messages, bytes, reconnects, parse errors...)."""


@dataclass(slots=True)
class VenueCounters:
    """Counters of one venue connection set, reported in the summary."""

    values: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, n: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + n
