"""Time for everything: one injected ``Clock``, live or simulated, so replays are deterministic."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "LiveClock", "SimulatedClock"]


@runtime_checkable
class Clock(Protocol):
    """What components ask for time. ``time_ns`` is wall time (epoch ns), ``monotonic_ns`` never jumps."""

    def time_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    async def sleep(self, seconds: float) -> None: ...


class LiveClock:
    """The real clock."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedClock:
    """A clock that only moves when told to (replay, tests). ``sleep`` advances it instead of waiting."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now_ns = start_ns
        self._start_ns = start_ns

    def time_ns(self) -> int:
        return self._now_ns

    def monotonic_ns(self) -> int:
        return self._now_ns - self._start_ns

    def advance(self, seconds: float = 0.0, *, ns: int = 0) -> None:
        self._now_ns += int(seconds * 1e9) + ns

    def set(self, now_ns: int) -> None:
        if now_ns < self._now_ns:
            raise ValueError("a simulated clock never goes backwards")
        self._now_ns = now_ns

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)
