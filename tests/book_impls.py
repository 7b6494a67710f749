"""Run book and signal code on either implementation: the C speedups or the pure-Python reference."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import botframe.book as book_module

#: Parametrize over these: "c" (``botframe._bookext``) and "python" (the reference loops).
IMPLS = ["c", "python"]


def extension_required() -> None:
    """Fail (not skip) when the C speedups are missing, unless the run opted out of them."""
    if book_module.EXTENSION is None:
        if os.environ.get("BOTFRAME_NO_EXTENSIONS"):
            pytest.skip("BOTFRAME_NO_EXTENSIONS is set: the C speedups are off by request")
        pytest.fail("botframe._bookext is not built: `pip install -e .` needs a C compiler (gcc) and Python headers")


@contextmanager
def implementation(name: str) -> Iterator[None]:
    """Within the block, ``L2Book`` and ``SignalSet`` use the named implementation."""
    if name not in IMPLS:
        raise ValueError(name)
    if name == "c":
        extension_required()
    was_on = book_module._c_apply_side is not None
    book_module.use_speedups(name == "c")
    try:
        yield
    finally:
        book_module.use_speedups(was_on)
