"""A journal that cannot be written halts trading instead of losing state or crashing."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

from test_engine_book_health import ScriptedPlugin

from botframe.engine import Engine
from botframe.events import Fill, OrderIntent, OrderType, Side, TradingState
from botframe.plugins import PluginSystem
from botframe.settings import load_settings


def _engine(tmp_path: Path) -> Engine:
    config = tmp_path / "c.toml"
    config.write_text('duration_secs = 30\n[journal]\npath = "j.sqlite"\n[venues.scripted]\n'
                      '[strategies.watch]\nvenue = "scripted"\nsymbols = ["BTC/USDT"]\n')
    plugins = PluginSystem()
    plugins.load_entry_points()
    plugins.register(ScriptedPlugin(), "scripted")
    return Engine(load_settings(config, plugins), plugins, out=io.StringIO(), live_view=False)


def test_unwritable_journal_halts_trading_and_the_order_is_not_sent(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    assert engine.journal is not None
    engine.journal._db.close()  # the file can no longer be written, as with a full or vanished disk
    intent = OrderIntent(client_order_id=engine.next_client_order_id(), strategy="watch", venue="scripted",
                         symbol="BTC/USDT", side=Side.BUY, quantity=Decimal("0.01"), order_type=OrderType.MARKET)

    sent = engine.submit(intent)

    assert sent is False
    assert engine.trading_state.state is TradingState.HALTED
    assert engine.orders.get(intent.client_order_id) is None


def test_a_fill_that_cannot_be_journaled_still_counts_in_the_portfolio(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    assert engine.journal is not None
    engine.journal._db.close()
    fill = Fill(client_order_id="bf-x-1", venue="scripted", symbol="BTC/USDT", side=Side.BUY,
                price=Decimal("100"), quantity=Decimal("0.5"), fee=Decimal("0.01"), liquidity="taker", fill_id="f1")

    engine.report(fill)

    assert engine.portfolio.position("scripted", "BTC/USDT") == Decimal("0.5")
    assert engine.trading_state.state is TradingState.HALTED
