"""Replays of real captures through the book: no spurious gap, no crossed book, checksums matched.

Each test parses its capture plainly (format in data/README.md), applies the venue's documented book rules
(SPECS.md) the way an adapter will, drives the book's health through CONNECTING -> SYNCING -> LIVE, and
asserts the book never had to resync. These are book-level proofs; venue adapters get their own
stream-client replays.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from botframe.book import L2Book, WireText, kraken_book_checksum, okx_book_checksum
from botframe.events import BookDelta, BookHealth, BookSnapshot, HealthReason
from botframe.signals import (
    Depth,
    Imbalance,
    Microprice,
    OrderFlowImbalance,
    SignalSet,
    SignalSpec,
    Spread,
    WeightedImbalance,
)

SPECS: list[SignalSpec] = [
    Imbalance(levels=5),
    WeightedImbalance(levels=10, decay=0.5),
    WeightedImbalance(levels=10, decay=0.9, mode="bps"),
    Microprice(),
    Spread(),
    Depth(band_bps=25.0),
    OrderFlowImbalance(window_events=50),
]


def frames(path: Path) -> list[tuple[float, str]]:
    """(receive time, payload) of every frame the exchange sent."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith(("wss://", "https://", "http://")):
            continue
        ts, _, payload = line.partition(": ")
        out.append((float(ts), payload))
    return out


