"""The ``botframe`` command: run a bot, list plugins, check a config.

Exit codes: 0 success, 1 the run failed (a task crashed; see the log), 2 a configuration or usage
mistake (the message names the key and the fix; no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .log import configure_logging
from .plugins import PluginError, PluginSystem
from .settings import ConfigError, Mode, Settings, load_settings

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botframe", description="A plugin-based trading bot framework.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a bot (paper trading unless the config and --live both say live)")
    run.add_argument("config", type=Path, help="TOML config file, e.g. config.example.toml")
    run.add_argument("--duration", type=float, default=None,
                     help="stop after this many seconds (overrides duration_secs; 0 = until Ctrl-C)")
    run.add_argument("--live", action="store_true", help='required, with mode = "live", to place real orders')
    run.add_argument("--no-journal", action="store_true", help="do not write the SQLite journal")
    _log_options(run)

    plugins = sub.add_parser("plugins", help="list plugins: source, what they register, enabled or not")
    plugins.add_argument("config", type=Path, nargs="?", help="also load the plugins named in this config")
    _log_options(plugins)

    check = sub.add_parser("check-config", help="validate a config without connecting anywhere")
    check.add_argument("config", type=Path)
    _log_options(check)

    check_live = sub.add_parser("check-live", help="verify the live executor's API key with one read-only call "
                                                   "and show what the key may do")
    check_live.add_argument("config", type=Path)
    _log_options(check_live)

    new = sub.add_parser("new-strategy", help="write a strategy module, its test and a config that runs it")
    new.add_argument("name", help="the strategy's name, e.g. mean_revert")
    new.add_argument("--dir", type=Path, default=Path("."), help="where to write the files (default: here)")
    new.add_argument("--force", action="store_true", help="overwrite files that exist")
    _log_options(new)

    replay = sub.add_parser("replay-server", add_help=False,
                            help="serve a recorded capture on 127.0.0.1 in the venue's protocol "
                                 "(botframe replay-server --help for its options)")
    replay.add_argument("replay_args", nargs=argparse.REMAINDER)
    return parser


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default=None, choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-format", default=None, choices=("console", "json"))


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = out if out is not None else sys.stdout
    configure_logging(getattr(args, "log_level", None) or "info", getattr(args, "log_format", None) or "console")
    try:
        if args.command == "run":
            return _run(args, out)
        if args.command == "plugins":
            return _plugins(args, out)
        if args.command == "check-config":
            return _check_config(args, out)
        if args.command == "replay-server":
            return _replay_server(args)
        if args.command == "check-live":
            return _check_live(args, out)
        if args.command == "new-strategy":
            from .scaffold import main as new_strategy

            return new_strategy(args.name, args.dir, force=args.force, out=out)
    except ConfigError as exc:
        print(f"botframe: configuration error\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PluginError as exc:
        print(f"botframe: plugin error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_CONFIG


def _load(config: Path, args: argparse.Namespace) -> tuple[Settings, PluginSystem]:
    plugins = PluginSystem()
    plugins.load_entry_points()
    overrides: dict[str, object] = {}
    if getattr(args, "duration", None) is not None:
        overrides["duration_secs"] = args.duration
    settings = load_settings(config, plugins, overrides=overrides)
    if getattr(args, "no_journal", False):
        settings = settings.model_copy(update={"journal": settings.journal.model_copy(update={"enabled": False})})
    # Command-line logging options win over the config's [log] section.
    configure_logging(args.log_level or settings.log.level, args.log_format or settings.log.format)
    return settings, plugins


def _run(args: argparse.Namespace, out: TextIO) -> int:
    settings, plugins = _load(args.config, args)
    if settings.mode is Mode.LIVE and not args.live:
        raise ConfigError(f'{args.config}: mode = "live" places real orders; add --live to the command line '
                          'to confirm, or set mode = "paper"')
    if args.live and settings.mode is not Mode.LIVE:
        raise ConfigError(f'{args.config}: --live was given but mode = "{settings.mode.value}"; set mode = "live" '
                          "in the config as well (both are required to trade for real)")
    from .engine import Engine
    from .status import render_summary

    engine = Engine(settings, plugins, out=out)
    summary = asyncio.run(engine.run())
    render_summary(summary, out)
    return EXIT_FAILED if summary.failed else EXIT_OK


def _plugins(args: argparse.Namespace, out: TextIO) -> int:
    plugins = PluginSystem()
    plugins.load_entry_points()
    if args.config is not None:
        load_settings(args.config, plugins)
    infos = plugins.plugin_infos()
    width = max((len(i.name) for i in infos), default=4)
    print(f"{'plugin':<{width}}  {'enabled':<7}  {'source':<11}  registers / origin", file=out)
    for info in infos:
        registers = ", ".join(info.registers) or "(hooks: " + ", ".join(info.hooks) + ")"
        print(f"{info.name:<{width}}  {'yes' if info.enabled else 'no':<7}  {info.source:<11}  {registers}",
              file=out)
        print(f"{'':<{width}}  {'':<7}  {'':<11}  from {info.origin}", file=out)
    return EXIT_OK


def _check_config(args: argparse.Namespace, out: TextIO) -> int:
    settings, _plugins = _load(args.config, args)
    print(f"{args.config}: OK (mode={settings.mode.value}, executor={settings.executor}, "
          f"venues={', '.join(settings.venues)}, strategies={', '.join(settings.strategies)}, "
          f"services={', '.join(settings.enabled_services()) or 'none'})", file=out)
    return EXIT_OK


def _check_live(args: argparse.Namespace, out: TextIO) -> int:
    settings, plugins = _load(args.config, args)
    # The check belongs to the bundled ccxt plugin; the core imports no plugin statically.
    check = importlib.import_module("botframe_plugins.ccxt.check")
    status: int = check.check_live(settings, plugins, out=out)
    return status


def _replay_server(args: argparse.Namespace) -> int:
    # The replay server is part of the bundled sim plugin; the core imports no plugin statically.
    replay = importlib.import_module("botframe_plugins.sim.replay")
    try:
        status: int = asyncio.run(replay.main(args.replay_args))
    except KeyboardInterrupt:
        return EXIT_OK
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
