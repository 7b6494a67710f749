"""The event bus: synchronous fast path, isolation of failing handlers, bounded slow queues."""

from __future__ import annotations

from botframe.bus import EventBus, OverflowPolicy
from botframe.events import Event, Side, Trade


def _trade(i: int) -> Trade:
    return Trade(venue="v", symbol="BTC/USDT", price=100.0 + i, size=1.0, side=Side.BUY)


def test_handlers_are_called_in_subscription_order() -> None:
    bus = EventBus()
    seen: list[str] = []
    bus.subscribe(Trade, lambda e: seen.append("first"))
    bus.subscribe(Trade, lambda e: seen.append("second"))

    bus.publish(_trade(0))

    assert seen == ["first", "second"]


def test_a_failing_handler_is_counted_and_others_still_run() -> None:
    bus = EventBus()
    seen: list[Trade] = []

    def broken(_e: Trade) -> None:
        raise RuntimeError("boom")

    bus.subscribe(Trade, broken)
    bus.subscribe(Trade, seen.append)

    bus.publish(_trade(0))

    assert bus.handler_errors == 1
    assert len(seen) == 1


async def test_slow_subscriber_queue_drops_oldest_when_full_and_counts() -> None:
    bus = EventBus()
    got: list[Event] = []

    async def handler(batch: list[Event]) -> None:
        got.extend(batch)

    sub = bus.subscribe_slow("recorder", (Trade,), handler, maxsize=3, policy=OverflowPolicy.DROP_OLDEST)
    for i in range(5):
        bus.publish(_trade(i))

    await sub.drain()

    assert sub.dropped == 2
    assert [t.price for t in got if isinstance(t, Trade)] == [102.0, 103.0, 104.0]


async def test_slow_subscriber_drop_newest_keeps_the_first_events() -> None:
    bus = EventBus()
    got: list[Event] = []

    async def handler(batch: list[Event]) -> None:
        got.extend(batch)

    sub = bus.subscribe_slow("r", (Trade,), handler, maxsize=2, policy=OverflowPolicy.DROP_NEWEST)
    for i in range(4):
        bus.publish(_trade(i))
    await sub.drain()

    assert [t.price for t in got if isinstance(t, Trade)] == [100.0, 101.0]
    assert sub.dropped == 2
