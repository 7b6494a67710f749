"""Rules of the L2 book: applying snapshots and deltas, reads, and the health state machine."""

from __future__ import annotations

import pytest

from botframe.book import L2Book
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason


def _snap(bids: list[tuple[float, float]], asks: list[tuple[float, float]], seq: int = 0) -> BookSnapshot:
    return BookSnapshot(venue="v", symbol="S/U", bids=bids, asks=asks, sequence=seq)


def _delta(bids: list[tuple[float, float]], asks: list[tuple[float, float]], seq: int = 0) -> BookDelta:
    return BookDelta(venue="v", symbol="S/U", bids=bids, asks=asks, last_seq=seq)


def test_delta_upserts_and_size_zero_deletes() -> None:
    book = L2Book("v", "S/U")
    book.apply_snapshot(_snap([(10.0, 1.0), (9.0, 2.0)], [(11.0, 1.0), (12.0, 3.0)]))

    book.apply_delta(_delta([(10.5, 1.0), (9.0, 0.0)], [(11.0, 0.0)]))

    assert book.bids(5) == [(10.5, 1.0), (10.0, 1.0)]
    assert book.asks(5) == [(12.0, 3.0)]
    assert book.mid() == 11.25
    assert book.spread() == 1.5


def test_health_moves_connecting_syncing_live_and_resyncs_on_gap() -> None:
    book = L2Book("v", "S/U")

    s1 = book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 1)
    s2 = book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 2)
    s3 = book.set_health(BookHealth.RESYNCING, HealthReason.GAP, 3)

    assert s1 is not None
    assert s2 is not None
    assert s3 is not None
    assert (s3.previous, s3.health, s3.reason) == (BookHealth.LIVE, BookHealth.RESYNCING, HealthReason.GAP)
    assert book.counters.gaps == 1


def test_connecting_to_live_without_subscribe_is_an_error() -> None:
    book = L2Book("v", "S/U")

    with pytest.raises(ValueError, match="SYNCING"):
        book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 1)
