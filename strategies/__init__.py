"""Bundled strategies of botframe (installed as ``botframe_strategies``).

Registered through the entry point ``strategies`` in the group ``botframe``, exactly as a third-party
strategy package would be.
"""

from __future__ import annotations

from typing import Any

from botframe.hookspecs import hookimpl
from botframe.plugins import Registry

from .imbalance import ImbalanceStrategy

__all__ = ["ImbalanceStrategy", "botframe_register_strategies"]


@hookimpl
def botframe_register_strategies(registry: Registry[Any]) -> None:
    registry.add("imbalance", ImbalanceStrategy, ImbalanceStrategy.Settings)
