"""docs/writing-a-strategy.md, run as a new user would: its files written to an empty directory, the
test run with pytest, the config checked and paper-traded against the simulator, the snippets executed.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from test_docs_blocks import blocks, import_file, write_files

from botframe.plugins import PluginSystem
from botframe.strategy import Strategy, StrategyContext
from botframe.testing import SimulatedMarket, StrategyHarness

DOC = "writing-a-strategy.md"
FILES = {"trade_flow.py", "test_trade_flow.py", "trade_flow.toml"}


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty directory with the tutorial's files in it, and nothing else."""
    directory = tmp_path_factory.mktemp("tutorial")
    write_files(DOC, directory)
    return directory


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOTFRAME_", "PYTEST_"))}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_the_tutorial_builds_a_strategy_its_test_and_its_config(tutorial: Path) -> None:
    assert {p.name for p in tutorial.iterdir()} == FILES


def test_the_tutorial_test_passes_with_plain_pytest(tutorial: Path) -> None:
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_trade_flow.py"], tutorial)

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\b6 passed\b", proc.stdout)


def test_the_tutorial_config_is_valid(tutorial: Path) -> None:
    proc = run(["-m", "botframe.cli", "check-config", "trade_flow.toml"], tutorial)

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "strategies=trade_flow" in proc.stdout


def test_the_tutorial_config_paper_trades_against_the_simulator(tutorial: Path) -> None:
    proc = run(["-m", "botframe.cli", "run", "trade_flow.toml", "--duration", "5"], tutorial, timeout=90)

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "botframe run summary" in proc.stdout
    fills = re.search(r"fills: (\d+)", proc.stdout)
    assert fills is not None and int(fills[1]) >= 1, proc.stdout[-3000:]
    assert "Traceback" not in proc.stderr


@pytest.fixture
def trade_flow_module(tutorial: Path) -> Iterator[object]:
    module = import_file(tutorial / "trade_flow.py", "trade_flow")
    try:
        yield module
    finally:
        sys.modules.pop("trade_flow", None)


def test_the_python_snippets_run(trade_flow_module: object) -> None:
    snippets = [b.text for b in blocks(DOC) if b.lang == "python" and not b.file]
    assert snippets
    for text in snippets:
        namespace = {"Decimal": Decimal, "SimulatedMarket": SimulatedMarket, "StrategyHarness": StrategyHarness,
                     "TradeFlow": trade_flow_module.TradeFlow}  # type: ignore[attr-defined]
        exec(compile(text, DOC, "exec"), namespace)


def test_the_tutorial_strategy_installs_as_a_package_with_an_entry_point(tutorial: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # What `pip install .` of the documented pyproject.toml leaves behind: the module and its dist-info.
    (tmp_path / "trade_flow.py").write_text((tutorial / "trade_flow.py").read_text())
    info = tmp_path / "botframe_trade_flow-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: botframe-trade-flow\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[botframe]\ntrade_flow = trade_flow\n")
    documented = "\n".join(b.text for b in blocks(DOC) if b.lang == "toml" and not b.file)
    assert '[project.entry-points.botframe]\ntrade_flow = "trade_flow"' in documented
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "trade_flow", raising=False)
    plugins = PluginSystem()

    plugins.load_entry_points()
    plugins.discover()

    entry = plugins.strategies.get("trade_flow")
    assert entry is not None and plugins.infos["trade_flow"].source == "entry point"
    sys.modules.pop("trade_flow", None)


def test_every_callback_and_context_method_is_in_the_reference() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / DOC).read_text()
    callbacks = [n for n, _ in inspect.getmembers(Strategy, inspect.isfunction)
                 if n.startswith("on_") or n == "signal_specs"]
    methods = [n for n, _ in inspect.getmembers(StrategyContext) if not n.startswith("_")]

    missing = [n for n in callbacks + methods if f"`{n}" not in text and f" {n}(" not in text]

    assert missing == []
