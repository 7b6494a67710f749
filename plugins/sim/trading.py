"""The simulator's trading venue, sans I/O: accounts, balances, orders and their matching in the model's book.

Orders placed through the trading API are matched against the simulator's own book (a
:class:`~.model.SymbolModel`): a marketable order takes liquidity level by level (public trades, as
anyone's would), the rest of a GTC limit order rests in the book at the back of its level's queue and
shows in the public depth stream, and the model's own market orders fill it from the front of the queue
(see :mod:`.model`). Every change to an order or a balance is also written to :attr:`TradingVenue.outbox`
as the user-data event Binance would send (``executionReport``, ``outboundAccountPosition``); the
server fans them out to the account's user-data subscribers.

Money is exact: prices and sizes are integer ticks and lots, amounts are ``Decimal`` with Binance's 8
decimals. Commission is charged in the quote asset on every fill (maker or taker rate, in bps of the
fill's notional), as an account paying fees in the quote asset would be; a buy order locks its notional
at the limit price plus the taker fee, and whatever it did not spend is released when it ends.

Self-trade prevention is Binance's default ``EXPIRE_MAKER``: a taking order that meets a resting order of
the same account expires that resting order (status ``EXPIRED_IN_MATCH``) and goes on.

Errors are :class:`VenueError` with Binance's HTTP status, error code and message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Any

from .binance_protocol import BinanceSymbol
from .model import OwnFill

__all__ = [
    "ORDER_STATUSES",
    "SimAccount",
    "SimFill",
    "SimOrder",
    "TradingVenue",
    "UserEvent",
    "VenueError",
]

_EIGHT = Decimal("0.00000001")
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_NUMBER_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_BPS = Decimal(10_000)

#: Binance's order statuses (spot).
ORDER_STATUSES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH")
_OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})


class VenueError(Exception):
    """A request the venue refuses: Binance's HTTP status, error code and message."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.status = status
        self.code = code
        self.msg = msg


def _mandatory(name: str) -> VenueError:
    return VenueError(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _amount(value: Decimal) -> str:
    return f"{value.quantize(_EIGHT):f}"


@dataclass(slots=True)
class SimAccount:
    """One API key's account: balances (free, locked), permissions, orders and trades."""

    api_key: str
    secret: str
    can_trade: bool = True
    can_withdraw: bool = False
    uid: int = 0
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)
    orders: dict[int, SimOrder] = field(default_factory=dict)
    by_client_id: dict[str, SimOrder] = field(default_factory=dict)  # the latest order with that id
    trades: list[SimFill] = field(default_factory=list)
    update_ms: int = 0

    def balance_row(self, asset: str) -> dict[str, str]:
        return {"asset": asset, "free": _amount(self.free.get(asset, Decimal(0))),
                "locked": _amount(self.locked.get(asset, Decimal(0)))}

    def move(self, asset: str, *, free: Decimal = Decimal(0), locked: Decimal = Decimal(0)) -> None:
        self.free[asset] = self.free.get(asset, Decimal(0)) + free
        self.locked[asset] = self.locked.get(asset, Decimal(0)) + locked


@dataclass(slots=True)
class SimOrder:
    """One order as the venue keeps it."""

    order_id: int
    client_order_id: str
    account: SimAccount
    bs: BinanceSymbol
    side: str  # "BUY" / "SELL"
    type: str  # "LIMIT" / "MARKET" / "LIMIT_MAKER"
    time_in_force: str  # "GTC" / "IOC" / "FOK" ("GTC" shown for LIMIT_MAKER and MARKET as Binance does)
    price_ticks: int  # 0 for market orders
    qty_lots: int
    time_ms: int
    status: str = "NEW"
    executed_lots: int = 0
    cum_quote: Decimal = Decimal(0)
    update_ms: int = 0
    locked_left: Decimal = Decimal(0)  # what this order still holds locked (quote for buys, base for sells)
    resting: bool = False

    @property
    def is_buy(self) -> bool:
        return self.side == "BUY"

    @property
    def remaining_lots(self) -> int:
        return self.qty_lots - self.executed_lots

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN


@dataclass(frozen=True, slots=True)
class SimFill:
    """One execution of one of our orders (a row of ``myTrades``)."""

    trade_id: int
    order: SimOrder
    price_ticks: int
    qty_lots: int
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool


