"""botframe.testing.RecordingVenueContext: the engine's side of a venue plugin, as venue tests use it."""

from __future__ import annotations

import asyncio

import pytest

from botframe.bus import EventBus
from botframe.clock import SimulatedClock
from botframe.events import BookDelta, BookHealth, BookSnapshot, FeedStatus, HealthReason, Side, Trade
from botframe.streams import StreamCounters
from botframe.testing import RecordingVenueContext
from botframe.venues import Endpoints, Instrument

SYMBOL = "BTC/USD"


def snapshot() -> BookSnapshot:
    return BookSnapshot(venue="v", symbol=SYMBOL, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)])


def test_an_applied_event_changes_the_book_at_once_and_its_publish_does_not_apply_it_twice() -> None:
    bus = EventBus()
    seen: list[BookDelta] = []
    bus.subscribe(BookDelta, seen.append)
    ctx = RecordingVenueContext("v", bus=bus)
    ctx.publish(snapshot())
    delta = BookDelta(venue="v", symbol=SYMBOL, bids=[(99.0, 2.0)], asks=[])

    book = ctx.apply(delta)
    before_publish = book.bids()
    ctx.publish(delta)

    assert before_publish == [(100.0, 1.0), (99.0, 2.0)]
    assert book.bids() == [(100.0, 1.0), (99.0, 2.0)]
    assert book is ctx.book(SYMBOL)
    assert seen == [delta]
    assert ctx.unpublished() == []


def test_an_applied_event_never_published_is_seen_by_nobody_and_listed_as_unpublished() -> None:
    bus = EventBus()
    seen: list[BookDelta] = []
    bus.subscribe(BookDelta, seen.append)
    ctx = RecordingVenueContext("v", bus=bus)
    ctx.publish(snapshot())
    bad = BookDelta(venue="v", symbol=SYMBOL, bids=[(99.0, 5.0)], asks=[])
    later = BookDelta(venue="v", symbol=SYMBOL, bids=[(98.0, 1.0)], asks=[])

    ctx.apply(bad)
    ctx.publish(later)  # an ordinary event after it: applied when published

    assert seen == [later]
    assert ctx.unpublished() == [bad]
    assert ctx.book(SYMBOL).bids() == [(100.0, 1.0), (99.0, 5.0), (98.0, 1.0)]


def test_events_applied_in_a_row_are_published_in_order_each_applied_once() -> None:
    ctx = RecordingVenueContext("v")
    first = BookSnapshot(venue="v", symbol=SYMBOL, bids=[(100.0, 1.0)], asks=[(101.0, 1.0)])
    second = BookDelta(venue="v", symbol=SYMBOL, bids=[(100.0, 2.0)], asks=[])
    third = BookDelta(venue="v", symbol=SYMBOL, bids=[], asks=[(101.0, 0.0), (102.0, 3.0)])

    for event in (first, second, third):
        ctx.apply(event)
    for event in (first, second, third):
        ctx.publish(event)

    assert ctx.events == [first, second, third]
    assert ctx.book(SYMBOL).bids() == [(100.0, 2.0)]
    assert ctx.book(SYMBOL).asks() == [(102.0, 3.0)]


def test_a_book_event_published_onto_a_crossed_book_is_counted() -> None:
    ctx = RecordingVenueContext("v")
    ctx.publish(snapshot())

    ctx.publish(BookDelta(venue="v", symbol=SYMBOL, bids=[(101.5, 1.0)], asks=[]))

    assert ctx.crossed_after_event == 1


