"""The event bus: one place where market, order and status events meet.

Fast subscribers are plain callables invoked synchronously, in subscription order, inside
``publish``; that keeps the frame -> book -> signal -> strategy path free of queue hops. Slow
subscribers (recorders, metrics exporters, a client API) get their own bounded queue drained by a
task the engine owns; when such a queue is full the *oldest* event is dropped, counted and logged
once per burst, so a slow consumer can never stall trading or grow memory without bound.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from .events import Event

__all__ = ["EventBus", "OverflowPolicy", "SlowSubscriber"]

E = TypeVar("E", bound=Event)
Handler = Callable[[Any], None]
AsyncBatchHandler = Callable[[list[Any]], Awaitable[None]]

_log = structlog.get_logger("botframe.bus")


class OverflowPolicy(enum.StrEnum):
    """What a full slow-subscriber queue does with a new event."""

    DROP_OLDEST = "drop_oldest"  # keep the newest events; count what was dropped
    DROP_NEWEST = "drop_newest"  # keep the oldest events; count what was refused


@dataclass(slots=True)
class SlowSubscriber:
    """A bounded, batch-drained queue for one slow consumer."""

    name: str
    handler: AsyncBatchHandler
    maxsize: int
    policy: OverflowPolicy
    queue: deque[Event] = field(default_factory=deque)
    dropped: int = 0
    delivered: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        if len(self.queue) >= self.maxsize:
            if self.dropped == 0 or self.dropped % 10_000 == 0:
                _log.warning("slow subscriber queue full", subscriber=self.name, dropped=self.dropped + 1,
                             policy=self.policy.value)
            self.dropped += 1
            if self.policy is OverflowPolicy.DROP_NEWEST:
                return
            self.queue.popleft()
        self.queue.append(event)
        self.wakeup.set()

    async def drain_forever(self, batch_size: int = 1024) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            await self.drain(batch_size)

    async def drain(self, batch_size: int = 1024) -> None:
        while self.queue:
            n = min(batch_size, len(self.queue))
            batch = [self.queue.popleft() for _ in range(n)]
            await self.handler(batch)
            self.delivered += n


class EventBus:
    """Routes each published event to the subscribers of its exact type.

    A handler that raises is logged with the event type and counted; the other handlers still run,
    so one faulty observer cannot stop the feed. Strategies are isolated one level up (see
    ``botframe.strategy``), where repeated errors stop the strategy.
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Event], list[Handler]] = {}
        self._slow: list[SlowSubscriber] = []
        self._slow_by_type: dict[type[Event], list[SlowSubscriber]] = {}
        self.published = 0
        self.handler_errors = 0

    def subscribe(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        """Call ``handler(event)`` synchronously for every published event of ``event_type``."""
        self._handlers.setdefault(event_type, []).append(handler)

    def unsubscribe(self, event_type: type[E], handler: Callable[[E], None]) -> None:
        handlers = self._handlers.get(event_type, [])
        if handler in handlers:
            handlers.remove(handler)

    def subscribe_slow(
        self,
        name: str,
        event_types: tuple[type[Event], ...],
        handler: AsyncBatchHandler,
        *,
        maxsize: int = 100_000,
        policy: OverflowPolicy = OverflowPolicy.DROP_OLDEST,
    ) -> SlowSubscriber:
        """Deliver events of ``event_types`` in batches to ``await handler(batch)`` from its own queue.

        The caller (normally the engine) must run ``subscriber.drain_forever()`` as an owned task.
        """
        sub = SlowSubscriber(name=name, handler=handler, maxsize=maxsize, policy=policy)
        self._slow.append(sub)
        for t in event_types:
            self._slow_by_type.setdefault(t, []).append(sub)
        return sub

    @property
    def slow_subscribers(self) -> list[SlowSubscriber]:
        return list(self._slow)

    def has_subscribers(self, event_type: type[Event]) -> bool:
        return bool(self._handlers.get(event_type)) or bool(self._slow_by_type.get(event_type))

    def publish(self, event: Event) -> None:
        self.published += 1
        etype = type(event)
        handlers = self._handlers.get(etype)
        if handlers:
            for handler in handlers:
                try:
                    handler(event)
                except Exception:
                    self.handler_errors += 1
                    _log.exception("event handler failed", event_type=etype.__name__,
                                   handler=getattr(handler, "__qualname__", repr(handler)))
        slow = self._slow_by_type.get(etype)
        if slow:
            for sub in slow:
                sub.offer(event)
