"""Rules of the L2 book: snapshots, deltas, reads, edge cases, depth trackers and the health state machine."""

from __future__ import annotations

import pytest

from botframe.book import L2Book
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason, Side

Levels = list[tuple[float, float]]


def _snap(bids: Levels, asks: Levels, seq: int = 0) -> BookSnapshot:
    return BookSnapshot(venue="v", symbol="S/U", bids=bids, asks=asks, sequence=seq)


def _delta(bids: Levels, asks: Levels, first: int = 0, last: int = 0, prev: int = 0) -> BookDelta:
    return BookDelta(venue="v", symbol="S/U", bids=bids, asks=asks, first_seq=first, last_seq=last,
                     prev_seq=prev, exchange_ts_ns=10 * last, receive_ts_ns=11 * last)


def _book(bids: Levels, asks: Levels, depth_limit: int | None = None) -> L2Book:
    book = L2Book("v", "S/U", depth_limit=depth_limit)
    book.apply_snapshot(_snap(bids, asks))
    return book


# ------------------------------------------------------------------------------------------ applying


def test_delta_upserts_and_size_zero_deletes() -> None:
    book = _book([(10.0, 1.0), (9.0, 2.0)], [(11.0, 1.0), (12.0, 3.0)])

    book.apply_delta(_delta([(10.5, 1.0), (9.0, 0.0)], [(11.0, 0.0)]))

    assert book.bids() == [(10.5, 1.0), (10.0, 1.0)]
    assert book.asks() == [(12.0, 3.0)]
    assert book.mid() == 11.25
    assert book.spread() == 1.5


def test_delete_of_an_absent_level_changes_nothing() -> None:
    book = _book([(10.0, 1.0)], [(11.0, 1.0)])

    book.apply_delta(_delta([(9.5, 0.0)], [(11.5, 0.0)]))

    assert book.bids() == [(10.0, 1.0)]
    assert book.asks() == [(11.0, 1.0)]


def test_a_price_that_reappears_after_delete_is_a_fresh_level() -> None:
    book = _book([(10.0, 1.0), (9.0, 2.0)], [(11.0, 1.0)])

    book.apply_delta(_delta([(10.0, 0.0)], []))
    book.apply_delta(_delta([(10.0, 4.0)], []))

    assert book.bids() == [(10.0, 4.0), (9.0, 2.0)]
    assert book.bid_count == 2


def test_levels_of_one_delta_apply_in_list_order() -> None:
    book = _book([], [(11.0, 1.0)])

    book.apply_delta(_delta([(10.0, 1.0), (10.0, 0.0), (9.0, 1.0), (9.0, 3.0)], []))

    assert book.bids() == [(9.0, 3.0)]


def test_snapshot_replaces_everything_and_ignores_zero_levels() -> None:
    book = _book([(10.0, 1.0)], [(11.0, 1.0)])

    book.apply_snapshot(_snap([(8.0, 1.0), (7.0, 0.0)], [(9.0, 2.0)], seq=42))

    assert book.bids() == [(8.0, 1.0)]
    assert book.asks() == [(9.0, 2.0)]
    assert book.last_seq == 42


def test_delta_keeps_sequence_ids_and_timestamps() -> None:
    book = _book([(10.0, 1.0)], [(11.0, 1.0)])

    book.apply_delta(_delta([(10.0, 2.0)], [], first=101, last=105, prev=100))

    assert (book.first_seq, book.last_seq, book.prev_seq) == (101, 105, 100)
    assert (book.exchange_ts_ns, book.receive_ts_ns) == (1050, 1155)
    assert book.counters.deltas == 1


def test_depth_limit_truncates_each_side_to_the_best_levels() -> None:
    book = _book([(10.0, 1.0), (9.0, 1.0), (8.0, 1.0)], [(11.0, 1.0), (12.0, 1.0), (13.0, 1.0)], depth_limit=2)

    book.apply_delta(_delta([(10.5, 1.0)], [(10.8, 1.0)]))

    assert book.bids() == [(10.5, 1.0), (10.0, 1.0)]
    assert book.asks() == [(10.8, 1.0), (11.0, 1.0)]


def test_clear_empties_both_sides_and_forgets_sequence() -> None:
    book = _book([(10.0, 1.0)], [(11.0, 1.0)])
    book.apply_delta(_delta([], [], last=7))

    book.clear()

    assert (book.bid_count, book.ask_count, book.last_seq) == (0, 0, 0)
    assert book.best_bid() is None


# ------------------------------------------------------------------------------------------ reads


