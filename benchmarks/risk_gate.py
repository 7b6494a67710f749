"""How many order intents per second the whole risk gate vets, with every check switched on.

The gate runs as the engine runs it: core sanity and trading-state checks, then every built-in
check of ``botframe_plugins.risk_limits`` through a real pluggy ``PluginManager`` (hookspecs added,
the module registered). Rate limits are on but set high enough that they never trip, so every
intent walks every check. Run by hand::

    python benchmarks/risk_gate.py [--intents 200000] [--repeat 3]

and read the figures it prints (the target is >= 50,000 intents/s for the approved path).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from decimal import Decimal

import pluggy
import structlog

import botframe_plugins.risk_limits as risk_limits
from botframe import hookspecs
from botframe.book import L2Book
from botframe.clock import SimulatedClock
from botframe.events import BookHealth, BookSnapshot, Event, Fill, HealthReason, OrderIntent, Side
from botframe.orders import OrderTracker
from botframe.portfolio import Portfolio
from botframe.risk import (
    Denial,
    RiskContext,
    RiskGate,
    RiskSettings,
    TradingStateMachine,
    check_sanity,
    check_trading_state,
    direct_risk_check,
)
from botframe.venues import Instrument

__all__ = ["main"]

VENUE = "sim"
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]


def build_gate(clock: SimulatedClock, *, via_pluggy: bool = False) -> tuple[RiskGate, list[Event]]:
    """A gate over real books, a portfolio with positions, resting orders and every limit on.

    The checks are called as the engine calls them (``direct_risk_check``), or through pluggy's
    hook call with ``via_pluggy`` (the engine's way before, kept for comparison).
    """
    settings = RiskSettings.model_validate({
        "max_order_quantity": "100",
        "max_order_notional": "1000000",
        "max_position": "1000",
        "max_open_orders": 50,
        "orders_per_sec": 1e9, "order_burst": 10**9,
        "orders_per_sec_total": 1e9, "order_burst_total": 10**9,
        "price_band_bps": 500,
        "stale_after_ms": 5_000,
        "self_trade_prevention": True,
        "max_gross_exposure": "100000000",
        "max_open_orders_total": 500,
        "max_drawdown": "1000000",
        "max_daily_loss": "1000000",
        "symbols": {"BTC/USDT": {"max_position": "5"}},
    })
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(risk_limits, name="risk_limits")
    books: dict[tuple[str, str], L2Book] = {}
    instruments: dict[tuple[str, str], Instrument] = {}
    portfolio = Portfolio(starting_cash={"USDT": Decimal("1000000")})
    orders = OrderTracker()
    now = clock.time_ns()
    for n, symbol in enumerate(SYMBOLS):
        base = symbol.split("/")[0]
        instruments[(VENUE, symbol)] = Instrument(VENUE, symbol, symbol.replace("/", ""), base, "USDT",
                                                  tick_size="0.01", lot_size="0.001", min_notional="5")
        book = L2Book(VENUE, symbol)
        bids = [(100.0 - i * 0.01, 1.0 + i) for i in range(50)]
        asks = [(100.02 + i * 0.01, 1.0 + i) for i in range(50)]
        book.apply_snapshot(BookSnapshot(venue=VENUE, symbol=symbol, bids=bids, asks=asks, receive_ts_ns=now))
        book.set_health(BookHealth.SYNCING, HealthReason.SUBSCRIBED, now)
        book.set_health(BookHealth.LIVE, HealthReason.SNAPSHOT, now)
        books[(VENUE, symbol)] = book
        portfolio.on_fill(Fill(client_order_id=f"seed{n}", venue=VENUE, symbol=symbol, side=Side.BUY,
                               price=Decimal("100"), quantity=Decimal("1"), fee=Decimal("0.1"),
                               liquidity="taker"))
        portfolio.mark(VENUE, symbol, 100.01)
        for k in range(5):  # a few resting orders on both sides, for self-trade and position checks
            for side, px in ((Side.BUY, Decimal("99.50") - k), (Side.SELL, Decimal("100.50") + k)):
                orders.add(OrderIntent(client_order_id=f"rest-{base}-{side.value}-{k}", strategy="bench",
                                       venue=VENUE, symbol=symbol, side=side, quantity=Decimal("0.1"),
                                       price=px))
    published: list[Event] = []
    context = RiskContext(
        books=lambda venue, symbol: books.get((venue, symbol)),
        portfolio=portfolio,
        orders=orders,
        instruments=lambda venue, symbol: instruments.get((venue, symbol)),
        clock=clock,
        trading_state=TradingStateMachine(clock),
        settings=settings,
    )
    hook = pm.hook.botframe_check_order

    def check(intent: OrderIntent, ctx: RiskContext) -> list[Denial | None]:
        # The shape of the plugin facade's check_order over pm.hook.
        result: list[Denial | None] = hook(intent=intent, context=ctx)
        return result

    return RiskGate(check if via_pluggy else direct_risk_check(hook), context, published.append), published


def make_intents(n: int, *, deny_every: int = 0) -> list[OrderIntent]:
    """Passive limit orders inside the band; every ``deny_every``-th one is a fat finger."""
    out = []
    for i in range(n):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        side = Side.BUY if i % 2 else Side.SELL
        price = Decimal("99.90") if side is Side.BUY else Decimal("100.10")
        if deny_every and i % deny_every == 0:
            price = Decimal("150.00") if side is Side.BUY else Decimal("50.00")
        out.append(OrderIntent(client_order_id=f"b-{i}", strategy="bench", venue=VENUE, symbol=symbol,
                               side=side, quantity=Decimal("0.250"), price=price))
    return out


def run(label: str, gate: RiskGate, intents: list[OrderIntent], repeat: int) -> float:
    check = gate.check
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for intent in intents:
            check(intent)
        best = min(best, time.perf_counter() - start)
    rate = len(intents) / best
    print(f"{label:<48} {rate:>12,.0f} intents/s   {best / len(intents) * 1e6:6.2f} us/intent")
    return rate


def time_each_check(gate: RiskGate, intents: list[OrderIntent], repeat: int) -> None:
    """Cost of each built-in check called directly (no pluggy), to see where the time goes."""
    ctx = gate.context
    checks: list[tuple[str, Callable[[OrderIntent, RiskContext], object]]] = [
        ("check_sanity (core)", check_sanity),
        ("check_trading_state (core)", check_trading_state),
        *((name, getattr(risk_limits, name)) for name in risk_limits.__all__),
    ]
    for name, fn in checks:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            for intent in intents:
                fn(intent, ctx)
            best = min(best, time.perf_counter() - start)
        print(f"  {name:<46} {best / len(intents) * 1e6:6.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # Denials are logged at WARNING; the benchmark measures the gate, not a terminal's print speed.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))

    clock = SimulatedClock()
    gate, published = build_gate(clock)
    approved = make_intents(args.intents)
    resting = len(gate.context.orders.open_orders())
    print(f"risk gate: {len(risk_limits.__all__)} plugin checks + 2 core checks, {len(SYMBOLS)} symbols, "
          f"{resting} resting orders, {args.intents:,} intents, best of {args.repeat}")
    rate = run("all approved (every check runs)", gate, approved, args.repeat)
    assert gate.approved == gate.checked, "the approved run must not deny"

    run("all approved, checks through pluggy's hook call", build_gate(SimulatedClock(), via_pluggy=True)[0],
        approved, args.repeat)
    gate2, published2 = build_gate(SimulatedClock())
    run("10% denied (fat finger: published + counted)", gate2, make_intents(args.intents, deny_every=10),
        args.repeat)
    print(f"  denials published: {len(published2):,}, counts: {gate2.counts}")

    print("per check, called directly:")
    time_each_check(gate, approved[: min(len(approved), 50_000)], args.repeat)
    print(f"target >= 50,000 intents/s: {'met' if rate >= 50_000 else 'NOT met'} ({rate:,.0f})")
    del published


if __name__ == "__main__":
    main()
