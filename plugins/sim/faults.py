"""Which faults the simulator injects and when, sans I/O: one seeded random stream per fault kind.

Each kind draws from its own stream (seeded by the fault seed and the kind's name), so turning one
fault on or changing its rate never changes when the others fire. Tests can also force the next
opportunity of a kind with :meth:`FaultPlan.inject`, independently of the rates.
"""

from __future__ import annotations

import enum
import random
from collections import Counter

from .config import FaultSettings

__all__ = ["FaultKind", "FaultPlan"]


class FaultKind(enum.StrEnum):
    """A fault and the opportunity it is drawn at."""

    DROP_CLEAN = "drop_clean"  # per connection per step: close frame, then TCP close
    DROP_ABRUPT = "drop_abrupt"  # per connection per step: TCP reset, no close frame
    STALL = "stall"  # per step: nothing is sent for stall_ms, then everything held is
    GAP = "gap"  # per book frame: not sent
    DUPLICATE = "duplicate"  # per book frame: sent twice
    REORDER = "reorder"  # per book frame: sent after the next book frame of its stream
    CORRUPT = "corrupt"  # per book frame: a level's size or the checksum is wrong
    MALFORMED = "malformed"  # per book frame: an unparsable frame is sent before it
    SNAPSHOT_SLOW = "snapshot_slow"  # per REST depth request
    SNAPSHOT_STALE = "snapshot_stale"  # per REST depth request: older than the buffered updates
    REST_429 = "rest_429"  # per REST depth request
    REST_500 = "rest_500"  # per REST depth request
    RESTART = "restart"  # per step: the listener and every connection go away, then come back
    ORDER_TIMEOUT = "order_timeout"  # per POST /api/v3/order: accepted, then the answer is held back


_RATE_FIELD = {
    FaultKind.DROP_CLEAN: "drop_clean_rate",
    FaultKind.DROP_ABRUPT: "drop_abrupt_rate",
    FaultKind.STALL: "stall_rate",
    FaultKind.GAP: "gap_rate",
    FaultKind.DUPLICATE: "duplicate_rate",
    FaultKind.REORDER: "reorder_rate",
    FaultKind.CORRUPT: "corrupt_rate",
    FaultKind.MALFORMED: "malformed_rate",
    FaultKind.SNAPSHOT_SLOW: "snapshot_slow_rate",
    FaultKind.SNAPSHOT_STALE: "snapshot_stale_rate",
    FaultKind.REST_429: "rest_429_rate",
    FaultKind.REST_500: "rest_500_rate",
    FaultKind.RESTART: "restart_rate",
    FaultKind.ORDER_TIMEOUT: "order_timeout_rate",
}


class FaultPlan:
    """Decides, at each opportunity, whether a fault of a kind fires; counts what fired."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._rates = {kind: float(getattr(settings, name)) for kind, name in _RATE_FIELD.items()}
        self._rngs = {kind: random.Random(f"{settings.seed}/{kind.value}") for kind in FaultKind}
        self._forced: Counter[FaultKind] = Counter()
        self._forced_total = 0
        self._any_rate = any(r > 0.0 for r in self._rates.values())
        self.fired: Counter[FaultKind] = Counter()
        self.rng = random.Random(f"{settings.seed}/details")  # which level to corrupt, and so on

    @property
    def any_enabled(self) -> bool:
        return self._any_rate or self._forced_total > 0

    def rate(self, kind: FaultKind) -> float:
        return self._rates[kind]

    def inject(self, kind: FaultKind, times: int = 1) -> None:
        """Make the next ``times`` opportunities of ``kind`` fire, whatever its rate."""
        self._forced[kind] += times
        self._forced_total += times

    def fires(self, kind: FaultKind) -> bool:
        """Draw one opportunity of ``kind``."""
        if self._forced[kind] > 0:
            self._forced[kind] -= 1
            self._forced_total -= 1
            self.fired[kind] += 1
            return True
        rate = self._rates[kind]
        if rate > 0.0 and self._rngs[kind].random() < rate:
            self.fired[kind] += 1
            return True
        return False
