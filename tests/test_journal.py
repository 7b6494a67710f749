"""The SQLite journal: round trips, crash recovery, duplicate fills, durability policies, bad rows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from botframe.clock import SimulatedClock
from botframe.events import (
    Fill,
    OrderDenied,
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    TradingState,
    TradingStateChanged,
)
from botframe.journal import Journal, JournalError, Recovered, client_order_counter
from botframe.orders import ClientOrderIds

D = Decimal


def intent(cid: str, side: Side = Side.BUY, qty: str = "1", price: str | None = "100.5") -> OrderIntent:
    return OrderIntent(client_order_id=cid, strategy="s", venue="binance", symbol="BTC/USDT", side=side,
                       quantity=D(qty), price=D(price) if price else None,
                       order_type=OrderType.LIMIT if price else OrderType.MARKET,
                       time_in_force=TimeInForce.GTC, post_only=True, ts_ns=11)


def update(cid: str, status: OrderStatus, filled: str = "0", qty: str = "1") -> OrderUpdate:
    return OrderUpdate(client_order_id=cid, venue="binance", symbol="BTC/USDT", status=status, side=Side.BUY,
                       quantity=D(qty), filled_quantity=D(filled), price=D("100.5"), venue_order_id="v1",
                       ts_ns=12)


def fill(cid: str, fill_id: str, qty: str = "0.25", side: Side = Side.BUY) -> Fill:
    return Fill(client_order_id=cid, venue="binance", symbol="BTC/USDT", side=side, price=D("100.5"),
                quantity=D(qty), fee=D("0.0012562500"), liquidity="maker", fill_id=fill_id, ts_ns=13)


def crash_after(path: Path, script: str) -> None:
    """Run ``script`` (with ``journal`` open on ``path``) in a child process that dies without closing."""
    code = textwrap.dedent(f"""
        import os, sys
        from decimal import Decimal as D
        from botframe.events import *
        from botframe.journal import Journal
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_journal import intent, update, fill
        journal = Journal({str(path)!r}, fsync=sys.argv[1])
    """) + textwrap.dedent(script) + "\nos._exit(1)\n"
    policy = script.split("# fsync=")[1].split()[0]
    done = subprocess.run([sys.executable, "-c", code, policy], capture_output=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr.decode()


def test_journal_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"

    Journal(path).close()

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_every_event_type_round_trips_exactly_in_order(tmp_path: Path) -> None:
    events = [
        intent("bf-r-1"),
        OrderDenied(intent=intent("bf-r-2", price=None), code="max_notional", check="limits",
                    reason="too big", ts_ns=5),
        update("bf-r-1", OrderStatus.ACCEPTED),
        fill("bf-r-1", "f1"),
        TradingStateChanged(previous=TradingState.ACTIVE, state=TradingState.REDUCING, reason="loss",
                            ts_ns=9),
    ]
    with Journal(tmp_path / "j.sqlite") as journal:
        for event in events:
            journal.record(event)

    with Journal(tmp_path / "j.sqlite") as reopened:
        back = list(reopened.events())

    assert back == events
    assert isinstance(back[3], Fill)
    assert back[3].fee == D("0.0012562500")


def test_recover_after_a_crash_without_close_rebuilds_the_state(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    crashed = Journal(path)
    for event in (intent("bf-r-1"), update("bf-r-1", OrderStatus.ACCEPTED), fill("bf-r-1", "f1"),
                  update("bf-r-1", OrderStatus.PARTIALLY_FILLED, filled="0.25"),
                  TradingStateChanged(previous=TradingState.ACTIVE, state=TradingState.HALTED, reason="x")):
        crashed.record(event)
    crashed.flush()  # the engine flushes every tick; then the process dies without close()

    with Journal(path) as reopened:
        recovered = reopened.recover()
    crashed.close()

    assert [(o.client_order_id, o.status, o.filled_quantity) for o in recovered.open_orders] == [
        ("bf-r-1", OrderStatus.PARTIALLY_FILLED, D("0.25"))]
    assert recovered.intents["bf-r-1"].strategy == "s"
    assert [f.fill_id for f in recovered.fills] == ["f1"]
    assert recovered.trading_state is TradingState.HALTED
    assert recovered.max_client_order_counter == 1


def test_batch_policy_commits_intents_and_fills_at_once_so_a_crash_loses_only_later_updates(
        tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"

    crash_after(path, """
        # fsync=batch
        journal.record(fill("bf-r-1", "f1"))
        journal.record(intent("bf-r-2"))
        journal.record(fill("bf-r-1", "f2"))
        journal.record(update("bf-r-2", OrderStatus.ACCEPTED))
    """)

    with Journal(path) as reopened:
        recovered = reopened.recover()
    assert [f.fill_id for f in recovered.fills] == ["f1", "f2"]
    # The ACCEPTED update after the last commit died with the process: the order is still NEW.
    assert [(o.client_order_id, o.status) for o in recovered.open_orders] == [("bf-r-2", OrderStatus.NEW)]


def test_in_process_orders_commit_their_intents_with_the_next_fill_not_at_once(tmp_path: Path) -> None:
    """``commit_intents_at_once = False`` (paper): an intent waits for the next fill or flush."""
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    assert journal.commit_intents_at_once
    journal.commit_intents_at_once = False

    def committed() -> list[str]:
        with sqlite3.connect(path) as reader:
            return [r[0] for r in reader.execute("SELECT kind FROM journal ORDER BY seq")]

    journal.record(intent("bf-r-1"))
    assert committed() == []  # no SQLite work on the order's path
    commits = journal.commits
    journal.record(update("bf-r-1", OrderStatus.ACCEPTED))  # written after the held intent, in order
    journal.record(intent("bf-r-2"))
    journal.record(fill("bf-r-1", "f1"))  # a fill is durable at once, and everything before it
    assert committed() == ["intent", "order_update", "intent", "fill"]
    assert journal.commits == commits + 1
    journal.record(intent("bf-r-3"))
    journal.flush()  # the engine's tick
    assert committed()[-1] == "intent"
    journal.record(intent("bf-r-4"))
    assert [e.client_order_id for e in journal.events()][-1] == "bf-r-4"  # read back, held or not
    journal.commit_intents_at_once = True
    journal.record(intent("bf-r-5"))
    assert committed()[-1] == "intent" and len(committed()) == 7
    assert journal.written == 7
    journal.close()


def test_a_held_intent_dies_with_the_process_and_its_fill_brings_it_along(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    crash_after(path, """
        # fsync=batch
        journal.commit_intents_at_once = False
        journal.record(intent("bf-r-1"))
        journal.record(fill("bf-r-1", "f1", qty="1"))
        journal.record(intent("bf-r-2"))
    """)
    with Journal(path) as reopened:
        recovered = reopened.recover()
    assert [f.fill_id for f in recovered.fills] == ["f1"]
    assert "bf-r-2" not in recovered.intents  # an in-process order that never left: gone with it


def test_always_policy_keeps_every_row_through_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"

    crash_after(path, """
        # fsync=always
        for i in range(5):
            journal.record(fill("bf-r-1", f"f{i}"))
    """)

    with Journal(path) as reopened:
        assert [f.fill_id for f in reopened.recover().fills] == [f"f{i}" for i in range(5)]


def test_flushed_rows_survive_a_process_crash_with_fsync_off(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"

    crash_after(path, """
        # fsync=off
        journal.record(intent("bf-r-1"))
        journal.flush()
        journal.record(intent("bf-r-2"))
    """)

    with Journal(path) as reopened:
        assert [o.client_order_id for o in reopened.recover().open_orders] == ["bf-r-1"]


def test_a_fill_recorded_twice_counts_once(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.record(intent("bf-r-1", qty="1"))
        journal.record(fill("bf-r-1", "f1", qty="0.4"))
        journal.record(fill("bf-r-1", "f1", qty="0.4"))
        journal.record(fill("bf-r-1", "f2", qty="0.1"))

        recovered = journal.recover()

    assert [f.fill_id for f in recovered.fills] == ["f1", "f2"]
    assert recovered.duplicate_fills == 1
    assert recovered.positions == {("binance", "BTC/USDT"): D("0.5")}
    assert recovered.open_orders[0].filled_quantity == D("0.5")


def test_only_unfinished_orders_are_open_after_recovery(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        for cid in ("bf-r-1", "bf-r-2", "bf-r-3", "bf-r-4", "bf-r-5"):
            journal.record(intent(cid))
        journal.record(update("bf-r-1", OrderStatus.FILLED, filled="1"))
        journal.record(OrderDenied(intent=intent("bf-r-2"), code="c", check="k", reason="r"))
        journal.record(update("bf-r-3", OrderStatus.CANCELLED))
        journal.record(update("bf-r-3", OrderStatus.ACCEPTED))  # late ack after the cancel: stays cancelled
        journal.record(update("bf-r-4", OrderStatus.ACCEPTED))

        recovered = journal.recover()

    assert [(o.client_order_id, o.status) for o in recovered.open_orders] == [
        ("bf-r-4", OrderStatus.ACCEPTED), ("bf-r-5", OrderStatus.NEW)]
    assert set(recovered.intents) == {"bf-r-4", "bf-r-5"}


def test_recovered_counter_keeps_new_client_order_ids_from_repeating(tmp_path: Path) -> None:
    ids = ClientOrderIds(SimulatedClock(), run_id="run1")
    used = [ids.next() for _ in range(40)]
    with Journal(tmp_path / "j.sqlite") as journal:
        for cid in used:
            journal.record(intent(cid))

        recovered: Recovered = journal.recover()

    after_restart = ClientOrderIds(SimulatedClock(), run_id="run1",
                                   start_counter=recovered.max_client_order_counter)
    assert recovered.max_client_order_counter == 40
    assert after_restart.next() not in used


@pytest.mark.parametrize(("cid", "counter"), [("bf-abc-z", 35), ("x_10", 36), ("plain", None), ("a-", None)])
def test_client_order_counter_reads_the_base36_tail(cid: str, counter: int | None) -> None:
    assert client_order_counter(cid) == counter


def test_unreadable_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        journal.record(fill("bf-r-1", "f1"))
    with sqlite3.connect(path) as db:
        insert = "INSERT INTO journal (kind, ts_ns, client_order_id, payload) VALUES (?, 0, '', ?)"
        db.execute(insert, ("fill", b"\xc1"))  # not MessagePack
        db.execute(insert, ("mystery", b""))

    with Journal(path) as reopened:
        recovered = reopened.recover()

    assert [f.fill_id for f in recovered.fills] == ["f1"]
    assert recovered.unreadable == 2
    assert recovered.events == 3


def test_another_process_can_read_what_was_flushed_while_the_journal_is_open(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path, fsync="off")
    journal.record(fill("bf-r-1", "f1"))
    journal.flush()
    journal.record(fill("bf-r-1", "f2"))

    with sqlite3.connect(path) as reader:
        rows = reader.execute("SELECT count(*) FROM journal").fetchone()[0]
    journal.close()

    assert rows == 1


def test_journal_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")

    with pytest.raises(JournalError, match="newer botframe"):
        Journal(path)


def test_unknown_fsync_policy_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="'always', 'batch' or 'off'"):
        Journal(tmp_path / "j.sqlite", fsync="sometimes")


def test_recording_an_event_the_journal_does_not_keep_is_a_type_error(tmp_path: Path) -> None:
    from botframe.events import Trade

    with Journal(tmp_path / "j.sqlite") as journal, pytest.raises(TypeError, match="Trade"):
        journal.record(Trade(venue="v", symbol="s", price=1.0, size=1.0, side=Side.BUY))  # type: ignore[arg-type]
