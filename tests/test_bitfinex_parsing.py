"""Bitfinex's pure layers: frames decoded with JS number text kept, the connection sequence, symbols, and the
book rules one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botframe.book import L2Book, bitfinex_checksum
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason, Side
from botframe_plugins.bitfinex.parsing import (
    BitfinexDecoder,
    BitfinexSymbolMap,
    ChannelData,
    ChecksumFrame,
    ConfAck,
    ErrorEvent,
    FrameError,
    Heartbeat,
    Ignored,
    Info,
    Pong,
    Subscribed,
    TradeExecution,
    TradeFrame,
    UnknownSymbolError,
    Unsubscribed,
    book_level,
    book_snapshot_levels,
    conf_request,
    decode_pair_list,
    subscribe_request,
    trade_execution,
    unsubscribe_request,
)
from botframe_plugins.bitfinex.sync import BookSync, ConnectionSequence, HealthChange, Resubscribe

SYMBOL = "BTC/USD"


# -- frames ------------------------------------------------------------------------------------------------


def test_numbers_keep_the_javascript_text_bitfinex_wrote() -> None:
    frame = b"[232955,[[0.0010261,1,8],[0.0010262,2,1e-8],[0.0010270,1,-6.6e-7],[0.0010271,3,-0.0000011]],66]"

    msg = BitfinexDecoder().decode(frame)

    assert isinstance(msg, ChannelData)
    assert (msg.chan_id, msg.seq) == (232955, 66)
    assert book_snapshot_levels(msg.payload) == [
        ("0.0010261", 1, "8"), ("0.0010262", 2, "1e-8"), ("0.0010270", 1, "-6.6e-7"), ("0.0010271", 3, "-0.0000011"),
    ]


def test_book_update_is_one_level_and_an_empty_snapshot_is_an_empty_book() -> None:
    update = BitfinexDecoder().decode(b"[17,[60000,0,1],8]")
    empty = BitfinexDecoder().decode(b"[17,[],9]")

    assert isinstance(update, ChannelData)
    assert book_level(update.payload) == ("60000", 0, "1")
    assert isinstance(empty, ChannelData)
    assert book_snapshot_levels(empty.payload) == []


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('[17,"hb",12]', Heartbeat(17, 12)),
        ('[17,"hb"]', Heartbeat(17, None)),
        ('[17,"cs",-1313436426,13]', ChecksumFrame(17, -1313436426, 13)),
        ('[18,"te",[401597395,1574694478808,0.005,7245.3],14]',
         TradeFrame(18, "te", [401597395, 1574694478808, "0.005", "7245.3"], 14)),
        ('[18,"tu",[401597395,1574694478808,0.005,7245.3],15]',
         TradeFrame(18, "tu", [401597395, 1574694478808, "0.005", "7245.3"], 15)),
        ('{"event":"info","version":2,"serverId":"x","platform":{"status":1}}', Info(0, "", 1)),
        ('{"event":"info","code":20051,"msg":"Stopping. Please try to reconnect"}',
         Info(20051, "Stopping. Please try to reconnect", None)),
        ('{"event":"conf","status":"OK","flags":196608}', ConfAck("OK", 196608)),
        ('{"event":"subscribed","channel":"book","chanId":232955,"symbol":"tIOTETH","prec":"P0","freq":"F0",'
         '"len":"100","pair":"IOTETH"}', Subscribed("book", 232955, "tIOTETH", "P0", "100")),
        ('{"event":"unsubscribed","status":"OK","chanId":232955}', Unsubscribed(232955, "OK")),
        ('{"event":"error","msg":"subscribe: dup","code":10301,"channel":"book","symbol":"tBTCUSD"}',
         ErrorEvent(10301, "subscribe: dup", "book", "tBTCUSD")),
        ('{"event":"pong","ts":1511545528111,"cid":1234}', Pong()),
        ('{"event":"auth","status":"OK"}', Ignored("event auth")),
    ],
)
def test_channel_and_event_frames(frame: str, expected: object) -> None:
    assert BitfinexDecoder().decode(frame.encode()) == expected


@pytest.mark.parametrize(
    "frame",
    [b"<html>502</html>", b'["hb",1]', b'[17,"xx",1]', b'[17,"cs","x",1]', b'[17,"hb",1.5]', b'{"channel":"book"}',
     b'[17,"te",5,1]'],
)
def test_malformed_frames_raise_frame_error(frame: bytes) -> None:
    with pytest.raises(FrameError):
        BitfinexDecoder().decode(frame)


@pytest.mark.parametrize("payload", [[60000, 1], [60000, "1", 0.5], [60000, 1, None], [[1, 2, 3]]])
def test_book_payloads_of_the_wrong_shape_raise_frame_error(payload: list[object]) -> None:
    with pytest.raises(FrameError):
        book_level(payload)


def test_trade_side_is_the_takers_from_the_sign_of_the_amount() -> None:
    assert trade_execution([401597395, 1574694478808, "0.005", "7245.3"]) == TradeExecution(
        "401597395", 7245.3, 0.005, Side.BUY, 1574694478808_000000)
    assert trade_execution([401597396, 1574694478900, "-1e-8", 7245]) == TradeExecution(
        "401597396", 7245.0, 1e-8, Side.SELL, 1574694478900_000000)


def test_requests_match_the_documented_shapes() -> None:
    assert json.loads(conf_request(checksums=True)) == {"event": "conf", "flags": 65536 | 131072}
    assert json.loads(conf_request(checksums=False)) == {"event": "conf", "flags": 65536}
    assert json.loads(subscribe_request("book", "tBTCUSD", 25)) == {
        "event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "P0", "freq": "F0", "len": "25"}
    assert json.loads(subscribe_request("trades", "tBTCUSD")) == {
        "event": "subscribe", "channel": "trades", "symbol": "tBTCUSD"}
    assert json.loads(unsubscribe_request(232955)) == {"event": "unsubscribe", "chanId": 232955}


# -- the connection sequence ---------------------------------------------------------------------------------


def test_sequence_must_grow_by_one_across_all_channels() -> None:
    seq = ConnectionSequence()

    assert [seq.check(n) for n in (1, 2, 3)] == [None, None, None]
    assert seq.check(5) == 4  # 4 was lost
    assert seq.check(6) is None
    assert seq.gaps == 1
    seq.reset()
    assert seq.check(1) is None  # a new connection starts anew


def test_capture_sequence_is_contiguous_across_channels_and_heartbeats(shared_data: Path) -> None:
    decoder = BitfinexDecoder()
    seq = ConnectionSequence()
    for line in (shared_data / "bitfinex/BITFINEX.ws.11.0.txt").read_text().splitlines():
        if line and line[0].isdigit():
            msg = decoder.decode(line.partition(": ")[2])
            number = getattr(msg, "seq", None)
            if number is not None:
                seq.check(number)

    assert (seq.last, seq.gaps) == (1670, 0)


# -- symbols ----------------------------------------------------------------------------------------------------


def test_pairs_map_to_ccxt_unified_symbols(shared_data: Path) -> None:
    line = (shared_data / "bitfinex/BITFINEX.0.rest.txt").read_text().splitlines()[0]
    symbols = BitfinexSymbolMap(decode_pair_list(line.split(" -> ", 1)[1].partition(": ")[2]), "bitfinex")

    assert symbols.instrument("BTC/USD").venue_symbol == "tBTCUSD"
    assert symbols.instrument("BTC/USDT").venue_symbol == "tBTCUST"
    assert symbols.instrument("IOTA/ETH").venue_symbol == "tIOTETH"
    assert symbols.instrument("AAVE/USD").venue_symbol == "tAAVE:USD"
    assert symbols.instrument("TESTBTC/TESTUSD").venue_symbol == "tTESTBTC:TESTUSD"
    inst = symbols.instrument("BTC/USD")
    assert (inst.tick_size, inst.lot_size, inst.min_notional) == ("0", "0.00000001", "0")
    with pytest.raises(UnknownSymbolError, match="did you mean 'IOTA/ETH'"):
        symbols.instrument("IOT/ETH")


# -- the book machine -----------------------------------------------------------------------------------------


class Harness:
    """A BookSync publishing into a local L2Book, as the engine would apply the events."""

    def __init__(self, *, checksums: bool = True) -> None:
        self.book = L2Book("bitfinex", SYMBOL)
        self.events: list[Event] = []
        self.sync = BookSync("bitfinex", SYMBOL, self.book, self.publish, checksums=checksums)
        self.sync.subscribed()

    def publish(self, event: Event) -> None:
        if isinstance(event, BookSnapshot):
            self.book.apply_snapshot(event)
        elif isinstance(event, BookDelta):
            self.book.apply_delta(event)
        self.events.append(event)

    def healths(self) -> list[tuple[BookHealth, HealthReason]]:
        return [(o.health, o.reason) for o in self.sync.outputs if isinstance(o, HealthChange)]

    def resubscriptions(self) -> int:
        return sum(isinstance(o, Resubscribe) for o in self.sync.outputs)


LEVELS = [("100", 2, "1.5"), ("99.5", 1, "1e-8"), ("100.5", 1, "-6.6e-7"), ("101", 3, "-2")]


def test_snapshot_splits_sides_by_the_sign_and_keeps_ask_sizes_positive() -> None:
    h = Harness()

    h.sync.on_snapshot(LEVELS, 0)

    assert h.book.bids() == [(100.0, 1.5), (99.5, 1e-8)]
    assert h.book.asks() == [(100.5, 6.6e-7), (101.0, 2.0)]
    assert h.healths() == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.LIVE, HealthReason.SNAPSHOT)]


def test_checksum_hashes_the_wire_text_with_negative_asks() -> None:
    h = Harness()
    h.sync.on_snapshot(LEVELS, 0)
    expected = bitfinex_checksum([("100", "1.5"), ("99.5", "1e-8")], [("100.5", "-6.6e-7"), ("101", "-2")])
    rerendered = bitfinex_checksum([("100.0", "1.5"), ("99.5", "1e-08")], [("100.5", "-6.6e-07"), ("101.0", "-2.0")])

    h.sync.on_checksum(expected)

    assert rerendered != expected  # Python's float repr is not JavaScript's Number.toString
    assert h.sync.counters.checksums_matched == 1
    assert h.sync.is_live


def test_count_zero_deletes_from_the_side_its_amount_names() -> None:
    h = Harness()
    h.sync.on_snapshot(LEVELS, 0)

    h.sync.on_update(("100", 0, "1"), 5, 0)
    h.sync.on_update(("101", 0, "-1"), 6, 0)

    assert h.book.bids() == [(99.5, 1e-8)]
    assert h.book.asks() == [(100.5, 6.6e-7)]
    assert h.sync.text.bids == {99.5: ("99.5", "1e-8")}
    assert h.sync.text.asks == {100.5: ("100.5", "-6.6e-7")}
    assert isinstance(h.events[-1], BookDelta)
    assert h.events[-1].last_seq == 6


def test_checksum_mismatch_resyncs_and_updates_wait_for_the_new_snapshot() -> None:
    h = Harness()
    h.sync.on_snapshot(LEVELS, 0)

    h.sync.on_checksum(12345)
    h.sync.on_update(("100", 1, "9"), 7, 0)

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert h.resubscriptions() == 1
    assert h.sync.counters.dropped_while_syncing == 1


def test_with_checksums_a_momentary_cross_is_judged_at_the_checksum_frame() -> None:
    h = Harness(checksums=True)
    h.sync.on_snapshot(LEVELS, 0)

    h.sync.on_update(("100.5", 1, "0.1"), 5, 0)  # a bid at the ask's price, before the ask's delete arrives
    crossed_between_frames = h.book.is_crossed()
    h.sync.on_update(("100.5", 0, "-1"), 6, 0)
    h.sync.on_checksum(bitfinex_checksum([("100.5", "0.1"), ("100", "1.5"), ("99.5", "1e-8")], [("101", "-2")]))

    assert crossed_between_frames
    assert h.sync.is_live
    assert h.sync.counters.crossed == 0


def test_without_checksums_a_crossed_book_resyncs_at_once() -> None:
    h = Harness(checksums=False)
    h.sync.on_snapshot(LEVELS, 0)

    h.sync.on_update(("100.5", 1, "0.1"), 5, 0)

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CROSSED)


def test_level_that_is_not_a_number_raises_for_the_caller_to_count() -> None:
    h = Harness()
    h.sync.on_snapshot(LEVELS, 0)

    with pytest.raises(ValueError, match="could not convert"):
        h.sync.on_update(("abc", 1, "1"), 5, 0)
    h.sync.invalidate(HealthReason.PARSE_ERROR, "bad level")

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.PARSE_ERROR)


def test_a_second_gap_while_resyncing_is_reported_again_for_the_counters() -> None:
    h = Harness()
    h.sync.on_snapshot(LEVELS, 0)

    h.sync.invalidate(HealthReason.GAP, "seq 9 where 8 was due")
    h.sync.invalidate(HealthReason.GAP, "seq 12 where 11 was due")

    # The second is no transition (the book is already RESYNCING) but L2Book.set_health counts its reason.
    assert h.healths()[2:] == [(BookHealth.RESYNCING, HealthReason.GAP), (BookHealth.RESYNCING, HealthReason.GAP)]
