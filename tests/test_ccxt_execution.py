"""The live executor through real ccxt against the simulator's Binance trading API on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import structlog

from botframe.bus import EventBus
from botframe.clock import LiveClock
from botframe.events import Fill, OrderIntent, OrderStatus, OrderType, OrderUpdate, Side, TimeInForce
from botframe.journal import Recovered
from botframe.secrets import ApiCredentials
from botframe.venues import Endpoints
from botframe_plugins.ccxt.config import CcxtExecutorSettings, UnknownOrderPolicy
from botframe_plugins.ccxt.exchange import non_loopback_urls
from botframe_plugins.ccxt.execution import CcxtExecutor
from botframe_plugins.sim.config import FaultSettings, SimAccountSettings, SimSettings, SimSymbolSettings
from botframe_plugins.sim.faults import FaultKind
from botframe_plugins.sim.server import SimServer

KEY, SECRET = "live-key-abcdef", "live-secret-123456"
SYMBOL = "BTC/USDT"
WAIT = 10.0


class Context:
    """A real ExecutorContext: a live clock, a bus, the simulator's endpoints, and a list of reports."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.clock = LiveClock()
        self.bus = EventBus()
        self.log = structlog.get_logger("test.executor")
        self.endpoints = endpoints
        self.reports: list[OrderUpdate | Fill] = []

    def book(self, venue: str, symbol: str) -> None:
        return None

    def instrument(self, venue: str, symbol: str) -> None:
        return None

    def report(self, event: OrderUpdate | Fill) -> None:
        self.reports.append(event)

    def updates(self, cid: str) -> list[OrderStatus]:
        return [r.status for r in self.reports if isinstance(r, OrderUpdate) and r.client_order_id == cid]

    def fills(self, cid: str | None = None) -> list[Fill]:
        return [r for r in self.reports if isinstance(r, Fill) and (cid is None or r.client_order_id == cid)]


def sim_settings(**kw: Any) -> SimSettings:
    return SimSettings(
        symbols=[SimSymbolSettings(symbol=SYMBOL, start_price=Decimal("60000"), tick_size=Decimal("0.01"),
                                   lot_size=Decimal("0.00001"), min_notional=Decimal("5"))],
        seed=21,
        accounts=[SimAccountSettings(api_key=KEY, secret=SECRET,
                                     balances={"USDT": Decimal("100000"), "BTC": Decimal("1")})],
        **kw,
    )


def endpoints_of(sim: SimServer) -> Endpoints:
    endpoints = Endpoints()
    endpoints.set("binance.api", sim.api_url)
    endpoints.set("binance.ws", sim.ws_url)
    endpoints.set("binance.rest", sim.rest_url)
    return endpoints


def executor_settings(**kw: Any) -> CcxtExecutorSettings:
    base: dict[str, Any] = {"exchange_id": "binance", "venue": "binance", "symbols": [SYMBOL],
                            "rest_url": "simulator", "ws_url": "simulator", "http_timeout_secs": 3.0,
                            "lookup_delay_secs": 0.05, "safety_poll_interval_secs": 0.5,
                            "poll_interval_secs": 0.2}
    base.update(kw)
    return CcxtExecutorSettings(**base)


def credentials(secret: str = SECRET) -> ApiCredentials:
    from pydantic import SecretStr

    return ApiCredentials(api_key=SecretStr(KEY), secret=SecretStr(secret), source="test")