def rest_responses(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(url, body) of every REST response in a capture."""
    out = []
    for line in path.read_text().splitlines():
        if " -> " not in line:
            continue
        url, _, rest = line.partition(" -> ")
        out.append((url, json.loads(rest.partition(": ")[2])))
    return out


def floats(levels: list[list[str]]) -> list[tuple[float, float]]:
    return [(float(lv[0]), float(lv[1])) for lv in levels]


class Tracked:
    """One book, its signals, and health driven the way an adapter drives it."""

    def __init__(self, venue: str, symbol: str, depth_limit: int | None = None) -> None:
        self.book = L2Book(venue, symbol, depth_limit=depth_limit)
        self.signals = SignalSet(self.book, SPECS)
        self.crossed_after: list[int] = []
        self.updates = 0
        self.book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, 1)

    def snapshot(self, bids: list[tuple[float, float]], asks: list[tuple[float, float]], seq: int = 0) -> None:
        snap = BookSnapshot(venue=self.book.venue, symbol=self.book.symbol, bids=bids, asks=asks, sequence=seq)
        self.book.apply_snapshot(snap)
        self.signals.on_snapshot(snap)
        self.book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, 2)

    def delta(self, delta: BookDelta) -> None:
        self.book.apply_delta(delta)
        self.signals.on_delta(delta)
        self.updates += 1
        if self.book.is_crossed():
            self.crossed_after.append(self.updates)
            self.book.set_health(BookHealth.RESYNCING, HealthReason.CROSSED, 3)

    def gap(self, detail: str) -> None:
        self.book.set_health(BookHealth.RESYNCING, HealthReason.GAP, 3, detail)

    def assert_clean(self) -> None:
        assert self.crossed_after == [], f"{self.book.symbol} crossed after updates {self.crossed_after[:5]}"
        assert self.book.health is BookHealth.LIVE
        assert self.book.counters.gaps == 0
        assert self.book.counters.resyncs == 0
        assert self.book.bid_count > 0
        assert self.book.ask_count > 0
        values = self.signals.values()
        # A two-sided book defines every signal; a band ratio may still be None on a wide, thin book.
        assert all(values[s.name] is not None for s in SPECS if not isinstance(s, Depth)), values


# ---------------------------------------------------------------------------------------------- Kraken


def test_kraken_v1_replay_ends_live_uncrossed_with_every_checksum_matched(shared_data: Path) -> None:
    books: dict[str, Tracked] = {}
    texts: dict[str, WireText] = {}
    matched = 0

    for _, payload in frames(shared_data / "kraken/KRAKEN.ws.50.0.book_v1.txt"):
        msg = json.loads(payload)
        if not isinstance(msg, list) or not str(msg[-2]).startswith("book"):
            continue
        pair = msg[-1]
        parts: list[dict[str, Any]] = msg[1:-2]
        if "as" in parts[0]:
            books[pair] = Tracked("kraken", pair, depth_limit=1000)
            texts[pair] = WireText()
            bids, asks = texts[pair].apply_snapshot_text(
                [(lv[0], lv[1]) for lv in parts[0]["bs"]], [(lv[0], lv[1]) for lv in parts[0]["as"]]
            )
            books[pair].snapshot(bids, asks)
            continue
        bids, asks = texts[pair].apply_delta_text(
            [(lv[0], lv[1]) for p in parts for lv in p.get("b", [])],
            [(lv[0], lv[1]) for p in parts for lv in p.get("a", [])],
        )
        books[pair].delta(BookDelta(venue="kraken", symbol=pair, bids=bids, asks=asks))
        if kraken_book_checksum(books[pair].book, texts[pair]) == int(parts[-1]["c"]):
            matched += 1
        else:
            books[pair].book.set_health(BookHealth.RESYNCING, HealthReason.CHECKSUM, 3)

    assert matched == 4269
    assert len(books) == 10
    for tracked in books.values():
        tracked.assert_clean()
        assert tracked.book.counters.checksum_failures == 0


def test_kraken_republish_flag_is_an_ordinary_upsert() -> None:
    # A level with a 4th element "r" re-sends a level to refill the depth; it is applied like any other.
    frame = '[1664,{"a":[["13.284500","1396.00000000","1618678133.383209","r"]],"c":"0"},"book-10","WAVES/EUR"]'
    msg = json.loads(frame)
    text = WireText()
    book = L2Book("kraken", "WAVES/EUR", depth_limit=10)
    book.apply_snapshot(BookSnapshot(venue="kraken", symbol="WAVES/EUR", bids=[(13.0, 1.0)], asks=[]))

    _, asks = text.apply_delta_text([], [(lv[0], lv[1]) for lv in msg[1]["a"]])
    book.apply_delta(BookDelta(venue="kraken", symbol="WAVES/EUR", bids=[], asks=asks))

    assert book.asks() == [(13.2845, 1396.0)]
    assert text.asks[13.2845] == ("13.284500", "1396.00000000")


# ---------------------------------------------------------------------------------------------- OKX


def test_okx_replay_ends_live_uncrossed_with_all_290_checksums_matched(shared_data: Path) -> None:
    books: dict[str, Tracked] = {}
    texts: dict[str, WireText] = {}
    matched = 0

    for _, payload in frames(shared_data / "okx/OKX.ws.1.0.books_trades_tickers.txt"):
        msg = json.loads(payload)
        if msg.get("arg", {}).get("channel") != "books" or "data" not in msg:
            continue
        inst = msg["arg"]["instId"]
        for data in msg["data"]:
            raw_bids = [(lv[0], lv[1]) for lv in data["bids"]]
            raw_asks = [(lv[0], lv[1]) for lv in data["asks"]]
            if msg["action"] == "snapshot":
                books[inst] = Tracked("okx", inst)
                texts[inst] = WireText()
                books[inst].snapshot(*texts[inst].apply_snapshot_text(raw_bids, raw_asks))
            else:
                bids, asks = texts[inst].apply_delta_text(raw_bids, raw_asks)
                books[inst].delta(BookDelta(venue="okx", symbol=inst, bids=bids, asks=asks))
            if okx_book_checksum(books[inst].book, texts[inst]) == data["checksum"]:
                matched += 1

    assert matched == 290
    for tracked in books.values():
        tracked.assert_clean()


# ---------------------------------------------------------------------------------------------- Binance


def _binance_replay(shared_data: Path, name: str, futures: bool) -> dict[str, Tracked]:
    """The documented buffer -> snapshot -> drop -> bridge procedure (SPECS.md section 5)."""
    snapshots: dict[str, dict[str, Any]] = {}
    for url, body in rest_responses(shared_data / f"binance/{name}.http.0.0.rest_depth_snapshots.txt"):
        match = re.search(r"symbol=([A-Z0-9_]+)", url)
        assert match is not None
        snapshots[match.group(1)] = body
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for _, payload in frames(shared_data / f"binance/{name}.ws.1.0.txt"):
        msg = json.loads(payload)
        data = msg.get("data", {})
        if data.get("e") == "depthUpdate":
            events[data["s"]].append(data)
    books = {}
    for symbol, evs in events.items():
        snap = snapshots[symbol]
        lid = snap["lastUpdateId"]
        tracked = books[symbol] = Tracked("binance", symbol)
        tracked.snapshot(floats(snap["bids"]), floats(snap["asks"]), lid)
        prev_u: int | None = None
        for ev in evs:
            if (ev["u"] < lid) if futures else (ev["u"] <= lid):
                continue
            if prev_u is None:
                bridged = (ev["U"] <= lid <= ev["u"]) if futures else (ev["U"] <= lid + 1 <= ev["u"])
                if not bridged:
                    tracked.gap(f"first event {ev['U']}..{ev['u']} does not bridge {lid}")
            elif (ev["pu"] != prev_u) if futures else (ev["U"] != prev_u + 1):
                tracked.gap(f"{prev_u} -> {ev['U']}")
            tracked.delta(
                BookDelta(venue="binance", symbol=symbol, bids=floats(ev["b"]), asks=floats(ev["a"]),
                          first_seq=ev["U"], last_seq=ev["u"], prev_seq=ev.get("pu", ev["U"] - 1),
                          exchange_ts_ns=ev["E"] * 1_000_000)
            )
            prev_u = ev["u"]
        assert tracked.book.last_seq == prev_u
    return books


@pytest.mark.parametrize(
    ("name", "futures", "symbols"),
    [("BINANCE", False, 4), ("BINANCE_US", False, 4), ("BINANCE_FUTURES", True, 4), ("BINANCE_DELIVERY", True, 10)],
)
def test_binance_replay_bridges_snapshot_with_no_gap_and_no_crossed_book(
    shared_data: Path, name: str, futures: bool, symbols: int
) -> None:
    books = _binance_replay(shared_data, name, futures)

    assert len(books) == symbols
    for tracked in books.values():
        assert tracked.updates > 0
        tracked.assert_clean()


# ---------------------------------------------------------------------------------------------- Bitfinex


def test_bitfinex_replay_keeps_seq_all_contiguous_and_books_uncrossed(shared_data: Path) -> None:
    channels: dict[int, tuple[str, str]] = {}
    books: dict[str, Tracked] = {}
    last_seq = 0
    seq_gaps = 0

    for _, payload in frames(shared_data / "bitfinex/BITFINEX.ws.11.0.txt"):
        msg = json.loads(payload)
        if isinstance(msg, dict):
            if msg.get("event") == "subscribed":
                channels[msg["chanId"]] = (msg["channel"], msg["symbol"])
            continue
        seq = msg[-1]
        if seq != last_seq + 1:
            seq_gaps += 1
        last_seq = seq
        if msg[1] == "hb":  # heartbeats may even precede their channel's "subscribed" ack
            continue
        channel, symbol = channels[msg[0]]
        if channel != "book":
            continue
        body = msg[1]
        if body and isinstance(body[0], list):  # snapshot: [[price, count, amount], ...]
            bids = [(p, a) for p, _, a in body if a > 0]
            asks = [(p, -a) for p, _, a in body if a < 0]
            books[symbol] = Tracked("bitfinex", symbol)
            books[symbol].snapshot(bids, asks)
            continue
        price, count, amount = body
        if count > 0:
            level = [(price, abs(amount))]
            is_bid = amount > 0
        else:  # count 0 deletes: amount 1 from bids, -1 from asks
            level = [(price, 0.0)]
            is_bid = amount == 1
        books[symbol].delta(
            BookDelta(venue="bitfinex", symbol=symbol, bids=level if is_bid else [], asks=[] if is_bid else level,
                      last_seq=seq)
        )

    assert seq_gaps == 0
    assert last_seq == 1670  # 1 .. 1670: 1669 contiguous steps (SPECS.md)
    assert len(books) == 7
    assert sum(t.updates for t in books.values()) == 1593
    for tracked in books.values():
        tracked.assert_clean()


# ---------------------------------------------------------------------------------------------- Coinbase


def test_coinbase_legacy_level2_replay_never_crosses(shared_data: Path) -> None:
    books: dict[str, Tracked] = {}

    for _, payload in frames(shared_data / "coinbase/COINBASE.ws.28.0.legacy_2021.txt"):
        msg = json.loads(payload)
        kind = msg.get("type")
        if kind == "snapshot":
            product = msg["product_id"]
            books[product] = Tracked("coinbase", product)
            books[product].snapshot(floats(msg["bids"]), floats(msg["asks"]))
        elif kind == "l2update":
            product = msg["product_id"]
            bids = [(float(p), float(s)) for side, p, s in msg["changes"] if side == "buy"]
            asks = [(float(p), float(s)) for side, p, s in msg["changes"] if side == "sell"]
            books[product].delta(BookDelta(venue="coinbase", symbol=product, bids=bids, asks=asks))

    assert len(books) == 10
    assert sum(t.updates for t in books.values()) == 9719
    for tracked in books.values():
        tracked.assert_clean()
