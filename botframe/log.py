"""structlog set-up: readable console lines for humans, JSON lines for machines.

Components bind their logger once (``log = get_logger("botframe.venue").bind(venue="binance")``) and
add the symbol per line, so every line from a venue carries venue and symbol. Nothing on the per-event
path logs at INFO.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "get_logger", "redact"]

_SECRET_KEYS = ("secret", "api_key", "apikey", "password", "token", "signature", "passphrase")


def redact(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Replace values of secret-looking keys, so a key never reaches a log by accident."""
    for key in event_dict:
        lowered = key.lower()
        if any(s in lowered for s in _SECRET_KEYS):
            event_dict[key] = "***"
    return event_dict


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is now, so a live status view that redirects it places log
    lines above itself instead of tearing through it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(level: str = "info", fmt: str = "console", stream: TextIO | None = None) -> None:
    """Configure structlog (and the stdlib root logger, for libraries) once at start-up."""
    out: Any = stream if stream is not None else _CurrentStderr()
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=out.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=out, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def get_logger(name: str, **bound: Any) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name).bind(logger=name, **bound)
    return logger
