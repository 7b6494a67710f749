"""The Binance book sync machine: the documented rules one by one, then the real captures replayed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason
from botframe_plugins.binance.parsing import (
    DepthSnapshotMessage,
    DepthUpdate,
    FrameDecoder,
    decode_depth_snapshot,
)
from botframe_plugins.binance.sync import BookSync, HealthChange, NeedSnapshot, SyncOutput, SyncRules

VENUE = "binance"
SYMBOL = "BTC/USDT"


def diff(first: int, last: int, prev: int = 0, bids: list[tuple[float, float]] | None = None) -> DepthUpdate:
    return DepthUpdate(
        event_time_ms=1_700_000_000_000,
        symbol="BTCUSDT",
        first_update_id=first,
        last_update_id=last,
        bids=bids if bids is not None else [(100.0, float(last))],
        asks=[],
        prev_update_id=prev,
    )


def snapshot(last_update_id: int) -> DepthSnapshotMessage:
    return DepthSnapshotMessage(last_update_id=last_update_id, bids=[(99.0, 1.0)], asks=[(101.0, 1.0)])


def connected_machine(rules: SyncRules = SyncRules.SPOT) -> BookSync:
    sync = BookSync(VENUE, SYMBOL, rules)
    sync.connected()
    sync.take_outputs()
    return sync


def requests(outputs: list[SyncOutput]) -> list[NeedSnapshot]:
    return [o for o in outputs if isinstance(o, NeedSnapshot)]


def healths(outputs: list[SyncOutput]) -> list[tuple[BookHealth, HealthReason]]:
    return [(o.health, o.reason) for o in outputs if isinstance(o, HealthChange)]


def deltas(outputs: list[SyncOutput]) -> list[tuple[int, int]]:
    return [(o.first_seq, o.last_seq) for o in outputs if isinstance(o, BookDelta)]


def live_spot_machine(last_update_id: int = 10) -> BookSync:
    """A spot book that applied a snapshot at ``last_update_id`` and one bridging diff."""
    sync = connected_machine()
    sync.on_diff(diff(last_update_id, last_update_id + 1), 1)
    (request,) = requests(sync.take_outputs())
    sync.on_snapshot(snapshot(last_update_id), request.request_id, 2)
    sync.take_outputs()
    assert sync.is_live
    return sync


# -- the procedure, rule by rule ------------------------------------------------------------------------


def test_connect_moves_book_to_syncing() -> None:
    sync = BookSync(VENUE, SYMBOL, SyncRules.SPOT)

    sync.connected()

    assert healths(sync.take_outputs()) == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED)]


def test_first_diff_is_buffered_and_asks_for_one_snapshot() -> None:
    sync = connected_machine()

    first = sync.on_diff(diff(5, 6), 1)
    second = sync.on_diff(diff(7, 8), 2)

    assert first is None
    assert second is None
    assert len(requests(sync.take_outputs())) == 1
    assert sync.buffered == 2


def test_snapshot_older_than_first_buffered_diff_is_refetched() -> None:
    sync = connected_machine()
    sync.on_diff(diff(50, 52), 1)
    (request,) = requests(sync.take_outputs())

    sync.on_snapshot(snapshot(49), request.request_id, 2)

    out = sync.take_outputs()
    (again,) = requests(out)
    assert again.request_id != request.request_id
    assert "too old" in again.reason
    assert not sync.is_live
    assert sync.counters.snapshots_too_old == 1
    assert sync.buffered == 1  # the buffered diff is kept for the next snapshot


def test_spot_snapshot_drops_stale_diffs_and_applies_the_bridging_one() -> None:
    sync = connected_machine(SyncRules.SPOT)
    for first, last in [(10, 12), (13, 15), (16, 18), (19, 19)]:
        sync.on_diff(diff(first, last), 1)
    (request,) = requests(sync.take_outputs())

    sync.on_snapshot(snapshot(15), request.request_id, 2)  # u <= 15 is stale; U=16 <= 15+1 <= 18 bridges

    out = sync.take_outputs()
    assert isinstance(out[0], BookSnapshot)
    assert out[0].sequence == 15
    assert deltas(out) == [(16, 18), (19, 19)]
    assert healths(out) == [(BookHealth.LIVE, HealthReason.SNAPSHOT)]
    assert sync.counters.stale_dropped == 2
    assert sync.last_update_id == 19


def test_futures_keeps_the_diff_whose_u_equals_last_update_id() -> None:
    sync = connected_machine(SyncRules.FUTURES)
    sync.on_diff(diff(100, 180, prev=90), 1)
    sync.on_diff(diff(190, 200, prev=180), 1)
    (request,) = requests(sync.take_outputs())

    sync.on_snapshot(snapshot(180), request.request_id, 2)  # futures drops u < 180 only; U=100 <= 180 <= u

    out = sync.take_outputs()
    assert deltas(out) == [(100, 180), (190, 200)]
    assert sync.is_live


def test_spot_drops_the_diff_whose_u_equals_last_update_id() -> None:
    sync = connected_machine(SyncRules.SPOT)
    sync.on_diff(diff(100, 180), 1)
    sync.on_diff(diff(181, 200), 1)
    (request,) = requests(sync.take_outputs())

    sync.on_snapshot(snapshot(180), request.request_id, 2)

    assert deltas(sync.take_outputs()) == [(181, 200)]


def test_spot_contiguous_diffs_are_returned_on_the_fast_path() -> None:
    sync = live_spot_machine(10)  # last applied u = 11

    delta = sync.on_diff(diff(12, 14), 3)

    assert delta is not None
    assert (delta.first_seq, delta.last_seq) == (12, 14)
    assert delta.receive_ts_ns == 3
    assert sync.take_outputs() == []


def test_gap_in_update_ids_triggers_resync() -> None:
    sync = live_spot_machine(10)  # last applied u = 11

    delta = sync.on_diff(diff(13, 14), 3)  # U should be 12

    out = sync.take_outputs()
    assert delta is None
    assert healths(out) == [(BookHealth.RESYNCING, HealthReason.GAP)]
    assert "U=13" in next(o for o in out if isinstance(o, HealthChange)).detail
    assert len(requests(out)) == 1
    assert sync.counters.gaps == 1
    assert sync.buffered == 1  # the diff that showed the gap is kept


def test_futures_contiguity_uses_pu_not_U() -> None:
    sync = connected_machine(SyncRules.FUTURES)
    sync.on_diff(diff(100, 200, prev=90), 1)
    (request,) = requests(sync.take_outputs())
    sync.on_snapshot(snapshot(150), request.request_id, 2)
    sync.take_outputs()

    skipping_ids = sync.on_diff(diff(260, 300, prev=200), 3)  # U skips, pu matches: fine
    wrong_pu = sync.on_diff(diff(301, 310, prev=299), 4)  # U == prev u + 1 but pu does not match: gap

    assert skipping_ids is not None
    assert wrong_pu is None
    assert healths(sync.take_outputs()) == [(BookHealth.RESYNCING, HealthReason.GAP)]


def test_first_diff_after_snapshot_that_does_not_bridge_is_a_gap() -> None:
    sync = connected_machine(SyncRules.SPOT)
    (request,) = requests([*sync.outputs, *_diff_outputs(sync, diff(10, 12))])
    sync.on_snapshot(snapshot(11), request.request_id, 2)  # applies 10..12, LIVE
    sync.invalidate(HealthReason.PARSE_ERROR, "lost a frame")
    (again,) = requests(sync.take_outputs())
    sync.on_snapshot(snapshot(20), again.request_id, 3)  # empty buffer: LIVE, waiting for a bridge
    sync.take_outputs()

    delta = sync.on_diff(diff(25, 30), 4)  # 25 > 20 + 1

    assert delta is None
    assert healths(sync.take_outputs()) == [(BookHealth.RESYNCING, HealthReason.GAP)]


def _diff_outputs(sync: BookSync, msg: DepthUpdate) -> list[SyncOutput]:
    sync.on_diff(msg, 1)
    return sync.take_outputs()


def test_diffs_arriving_during_resync_are_kept_and_applied() -> None:
    sync = live_spot_machine(10)  # last applied u = 11
    sync.on_diff(diff(14, 15), 3)  # gap: 12..13 missing
    (request,) = requests(sync.take_outputs())
    sync.on_diff(diff(16, 17), 4)  # arrives while the snapshot is fetched
    sync.on_diff(diff(18, 18), 5)

    sync.on_snapshot(snapshot(15), request.request_id, 6)

    out = sync.take_outputs()
    assert deltas(out) == [(16, 17), (18, 18)]
    assert healths(out) == [(BookHealth.LIVE, HealthReason.SNAPSHOT)]
    assert sync.last_update_id == 18


def test_hole_inside_the_buffer_asks_for_another_snapshot() -> None:
    sync = connected_machine(SyncRules.SPOT)
    sync.on_diff(diff(10, 12), 1)
    sync.on_diff(diff(20, 22), 1)  # 13..19 never arrived
    (request,) = requests(sync.take_outputs())

    sync.on_snapshot(snapshot(12), request.request_id, 2)

    out = sync.take_outputs()
    assert len(requests(out)) == 1
    assert healths(out) == [(BookHealth.SYNCING, HealthReason.GAP)]  # not LIVE yet: reported, no move
    assert not sync.is_live
    assert sync.counters.gaps == 1


def test_gap_among_buffered_diffs_during_snapshot_apply_resyncs_and_keeps_the_rest() -> None:
    sync = connected_machine(SyncRules.SPOT)
    for first, last in [(10, 12), (13, 14), (16, 17), (18, 19)]:  # 15 missing
        sync.on_diff(diff(first, last), 1)
    (request,) = requests(sync.take_outputs())

    sync.on_snapshot(snapshot(11), request.request_id, 2)

    out = sync.take_outputs()
    assert deltas(out) == [(10, 12), (13, 14)]
    assert len(requests(out)) == 1
    assert not sync.is_live
    assert sync.buffered == 2  # (16, 17) and (18, 19) wait for the next snapshot


def test_snapshot_answering_an_obsolete_request_is_ignored() -> None:
    sync = live_spot_machine(10)
    sync.on_diff(diff(20, 21), 3)  # gap -> request 2
    (request,) = requests(sync.take_outputs())

    sync.on_snapshot(snapshot(21), request.request_id - 1, 4)

    assert sync.counters.snapshots_ignored == 1
    assert not sync.is_live


def test_stale_diff_on_live_book_is_dropped_without_a_gap() -> None:
    sync = live_spot_machine(10)  # last applied u = 11

    delta = sync.on_diff(diff(5, 11), 3)

    assert delta is None
    assert sync.counters.gaps == 0
    assert sync.take_outputs() == []


def test_disconnect_moves_live_book_to_connecting_and_reconnect_syncs_again() -> None:
    sync = live_spot_machine(10)

    sync.disconnected(HealthReason.STALE, "no message for 10 s")
    after_drop = sync.take_outputs()
    ignored = sync.on_diff(diff(12, 12), 3)
    sync.connected()
    sync.on_diff(diff(40, 41), 4)
    out = sync.take_outputs()
    (request,) = requests(out)
    sync.on_snapshot(snapshot(40), request.request_id, 5)
    out += sync.take_outputs()

    assert healths(after_drop) == [(BookHealth.CONNECTING, HealthReason.STALE)]
    assert ignored is None
    assert healths(out) == [
        (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
        (BookHealth.LIVE, HealthReason.SNAPSHOT),
    ]


def test_snapshot_in_flight_during_a_disconnect_is_ignored() -> None:
    sync = connected_machine()
    sync.on_diff(diff(10, 12), 1)
    (request,) = requests(sync.take_outputs())
    sync.disconnected()
    sync.connected()

    sync.on_snapshot(snapshot(11), request.request_id, 2)

    assert not sync.is_live
    assert sync.counters.snapshots_ignored == 1


def test_parse_error_on_live_book_resyncs_immediately() -> None:
    sync = live_spot_machine(10)

    sync.invalidate(HealthReason.PARSE_ERROR, "unreadable depth frame")

    out = sync.take_outputs()
    assert healths(out) == [(BookHealth.RESYNCING, HealthReason.PARSE_ERROR)]
    assert len(requests(out)) == 1


def test_buffer_overflow_drops_the_oldest_diffs() -> None:
    sync = BookSync(VENUE, SYMBOL, SyncRules.SPOT, max_buffered=3)
    sync.connected()

    for i in range(5):
        sync.on_diff(diff(10 + i, 10 + i), 1)

    assert sync.buffered == 3
    assert sync.counters.buffer_overflows == 2


# -- the real captures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    name: str
    rules: SyncRules


CAPTURES = [
    Capture("BINANCE", SyncRules.SPOT),
    Capture("BINANCE_US", SyncRules.SPOT),
    Capture("BINANCE_FUTURES", SyncRules.FUTURES),
    Capture("BINANCE_DELIVERY", SyncRules.FUTURES),
]


@dataclass(frozen=True)
class RecordedDiff:
    ts: float
    raw: str
    msg: DepthUpdate


@dataclass(frozen=True)
class RecordedSnapshot:
    ts: float
    raw: str
    msg: DepthSnapshotMessage


def read_capture_lines(path: Path) -> Iterator[tuple[float, str]]:
    """(receive time, payload) of each received frame or REST body of a cryptofeed capture."""
    for line in path.read_text().splitlines():
        if not line or " <-> " in line or " <- " in line:
            continue
        if " -> " in line:
            line = line.split(" -> ", 1)[1]
        if line.startswith("configuration: "):
            continue
        ts, _, payload = line.partition(": ")
        yield float(ts), payload


def load_diffs(folder: Path, name: str) -> list[RecordedDiff]:
    decoder = FrameDecoder()
    out = []
    for ts, payload in read_capture_lines(folder / f"{name}.ws.1.0.txt"):
        if '"depthUpdate"' in payload:
            msg = decoder.decode(payload.encode()).data
            assert isinstance(msg, DepthUpdate)
            out.append(RecordedDiff(ts, payload, msg))
    return out


def load_snapshots(folder: Path, name: str) -> dict[str, RecordedSnapshot]:
    out = {}
    path = folder / f"{name}.http.0.0.rest_depth_snapshots.txt"
    for line in path.read_text().splitlines():
        if not line:
            continue
        url = line.split(" -> ", 1)[0]
        symbol = url.split("symbol=", 1)[1].split("&", 1)[0]
        ((ts, payload),) = read_capture_lines_from_text(line)
        out[symbol] = RecordedSnapshot(ts, payload, decode_depth_snapshot(payload))
    return out


def read_capture_lines_from_text(line: str) -> list[tuple[float, str]]:
    body = line.split(" -> ", 1)[1]
    ts, _, payload = body.partition(": ")
    return [(float(ts), payload)]


class ReferenceBook:
    """A plain rebuild from the wire text with Decimal and dicts: snapshot, then every newer diff."""

    def __init__(self, snapshot_text: str) -> None:
        snap = json.loads(snapshot_text)
        self.last_update_id: int = snap["lastUpdateId"]
        self.bids = {Decimal(p): Decimal(q) for p, q in snap["bids"]}
        self.asks = {Decimal(p): Decimal(q) for p, q in snap["asks"]}

    def apply(self, diff_text: str) -> None:
        data = json.loads(diff_text)["data"]
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)

    def top(self, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids = sorted(self.bids.items(), reverse=True)[:n]
        asks = sorted(self.asks.items())[:n]
        return [(float(p), float(q)) for p, q in bids], [(float(p), float(q)) for p, q in asks]


@dataclass
class EventBook:
    """The book the sync machine's events build (float levels, as botframe keeps them)."""

    bids: dict[float, float] = field(default_factory=dict)
    asks: dict[float, float] = field(default_factory=dict)

    def apply(self, event: BookSnapshot | BookDelta) -> None:
        if isinstance(event, BookSnapshot):
            self.bids = dict(event.bids)
            self.asks = dict(event.asks)
            return
        for side, levels in ((self.bids, event.bids), (self.asks, event.asks)):
            for price, size in levels:
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size

    def top(self, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        return sorted(self.bids.items(), reverse=True)[:n], sorted(self.asks.items())[:n]


def reference_after(snap: RecordedSnapshot, diffs: list[RecordedDiff], rules: SyncRules) -> ReferenceBook:
    ref = ReferenceBook(snap.raw)
    for d in diffs:
        newer = d.msg.last_update_id >= ref.last_update_id if rules is SyncRules.FUTURES else (
            d.msg.last_update_id > ref.last_update_id
        )
        if newer:
            ref.apply(d.raw)
    return ref


@dataclass
class ReplayResult:
    machines: dict[str, BookSync]
    books: dict[str, EventBook]
    outputs: dict[str, list[SyncOutput]]


def replay(
    diffs: list[RecordedDiff],
    snapshots: dict[str, RecordedSnapshot],
    rules: SyncRules,
    *,
    full_history: list[RecordedDiff] | None = None,
) -> ReplayResult:
    """Feed recorded diffs in receive order; answer each symbol's first snapshot request with the
    recorded REST snapshot at its recorded time, and any later request with the exchange's state at that
    moment, rebuilt from ``full_history`` (the capture before a frame was removed)."""
    machines = {s: BookSync(VENUE, s, rules) for s in snapshots}
    books = {s: EventBook() for s in snapshots}
    outputs: dict[str, list[SyncOutput]] = {s: [] for s in snapshots}
    pending: dict[str, int] = {}
    recorded_used: set[str] = set()
    for machine in machines.values():
        machine.connected()

    def drain(symbol: str, now_index: int) -> None:
        machine = machines[symbol]
        while machine.outputs:
            for out in machine.take_outputs():
                outputs[symbol].append(out)
                if isinstance(out, BookSnapshot | BookDelta):
                    books[symbol].apply(out)
                elif isinstance(out, NeedSnapshot):
                    pending[symbol] = out.request_id
                    if symbol in recorded_used:
                        answer_with_exchange_state(symbol, now_index)

    def answer_with_exchange_state(symbol: str, now_index: int) -> None:
        history = full_history if full_history is not None else diffs
        now_ts = diffs[now_index].ts
        seen = [d for d in history if d.msg.symbol == symbol and d.ts <= now_ts]
        ref = reference_after(snapshots[symbol], seen, rules)
        ref.last_update_id = seen[-1].msg.last_update_id
        bids, asks = (sorted(ref.bids.items(), reverse=True), sorted(ref.asks.items()))
        text = json.dumps({
            "lastUpdateId": ref.last_update_id,
            "bids": [[str(p), str(q)] for p, q in bids],
            "asks": [[str(p), str(q)] for p, q in asks],
        })
        machines[symbol].on_snapshot(decode_depth_snapshot(text), pending.pop(symbol), 0)

    for i, d in enumerate(diffs):
        for symbol, request_id in list(pending.items()):
            snap = snapshots[symbol]
            if symbol not in recorded_used and snap.ts <= d.ts:
                recorded_used.add(symbol)
                del pending[symbol]
                machines[symbol].on_snapshot(snap.msg, request_id, int(snap.ts * 1e9))
                drain(symbol, i)
        machine = machines[d.msg.symbol]
        delta = machine.on_diff(d.msg, int(d.ts * 1e9))
        if delta is not None:
            outputs[d.msg.symbol].append(delta)
            books[d.msg.symbol].apply(delta)
        drain(d.msg.symbol, i)
    return ReplayResult(machines, books, outputs)


@pytest.fixture(params=CAPTURES, ids=lambda c: c.name)
def capture(request: pytest.FixtureRequest) -> Capture:
    result: Capture = request.param
    return result


def test_capture_replay_rebuilds_every_book_without_gaps(shared_data: Path, capture: Capture) -> None:
    folder = shared_data / "binance"
    diffs = load_diffs(folder, capture.name)
    snapshots = load_snapshots(folder, capture.name)

    result = replay(diffs, snapshots, capture.rules)

    for symbol, machine in result.machines.items():
        assert machine.is_live, symbol
        assert machine.counters.gaps == 0, symbol
        assert machine.counters.snapshots_requested == 1, symbol
        ref = reference_after(snapshots[symbol], [d for d in diffs if d.msg.symbol == symbol], capture.rules)
        assert result.books[symbol].top() == ref.top(), symbol
        assert machine.last_update_id == max(d.msg.last_update_id for d in diffs if d.msg.symbol == symbol)


def test_capture_replay_with_one_diff_removed_reports_one_gap_then_resyncs(
    shared_data: Path, capture: Capture
) -> None:
    folder = shared_data / "binance"
    diffs = load_diffs(folder, capture.name)
    snapshots = load_snapshots(folder, capture.name)
    symbol = max(snapshots, key=lambda s: sum(d.msg.symbol == s for d in diffs))
    own = [i for i, d in enumerate(diffs) if d.msg.symbol == symbol]
    removed = own[len(own) // 2]
    assert diffs[removed].msg.last_update_id > snapshots[symbol].msg.last_update_id
    damaged = diffs[:removed] + diffs[removed + 1 :]

    result = replay(damaged, snapshots, capture.rules, full_history=diffs)

    machine = result.machines[symbol]
    assert machine.counters.gaps == 1
    assert machine.counters.snapshots_requested == 2
    assert healths(result.outputs[symbol]) == [
        (BookHealth.SYNCING, HealthReason.SUBSCRIBED),
        (BookHealth.LIVE, HealthReason.SNAPSHOT),
        (BookHealth.RESYNCING, HealthReason.GAP),
        (BookHealth.LIVE, HealthReason.SNAPSHOT),
    ]
    ref = reference_after(snapshots[symbol], [d for d in diffs if d.msg.symbol == symbol], capture.rules)
    assert result.books[symbol].top() == ref.top()
    for other, other_machine in result.machines.items():
        if other != symbol:
            assert other_machine.counters.gaps == 0, other


def test_capture_numbers_decode_to_the_same_floats_as_python(shared_data: Path, capture: Capture) -> None:
    diffs = load_diffs(shared_data / "binance", capture.name)

    for d in diffs:
        data = json.loads(d.raw)["data"]
        assert d.msg.bids == [(float(p), float(q)) for p, q in data["b"]]
        assert d.msg.asks == [(float(p), float(q)) for p, q in data["a"]]


def test_frame_decoder_rejects_non_depth_frames_with_a_decode_error() -> None:
    decoder = FrameDecoder()

    with pytest.raises(msgspec.ValidationError):
        decoder.decode(b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1"}}')
