"""The built-in risk checks, one ``botframe_check_order`` implementation per check.

Each check is its own hook implementation (pluggy's ``specname``), so all of them run on every
intent and an order that breaks several limits comes back with several denials, each naming its
check. Within one check the first limit broken is reported. Every limit is read from
``context.limits(venue, symbol)`` (``[risk]`` defaults merged with ``[risk.symbols."<symbol>"]``);
a limit that is not set is not checked.

=================  ====================================================  =================================
check              refuses                                               codes
=================  ====================================================  =================================
``order_size``     quantity or notional above the per-order maximum     max_order_quantity,
                                                                         max_order_notional
``exposure``       |position| after the order (counting our open        max_position, max_gross_exposure
                   orders on that side) above max_position; an
                   increase taking gross exposure above its maximum
``open_orders``    one order too many resting, per symbol or in total   max_open_orders,
                                                                         max_open_orders_total
``rate_limit``     no token left in the order bucket (symbol / total)   order_rate, order_rate_total
``price_band``     a limit price further than price_band_bps from the   price_band
                   mid (or microprice): the fat finger
``book``           no book, a book not LIVE, or one older than          no_book, book_not_live,
                   stale_after_ms                                       book_empty, book_stale
``self_trade``     an order that would cross one of our own resting     self_trade
                   orders
``loss_limits``    drawdown or today's loss beyond its limit; also      max_drawdown, max_daily_loss
                   moves the trading state (the kill switch)
=================  ====================================================  =================================

Sanity checks and the trading state (HALTED, REDUCING) are enforced by the core gate before these
run, so a disabled plugin can never let a malformed order or a halted bot through.

The module keeps no state and has no ``botframe_configure``: limits come from ``context.settings``
(the engine's ``[risk]`` section) and the mutable parts (token buckets, the day's loss baseline)
live in the engine's ``RiskContext``, so two engines in one process never share them.
"""

from __future__ import annotations

from botframe.events import BookHealth, OrderIntent, OrderType, Side, TradingState
from botframe.hookspecs import hookimpl
from botframe.risk import Denial, RiskContext, evaluate_loss_limits, reference_price, would_reduce

__all__ = [
    "check_book",
    "check_exposure",
    "check_loss_limits",
    "check_open_orders",
    "check_order_rate",
    "check_order_size",
    "check_price_band",
    "check_self_trade",
]

