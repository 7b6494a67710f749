"""Kraken's pure layers: v1 and v2 frames decoded, symbols mapped, and the book sync rules one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botframe.book import kraken_book_checksum, kraken_book_checksum_from_precision, kraken_checksum
from botframe.bus import EventBus
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason, Side
from botframe.testing import RecordingVenueContext
from botframe_plugins.kraken.parsing import (
    FrameError,
    Heartbeat,
    Ignored,
    InstrumentUpdate,
    KrakenSymbolMap,
    KrakenTrade,
    Pong,
    RequestError,
    SubscriptionChange,
    SubscriptionState,
    SystemStatus,
    UnknownSymbolError,
    V1Book,
    V1Decoder,
    V2Book,
    V2Decoder,
    decimals_step,
    decode_asset_pairs,
    rfc3339_ns,
    seconds_text_ns,
    v1_request,
    v2_request,
)
from botframe_plugins.kraken.sync import BookSync, HealthChange, Resubscribe, SyncOutput

SYMBOL = "ETH/USD"


# -- v1 frames --------------------------------------------------------------------------------------------


def test_v1_snapshot_keeps_the_wire_text_and_carries_no_checksum() -> None:
    frame = (b'[1360,{"as":[["0.000022900","13355.87450757","1618678123.481570"]],'
             b'"bs":[["0.000022890","100.00000000","1618678124.000001"]]},"book-1000","ADA/XBT"]')

    [msg] = V1Decoder().decode(frame)

    assert msg == V1Book("ADA/XBT", True, [("0.000022890", "100.00000000")], [("0.000022900", "13355.87450757")],
                         None, 1618678124_000001000)


def test_v1_update_with_both_sides_takes_the_checksum_from_the_last_part() -> None:
    frame = (b'[1920,{"a":[["0.042990","364630.28272081","1618678145.920470"]]},{"b":[["0.042990","0.00000000",'
             b'"1618678145.920708"]],"c":"4105471083"},"book-1000","SC/EUR"]')

    [msg] = V1Decoder().decode(frame)

    assert isinstance(msg, V1Book)
    assert not msg.snapshot
    assert msg.asks == [("0.042990", "364630.28272081")]
    assert msg.bids == [("0.042990", "0.00000000")]
    assert msg.checksum == 4105471083
    assert msg.exchange_ts_ns == 1618678145_920708000


def test_v1_republished_level_is_an_ordinary_level() -> None:
    frame = (b'[1664,{"a":[["13.284500","1396.00000000","1618678133.383209","r"]],"c":"176333288"},'
             b'"book-10","WAVES/EUR"]')

    [msg] = V1Decoder().decode(frame)

    assert isinstance(msg, V1Book)
    assert msg.asks == [("13.284500", "1396.00000000")]


def test_v1_trades_carry_the_taker_side() -> None:
    frame = (b'[993,[["354.11000000","0.89594024","1618678142.557535","s","l",""],'
             b'["354.12000000","1.00000000","1618678142.600000","b","m",""]],"trade","XMR/USD"]')

    trades = V1Decoder().decode(frame)

    assert trades == [
        KrakenTrade("XMR/USD", 354.11, 0.89594024, Side.SELL, "", 1618678142_557535000),
        KrakenTrade("XMR/USD", 354.12, 1.0, Side.BUY, "", 1618678142_600000000),
    ]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"event":"heartbeat"}', Heartbeat()),
        ('{"event":"pong","reqid":1}', Pong()),
        ('{"connectionID":1,"event":"systemStatus","status":"maintenance","version":"1.8.3"}',
         SystemStatus("maintenance", "1.8.3")),
        ('{"channelID":992,"channelName":"book-1000","event":"subscriptionStatus","pair":"XMR/USD",'
         '"status":"subscribed","subscription":{"depth":1000,"name":"book"}}',
         SubscriptionChange("book", "XMR/USD", SubscriptionState.SUBSCRIBED)),
        ('{"errorMessage":"Currency pair not supported FOO/USD","event":"subscriptionStatus","pair":"FOO/USD",'
         '"status":"error","subscription":{"depth":10,"name":"book"}}',
         SubscriptionChange("book", "FOO/USD", SubscriptionState.ERROR, "Currency pair not supported FOO/USD")),
        ('{"errorMessage":"Malformed request","event":"error"}', RequestError("Malformed request")),
        ('[42,["1.0","2.0"],"spread","XBT/USD"]', Ignored("spread")),
    ],
)
def test_v1_control_frames(frame: str, expected: object) -> None:
    assert V1Decoder().decode(frame.encode()) == [expected]


@pytest.mark.parametrize(
    ("frame", "symbol"),
    [
        (b'[992,{"a":[[354.11,1.0,"1618678150.0"]],"c":"1"},"book-10","XMR/USD"]', "XMR/USD"),  # numbers
        (b'[992,{"a":[["354.11","1.0","1618678150.0"]]},"book-10","XMR/USD"]', "XMR/USD"),  # no checksum
        (b'[992,{"a":[["354.11","1.0","1618678150.0"]],"c":"1"},"book-10","XMR/U', ""),  # cut: unknown
        (b'["not a frame"]', ""),
    ],
)
def test_v1_malformed_frames_raise_frame_error_naming_the_pair_when_known(frame: bytes, symbol: str) -> None:
    with pytest.raises(FrameError) as info:
        V1Decoder().decode(frame)

    assert info.value.symbol == symbol


# -- v2 frames --------------------------------------------------------------------------------------------


def test_v2_book_numbers_decode_to_floats_whatever_their_spelling() -> None:
    frame = (b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[],"asks":['
             b'{"price":1797.29,"qty":0.0},{"price":1797.5,"qty":5.325e-05}],"checksum":3329440863,'
             b'"timestamp":"2025-05-06T09:17:26.208075Z"}]}')

    [msg] = V2Decoder().decode(frame)

    assert msg == V2Book("ETH/USD", False, [], [(1797.29, 0.0), (1797.5, 5.325e-05)], 3329440863,
                         1746523046_208075000)


def test_v2_instrument_keeps_increments_as_exact_text() -> None:
    frame = (b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[{"symbol":"BTC/USD",'
             b'"base":"BTC","quote":"USD","status":"online","qty_precision":8,"qty_increment":1e-08,'
             b'"price_precision":1,"price_increment":0.1,"cost_min":0.5}]}}')

    [msg] = V2Decoder().decode(frame)

    assert isinstance(msg, InstrumentUpdate)
    assert msg.snapshot
    [pair] = msg.pairs
    assert (pair.price_precision, pair.qty_precision) == (1, 8)
    assert (pair.price_increment, pair.qty_increment, pair.cost_min) == ("0.1", "0.00000001", "0.5")


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"channel":"heartbeat"}', Heartbeat()),
        ('{"channel":"status","type":"update","data":[{"api_version":"v2","connection_id":1,"system":"online",'
         '"version":"2.0.10"}]}', SystemStatus("online", "2.0.10")),
        ('{"method":"pong","req_id":3,"time_in":"x","time_out":"y"}', Pong()),
        ('{"method":"subscribe","result":{"channel":"book","depth":10,"snapshot":true,"symbol":"ETH/USD"},'
         '"success":true,"time_in":"x","time_out":"y"}',
         SubscriptionChange("book", "ETH/USD", SubscriptionState.SUBSCRIBED)),
        ('{"method":"unsubscribe","result":{"channel":"book","depth":10,"symbol":"ETH/USD"},"success":true}',
         SubscriptionChange("book", "ETH/USD", SubscriptionState.UNSUBSCRIBED)),
        ('{"error":"Currency pair not supported FOO/USD","method":"subscribe","success":false,'
         '"symbol":"FOO/USD","time_in":"x","time_out":"y"}',
         SubscriptionChange("", "FOO/USD", SubscriptionState.ERROR, "Currency pair not supported FOO/USD")),
        ('{"error":"Method not found","method":"subscrib","success":false}', RequestError("Method not found")),
        ('{"channel":"ticker","type":"update","data":[]}', Ignored("ticker")),
    ],
)
def test_v2_control_frames(frame: str, expected: object) -> None:
    assert V2Decoder().decode(frame.encode()) == [expected]


def test_v2_trades_keep_side_id_and_time_and_mark_the_snapshot() -> None:
    frame = (b'{"channel":"trade","type":"snapshot","data":[{"symbol":"BTC/USD","side":"sell","price":60000.1,'
             b'"qty":0.5,"ord_type":"market","trade_id":12,"timestamp":"2025-05-06T09:17:26.5Z"}]}')

    [trade] = V2Decoder().decode(frame)

    assert trade == KrakenTrade("BTC/USD", 60000.1, 0.5, Side.SELL, "12", 1746523046_500000000, snapshot=True)


def test_v2_malformed_book_frame_names_its_symbol() -> None:
    frame = b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":"x"'

    with pytest.raises(FrameError) as info:
        V2Decoder().decode(frame)

    assert (info.value.channel, info.value.symbol) == ("book", "ETH/USD")


def test_v2_book_frame_of_an_unknown_type_is_unreadable_and_names_its_symbol() -> None:
    frame = (b'{"channel":"book","type":"delta","data":[{"symbol":"ETH/USD","bids":[{"price":1797.2,"qty":1.0}],'
             b'"asks":[],"checksum":1}]}')

    with pytest.raises(FrameError, match="'delta'") as info:
        V2Decoder().decode(frame)

    assert (info.value.channel, info.value.symbol) == ("book", "ETH/USD")


def test_v2_book_update_without_its_checksum_is_unreadable_and_names_its_symbol() -> None:
    frame = b'{"channel":"book","type":"update","data":[{"symbol":"ETH/USD","bids":[{"price":1797.2,"qty":1.0}]}]}'

    with pytest.raises(FrameError, match="checksum") as info:
        V2Decoder().decode(frame)

    assert (info.value.channel, info.value.symbol) == ("book", "ETH/USD")


def test_v2_book_snapshot_without_a_checksum_still_decodes() -> None:
    frame = b'{"channel":"book","type":"snapshot","data":[{"symbol":"ETH/USD","bids":[{"price":1797.2,"qty":1.0}]}]}'

    [msg] = V2Decoder().decode(frame)

    assert msg == V2Book("ETH/USD", True, [(1797.2, 1.0)], [], None, 0)


def test_requests_match_the_documented_shapes() -> None:
    assert json.loads(v1_request("subscribe", "book", ["XMR/USD", "SC/EUR"], 1000)) == {
        "event": "subscribe", "pair": ["XMR/USD", "SC/EUR"], "subscription": {"name": "book", "depth": 1000}}
    assert json.loads(v1_request("subscribe", "trade", ["XMR/USD"], 1000)) == {
        "event": "subscribe", "pair": ["XMR/USD"], "subscription": {"name": "trade"}}
    assert json.loads(v2_request("subscribe", "book", ["ETH/USD"], 10)) == {
        "method": "subscribe", "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 10, "snapshot": True}}
    assert json.loads(v2_request("subscribe", "trade", ["ETH/USD"])) == {
        "method": "subscribe", "params": {"channel": "trade", "symbol": ["ETH/USD"], "snapshot": False}}
    assert json.loads(v2_request("unsubscribe", "book", ["ETH/USD"], 10)) == {
        "method": "unsubscribe", "params": {"channel": "book", "symbol": ["ETH/USD"], "depth": 10}}


def test_timestamps_convert_exactly() -> None:
    assert seconds_text_ns("1618678133.383209") == 1618678133_383209000
    assert seconds_text_ns("1618678133") == 1618678133_000000000
    assert rfc3339_ns("2025-05-06T09:17:26.208075Z") == 1746523046_208075000
    assert rfc3339_ns("") == 0
    assert decimals_step(8) == "0.00000001"
    assert decimals_step(0) == "1"


# -- symbols -----------------------------------------------------------------------------------------------


def test_asset_pairs_map_unified_names_to_both_protocol_names(shared_data: Path) -> None:
    body = (shared_data / "kraken/KRAKEN.0.rest_AssetPairs.txt").read_text().splitlines()[0]
    resp = decode_asset_pairs(body.split(" -> ", 1)[1].partition(": ")[2])

    v2 = KrakenSymbolMap.from_asset_pairs(resp, "kraken", "v2")
    v1 = KrakenSymbolMap.from_asset_pairs(resp, "kraken", "v1")

    btc = v2.pair("BTC/USD")
    assert (btc.v1_name, btc.v2_name, btc.price_decimals, btc.qty_decimals) == ("XBT/USD", "BTC/USD", 1, 8)
    assert btc.instrument.venue_symbol == "BTC/USD"
    assert v1.pair("BTC/USD").instrument.venue_symbol == "XBT/USD"
    assert btc.instrument.tick_size == "0.1"
    assert btc.instrument.lot_size == "0.00000001"
    assert v2.pair("DOGE/USD").v1_name == "XDG/USD"
    with pytest.raises(UnknownSymbolError, match="did you mean 'BTC/USD'"):
        v2.pair("XBT/USD")


# -- the sync machine ------------------------------------------------------------------------------------------


class Harness:
    """A BookSync over the engine-like recording context: apply, verify, publish onto a real EventBus."""

    def __init__(self, depth: int = 10, price_decimals: int | None = None, qty_decimals: int | None = None) -> None:
        self.bus = EventBus()
        self.ctx = RecordingVenueContext("kraken", bus=self.bus)
        self.book = self.ctx.book(SYMBOL)
        #: What the bus's book subscribers saw: each event with the book's top levels at that moment.
        self.seen: list[tuple[Event, list[tuple[float, float]], list[tuple[float, float]]]] = []
        self.bus.subscribe(BookSnapshot, self._see)
        self.bus.subscribe(BookDelta, self._see)
        self.sync = BookSync("kraken", SYMBOL, self.book, apply=self.ctx.apply, publish=self.ctx.publish,
                             depth=depth, price_decimals=price_decimals, qty_decimals=qty_decimals)
        self.sync.subscribed()

    @property
    def events(self) -> list[Event]:
        return self.ctx.events

    def _see(self, event: BookSnapshot | BookDelta) -> None:
        self.seen.append((event, self.book.bids(10), self.book.asks(10)))

    def healths(self) -> list[tuple[BookHealth, HealthReason]]:
        return [(o.health, o.reason) for o in self.sync.outputs if isinstance(o, HealthChange)]

    def resubscriptions(self) -> list[SyncOutput]:
        return [o for o in self.sync.outputs if isinstance(o, Resubscribe)]


BIDS = [("100.0", "1.00000000"), ("99.9", "2.00000000")]
ASKS = [("100.1", "1.50000000"), ("100.2", "0.00000048")]


def text_checksum(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    return kraken_checksum(asks, bids)


def test_v1_snapshot_makes_the_book_live_and_matching_updates_keep_it_live() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)

    h.sync.on_text_update([("99.9", "3.00000000")], [], text_checksum(ASKS, [BIDS[0], ("99.9", "3.00000000")]), 0, 0)

    assert h.healths() == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.LIVE, HealthReason.SNAPSHOT)]
    assert h.sync.counters.checksums_matched == 1
    assert h.book.bids() == [(100.0, 1.0), (99.9, 3.0)]


def test_checksum_mismatch_resyncs_and_drops_updates_until_the_next_snapshot() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)

    h.sync.on_text_update([("99.9", "3.00000000")], [], 12345, 0, 0)
    h.sync.on_text_update([("99.8", "1.00000000")], [], 12345, 0, 0)

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert len(h.resubscriptions()) == 1
    assert h.sync.counters.dropped_while_syncing == 1
    assert h.sync.awaiting_snapshot
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)
    assert h.healths()[-1] == (BookHealth.LIVE, HealthReason.SNAPSHOT)


def test_v1_update_failing_its_checksum_is_applied_to_verify_but_never_published() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)
    good = ("99.9", "3.00000000")
    h.sync.on_text_update([good], [], text_checksum(ASKS, [BIDS[0], good]), 0, 0)

    h.sync.on_text_update([("99.8", "7.00000000")], [], 12345, 0, 0)  # its checksum is corrupted

    [bad] = h.ctx.unpublished()
    assert bad.bids == [(99.8, 7.0)]
    assert [type(e) for e, _, _ in h.seen] == [BookSnapshot, BookDelta]  # the snapshot and the good update
    assert all(e is not bad and (99.8, 7.0) not in bids for e, bids, _ in h.seen)
    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert len(h.resubscriptions()) == 1


def test_v1_book_changed_by_a_refused_update_is_replaced_by_the_next_snapshot() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)
    h.sync.on_text_update([("99.8", "7.00000000")], [], 12345, 0, 0)

    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)

    assert h.book.bids() == [(100.0, 1.0), (99.9, 2.0)]
    assert h.healths()[-1] == (BookHealth.LIVE, HealthReason.SNAPSHOT)
    assert [type(e) for e, _, _ in h.seen] == [BookSnapshot, BookSnapshot]


def test_every_book_state_a_subscriber_sees_passes_the_checksum_of_its_frame() -> None:
    h = Harness()
    carried: list[int] = []  # the checksum each update frame carried
    matched: list[bool] = []
    h.bus.subscribe(BookDelta, lambda e: matched.append(kraken_book_checksum(h.book, h.sync.text) == carried[-1]))
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)
    good = ("99.9", "3.00000000")

    for level, checksum in [(good, text_checksum(ASKS, [BIDS[0], good])), (("99.7", "1.00000000"), 1)]:
        carried.append(checksum)  # the second one is corrupted
        h.sync.on_text_update([level], [], checksum, 0, 0)

    assert matched == [True]  # one update published, on a book matching its frame's checksum


def test_crossed_update_is_never_published() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)
    crossing = ("100.1", "1.00000000")

    h.sync.on_text_update([crossing], [], text_checksum(ASKS, [crossing, *BIDS]), 0, 0)

    assert [e.bids for e in h.ctx.unpublished() if isinstance(e, BookDelta)] == [[(100.1, 1.0)]]
    assert [type(e) for e, _, _ in h.seen] == [BookSnapshot]
    assert h.ctx.crossed_after_event == 0


def test_v2_update_with_a_wrong_checksum_is_never_published() -> None:
    h = Harness(price_decimals=1, qty_decimals=8)
    snap_checksum = kraken_checksum([("101.0", "1.00000000")], [("100.0", "1.00000000")])
    h.sync.on_snapshot([(100.0, 1.0)], [(101.0, 1.0)], snap_checksum, 0, 0)

    h.sync.on_update([(100.0, 2.0)], [], snap_checksum, 0, 0)  # the checksum of the book before it

    assert [type(e) for e, _, _ in h.seen] == [BookSnapshot]
    assert [e.bids for e in h.ctx.unpublished()] == [[(100.0, 2.0)]]
    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert kraken_book_checksum_from_precision(h.book, 1, 8) != snap_checksum


def test_crossed_book_after_an_update_resyncs() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)
    crossing = [("100.1", "1.00000000")]
    new_bids = [crossing[0], *BIDS]

    h.sync.on_text_update(crossing, [], text_checksum(ASKS, new_bids), 0, 0)

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CROSSED)
    assert h.sync.counters.crossed == 1


def test_each_side_is_truncated_to_the_subscribed_depth() -> None:
    h = Harness(depth=2)
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)
    better = ("100.05", "1.00000000")

    h.sync.on_text_update([better], [], text_checksum(ASKS, [better, BIDS[0]]), 0, 0)

    assert h.book.bids() == [(100.05, 1.0), (100.0, 1.0)]  # 99.9 fell out of depth without a delete
    assert h.sync.counters.checksum_failures == 0


def test_update_before_any_snapshot_is_not_applied() -> None:
    h = Harness()

    h.sync.on_text_update(BIDS, [], 1, 0, 0)

    assert h.events == []
    assert h.sync.counters.dropped_while_syncing == 1


def test_level_that_is_not_a_number_raises_for_the_caller_to_count() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)

    with pytest.raises(ValueError, match="could not convert"):
        h.sync.on_text_update([("abc", "1")], [], 1, 0, 0)
    h.sync.invalidate(HealthReason.PARSE_ERROR, "bad level")

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.PARSE_ERROR)
    assert len(h.resubscriptions()) == 1


def test_disconnect_sends_the_book_to_connecting_and_ignores_late_frames() -> None:
    h = Harness()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)

    h.sync.disconnected()
    h.sync.on_text_snapshot(BIDS, ASKS, 0, 0)

    assert h.healths()[-1] == (BookHealth.CONNECTING, HealthReason.DISCONNECTED)
    assert len(h.events) == 1


def test_v2_reserialized_floats_fail_the_text_method_and_pass_by_precision() -> None:
    # SPECS.md section 2: 1797.50 re-encoded as 1797.5 and 0.00005325 as 5.325e-05.
    frame = (b'{"channel":"book","type":"snapshot","data":[{"symbol":"ETH/USD",'
             b'"bids":[{"price":1797.24,"qty":0.43393711}],"asks":[{"price":1797.5,"qty":5.325e-05}],'
             b'"checksum":%d}]}')
    exact = kraken_checksum([("1797.50", "0.00005325")], [("1797.24", "0.43393711")])
    [msg] = V2Decoder().decode(frame % exact)
    assert isinstance(msg, V2Book)
    as_text = kraken_checksum([(repr(p), repr(q)) for p, q in msg.asks], [(repr(p), repr(q)) for p, q in msg.bids])
    h = Harness(price_decimals=2, qty_decimals=8)

    h.sync.on_snapshot(msg.bids, msg.asks, msg.checksum, 0, 0)

    assert as_text != exact
    assert h.healths()[-1] == (BookHealth.LIVE, HealthReason.SNAPSHOT)
    assert h.sync.counters.checksums_matched == 1


def test_v2_frames_wait_for_the_instrument_precision_then_resubscribe() -> None:
    h = Harness()

    h.sync.on_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 42, 0, 0)
    assert h.events == []
    assert h.sync.counters.unverifiable == 1
    h.sync.set_precision(1, 8)

    assert h.resubscriptions() == [Resubscribe(SYMBOL, "instrument precision now known")]


def test_v2_snapshot_with_a_wrong_checksum_never_goes_live_and_is_never_published() -> None:
    h = Harness(price_decimals=1, qty_decimals=8)

    h.sync.on_snapshot([(100.0, 1.0)], [(101.0, 1.0)], 42, 0, 0)

    assert h.healths() == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.SYNCING, HealthReason.CHECKSUM)]
    assert len(h.resubscriptions()) == 1
    assert h.seen == []
    assert len(h.ctx.unpublished()) == 1


def test_state_vectors_reproduce_through_the_sync_machine(shared_data: Path) -> None:
    vectors = json.loads((shared_data / "kraken/v1_checksum_state_vectors.json").read_text())
    for vector in vectors:
        asks = [(lv[0], lv[1]) for lv in vector["asks"]]
        bids = [(lv[0], lv[1]) for lv in vector["bids"]]
        h = Harness(depth=1000)
        h.sync.on_text_snapshot([], [], 0, 0)
        # The same levels as one update: the checksum is then the exchange's expected value.
        h.sync.on_text_update(bids, asks, vector["expected"], 0, 0)

        assert h.sync.counters.checksums_matched == 1, vector["source"]
