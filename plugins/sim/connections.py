"""One client connection of the simulator: its outgoing queue, its subscriptions, its held frames.

The server fills a connection's queue synchronously while it fans out a step; the connection's own
writer task drains it onto the socket. A bounded queue means a client that does not keep up is
disconnected, as a real exchange does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .kraken_protocol import KrakenBookView

__all__ = ["BinanceConnection", "Connection", "KrakenConnection", "UserDataConnection"]


@dataclass(eq=False, slots=True)
class Connection:
    """What every protocol's connection has: the socket, the queue, and frames held back by a fault."""

    ws: ServerConnection
    queue: asyncio.Queue[bytes]
    closing: bool = False
    held: dict[str, bytes] = field(default_factory=dict)  # stream -> frame to send after the next one

    def put(self, frames: Iterable[bytes]) -> bool:
        """Queue frames; ``False`` when the queue is full (the caller drops the client)."""
        try:
            for frame in frames:
                self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True

    def discard_queued(self) -> None:
        """Forget unsent frames, marking them done so nobody waits on them."""
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()


@dataclass(eq=False, slots=True)
class BinanceConnection(Connection):
    """A Binance stream connection: raw (``/ws``) or combined (``/stream``), and its streams."""

    combined: bool = False
    streams: set[str] = field(default_factory=set)


@dataclass(eq=False, slots=True)
class KrakenConnection(Connection):
    """A Kraken v2 connection: a book view per subscribed symbol, trade and instrument subscriptions."""

    connection_id: int = 0
    books: dict[str, KrakenBookView] = field(default_factory=dict)
    trades: set[str] = field(default_factory=set)
    instrument: bool = False

    @property
    def subscribed(self) -> bool:
        return bool(self.books or self.trades or self.instrument)


@dataclass(eq=False, slots=True)
class UserDataConnection(Connection):
    """A Binance user-data connection: the WebSocket API (``/ws-api/v3``) or a listen key's stream.

    ``subscriptions`` maps a WebSocket API subscription id to the account's API key; a listen-key
    stream has ``listen_api_key`` instead and receives the bare events.
    """

    subscriptions: dict[int, str] = field(default_factory=dict)
    listen_api_key: str = ""
