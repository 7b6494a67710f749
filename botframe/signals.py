"""Order-book signals computed per book: specs that strategies declare, and the set that computes them.

A strategy names the signals it wants as frozen, hashable specs (``Imbalance(levels=5)``); each has a
stable ``name`` (``"imbalance_5"``) under which its value is read. The engine keeps one ``SignalSet``
per book and calls ``on_snapshot`` / ``on_delta`` after the book applied the event, and ``on_trade``
for the symbol's trades.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .book import L2Book
from .events import BookDelta, BookSnapshot, Trade

__all__ = ["Imbalance", "SignalSet", "SignalSpec"]


@dataclass(frozen=True, slots=True)
class Imbalance:
    """Order-book imbalance over the top ``levels`` of each side, in [-1, 1].

    ``(Qb - Qa) / (Qb + Qa)`` with ``Qb``/``Qa`` the summed sizes of the best ``levels`` bids/asks.
    None when a side is empty.
    """

    levels: int = 5

    def __post_init__(self) -> None:
        if self.levels < 1:
            raise ValueError(f"Imbalance.levels must be >= 1, got {self.levels}")

    @property
    def name(self) -> str:
        return f"imbalance_{self.levels}"


SignalSpec = Imbalance


class SignalSet:
    """The signals one book's readers asked for, kept current as the book changes."""

    def __init__(self, book: L2Book, specs: Iterable[SignalSpec]) -> None:
        self.book = book
        self._specs: dict[str, SignalSpec] = {}
        for spec in specs:
            self._specs.setdefault(spec.name, spec)
        self._cache: dict[str, float | None] = {}

    @property
    def names(self) -> list[str]:
        """Names of the signals in this set, in declaration order."""
        return list(self._specs)

    def on_snapshot(self, snap: BookSnapshot) -> None:
        """The book was replaced by ``snap``."""
        self._cache = {}

    def on_delta(self, delta: BookDelta) -> None:
        """The book applied ``delta``."""
        self._cache = {}

    def on_trade(self, trade: Trade) -> None:
        """A public trade of this symbol happened."""

    def value(self, name: str) -> float | None:
        """Current value of the signal ``name``; None when undefined (e.g. an empty side)."""
        cache = self._cache
        if name in cache:
            return cache[name]
        spec = self._specs[name]
        v = self._imbalance(spec.levels)
        cache[name] = v
        return v

    def values(self) -> dict[str, float | None]:
        """Every signal's current value by name."""
        return {name: self.value(name) for name in self._specs}

    def _imbalance(self, levels: int) -> float | None:
        bids = self.book.bids(levels)
        asks = self.book.asks(levels)
        if not bids or not asks:
            return None
        qb = sum(s for _, s in bids)
        qa = sum(s for _, s in asks)
        return (qb - qa) / (qb + qa)
