"""Bitfinex's pure layers: frames decoded with JS number text kept, the connection sequence, symbols, and the
book rules one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botframe.book import bitfinex_book_checksum, bitfinex_checksum
from botframe.bus import EventBus
from botframe.events import BookDelta, BookHealth, BookSnapshot, Event, HealthReason, Side
from botframe.testing import RecordingVenueContext
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
    """A BookSync over the engine-like recording context (apply, verify, publish onto a real EventBus).

    ``truth`` is the exchange's book as wire text (per side: price text -> amount text, asks negative): :meth:`cs`
    sends the checksum frame Bitfinex would send for it. ``seen`` is what the bus's book subscribers
    read: each event with the checksum of the engine's book at that moment.
    """

    def __init__(self, *, checksums: bool = True, max_held: int = 500) -> None:
        self.bus = EventBus()
        self.ctx = RecordingVenueContext("bitfinex", bus=self.bus)
        self.book = self.ctx.book(SYMBOL)
        self.sync = BookSync("bitfinex", SYMBOL, self.book, apply=self.ctx.apply, publish=self.ctx.publish,
                             checksums=checksums, max_held=max_held)
        self.sync.subscribed()
        self.truth: tuple[dict[str, str], dict[str, str]] = ({}, {})  # bids, asks
        self.seen: list[tuple[Event, int]] = []
        self.bus.subscribe(BookSnapshot, self._see)
        self.bus.subscribe(BookDelta, self._see)

    @property
    def events(self) -> list[Event]:
        return self.ctx.events

    def _see(self, event: BookSnapshot | BookDelta) -> None:
        self.seen.append((event, bitfinex_book_checksum(self.book, self.sync.text)))

    def snapshot(self, levels: list[tuple[str, int, str]]) -> None:
        self.truth = ({p: a for p, _, a in levels if not a.startswith("-")},
                      {p: a for p, _, a in levels if a.startswith("-")})
        self.sync.on_snapshot(levels, 0)

    def update(self, price: str, count: int, amount: str, seq: int = 0) -> None:
        side = self.truth[1 if amount.startswith("-") else 0]
        if count:
            side[price] = amount
        else:
            side.pop(price, None)
        self.sync.on_update((price, count, amount), seq, 0)

    def true_levels(self) -> list[tuple[str, int, str]]:
        return [(p, 1, a) for side in self.truth for p, a in side.items()]

    def true_checksum(self) -> int:
        bids, asks = self.truth
        return bitfinex_checksum(sorted(bids.items(), key=lambda lv: -float(lv[0])),
                                 sorted(asks.items(), key=lambda lv: float(lv[0])))

    def cs(self, *, corrupt: bool = False) -> None:
        self.sync.on_checksum(self.true_checksum() + (1 if corrupt else 0))

    def healths(self) -> list[tuple[BookHealth, HealthReason]]:
        return [(o.health, o.reason) for o in self.sync.outputs if isinstance(o, HealthChange)]

    def resubscriptions(self) -> int:
        return sum(isinstance(o, Resubscribe) for o in self.sync.outputs)

    def seen_types(self) -> list[type]:
        return [type(e) for e, _ in self.seen]


LEVELS = [("100", 2, "1.5"), ("99.5", 1, "1e-8"), ("100.5", 1, "-6.6e-7"), ("101", 3, "-2")]


def test_snapshot_splits_sides_by_the_sign_and_keeps_ask_sizes_positive() -> None:
    h = Harness()

    h.snapshot(LEVELS)
    h.cs()

    assert h.book.bids() == [(100.0, 1.5), (99.5, 1e-8)]
    assert h.book.asks() == [(100.5, 6.6e-7), (101.0, 2.0)]
    assert h.healths() == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.LIVE, HealthReason.SNAPSHOT)]


def test_with_checksums_a_snapshot_waits_unapplied_and_unseen_for_its_checksum_frame() -> None:
    h = Harness()

    h.snapshot(LEVELS)
    before = (h.book.bid_count, h.seen_types(), h.sync.is_live)
    h.cs()

    assert before == (0, [], False)
    assert h.seen_types() == [BookSnapshot]
    assert h.sync.is_live


def test_snapshot_refuted_by_its_first_checksum_is_never_published_and_never_live() -> None:
    h = Harness()
    h.snapshot(LEVELS)

    h.cs(corrupt=True)

    assert h.seen == []
    assert h.healths() == [(BookHealth.SYNCING, HealthReason.SUBSCRIBED), (BookHealth.SYNCING, HealthReason.CHECKSUM)]
    assert h.resubscriptions() == 1
    assert h.sync.counters.withheld == 1


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
    h.snapshot(LEVELS)
    h.cs()

    h.update("100", 0, "1", seq=5)
    h.update("101", 0, "-1", seq=6)
    h.cs()

    assert h.book.bids() == [(99.5, 1e-8)]
    assert h.book.asks() == [(100.5, 6.6e-7)]
    assert h.sync.text.bids == {99.5: ("99.5", "1e-8")}
    assert h.sync.text.asks == {100.5: ("100.5", "-6.6e-7")}
    assert isinstance(h.events[-1], BookDelta)
    assert h.events[-1].last_seq == 6


def test_updates_are_published_in_order_only_once_their_checksum_frame_matches() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()

    h.update("99", 1, "4", seq=5)
    h.update("100", 2, "2.5", seq=6)
    h.update("101.5", 1, "-1", seq=7)
    held = (h.sync.held, h.seen_types(), h.book.bids())
    h.cs()

    assert held == (3, [BookSnapshot], [(100.0, 1.5), (99.5, 1e-8)])  # nothing applied or seen yet
    assert [e.last_seq for e, _ in h.seen if isinstance(e, BookDelta)] == [5, 6, 7]
    assert all(crc == h.true_checksum() for e, crc in h.seen if isinstance(e, BookDelta))
    assert h.book.bids() == [(100.0, 2.5), (99.5, 1e-8), (99.0, 4.0)]


def test_a_change_its_checksum_frame_refutes_publishes_none_of_its_updates_and_resyncs() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()

    h.update("99", 1, "4", seq=5)
    h.update("100", 2, "2.5", seq=6)
    h.cs(corrupt=True)
    h.update("100", 1, "9", seq=7)

    assert h.seen_types() == [BookSnapshot]
    assert [e.last_seq for e in h.ctx.unpublished() if isinstance(e, BookDelta)] == [5, 6]
    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert h.resubscriptions() == 1
    assert h.sync.counters.dropped_while_syncing == 1
    assert h.sync.counters.withheld == 2


def test_every_book_state_a_subscriber_sees_matches_the_exchange_checksum() -> None:
    h = Harness()
    expected: list[int] = []  # the true book's checksum at each event that should be published
    h.snapshot(LEVELS)
    h.cs()
    expected.append(h.true_checksum())

    for price, count, amount, corrupt in [("99", 1, "4", False), ("100.5", 0, "-1", True), ("98", 1, "1", False)]:
        if corrupt:
            h.update(price, count, amount)
            h.cs(corrupt=True)
            h.snapshot(h.true_levels())  # the resync's
            h.cs()
        else:
            h.update(price, count, amount)
            h.cs()
        expected.append(h.true_checksum())

    assert [crc for _, crc in h.seen] == expected
    assert h.seen_types() == [BookSnapshot, BookDelta, BookSnapshot, BookDelta]


def test_with_checksums_a_momentary_cross_is_judged_at_the_checksum_frame_and_never_shown() -> None:
    h = Harness(checksums=True)
    h.snapshot(LEVELS)
    h.cs()

    h.update("100.5", 1, "0.1", seq=5)  # a bid at the ask's price, before the ask's delete arrives
    crossed_between_frames = h.book.is_crossed()
    h.update("100.5", 0, "-1", seq=6)
    h.cs()

    assert not crossed_between_frames  # the engine's book never held the half-done change
    assert h.sync.is_live
    assert h.sync.counters.crossed == 0
    assert h.ctx.crossed_after_event == 0
    assert h.seen_types() == [BookSnapshot, BookDelta, BookDelta]


def test_a_crossed_book_at_the_checksum_frame_publishes_nothing_and_resyncs() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()

    h.update("100.5", 1, "0.1", seq=5)  # Bitfinex's own book crossed: its checksum matches, the book is wrong
    h.cs()

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CROSSED)
    assert h.seen_types() == [BookSnapshot]
    assert h.ctx.crossed_after_event == 0


def test_without_checksums_an_update_is_published_at_once_and_a_crossed_book_resyncs_unpublished() -> None:
    h = Harness(checksums=False)
    h.snapshot(LEVELS)
    h.update("99", 1, "4", seq=5)
    published_at_once = h.seen_types()

    h.update("100.5", 1, "0.1", seq=6)

    assert published_at_once == [BookSnapshot, BookDelta]
    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CROSSED)
    assert h.seen_types() == [BookSnapshot, BookDelta]
    assert h.ctx.crossed_after_event == 0


def test_more_held_events_than_the_bound_resync_instead_of_growing() -> None:
    h = Harness(max_held=3)
    h.snapshot(LEVELS)
    h.cs()

    for i in range(4):
        h.update(f"9{i}", 1, "1", seq=5 + i)

    assert h.sync.held == 0
    assert h.sync.counters.checksums_missing == 1
    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert [o.counter for o in h.sync.outputs if isinstance(o, HealthChange)][-1] == "checksums_missing"
    assert h.seen_types() == [BookSnapshot]


def test_events_held_over_a_whole_heartbeat_interval_resync_the_book() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()
    h.update("99", 1, "4", seq=5)

    h.sync.on_heartbeat()  # a heartbeat may fall between a change and its cs
    tolerated = h.sync.held
    h.sync.on_heartbeat()

    assert tolerated == 1
    assert h.sync.held == 0
    assert h.sync.counters.checksums_missing == 1
    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.CHECKSUM)
    assert h.seen_types() == [BookSnapshot]


def test_a_checksum_frame_between_two_heartbeats_restarts_the_wait() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()

    h.update("99", 1, "4", seq=5)
    h.sync.on_heartbeat()
    h.cs()
    h.update("98", 1, "1", seq=6)
    h.sync.on_heartbeat()

    assert h.sync.is_live
    assert h.sync.held == 1


def test_checksums_not_confirmed_while_events_are_held_resync_the_book() -> None:
    h = Harness()
    h.snapshot(LEVELS)

    h.sync.expect_checksums(False)

    assert not h.sync.checksums
    assert h.seen == []
    assert h.sync.awaiting_snapshot
    assert h.sync.counters.checksums_missing == 1


def test_level_that_is_not_a_number_raises_for_the_caller_to_count() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()

    with pytest.raises(ValueError, match="could not convert"):
        h.sync.on_update(("abc", 1, "1"), 5, 0)
    h.sync.invalidate(HealthReason.PARSE_ERROR, "bad level")

    assert h.healths()[-1] == (BookHealth.RESYNCING, HealthReason.PARSE_ERROR)


def test_disconnect_drops_what_was_held_unpublished() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()
    h.update("99", 1, "4", seq=5)

    h.sync.disconnected()
    h.cs()

    assert h.sync.held == 0
    assert h.sync.counters.withheld == 1
    assert h.seen_types() == [BookSnapshot]


def test_a_second_gap_while_resyncing_is_reported_again_for_the_counters() -> None:
    h = Harness()
    h.snapshot(LEVELS)
    h.cs()

    h.sync.invalidate(HealthReason.GAP, "seq 9 where 8 was due")
    h.sync.invalidate(HealthReason.GAP, "seq 12 where 11 was due")

    # The second is no transition (the book is already RESYNCING) but L2Book.set_health counts its reason.
    assert h.healths()[2:] == [(BookHealth.RESYNCING, HealthReason.GAP), (BookHealth.RESYNCING, HealthReason.GAP)]
