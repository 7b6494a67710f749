"""Exchange checksums, proven on real frames: Kraken v1 (4269 updates, 4 state vectors), OKX (290 frames).

Each capture is replayed through ``WireText`` -> ``BookSnapshot``/``BookDelta`` -> ``L2Book`` exactly as a
venue adapter does, and the checksum of the resulting book is compared with the one the exchange sent.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from botframe.book import (
    L2Book,
    WireText,
    bitfinex_book_checksum,
    bitfinex_checksum,
    kraken_book_checksum,
    kraken_book_checksum_from_precision,
    kraken_checksum,
    okx_book_checksum,
    okx_book_checksum_ok,
    okx_checksum,
)
from botframe.events import BookDelta, BookSnapshot

KRAKEN_BOOK = "kraken/KRAKEN.ws.50.0.book_v1.txt"
KRAKEN_VECTORS = "kraken/v1_checksum_state_vectors.json"
OKX_CAPTURE = "okx/OKX.ws.1.0.books_trades_tickers.txt"


def received_payloads(path: Path) -> list[str]:
    """Payloads of the frames the exchange sent, in order (capture format in data/README.md)."""
    out = []
    for line in path.read_text().splitlines():
        if not line or line.startswith(("wss://", "https://", "http://")):
            continue
        _, _, payload = line.partition(": ")
        out.append(payload)
    return out


def decimals(text: str) -> int:
    """Digits after the point of a number's text (``"56218.30000"`` -> 5)."""
    return len(text.partition(".")[2])


class KrakenReplay:
    """Kraken v1 ``book-1000`` frames applied the way the venue documents, checksum checked per update."""

    def __init__(self, depth: int = 1000) -> None:
        self.depth = depth
        self.books: dict[str, L2Book] = {}
        self.texts: dict[str, WireText] = {}
        self.checked = 0
        self.matched = 0
        self.matched_by_precision = 0
        self.mismatches: list[tuple[str, int, int]] = []
        self.precisions: dict[str, tuple[int, int]] = {}

    def feed(self, payload: str) -> None:
        msg = json.loads(payload)
        if not isinstance(msg, list) or not str(msg[-2]).startswith("book"):
            return
        pair = msg[-1]
        parts: list[dict[str, Any]] = msg[1:-2]
        if "as" in parts[0] or "bs" in parts[0]:
            text = self.texts[pair] = WireText()
            book = self.books[pair] = L2Book("kraken", pair, depth_limit=self.depth)
            bids, asks = text.apply_snapshot_text(
                [(lv[0], lv[1]) for lv in parts[0].get("bs", [])],
                [(lv[0], lv[1]) for lv in parts[0].get("as", [])],
            )
            book.apply_snapshot(BookSnapshot(venue="kraken", symbol=pair, bids=bids, asks=asks))
            # The v1 feed pads every price of a pair to one width: that is the precision v2 would announce.
            first = (parts[0].get("as") or parts[0]["bs"])[0]
            self.precisions[pair] = (decimals(first[0]), decimals(first[1]))
            return
        book = self.books[pair]
        text = self.texts[pair]
        raw_bids = [(lv[0], lv[1]) for part in parts for lv in part.get("b", [])]
        raw_asks = [(lv[0], lv[1]) for part in parts for lv in part.get("a", [])]
        bids, asks = text.apply_delta_text(raw_bids, raw_asks)
        book.apply_delta(BookDelta(venue="kraken", symbol=pair, bids=bids, asks=asks))
        expected = int(parts[-1]["c"])
        got = kraken_book_checksum(book, text)
        self.checked += 1
        if got == expected:
            self.matched += 1
        else:
            self.mismatches.append((pair, expected, got))
        price_decimals, qty_decimals = self.precisions[pair]
        if kraken_book_checksum_from_precision(book, price_decimals, qty_decimals) == expected:
            self.matched_by_precision += 1


def test_kraken_v1_capture_reproduces_all_4269_update_checksums_from_wire_text(shared_data: Path) -> None:
    replay = KrakenReplay()

    for payload in received_payloads(shared_data / KRAKEN_BOOK):
        replay.feed(payload)

    assert replay.mismatches == []
    assert replay.checked == 4269
    assert replay.matched == 4269