async def until(pred: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait for a condition that network replies make true, bounded by ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            if pred():
                return
            await asyncio.sleep(0.01)


_counter = 0


def intent(side: Side = Side.BUY, qty: str = "0.01", price: str | None = None, **kw: Any) -> OrderIntent:
    global _counter
    _counter += 1
    return OrderIntent(client_order_id=f"bf-test-{_counter}", strategy="t", venue="binance", symbol=SYMBOL,
                       side=side, quantity=Decimal(qty), price=Decimal(price) if price else None,
                       order_type=OrderType.LIMIT if price else OrderType.MARKET, **kw)


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    server = SimServer(sim_settings(), clock=LiveClock())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def started(sim: SimServer, **kw: Any) -> tuple[CcxtExecutor, Context]:
    ctx = Context(endpoints_of(sim))
    creds = kw.pop("creds", credentials())
    executor = CcxtExecutor(executor_settings(**kw), ctx, credentials=creds)
    await executor.start()
    return executor, ctx


def best(sim: SimServer) -> tuple[Decimal, Decimal]:
    m = sim.model.symbol(SYMBOL)
    bid, ask = m.best_bid(), m.best_ask()
    assert bid is not None and ask is not None
    return Decimal(bid) / 100, Decimal(ask) / 100


async def test_ccxt_is_pointed_only_at_loopback(sim: SimServer) -> None:
    executor, _ctx = await started(sim)
    try:
        assert non_loopback_urls(executor.exchange) == []
    finally:
        await executor.stop()


async def test_limit_order_is_accepted_rests_and_is_cancelled(sim: SimServer) -> None:
    executor, ctx = await started(sim)
    bid, _ = best(sim)
    order = intent(price=str(bid - 5))
    try:
        executor.submit(order)
        await until(lambda: OrderStatus.ACCEPTED in ctx.updates(order.client_order_id))
        venue = sim.trading.accounts[KEY].by_client_id[order.client_order_id]
        assert venue.status == "NEW" and venue.resting

        executor.cancel(order.client_order_id)
        await until(lambda: OrderStatus.CANCELLED in ctx.updates(order.client_order_id))
    finally:
        await executor.stop()

    assert venue.status == "CANCELED"
    assert ctx.updates(order.client_order_id) == [OrderStatus.ACCEPTED, OrderStatus.CANCELLED]


async def test_market_order_fills_are_reported_exactly_once_with_exact_prices_and_fees(sim: SimServer) -> None:
    executor, ctx = await started(sim)
    order = intent(qty="0.2")
    try:
        executor.submit(order)
        await until(lambda: sum((f.quantity for f in ctx.fills(order.client_order_id)), Decimal(0)) == Decimal("0.2"))
        await asyncio.sleep(0.2)  # any duplicate from the response, the stream or a poll would arrive by now
    finally:
        await executor.stop()

    venue_fills = sim.trading.accounts[KEY].trades
    fills = ctx.fills(order.client_order_id)
    assert len(fills) == len(venue_fills) > 0
    assert sorted((f.price, f.quantity, f.fee) for f in fills) == sorted(
        (v.order.bs.spec.tick_size * v.price_ticks, v.order.bs.spec.lot_size * v.qty_lots, v.commission)
        for v in venue_fills)
    assert all(f.liquidity == "taker" for f in fills)
    assert len({f.fill_id for f in fills}) == len(fills)


async def test_resting_order_fills_partly_then_fully_from_the_market_through_the_stream(sim: SimServer) -> None:
    executor, ctx = await started(sim)
    bid, _ = best(sim)
    order = intent(qty="0.003", price=str(bid))
    try:
        executor.submit(order)
        await until(lambda: OrderStatus.ACCEPTED in ctx.updates(order.client_order_id))
        for _ in range(5000):
            sim.step_once()
            await asyncio.sleep(0)
            if sim.trading.accounts[KEY].by_client_id[order.client_order_id].status == "FILLED":
                break
        await until(lambda: sum((f.quantity for f in ctx.fills(order.client_order_id)), Decimal(0))
                    == Decimal("0.003"))
    finally:
        await executor.stop()

    fills = ctx.fills(order.client_order_id)
    assert all(f.liquidity == "maker" for f in fills)
    assert executor.orders[order.client_order_id].status is OrderStatus.FILLED


async def test_order_accepted_but_timed_out_is_found_by_client_id_and_not_resubmitted() -> None:
    server = SimServer(sim_settings(faults=FaultSettings(order_timeout_ms=3000)), clock=LiveClock())
    await server.start()
    executor, ctx = await started(server, http_timeout_secs=0.5)
    bid, _ = best(server)
    order = intent(price=str(bid - 3))
    try:
        server.inject(FaultKind.ORDER_TIMEOUT)
        executor.submit(order)
        await until(lambda: OrderStatus.ACCEPTED in ctx.updates(order.client_order_id))
        await until(lambda: executor.counters.get("recovered_by_lookup", 0) == 1
                    or executor.counters.get("create_error.network", 0) == 1)
        await asyncio.sleep(0.3)
    finally:
        await executor.stop()
        await server.stop()

    placed = [o for o in server.trading.orders.values() if o.client_order_id == order.client_order_id]
    assert len(placed) == 1, "the order exists once at the venue"
    assert executor.counters.get("create_error.network") == 1
    assert executor.counters.get("resubmits", 0) == 0
    assert server.faults.fired[FaultKind.ORDER_TIMEOUT] == 1


async def test_wrong_secret_gives_one_clear_auth_error_and_no_retry_storm() -> None:
    server = SimServer(sim_settings(), clock=LiveClock())
    await server.start()
    ctx = Context(endpoints_of(server))
    executor = CcxtExecutor(executor_settings(use_websocket=False), ctx, credentials=credentials("wrong"))
    try:
        # Reconciliation is the first authenticated call: start refuses with the venue's message.
        with pytest.raises(Exception, match="Signature for this request is not valid"):
            await executor.start()
        requests_after_start = server.counters["api_requests"]
    finally:
        await executor.stop()
        await server.stop()

    assert requests_after_start <= 3  # exchangeInfo, then the one refused signed call (no retries)


async def test_auth_failure_while_trading_rejects_later_orders_without_requests(sim: SimServer) -> None:
    executor, ctx = await started(sim, use_websocket=False)
    try:
        sim.trading.accounts[KEY].secret = "rotated"  # the venue no longer accepts our secret
        first, second = intent(qty="0.01"), intent(qty="0.01")
        executor.submit(first)
        await until(lambda: OrderStatus.REJECTED in ctx.updates(first.client_order_id))
        before = sim.counters["api_requests"]
        executor.submit(second)
        await until(lambda: OrderStatus.REJECTED in ctx.updates(second.client_order_id))
        after = sim.counters["api_requests"]
    finally:
        await executor.stop()

    reasons = [r.reason for r in ctx.reports if isinstance(r, OrderUpdate) and r.status is OrderStatus.REJECTED]
    assert all(r.startswith("auth failed") for r in reasons)
    assert "Signature for this request is not valid" in reasons[0]
    assert after == before


@pytest.mark.parametrize(("make", "prefix", "venue_text"), [
    (lambda: intent(side=Side.SELL, qty="5", price="60000"), "insufficient funds",
     "insufficient balance"),
    (lambda: intent(qty="0.01", price="100"), "below minimum notional", "NOTIONAL"),
])
async def test_exchange_errors_become_clear_rejections_keeping_the_venue_message(
        sim: SimServer, make: Callable[[], OrderIntent], prefix: str, venue_text: str) -> None:
    executor, ctx = await started(sim, use_websocket=False)
    order = make()
    try:
        executor.submit(order)
        await until(lambda: OrderStatus.REJECTED in ctx.updates(order.client_order_id))
    finally:
        await executor.stop()

    update = next(r for r in ctx.reports if isinstance(r, OrderUpdate))
    assert update.reason.startswith(prefix) and venue_text in update.reason


async def test_rate_limited_orders_are_rejected_as_rate_limited() -> None:
    server = SimServer(sim_settings(orders_per_10s=1), clock=LiveClock())
    await server.start()
    executor, ctx = await started(server, use_websocket=False)
    bid, _ = best(server)
    first, second = intent(price=str(bid - 10)), intent(price=str(bid - 11))
    try:
        executor.submit(first)
        executor.submit(second)
        await until(lambda: OrderStatus.REJECTED in ctx.updates(second.client_order_id))
    finally:
        await executor.stop()
        await server.stop()

    update = next(r for r in ctx.reports if isinstance(r, OrderUpdate) and r.status is OrderStatus.REJECTED)
    assert update.reason.startswith("rate limited") and "-1015" in update.reason


async def test_ioc_without_liquidity_expires(sim: SimServer) -> None:
    executor, ctx = await started(sim)
    bid, _ = best(sim)
    order = intent(price=str(bid - 50), time_in_force=TimeInForce.IOC)
    try:
        executor.submit(order)
        await until(lambda: OrderStatus.EXPIRED in ctx.updates(order.client_order_id))
    finally:
        await executor.stop()


async def test_replace_cancels_then_places_the_new_order(sim: SimServer) -> None:
    executor, ctx = await started(sim)
    bid, _ = best(sim)
    order = intent(price=str(bid - 5))
    try:
        executor.submit(order)
        await until(lambda: OrderStatus.ACCEPTED in ctx.updates(order.client_order_id))
        executor.replace(order.client_order_id, "bf-test-replacement", quantity=Decimal("0.02"),
                         price=bid - 6)
        await until(lambda: OrderStatus.ACCEPTED in ctx.updates("bf-test-replacement"))
    finally:
        await executor.stop()

    account = sim.trading.accounts[KEY]
    assert account.by_client_id[order.client_order_id].status == "CANCELED"
    new = account.by_client_id["bf-test-replacement"]
    assert new.status == "NEW" and new.qty_lots == 2000


async def test_polling_mode_reports_fills_without_the_websocket(sim: SimServer) -> None:
    executor, ctx = await started(sim, use_websocket=False)
    order = intent(qty="0.05")
    try:
        executor.submit(order)
        await until(lambda: sum((f.quantity for f in ctx.fills(order.client_order_id)), Decimal(0))
                    == Decimal("0.05"))
    finally:
        await executor.stop()

    assert sim.counters["user_connections"] == 0


async def test_reconciliation_carries_on_journal_orders_cancels_unknown_ones_and_finds_missing_fills(
        sim: SimServer) -> None:
    # A first run places two orders and "crashes" (stops without cancelling): one rests, one filled.
    first, ctx1 = await started(sim)
    bid, _ = best(sim)
    resting, taken = intent(price=str(bid - 7)), intent(qty="0.01")
    first.submit(resting)
    first.submit(taken)
    await until(lambda: OrderStatus.ACCEPTED in ctx1.updates(resting.client_order_id)
                and len(ctx1.fills(taken.client_order_id)) > 0)
    await first.stop()
    # An order the journal never saw (placed by hand, or by a run whose journal was lost).
    stranger = sim.trading.new_order(sim.trading.accounts[KEY], {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
        "price": f"{bid - 9}", "newClientOrderId": "manual-1"}, 0)
    # The journal of the first run lost its fills (the process died before the batch committed).
    recovered = Recovered(
        open_orders=[OrderUpdate(client_order_id=i.client_order_id, venue="binance", symbol=SYMBOL,
                                 status=OrderStatus.NEW, side=i.side, quantity=i.quantity, price=i.price)
                     for i in (resting, taken)],
        intents={i.client_order_id: i for i in (resting, taken)}, fills=[], trading_state=None,
        max_client_order_counter=0)

    ctx2 = Context(endpoints_of(sim))
    second = CcxtExecutor(executor_settings(unknown_orders=UnknownOrderPolicy.CANCEL), ctx2,
                          credentials=credentials())
    second.restore_journal(recovered)
    await second.start()
    orders_before = len(sim.trading.orders)
    await second.stop()

    report = second.reconciliation
    assert report is not None
    assert report.carried_on == [resting.client_order_id]
    assert report.finished_while_away == {taken.client_order_id: "closed"}
    assert report.missing_fills == len(ctx1.fills(taken.client_order_id))
    assert list(report.unknown_orders) == ["manual-1"] and report.unknown_orders["manual-1"].startswith("cancelled")
    assert stranger["status"] == "NEW" and sim.trading.orders[stranger["orderId"]].status == "CANCELED"
    assert len(sim.trading.orders) == orders_before, "reconciliation submits nothing"
    assert sum((f.quantity for f in ctx2.fills(taken.client_order_id)), Decimal(0)) == taken.quantity


async def test_reconciliation_of_a_clean_restart_is_clean(sim: SimServer) -> None:
    first, ctx1 = await started(sim)
    order = intent(qty="0.01")
    first.submit(order)
    await until(lambda: len(ctx1.fills(order.client_order_id)) > 0)
    await first.stop()
    fills = ctx1.fills()
    recovered = Recovered(open_orders=[], intents={}, fills=fills, trading_state=None,
                          max_client_order_counter=0, positions={("binance", SYMBOL): Decimal("0.01")})

    ctx2 = Context(endpoints_of(sim))
    second = CcxtExecutor(executor_settings(), ctx2, credentials=credentials())
    second.restore_journal(recovered)
    await second.start()
    await second.stop()

    assert second.reconciliation is not None and second.reconciliation.clean
    assert ctx2.reports == []


async def test_halt_cancels_every_open_order_on_the_venue(sim: SimServer) -> None:
    from botframe.events import TradingState, TradingStateChanged

    executor, ctx = await started(sim, unknown_orders=UnknownOrderPolicy.IGNORE)
    bid, _ = best(sim)
    ours = intent(price=str(bid - 4))
    executor.submit(ours)
    await until(lambda: OrderStatus.ACCEPTED in ctx.updates(ours.client_order_id))
    foreign = sim.trading.new_order(sim.trading.accounts[KEY], {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01",
        "price": f"{bid - 8}", "newClientOrderId": "by-hand"}, 0)
    try:
        ctx.bus.publish(TradingStateChanged(previous=TradingState.ACTIVE, state=TradingState.HALTED,
                                            reason="kill switch"))
        await until(lambda: not any(o.is_open for o in sim.trading.orders.values()))
    finally:
        await executor.stop()

    assert sim.trading.orders[foreign["orderId"]].status == "CANCELED"
    assert OrderStatus.CANCELLED in ctx.updates(ours.client_order_id)