def test_health_changes_counters_instruments_and_trades_are_recorded() -> None:
    bus = EventBus()
    statuses: list[FeedStatus] = []
    bus.subscribe(FeedStatus, statuses.append)
    clock = SimulatedClock()
    ctx = RecordingVenueContext("v", clock=clock, endpoints=Endpoints(), bus=bus)
    trade = Trade(venue="v", symbol=SYMBOL, price=100.5, size=0.1, side=Side.BUY)

    ctx.set_health(SYMBOL, BookHealth.SYNCING, HealthReason.SUBSCRIBED)
    ctx.set_health(SYMBOL, BookHealth.SYNCING, HealthReason.SUBSCRIBED)  # no move: no status
    go_live(ctx)
    ctx.count("resyncs", SYMBOL)
    ctx.count("messages", n=5)
    ctx.add_instrument(Instrument("v", SYMBOL, "XBT/USD", "BTC", "USD", "0.1", "0.00000001"))
    ctx.publish(trade)

    assert ctx.transitions(SYMBOL) == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED),
                                       (BookHealth.LIVE, HealthReason.SNAPSHOT)]
    assert statuses == ctx.statuses
    assert ctx.book(SYMBOL).is_live
    assert ctx.counts == {"resyncs": 1, "messages": 5}
    assert ctx.symbol_counts[SYMBOL] == {"resyncs": 1}
    assert ctx.instruments[SYMBOL].venue_symbol == "XBT/USD"
    assert ctx.trades() == [trade]


async def test_wait_until_returns_once_a_change_makes_the_predicate_hold_and_times_out_otherwise() -> None:
    ctx = RecordingVenueContext("v")

    async def later() -> None:
        await asyncio.sleep(0)
        ctx.publish(snapshot())

    task = asyncio.create_task(later())
    await ctx.wait_until(lambda: SYMBOL in ctx.books and ctx.book(SYMBOL).bid_count == 1, timeout=5)
    await task

    with pytest.raises(TimeoutError):
        await ctx.wait_until(lambda: False, timeout=0.01)


def go_live(ctx: RecordingVenueContext) -> None:
    ctx.set_health(SYMBOL, BookHealth.SYNCING, HealthReason.SUBSCRIBED)
    ctx.set_health(SYMBOL, BookHealth.LIVE, HealthReason.SNAPSHOT)


class ResyncRecorder:
    """A venue client that records the engine's resync requests (the part of VenueClient this needs)."""

    def __init__(self) -> None:
        self.symbols = [SYMBOL]
        self.resyncs: list[tuple[str, HealthReason]] = []

    async def run(self) -> None:
        await asyncio.Event().wait()

    def resync(self, symbol: str, reason: HealthReason, detail: str = "") -> None:
        self.resyncs.append((symbol, reason))

    def stream_counters(self) -> list[StreamCounters]:
        return []


def test_with_a_client_a_live_book_left_crossed_is_counted_and_resynced_as_the_engine_does() -> None:
    ctx = RecordingVenueContext("v")
    client = ResyncRecorder()
    ctx.client = client
    ctx.publish(snapshot())
    go_live(ctx)

    ctx.publish(BookDelta(venue="v", symbol=SYMBOL, bids=[(102.0, 1.0)], asks=[]))

    assert ctx.counts["crossed"] == 1
    assert client.resyncs == [(SYMBOL, HealthReason.CROSSED)]


def test_without_a_client_a_crossed_book_is_only_noted() -> None:
    ctx = RecordingVenueContext("v")
    ctx.publish(snapshot())
    go_live(ctx)

    ctx.publish(BookDelta(venue="v", symbol=SYMBOL, bids=[(102.0, 1.0)], asks=[]))

    assert ctx.crossed_after_event == 1
    assert ctx.counts["crossed"] == 0


def test_top_and_live_read_the_books() -> None:
    ctx = RecordingVenueContext("v")
    ctx.publish(snapshot())

    assert ctx.top(SYMBOL) == ([(100.0, 1.0)], [(101.0, 1.0)])
    assert not ctx.live(SYMBOL)
    go_live(ctx)
    assert ctx.live(SYMBOL)
    assert not ctx.live(SYMBOL, "ETH/USD")


async def test_wait_until_with_poll_secs_sees_state_that_changes_elsewhere() -> None:
    ctx = RecordingVenueContext("v", poll_secs=0.001)
    elsewhere: list[int] = []

    async def change_it() -> None:
        await asyncio.sleep(0)
        elsewhere.append(1)

    changer = asyncio.create_task(change_it())
    await ctx.wait_until(lambda: bool(elsewhere), timeout=5)
    await changer

    assert elsewhere == [1]
