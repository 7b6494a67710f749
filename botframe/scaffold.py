"""``botframe new-strategy NAME``: write a strategy module, its test and a config that runs it.

Three files appear in the chosen directory, and each works as written:

* ``NAME.py``: the strategy (settings with units in their names, declared signals, ``on_book``) and
  the ``botframe_register_strategies`` hook that registers it as ``NAME``;
* ``test_NAME.py``: tests with :mod:`botframe.testing` (``pytest test_NAME.py`` passes, no network);
* ``NAME.toml``: a config that loads ``NAME.py`` by path and paper-trades it against the bundled
  exchange simulator (``botframe run NAME.toml``).

Also runnable as ``python -m botframe.scaffold NAME [--dir DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["ScaffoldError", "class_name", "main", "render", "write_strategy"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

_MODULE = '''\
"""{title}: a botframe strategy.

The idea (edit this as the strategy grows): when much more size rests on the bids than
on the asks near the touch, the price tends to tick up next, and the other way round.
As generated, the strategy buys ``order_qty`` when the top-5 order-book imbalance is
above ``entry_threshold`` and sells when it is below ``-entry_threshold``, never holding
more than ``max_position`` either way and waiting ``cooldown_ms`` after each order.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from botframe import L2Book, Registry, Strategy, StrategySettings, hookimpl
from botframe.signals import Imbalance, SignalSpec
from pydantic import Field


class {cls}Settings(StrategySettings):
    """The ``[strategies.{name}]`` section of the config."""

    entry_threshold: float = Field(default=0.3, gt=0, le=1)  # imbalance, in [-1, 1]
    order_qty: Decimal = Field(default=Decimal("0.001"), gt=0)  # base units per order
    max_position: Decimal = Field(default=Decimal("0.005"), gt=0)  # base units, +/-
    cooldown_ms: int = Field(default=1000, ge=0)  # wait after each order


class {cls}(Strategy[{cls}Settings]):
    """Follows the top-5 order-book imbalance, within a position limit."""

    Settings = {cls}Settings
    imbalance = Imbalance(levels=5)

    def signal_specs(self) -> Sequence[SignalSpec]:
        return [self.imbalance]

    def on_start(self) -> None:
        self.next_order_ns = 0

    def on_book(self, book: L2Book) -> None:
        s, ctx, symbol = self.settings, self.ctx, book.symbol
        value = ctx.signal(symbol, self.imbalance)
        if value is None or ctx.open_orders(symbol):
            return
        if ctx.now_ns() < self.next_order_ns:  # cooling down after the last order
            return
        position = ctx.position(symbol)
        if value > s.entry_threshold and position + s.order_qty <= s.max_position:
            sent = ctx.buy(symbol, s.order_qty)
        elif value < -s.entry_threshold and position - s.order_qty >= -s.max_position:
            sent = ctx.sell(symbol, s.order_qty)
        else:
            return
        if sent is not None:
            self.next_order_ns = ctx.now_ns() + s.cooldown_ms * 1_000_000


@hookimpl
def botframe_register_strategies(registry: Registry[Any]) -> None:
    registry.add("{name}", {cls}, {cls}Settings)
'''

_TEST = '''\
"""Tests of the {name} strategy: plain pytest, no network, no event loop."""

from __future__ import annotations

from decimal import Decimal

from botframe import Side
from botframe.testing import StrategyHarness, book

from {name} import {cls}

SETTINGS = {{"symbols": ["BTC/USDT"], "entry_threshold": 0.3, "order_qty": "0.001",
            "max_position": "0.002", "cooldown_ms": 0}}


def test_buys_when_bids_outweigh_asks() -> None:
    h = StrategyHarness({cls}, SETTINGS)

    h.feed(book("BTC/USDT", bids=[(100, 5), (99.9, 3)], asks=[(100.1, 1), (100.2, 1)]))

    assert [o.side for o in h.orders] == [Side.BUY]
    assert h.position("BTC/USDT") == Decimal("0.001")


def test_sells_when_asks_outweigh_bids() -> None:
    h = StrategyHarness({cls}, SETTINGS)

    h.feed(book("BTC/USDT", bids=[(100, 1)], asks=[(100.1, 5), (100.2, 3)]))

    assert [o.side for o in h.orders] == [Side.SELL]
    assert h.position("BTC/USDT") == Decimal("-0.001")


def test_does_nothing_on_a_balanced_book() -> None:
    h = StrategyHarness({cls}, SETTINGS)

    h.feed(book("BTC/USDT", bids=[(100, 2)], asks=[(100.1, 2)]))

    assert h.intents == []


