"""Live trading and market data through ccxt, for any exchange ccxt supports.

``config`` holds the settings of ``[executors.ccxt]`` and ``[venues.ccxt]``, ``exchange`` builds a ccxt
client (URL overrides for the simulator, credentials, rate limiter) and classifies its errors,
``execution`` is the live executor, ``data`` the generic market-data venue, and ``plugin`` registers
both.
"""

from __future__ import annotations

__all__: list[str] = []
