"""OKX's pure layers: frames decoded, instruments mapped to unified symbols, and the book sync rules one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botframe.book import okx_book_checksum, okx_checksum
from botframe.bus import EventBus
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason, Side
from botframe.testing import RecordingVenueContext
from botframe_plugins.okx.parsing import (
    FrameError,
    Ignored,
    InstType,
    Notice,
    OkxBook,
    OkxDecoder,
    OkxSymbolMap,
    OkxTrade,
    Pong,
    RequestError,
    SubscriptionChange,
    SubscriptionState,
    UnknownSymbolError,
    decode_instruments,
    inst_type_of,
    request,
)
from botframe_plugins.okx.sync import BookSync, HealthChange, Resubscribe

SYMBOL = "BTC/USDT"


# -- frames ------------------------------------------------------------------------------------------------


def test_book_update_keeps_the_wire_text_and_the_sequence_ids() -> None:
    frame = (b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["30238.8","2",'
             b'"0","1"]],"bids":[["30238.1","0","0","0"]],"ts":"1652459225464","checksum":-1242588839,'
             b'"seqId":4588911,"prevSeqId":4588907}]}')

    [msg] = OkxDecoder().decode(frame)

    assert msg == OkxBook("BTC-USDT", False, [("30238.1", "0")], [("30238.8", "2")], -1242588839, 4588911, 4588907,
                          1652459225464_000000)


def test_book_frame_from_before_sequence_ids_has_none() -> None:
    frame = (b'{"arg":{"channel":"books","instId":"UNI-USD-SWAP"},"action":"snapshot","data":[{"asks":[],'
             b'"bids":[["5.14","427","0","4"]],"ts":"1652459225464","checksum":1361161687}]}')

    [msg] = OkxDecoder().decode(frame)

    assert isinstance(msg, OkxBook)
    assert msg.snapshot
    assert (msg.seq_id, msg.prev_seq_id) == (None, None)


def test_trades_carry_the_taker_side() -> None:
    frame = (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"338476307",'
             b'"px":"30236","sz":"0.0002","side":"buy","ts":"1652459224818"},{"instId":"BTC-USDT",'
             b'"tradeId":"338476308","px":"30235.9","sz":"1.5","side":"sell","ts":"1652459224819","count":"3"}]}')

    trades = OkxDecoder().decode(frame)

    assert trades == [
        OkxTrade("BTC-USDT", 30236.0, 0.0002, Side.BUY, "338476307", 1652459224818_000000),
        OkxTrade("BTC-USDT", 30235.9, 1.5, Side.SELL, "338476308", 1652459224819_000000),
    ]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ("pong", Pong()),
        ('{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
         SubscriptionChange("books", "BTC-USDT", SubscriptionState.SUBSCRIBED)),
        ('{"event":"unsubscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
         SubscriptionChange("books", "BTC-USDT", SubscriptionState.UNSUBSCRIBED)),
        ('{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}',
         RequestError("60012", "Invalid request")),
        ('{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade."}',
         Notice("64008", "The connection will soon be closed for a service upgrade.")),
        ('{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"last":"1"}]}', Ignored("tickers")),
    ],
)
def test_control_frames(frame: str, expected: object) -> None:
    assert OkxDecoder().decode(frame.encode()) == [expected]


@pytest.mark.parametrize(
    ("frame", "symbol"),
    [
        (b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[[30238.8', "BTC-USDT"),
        (b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[[]]}]}', "BTC-USDT"),
        (b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":"1","sz":"1","side":"up","ts":"1"}]}',
         "BTC-USDT"),
        (b"<html>502</html>", ""),
        (b'{"data":[]}', ""),
    ],
)
def test_malformed_frames_raise_frame_error_naming_the_instrument_when_known(frame: bytes, symbol: str) -> None:
    with pytest.raises(FrameError) as info:
        OkxDecoder().decode(frame)

    assert info.value.symbol == symbol


def test_request_matches_the_documented_shape() -> None:
    assert json.loads(request("subscribe", [("books", "BTC-USDT"), ("trades", "BTC-USDT")])) == {
        "op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"},
                                    {"channel": "trades", "instId": "BTC-USDT"}]}


# -- instruments and symbols -----------------------------------------------------------------------------------


def _symbol_map(shared_data: Path) -> OkxSymbolMap:
    infos = []
    for line in (shared_data / "okx/OKX.0.rest_instruments.txt").read_text().splitlines()[:3]:
        infos += decode_instruments(line.split(" -> ", 1)[1].partition(": ")[2]).data
    return OkxSymbolMap(infos, "okx")


def test_instruments_map_to_ccxt_unified_symbols(shared_data: Path) -> None:
    symbols = _symbol_map(shared_data)

    spot = symbols.instrument("BTC/USDT")
    linear = symbols.instrument("BTC/USDT:USDT")
    inverse = symbols.instrument("UNI/USD:UNI")
    future = symbols.instrument("BTC/USD:BTC-220527")

    assert (spot.venue_symbol, spot.tick_size, spot.lot_size) == ("BTC-USDT", "0.1", "0.00000001")
    assert (linear.venue_symbol, linear.base, linear.quote) == ("BTC-USDT-SWAP", "BTC", "USDT")
    assert inverse.venue_symbol == "UNI-USD-SWAP"
    assert (future.venue_symbol, future.quote) == ("BTC-USD-220527", "USD")


def test_unknown_symbol_error_suggests_the_unified_spelling(shared_data: Path) -> None:
    symbols = _symbol_map(shared_data)

    with pytest.raises(UnknownSymbolError, match="did you mean 'BTC/USDT'"):
        symbols.instrument("BTC-USDT")
    with pytest.raises(UnknownSymbolError, match=r"settle currency, e\.g\. 'UNI/USD:UNI'"):
        symbols.instrument("UNI/USD")


@pytest.mark.parametrize(
    ("symbol", "inst_type"),
    [("BTC/USDT", InstType.SPOT), ("BTC/USDT:USDT", InstType.SWAP), ("BTC/USD:BTC-220527", InstType.FUTURES)],
)
def test_unified_symbol_says_which_instruments_to_load(symbol: str, inst_type: InstType) -> None:
    assert inst_type_of(symbol) is inst_type


# -- the sync machine ------------------------------------------------------------------------------------------


class Harness:
    """A BookSync over the engine-like recording context: apply, verify, publish onto a real EventBus.

    ``bids``/``asks`` are the exchange's true book (wire text); ``seen`` is what the bus's book
    subscribers read: each event with the checksum of the book at that moment.
    """

    def __init__(self) -> None:
        self.bus = EventBus()
        self.ctx = RecordingVenueContext("okx", bus=self.bus)
        self.book = self.ctx.book(SYMBOL)
        self.sync = BookSync("okx", SYMBOL, self.book, apply=self.ctx.apply, publish=self.ctx.publish)
        self.sync.subscribed()
        self.bids = {"100.0": "1", "99.9": "2"}
        self.asks = {"100.1": "3", "100.2": "4"}
        self.seen: list[tuple[Event, int]] = []
        self.bus.subscribe(BookSnapshot, self._see)
        self.bus.subscribe(BookDelta, self._see)

    @property
    def events(self) -> list[Event]:
        return self.ctx.events

    def _see(self, event: BookSnapshot | BookDelta) -> None:
        self.seen.append((event, okx_book_checksum(self.book, self.sync.text)))

    def checksum(self) -> int:
        bids = sorted(self.bids.items(), key=lambda lv: -float(lv[0]))
        asks = sorted(self.asks.items(), key=lambda lv: float(lv[0]))
        return okx_checksum(bids, asks)

    def snapshot(self, seq: int | None = 10) -> None:
        self.sync.on_snapshot(list(self.bids.items()), list(self.asks.items()), self.checksum(), seq, 0, 0)

    def update(self, bids: dict[str, str], asks: dict[str, str], seq: int | None, prev: int | None,
               checksum: int | None = None) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels.items():
                if float(q):
                    side[p] = q
                else:
                    side.pop(p, None)
        crc = self.checksum() if checksum is None else checksum
        self.sync.on_update(list(bids.items()), list(asks.items()), crc, seq, prev, 0, 0)

    def healths(self) -> list[tuple[BookHealth, HealthReason]]:
        return [(o.health, o.reason) for o in self.sync.outputs if isinstance(o, HealthChange)]

    def resubscriptions(self) -> int:
        return sum(isinstance(o, Resubscribe) for o in self.sync.outputs)


def test_snapshot_then_chained_updates_stay_live_even_when_seq_ids_jump() -> None:
    h = Harness()
    h.snapshot(10)

    h.update({"99.9": "5"}, {}, seq=11, prev=10)
    h.update({}, {"100.2": "0"}, seq=13, prev=11)

    assert h.healths() == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.LIVE, HealthReason.SNAPSHOT)]
    assert h.sync.counters.checksums_matched == 3
    assert h.book.asks() == [(100.1, 3.0)]
    assert (h.book.prev_seq, h.book.last_seq) == (11, 13)


def test_prev_seq_id_that_does_not_chain_is_a_gap() -> None:
    h = Harness()
    h.snapshot(10)

    h.update({"99.9": "5"}, {}, seq=13, prev=12)

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.GAP)
    assert h.resubscriptions() == 1
    assert len(h.events) == 1  # the snapshot only: a frame after a gap is not applied


def test_empty_update_with_prev_equal_to_seq_is_a_keepalive() -> None:
    h = Harness()
    h.snapshot(10)

    h.update({}, {}, seq=10, prev=10)
    h.update({"99.9": "5"}, {}, seq=11, prev=10)

    assert h.sync.counters.keepalives == 1
    assert h.sync.is_live
    assert len(h.events) == 2  # nothing published for the keep-alive


def test_seq_id_reset_after_maintenance_still_chains() -> None:
    h = Harness()
    h.snapshot(500)

    h.update({"99.9": "5"}, {}, seq=3, prev=500)
    h.update({"99.9": "6"}, {}, seq=4, prev=3)

    assert h.sync.counters.seq_resets == 1
    assert h.sync.is_live


def test_checksum_zero_means_absent_and_the_sequence_alone_decides() -> None:
    h = Harness()
    h.snapshot(10)

    h.update({"99.9": "5"}, {}, seq=11, prev=10, checksum=0)

    assert h.sync.is_live
    assert h.sync.counters.checksums_absent == 1


def test_checksum_mismatch_resyncs_and_frames_wait_for_the_new_snapshot() -> None:
    h = Harness()
    h.snapshot(None)

    h.update({"99.9": "5"}, {}, seq=None, prev=None, checksum=12345)
    h.update({"99.9": "6"}, {}, seq=None, prev=None)

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert h.sync.counters.dropped_while_syncing == 1
    h.snapshot(None)
    assert h.healths()[-1] == (BookHealth.LIVE, HealthReason.SNAPSHOT)


def test_update_failing_its_checksum_is_applied_to_verify_but_never_published() -> None:
    h = Harness()
    h.snapshot(10)

    h.update({"99.9": "5"}, {}, seq=11, prev=10, checksum=12345)

    assert [type(e) for e, _ in h.seen] == [BookSnapshot]
    assert [e.bids for e in h.ctx.unpublished()] == [[(99.9, 5.0)]]
    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert h.resubscriptions() == 1


def test_every_book_state_a_subscriber_sees_matches_the_exchange_checksum() -> None:
    h = Harness()
    expected: list[int] = []  # the true book's checksum after each frame that should be published

    h.snapshot(10)
    expected.append(h.checksum())
    h.update({"99.9": "5"}, {}, seq=11, prev=10)
    expected.append(h.checksum())
    h.update({}, {"100.2": "0"}, seq=12, prev=11, checksum=7)  # corrupted: refused
    h.snapshot(20)  # the resync's
    expected.append(h.checksum())
    h.update({"99.8": "1"}, {}, seq=21, prev=20)
    expected.append(h.checksum())

    assert [type(e) for e, _ in h.seen] == [BookSnapshot, BookDelta, BookSnapshot, BookDelta]
    assert [crc for _, crc in h.seen] == expected
    assert len(h.ctx.unpublished()) == 1


def test_snapshot_with_a_wrong_checksum_is_never_published_and_never_live() -> None:
    h = Harness()

    h.sync.on_snapshot(list(h.bids.items()), list(h.asks.items()), h.checksum() + 1, 10, 0, 0)

    assert h.seen == []
    assert h.healths() == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.SYNCING, HealthReason.CHECKSUM)]
    assert h.sync.awaiting_snapshot


def test_a_gap_is_refused_before_the_frame_touches_the_book() -> None:
    h = Harness()
    h.snapshot(10)

    h.update({"99.9": "5"}, {}, seq=13, prev=12)

    assert h.ctx.unpublished() == []  # never even applied
    assert h.book.bids() == [(100.0, 1.0), (99.9, 2.0)]


def test_crossed_book_resyncs_and_is_never_published() -> None:
    h = Harness()
    h.snapshot(10)

    h.update({"100.1": "1"}, {}, seq=11, prev=10)

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CROSSED)
    assert [type(e) for e, _ in h.seen] == [BookSnapshot]
    assert h.ctx.crossed_after_event == 0


def test_level_that_is_not_a_number_raises_for_the_caller_to_count() -> None:
    h = Harness()
    h.snapshot(10)

    with pytest.raises(ValueError, match="could not convert"):
        h.sync.on_update([("abc", "1")], [], 1, 11, 10, 0, 0)
    h.sync.invalidate(HealthReason.PARSE_ERROR, "bad level")

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.PARSE_ERROR)
    assert h.resubscriptions() == 1


def test_disconnect_forgets_the_chain() -> None:
    h = Harness()
    h.snapshot(10)

    h.sync.disconnected()

    assert h.sync.last_seq_id is None
    assert h.healths()[-1] == (BookHealth.CONNECTING, HealthReason.DISCONNECTED)
