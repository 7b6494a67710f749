"""``botframe check-live config.toml``: prove the live executor's key works, read-only, and say what it may do.

:func:`check_live` loads the credentials the ``[executors.ccxt]`` section names, makes one authenticated
read-only call (the balance) and, where the exchange can tell (Binance's API-key restrictions), what the
key is allowed to do. It never places an order and never prints or logs the key or the secret. When the
section's URLs say ``"simulator"``, the services the config enables (the simulator) are started for the
check and stopped after it.

Exit codes: 0 the key works; 1 the venue refused it or could not be reached; 2 a configuration mistake
(no section, no credentials, a secrets file inside the repository).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

from botframe.clock import LiveClock
from botframe.log import get_logger
from botframe.secrets import SecretsError, load_credentials
from botframe.venues import Endpoints

from .config import CcxtExecutorSettings
from .exchange import ErrorKind, classify_error
from .execution import build_exchange, resolve_urls

if TYPE_CHECKING:
    from botframe.plugins import PluginSystem
    from botframe.services import Service
    from botframe.settings import Settings

__all__ = ["EXECUTOR_NAME", "check_live", "check_live_async"]

#: The executor section this command checks.
EXECUTOR_NAME = "ccxt"


class _ServiceContext:
    """A small ServiceContext for running the configured services during the check."""

    def __init__(self, name: str, endpoints: Endpoints, tasks: list[asyncio.Task[None]]) -> None:
        self.clock = LiveClock()
        self.log = get_logger("botframe.service", service=name)
        self.endpoints = endpoints
        self._tasks = tasks

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.append(task)
        return task


def check_live(settings: Settings, plugins: PluginSystem | None = None, *, out: TextIO | None = None) -> int:
    """Run the check (see the module docstring) and return the exit code; for the CLI."""
    return asyncio.run(check_live_async(settings, plugins, out=out))


async def check_live_async(settings: Settings, plugins: PluginSystem | None = None, *,
                           out: TextIO | None = None, endpoints: Endpoints | None = None) -> int:
    """The check as a coroutine (tests and embedding code)."""
    out = out if out is not None else sys.stdout
    section = settings.plugin_sections.get("executors", {}).get(EXECUTOR_NAME)
    if not isinstance(section, CcxtExecutorSettings):
        print(f"check-live: no [executors.{EXECUTOR_NAME}] section in the config; add one (exchange_id, "
              "symbols, and where the API key comes from)", file=out)
        return 2
    try:
        credentials = load_credentials(
            api_key_env=section.api_key_env, secret_env=section.secret_env, password_env=section.password_env,
            secrets_file=section.secrets_file or None, section=section.secrets_section)
    except SecretsError as exc:
        print(f"check-live: {exc}", file=out)
        return 2
    services: list[Service] = []
    tasks: list[asyncio.Task[None]] = []
    if endpoints is None and "simulator" in (section.rest_url, section.ws_url):
        endpoints = Endpoints()
        if plugins is not None:
            for name in settings.enabled_services():
                entry = plugins.services.get(name)
                if entry is not None:
                    services.append(entry.factory(settings.section("services", name),
                                                  _ServiceContext(name, endpoints, tasks)))
    try:
        for service in services:
            await service.start()
        try:
            rest, ws = resolve_urls(section, endpoints)
        except LookupError as exc:
            print(f"check-live: {exc}", file=out)
            return 2
        return await _check(section, credentials, rest, ws, out)
    finally:
        for service in reversed(services):
            await service.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _check(section: CcxtExecutorSettings, credentials: Any, rest: str, ws: str, out: TextIO) -> int:
    exchange = build_exchange(section, credentials, rest, ws)
    where = rest or "the exchange's own URLs"
    print(f"check-live: {section.exchange_id} at {where} (credentials from {credentials.source})", file=out)
    try:
        try:
            await exchange.load_markets()
            balance = await exchange.fetch_balance()
        except Exception as exc:
            rejection = classify_error(exc)
            if rejection.kind is ErrorKind.AUTH_FAILED:
                print(f"  authenticated: NO - the venue refused the key: {rejection.message}", file=out)
            else:
                print(f"  could not check: {rejection.reason}", file=out)
            return 1
        print("  authenticated: yes (read-only call: the account balance)", file=out)
        info = balance.get("info") if isinstance(balance.get("info"), dict) else {}
        may: dict[str, bool | None] = {
            "read": True,
            "trade": info.get("canTrade") if isinstance(info.get("canTrade"), bool) else None,
            "withdraw": info.get("canWithdraw") if isinstance(info.get("canWithdraw"), bool) else None,
        }
        restrictions = getattr(exchange, "sapi_get_account_apirestrictions", None)
        if restrictions is not None:
            try:
                limits = await restrictions()
                may["read"] = bool(limits.get("enableReading"))
                may["trade"] = bool(limits.get("enableSpotAndMarginTrading"))
                may["withdraw"] = bool(limits.get("enableWithdrawals"))
            except Exception as exc:
                print(f"  key restrictions not available: {classify_error(exc).message}", file=out)
        shown = "   ".join(f"may {k}: {'unknown' if v is None else 'yes' if v else 'no'}" for k, v in may.items())
        print(f"  {shown}", file=out)
        totals = {a: v for a, v in (balance.get("total") or {}).items() if v}
        text = ", ".join(f"{a} {Decimal(repr(v)) if isinstance(v, float) else v}" for a, v in sorted(totals.items()))
        print(f"  balances: {text or 'none'}", file=out)
        if may["trade"] is False:
            print("  WARNING: this key may not trade; live orders will be refused", file=out)
        if may["withdraw"]:
            print("  WARNING: this key may withdraw funds; a trading bot's key should not", file=out)
        return 0
    finally:
        await exchange.close()