def test_never_holds_more_than_max_position() -> None:
    h = StrategyHarness({cls}, SETTINGS)

    for i in range(5):
        h.feed(book("BTC/USDT", bids=[(100, 5)], asks=[(100.1, 1)], at_ms=100 * i))

    assert h.position("BTC/USDT") == Decimal("0.002")
    assert h.summary().max_abs_position == {{"BTC/USDT": Decimal("0.002")}}
'''

_CONFIG = '''\
# Paper-trade the {name} strategy against the bundled exchange simulator, offline:
#
#     botframe run {name}.toml
#
# Every key is explained in botframe's config.example.toml.

duration_secs = 30

[plugins]
paths = ["{name}.py"]        # load the strategy from its file, next to this config

[journal]
enabled = false              # true keeps orders and fills in a SQLite file across runs

[services.sim]
enabled = true               # a local exchange on 127.0.0.1 speaking Binance's protocol
seed = 42                    # same seed, same market

[venues.binance]
ws_url = "simulator"         # the real exchange: wss://stream.binance.com:9443
rest_url = "simulator"       #                    https://api.binance.com
symbols = ["BTC/USDT"]

[strategies.{name}]
venue = "binance"
symbols = ["BTC/USDT"]
entry_threshold = 0.3
order_qty = "0.001"
max_position = "0.005"
cooldown_ms = 1000
'''


class ScaffoldError(Exception):
    """The name cannot be used or a file would be overwritten; ``str(error)`` says why and what to do."""


def class_name(name: str) -> str:
    """``"mean_revert"`` -> ``"MeanRevert"``: the strategy class of a generated module."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def render(name: str) -> dict[str, str]:
    """The generated files' names and texts for strategy ``name`` (no checks, nothing written)."""
    cls = class_name(name)
    title = name.replace("_", " ").capitalize()
    return {
        f"{name}.py": _MODULE.format(name=name, cls=cls, title=title),
        f"test_{name}.py": _TEST.format(name=name, cls=cls),
        f"{name}.toml": _CONFIG.format(name=name),
    }


def _other_module(name: str, directory: Path) -> bool:
    """Whether an importable module ``name`` exists that is not the one we would write."""
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    ours = (directory / f"{name}.py").resolve()
    return spec.origin is None or Path(spec.origin).resolve() != ours


def _check_name(name: str, directory: Path) -> None:
    if not _NAME.fullmatch(name) or name.endswith("_") or "__" in name:
        raise ScaffoldError(f"{name!r} is not a usable strategy name: use lower-case letters, digits and single "
                            "underscores, starting with a letter (e.g. mean_revert)")
    if keyword.iskeyword(name) or name.startswith("test"):
        raise ScaffoldError(f"{name!r} cannot be a module name (a Python keyword, or taken by pytest for tests)")
    if name in sys.builtin_module_names or name in sys.stdlib_module_names or _other_module(name, directory):
        raise ScaffoldError(f"a module named {name!r} already exists (standard library or installed), so the test "
                            "could import the wrong one; pick another name")


def write_strategy(name: str, directory: Path, *, force: bool = False) -> list[Path]:
    """Write the strategy module, its test and its config into ``directory``; return the paths written.

    Raises :class:`ScaffoldError` for an unusable name, or when a file exists and ``force`` is false.
    """
    _check_name(name, directory)
    files = render(name)
    paths = [directory / filename for filename in files]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise ScaffoldError(f"would overwrite {', '.join(existing)}; choose another name or directory, "
                            "or pass --force")
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, files.values(), strict=True):
        path.write_text(text, encoding="utf-8")
    return paths


def main(name: str, directory: Path = Path("."), *, force: bool = False, out: TextIO | None = None) -> int:
    """What ``botframe new-strategy NAME`` runs: write the files, say what to do next. Exit code 0 or 2."""
    out = out if out is not None else sys.stdout
    try:
        paths = write_strategy(name, directory, force=force)
    except ScaffoldError as exc:
        print(f"botframe new-strategy: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"botframe new-strategy: cannot write into {directory}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {', '.join(p.name for p in paths)} in {directory}", file=out)
    print("next:", file=out)
    if directory != Path("."):
        print(f"    cd {directory}", file=out)
    print(f"    pytest test_{name}.py                # the strategy's tests, no network", file=out)
    print(f"    botframe run {name}.toml --duration 20  # paper-trade it against the simulator", file=out)
    return 0


def _cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m botframe.scaffold",
                                     description="write a strategy module, its test and a config that runs it")
    parser.add_argument("name", help="the strategy's name, e.g. mean_revert (also its module and config section)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="where to write the files (default: here)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    args = parser.parse_args(argv)
    return main(args.name, args.dir, force=args.force)


if __name__ == "__main__":
    sys.exit(_cli())
