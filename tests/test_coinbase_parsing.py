"""Coinbase's pure layers: wire decoding, products, the per-connection sync machine, trade de-duplication.

The Exchange feed is proven on the recorded 2021 session (``coinbase/COINBASE.ws.28.0.legacy_2021.txt``);
Advanced Trade, which has no capture here, on frames built from SPECS.md section 6, traps included.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import ValidationError

from botframe.book import L2Book
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason, Side
from botframe_plugins.coinbase.config import (
    ADVANCED_TRADE_REST_URL,
    ADVANCED_TRADE_WS_URL,
    EXCHANGE_REST_URL,
    EXCHANGE_WS_URL,
    CoinbaseSettings,
)
from botframe_plugins.coinbase.parsing import (
    AdvancedFrameDecoder,
    ExchangeFrameDecoder,
    ExchangeL2Update,
    ExchangeLastMatch,
    ExchangeMatch,
    ExchangeSnapshot,
    Feed,
    HeartbeatsMessage,
    L2Message,
    MarketTrade,
    MarketTradesMessage,
    SubscriptionsMessage,
    SymbolMap,
    UnknownSymbolError,
    advanced_book_event,
    advanced_subscription,
    advanced_trade,
    decode_products,
    exchange_delta,
    exchange_snapshot,
    exchange_subscription,
    exchange_trade,
    read_header,
    rfc3339_ns,
)
from botframe_plugins.coinbase.sync import ConnectionSync, HealthChange, Resubscribe, TradeDedup

CAPTURE = "coinbase/COINBASE.ws.28.0.legacy_2021.txt"
PRODUCTS = "coinbase/COINBASE.0.legacy_rest_products.txt"


# -- the recorded Exchange feed session -----------------------------------------------------------------


def server_frames(path: Path) -> list[str]:
    """The frames the exchange sent, in order (connection and client lines left out)."""
    frames = []
    for line in path.read_text().splitlines():
        if not line or line.startswith("wss://"):
            continue
        frames.append(line.partition(": ")[2])
    return frames


def rest_body(path: Path) -> str:
    return path.read_text().splitlines()[0].split(" -> ", 1)[1].partition(": ")[2]


class ReferenceBooks:
    """A plain rebuild from the wire text: Decimal dicts per product, snapshot then every change."""

    def __init__(self) -> None:
        self.books: dict[str, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {}

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "snapshot":
            self.books[frame["product_id"]] = (
                {Decimal(p): Decimal(q) for p, q in frame["bids"]},
                {Decimal(p): Decimal(q) for p, q in frame["asks"]},
            )
        elif frame["type"] == "l2update":
            bids, asks = self.books[frame["product_id"]]
            for side, price, size in frame["changes"]:
                levels = bids if side == "buy" else asks
                if Decimal(size) == 0:
                    levels.pop(Decimal(price), None)
                else:
                    levels[Decimal(price)] = Decimal(size)

    def touch(self, product: str) -> tuple[Decimal, Decimal]:
        bids, asks = self.books[product]
        return max(bids), min(asks)

    def top(self, product: str, n: int = 10) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        bids, asks = self.books[product]
        best_bids = sorted(bids.items(), reverse=True)[:n]
        best_asks = sorted(asks.items())[:n]
        return [(float(p), float(q)) for p, q in best_bids], [(float(p), float(q)) for p, q in best_asks]


@pytest.fixture(scope="module")
def capture(shared_data: Path) -> list[str]:
    return server_frames(shared_data / CAPTURE)


def test_exchange_capture_rebuilds_every_book_like_the_reference(capture: list[str]) -> None:
    decode = ExchangeFrameDecoder().decode
    books: dict[str, L2Book] = {}
    reference = ReferenceBooks()
    crossed = 0

    for frame in capture:
        reference.apply(json.loads(frame))
        try:
            msg = decode(frame)
        except msgspec.DecodeError:
            continue
        if isinstance(msg, ExchangeSnapshot):
            books[msg.product_id] = L2Book("coinbase", msg.product_id)
            books[msg.product_id].apply_snapshot(exchange_snapshot(msg, "coinbase", msg.product_id, 0))
        elif isinstance(msg, ExchangeL2Update):
            book = books[msg.product_id]
            book.apply_delta(exchange_delta(msg, "coinbase", msg.product_id, 0))
            crossed += book.is_crossed()

    assert len(books) == 10
    assert crossed == 0
    for product, book in books.items():
        assert (book.bids(10), book.asks(10)) == reference.top(product), product
        assert (book.bid_count, book.ask_count) == tuple(len(side) for side in reference.books[product])


def test_every_exchange_frame_is_decoded_or_is_a_channel_not_read(capture: list[str]) -> None:
    decode = ExchangeFrameDecoder().decode
    kinds: dict[str, int] = {}

    for frame in capture:
        try:
            kind = type(decode(frame)).__name__
        except msgspec.DecodeError:
            header = read_header(frame)
            assert header is not None
            kind = f"refused:{header.type}"
        kinds[kind] = kinds.get(kind, 0) + 1

    assert kinds == {
        "ExchangeSubscriptions": 3,
        "ExchangeSnapshot": 10,
        "ExchangeL2Update": 9719,
        "ExchangeMatch": 97,
        "ExchangeLastMatch": 10,
        "refused:ticker": 107,
    }


def test_exchange_match_side_names_the_maker_so_the_aggressor_is_the_opposite(capture: list[str]) -> None:
    decode = ExchangeFrameDecoder().decode
    reference = ReferenceBooks()
    at_the_ask: dict[Side, int] = {Side.BUY: 0, Side.SELL: 0}
    at_the_bid: dict[Side, int] = {Side.BUY: 0, Side.SELL: 0}

    for frame in capture:
        data = json.loads(frame)
        reference.apply(data)
        if data["type"] != "match":
            continue
        msg = decode(frame)
        assert isinstance(msg, ExchangeMatch)
        trade = exchange_trade(msg, "coinbase", "X/Y", 0)
        bid, ask = reference.touch(msg.product_id)
        price = Decimal(data["price"])
        if abs(price - ask) < abs(price - bid):
            at_the_ask[trade.side] += 1
        elif abs(price - ask) > abs(price - bid):
            at_the_bid[trade.side] += 1

    # A buyer takes the ask, a seller hits the bid: the recorded trades say which reading is right.
    assert at_the_ask[Side.BUY] >= 10 * at_the_ask[Side.SELL]
    assert at_the_bid[Side.SELL] >= 10 * at_the_bid[Side.BUY]
    assert at_the_ask[Side.BUY] + at_the_bid[Side.SELL] == 90


def test_last_match_is_a_kind_of_its_own(capture: list[str]) -> None:
    first = next(f for f in capture if '"type":"last_match"' in f)

    msg = ExchangeFrameDecoder().decode(first)

    assert isinstance(msg, ExchangeLastMatch)
    assert not isinstance(msg, ExchangeMatch)


def test_exchange_trade_carries_id_time_and_aggressor() -> None:
    frame = (
        '{"type":"match","trade_id":280232,"maker_order_id":"2a0d","taker_order_id":"3c82","side":"sell",'
        '"size":"985","price":"0.00001305","product_id":"SKL-BTC","sequence":177100030,'
        '"time":"2021-04-17T16:43:37.089723Z"}'
    )
    msg = ExchangeFrameDecoder().decode(frame)
    assert isinstance(msg, ExchangeMatch)

    trade = exchange_trade(msg, "coinbase", "SKL/BTC", 7)

    assert (trade.side, trade.price, trade.size, trade.trade_id) == (Side.BUY, 0.00001305, 985.0, "280232")
    assert trade.exchange_ts_ns == 1618677817089723000
    assert trade.receive_ts_ns == 7


# -- Advanced Trade frames built from SPECS.md ----------------------------------------------------------


def l2_frame(sequence: int, events: list[dict[str, Any]]) -> str:
    return json.dumps({"channel": "l2_data", "client_id": "", "timestamp": "2026-08-09T21:05:48.483587501Z",
                       "sequence_num": sequence, "events": events})


def level(side: str, price: str, qty: str) -> dict[str, str]:
    return {"side": side, "event_time": "2026-08-09T21:05:48.170326Z", "price_level": price, "new_quantity": qty}


def test_offer_levels_are_asks_and_bid_levels_are_bids() -> None:
    frame = l2_frame(13, [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
        level("bid", "65083.66", "0.20371215"), level("offer", "65083.67", "0.5"),
        level("bid", "65083.10", "1"), level("offer", "65090", "2"),
    ]}])
    msg = AdvancedFrameDecoder().decode(frame)
    assert isinstance(msg, L2Message)

    snap = advanced_book_event(msg.events[0], "coinbase", "BTC/USD", msg.sequence_num, 5, 6)

    assert isinstance(snap, BookSnapshot)
    assert snap.bids == [(65083.66, 0.20371215), (65083.10, 1.0)]
    assert snap.asks == [(65083.67, 0.5), (65090.0, 2.0)]
    assert (snap.sequence, snap.exchange_ts_ns, snap.receive_ts_ns) == (13, 5, 6)


def test_snapshot_sides_come_out_best_first_whatever_the_wire_order() -> None:
    frame = l2_frame(1, [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
        level("offer", "102", "1"), level("bid", "99", "1"), level("offer", "101", "1"), level("bid", "100", "1"),
    ]}])
    msg = AdvancedFrameDecoder().decode(frame)
    assert isinstance(msg, L2Message)

    snap = advanced_book_event(msg.events[0], "coinbase", "BTC/USD", 1, 0, 0)

    assert snap.bids == [(100.0, 1.0), (99.0, 1.0)]
    assert snap.asks == [(101.0, 1.0), (102.0, 1.0)]


def test_update_is_a_delta_whose_zero_quantity_deletes() -> None:
    frame = l2_frame(14, [{"type": "update", "product_id": "BTC-USD",
                           "updates": [level("bid", "65061.91", "0"), level("offer", "65090", "3")]}])
    msg = AdvancedFrameDecoder().decode(frame)
    assert isinstance(msg, L2Message)

    delta = advanced_book_event(msg.events[0], "coinbase", "BTC/USD", 14, 0, 0)

    assert isinstance(delta, BookDelta)
    assert (delta.bids, delta.asks) == ([(65061.91, 0.0)], [(65090.0, 3.0)])
    assert delta.first_seq == delta.last_seq == 14


def test_an_ask_spelled_other_than_offer_is_refused_not_misplaced() -> None:
    frame = l2_frame(14, [{"type": "update", "product_id": "BTC-USD", "updates": [level("ask", "65090", "3")]}])

    with pytest.raises(msgspec.ValidationError, match="side"):
        AdvancedFrameDecoder().decode(frame)
    header = read_header(frame)
    assert header is not None
    assert (header.channel, header.sequence_num, header.product_ids) == ("l2_data", 14, ("BTC-USD",))


def test_market_trades_side_names_the_maker() -> None:
    frame = json.dumps({"channel": "market_trades", "client_id": "", "timestamp": "2026-08-09T21:05:48.5Z",
                        "sequence_num": 20, "events": [{"type": "update", "trades": [
                            {"product_id": "BTC-USD", "trade_id": "1068572091", "price": "65083.67",
                             "size": "0.01034361", "time": "2026-08-09T21:05:48.401Z", "side": "SELL"}]}]})
    msg = AdvancedFrameDecoder().decode(frame)
    assert isinstance(msg, MarketTradesMessage)

    trade = advanced_trade(msg.events[0].trades[0], "coinbase", "BTC/USD", 0)

    # SPECS.md: this SELL printed at 65083.67, one tick above the 65083.66 best bid: a buyer took the ask.
    assert trade.side is Side.BUY
    assert (trade.price, trade.size, trade.trade_id) == (65083.67, 0.01034361, "1068572091")
    assert trade.exchange_ts_ns == rfc3339_ns("2026-08-09T21:05:48.401Z")


def test_heartbeats_and_subscriptions_are_read_for_their_sequence() -> None:
    decode = AdvancedFrameDecoder().decode
    heartbeat = decode(json.dumps({"channel": "heartbeats", "client_id": "", "timestamp": "2026-08-09T21:05:49Z",
                                   "sequence_num": 7, "events": [{"current_time": "2026-08-09 21:05:49 +0000 UTC",
                                                                  "heartbeat_counter": 3049}]}))
    subscriptions = decode(json.dumps({"channel": "subscriptions", "client_id": "", "timestamp": "",
                                       "sequence_num": 0, "events": [{"subscriptions": {
                                           "level2": ["BTC-USD"], "heartbeats": ["heartbeats"]}}]}))

    assert isinstance(heartbeat, HeartbeatsMessage)
    assert heartbeat.sequence_num == 7
    assert isinstance(subscriptions, SubscriptionsMessage)
    assert subscriptions.channels() == {"level2": ["BTC-USD"], "heartbeats": ["heartbeats"]}


def test_error_frames_and_other_channels_are_told_apart_by_the_header() -> None:
    error = '{"type":"error","message":"failure to subscribe"}'
    ticker = '{"channel":"ticker","client_id":"","timestamp":"","sequence_num":9,"events":[]}'
    cut = '{"channel":"l2_data","client_id":"","timestamp":"2026","sequence_num":31,"events":[{"type":"upd'

    for frame in (error, ticker, cut):
        with pytest.raises(msgspec.DecodeError):
            AdvancedFrameDecoder().decode(frame)

    error_header, ticker_header, cut_header = (read_header(f) for f in (error, ticker, cut))
    assert error_header is not None and error_header.is_error
    assert error_header.message == "failure to subscribe"
    assert ticker_header is not None
    assert (ticker_header.channel, ticker_header.sequence_num) == ("ticker", 9)
    assert cut_header is not None
    assert (cut_header.channel, cut_header.sequence_num) == ("l2_data", 31)
    assert read_header("<html>502 Bad Gateway</html>") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-08-09T21:05:48.483587501Z", 1786309548483587501),
        ("2021-04-17T16:43:37.075687Z", 1618677817075687000),
        ("2019-08-14T20:42:27.265Z", 1565815347265000000),
        ("2021-04-17T16:43:37Z", 1618677817000000000),
        ("2021-04-17T17:43:37+01:00", 1618677817000000000),
        ("not a time", 0),
        ("", 0),
    ],
)
def test_rfc3339_keeps_nanoseconds(text: str, expected: int) -> None:
    assert rfc3339_ns(text) == expected


def test_subscription_frames_have_the_shape_each_feed_expects() -> None:
    assert json.loads(advanced_subscription("level2", ["BTC-USD", "ETH-USD"])) == {
        "type": "subscribe", "product_ids": ["BTC-USD", "ETH-USD"], "channel": "level2"}
    assert json.loads(advanced_subscription("heartbeats", [])) == {"type": "subscribe", "channel": "heartbeats"}
    assert json.loads(advanced_subscription("level2", ["BTC-USD"], subscribe=False))["type"] == "unsubscribe"
    assert json.loads(exchange_subscription(["level2_batch", "matches"], ["SKL-USD"])) == {
        "type": "subscribe", "product_ids": ["SKL-USD"], "channels": ["level2_batch", "matches"]}


# -- products and symbols -------------------------------------------------------------------------------


def advanced_products_body() -> str:
    """A products answer in the documented Advanced Trade shape (``GET /api/v3/brokerage/market/products``)."""
    return json.dumps({"products": [
        {"product_id": "BTC-USD", "price": "65083.66", "base_increment": "0.00000001", "quote_increment": "0.01",
         "quote_min_size": "1", "quote_max_size": "150000000", "base_min_size": "0.00000001",
         "base_max_size": "3400", "base_name": "Bitcoin", "quote_name": "US Dollar", "status": "online",
         "trading_disabled": False, "product_type": "SPOT", "quote_currency_id": "USD",
         "base_currency_id": "BTC", "price_increment": "0.01", "display_name": "BTC-USD",
         "alias": "", "alias_to": ["BTC-USDC"]},
        {"product_id": "ETH-USD", "base_increment": "0.00000001", "quote_increment": "0.01",
         "quote_min_size": "1", "status": "online", "product_type": "SPOT", "quote_currency_id": "USD",
         "base_currency_id": "ETH", "price_increment": "0.01"},
        {"product_id": "BIT-27DEC24-CDE", "base_increment": "1", "quote_increment": "5", "product_type": "FUTURE",
         "price_increment": "5", "base_currency_id": "", "quote_currency_id": "USD"},
    ], "num_products": 3})


def test_exchange_products_give_exact_tick_lot_and_min_notional(shared_data: Path) -> None:
    products = decode_products(rest_body(shared_data / PRODUCTS), Feed.EXCHANGE)

    symbol_map = SymbolMap.from_products(products, "coinbase")

    skl = symbol_map.instrument("SKL/USD")
    assert (skl.venue_symbol, skl.base, skl.quote) == ("SKL-USD", "SKL", "USD")
    assert (skl.tick_size, skl.lot_size, skl.min_notional) == ("0.0001", "0.1", "5.0")
    assert symbol_map.unified("YFI-BTC") == "YFI/BTC"
    assert len(symbol_map) == len(products) == 162


def test_advanced_products_map_spot_only_with_price_increment_as_tick() -> None:
    products = decode_products(advanced_products_body(), Feed.ADVANCED_TRADE)

    symbol_map = SymbolMap.from_products(products, "coinbase")

    btc = symbol_map.instrument("BTC/USD")
    assert (btc.venue_symbol, btc.tick_size, btc.lot_size, btc.min_notional) == (
        "BTC-USD", "0.01", "0.00000001", "1")
    assert len(symbol_map) == 2  # the future is not mapped


def test_unknown_symbol_names_the_likely_fix() -> None:
    symbol_map = SymbolMap.from_products(decode_products(advanced_products_body(), Feed.ADVANCED_TRADE), "cb")

    with pytest.raises(UnknownSymbolError, match=r"did you mean 'BTC/USD'"):
        symbol_map.instrument("BTC-USD")
    with pytest.raises(UnknownSymbolError, match=r"listed with base BTC: 'BTC/USD'"):
        symbol_map.instrument("BTC/EUR")
    with pytest.raises(UnknownSymbolError, match=r"'DOGE/USD' is not listed by the venue$"):
        symbol_map.instrument("DOGE/USD")


def test_unreadable_products_list_raises_a_decode_error() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_products(b'{"error":"NOT_FOUND"}', Feed.ADVANCED_TRADE)


# -- the sync machine -----------------------------------------------------------------------------------


def live_sync(*products: str) -> ConnectionSync:
    sync = ConnectionSync({p: p.replace("-", "/") for p in products})
    sync.connected()
    for product in products:
        assert sync.on_snapshot(product) is not None
    sync.take_outputs()
    return sync


def test_connect_then_snapshot_moves_a_book_to_syncing_then_live() -> None:
    sync = ConnectionSync({"BTC-USD": "BTC/USD"})

    sync.connected()
    symbol = sync.on_snapshot("BTC-USD")

    assert symbol == "BTC/USD"
    assert sync.take_outputs() == [
        HealthChange("BTC/USD", BookHealth.SYNCING, HealthReason.SUBSCRIBED),
        HealthChange("BTC/USD", BookHealth.LIVE, HealthReason.SNAPSHOT),
    ]


def test_one_sequence_shared_by_every_channel_is_not_a_gap() -> None:
    sync = live_sync("BTC-USD", "ETH-USD")

    # l2_data, heartbeats, market_trades, l2_data of the other product...: one counter, +1 per frame.
    results = [sync.check_sequence(n) for n in range(100, 110)]

    assert all(results)
    assert sync.counters.gaps == 0
    assert sync.outputs == []


def test_sequence_jump_resyncs_every_live_book_of_the_connection() -> None:
    sync = live_sync("BTC-USD", "ETH-USD")
    sync.check_sequence(41)

    ok = sync.check_sequence(43)  # 42 (a heartbeat, a trade or a book frame: nobody knows) was lost

    assert not ok
    assert sync.counters.gaps == 1
    assert sync.last_gap == (41, 43)
    detail = "sequence_num 43 after 41"
    assert sync.take_outputs() == [
        HealthChange("BTC/USD", BookHealth.RESYNCING, HealthReason.GAP, detail),
        HealthChange("ETH/USD", BookHealth.RESYNCING, HealthReason.GAP, detail),
        Resubscribe(("BTC-USD", "ETH-USD"), HealthReason.GAP, detail),
    ]
    assert sync.live_symbol("BTC-USD") is None  # updates are dropped until the new snapshot
    assert sync.check_sequence(44)  # the chain goes on from the new number


def test_a_book_already_waiting_for_its_snapshot_is_not_resubscribed_again() -> None:
    sync = live_sync("BTC-USD", "ETH-USD")
    sync.resync(["BTC-USD"], HealthReason.CROSSED, "crossed")
    sync.take_outputs()

    sync.resync(None, HealthReason.GAP, "gap")

    outputs = sync.take_outputs()
    assert Resubscribe(("ETH-USD",), HealthReason.GAP, "gap") in outputs
    assert HealthChange("BTC/USD", BookHealth.RESYNCING, HealthReason.GAP, "gap") in outputs  # still counted


def test_updates_before_the_snapshot_are_dropped_and_counted() -> None:
    sync = ConnectionSync({"BTC-USD": "BTC/USD"})
    sync.connected()

    assert sync.live_symbol("BTC-USD") is None
    assert sync.live_symbol("DOGE-USD") is None
    assert (sync.counters.dropped_while_syncing, sync.counters.unknown_products) == (1, 1)


def test_unsolicited_snapshot_replaces_a_live_book_without_a_health_move() -> None:
    sync = live_sync("BTC-USD")

    assert sync.on_snapshot("BTC-USD") == "BTC/USD"
    assert sync.outputs == []


def test_reconnect_restarts_the_sequence_chain() -> None:
    sync = live_sync("BTC-USD")
    sync.check_sequence(500)

    sync.disconnected(HealthReason.DISCONNECTED, "closed")
    sync.connected()

    assert sync.check_sequence(0)
    assert sync.take_outputs() == [
        HealthChange("BTC/USD", BookHealth.CONNECTING, HealthReason.DISCONNECTED, "closed"),
        HealthChange("BTC/USD", BookHealth.SYNCING, HealthReason.SUBSCRIBED),
    ]


def test_frames_while_disconnected_are_ignored() -> None:
    sync = ConnectionSync({"BTC-USD": "BTC/USD"})

    assert sync.on_snapshot("BTC-USD") is None
    sync.resync(None, HealthReason.GAP)
    assert sync.outputs == []


# -- public trades --------------------------------------------------------------------------------------


def trades_of(*ids: str, product: str = "BTC-USD") -> list[MarketTrade]:
    return [MarketTrade(product_id=product, trade_id=i, price=1.0, size=1.0, side="BUY") for i in ids]


def select(dedup: TradeDedup, trades: list[MarketTrade], *, history: bool) -> list[str]:
    return [t.trade_id for t in dedup.select(trades, lambda t: t.product_id, _key, history=history)]


def _key(trade: MarketTrade) -> int | None:
    return int(trade.trade_id) if trade.trade_id.isdigit() else None


def test_first_trade_snapshot_is_history_and_is_not_published() -> None:
    dedup = TradeDedup()

    assert select(dedup, trades_of("105", "104", "103"), history=True) == []
    assert dedup.last_key("BTC-USD") == 105
    assert select(dedup, trades_of("107", "106", "105"), history=False) == ["106", "107"]
    assert dedup.duplicates == 1


def test_trade_snapshot_after_a_resubscribe_publishes_only_what_was_missed() -> None:
    dedup = TradeDedup()
    select(dedup, trades_of("10"), history=True)
    select(dedup, trades_of("11"), history=False)

    assert select(dedup, trades_of("14", "13", "12", "11", "10"), history=True) == ["12", "13", "14"]


def test_trades_of_several_products_are_kept_apart() -> None:
    dedup = TradeDedup()
    select(dedup, trades_of("50"), history=True)

    batch = trades_of("51") + trades_of("3", product="ETH-USD")

    assert select(dedup, batch, history=False) == ["51", "3"]


def test_trades_without_a_numeric_id_are_published_from_updates_only() -> None:
    dedup = TradeDedup()

    assert select(dedup, trades_of("abc"), history=True) == []
    assert select(dedup, trades_of("abc"), history=False) == ["abc"]


def test_single_trades_are_accepted_once_in_key_order() -> None:
    dedup = TradeDedup()

    assert [dedup.accept("P", k) for k in (5, 6, 6, 4, 7)] == [True, True, False, False, True]


# -- settings --------------------------------------------------------------------------------------------


def test_settings_default_to_the_real_urls_of_the_chosen_feed() -> None:
    advanced = CoinbaseSettings()
    exchange = CoinbaseSettings.model_validate({"feed": "exchange"})
    custom = CoinbaseSettings.model_validate({"feed": "exchange", "ws_url": "ws://127.0.0.1:9"})

    assert (advanced.ws_url, advanced.rest_url) == (ADVANCED_TRADE_WS_URL, ADVANCED_TRADE_REST_URL)
    assert (exchange.ws_url, exchange.rest_url) == (EXCHANGE_WS_URL, EXCHANGE_REST_URL)
    assert (custom.ws_url, custom.rest_url) == ("ws://127.0.0.1:9", EXCHANGE_REST_URL)


def test_settings_reject_unknown_keys_feeds_and_venue_symbols() -> None:
    with pytest.raises(ValidationError, match="ws_urll"):
        CoinbaseSettings.model_validate({"ws_urll": "x"})
    with pytest.raises(ValidationError, match="feed"):
        CoinbaseSettings.model_validate({"feed": "pro"})
    with pytest.raises(ValidationError, match="unified symbol"):
        CoinbaseSettings(symbols=["BTC-USD"])
    with pytest.raises(ValidationError, match="twice"):
        CoinbaseSettings(symbols=["BTC/USD", "BTC/USD"])
    with pytest.raises(ValidationError, match="frozen"):
        CoinbaseSettings().trades = False
