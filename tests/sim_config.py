"""A config that paper-trades the imbalance strategy against the simulator, fast and eager to trade."""

from __future__ import annotations

__all__ = ["sim_trading_config"]


def sim_trading_config(*, seed: int = 7, latency_ms: float = 0, head: str = "") -> str:
    """TOML text; ``head`` goes first (root keys, [plugins], [journal]...)."""
    return f"""{head}
[services.sim]
enabled = true
seed = {seed}
speed = 20.0                 # twenty simulated steps per real update interval

[[services.sim.symbols]]
symbol = "BTC/USDT"
start_price = "60000"
tick_size = "0.01"
lot_size = "0.00001"

[venues.binance]
symbols = ["BTC/USDT"]

[strategies.imbalance]
venue = "binance"
symbols = ["BTC/USDT"]
entry_threshold = 0.2
exit_threshold = 0.05
order_qty = "0.01"
max_position = "0.03"
cooldown_ms = 0

[executors.paper]
latency_ms = {latency_ms}
report_latency_ms = {latency_ms}

[risk]
stale_after_ms = 60000
"""