@dataclass(frozen=True, slots=True)
class UserEvent:
    """A user-data stream event for one account (the payload as Binance sends it)."""

    api_key: str
    payload: dict[str, Any]


class TradingVenue:
    """Accounts and orders on the simulator's Binance symbols; see the module docstring."""

    def __init__(self, symbols: Mapping[str, BinanceSymbol], *, maker_fee_bps: Decimal = Decimal(1),
                 taker_fee_bps: Decimal = Decimal(5)) -> None:
        self.symbols = dict(symbols)
        self.maker_rate = maker_fee_bps / _BPS
        self.taker_rate = taker_fee_bps / _BPS
        self._lock_rate = max(self.maker_rate, self.taker_rate, Decimal(0))
        self.accounts: dict[str, SimAccount] = {}
        self.orders: dict[int, SimOrder] = {}
        self.outbox: list[UserEvent] = []
        self._next_order_id = 1
        self._next_event_id = 1
        self._touched: dict[str, set[str]] = {}  # api key -> assets changed since the last flush

    # -- accounts ----------------------------------------------------------------------------------

    def add_account(self, api_key: str, secret: str, balances: Mapping[str, Decimal], *, can_trade: bool = True,
                    can_withdraw: bool = False) -> SimAccount:
        account = SimAccount(api_key, secret, can_trade=can_trade, can_withdraw=can_withdraw,
                             uid=len(self.accounts) + 1)
        for asset, amount in balances.items():
            account.free[asset] = Decimal(amount)
            account.locked[asset] = Decimal(0)
        self.accounts[api_key] = account
        return account

    def account_info(self, account: SimAccount, now_ms: int) -> dict[str, Any]:
        """``GET /api/v3/account``."""
        assets = sorted(set(account.free) | set(account.locked))
        maker_bps = int(self.maker_rate * _BPS)
        taker_bps = int(self.taker_rate * _BPS)
        return {
            "makerCommission": maker_bps,
            "takerCommission": taker_bps,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": _amount(self.maker_rate), "taker": _amount(self.taker_rate),
                                "buyer": "0.00000000", "seller": "0.00000000"},
            "canTrade": account.can_trade,
            "canWithdraw": account.can_withdraw,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": account.update_ms,
            "accountType": "SPOT",
            "balances": [account.balance_row(a) for a in assets],
            "permissions": ["SPOT"],
            "uid": account.uid,
        }

    # -- parsing -----------------------------------------------------------------------------------

    def symbol(self, params: Mapping[str, str]) -> BinanceSymbol:
        name = params.get("symbol", "")
        if not name:
            raise _mandatory("symbol")
        bs = self.symbols.get(name)
        if bs is None:
            raise VenueError(400, -1121, "Invalid symbol.")
        return bs

    @staticmethod
    def _number(params: Mapping[str, str], name: str) -> Decimal:
        text = params.get(name, "")
        if not text:
            raise _mandatory(name)
        if not _NUMBER_RE.match(text):
            raise VenueError(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is "
                                         "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
        try:
            return Decimal(text)
        except InvalidOperation:
            raise VenueError(400, -1100, f"Illegal characters found in parameter '{name}'.") from None

    def _find(self, account: SimAccount, bs: BinanceSymbol, params: Mapping[str, str], *, code: int,
              msg: str) -> SimOrder:
        raw_id = params.get("orderId", "")
        client_id = params.get("origClientOrderId", "")
        if not raw_id and not client_id:
            raise VenueError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                         "empty/null!")
        order: SimOrder | None = None
        if raw_id:
            if not raw_id.isdigit():
                raise VenueError(400, -1100, "Illegal characters found in parameter 'orderId'; legal range is "
                                             "'^[0-9]{1,20}$'.")
            order = account.orders.get(int(raw_id))
        else:
            order = account.by_client_id.get(client_id)
        if order is None or order.bs is not bs or (client_id and order.client_order_id != client_id):
            raise VenueError(400, code, msg)
        return order

    # -- orders ------------------------------------------------------------------------------------

    def new_order(self, account: SimAccount, params: Mapping[str, str], now_ms: int) -> dict[str, Any]:
        """``POST /api/v3/order``: validate, lock, match, rest; returns the response of ``newOrderRespType``."""
        if not account.can_trade:
            raise VenueError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        bs = self.symbol(params)
        side = params.get("side", "")
        if not side:
            raise _mandatory("side")
        if side not in ("BUY", "SELL"):
            raise VenueError(400, -1117, "Invalid side.")
        otype = params.get("type", "")
        if not otype:
            raise _mandatory("type")
        if otype not in ("LIMIT", "MARKET", "LIMIT_MAKER"):
            raise VenueError(400, -1116, "Invalid orderType.")
        tif = params.get("timeInForce", "")
        if otype == "LIMIT":
            if not tif:
                raise _mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise VenueError(400, -1115, "Invalid timeInForce.")
        elif tif:
            raise VenueError(400, -1106, "Parameter 'timeInForce' sent when not required.")
        resp_type = params.get("newOrderRespType", "FULL" if otype in ("LIMIT", "MARKET") else "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise VenueError(400, -1136, "Invalid newOrderRespType")
        if "quoteOrderQty" in params:
            raise VenueError(400, -1128, "Combination of optional parameters invalid. The simulator takes "
                                         "'quantity' only.")
        spec = bs.spec
        qty = self._number(params, "quantity")
        lots_exact = qty / spec.lot_size
        if lots_exact != lots_exact.to_integral_value() or lots_exact < 1:
            raise VenueError(400, -1013, "Filter failure: LOT_SIZE")
        lots = int(lots_exact)
        if qty > 9000:
            raise VenueError(400, -1013, "Filter failure: LOT_SIZE")
        model = bs.model
        price_ticks = 0
        if otype == "MARKET":
            if "price" in params:
                raise VenueError(400, -1106, "Parameter 'price' sent when not required.")
            ref = model.best_ask() if side == "BUY" else model.best_bid()
            notional = spec.tick_size * (ref if ref is not None else model.last_trade_ticks) * qty
        else:
            price = self._number(params, "price")
            ticks_exact = price / spec.tick_size
            if ticks_exact != ticks_exact.to_integral_value() or ticks_exact < 1 or price > 1_000_000:
                raise VenueError(400, -1013, "Filter failure: PRICE_FILTER")
            price_ticks = int(ticks_exact)
            notional = price * qty
        if notional < spec.min_notional:
            raise VenueError(400, -1013, "Filter failure: NOTIONAL")
        client_id = params.get("newClientOrderId", "")
        if client_id:
            if not _CLIENT_ID_RE.match(client_id):
                raise VenueError(400, -1100, "Illegal characters found in parameter 'newClientOrderId'; legal "
                                             "range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
            existing = account.by_client_id.get(client_id)
            if existing is not None and existing.is_open:
                raise VenueError(400, -2010, "Duplicate order sent.")
        else:
            client_id = f"sim{self._next_order_id:x}{now_ms:x}"[:36]
        is_buy = side == "BUY"
        best_opposite = model.best_ask() if is_buy else model.best_bid()
        crosses = best_opposite is not None and (
            otype == "MARKET" or (best_opposite <= price_ticks if is_buy else best_opposite >= price_ticks))
        if otype == "LIMIT_MAKER" and crosses:
            raise VenueError(400, -2010, "Order would immediately match and take.")
        # Lock what the order may spend: a buy its notional at the limit (market: at what it would pay)
        # plus the highest fee; a sell its quantity.
        if is_buy:
            if otype == "MARKET":
                cost = self._market_buy_cost(bs, lots)
                need = (cost * (1 + self.taker_rate)).quantize(_EIGHT, ROUND_UP)
            else:
                need = (spec.tick_size * price_ticks * qty * (1 + self._lock_rate)).quantize(_EIGHT, ROUND_UP)
            asset = spec.quote
        else:
            need = qty
            asset = spec.base
        if account.free.get(asset, Decimal(0)) < need:
            raise VenueError(400, -2010, "Account has insufficient balance for requested action.")
        order = SimOrder(
            order_id=self._next_order_id, client_order_id=client_id, account=account, bs=bs, side=side,
            type=otype, time_in_force=tif or "GTC", price_ticks=price_ticks, qty_lots=lots, time_ms=now_ms,
            update_ms=now_ms, locked_left=need)
        self._next_order_id += 1
        account.move(asset, free=-need, locked=need)
        self._touch(account, asset)
        self.orders[order.order_id] = order
        account.orders[order.order_id] = order
        account.by_client_id[client_id] = order
        self._report(order, "NEW", now_ms)
        fills: list[SimFill] = []
        if crosses:
            limit = None if otype == "MARKET" else price_ticks
            def same_owner(key: int) -> bool:
                return self.orders[key].account is account
            if tif == "FOK" and model.available(is_buy, limit, skip=same_owner) < lots:
                self._finish(order, "EXPIRED", now_ms)
                return self._order_response(order, resp_type, now_ms, fills)
            result = model.take(is_buy, lots, limit, expire_maker=same_owner)
            for key in result.expired_makers:
                self._expire_in_match(self.orders[key], now_ms)
            for fill_ticks, n, maker_key, trade_id in result.fills:
                fills.append(self._fill(order, fill_ticks, n, trade_id, now_ms, is_maker=False))
                if maker_key is not None:
                    self._fill(self.orders[maker_key], fill_ticks, n, trade_id, now_ms, is_maker=True)
        if order.is_open:
            if otype == "MARKET" or tif in ("IOC", "FOK"):
                self._finish(order, "EXPIRED", now_ms)
            else:
                model.rest_own(is_buy, price_ticks, order.remaining_lots, order.order_id)
                order.resting = True
        return self._order_response(order, resp_type, now_ms, fills)

    def _market_buy_cost(self, bs: BinanceSymbol, lots: int) -> Decimal:
        spec = bs.spec
        model = bs.model
        cost = Decimal(0)
        for price, have in model.top_asks(len(model.asks)):
            n = min(have, lots)
            cost += spec.tick_size * price * spec.lot_size * n
            lots -= n
            if not lots:
                break
        return cost

    def cancel_order(self, account: SimAccount, params: Mapping[str, str], now_ms: int) -> dict[str, Any]:
        """``DELETE /api/v3/order``."""
        bs = self.symbol(params)
        order = self._find(account, bs, params, code=-2011, msg="Unknown order sent.")
        if not order.is_open:
            raise VenueError(400, -2011, "Unknown order sent.")
        cancel_id = params.get("newClientOrderId", "") or f"cancel{order.order_id:x}{now_ms:x}"[:36]
        self._finish(order, "CANCELED", now_ms, cancel_client_id=cancel_id)
        body = self._order_fields(order)
        return {
            "symbol": bs.name, "origClientOrderId": order.client_order_id, "orderId": order.order_id,
            "orderListId": -1, "clientOrderId": cancel_id, "transactTime": now_ms,
            **{k: body[k] for k in ("price", "origQty", "executedQty", "cummulativeQuoteQty", "status",
                                    "timeInForce", "type", "side", "selfTradePreventionMode")},
        }

    def cancel_open_orders(self, account: SimAccount, params: Mapping[str, str], now_ms: int) -> list[dict[str, Any]]:
        """``DELETE /api/v3/openOrders``: cancel every open order of one symbol."""
        bs = self.symbol(params)
        open_ids = [o.order_id for o in account.orders.values() if o.is_open and o.bs is bs]
        if not open_ids:
            raise VenueError(400, -2011, "Unknown order sent.")
        return [self.cancel_order(account, {"symbol": bs.name, "orderId": str(i)}, now_ms) for i in open_ids]

    def query_order(self, account: SimAccount, params: Mapping[str, str]) -> dict[str, Any]:
        """``GET /api/v3/order``."""
        bs = self.symbol(params)
        return self._order_fields(self._find(account, bs, params, code=-2013, msg="Order does not exist."))

    def open_orders(self, account: SimAccount, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET /api/v3/openOrders`` (one symbol, or all without ``symbol``)."""
        bs = self.symbol(params) if "symbol" in params else None
        return [self._order_fields(o) for o in account.orders.values()
                if o.is_open and (bs is None or o.bs is bs)]

    def my_trades(self, account: SimAccount, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET /api/v3/myTrades``: one symbol's fills, oldest first, filtered like Binance."""
        bs = self.symbol(params)
        rows = [f for f in account.trades if f.order.bs is bs]
        if params.get("orderId", "").isdigit():
            rows = [f for f in rows if f.order.order_id == int(params["orderId"])]
        if params.get("fromId", "").isdigit():
            rows = [f for f in rows if f.trade_id >= int(params["fromId"])]
        if params.get("startTime", "").isdigit():
            rows = [f for f in rows if f.time_ms >= int(params["startTime"])]
        if params.get("endTime", "").isdigit():
            rows = [f for f in rows if f.time_ms <= int(params["endTime"])]
        raw_limit = params.get("limit", "500")
        limit = min(int(raw_limit), 1000) if raw_limit.isdigit() else 500
        return [self._trade_fields(f) for f in rows[-limit:]] if limit else []

    # -- the model's own market orders ---------------------------------------------------------------

    def after_step(self, now_ms: int) -> None:
        """Apply the maker fills the model's market orders made on resting orders during the last step."""
        for bs in self.symbols.values():
            model = bs.model
            if not model.own_fills:
                continue
            fills: list[OwnFill] = model.own_fills
            model.own_fills = []
            for f in fills:
                order = self.orders.get(f.key)
                if order is not None:
                    self._fill(order, f.price_ticks, f.qty_lots, f.trade_id, now_ms, is_maker=True)

    def take_events(self) -> list[UserEvent]:
        """The user-data events since the last call, balance updates last (as Binance orders them)."""
        for api_key, assets in self._touched.items():
            account = self.accounts[api_key]
            self.outbox.append(UserEvent(api_key, {
                "e": "outboundAccountPosition", "E": account.update_ms, "u": account.update_ms,
                "B": [{"a": a, "f": _amount(account.free.get(a, Decimal(0))),
                       "l": _amount(account.locked.get(a, Decimal(0)))} for a in sorted(assets)],
            }))
        self._touched.clear()
        out, self.outbox = self.outbox, []
        return out

    # -- internals ---------------------------------------------------------------------------------

    def _touch(self, account: SimAccount, *assets: str) -> None:
        self._touched.setdefault(account.api_key, set()).update(assets)

    def _fill(self, order: SimOrder, price_ticks: int, lots: int, trade_id: int, now_ms: int, *,
              is_maker: bool) -> SimFill:
        spec = order.bs.spec
        account = order.account
        price = spec.tick_size * price_ticks
        qty = spec.lot_size * lots
        quote = price * qty
        rate = self.maker_rate if is_maker else self.taker_rate
        commission = (quote * rate).quantize(_EIGHT, ROUND_UP) if rate > 0 else Decimal(0)
        if order.is_buy:
            # Release this fill's share of the lock at the order's own price (market: what it cost).
            share = quote * (1 + self.taker_rate) if order.type == "MARKET" else (
                spec.tick_size * order.price_ticks * qty * (1 + self._lock_rate))
            share = min(share.quantize(_EIGHT, ROUND_UP), order.locked_left)
            order.locked_left -= share
            account.move(spec.quote, locked=-share, free=share - quote - commission)
            account.move(spec.base, free=qty)
        else:
            order.locked_left -= qty
            account.move(spec.base, locked=-qty)
            account.move(spec.quote, free=quote - commission)
        self._touch(account, spec.base, spec.quote)
        account.update_ms = now_ms
        order.executed_lots += lots
        order.cum_quote += quote
        order.update_ms = now_ms
        fill = SimFill(trade_id, order, price_ticks, lots, quote, commission, spec.quote, now_ms, is_maker)
        account.trades.append(fill)
        status = "FILLED" if order.executed_lots >= order.qty_lots else "PARTIALLY_FILLED"
        order.status = status
        self._report(order, "TRADE", now_ms, fill=fill)
        if status == "FILLED":
            self._release(order)
        return fill

    def _release(self, order: SimOrder) -> None:
        """Unlock what a finished order still holds."""
        if order.locked_left:
            spec = order.bs.spec
            asset = spec.quote if order.is_buy else spec.base
            order.account.move(asset, free=order.locked_left, locked=-order.locked_left)
            self._touch(order.account, asset)
            order.locked_left = Decimal(0)
        order.resting = False

    def _finish(self, order: SimOrder, status: str, now_ms: int, *, cancel_client_id: str = "") -> None:
        if order.resting:
            order.bs.model.cancel_own(order.is_buy, order.price_ticks, order.order_id)
        order.status = status
        order.update_ms = now_ms
        order.account.update_ms = now_ms
        self._release(order)
        self._report(order, "CANCELED" if status == "CANCELED" else "EXPIRED", now_ms,
                     cancel_client_id=cancel_client_id)

    def _expire_in_match(self, order: SimOrder, now_ms: int) -> None:
        # The model already removed it from the book.
        order.resting = False
        order.status = "EXPIRED_IN_MATCH"
        order.update_ms = now_ms
        self._release(order)
        self._report(order, "TRADE_PREVENTION", now_ms)

    def _report(self, order: SimOrder, exec_type: str, now_ms: int, *, fill: SimFill | None = None,
                cancel_client_id: str = "") -> None:
        bs = order.bs
        pt, qt = bs.price.text, bs.qty.text
        event_id = self._next_event_id
        self._next_event_id += 1
        self.outbox.append(UserEvent(order.account.api_key, {
            "e": "executionReport",
            "E": now_ms,
            "s": bs.name,
            "c": cancel_client_id or order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force,
            "q": qt(order.qty_lots),
            "p": pt(order.price_ticks),
            "P": "0.00000000",
            "F": "0.00000000",
            "g": -1,
            "C": order.client_order_id if cancel_client_id else "",
            "x": exec_type,
            "X": order.status,
            "r": "NONE",
            "i": order.order_id,
            "l": qt(fill.qty_lots) if fill else "0.00000000",
            "z": qt(order.executed_lots),
            "L": pt(fill.price_ticks) if fill else "0.00000000",
            "n": _amount(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None,
            "T": now_ms,
            "t": fill.trade_id if fill else -1,
            "v": 0,
            "I": event_id,
            "w": order.is_open and order.resting,
            "m": fill.is_maker if fill else False,
            "M": False,
            "O": order.time_ms,
            "Z": _amount(order.cum_quote),
            "Y": _amount(fill.quote_qty) if fill else "0.00000000",
            "Q": "0.00000000",
            "W": order.time_ms,
            "V": "EXPIRE_MAKER",
        }))

    def _order_fields(self, order: SimOrder) -> dict[str, Any]:
        bs = order.bs
        return {
            "symbol": bs.name,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "price": bs.price.text(order.price_ticks),
            "origQty": bs.qty.text(order.qty_lots),
            "executedQty": bs.qty.text(order.executed_lots),
            "cummulativeQuoteQty": _amount(order.cum_quote),
            "status": order.status,
            "timeInForce": order.time_in_force,
            "type": order.type,
            "side": order.side,
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": order.time_ms,
            "updateTime": order.update_ms,
            "isWorking": True,
            "workingTime": order.time_ms,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }

    def _order_response(self, order: SimOrder, resp_type: str, now_ms: int, fills: list[SimFill]) -> dict[str, Any]:
        bs = order.bs
        if resp_type == "ACK":
            return {"symbol": bs.name, "orderId": order.order_id, "orderListId": -1,
                    "clientOrderId": order.client_order_id, "transactTime": now_ms}
        body = self._order_fields(order)
        out: dict[str, Any] = {
            "symbol": bs.name, "orderId": order.order_id, "orderListId": -1,
            "clientOrderId": order.client_order_id, "transactTime": now_ms,
            **{k: body[k] for k in ("price", "origQty", "executedQty", "origQuoteOrderQty", "cummulativeQuoteQty",
                                    "status", "timeInForce", "type", "side", "workingTime",
                                    "selfTradePreventionMode")},
        }
        if resp_type == "FULL":
            out["fills"] = [{"price": bs.price.text(f.price_ticks), "qty": bs.qty.text(f.qty_lots),
                             "commission": _amount(f.commission), "commissionAsset": f.commission_asset,
                             "tradeId": f.trade_id} for f in fills]
        return out

    @staticmethod
    def _trade_fields(f: SimFill) -> dict[str, Any]:
        bs = f.order.bs
        return {
            "symbol": bs.name, "id": f.trade_id, "orderId": f.order.order_id, "orderListId": -1,
            "price": bs.price.text(f.price_ticks), "qty": bs.qty.text(f.qty_lots), "quoteQty": _amount(f.quote_qty),
            "commission": _amount(f.commission), "commissionAsset": f.commission_asset, "time": f.time_ms,
            "isBuyer": f.order.is_buy, "isMaker": f.is_maker, "isBestMatch": True,
        }
