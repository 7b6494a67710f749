"""The order state machine, the order tracker and client order ids."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from botframe.clock import SimulatedClock
from botframe.events import Fill, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side
from botframe.orders import (
    LEGAL_TRANSITIONS,
    ClientOrderIds,
    IllegalTransitionError,
    Order,
    OrderTracker,
    is_legal_transition,
)

S = OrderStatus
ALL_PAIRS = list(itertools.product(OrderStatus, OrderStatus))

#: The documented table, written out again so a change to the code's table must be deliberate.
EXPECTED_LEGAL = {
    (S.NEW, S.ACCEPTED), (S.NEW, S.PARTIALLY_FILLED), (S.NEW, S.FILLED), (S.NEW, S.CANCEL_PENDING),
    (S.NEW, S.CANCELLED), (S.NEW, S.REJECTED), (S.NEW, S.EXPIRED),
    (S.ACCEPTED, S.PARTIALLY_FILLED), (S.ACCEPTED, S.FILLED), (S.ACCEPTED, S.CANCEL_PENDING),
    (S.ACCEPTED, S.CANCELLED), (S.ACCEPTED, S.EXPIRED),
    (S.PARTIALLY_FILLED, S.PARTIALLY_FILLED), (S.PARTIALLY_FILLED, S.FILLED),
    (S.PARTIALLY_FILLED, S.CANCEL_PENDING), (S.PARTIALLY_FILLED, S.CANCELLED),
    (S.PARTIALLY_FILLED, S.EXPIRED),
    (S.CANCEL_PENDING, S.ACCEPTED), (S.CANCEL_PENDING, S.PARTIALLY_FILLED), (S.CANCEL_PENDING, S.FILLED),
    (S.CANCEL_PENDING, S.CANCELLED), (S.CANCEL_PENDING, S.EXPIRED),
}
LEGAL = [p for p in ALL_PAIRS if p in EXPECTED_LEGAL]
ILLEGAL = [p for p in ALL_PAIRS if p not in EXPECTED_LEGAL]

QTY = Decimal("1.0")
#: Reports that bring an order from NEW into each status, with the cumulative filled quantity.
PATHS: dict[OrderStatus, list[tuple[OrderStatus, Decimal]]] = {
    S.NEW: [],
    S.ACCEPTED: [(S.ACCEPTED, Decimal(0))],
    S.PARTIALLY_FILLED: [(S.ACCEPTED, Decimal(0)), (S.PARTIALLY_FILLED, Decimal("0.3"))],
    S.FILLED: [(S.ACCEPTED, Decimal(0)), (S.FILLED, QTY)],
    S.CANCEL_PENDING: [(S.ACCEPTED, Decimal(0)), (S.CANCEL_PENDING, Decimal(0))],
    S.CANCELLED: [(S.ACCEPTED, Decimal(0)), (S.CANCELLED, Decimal(0))],
    S.REJECTED: [(S.REJECTED, Decimal(0))],
    S.EXPIRED: [(S.ACCEPTED, Decimal(0)), (S.EXPIRED, Decimal(0))],
}


def intent(coid: str = "bf-run-1", *, venue: str = "sim", symbol: str = "BTC/USDT", side: Side = Side.BUY,
           quantity: Decimal = QTY, price: Decimal | None = Decimal("100")) -> OrderIntent:
    return OrderIntent(client_order_id=coid, strategy="test", venue=venue, symbol=symbol, side=side,
                       quantity=quantity,
                       order_type=OrderType.LIMIT if price is not None else OrderType.MARKET,
                       price=price, ts_ns=1)


def update(coid: str, status: OrderStatus, filled: Decimal = Decimal(0), **kw: object) -> OrderUpdate:
    return OrderUpdate(client_order_id=coid, venue="sim", symbol="BTC/USDT", status=status, side=Side.BUY,
                       quantity=QTY, filled_quantity=filled, price=Decimal("100"), **kw)  # type: ignore[arg-type]


def fill(coid: str, qty: str, price: str = "100", fill_id: str = "", fee: str = "0") -> Fill:
    return Fill(client_order_id=coid, venue="sim", symbol="BTC/USDT", side=Side.BUY, price=Decimal(price),
                quantity=Decimal(qty), fee=Decimal(fee), liquidity="maker", fill_id=fill_id, ts_ns=5)


def tracker_with_order_in(status: OrderStatus, coid: str = "o1") -> OrderTracker:
    tracker = OrderTracker()
    tracker.add(intent(coid))
    for step, filled in PATHS[status]:
        assert tracker.apply(update(coid, step, filled)) is not None
    order = tracker.get(coid)
    assert order is not None
    assert order.status is status
    return tracker


# -- the table -------------------------------------------------------------------------------------


def test_transition_table_in_code_matches_the_documented_table() -> None:
    in_code = {(a, b) for a, targets in LEGAL_TRANSITIONS.items() for b in targets}
    assert in_code == EXPECTED_LEGAL


@pytest.mark.parametrize(("current", "new"), LEGAL, ids=lambda s: s.value)
def test_legal_transition_is_applied_by_the_order(current: OrderStatus, new: OrderStatus) -> None:
    order = Order.from_intent(intent(), ts_ns=1)
    order.status = current

    order.move_to(new, ts_ns=2)

    assert order.status is new
    assert order.updated_ns == 2
    assert is_legal_transition(current, new)


@pytest.mark.parametrize(("current", "new"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_transition_is_refused_by_the_order(current: OrderStatus, new: OrderStatus) -> None:
    order = Order.from_intent(intent(), ts_ns=1)
    order.status = current

    with pytest.raises(IllegalTransitionError):
        order.move_to(new, ts_ns=2)

    assert order.status is current
    assert not is_legal_transition(current, new)


@pytest.mark.parametrize(("current", "new"), LEGAL, ids=lambda s: s.value)
def test_tracker_applies_every_legal_report(current: OrderStatus, new: OrderStatus) -> None:
    tracker = tracker_with_order_in(current)
    filled = {S.PARTIALLY_FILLED: Decimal("0.6"), S.FILLED: QTY}.get(new, Decimal(0))

    result = tracker.apply(update("o1", new, filled, ts_ns=9))

    assert result is not None
    assert result.status is new
    assert result.updated_ns == 9
    assert tracker.problems.get("illegal_transition", 0) == 0


@pytest.mark.parametrize(("current", "new"), [p for p in ILLEGAL if p[0] is not p[1]], ids=lambda s: s.value)
def test_tracker_refuses_every_illegal_report_and_counts_it(current: OrderStatus, new: OrderStatus) -> None:
    tracker = tracker_with_order_in(current)
    counts_before = tracker.counts_by_status()

    result = tracker.apply(update("o1", new, ts_ns=9))

    order = tracker.get("o1")
    assert result is None
    assert order is not None
    assert order.status is current
    assert tracker.counts_by_status() == counts_before
    assert tracker.problems.get("illegal_transition", 0) + tracker.problems.get("stale_update", 0) == 1


NOT_PARTIAL = [s for s in OrderStatus if s is not S.PARTIALLY_FILLED]


@pytest.mark.parametrize("status", NOT_PARTIAL, ids=lambda s: s.value)
def test_repeated_status_report_is_a_counted_duplicate_not_an_error(status: OrderStatus) -> None:
    tracker = tracker_with_order_in(status)

    result = tracker.apply(update("o1", status, PATHS[status][-1][1] if PATHS[status] else Decimal(0)))

    assert result is not None
    assert result.status is status
    assert tracker.problems == {"duplicate": 1}


def test_illegal_report_is_logged_with_both_statuses() -> None:
    tracker = tracker_with_order_in(S.CANCELLED)

    with capture_logs() as logs:
        tracker.apply(update("o1", S.ACCEPTED))

    assert logs[0]["problem"] == "illegal_transition"
    assert logs[0]["current"] == "cancelled"
    assert logs[0]["new"] == "accepted"


def test_late_ack_after_a_fill_is_stale_not_illegal() -> None:
    tracker = OrderTracker()
    tracker.add(intent("o1"))
    tracker.on_fill(fill("o1", "0.4"))

    result = tracker.apply(update("o1", S.ACCEPTED))

    assert result is None
    assert tracker.problems == {"stale_update": 1}
    order = tracker.get("o1")
    assert order is not None
    assert order.status is S.PARTIALLY_FILLED


def test_report_for_unknown_order_is_counted_and_ignored() -> None:
    tracker = OrderTracker()

    assert tracker.apply(update("nope", S.ACCEPTED)) is None

    assert tracker.problems == {"unknown_order": 1}


# -- tracker ---------------------------------------------------------------------------------------


def test_added_order_starts_new_and_open() -> None:
    tracker = OrderTracker()

    order = tracker.add(intent("o1"))

    assert order.status is S.NEW
    assert order.is_open
    assert tracker.get("o1") is order
    assert tracker.open_orders() == [order]
    assert tracker.counts_by_status()[S.NEW] == 1


def test_adding_a_client_order_id_twice_is_refused() -> None:
    tracker = OrderTracker()
    tracker.add(intent("o1"))

    with pytest.raises(ValueError, match="already in use"):
        tracker.add(intent("o1"))


def test_report_merges_venue_order_id_and_reason() -> None:
    tracker = OrderTracker()
    tracker.add(intent("o1"))

    order = tracker.apply(update("o1", S.ACCEPTED, venue_order_id="V42"))

    assert order is not None
    assert order.venue_order_id == "V42"


def test_open_orders_filter_by_venue_and_symbol() -> None:
    tracker = OrderTracker()
    a = tracker.add(intent("a", venue="sim", symbol="BTC/USDT"))
    b = tracker.add(intent("b", venue="sim", symbol="ETH/USDT"))
    c = tracker.add(intent("c", venue="other", symbol="BTC/USDT"))

    assert tracker.open_orders("sim", "BTC/USDT") == [a]
    assert tracker.open_orders("sim") == [a, b]
    assert tracker.open_orders(symbol="BTC/USDT") == [a, c]
    assert tracker.open_count() == 3
    assert tracker.open_count("sim", "ETH/USDT") == 1


def test_finished_order_leaves_open_orders_but_can_still_be_read() -> None:
    tracker = tracker_with_order_in(S.CANCELLED)

    assert tracker.open_orders() == []
    assert tracker.open_count("sim", "BTC/USDT") == 0
    order = tracker.get("o1")
    assert order is not None
    assert not order.is_open


def test_counts_by_status_follow_every_move() -> None:
    tracker = OrderTracker()
    tracker.add(intent("a"))
    tracker.add(intent("b"))
    tracker.apply(update("a", S.ACCEPTED))
    tracker.apply(update("b", S.REJECTED))

    counts = tracker.counts_by_status()

    assert counts[S.ACCEPTED] == 1
    assert counts[S.REJECTED] == 1
    assert counts[S.NEW] == 0
    assert set(counts) == set(OrderStatus)


def test_oldest_finished_orders_are_dropped_beyond_the_limit_but_still_counted() -> None:
    tracker = OrderTracker(max_finished=2)
    for n in range(3):
        tracker.add(intent(f"o{n}"))
        tracker.apply(update(f"o{n}", S.REJECTED))

    assert tracker.get("o0") is None
    assert tracker.get("o2") is not None
    assert tracker.counts_by_status()[S.REJECTED] == 3


def test_request_cancel_marks_an_open_order_cancel_pending() -> None:
    tracker = tracker_with_order_in(S.ACCEPTED)

    order = tracker.request_cancel("o1", ts_ns=7)

    assert order is not None
    assert order.status is S.CANCEL_PENDING


def test_request_cancel_of_a_finished_order_does_nothing() -> None:
    tracker = tracker_with_order_in(S.FILLED)

    assert tracker.request_cancel("o1") is None


# -- fills -----------------------------------------------------------------------------------------


def test_partial_fill_moves_order_to_partially_filled_with_average_price() -> None:
    tracker = tracker_with_order_in(S.ACCEPTED)

    tracker.on_fill(fill("o1", "0.2", "100", "f1"))
    order = tracker.on_fill(fill("o1", "0.3", "101", "f2"))

    assert order is not None
    assert order.status is S.PARTIALLY_FILLED
    assert order.filled_quantity == Decimal("0.5")
    assert order.avg_fill_price == Decimal("100.6")  # (20 + 30.3) / 0.5
    assert order.remaining_quantity == Decimal("0.5")


def test_complete_fill_moves_order_to_filled_and_out_of_open_orders() -> None:
    tracker = tracker_with_order_in(S.ACCEPTED)

    order = tracker.on_fill(fill("o1", "1.0"))

    assert order is not None
    assert order.status is S.FILLED
    assert tracker.open_orders() == []


def test_fill_racing_a_cancel_is_applied() -> None:
    tracker = tracker_with_order_in(S.CANCEL_PENDING)

    order = tracker.on_fill(fill("o1", "1.0"))

    assert order is not None
    assert order.status is S.FILLED


def test_fill_before_the_ack_is_applied_and_the_late_ack_ignored() -> None:
    tracker = OrderTracker()
    tracker.add(intent("o1"))

    tracker.on_fill(fill("o1", "1.0"))
    tracker.apply(update("o1", S.ACCEPTED))

    order = tracker.get("o1")
    assert order is not None
    assert order.status is S.FILLED


def test_fill_on_a_cancelled_order_is_recorded_without_reviving_it() -> None:
    tracker = tracker_with_order_in(S.CANCELLED)

    order = tracker.on_fill(fill("o1", "0.4"))

    assert order is not None
    assert order.status is S.CANCELLED
    assert order.filled_quantity == Decimal("0.4")


def test_duplicate_fill_id_is_ignored() -> None:
    tracker = tracker_with_order_in(S.ACCEPTED)
    tracker.on_fill(fill("o1", "0.4", fill_id="f1"))

    order = tracker.on_fill(fill("o1", "0.4", fill_id="f1"))

    assert order is not None
    assert order.filled_quantity == Decimal("0.4")
    assert tracker.problems == {"duplicate_fill": 1}


def test_fill_for_unknown_order_is_counted_and_ignored() -> None:
    tracker = OrderTracker()

    assert tracker.on_fill(fill("nope", "1")) is None

    assert tracker.problems == {"fill_for_unknown_order": 1}


def test_overfill_is_counted() -> None:
    tracker = tracker_with_order_in(S.ACCEPTED)

    order = tracker.on_fill(fill("o1", "1.5"))

    assert order is not None
    assert order.status is S.FILLED
    assert tracker.problems == {"overfill": 1}


def test_update_never_lowers_the_filled_quantity() -> None:
    tracker = tracker_with_order_in(S.ACCEPTED)
    tracker.on_fill(fill("o1", "0.5"))

    tracker.apply(update("o1", S.CANCELLED, Decimal("0.2")))

    order = tracker.get("o1")
    assert order is not None
    assert order.filled_quantity == Decimal("0.5")


# -- client order ids ------------------------------------------------------------------------------


def test_client_order_ids_are_unique_across_two_restarts() -> None:
    clock = SimulatedClock()
    first_run = ClientOrderIds(clock)
    first = {first_run.next() for _ in range(5_000)}
    clock.advance(0.001)  # a restart takes (much) longer than a millisecond
    second_run = ClientOrderIds(clock)

    second = {second_run.next() for _ in range(5_000)}

    assert len(first) == len(second) == 5_000
    assert first.isdisjoint(second)


def test_client_order_ids_are_short_and_use_only_venue_safe_characters() -> None:
    ids = ClientOrderIds(SimulatedClock(), prefix="mybot123", start_counter=36**6)

    values = [ids.next() for _ in range(100)]

    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,36}", v) for v in values)


def test_client_order_ids_without_separator_are_alphanumeric_within_okx_length() -> None:
    ids = ClientOrderIds(SimulatedClock(), separator="", max_length=32)

    value = ids.next()

    assert value.isalnum()
    assert len(value) <= 32


def test_same_simulated_start_gives_the_same_ids_for_deterministic_replay() -> None:
    a = ClientOrderIds(SimulatedClock(start_ns=5_000_000_000))
    b = ClientOrderIds(SimulatedClock(start_ns=5_000_000_000))

    assert [a.next() for _ in range(3)] == [b.next() for _ in range(3)]


def test_client_order_ids_continue_from_a_start_counter() -> None:
    ids = ClientOrderIds(SimulatedClock(), start_counter=41)

    value = ids.next()

    assert ids.counter_of(value) == 42
    assert ids.issued == 42


def test_client_order_ids_recognise_their_own_run() -> None:
    clock = SimulatedClock()
    old = ClientOrderIds(clock)
    old_id = old.next()
    clock.advance(1)
    new = ClientOrderIds(clock)

    assert new.owns(new.next())
    assert not new.owns(old_id)
    assert new.counter_of(old_id) == 1
    assert new.counter_of("someone-else") is None


@pytest.mark.parametrize("prefix", ["bad prefix", "a-b", "toolongprefix"])
def test_client_order_id_prefix_must_be_short_and_alphanumeric(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        ClientOrderIds(SimulatedClock(), prefix=prefix)


def test_client_order_ids_without_a_clock_read_the_wall_clock_once() -> None:
    ids = ClientOrderIds(start_counter=0)

    assert re.fullmatch(r"bf-[0-9a-z]{10}-1", ids.next())


def test_most_aggressive_open_order_is_a_market_order_then_the_best_price() -> None:
    tracker = OrderTracker()
    tracker.add(intent("s1", side=Side.SELL, price=Decimal("101")))
    tracker.add(intent("s2", side=Side.SELL, price=Decimal("100.5")))
    tracker.add(intent("b1", side=Side.BUY, price=Decimal("99")))
    tracker.add(intent("b2", side=Side.BUY, price=Decimal("99.5")))

    best_sell = tracker.most_aggressive("sim", "BTC/USDT", Side.SELL)
    best_buy = tracker.most_aggressive("sim", "BTC/USDT", Side.BUY)
    tracker.add(intent("m1", side=Side.BUY, price=None))
    market = tracker.most_aggressive("sim", "BTC/USDT", Side.BUY)

    assert best_sell is not None
    assert best_sell.client_order_id == "s2"
    assert best_buy is not None
    assert best_buy.client_order_id == "b2"
    assert market is not None
    assert market.client_order_id == "m1"


def test_open_quantity_per_side_follows_adds_fills_and_finishes() -> None:
    tracker = OrderTracker()
    tracker.add(intent("b1", quantity=Decimal("1")))
    tracker.add(intent("b2", quantity=Decimal("2")))
    assert tracker.open_quantity("sim", "BTC/USDT", Side.BUY) == Decimal("3")

    tracker.on_fill(fill("b1", "0.4"))
    assert tracker.open_quantity("sim", "BTC/USDT", Side.BUY) == Decimal("2.6")

    tracker.apply(update("b2", S.CANCELLED))
    assert tracker.open_quantity("sim", "BTC/USDT", Side.BUY) == Decimal("0.6")
    assert tracker.open_quantity("sim", "BTC/USDT", Side.SELL) == 0
    assert tracker.most_aggressive("sim", "BTC/USDT", Side.SELL) is None


def test_finished_orders_within_the_retention_window_are_kept_beyond_the_count() -> None:
    tracker = OrderTracker(max_finished=1, retention_ns=1_000)
    for n, ts in enumerate((100, 600, 1_200, 1_500)):
        tracker.add(intent(f"o{n}"))
        tracker.apply(update(f"o{n}", S.REJECTED, ts_ns=ts))

    assert tracker.get("o0") is None  # finished 1,400 ns before the latest: out of the window
    assert tracker.get("o1") is not None
    assert tracker.get("o3") is not None


def test_late_fill_for_a_dropped_finished_order_is_counted_as_unknown() -> None:
    tracker = OrderTracker(max_finished=1, retention_ns=1_000)
    for n, ts in enumerate((100, 5_000)):
        tracker.add(intent(f"o{n}"))
        tracker.apply(update(f"o{n}", S.REJECTED, ts_ns=ts))

    assert tracker.on_fill(fill("o0", "1")) is None
    assert tracker.problems["fill_for_unknown_order"] == 1
