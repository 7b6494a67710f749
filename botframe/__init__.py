"""botframe: a plugin-based, stream-driven trading bot framework."""

from __future__ import annotations
