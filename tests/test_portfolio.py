"""Positions, FIFO PnL, fees and the cash ledger, exact to the last digit."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botframe.events import Fill, Side
from botframe.portfolio import Portfolio, split_symbol
from botframe.venues import Instrument

D = Decimal
V = "sim"
BTC = "BTC/USDT"


def fill(side: Side, qty: str | Decimal, price: str | Decimal, fee: str | Decimal = "0", *,
         symbol: str = BTC, venue: str = V, fill_id: str = "", coid: str = "o1") -> Fill:
    return Fill(client_order_id=coid, venue=venue, symbol=symbol, side=side, price=D(price), quantity=D(qty),
                fee=D(fee), liquidity="taker", fill_id=fill_id)


def identity_holds(p: Portfolio, currency: str) -> bool:
    """cash + sum(position x mark) == start + realized + unrealized - fees, exactly."""
    held = sum((pos.market_value for pos in p.positions() if pos.quote == currency), D(0))
    left = p.cash(currency) + held
    right = (p.starting_cash(currency) + p.realized_pnl(currency) + p.unrealized_pnl(currency)
             - p.fees(currency))
    return left == right


def test_symbol_splits_into_base_and_quote() -> None:
    assert split_symbol("BTC/USDT") == ("BTC", "USDT")
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")
    assert split_symbol("XBTUSD") == ("XBTUSD", "")


def test_buy_opens_a_long_and_spends_quote_cash_and_fee() -> None:
    p = Portfolio(starting_cash={"USDT": D("10000")})

    p.on_fill(fill(Side.BUY, "0.5", "100", "0.05"))

    assert p.position(V, BTC) == D("0.5")
    assert p.avg_entry_price(V, BTC) == D("100")
    assert p.cash("USDT") == D("9949.95")
    assert p.fees("USDT") == D("0.05")
    assert p.realized_pnl("USDT") == 0


def test_partial_close_of_a_long_realizes_pnl_on_the_closed_part() -> None:
    p = Portfolio(starting_cash={"USDT": D("10000")})
    p.on_fill(fill(Side.BUY, "2", "100"))

    p.on_fill(fill(Side.SELL, "0.5", "110"))

    assert p.position(V, BTC) == D("1.5")
    assert p.realized_pnl("USDT") == D("5")
    assert p.avg_entry_price(V, BTC) == D("100")


def test_short_is_negative_and_covering_lower_realizes_a_profit() -> None:
    p = Portfolio(starting_cash={"USDT": D("1000")})
    p.on_fill(fill(Side.SELL, "1", "100"))

    assert p.position(V, BTC) == D("-1")
    assert p.cash("USDT") == D("1100")

    p.on_fill(fill(Side.BUY, "1", "90"))

    assert p.position(V, BTC) == 0
    assert p.realized_pnl("USDT") == D("10")
    assert p.cash("USDT") == D("1010")


def test_flip_closes_the_long_and_opens_a_short_at_the_fill_price() -> None:
    p = Portfolio(starting_cash={"USDT": D("1000")})
    p.on_fill(fill(Side.BUY, "1", "100"))

    p.on_fill(fill(Side.SELL, "3", "110"))

    assert p.position(V, BTC) == D("-2")
    assert p.realized_pnl("USDT") == D("10")
    assert p.avg_entry_price(V, BTC) == D("110")
    assert p.unrealized_pnl("USDT") == 0


def test_closing_uses_the_oldest_lots_first() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100"))
    p.on_fill(fill(Side.BUY, "1", "110"))

    p.on_fill(fill(Side.SELL, "1", "120"))

    assert p.realized_pnl("USDT") == D("20")
    assert p.avg_entry_price(V, BTC) == D("110")


def test_average_entry_is_the_weighted_cost_of_open_lots() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100"))
    p.on_fill(fill(Side.BUY, "3", "104"))

    assert p.avg_entry_price(V, BTC) == D("103")


def test_unrealized_pnl_follows_the_mark() -> None:
    p = Portfolio(starting_cash={"USDT": D("10000")})
    p.on_fill(fill(Side.BUY, "2", "100"))

    p.mark(V, BTC, 105.5)

    assert p.unrealized_pnl("USDT") == D("11.0")
    assert p.equity("USDT") == D("10011.0")
    assert p.pnl(V, BTC).unrealized == D("11.0")


def test_short_unrealized_pnl_gains_when_price_falls() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.SELL, "2", "100"))

    p.mark(V, BTC, "95")

    assert p.unrealized_pnl("USDT") == D("10")


def test_position_is_marked_at_its_last_fill_until_a_market_mark_arrives() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100"))
    p.on_fill(fill(Side.BUY, "1", "102"))

    assert p.mark_price(V, BTC) == D("102")
    assert p.unrealized_pnl("USDT") == D("2")

    p.mark(V, BTC, 101.0)
    p.on_fill(fill(Side.BUY, "1", "99"))

    assert p.mark_price(V, BTC) == D("101.0")


def test_float_mark_is_converted_without_binary_noise() -> None:
    inst = Instrument(V, BTC, "BTCUSDT", "BTC", "USDT", tick_size="0.01", lot_size="0.001")
    p = Portfolio(instruments=lambda venue, symbol: inst)
    p.on_fill(fill(Side.BUY, "1", "0.3"))

    p.mark(V, BTC, 0.1 + 0.2)  # 0.30000000000000004 in binary

    assert p.mark_price(V, BTC) == D("0.3000")
    assert p.unrealized_pnl("USDT") == 0


def test_half_tick_mid_mark_stays_exact() -> None:
    inst = Instrument(V, BTC, "BTCUSDT", "BTC", "USDT", tick_size="0.1", lot_size="0.001")
    p = Portfolio(instruments=lambda venue, symbol: inst)
    p.on_fill(fill(Side.BUY, "1", "100.0"))

    p.mark(V, BTC, (100.0 + 100.1) / 2)

    assert p.mark_price(V, BTC) == D("100.05")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0, "abc"])
def test_bad_mark_is_refused_and_counted(bad: float | str) -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100"))

    p.mark(V, BTC, bad)

    assert p.mark_price(V, BTC) == D("100")
    assert p.problems == {"bad_mark": 1}


def test_mark_for_a_symbol_never_traded_is_ignored() -> None:
    p = Portfolio()

    p.mark(V, BTC, 100.0)

    assert p.positions() == []


def test_maker_rebate_is_a_negative_fee_that_adds_cash() -> None:
    p = Portfolio(starting_cash={"USDT": D("100")})

    p.on_fill(fill(Side.BUY, "0.1", "100", "-0.002"))

    assert p.fees("USDT") == D("-0.002")
    assert p.cash("USDT") == D("90.002")


@pytest.mark.parametrize(("qty", "price", "fee"), [("0", "100", "0"), ("-1", "100", "0"), ("1", "0", "0"),
                                                   ("NaN", "100", "0"), ("1", "Infinity", "0"),
                                                   ("1", "100", "NaN")])
def test_malformed_fill_is_refused_and_counted(qty: str, price: str, fee: str) -> None:
    p = Portfolio(starting_cash={"USDT": D("100")})

    assert p.on_fill(fill(Side.BUY, qty, price, fee)) is None

    assert p.problems == {"malformed_fill": 1}
    assert p.cash("USDT") == D("100")


def test_duplicate_fill_id_is_booked_once() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100", fill_id="t1"))

    p.on_fill(fill(Side.BUY, "1", "100", fill_id="t1"))

    assert p.position(V, BTC) == 1
    assert p.problems == {"duplicate_fill": 1}


def test_each_quote_currency_has_its_own_ledger() -> None:
    p = Portfolio(starting_cash={"USDT": D("1000"), "BTC": D("1")})
    p.on_fill(fill(Side.BUY, "1", "100", symbol="BTC/USDT"))
    p.on_fill(fill(Side.BUY, "10", "0.05", symbol="ETH/BTC"))

    assert p.cash("USDT") == D("900")
    assert p.cash("BTC") == D("0.50")
    assert p.currencies() == ["BTC", "USDT"]
    assert identity_holds(p, "USDT")
    assert identity_holds(p, "BTC")


def test_instrument_base_and_quote_win_over_the_symbol_text() -> None:
    inst = Instrument(V, "XBTUSD", "XBTUSD", "BTC", "USD", tick_size="0.5", lot_size="1")
    p = Portfolio(instruments=lambda venue, symbol: inst)

    pos = p.on_fill(fill(Side.BUY, "1", "100", symbol="XBTUSD"))

    assert pos is not None
    assert (pos.base, pos.quote) == ("BTC", "USD")
    assert p.cash("USD") == D("-100")


def test_pnl_by_venue_and_symbol_and_in_total() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100", "1"))
    p.on_fill(fill(Side.SELL, "1", "110", "1"))
    p.on_fill(fill(Side.BUY, "1", "50", "0.5", symbol="ETH/USDT"))
    p.mark(V, "ETH/USDT", 55.0)

    btc = p.pnl(V, BTC)
    total = p.pnl()

    assert (btc.realized, btc.unrealized, btc.fees, btc.net) == (D(10), D(0), D(2), D(8))
    assert (total.realized, total.unrealized, total.fees) == (D(10), D("5.0"), D("2.5"))
    assert p.currency_pnl("USDT") == total
    assert p.net_pnl("USDT") == D("12.5")


def test_peak_and_drawdown_track_the_best_pnl_seen() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100"))
    p.mark(V, BTC, 120.0)
    p.mark(V, BTC, 90.0)

    assert p.peak_pnl("USDT") == D("20.0")
    assert p.drawdown("USDT") == D("30.0")


def test_gross_exposure_adds_absolute_marked_positions() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100"))
    p.on_fill(fill(Side.SELL, "2", "50", symbol="ETH/USDT"))

    assert p.gross_exposure("USDT") == D("200")


def test_summary_has_one_row_per_position_and_one_total_per_currency() -> None:
    p = Portfolio(starting_cash={"USDT": D("1000")})
    p.on_fill(fill(Side.BUY, "1", "100", "0.1"))
    p.mark(V, BTC, 101.0)

    rows = p.summary()

    assert [r["symbol"] for r in rows] == [BTC, "total USDT"]
    assert rows[0]["position"] == "1"
    assert rows[0]["unrealized_pnl"] == "1"
    assert rows[1]["cash"] == "899.9"
    assert all(set(r) == set(rows[0]) for r in rows)
    assert all(isinstance(v, str) for r in rows for v in r.values())


def test_ten_thousand_small_fills_leave_no_float_drift() -> None:
    p = Portfolio(starting_cash={"USDT": D("1000")})
    # An independent reference in exact fractions: cash, and FIFO realized PnL over the same fills.
    expected_cash = Fraction(1000)
    expected_realized = Fraction(0)
    open_lots: list[list[Fraction]] = []
    qty, fee = Fraction("0.001"), Fraction("0.0000001")

    for n in range(10_000):
        price = D("0.1") + D(n % 7) * D("0.01")
        side = Side.SELL if n % 3 == 2 else Side.BUY  # two buys, then one sell: never short
        p.on_fill(fill(side, "0.001", price, "0.0000001"))
        exact_price = Fraction(price)
        expected_cash -= side.sign * qty * exact_price + fee
        if side is Side.BUY:
            open_lots.append([qty, exact_price])
        else:
            oldest = open_lots.pop(0)  # every lot is exactly one sell's size
            expected_realized += qty * (exact_price - oldest[1])
    p.mark(V, BTC, 0.13)

    assert Fraction(p.cash("USDT")) == expected_cash
    assert Fraction(p.realized_pnl("USDT")) == expected_realized
    assert p.fees("USDT") == D("0.0010000")
    assert p.position(V, BTC) == D("3.334")
    assert identity_holds(p, "USDT")


_fills = st.lists(
    st.tuples(
        st.sampled_from(["BTC/USDT", "ETH/USDT", "ETH/BTC"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.integers(min_value=1, max_value=5_000).map(lambda n: D(n) * D("0.001")),
        st.integers(min_value=1, max_value=10_000_000).map(lambda n: D(n) * D("0.01")),
        st.integers(min_value=-100, max_value=1_000).map(lambda n: D(n) * D("0.0001")),
        st.one_of(st.none(), st.floats(min_value=0.01, max_value=100_000.0, allow_nan=False)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_fills)
def test_accounting_identity_holds_after_any_fills_and_marks(
    events: list[tuple[str, Side, Decimal, Decimal, Decimal, float | None]],
) -> None:
    p = Portfolio(starting_cash={"USDT": D("10000"), "BTC": D("2")})

    for symbol, side, qty, price, fee, mark in events:
        p.on_fill(fill(side, qty, price, fee, symbol=symbol))
        if mark is not None:
            p.mark(V, symbol, mark)

    for currency in ("USDT", "BTC"):
        assert identity_holds(p, currency)
        assert p.equity(currency) == p.starting_cash(currency) + p.net_pnl(currency)


def test_reset_peak_makes_the_current_pnl_the_new_peak() -> None:
    p = Portfolio()
    p.on_fill(fill(Side.BUY, "1", "100"))
    p.mark(V, BTC, 120.0)
    p.mark(V, BTC, 90.0)
    version = p.version

    p.reset_peak()

    assert p.drawdown("USDT") == 0
    assert p.peak_pnl("USDT") == D("-10.0")
    assert p.version > version