@hookimpl(specname="botframe_check_order")
def check_order_size(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Per-order maximum quantity and notional (a market order's notional at the opposite best)."""
    limits = context.limits(intent.venue, intent.symbol)
    qty = intent.quantity
    if limits.max_order_quantity is not None and qty > limits.max_order_quantity:
        return Denial("max_order_quantity", "order_size",
                      f"quantity {qty} exceeds the maximum {limits.max_order_quantity} for {intent.symbol}")
    if limits.max_order_notional is not None:
        price = reference_price(intent, context)
        if price is not None and qty * price > limits.max_order_notional:
            return Denial("max_order_notional", "order_size",
                          f"notional {qty * price} exceeds the maximum {limits.max_order_notional} "
                          f"for {intent.symbol}")
    return None


@hookimpl(specname="botframe_check_order")
def check_exposure(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Maximum absolute position per symbol and maximum gross exposure over all positions.

    The position limit is judged worst case: the current position plus this order plus every open
    order on the same side, as if they all filled. The gross limit refuses only orders that increase
    the position, so reducing is always possible.
    """
    limits = context.limits(intent.venue, intent.symbol)
    max_gross = context.settings.max_gross_exposure
    if limits.max_position is None and max_gross is None:
        return None
    position = context.portfolio.position(intent.venue, intent.symbol)
    signed = intent.quantity if intent.side is Side.BUY else -intent.quantity
    if limits.max_position is not None:
        pending = context.orders.open_quantity(intent.venue, intent.symbol, intent.side)
        worst = position + signed + (pending if intent.side is Side.BUY else -pending)
        if abs(worst) > limits.max_position:
            return Denial("max_position", "exposure",
                          f"position could reach {worst} (now {position}, open same side {pending}), "
                          f"beyond the maximum {limits.max_position} for {intent.symbol}")
    if max_gross is not None:
        after = position + signed
        if abs(after) > abs(position):
            price = reference_price(intent, context)
            if price is not None:
                gross = context.portfolio.gross_exposure() + (abs(after) - abs(position)) * price
                if gross > max_gross:
                    return Denial("max_gross_exposure", "exposure",
                                  f"gross exposure would be {gross}, beyond the maximum {max_gross}")
    return None


@hookimpl(specname="botframe_check_order")
def check_open_orders(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Maximum number of resting orders, per symbol and in total."""
    limits = context.limits(intent.venue, intent.symbol)
    if limits.max_open_orders is not None:
        n = context.orders.open_count(intent.venue, intent.symbol)
        if n >= limits.max_open_orders:
            return Denial("max_open_orders", "open_orders",
                          f"{n} orders already open on {intent.symbol}, "
                          f"the maximum is {limits.max_open_orders}")
    max_total = context.settings.max_open_orders_total
    if max_total is not None:
        n = context.orders.open_count()
        if n >= max_total:
            return Denial("max_open_orders_total", "open_orders",
                          f"{n} orders already open in total, the maximum is {max_total}")
    return None


@hookimpl(specname="botframe_check_order")
def check_order_rate(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Order rate limits (token buckets per symbol and in total, on the monotonic clock).

    Only looks; the gate spends the token once the order is approved by every check.
    """
    limits = context.limits(intent.venue, intent.symbol)
    blocked = context.rate_limits.order_blocked((intent.venue, intent.symbol), limits,
                                                context.clock.monotonic_ns())
    if blocked == "symbol":
        return Denial("order_rate", "rate_limit",
                      f"more than {limits.orders_per_sec} orders/s (burst {limits.order_burst}) "
                      f"on {intent.symbol}")
    if blocked == "total":
        s = context.settings
        return Denial("order_rate_total", "rate_limit",
                      f"more than {s.orders_per_sec_total} orders/s (burst {s.order_burst_total}) in total")
    return None


@hookimpl(specname="botframe_check_order")
def check_price_band(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """A limit price further than ``price_band_bps`` from the mid (or microprice) is a fat finger."""
    if intent.order_type is not OrderType.LIMIT or intent.price is None:
        return None
    limits = context.limits(intent.venue, intent.symbol)
    if limits.price_band_bps is None:
        return None
    book = context.book(intent.venue, intent.symbol)
    if book is None:
        return None  # the book check refuses this order
    bid, ask = book.best_bid(), book.best_ask()
    if bid is None or ask is None:
        return None
    if context.settings.price_band_reference == "microprice" and bid[1] + ask[1] > 0:
        ref = (bid[0] * ask[1] + ask[0] * bid[1]) / (bid[1] + ask[1])
        name = "microprice"
    else:
        ref = (bid[0] + ask[0]) / 2.0
        name = "mid"
    if ref <= 0:
        return None
    distance_bps = abs(float(intent.price) - ref) / ref * 10_000.0
    if distance_bps > limits.price_band_bps:
        return Denial("price_band", "price_band",
                      f"price {intent.price} is {distance_bps:.0f} bps from the {name} {ref:g}, "
                      f"beyond the band of {limits.price_band_bps:g} bps")
    return None


@hookimpl(specname="botframe_check_order")
def check_book(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """No orders on a book that is missing, not LIVE, empty, or older than ``stale_after_ms``."""
    book = context.book(intent.venue, intent.symbol)
    if book is None:
        return Denial("no_book", "book", f"no order book for {intent.symbol} on {intent.venue}")
    if book.health is not BookHealth.LIVE:
        return Denial("book_not_live", "book",
                      f"the {intent.symbol} book on {intent.venue} is {book.health.value}, not live")
    if not book.bid_count or not book.ask_count:
        return Denial("book_empty", "book", f"the {intent.symbol} book on {intent.venue} has an empty side")
    limits = context.limits(intent.venue, intent.symbol)
    if limits.stale_after_ms is not None:
        age_ms = (context.clock.time_ns() - book.receive_ts_ns) / 1e6
        if age_ms > limits.stale_after_ms:
            return Denial("book_stale", "book",
                          f"the {intent.symbol} book on {intent.venue} was last updated {age_ms:.0f} ms ago, "
                          f"more than {limits.stale_after_ms} ms")
    return None


@hookimpl(specname="botframe_check_order")
def check_self_trade(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Refuse an order that would trade against one of our own resting orders on the other side."""
    limits = context.limits(intent.venue, intent.symbol)
    if not limits.self_trade_prevention:
        return None
    # Only our most aggressive order on the other side matters: if that one is not crossed, none is.
    order = context.orders.most_aggressive(intent.venue, intent.symbol, intent.side.opposite)
    if order is None:
        return None
    price = intent.price if intent.order_type is OrderType.LIMIT else None
    # A market order crosses everything; a resting market order (in flight) is crossed by anything.
    crosses = (
        price is None
        or order.price is None
        or (price >= order.price if intent.side is Side.BUY else price <= order.price)
    )
    if crosses:
        return Denial("self_trade", "self_trade",
                      f"{intent.side.value} at {price if price is not None else 'market'} would "
                      f"cross our own {order.side.value} {order.client_order_id} at {order.price}")
    return None


@hookimpl(specname="botframe_check_order")
def check_loss_limits(intent: OrderIntent, context: RiskContext) -> Denial | None:
    """Drawdown and daily-loss kill switch; tripping it moves the trading state (HALTED by default).

    Once HALTED, the core trading-state check refuses everything before this runs. While REDUCING
    (``kill_switch_state = "reducing"``) the exceeded limit is reported only for orders that do
    not reduce the position, so the bot can still get flat.
    """
    denial = evaluate_loss_limits(context)
    if denial is not None and context.state is TradingState.REDUCING and would_reduce(intent, context):
        return None
    return denial
