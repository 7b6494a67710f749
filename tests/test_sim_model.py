"""The simulator's order-flow model: deterministic, realistic, with the true book at any update id."""

from __future__ import annotations

from decimal import Decimal

import pytest

from botframe_plugins.sim.model import (
    FixedPoint,
    HistoryTooShortError,
    MarketModel,
    MarketStep,
    SymbolSpec,
    decimals_of,
)

BTC = SymbolSpec("BTC/USDT", Decimal("60000"), Decimal("0.01"), Decimal("0.00001"), Decimal("5"))
ETH = SymbolSpec("ETH/USDT", Decimal("3000"), Decimal("0.01"), Decimal("0.0001"), Decimal("5"))


def _run(model: MarketModel, n: int) -> list[MarketStep]:
    return [model.step() for _ in range(n)]


def test_same_seed_gives_identical_steps() -> None:
    a = _run(MarketModel([BTC, ETH], seed=7), 300)
    b = _run(MarketModel([BTC, ETH], seed=7), 300)
    assert a == b


def test_different_seeds_give_different_streams() -> None:
    a = _run(MarketModel([BTC], seed=1), 50)
    b = _run(MarketModel([BTC], seed=2), 50)
    assert a != b


def test_adding_a_symbol_does_not_change_the_others() -> None:
    alone = [s.symbols for s in _run(MarketModel([BTC], seed=3), 100)]
    both = _run(MarketModel([BTC, ETH], seed=3), 100)
    with_eth = [[x for x in s.symbols if x.symbol == "BTC/USDT"] for s in both]
    assert alone == with_eth


def test_update_ids_are_contiguous_across_steps() -> None:
    model = MarketModel([BTC, ETH], seed=11)
    prev = {m.spec.symbol: m.last_update_id for m in model.models()}
    changed_steps = 0
    for step in _run(model, 500):
        for st in step.symbols:
            if st.has_book_changes:
                assert st.first_update_id == prev[st.symbol] + 1
                prev[st.symbol] = st.last_update_id
                changed_steps += 1
    assert changed_steps > 500  # both symbols change on most steps


def test_true_book_is_never_crossed_and_spread_stays_a_few_ticks() -> None:
    model = MarketModel([BTC], seed=5)
    sym = model.symbol("BTC/USDT")
    spreads = []
    for _ in range(3000):
        model.step()
        bid, ask = sym.best_bid(), sym.best_ask()
        assert bid is not None
        assert ask is not None
        assert bid < ask
        spreads.append(ask - bid)
    mean_spread = sum(spreads) / len(spreads)
    assert 1.0 <= mean_spread <= 6.0
    assert sorted(spreads)[int(0.99 * len(spreads))] <= 20


def test_depth_builds_away_from_the_touch() -> None:
    model = MarketModel([BTC], seed=9)
    sym = model.symbol("BTC/USDT")
    near = far = 0
    for _ in range(2000):
        model.step()
        bid = sym.best_bid()
        assert bid is not None
        near += sum(q for p, q in sym.top_bids(60) if bid - p < 5)
        far += sum(q for p, q in sym.top_bids(60) if 20 <= bid - p < 25)
    assert far > 1.5 * near


def test_price_drifts_over_time() -> None:
    model = MarketModel([BTC], seed=13)
    sym = model.symbol("BTC/USDT")
    mids = []
    for _ in range(6000):  # ten simulated minutes
        model.step()
        bid, ask = sym.best_bid(), sym.best_ask()
        assert bid is not None
        assert ask is not None
        mids.append((bid + ask) / 2)
    assert max(mids) - min(mids) >= 10  # ticks


def test_trades_carry_aggressor_and_contiguous_ids() -> None:
    model = MarketModel([BTC], seed=17)
    trades = [t for step in _run(model, 1000) for st in step.symbols for t in st.trades]
    assert len(trades) > 100
    assert {t.aggressor for t in trades} == {"buy", "sell"}
    assert [t.trade_id for t in trades] == list(range(trades[0].trade_id, trades[0].trade_id + len(trades)))
    assert all(t.qty_lots > 0 for t in trades)


def test_replaying_each_step_diff_reproduces_the_true_book_at_its_last_id() -> None:
    model = MarketModel([BTC], seed=21)
    sym = model.symbol("BTC/USDT")
    start = sym.state()
    bids, asks = dict(start.bids), dict(start.asks)
    for step in _run(model, 400):
        for st in step.symbols:
            for side, levels in ((bids, st.bids), (asks, st.asks)):
                for price, lots in levels:
                    if lots:
                        side[price] = lots
                    else:
                        side.pop(price, None)
            truth = sym.book_at(st.last_update_id)
            assert sorted(bids.items(), reverse=True) == truth.bids
            assert sorted(asks.items()) == truth.asks
    assert sym.book_at(sym.last_update_id) == sym.state()


def test_book_at_an_update_id_inside_a_step_is_the_state_after_that_event() -> None:
    model = MarketModel([BTC], seed=23)
    sym = model.symbol("BTC/USDT")
    step = next(
        s
        for s in iter(model.step, None)
        if s.symbols and s.symbols[0].last_update_id > s.symbols[0].first_update_id
    )
    st = step.symbols[0]
    before = sym.book_at(st.first_update_id - 1)
    middle = sym.book_at(st.first_update_id)
    after = sym.book_at(st.last_update_id)
    assert before != middle != after


def test_book_at_older_than_the_kept_history_raises() -> None:
    model = MarketModel([BTC], seed=1, history_updates=50)
    first_id = model.symbol("BTC/USDT").last_update_id
    _run(model, 100)
    with pytest.raises(HistoryTooShortError):
        model.symbol("BTC/USDT").book_at(first_id)
    with pytest.raises(LookupError):
        model.symbol("BTC/USDT").book_at(model.symbol("BTC/USDT").last_update_id + 1)


def test_step_timestamps_come_from_simulated_time_not_the_wall_clock() -> None:
    model = MarketModel([BTC], seed=1, update_interval_ms=100, start_ns=1_000_000_000)
    steps = _run(model, 3)
    assert [s.ts_ns for s in steps] == [1_100_000_000, 1_200_000_000, 1_300_000_000]
    assert model.step(ts_ns=42).ts_ns == 42


@pytest.mark.parametrize(
    ("step", "decimals", "n", "text"),
    [
        (Decimal("0.01"), 8, 6000001, "60000.01000000"),
        (Decimal("0.00001"), 8, 3, "0.00003000"),
        (Decimal("0.1"), 1, 0, "0.0"),
        (Decimal("5"), 0, 3, "15"),
        (Decimal("0.00000001"), 8, 48, "0.00000048"),
    ],
)
def test_fixed_point_text_is_exact(step: Decimal, decimals: int, n: int, text: str) -> None:
    assert FixedPoint(step, decimals).text(n) == text


def test_fixed_point_rejects_too_few_decimals() -> None:
    assert decimals_of(Decimal("0.010")) == 2
    with pytest.raises(ValueError, match="decimals"):
        FixedPoint(Decimal("0.01"), 1)
