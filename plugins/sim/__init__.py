"""The exchange simulator: a seeded order-flow model served in real venue protocols on 127.0.0.1.

``model`` evolves the true books, ``binance_protocol`` / ``kraken_protocol`` turn them into wire
frames, ``server`` owns the sockets and the fault injection, ``plugin`` makes it the ``sim`` service,
and ``replay`` serves a recorded capture instead of the model.
"""

from __future__ import annotations

__all__: list[str] = []
