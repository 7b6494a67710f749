"""Normalizing ccxt's unified structures to botframe's events, sans I/O.

ccxt gives orders and trades as dictionaries of floats (its unified structures); these functions turn
them into botframe's ``OrderStatus`` and ``Fill`` with exact ``Decimal`` amounts (a float goes through
its shortest repr, which is the decimal text the venue sent), and scrub request signatures out of the
messages ccxt puts in its exceptions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botframe.events import Fill, OrderStatus

if TYPE_CHECKING:
    from .execution import LiveOrder

__all__ = ["dec", "fill_from_trade", "scrub", "status_from_order"]

_SIGNATURE = re.compile(r"(signature=)[0-9a-fA-F]+")


def scrub(text: str) -> str:
    """A venue message without request signatures (ccxt puts signed URLs in some messages)."""
    return _SIGNATURE.sub(r"\1***", text)


def dec(value: Any) -> Decimal:
    """A ccxt number (float, int or str) as an exact Decimal (floats through their shortest repr)."""
    if value is None:
        return Decimal(0)
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def status_from_order(order: Mapping[str, Any]) -> OrderStatus | None:
    """botframe's status for a ccxt order; None for a working order (fills drive PARTIALLY_FILLED/FILLED)."""
    status = order.get("status")
    if status == "open":
        return OrderStatus.ACCEPTED if not order.get("filled") else None
    if status == "closed":
        return OrderStatus.FILLED
    if status == "canceled":
        return OrderStatus.CANCELLED
    if status == "expired":
        return OrderStatus.EXPIRED
    if status == "rejected":
        return OrderStatus.REJECTED
    return None


def fill_from_trade(trade: Mapping[str, Any], live: LiveOrder, *, exchange_id: str, quote: str, base: str,
                    now_ns: int) -> Fill | None:
    """A botframe fill from a ccxt trade of ``live``; None when it has no id or no quantity."""
    trade_id = trade.get("id")
    amount = dec(trade.get("amount"))
    if trade_id is None or amount <= 0:
        return None
    price = dec(trade.get("price"))
    fee_info = trade.get("fee") or {}
    fee_cost = dec(fee_info.get("cost"))
    currency = fee_info.get("currency")
    if currency == base:
        fee = fee_cost * price  # a fee taken from the base received, valued at the fill price
    elif currency in (quote, None):
        fee = fee_cost
    else:
        fee = Decimal(0)  # paid in a third asset (e.g. BNB): not in the quote ledger
    ts = trade.get("timestamp")
    intent = live.intent
    return Fill(
        client_order_id=intent.client_order_id, venue=intent.venue, symbol=intent.symbol, side=intent.side,
        price=price, quantity=amount, fee=fee, liquidity=str(trade.get("takerOrMaker") or "taker"),
        fill_id=f"{exchange_id}:{trade.get('symbol') or intent.symbol}:{trade_id}",
        ts_ns=int(ts) * 1_000_000 if ts else now_ns)
