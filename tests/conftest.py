"""Shared fixtures: the real exchange captures in ../shared/data, found relative to the checkout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("BOTFRAME_SHARED_DATA")
    if env:
        return Path(env)
    return REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real captures (``../shared/data``); tests that need it skip when it is absent."""
    if not (SHARED_DATA / "SPECS.md").is_file():
        pytest.skip(f"real captures not found at {SHARED_DATA} (set BOTFRAME_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts from structlog's defaults: a test that configures logging (the CLI does)
    must not change where the next test's log lines go."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
