"""Paper execution: orders are filled by a simulated venue against live books and trades.

``engine`` is the sans-I/O fill engine, ``config`` the ``[executors.paper]`` settings and ``plugin``
the executor and its registration hook (the entry point ``botframe_plugins.paper.plugin``).
"""

from __future__ import annotations

from .config import PaperSettings, VenueFees
from .engine import EngineConfig, FillEngine, InstrumentRules

__all__ = ["EngineConfig", "FillEngine", "InstrumentRules", "PaperSettings", "VenueFees"]