def test_empty_side_has_no_best_mid_spread_or_walk() -> None:
    book = _book([(10.0, 1.0)], [])

    assert book.best_bid() == (10.0, 1.0)
    assert book.best_ask() is None
    assert book.mid() is None
    assert book.spread() is None
    assert not book.is_crossed()
    assert book.walk(Side.BUY, 1.0) is None
    assert book.average_fill_price(Side.BUY, 1.0) is None
    assert book.depth_within_bps(Side.BUY, 10.0) == (0.0, 0.0)


def test_one_level_book_reads() -> None:
    book = _book([(100.0, 2.0)], [(100.5, 3.0)])

    assert book.bids(5) == [(100.0, 2.0)]
    assert book.asks(5) == [(100.5, 3.0)]
    assert book.cumulative_depth(Side.SELL, 5) == [(100.5, 3.0)]
    assert book.average_fill_price(Side.BUY, 3.0) == 100.5
    assert book.average_fill_price(Side.BUY, 3.5) is None


def test_walk_averages_levels_and_reports_slippage_versus_touch() -> None:
    book = _book([(99.0, 1.0)], [(100.0, 1.0), (102.0, 1.0)])

    walk = book.walk(Side.BUY, 1.5)

    assert walk is not None
    assert walk.filled == 1.5
    assert walk.average_price == pytest.approx((100.0 + 0.5 * 102.0) / 1.5)
    assert walk.worst_price == 102.0
    assert walk.slippage_bps == pytest.approx((walk.average_price - 100.0) / 100.0 * 1e4)


def test_walk_of_more_than_the_side_reports_partial_fill() -> None:
    book = _book([(99.0, 1.0), (98.0, 1.0)], [(100.0, 1.0)])

    walk = book.walk(Side.SELL, 5.0)

    assert walk is not None
    assert walk.filled == 2.0
    assert walk.average_price == 98.5
    assert book.slippage_bps(Side.SELL, 5.0) is None


def test_crossed_and_locked_books_are_detected() -> None:
    assert _book([(10.0, 1.0)], [(10.0, 1.0)]).is_crossed()
    assert _book([(10.5, 1.0)], [(10.0, 1.0)]).is_crossed()
    assert not _book([(9.9, 1.0)], [(10.0, 1.0)]).is_crossed()


def test_depth_within_bps_counts_levels_inside_the_band_inclusive() -> None:
    book = _book([(99.0, 1.0), (98.0, 2.0), (97.0, 4.0)], [(101.0, 1.0), (102.0, 2.0), (103.0, 4.0)])
    # mid 100, 200 bps -> bids >= 98, asks <= 102

    assert book.depth_within_bps(Side.BUY, 200.0) == (3.0, 99.0 + 196.0)
    assert book.depth_within_bps(Side.SELL, 200.0) == (3.0, 101.0 + 204.0)


def test_size_at_reads_one_level() -> None:
    book = _book([(99.0, 1.5)], [(101.0, 2.5)])

    assert book.size_at(Side.BUY, 99.0) == 1.5
    assert book.size_at(Side.SELL, 101.0) == 2.5
    assert book.size_at(Side.SELL, 100.0) == 0.0


# ------------------------------------------------------------------------------------------ depth trackers


def test_depth_tracker_follows_deltas_and_mid_moves() -> None:
    book = _book([(99.0, 1.0), (98.0, 2.0), (97.0, 4.0)], [(101.0, 1.0), (102.0, 2.0), (103.0, 4.0)])
    tracker = book.track_depth(200.0)

    book.apply_delta(_delta([(99.0, 0.0), (97.5, 1.0)], [(101.0, 0.0)]))  # mid -> 100.0, then (98 + 102) / 2

    assert (tracker.bid_qty, tracker.bid_notional) == book.depth_within_bps(Side.BUY, 200.0)
    assert (tracker.ask_qty, tracker.ask_notional) == book.depth_within_bps(Side.SELL, 200.0)


def test_depth_trackers_of_one_band_are_shared_and_removable() -> None:
    book = _book([(99.0, 1.0)], [(101.0, 1.0)])

    assert book.track_depth(10.0) is book.track_depth(10.0)
    book.untrack_depth(10.0)
    book.apply_delta(_delta([(99.5, 1.0)], []))

    assert book.bids() == [(99.5, 1.0), (99.0, 1.0)]


def test_depth_tracker_is_invalid_while_a_side_is_empty_and_recovers() -> None:
    book = _book([(99.0, 1.0)], [(101.0, 1.0)])
    tracker = book.track_depth(500.0)

    book.apply_delta(_delta([], [(101.0, 0.0)]))
    invalid = tracker.valid
    book.apply_delta(_delta([], [(102.0, 3.0)]))

    assert invalid is False
    assert tracker.valid
    assert (tracker.ask_qty, tracker.ask_levels) == (3.0, 1)


# ------------------------------------------------------------------------------------------ health