def test_kraken_v1_capture_reproduces_all_checksums_from_float_book_and_precision(shared_data: Path) -> None:
    # Kraken v2's method: no text kept, floats formatted with the instrument's precision.
    replay = KrakenReplay()

    for payload in received_payloads(shared_data / KRAKEN_BOOK):
        replay.feed(payload)

    assert replay.matched_by_precision == 4269


def test_kraken_state_vectors_match_including_tiny_qty(shared_data: Path) -> None:
    vectors = json.loads((shared_data / KRAKEN_VECTORS).read_text())

    got = [kraken_checksum([tuple(a) for a in v["asks"]], [tuple(b) for b in v["bids"]]) for v in vectors]

    assert len(vectors) == 4
    assert got == [v["expected"] for v in vectors]


def test_kraken_state_vectors_match_through_the_book_and_precision_formatting(shared_data: Path) -> None:
    vectors = json.loads((shared_data / KRAKEN_VECTORS).read_text())
    for v in vectors:
        text = WireText()
        book = L2Book("kraken", "X/Y")
        bids, asks = text.apply_snapshot_text([tuple(b) for b in v["bids"]], [tuple(a) for a in v["asks"]])
        book.apply_snapshot(BookSnapshot(venue="kraken", symbol="X/Y", bids=bids, asks=asks))
        price_decimals = len(v["asks"][0][0].split(".")[1])

        assert kraken_book_checksum(book, text) == v["expected"]
        assert kraken_book_checksum_from_precision(book, price_decimals, 8) == v["expected"]


def test_scientific_notation_size_differs_from_wire_text_and_only_wire_text_matches() -> None:
    # 0.00000048 as a float renders as 4.8e-07: hashing str(float) would break the checksum.
    asks = [("0.05005", "0.00000500")]
    bids_wire = [("0.05000", "0.00000048")]
    bids_float_text = [("0.05000", str(float("0.00000048")))]

    assert str(float("0.00000048")) == "4.8e-07"
    assert kraken_checksum(asks, bids_wire) != kraken_checksum(asks, bids_float_text)
    assert kraken_checksum(asks, bids_wire) == zlib.crc32(b"50055005000" + b"48") & 0xFFFFFFFF


def test_kraken_checksum_docs_example() -> None:
    asks = [(f"0.050{i:02d}", "0.00000500") for i in range(5, 55, 5)]
    bids = [
        (p, "0.00000500")
        for p in ["0.05000", "0.04995", "0.04990", "0.04980", "0.04975", "0.04970", "0.04965", "0.04960",
                  "0.04955", "0.04950"]
    ]

    assert kraken_checksum(asks, bids) == 974947235


class OkxReplay:
    """OKX v5 ``books`` frames; every snapshot and update checksum is compared (0 would mean absent)."""

    def __init__(self) -> None:
        self.books: dict[str, L2Book] = {}
        self.texts: dict[str, WireText] = {}
        self.checked = 0
        self.mismatches: list[tuple[str, int, int]] = []

    def feed(self, payload: str) -> None:
        msg = json.loads(payload)
        if not isinstance(msg, dict) or msg.get("arg", {}).get("channel") != "books" or "data" not in msg:
            return
        inst = msg["arg"]["instId"]
        for data in msg["data"]:
            raw_bids = [(lv[0], lv[1]) for lv in data["bids"]]
            raw_asks = [(lv[0], lv[1]) for lv in data["asks"]]
            if msg["action"] == "snapshot":
                text = self.texts[inst] = WireText()
                book = self.books[inst] = L2Book("okx", inst)
                bids, asks = text.apply_snapshot_text(raw_bids, raw_asks)
                book.apply_snapshot(BookSnapshot(venue="okx", symbol=inst, bids=bids, asks=asks))
            else:
                text = self.texts[inst]
                book = self.books[inst]
                bids, asks = text.apply_delta_text(raw_bids, raw_asks)
                book.apply_delta(BookDelta(venue="okx", symbol=inst, bids=bids, asks=asks))
            expected = data["checksum"]
            if expected == 0:
                continue
            self.checked += 1
            got = okx_book_checksum(book, text)
            if got != expected:
                self.mismatches.append((inst, expected, got))


