"""The live executor: real orders on any exchange ccxt supports, reported as botframe order updates and fills.

Life of an order::

    submit(intent) --task--> create_order(clientOrderId=<botframe id>)
        ok            -> the venue's order (ACCEPTED / fills follow)
        refused       -> REJECTED with a clear reason and the venue's message (auth, funds, price, rate...)
        timeout/lost  -> look the order up by its client id (several tries); found: carry on with it;
                         proven absent: resubmit with the same client id (at most max_resubmits);
                         still unknown: keep looking on every poll, never resubmit blindly

Updates come from ccxt's WebSocket ``watch_orders`` / ``watch_my_trades`` where the exchange has them
(Binance spot: the WebSocket API user data stream), with a slow safety poll beside them, or from polling
``fetch_order`` / ``fetch_my_trades`` otherwise. Fills come from the exchange's trades (exact price, fee and
liquidity per execution) and are reported once each (``fill_id`` = exchange, market and trade id); order
statuses come from orders. A terminal status whose fills have not all arrived yet is held back until they
have, so the order tracker never sees a finished order before its fills.

Start-up reconciliation (:meth:`CcxtExecutor.start`) compares the venue's open orders, balances and recent
fills with what the journal recovered (:meth:`CcxtExecutor.restore_journal`): journal orders still open
are carried on, finished ones get their final state, fills the journal lacks are reported, and open orders
the journal does not know are adopted, cancelled or left alone as ``unknown_orders`` says. Everything is
logged and summarized in :attr:`CcxtExecutor.reconciliation` before trading starts.

On ``HALTED`` (the kill switch) the executor cancels every open order it finds on the venue, not only
those the engine tracks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec

from botframe.events import (
    OrderIntent,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
    TimeInForce,
    TradingState,
    TradingStateChanged,
)
from botframe.secrets import ApiCredentials, load_credentials

from .config import CcxtExecutorSettings, UnknownOrderPolicy
from .exchange import ErrorKind, Rejection, classify_error, create_exchange, non_loopback_urls, override_urls
from .parsing import dec, fill_from_trade, scrub, status_from_order

if TYPE_CHECKING:
    from botframe.execution import ExecutorContext
    from botframe.journal import Recovered
    from botframe.venues import Endpoints

__all__ = [
    "CcxtExecutor",
    "LiveOrder",
    "ReconciliationReport",
    "build_exchange",
    "resolve_urls",
]

_SIM_REST = "binance.api"
_SIM_WS = "binance.ws"


def resolve_urls(settings: CcxtExecutorSettings | Any, endpoints: Endpoints | None) -> tuple[str, str]:
    """The REST and WebSocket base URLs to override ccxt's with ("" = keep ccxt's own)."""
    rest, ws = settings.rest_url, settings.ws_url
    if endpoints is not None:
        rest = endpoints.resolve(rest, _SIM_REST) if rest else ""
        ws = endpoints.resolve(ws, _SIM_WS) if ws else ""
    elif "simulator" in (rest, ws):
        raise LookupError("the URLs are set to 'simulator' but no simulator is running")
    return rest, ws


@dataclass(slots=True)
class LiveOrder:
    """What the executor knows about one of our orders on the venue."""

    intent: OrderIntent
    venue_order_id: str = ""
    status: OrderStatus = OrderStatus.NEW  # the last status we reported
    reported_filled: Decimal = Decimal(0)  # the sum of the fills we reported
    venue_filled: Decimal = Decimal(0)  # the venue's cumulative filled quantity, as last seen
    fill_ids: set[str] = field(default_factory=set)
    deferred: OrderUpdate | None = None  # a terminal status waiting for its fills
    cancel_requested: bool = False
    lost: bool = False  # a network error left its state unknown; looked up on every poll
    resubmits: int = 0
    placing: asyncio.Task[None] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@dataclass(slots=True)
class ReconciliationReport:
    """What start-up reconciliation found and did."""

    venue_open_orders: int = 0
    carried_on: list[str] = field(default_factory=list)  # journal orders still open at the venue
    finished_while_away: dict[str, str] = field(default_factory=dict)  # client id -> final status
    missing_at_venue: list[str] = field(default_factory=list)  # journal open orders the venue does not know
    missing_fills: int = 0  # fills at the venue the journal did not have (now reported)
    foreign_fills: int = 0  # fills of orders not placed by botframe (another client id), left alone
    unknown_orders: dict[str, str] = field(default_factory=dict)  # venue client id -> action taken
    balances: dict[str, Decimal] = field(default_factory=dict)
    journal_positions: dict[str, Decimal] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.finished_while_away or self.missing_at_venue or self.missing_fills
                    or self.unknown_orders or self.differences)


class CcxtExecutor:
    """An :class:`~botframe.execution.Executor` trading on a real venue through ccxt; see the module docstring."""

    #: Orders on a live venue outlive a restart of the bot (the engine should reconcile, not expire, them).
    survives_restart = True

    def __init__(self, settings: CcxtExecutorSettings, context: ExecutorContext, *,
                 credentials: ApiCredentials | None = None) -> None:
        self.settings = settings
        self._context = context
        self._log = context.log.bind(executor="ccxt", exchange=settings.exchange_id)
        self._credentials = credentials
        self.exchange: Any = None
        self.orders: dict[str, LiveOrder] = {}
        self._by_venue_id: dict[str, LiveOrder] = {}
        self._orphan_trades: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchers: list[asyncio.Task[None]] = []
        self._auth_failure: Rejection | None = None
        self._ws_ok = False
        self._subscribed = False
        self._trades_since: dict[str, int] = {}
        self._journal: Recovered | None = None
        self._journal_positions: dict[tuple[str, str], Decimal] = {}
        self.reconciliation: ReconciliationReport | None = None
        self.counters: dict[str, int] = {}
        self._started_ms = 0
        self._reconciling = False
        self._fills_at_reconciliation = 0

    # -- the Executor protocol ---------------------------------------------------------------------------

    def restore(self, recovered: Recovered) -> Collection[str]:
        """Keep every recovered open order: the venue still works them; :meth:`start` reconciles."""
        self.restore_journal(recovered)
        return [u.client_order_id for u in recovered.open_orders if u.client_order_id in recovered.intents]

    def restore_journal(self, recovered: Recovered) -> None:
        """What the journal recovered (open orders, their intents, fills), reconciled in :meth:`start`."""
        self._journal = recovered
        self._journal_positions = dict(recovered.positions)

    async def start(self) -> None:
        """Connect, authenticate, reconcile with the venue, then subscribe to order updates."""
        s = self.settings
        if self._credentials is None:
            self._credentials = load_credentials(
                api_key_env=s.api_key_env, secret_env=s.secret_env, password_env=s.password_env,
                secrets_file=s.secrets_file or None, section=s.secrets_section)
        rest, ws = resolve_urls(s, self._context.endpoints)
        self.exchange = build_exchange(s, self._credentials, rest, ws)
        self._started_ms = self._context.clock.time_ns() // 1_000_000
        try:
            await self.exchange.load_markets()
            await self._reconcile()
        except BaseException:
            await self.exchange.close()
            self.exchange = None
            raise
        bus = self._context.bus
        bus.subscribe(TradingStateChanged, self._on_trading_state)
        self._subscribed = True
        if s.use_websocket and self.exchange.has.get("watchOrders") and self.exchange.has.get("watchMyTrades"):
            self._watchers.append(self._own_task(self._watch("orders"), "ccxt.watch-orders"))
            self._watchers.append(self._own_task(self._watch("trades"), "ccxt.watch-trades"))
            await self._authenticate_stream()
        self._watchers.append(self._own_task(self._poll_loop(), "ccxt.poll"))
        self._log.info("live executor started", venue=s.venue, websocket=self._ws_ok,
                       credentials=self._credentials.source)

    async def stop(self) -> None:
        """Let requests in flight finish (bounded), stop watching and close the exchange."""
        if self._subscribed:
            self._context.bus.unsubscribe(TradingStateChanged, self._on_trading_state)
            self._subscribed = False
        pending = [t for t in self._tasks if t not in self._watchers and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.stop_timeout_secs)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._watchers.clear()
        if self.exchange is not None:
            await self.exchange.close()
            self.exchange = None
        self._log.info("live executor stopped", **self.counters)

    def submit(self, intent: OrderIntent) -> None:
        """Send an approved order (a task; the result comes back as reports)."""
        if intent.client_order_id in self.orders:
            self._log.warning("submit of a client order id already sent ignored",
                              client_order_id=intent.client_order_id)
            return
        live = LiveOrder(intent)
        self.orders[intent.client_order_id] = live
        if self._auth_failure is not None:
            # One clear auth error, then no more requests: a wrong key must not become a retry storm.
            self._report(live, OrderStatus.REJECTED, reason=self._auth_failure.reason)
            return
        live.placing = self._own_task(self._place(live), f"ccxt.place:{intent.client_order_id}")

    def cancel(self, client_order_id: str) -> None:
        """Ask the venue to cancel one of our orders."""
        live = self.orders.get(client_order_id)
        if live is None:
            self._log.warning("cancel of an order this executor never sent", client_order_id=client_order_id)
            return
        if live.is_terminal:
            return
        live.cancel_requested = True
        self._own_task(self._cancel(live), f"ccxt.cancel:{client_order_id}")

    def replace(self, client_order_id: str, new_client_order_id: str, *, quantity: Decimal,
                price: Decimal | None) -> None:
        """Cancel the order, then send the new one (ccxt has no amend that every venue supports)."""
        old = self.orders.get(client_order_id)
        if old is None:
            self._log.warning("replace of an order this executor never sent", client_order_id=client_order_id)
            return
        new_intent = msgspec.structs.replace(
            old.intent, client_order_id=new_client_order_id, quantity=quantity,
            price=price if price is not None else old.intent.price, ts_ns=self._context.clock.time_ns())
        new = LiveOrder(new_intent)
        self.orders[new_client_order_id] = new
        old.cancel_requested = True
        new.placing = self._own_task(self._replace(old, new), f"ccxt.replace:{client_order_id}")

    # -- placing, cancelling ------------------------------------------------------------------------------

    def _order_args(self, intent: OrderIntent) -> tuple[str, str, str, str, str | None, dict[str, Any]]:
        params: dict[str, Any] = {"clientOrderId": intent.client_order_id}
        otype = "market" if intent.order_type is OrderType.MARKET else "limit"
        if otype == "limit":
            if intent.post_only:
                params["postOnly"] = True
            elif intent.time_in_force is not TimeInForce.GTC:
                params["timeInForce"] = intent.time_in_force.value.upper()
        price = str(intent.price) if otype == "limit" and intent.price is not None else None
        return intent.symbol, otype, intent.side.value, str(intent.quantity), price, params

    async def _place(self, live: LiveOrder) -> None:
        symbol, otype, side, amount, price, params = self._order_args(live.intent)
        while True:
            try:
                order = await self.exchange.create_order(symbol, otype, side, amount, price, params)
            except Exception as exc:
                rejection = classify_error(exc)
                self._count(f"create_error.{rejection.kind.name.lower()}")
                if rejection.kind is ErrorKind.AUTH_FAILED:
                    self._auth_failed(rejection)
                if not rejection.maybe_executed:
                    self._log.warning("order rejected", client_order_id=live.intent.client_order_id,
                                      kind=rejection.kind.value, message=scrub(rejection.message))
                    self._report(live, OrderStatus.REJECTED, reason=scrub(rejection.reason))
                    return
                self._log.warning("order request lost; looking it up by client id before anything else",
                                  client_order_id=live.intent.client_order_id, error=scrub(rejection.message))
                state, found = await self._lookup(live)
                if state == "found" and found is not None:
                    self._count("recovered_by_lookup")
                    self._on_order(found)
                    return
                if state == "absent" and live.resubmits < self.settings.max_resubmits:
                    live.resubmits += 1
                    self._count("resubmits")
                    self._log.info("order proven absent at the venue; resubmitting with the same client id",
                                   client_order_id=live.intent.client_order_id)
                    continue
                if state == "absent":
                    self._report(live, OrderStatus.REJECTED,
                                 reason=scrub(f"{rejection.reason}; not at the venue after lookups"))
                    return
                live.lost = True
                self._count("lost")
                self._log.error("order state unknown after a network error; it is looked up on every poll and "
                                "never resubmitted", client_order_id=live.intent.client_order_id)
                return
            self._count("orders_placed")
            self._on_order(order)
            for trade in order.get("trades") or ():
                if trade.get("id") is not None:
                    self._on_trade({**trade, "order": trade.get("order") or order.get("id"),
                                    "symbol": trade.get("symbol") or symbol})
            return

    async def _lookup(self, live: LiveOrder) -> tuple[str, dict[str, Any] | None]:
        """Find an order by client id: ("found", order), ("absent", None) or ("unknown", None)."""
        s = self.settings
        absent = 0
        for attempt in range(s.lookup_attempts):
            if attempt:
                await asyncio.sleep(s.lookup_delay_secs)
            if live.venue_order_id:  # the user stream already told us about it
                return "found", {"id": live.venue_order_id, "clientOrderId": live.intent.client_order_id,
                                 "status": "open", "filled": float(live.venue_filled)}
            try:
                order = await self.exchange.fetch_order(
                    "", live.intent.symbol, {"clientOrderId": live.intent.client_order_id})
            except Exception as exc:
                rejection = classify_error(exc)
                if rejection.kind is ErrorKind.ORDER_NOT_FOUND:
                    absent += 1
                    continue
                if rejection.kind is ErrorKind.AUTH_FAILED:
                    self._auth_failed(rejection)
                    return "unknown", None
                continue
            return "found", order
        # Absent only when every answer said so: one lost lookup leaves the order unknown.
        return ("absent" if absent == s.lookup_attempts else "unknown"), None

    async def _cancel(self, live: LiveOrder) -> bool:
        """Cancel on the venue; True when the order ended cancelled (or was already gone unfilled)."""
        if live.placing is not None and not live.placing.done() and live.placing is not asyncio.current_task():
            await asyncio.wait([live.placing])
        if live.is_terminal:
            return live.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED)
        if live.lost:
            state, found = await self._lookup(live)
            if state == "found" and found is not None:
                live.lost = False
                self._on_order(found)
            elif state == "absent":
                live.lost = False
                self._report(live, OrderStatus.CANCELLED, reason="cancelled: never reached the venue")
                return True
        for _attempt in range(3):
            params = {} if live.venue_order_id else {"clientOrderId": live.intent.client_order_id}
            try:
                order = await self.exchange.cancel_order(live.venue_order_id, live.intent.symbol, params)
            except Exception as exc:
                rejection = classify_error(exc)
                self._count(f"cancel_error.{rejection.kind.name.lower()}")
                if rejection.kind is ErrorKind.NETWORK:
                    continue  # a cancel is safe to repeat
                if rejection.kind is ErrorKind.ORDER_NOT_FOUND:
                    state, found = await self._lookup(live)
                    if state == "found" and found is not None:
                        self._on_order(found)
                    elif state == "absent":
                        self._report(live, OrderStatus.CANCELLED, reason="cancelled: not at the venue")
                    return live.status in (OrderStatus.CANCELLED, OrderStatus.EXPIRED)
                if rejection.kind is ErrorKind.AUTH_FAILED:
                    self._auth_failed(rejection)
                self._refuse_cancel(live, rejection)
                return False
            self._count("orders_cancelled")
            if order.get("status") is None:
                order = {**order, "status": "canceled"}
            self._on_order(order)
            return True
        self._refuse_cancel(live, Rejection(ErrorKind.NETWORK, "cancel not confirmed after 3 tries"))
        return False

    def _refuse_cancel(self, live: LiveOrder, rejection: Rejection) -> None:
        self._log.warning("cancel refused", client_order_id=live.intent.client_order_id,
                          kind=rejection.kind.value, message=scrub(rejection.message))
        live.cancel_requested = False
        if not live.is_terminal:
            status = OrderStatus.PARTIALLY_FILLED if live.reported_filled else OrderStatus.ACCEPTED
            self._report(live, status, reason=scrub(f"cancel refused: {rejection.reason}"))

    async def _replace(self, old: LiveOrder, new: LiveOrder) -> None:
        cancelled = await self._cancel(old)
        if not cancelled:
            self._report(new, OrderStatus.REJECTED,
                         reason=f"replace: the order {old.intent.client_order_id} could not be cancelled "
                                f"(it is {old.status.value})")
            return
        await self._place(new)

    def _auth_failed(self, rejection: Rejection) -> None:
        if self._auth_failure is None:
            self._auth_failure = rejection
            self._log.error("the venue refused our API key; no more orders will be sent until restart",
                            message=scrub(rejection.message))

    # -- updates ----------------------------------------------------------------------------------------

    def _match(self, order: Mapping[str, Any]) -> LiveOrder | None:
        venue_id = order.get("id")
        if venue_id:
            live = self._by_venue_id.get(str(venue_id))
            if live is not None:
                return live
        client_id = order.get("clientOrderId")
        if client_id:
            return self.orders.get(str(client_id))
        return None

    def _on_order(self, order: Mapping[str, Any]) -> None:
        """Apply one ccxt order structure (from a response, a lookup, a poll or the WebSocket)."""
        live = self._match(order)
        if live is None:
            self._count("updates_for_unknown_orders")
            return
        venue_id = order.get("id")
        if venue_id and not live.venue_order_id:
            live.venue_order_id = str(venue_id)
            self._by_venue_id[live.venue_order_id] = live
            for trade in self._orphan_trades.pop(live.venue_order_id, []):
                self._on_trade(trade)
        live.lost = False
        filled = dec(order.get("filled"))
        if filled > live.venue_filled:
            live.venue_filled = filled
        if live.is_terminal:
            return
        status = status_from_order(order)
        if status is None or status is OrderStatus.FILLED:
            if live.reported_filled < live.venue_filled:
                self._want_trades(live.intent.symbol)
            return  # fills move the order to PARTIALLY_FILLED / FILLED
        if status is OrderStatus.ACCEPTED:
            if live.status is OrderStatus.NEW and not live.cancel_requested:
                self._report(live, OrderStatus.ACCEPTED)
            return
        reason = str(order.get("info", {}).get("X", "")) if isinstance(order.get("info"), dict) else ""
        update = self._update(live, status, reason=reason if reason.startswith("EXPIRED_IN") else "")
        if live.reported_filled < live.venue_filled:
            live.deferred = update  # wait for the fills the venue already counted
            self._want_trades(live.intent.symbol)
            return
        self._emit(live, update)

    def _on_trade(self, trade: Mapping[str, Any]) -> None:
        order_id = str(trade.get("order") or "")
        live = self._by_venue_id.get(order_id)
        if live is None:
            if order_id:
                orphans = self._orphan_trades.setdefault(order_id, [])
                if len(orphans) < 1000:
                    orphans.append(dict(trade))
            return
        market = self.exchange.markets.get(live.intent.symbol) if self.exchange is not None else None
        base, quote = (market["base"], market["quote"]) if market else live.intent.symbol.split("/", 1)
        fill = fill_from_trade(trade, live, exchange_id=self.settings.exchange_id, quote=quote, base=base,
                               now_ns=self._context.clock.time_ns())
        if fill is None or fill.fill_id in live.fill_ids:
            return
        live.fill_ids.add(fill.fill_id)
        live.reported_filled += fill.quantity
        if live.reported_filled > live.venue_filled:
            live.venue_filled = live.reported_filled
        if fill.ts_ns // 1_000_000 > self._trades_since.get(live.intent.symbol, 0):
            self._trades_since[live.intent.symbol] = fill.ts_ns // 1_000_000
        self._count("fills")
        if self._reconciling:
            self._fills_at_reconciliation += 1
        self._context.report(fill)
        if live.reported_filled >= live.intent.quantity:
            live.deferred = None
            if not live.is_terminal:
                # The fill already moved the tracker to FILLED; the update puts the end in the journal too.
                self._report(live, OrderStatus.FILLED)
        elif not live.is_terminal:
            live.status = OrderStatus.PARTIALLY_FILLED
        if live.deferred is not None and live.reported_filled >= live.venue_filled:
            update, live.deferred = live.deferred, None
            self._emit(live, msgspec.structs.replace(update, filled_quantity=live.reported_filled))

    def _update(self, live: LiveOrder, status: OrderStatus, *, reason: str = "") -> OrderUpdate:
        intent = live.intent
        return OrderUpdate(
            client_order_id=intent.client_order_id, venue=intent.venue, symbol=intent.symbol, status=status,
            side=intent.side, quantity=intent.quantity, filled_quantity=live.reported_filled, price=intent.price,
            venue_order_id=live.venue_order_id, reason=reason, ts_ns=self._context.clock.time_ns())

    def _report(self, live: LiveOrder, status: OrderStatus, *, reason: str = "") -> None:
        self._emit(live, self._update(live, status, reason=reason))

    def _emit(self, live: LiveOrder, update: OrderUpdate) -> None:
        live.status = update.status
        self._context.report(update)

    def _want_trades(self, symbol: str) -> None:
        """Fetch a symbol's recent trades soon (fills the venue counted but we have not seen)."""
        if any(t.get_name() == f"ccxt.trades:{symbol}" for t in self._tasks if not t.done()):
            return
        self._own_task(self._fetch_trades(symbol), f"ccxt.trades:{symbol}")

    async def _fetch_trades(self, symbol: str) -> None:
        if self._ws_ok:
            await asyncio.sleep(0.05)  # the stream usually brings them first: give it a moment
        waiting = [o for o in self.orders.values() if o.intent.symbol == symbol
                   and o.reported_filled < o.venue_filled]
        if not waiting:
            return
        since = self._trades_since.get(symbol, self._started_ms) - 60_000
        try:
            trades = await self.exchange.fetch_my_trades(symbol, since)
        except Exception as exc:
            self._count("trade_fetch_errors")
            self._log.warning("fetching recent fills failed", symbol=symbol, error=scrub(str(exc)))
            return
        for trade in trades:
            self._on_trade(trade)

    # -- WebSocket and polling --------------------------------------------------------------------------

    async def _authenticate_stream(self) -> None:
        """Open the user data stream now, so no update of the first orders is missed (where ccxt can)."""
        authenticate = getattr(self.exchange, "authenticate", None)
        if authenticate is None:
            self._ws_ok = True
            return
        try:
            async with asyncio.timeout(self.settings.http_timeout_secs):
                await authenticate()
            self._ws_ok = True
        except Exception as exc:
            self._count("stream_auth_errors")
            self._log.warning("user data stream not available; polling instead", error=scrub(str(exc)))

    async def _watch(self, what: str) -> None:
        delay = 0.5
        while True:
            try:
                if what == "orders":
                    for order in await self.exchange.watch_orders():
                        self._on_order(order)
                else:
                    for trade in await self.exchange.watch_my_trades():
                        self._on_trade(trade)
                self._ws_ok = True
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._ws_ok = False
                self._count(f"watch_{what}_errors")
                rejection = classify_error(exc)
                self._log.warning("user data stream failed; polling until it is back", stream=what,
                                  error=scrub(rejection.message))
                if rejection.kind is ErrorKind.AUTH_FAILED:
                    self._auth_failed(rejection)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _poll_loop(self) -> None:
        s = self.settings
        while True:
            await asyncio.sleep(s.safety_poll_interval_secs if self._ws_ok else s.poll_interval_secs)
            if self._auth_failure is not None:
                continue
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._count("poll_errors")
                self._log.warning("polling the venue failed", error=scrub(str(exc)))

    async def _poll_once(self) -> None:
        symbols: set[str] = set()
        for live in list(self.orders.values()):
            if live.is_terminal or (live.placing is not None and not live.placing.done()):
                continue
            if live.lost:
                state, found = await self._lookup(live)
                if state == "found" and found is not None:
                    self._on_order(found)
                continue
            if not live.venue_order_id:
                continue
            order = await self.exchange.fetch_order(live.venue_order_id, live.intent.symbol)
            self._on_order(order)
            symbols.add(live.intent.symbol)
        for live in self.orders.values():
            if live.reported_filled < live.venue_filled:
                symbols.add(live.intent.symbol)
        for symbol in symbols:
            await self._fetch_trades(symbol)

    def _on_trading_state(self, event: TradingStateChanged) -> None:
        if event.state is TradingState.HALTED:
            self._own_task(self._cancel_everything(), "ccxt.halt")

    async def _cancel_everything(self) -> None:
        """The kill switch: cancel every open order on the venue (also those the engine does not track)."""
        try:
            venue_open = await self.exchange.fetch_open_orders()
        except Exception as exc:
            self._log.error("halt: listing open orders on the venue failed", error=scrub(str(exc)))
            return
        self._log.warning("halt: cancelling every open order on the venue", open_orders=len(venue_open))
        for order in venue_open:
            live = self._match(order)
            if live is not None:
                if not live.is_terminal:
                    live.cancel_requested = True
                    await self._cancel(live)
                continue
            try:
                await self.exchange.cancel_order(order["id"], order["symbol"])
                self._count("halt_cancelled_unknown")
            except Exception as exc:
                self._log.error("halt: cancel failed", venue_order_id=order.get("id"), error=scrub(str(exc)))

    # -- reconciliation ---------------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Compare the venue with the journal before trading; see the module docstring."""
        self._reconciling = True
        try:
            await self._reconcile_now()
        finally:
            self._reconciling = False

    async def _reconcile_now(self) -> None:
        s = self.settings
        report = ReconciliationReport()
        ex = self.exchange
        journal = self._journal
        journal_open = {u.client_order_id: u for u in journal.open_orders} if journal is not None else {}
        intents = journal.intents if journal is not None else {}
        journal_fill_ids = {f.fill_id for f in journal.fills if f.fill_id} if journal is not None else set()
        venue_open = await ex.fetch_open_orders()
        report.venue_open_orders = len(venue_open)
        balance = await ex.fetch_balance()
        report.balances = {asset: dec(total) for asset, total in (balance.get("total") or {}).items() if total}
        symbols = set(s.symbols) | {u.symbol for u in journal_open.values()}
        if journal is not None:
            symbols |= {f.symbol for f in journal.fills}
        symbols |= {str(o["symbol"]) for o in venue_open}
        # 1. journal orders: carry on those still open, learn the fate of the others
        open_by_client = {str(o.get("clientOrderId")): o for o in venue_open if o.get("clientOrderId")}
        for cid, update in journal_open.items():
            intent = intents.get(cid) or OrderIntent(
                client_order_id=cid, strategy="", venue=update.venue, symbol=update.symbol, side=update.side,
                quantity=update.quantity, price=update.price, ts_ns=update.ts_ns)
            live = LiveOrder(intent, status=update.status if update.status is not OrderStatus.NEW
                             else OrderStatus.NEW, reported_filled=update.filled_quantity)
            live.fill_ids = {f.fill_id for f in journal.fills if f.client_order_id == cid} if journal else set()
            self.orders[cid] = live
            found = open_by_client.get(cid)
            if found is None:
                state, found_closed = await self._lookup(live)
                if state == "found" and found_closed is not None:
                    self._on_order(found_closed)
                    report.finished_while_away[cid] = str(found_closed.get("status"))
                else:
                    report.missing_at_venue.append(cid)
                    self._report(live, OrderStatus.EXPIRED, reason="reconciliation: not found at the venue")
                continue
            report.carried_on.append(cid)
            self._on_order(found)
        # 2. open orders the journal does not know
        for order in venue_open:
            cid = str(order.get("clientOrderId") or "")
            if cid in journal_open:
                continue
            action = s.unknown_orders
            label = f"{order.get('symbol')} {order.get('side')} {order.get('amount')} @ {order.get('price')}"
            if action is UnknownOrderPolicy.CANCEL:
                try:
                    await ex.cancel_order(order["id"], order["symbol"])
                    report.unknown_orders[cid or str(order["id"])] = f"cancelled ({label})"
                except Exception as exc:
                    report.unknown_orders[cid or str(order["id"])] = f"cancel failed: {scrub(str(exc))}"
            elif action is UnknownOrderPolicy.ADOPT:
                live = self._adopt(order)
                report.unknown_orders[live.intent.client_order_id] = f"adopted ({label})"
            else:
                report.unknown_orders[cid or str(order["id"])] = f"left alone ({label})"
        # 3. fills at the venue the journal lacks (of orders we know)
        since = self._started_ms - int(s.recent_fills_hours * 3_600_000)
        for symbol in sorted(symbols):
            try:
                trades = await ex.fetch_my_trades(symbol, since)
            except Exception as exc:
                report.differences.append(f"{symbol}: recent fills could not be read: {scrub(str(exc))}")
                continue
            for trade in trades:
                fill_id = f"{s.exchange_id}:{trade.get('symbol') or symbol}:{trade.get('id')}"
                if fill_id in journal_fill_ids:
                    continue
                order_id = str(trade.get("order") or "")
                owner = self._by_venue_id.get(order_id)
                if owner is None and order_id:
                    owner = await self._owner_of(order_id, symbol, report)
                if owner is None or fill_id in owner.fill_ids:
                    continue
                self._on_trade(trade)
        fetching = [t for t in self._tasks if t.get_name().startswith("ccxt.trades:") and not t.done()]
        if fetching:
            await asyncio.gather(*fetching, return_exceptions=True)
        # Fills reported while reconciling (here, or by a lookup that found a finished order) were missing.
        report.missing_fills = self._fills_at_reconciliation
        # 4. positions: the venue must hold at least what the journal says we bought
        for (venue, symbol), qty in sorted(self._journal_positions.items()):
            if venue != s.venue:
                continue
            base = symbol.split("/", 1)[0]
            report.journal_positions[symbol] = qty
            held = report.balances.get(base, Decimal(0))
            if qty > held:
                report.differences.append(f"{symbol}: the journal's position {qty} exceeds the venue's {base} "
                                          f"balance {held}")
        self.reconciliation = report
        log = self._log.info if report.clean else self._log.warning
        log("reconciliation", venue_open_orders=report.venue_open_orders, carried_on=len(report.carried_on),
            finished_while_away=report.finished_while_away, missing_at_venue=report.missing_at_venue,
            missing_fills=report.missing_fills, unknown_orders=report.unknown_orders,
            differences=report.differences, balances={k: str(v) for k, v in report.balances.items()})

    async def _owner_of(self, order_id: str, symbol: str, report: ReconciliationReport) -> LiveOrder | None:
        """The order of a fill the journal lacks: ours (botframe's client id prefix) or someone else's."""
        try:
            order = await self.exchange.fetch_order(order_id, symbol)
        except Exception as exc:
            report.differences.append(f"{symbol}: order {order_id} of an unjournaled fill could not be read: "
                                      f"{scrub(str(exc))}")
            return None
        cid = str(order.get("clientOrderId") or "")
        if not cid.startswith(self.settings.client_order_id_prefix):
            report.foreign_fills += 1
            return None
        live = self.orders.get(cid)
        if live is None:
            live = self._adopt(order, report_status=False)
        elif not live.venue_order_id:
            live.venue_order_id = order_id
            self._by_venue_id[order_id] = live
        return live

    def _adopt(self, order: Mapping[str, Any], *, report_status: bool = True) -> LiveOrder:
        cid = str(order.get("clientOrderId") or f"venue-{order['id']}")
        price = order.get("price")
        intent = OrderIntent(
            client_order_id=cid, strategy="", venue=self.settings.venue, symbol=str(order["symbol"]),
            side=Side.BUY if order.get("side") == "buy" else Side.SELL, quantity=dec(order.get("amount")),
            order_type=OrderType.MARKET if order.get("type") == "market" else OrderType.LIMIT,
            price=dec(price) if price else None, ts_ns=self._context.clock.time_ns())
        live = LiveOrder(intent, status=OrderStatus.ACCEPTED)
        self.orders[cid] = live
        if report_status:
            self._on_order(order)
        else:  # a finished order of ours: only its fills matter now
            live.venue_order_id = str(order["id"])
            live.status = status_from_order(order) or OrderStatus.ACCEPTED
            self._by_venue_id[live.venue_order_id] = live
        return live

    # -- plumbing -----------------------------------------------------------------------------------------

    def _own_task(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._count("task_errors")
            self._log.error("executor task failed", task=task.get_name(), error=scrub(repr(exc)))

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n


def build_exchange(settings: Any, credentials: ApiCredentials | None, rest: str, ws: str) -> Any:
    """A ccxt client for the settings, repointed at ``rest`` / ``ws`` when given (refuses a half-local set)."""
    exchange = create_exchange(
        settings.exchange_id, credentials=credentials, timeout_secs=settings.http_timeout_secs,
        enable_rate_limit=getattr(settings, "enable_rate_limit", True),
        recv_window_ms=getattr(settings, "recv_window_ms", None), sandbox=settings.sandbox,
        options=dict(settings.options))
    if rest or ws:
        override_urls(exchange, rest_base=rest, ws_base=ws)
        local = [u for u in (rest, ws) if u]
        if all(_loopback(u) for u in local) and rest and ws:
            leaking = non_loopback_urls(exchange)
            if leaking:
                raise RuntimeError(f"ccxt would still reach {leaking[:3]} while pointed at a local venue")
    return exchange


def _loopback(url: str) -> bool:
    return "://127." in url or "://localhost" in url or "://[::1]" in url
