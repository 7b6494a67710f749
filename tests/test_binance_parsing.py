"""Binance wire decoding: typed frames, events, exchangeInfo instruments and symbol names."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from botframe.events import Side
from botframe_plugins.binance.parsing import (
    AggTrade,
    DepthUpdate,
    FrameDecoder,
    Market,
    SymbolMap,
    UnknownSymbolError,
    book_delta,
    book_snapshot,
    decode_depth_snapshot,
    decode_exchange_info,
    frame_stream_name,
    trade,
)

SPOT_DIFF = (
    b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1633998512068,"s":"NKNUSDT",'
    b'"U":499869750,"u":499869752,"b":[["0.35130000","6195.00000000"],["0.34750000","0.00000000"]],"a":[]}}'
)
FUTURES_DIFF = (
    b'{"stream":"sushiusdt@depth@100ms","data":{"e":"depthUpdate","E":1626992741037,"T":1626992741024,'
    b'"s":"SUSHIUSDT","U":600859599090,"u":600859600917,"pu":600859598061,"b":[["7.5040","813"]],'
    b'"a":[["7.6150","1563"]]}}'
)
AGG_TRADE = (
    b'{"stream":"omgbusd@aggTrade","data":{"e":"aggTrade","E":1633998277000,"s":"OMGBUSD","a":2714925,'
    b'"p":"13.75700000","q":"1.43000000","f":3086380,"l":3086380,"T":1633998276995,"m":true,"M":true}}'
)


def read_exchange_info(folder: Path, name: str) -> bytes:
    line = (folder / f"{name}.0.rest_exchangeInfo.txt").read_text().splitlines()[0]
    return line.split(" -> ", 1)[1].partition(": ")[2].encode()


def test_spot_diff_decodes_to_float_levels_and_a_delta_with_ids_and_ns() -> None:
    msg = FrameDecoder().decode(SPOT_DIFF).data
    assert isinstance(msg, DepthUpdate)

    delta = book_delta(msg, "binance", "NKN/USDT", receive_ts_ns=5)

    assert delta.bids == [(0.3513, 6195.0), (0.3475, 0.0)]
    assert delta.asks == []
    assert (delta.first_seq, delta.last_seq, delta.prev_seq) == (499869750, 499869752, 0)
    assert delta.exchange_ts_ns == 1633998512068 * 1_000_000
    assert delta.receive_ts_ns == 5


def test_futures_diff_keeps_pu_and_uses_the_transaction_time() -> None:
    msg = FrameDecoder().decode(FUTURES_DIFF).data
    assert isinstance(msg, DepthUpdate)

    delta = book_delta(msg, "binance", "SUSHI/USDT:USDT", receive_ts_ns=0)

    assert delta.prev_seq == 600859598061
    assert delta.exchange_ts_ns == 1626992741024 * 1_000_000


def test_agg_trade_with_buyer_maker_is_a_sell() -> None:
    msg = FrameDecoder().decode(AGG_TRADE).data
    assert isinstance(msg, AggTrade)

    event = trade(msg, "binance", "OMG/BUSD", receive_ts_ns=0)

    assert event.side is Side.SELL
    assert (event.price, event.size) == (13.757, 1.43)
    assert event.trade_id == "2714925"
    assert event.exchange_ts_ns == 1633998276995 * 1_000_000


def test_agg_trade_with_seller_maker_is_a_buy() -> None:
    msg = FrameDecoder().decode(AGG_TRADE.replace(b'"m":true', b'"m":false')).data
    assert isinstance(msg, AggTrade)

    assert trade(msg, "binance", "OMG/BUSD", 0).side is Side.BUY


def test_depth_snapshot_becomes_a_book_snapshot_with_its_update_id() -> None:
    snap = decode_depth_snapshot(b'{"lastUpdateId":42,"bids":[["1.5","2"]],"asks":[["1.6","3"]]}')

    event = book_snapshot(snap, "binance", "X/Y", receive_ts_ns=9)

    assert event.sequence == 42
    assert event.bids == [(1.5, 2.0)]
    assert event.asks == [(1.6, 3.0)]


@pytest.mark.parametrize("frame", [
    b'{"stream":"x@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["a","1"]],"a":[]}}',
    b'{"stream":"x@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"X","U":1',
    b'{"stream":"x@kline_1m","data":{"e":"kline","E":1,"s":"X"}}',
    b"not json",
])
def test_anything_but_a_wellformed_depth_or_trade_raises_a_decode_error(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        FrameDecoder().decode(frame)


def test_stream_name_is_found_even_in_truncated_frames() -> None:
    assert frame_stream_name(b'{"stream":"btcusdt@bookTicker","data":{"u":1}}') == "btcusdt@bookTicker"
    assert frame_stream_name(b'{"stream":"btcusdt@depth@100ms","data":{"e":"dep') == "btcusdt@depth@100ms"
    assert frame_stream_name(b"<html>") is None


def test_spot_exchange_info_gives_exact_tick_step_and_min_notional(shared_data: Path) -> None:
    info = decode_exchange_info(read_exchange_info(shared_data / "binance", "BINANCE"))

    symbols = SymbolMap.from_exchange_info(info, "binance", Market.SPOT)

    inst = symbols.instrument("NKN/USDT")
    assert inst.venue_symbol == "NKNUSDT"
    assert (inst.base, inst.quote) == ("NKN", "USDT")
    assert (inst.tick_size, inst.lot_size, inst.min_notional) == ("0.00010000", "1.00000000", "10.00000000")
    assert symbols.stream_symbol("NKN/USDT") == "nknusdt"
    assert symbols.unified("NKNUSDT") == "NKN/USDT"


def test_usdm_symbols_carry_the_settle_asset_and_notional(shared_data: Path) -> None:
    info = decode_exchange_info(read_exchange_info(shared_data / "binance", "BINANCE_FUTURES"))

    symbols = SymbolMap.from_exchange_info(info, "binance", Market.USDM)

    inst = symbols.instrument("SUSHI/USDT:USDT")
    assert inst.venue_symbol == "SUSHIUSDT"
    assert inst.min_notional == "5"


def test_coinm_dated_contracts_carry_their_expiry(shared_data: Path) -> None:
    info = decode_exchange_info(read_exchange_info(shared_data / "binance", "BINANCE_DELIVERY"))

    symbols = SymbolMap.from_exchange_info(info, "binance", Market.COINM)

    assert symbols.venue_symbol("BTC/USD:BTC") == "BTCUSD_PERP"
    assert symbols.venue_symbol("BTC/USD:BTC-211231") == "BTCUSD_211231"


def test_unknown_symbol_error_suggests_the_unified_name(shared_data: Path) -> None:
    info = decode_exchange_info(read_exchange_info(shared_data / "binance", "BINANCE_DELIVERY"))
    symbols = SymbolMap.from_exchange_info(info, "binance", Market.COINM)

    with pytest.raises(UnknownSymbolError, match="did you mean 'BTC/USD:BTC'"):
        symbols.instrument("BTCUSD_PERP")
    with pytest.raises(UnknownSymbolError, match="settle asset"):
        symbols.instrument("BTC/USD")
