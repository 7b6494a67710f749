"""The command line: usage mistakes exit 2 with a message, never a traceback."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from botframe.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_check_config_accepts_the_example_config() -> None:
    out = io.StringIO()

    code = main(["check-config", str(REPO / "config.example.toml")], out=out)

    assert code == 0
    assert "OK" in out.getvalue()
    assert "strategies=imbalance" in out.getvalue()


def test_missing_config_file_exits_2_and_says_where_to_start(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "botframe.cli", "check-config", str(tmp_path / "nope.toml")],
                          capture_output=True, text=True, timeout=60)

    assert proc.returncode == 2
    assert "file not found" in proc.stderr
    assert "config.example.toml" in proc.stderr


def test_replay_server_with_a_missing_capture_exits_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "botframe.cli", "replay-server", str(tmp_path / "none.txt")],
                          capture_output=True, text=True, timeout=60)

    assert proc.returncode == 2
    assert "no such capture file" in proc.stderr
    assert "Traceback" not in proc.stderr
