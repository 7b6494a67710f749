"""Kill the bot with SIGKILL mid-trading, restart it on the same journal: nothing lost, nothing twice.

The killed process prints each fill, with its position and realized PnL, from an observer plugin
that runs after the engine journaled and applied the fill. After the kill, the journal must hold
every printed fill, and a restarted engine must start from exactly the printed state.
"""

from __future__ import annotations

import asyncio
import io
import random
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from sim_config import sim_trading_config

from botframe.engine import Engine
from botframe.events import Fill, OrderIntent, OrderStatus, OrderUpdate
from botframe.journal import Journal
from botframe.plugins import PluginSystem
from botframe.settings import load_settings

OBSERVER = textwrap.dedent('''
    import sys
    from botframe.hookspecs import hookimpl

    _engine = None

    @hookimpl
    def botframe_startup(engine):
        global _engine
        _engine = engine

    @hookimpl
    def botframe_on_fill(fill):
        pf = _engine.portfolio
        print(f"FILL {fill.fill_id} {fill.venue} {fill.symbol} position={pf.position(fill.venue, fill.symbol)} "
              f"realized={pf.realized_pnl()} fees={pf.fees()}", flush=True)
''')

CONFIG_HEAD = """
duration_secs = 90

[plugins]
paths = ["observer.py"]

[journal]
path = "journal.sqlite"
"""


def _run_until_fills_then_kill(workdir: Path, fills_before_kill: int) -> list[str]:
    """Start `botframe run` as a subprocess, SIGKILL it once it printed that many fills."""
    stderr = (workdir / "stderr.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "botframe.cli", "run", str(workdir / "config.toml")],
        stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=workdir,
    )
    printed: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("FILL "):
                printed.append(line.strip())
                if len(printed) >= fills_before_kill:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        stderr.close()
    assert len(printed) >= fills_before_kill, (workdir / "stderr.log").read_text()[-3000:]
    assert proc.returncode == -signal.SIGKILL
    return printed


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_sigkill_mid_trading_then_restart_loses_nothing_and_submits_nothing_twice(tmp_path: Path,
                                                                                  seed: int) -> None:
    rng = random.Random(seed)
    (tmp_path / "observer.py").write_text(OBSERVER)
    (tmp_path / "config.toml").write_text(sim_trading_config(seed=seed, latency_ms=1, head=CONFIG_HEAD))

    printed = _run_until_fills_then_kill(tmp_path, fills_before_kill=rng.randint(2, 7))

    # Every fill the killed bot acted on is in the journal, once.
    with Journal(tmp_path / "journal.sqlite") as journal:
        recovered = journal.recover()
    journal_fill_ids = [f.fill_id for f in recovered.fills]
    printed_ids = [line.split()[1] for line in printed]
    assert set(printed_ids) <= set(journal_fill_ids)
    assert len(journal_fill_ids) == len(set(journal_fill_ids))

    # A restarted engine starts from the state the journal recorded: position, PnL, fees.
    engine = _engine(tmp_path / "config.toml")
    signed = sum((f.quantity * f.side.sign for f in recovered.fills), Decimal(0))
    assert engine.portfolio.position("binance", "BTC/USDT") == signed
    last = printed[-1].split()
    if last[1] == journal_fill_ids[-1]:  # the kill came right after the last printed fill
        assert f"position={signed}" == last[4]
        assert last[5] == f"realized={engine.portfolio.realized_pnl()}"
        assert last[6] == f"fees={engine.portfolio.fees()}"
    # Orders open at the kill are known, and (a paper venue died with the process) expired.
    open_at_kill = {u.client_order_id for u in recovered.open_orders}
    assert engine.journal is not None
    engine.journal.close()
    with Journal(tmp_path / "journal.sqlite") as journal:
        expired = {e.client_order_id for e in journal.events()
                   if isinstance(e, OrderUpdate) and e.status is OrderStatus.EXPIRED}
        assert open_at_kill <= expired
        after = journal.recover()
    assert after.open_orders == []

    # Trading on after the restart never reuses a client order id and never doubles a fill.
    summary = asyncio.run(_engine(tmp_path / "config.toml", duration_secs=3.0).run())
    assert not summary.failed
    with Journal(tmp_path / "journal.sqlite") as journal:
        events = list(journal.events())
    intents = Counter(e.client_order_id for e in events if isinstance(e, OrderIntent))
    assert intents and max(intents.values()) == 1, "an order id was submitted twice"
    fills = Counter(e.fill_id for e in events if isinstance(e, Fill))
    assert max(fills.values()) == 1



def _engine(config: Path, **overrides: object) -> Engine:
    plugins = PluginSystem()
    plugins.load_entry_points()
    settings = load_settings(config, plugins, overrides=overrides)
    return Engine(settings, plugins, out=io.StringIO(), live_view=False)
