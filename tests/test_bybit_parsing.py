"""Bybit's pure layers: wire decoding, instruments, and the per-book ``u`` chain.

There is no Bybit capture here: the frames are built from SPECS.md section 7 (and Bybit's documented
shapes for acks, pongs and instruments-info), traps included: ``u == 1`` on a delta is a full book,
unasked snapshots replace the book, pongs come in two spellings.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from botframe.events import BookHealth, HealthReason, Side
from botframe_plugins.bybit.config import BYBIT_REST_URL, BybitSettings, bybit_ws_url
from botframe_plugins.bybit.parsing import (
    Category,
    FrameDecoder,
    OrderbookData,
    SymbolMap,
    UnknownSymbolError,
    book_delta,
    book_snapshot,
    decode_control,
    decode_instruments,
    op_frame,
    read_header,
    trade,
)
from botframe_plugins.bybit.sync import Apply, BookSync, HealthChange, Resubscribe

SPECS_DELTA = (
    '{"topic":"orderbook.200.ETHUSDT","type":"delta","ts":1786310817731,"data":{"s":"ETHUSDT",'
    '"b":[["1922.27","5.91"],["1921.16","0"]],"a":[["1922.43","2.17"]],"u":14768461,"seq":430879399832},'
    '"cts":1786310817727}'
)
SPECS_TRADE = (
    '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1786310817800,"data":[{"T":1786310817795,'
    '"s":"BTCUSDT","S":"Sell","v":"0.004","p":"65114.20","L":"MinusTick","i":"2290000000060523185",'
    '"BT":false,"RPI":false,"seq":753843954913}]}'
)


def test_specs_delta_decodes_to_absolute_levels_with_its_ids() -> None:
    msg = FrameDecoder().decode(SPECS_DELTA)
    assert isinstance(msg.data, OrderbookData)

    delta = book_delta(msg, msg.data, "bybit", "ETH/USDT", 9)

    assert (delta.bids, delta.asks) == ([(1922.27, 5.91), (1921.16, 0.0)], [(1922.43, 2.17)])
    assert (delta.first_seq, delta.last_seq, delta.prev_seq) == (14768461, 14768461, 14768460)
    assert msg.data.cross_seq == 430879399832
    assert delta.exchange_ts_ns == 1786310817727 * 1_000_000  # the matching engine's time, cts
    assert delta.receive_ts_ns == 9


def test_snapshot_sides_come_out_best_first() -> None:
    frame = ('{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT",'
             '"b":[["99","1"],["100","2"]],"a":[["102","1"],["101","3"]],"u":5,"seq":7},"cts":0}')
    msg = FrameDecoder().decode(frame)
    assert isinstance(msg.data, OrderbookData)

    snap = book_snapshot(msg, msg.data, "bybit", "BTC/USDT", 0)

    assert snap.bids == [(100.0, 2.0), (99.0, 1.0)]
    assert snap.asks == [(101.0, 3.0), (102.0, 1.0)]
    assert (snap.sequence, snap.exchange_ts_ns) == (5, 1_000_000)  # no cts: the push time


def test_public_trade_side_is_the_takers() -> None:
    msg = FrameDecoder().decode(SPECS_TRADE)
    assert isinstance(msg.data, list)

    event = trade(msg.data[0], "bybit", "BTC/USDT", 0)

    assert event.side is Side.SELL
    assert (event.price, event.size, event.trade_id) == (65114.20, 0.004, "2290000000060523185")
    assert event.exchange_ts_ns == 1786310817795 * 1_000_000


@pytest.mark.parametrize(
    "frame",
    [
        '{"success":true,"ret_msg":"pong","conn_id":"c1","op":"ping"}',
        '{"success":true,"ret_msg":"pong","conn_id":"c1","req_id":"","op":"ping"}',
        '{"op":"pong","args":["1700000000000"],"conn_id":"c1"}',
    ],
)
def test_both_pong_spellings_are_pongs(frame: str) -> None:
    with pytest.raises(msgspec.DecodeError):
        FrameDecoder().decode(frame)

    control = decode_control(frame)

    assert control is not None and control.is_pong


def test_subscribe_acks_say_whether_the_topics_were_taken() -> None:
    ok = decode_control('{"success":true,"ret_msg":"","conn_id":"c1","req_id":"7","op":"subscribe"}')
    refused = decode_control('{"success":false,"ret_msg":"error:handler not found,topic:orderbook.7.BTCUSDT",'
                             '"conn_id":"c1","req_id":"8","op":"subscribe"}')

    assert ok is not None and ok.success and not ok.is_pong and ok.req_id == "7"
    assert refused is not None and not refused.success
    assert refused.ret_msg == "error:handler not found,topic:orderbook.7.BTCUSDT"
    assert decode_control(SPECS_DELTA) is None


def test_other_topics_and_broken_frames_are_told_apart_by_their_topic() -> None:
    ticker = '{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{"symbol":"BTCUSDT","lastPrice":"1"}}'
    cut = SPECS_DELTA[:60]

    for frame in (ticker, cut):
        with pytest.raises(msgspec.DecodeError):
            FrameDecoder().decode(frame)

    ticker_header, cut_header = read_header(ticker), read_header(cut)
    assert ticker_header is not None and ticker_header.channel == "tickers"
    assert cut_header is not None
    assert (cut_header.channel, cut_header.venue_symbol) == ("orderbook", "ETHUSDT")
    assert read_header("<html>502</html>") is None


def test_request_frames_have_bybits_shape() -> None:
    assert json.loads(op_frame("subscribe", ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"], "3")) == {
        "op": "subscribe", "args": ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"], "req_id": "3"}
    assert json.loads(op_frame("ping")) == {"op": "ping"}


# -- instruments-info -----------------------------------------------------------------------------------


def instruments_body(category: str, entries: list[dict[str, Any]], cursor: str = "") -> str:
    """An answer in the documented shape of ``GET /v5/market/instruments-info``."""
    return json.dumps({"retCode": 0, "retMsg": "OK", "result": {
        "category": category, "list": entries, "nextPageCursor": cursor}, "retExtInfo": {}, "time": 1786310817000})


SPOT_BTC = {
    "symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "innovation": "0", "status": "Trading",
    "marginTrading": "both", "stTag": "0",
    "lotSizeFilter": {"basePrecision": "0.000001", "quotePrecision": "0.00000001", "minOrderQty": "0.000048",
                      "maxOrderQty": "71.73956243", "minOrderAmt": "1", "maxOrderAmt": "2000000"},
    "priceFilter": {"tickSize": "0.01"}, "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
}
LINEAR_BTC = {
    "symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": "BTC",
    "quoteCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0", "deliveryFeeRate": "",
    "priceScale": "2", "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
    "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
    "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                      "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000", "minNotionalValue": "5"},
    "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": "USDT", "copyTrading": "both",
}
LINEAR_BTC_MARCH = {
    **LINEAR_BTC, "symbol": "BTC-28MAR25", "contractType": "LinearFutures", "deliveryTime": "1743148800000",
}
INVERSE_BTC = {
    **LINEAR_BTC, "symbol": "BTCUSD", "contractType": "InversePerpetual", "quoteCoin": "USD", "settleCoin": "BTC",
    "priceFilter": {"tickSize": "0.50"},
    "lotSizeFilter": {"maxOrderQty": "1000000", "minOrderQty": "1", "qtyStep": "1"},
}


def test_spot_instruments_give_exact_tick_lot_and_min_notional() -> None:
    page = decode_instruments(instruments_body("spot", [SPOT_BTC]))

    inst = SymbolMap.from_infos(page.instruments, "bybit", Category.SPOT).instrument("BTC/USDT")

    assert (inst.venue_symbol, inst.base, inst.quote) == ("BTCUSDT", "BTC", "USDT")
    assert (inst.tick_size, inst.lot_size, inst.min_notional) == ("0.01", "0.000001", "1")
    assert page.next_cursor == ""


def test_contracts_carry_the_settle_coin_and_dated_ones_their_expiry() -> None:
    linear = SymbolMap.from_infos(
        decode_instruments(instruments_body("linear", [LINEAR_BTC, LINEAR_BTC_MARCH])).instruments,
        "bybit", Category.LINEAR)
    inverse = SymbolMap.from_infos(
        decode_instruments(instruments_body("inverse", [INVERSE_BTC])).instruments, "bybit", Category.INVERSE)

    perp = linear.instrument("BTC/USDT:USDT")
    assert (perp.tick_size, perp.lot_size, perp.min_notional) == ("0.10", "0.001", "5")
    assert linear.unified("BTC-28MAR25") == "BTC/USDT:USDT-250328"
    assert inverse.unified("BTCUSD") == "BTC/USD:BTC"
    assert inverse.instrument("BTC/USD:BTC").lot_size == "1"


def test_unknown_symbol_names_the_likely_fix() -> None:
    linear = SymbolMap.from_infos(decode_instruments(instruments_body("linear", [LINEAR_BTC])).instruments,
                                  "bybit", Category.LINEAR)

    with pytest.raises(UnknownSymbolError, match=r"did you mean 'BTC/USDT:USDT'"):
        linear.instrument("BTC/USDT")
    with pytest.raises(UnknownSymbolError, match=r"did you mean 'BTC/USDT:USDT'"):
        linear.instrument("BTCUSDT")
    with pytest.raises(UnknownSymbolError, match=r"'BTC/USDC:USDC' is not listed by the venue$"):
        linear.instrument("BTC/USDC:USDC")
    dated_only = SymbolMap.from_infos(
        decode_instruments(instruments_body("linear", [LINEAR_BTC_MARCH])).instruments, "bybit", Category.LINEAR)
    with pytest.raises(UnknownSymbolError, match=r"contracts carry the settle coin, e.g. 'BTC/USDT:USDT-250328'"):
        dated_only.instrument("BTC/USDT")


def test_a_refused_or_unreadable_instruments_answer_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match=r"retCode=10001 retMsg='params error'"):
        decode_instruments('{"retCode":10001,"retMsg":"params error","result":{},"time":1}')
    with pytest.raises(ValueError, match="unreadable"):
        decode_instruments("<html>")


# -- the u chain ----------------------------------------------------------------------------------------


def live_book(u: int = 100) -> BookSync:
    sync = BookSync("BTC/USDT")
    sync.connected()
    assert sync.on_frame(True, u, 1000) is Apply.SNAPSHOT
    sync.take_outputs()
    return sync


def test_subscribe_then_snapshot_moves_the_book_to_syncing_then_live() -> None:
    sync = BookSync("BTC/USDT")

    sync.connected()
    action = sync.on_frame(True, 100, 1000)

    assert action is Apply.SNAPSHOT
    assert sync.take_outputs() == [
        HealthChange("BTC/USDT", BookHealth.SYNCING, HealthReason.SUBSCRIBED),
        HealthChange("BTC/USDT", BookHealth.LIVE, HealthReason.SNAPSHOT, "u=100"),
    ]


def test_contiguous_deltas_are_applied_and_seq_is_kept() -> None:
    sync = live_book(100)

    actions = [sync.on_frame(False, u, 1000 + u) for u in (101, 102, 103)]

    assert actions == [Apply.DELTA] * 3
    assert (sync.last_u, sync.cross_seq) == (103, 1103)
    assert sync.outputs == []


def test_a_jump_in_u_resyncs_and_resubscribes_the_book() -> None:
    sync = live_book(100)

    action = sync.on_frame(False, 102, 5000)

    assert action is Apply.DROP
    detail = "u=102 after u=100 (seq=5000, previous seq=1000)"
    assert sync.take_outputs() == [
        HealthChange("BTC/USDT", BookHealth.RESYNCING, HealthReason.GAP, detail),
        Resubscribe("BTC/USDT", HealthReason.GAP, detail),
    ]
    assert sync.on_frame(False, 103, 5001) is Apply.DROP  # until the new snapshot
    assert sync.counters.dropped_while_syncing == 1


def test_going_back_in_u_is_a_gap_too_unless_it_is_one() -> None:
    sync = live_book(100)

    assert sync.on_frame(False, 99, 0) is Apply.DROP
    assert sync.counters.gaps == 1


def test_u_of_one_on_a_delta_is_a_full_book_that_replaces_the_live_one() -> None:
    sync = live_book(100)

    action = sync.on_frame(False, 1, 7)

    assert action is Apply.SNAPSHOT
    assert sync.outputs == []  # LIVE stays LIVE; no resubscription
    assert sync.counters.restarts == 1
    assert sync.on_frame(False, 2, 8) is Apply.DELTA


def test_u_of_one_also_ends_a_wait_for_a_snapshot() -> None:
    sync = live_book(100)
    sync.on_frame(False, 105, 0)
    sync.take_outputs()

    assert sync.on_frame(False, 1, 7) is Apply.SNAPSHOT
    assert sync.take_outputs() == [
        HealthChange("BTC/USDT", BookHealth.LIVE, HealthReason.SNAPSHOT, "u=1: service restart, full book"),
    ]


def test_an_unasked_snapshot_replaces_the_book_and_the_chain_goes_on_from_it() -> None:
    sync = live_book(100)

    assert sync.on_frame(True, 250, 9) is Apply.SNAPSHOT
    assert sync.outputs == []
    assert sync.counters.unsolicited_snapshots == 1
    assert sync.on_frame(False, 251, 10) is Apply.DELTA


def test_deltas_before_the_first_snapshot_are_dropped() -> None:
    sync = BookSync("BTC/USDT")
    sync.connected()

    assert sync.on_frame(False, 55, 0) is Apply.DROP
    assert sync.counters.dropped_while_syncing == 1


def test_resync_of_a_book_waiting_for_its_snapshot_is_reported_but_not_resubscribed_again() -> None:
    sync = live_book(100)
    sync.resync(HealthReason.CROSSED, "crossed")
    sync.take_outputs()

    sync.resync(HealthReason.STALE, "stale")

    assert sync.take_outputs() == [HealthChange("BTC/USDT", BookHealth.RESYNCING, HealthReason.STALE, "stale")]


def test_frames_while_disconnected_are_ignored() -> None:
    sync = live_book(100)
    sync.disconnected(HealthReason.DISCONNECTED, "closed")
    sync.take_outputs()

    assert sync.on_frame(True, 300, 0) is Apply.DROP
    sync.resync(HealthReason.GAP)
    assert sync.outputs == []


# -- settings --------------------------------------------------------------------------------------------


def test_settings_default_to_the_real_stream_of_the_category() -> None:
    assert BybitSettings().ws_url == bybit_ws_url("spot") == "wss://stream.bybit.com/v5/public/spot"
    assert BybitSettings.model_validate({"category": "linear"}).ws_url == bybit_ws_url("linear")
    assert BybitSettings.model_validate({"category": "inverse", "ws_url": "ws://x"}).ws_url == "ws://x"
    assert BybitSettings().rest_url == BYBIT_REST_URL


def test_settings_refuse_what_bybit_would_refuse_or_what_would_misbehave() -> None:
    with pytest.raises(ValidationError, match="depth"):
        BybitSettings.model_validate({"depth": 25})
    with pytest.raises(ValidationError, match="category"):
        BybitSettings.model_validate({"category": "option"})
    with pytest.raises(ValidationError, match="stale_after_ms"):
        BybitSettings(heartbeat_interval_secs=20, stale_after_ms=10_000)
    with pytest.raises(ValidationError, match="unified symbol"):
        BybitSettings(symbols=["BTCUSDT"])
    with pytest.raises(ValidationError, match="extra"):
        BybitSettings.model_validate({"depht": 50})