def test_okx_capture_reproduces_all_290_checksums(shared_data: Path) -> None:
    replay = OkxReplay()

    for payload in received_payloads(shared_data / OKX_CAPTURE):
        replay.feed(payload)

    assert replay.mismatches == []
    assert replay.checked == 290
    assert not any(book.is_crossed() for book in replay.books.values())


def test_okx_checksum_small_vector_interleaves_and_continues_longer_side() -> None:
    bids = [("3366.1", "7")]
    asks = [("3366.8", "9"), ("3368", "8"), ("3372", "8")]

    assert okx_checksum(bids, asks) == 831078360


def test_okx_checksum_is_signed_int32() -> None:
    bids = [("1", "1")]
    asks: list[tuple[str, str]] = []
    crc = zlib.crc32(b"1:1")

    assert okx_checksum(bids, asks) == (crc - 2**32 if crc >= 2**31 else crc)
    assert -(2**31) <= okx_checksum([("30238.8", "2")], [("30249.5", "50")]) < 2**31


def test_bitfinex_checksum_interleaves_price_and_amount_with_negative_ask_amounts() -> None:
    # The Bitfinex capture has no checksum frames; this pins the documented layout on a hand-made book.
    bids = [("0.0010262", "8"), ("0.001026", "9.81159001")]
    asks = [("0.0010274", "-1e-8")]
    raw = b"0.0010262:8:0.0010274:-1e-8:0.001026:9.81159001"
    crc = zlib.crc32(raw)

    assert bitfinex_checksum(bids, asks) == (crc - 2**32 if crc >= 2**31 else crc)


def test_bitfinex_book_checksum_reads_the_text_store_written_by_the_adapter() -> None:
    # Bitfinex signals the side by the amount's sign, so its adapter writes the text store directly.
    book = L2Book("bitfinex", "IOT/ETH")
    text = WireText()
    book.apply_snapshot(
        BookSnapshot(venue="bitfinex", symbol="IOT/ETH", bids=[(0.0010262, 8.0)], asks=[(0.0010274, 1e-8)])
    )
    text.bids[0.0010262] = ("0.0010262", "8")
    text.asks[0.0010274] = ("0.0010274", "-1e-8")

    assert bitfinex_book_checksum(book, text) == bitfinex_checksum(
        [("0.0010262", "8")], [("0.0010274", "-1e-8")]
    )


@pytest.mark.parametrize("size_text", ["0", "0.00000000", "0.0"])
def test_wire_text_forgets_a_level_on_any_spelling_of_zero(size_text: str) -> None:
    text = WireText()
    text.apply_snapshot_text([("1.5", "2.0")], [])

    bids, _ = text.apply_delta_text([("1.50", size_text)], [])

    assert bids == [(1.5, 0.0)]
    assert text.bids == {}


def test_okx_checksum_zero_means_absent_not_mismatch() -> None:
    text = WireText()
    book = L2Book("okx", "BTC-USDT")
    bids, asks = text.apply_snapshot_text([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")])
    book.apply_snapshot(BookSnapshot(venue="okx", symbol="BTC-USDT", bids=bids, asks=asks))

    assert okx_book_checksum_ok(book, text, 0) is None
    assert okx_book_checksum_ok(book, text, 831078360) is True
    assert okx_book_checksum_ok(book, text, 831078361) is False


def test_reencoded_scientific_size_fails_the_text_path_and_passes_the_precision_path(shared_data: Path) -> None:
    # The state vector whose best bid has qty 0.00000048, as another JSON library would re-encode it.
    vector = next(v for v in json.loads((shared_data / KRAKEN_VECTORS).read_text()) if v["bids"][0][1] == "0.00000048")
    bids_text = [("0.000017670", "4.8E-7"), *[tuple(b) for b in vector["bids"][1:]]]
    text = WireText()
    book = L2Book("kraken", "X/Y")
    bids, asks = text.apply_snapshot_text(bids_text, [tuple(a) for a in vector["asks"]])
    book.apply_snapshot(BookSnapshot(venue="kraken", symbol="X/Y", bids=bids, asks=asks))

    assert book.best_bid() == (0.00001767, 4.8e-7)
    assert kraken_book_checksum(book, text) != vector["expected"]
    assert kraken_book_checksum_from_precision(book, 9, 8) == vector["expected"]