def test_health_moves_connecting_syncing_live_and_resyncs_on_gap() -> None:
    book = L2Book("v", "S/U")

    s1 = book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 1)
    s2 = book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 2)
    s3 = book.set_health(BookHealth.RESYNCING, HealthReason.GAP, 3, "100 -> 102")
    s4 = book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 4)

    assert s1 is not None
    assert s2 is not None
    assert s3 is not None
    assert s4 is not None
    assert (s1.previous, s1.health) == (BookHealth.CONNECTING, BookHealth.SYNCING)
    assert (s3.previous, s3.health, s3.reason, s3.detail) == (
        BookHealth.LIVE, BookHealth.RESYNCING, HealthReason.GAP, "100 -> 102"
    )
    assert (s4.venue, s4.symbol, s4.ts_ns) == ("v", "S/U", 4)
    assert book.counters.gaps == 1
    assert book.counters.resyncs == 1


@pytest.mark.parametrize(
    ("reason", "counter"),
    [
        (HealthReason.GAP, "gaps"),
        (HealthReason.CHECKSUM, "checksum_failures"),
        (HealthReason.CROSSED, "crossed"),
        (HealthReason.STALE, "stale"),
        (HealthReason.PARSE_ERROR, "parse_errors"),
    ],
)
def test_each_resync_reason_moves_live_to_resyncing_and_is_counted(reason: HealthReason, counter: str) -> None:
    book = L2Book("v", "S/U")
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 1)
    book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 2)

    status = book.set_health(BookHealth.RESYNCING, reason, 3)

    assert status is not None
    assert status.reason is reason
    assert getattr(book.counters, counter) == 1
    assert book.counters.transitions[reason] == 1


def test_resync_request_while_not_live_is_counted_but_is_no_transition() -> None:
    book = L2Book("v", "S/U")
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 1)

    status = book.set_health(BookHealth.RESYNCING, HealthReason.GAP, 2)

    assert status is None
    assert book.health is BookHealth.SYNCING
    assert book.counters.gaps == 1
    assert book.counters.resyncs == 0


def test_same_state_is_no_transition() -> None:
    book = L2Book("v", "S/U")

    assert book.set_health(BookHealth.CONNECTING, HealthReason.START, 1) is None


def test_disconnect_from_any_state_goes_to_connecting_and_resubscribe_to_syncing() -> None:
    book = L2Book("v", "S/U")
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 1)
    book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 2)
    book.set_health(BookHealth.RESYNCING, HealthReason.STALE, 3)

    down = book.set_health(BookHealth.CONNECTING, HealthReason.DISCONNECTED, 4)
    up = book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 5)
    live = book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 6)
    again = book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 7)  # resubscribe while live

    assert down is not None
    assert (down.previous, down.health) == (BookHealth.RESYNCING, BookHealth.CONNECTING)
    assert up is not None
    assert live is not None
    assert again is not None
    assert (again.previous, again.health) == (BookHealth.LIVE, BookHealth.SYNCING)


def test_connecting_to_live_without_subscribe_is_an_error() -> None:
    book = L2Book("v", "S/U")

    with pytest.raises(ValueError, match="SYNCING"):
        book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 1)


def test_not_live_time_accumulates_outside_live() -> None:
    book = L2Book("v", "S/U")
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 0)
    book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 100)
    book.set_health(BookHealth.RESYNCING, HealthReason.GAP, 150)

    running = book.not_live_ns(170)
    book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 200)

    assert running == 120
    assert book.counters.not_live_ns == 150
    assert book.not_live_ns(1000) == 150
    assert book.is_live


def test_staleness_is_judged_from_the_last_receive_time() -> None:
    book = _book([(10.0, 1.0)], [(11.0, 1.0)])
    fresh = book.is_stale(now_ns=1_000, max_age_ns=500)
    book.apply_delta(_delta([(10.0, 2.0)], [], last=100))  # receive_ts_ns = 1100

    assert fresh is False  # never received anything: not stale, just not live
    assert book.is_stale(now_ns=1_599, max_age_ns=500) is False
    assert book.is_stale(now_ns=1_600, max_age_ns=500) is True


def test_time_not_live_counts_the_whole_stretch_across_several_non_live_states() -> None:
    book = L2Book("v", "BTC/USDT")
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 100)
    book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 300)

    book.set_health(BookHealth.CONNECTING, HealthReason.DISCONNECTED, 1000)
    book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 5000)
    book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 5100)

    assert book.counters.not_live_ns == 200 + 4100
    assert book.not_live_ns(6000) == 4300
    book.set_health(BookHealth.RESYNCING, HealthReason.GAP, 7000)
    assert book.not_live_ns(7500) == 4800


def test_time_not_live_before_any_health_move_is_zero() -> None:
    assert L2Book("v", "BTC/USDT").not_live_ns(10**18) == 0
