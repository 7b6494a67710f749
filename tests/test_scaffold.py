"""``botframe new-strategy NAME``: the three files it writes pass and run as written."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from botframe import cli
from botframe.plugins import PluginSystem
from botframe.scaffold import ScaffoldError, class_name, main, render, write_strategy
from botframe.settings import load_settings

FILES = {"mean_revert.py", "test_mean_revert.py", "mean_revert.toml"}


def run(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOTFRAME_", "PYTEST_"))}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def scaffolded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("scaffold")
    out = io.StringIO()
    assert main("mean_revert", directory, out=out) == 0
    assert "pytest test_mean_revert.py" in out.getvalue() and "botframe run mean_revert.toml" in out.getvalue()
    return directory


def test_new_strategy_writes_a_module_its_test_and_its_config(scaffolded: Path) -> None:
    assert {p.name for p in scaffolded.iterdir()} == FILES
    assert "class MeanRevert(Strategy[MeanRevertSettings])" in (scaffolded / "mean_revert.py").read_text()
    assert "[strategies.mean_revert]" in (scaffolded / "mean_revert.toml").read_text()


def test_the_generated_test_passes(scaffolded: Path) -> None:
    proc = run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mean_revert.py"], scaffolded)

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\b4 passed\b", proc.stdout)


def test_the_generated_config_registers_the_strategy_under_its_name(scaffolded: Path) -> None:
    plugins = PluginSystem()
    plugins.load_entry_points()

    settings = load_settings(scaffolded / "mean_revert.toml", plugins)

    assert list(settings.strategies) == ["mean_revert"]
    entry = plugins.strategies.get("mean_revert")
    assert entry is not None and entry.factory.__name__ == "MeanRevert"
    sys.modules.pop("botframe_userplugin_mean_revert", None)


def test_the_generated_config_paper_trades_against_the_simulator(scaffolded: Path) -> None:
    proc = run(["-m", "botframe.cli", "run", "mean_revert.toml", "--duration", "4"], scaffolded, timeout=90)

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "botframe run summary" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_it_runs_as_python_dash_m(tmp_path: Path) -> None:
    proc = run(["-m", "botframe.scaffold", "momentum", "--dir", str(tmp_path / "new")], tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (tmp_path / "new").iterdir()} == {"momentum.py", "test_momentum.py", "momentum.toml"}


@pytest.mark.parametrize("name", ["Bad-Name", "9lives", "class", "json", "test_x", "a__b", "trailing_", "pytest"])
def test_an_unusable_name_is_refused_with_exit_code_2_and_nothing_written(name: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(name, tmp_path)

    assert code == 2
    assert "new-strategy:" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "momentum.toml").write_text("# mine\n")

    with pytest.raises(ScaffoldError, match=r"momentum\.toml.*--force"):
        write_strategy("momentum", tmp_path)
    kept = (tmp_path / "momentum.toml").read_text()
    written = write_strategy("momentum", tmp_path, force=True)

    assert kept == "# mine\n"
    assert [p.name for p in written] == ["momentum.py", "test_momentum.py", "momentum.toml"]
    assert (tmp_path / "momentum.toml").read_text() == render("momentum")["momentum.toml"]


def test_class_names_are_camel_case() -> None:
    assert class_name("mean_revert") == "MeanRevert"
    assert class_name("x2_fast") == "X2Fast"


@pytest.mark.skipif("new-strategy" not in cli._parser().format_help(),
                    reason="the CLI does not offer new-strategy yet (it calls botframe.scaffold.main)")
def test_the_cli_subcommand_writes_the_files(tmp_path: Path) -> None:
    code = cli.main(["new-strategy", "momentum", "--dir", str(tmp_path)], out=io.StringIO())

    assert code == 0
    assert {p.name for p in tmp_path.iterdir()} == {"momentum.py", "test_momentum.py", "momentum.toml"}
