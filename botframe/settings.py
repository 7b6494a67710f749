"""Configuration: one TOML file plus ``BOTFRAME_*`` environment overrides, validated with pydantic.

The root :class:`Settings` holds botframe's own sections; every plugin section (``[venues.X]``,
``[strategies.X]``, ``[executors.X]``, ``[services.X]``) is validated by the settings model the plugin
registered. Unknown keys are rejected everywhere. A mistake raises :class:`ConfigError`, whose message
names the TOML key, what is wrong and what is allowed; the CLI prints it and exits 2.

Environment overrides use ``__`` between levels: ``BOTFRAME_MODE=live``,
``BOTFRAME_VENUES__BINANCE__WS_URL=wss://stream.binance.com:9443``. Secrets never live in the TOML
file: live executors read them from the environment or a secrets file outside the repository.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .risk import RiskSettings

if TYPE_CHECKING:
    from .plugins import PluginSystem

__all__ = [
    "ConfigError",
    "EngineSettings",
    "JournalSettings",
    "LogSettings",
    "Mode",
    "PluginSettings",
    "PortfolioSettings",
    "Settings",
    "load_settings",
]


class ConfigError(Exception):
    """A configuration mistake; ``str(error)`` is the message shown to the user."""


class Mode(enum.StrEnum):
    PAPER = "paper"
    LIVE = "live"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogSettings(_Section):
    level: str = "info"
    format: str = "console"  # "console" for humans, "json" for machines

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        allowed = ("debug", "info", "warning", "error")
        if v.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return v.lower()

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v not in ("console", "json"):
            raise ValueError("must be 'console' or 'json'")
        return v


class PluginSettings(_Section):
    paths: list[str] = Field(default_factory=list)  # .py files (relative to the config) or module names
    disable: list[str] = Field(default_factory=list)


class EngineSettings(_Section):
    status_interval_secs: float = Field(default=5.0, gt=0)  # periodic status line when not on a terminal
    shutdown_timeout_secs: float = Field(default=10.0, gt=0)
    max_strategy_errors: int = Field(default=10, ge=1)  # a strategy is stopped after this many exceptions
    # A LIVE book with no update for this long is re-synced (0 = off: quiet symbols may be silent).
    book_stale_after_ms: int = Field(default=0, ge=0)


class JournalSettings(_Section):
    enabled: bool = True
    path: str = "botframe-journal.sqlite"  # relative to the config file
    fsync: str = "batch"  # "always", "batch" or "off"; see botframe.journal


class PortfolioSettings(_Section):
    starting_cash: dict[str, Decimal] = Field(default_factory=lambda: {"USDT": Decimal("10000")})


class Settings(BaseSettings):
    """Root settings. Plugin sections stay raw here and are validated by :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="BOTFRAME_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    mode: Mode = Mode.PAPER
    duration_secs: float = Field(default=0.0, ge=0)  # 0 = run until Ctrl-C / SIGTERM
    executor: str = "paper"  # which registered executor handles orders
    log: LogSettings = LogSettings()
    plugins: PluginSettings = PluginSettings()
    engine: EngineSettings = EngineSettings()
    journal: JournalSettings = JournalSettings()
    portfolio: PortfolioSettings = PortfolioSettings()
    risk: RiskSettings = RiskSettings()
    services: dict[str, dict[str, Any]] = Field(default_factory=dict)
    venues: dict[str, dict[str, Any]] = Field(default_factory=dict)
    strategies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    executors: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # Set by load_settings once each plugin section is validated by its plugin's model.
    config_path: Path | None = Field(default=None, exclude=True)
    plugin_sections: dict[str, dict[str, BaseModel]] = Field(default_factory=dict, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    def section(self, kind: str, name: str) -> BaseModel:
        """The validated settings of one plugin section, e.g. ``section("venues", "binance")``."""
        return self.plugin_sections[kind][name]

    def resolve_path(self, value: str) -> Path:
        path = Path(value)
        if not path.is_absolute() and self.config_path is not None:
            path = self.config_path.parent / path
        return path

    def enabled_services(self) -> list[str]:
        return [name for name, raw in self.services.items() if raw.get("enabled", False)]


_KINDS = ("services", "venues", "strategies", "executors")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; pass the path of a TOML config "
                          "(start from config.example.toml)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_settings(path: Path, plugins: PluginSystem | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read, merge with the environment, and validate everything; raise ConfigError on any mistake.

    With ``plugins`` given, ``[plugins] paths`` are loaded and each plugin section is validated by the
    model its plugin registered (an unknown plugin name is an error naming what is registered).
    """
    raw = read_toml(path)
    if overrides:
        raw = {**raw, **overrides}
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, exc, (), Settings)) from None
    settings = settings.model_copy(update={"config_path": path.resolve()})
    if plugins is None:
        return settings
    for spec in settings.plugins.paths:
        from .plugins import PluginError

        try:
            plugins.load_path(spec, base_dir=path.resolve().parent)
        except PluginError as exc:
            raise ConfigError(f"{path}: [plugins] paths: {exc}") from None
    plugins.disabled |= set(settings.plugins.disable)
    for name in settings.plugins.disable:
        if plugins.pm.get_plugin(name) is not None:
            plugins.unregister(name)
    plugins.discover()
    registries = {"services": plugins.services, "venues": plugins.venues,
                  "strategies": plugins.strategies, "executors": plugins.executors}
    validated: dict[str, dict[str, BaseModel]] = {kind: {} for kind in _KINDS}
    for kind in _KINDS:
        registry = registries[kind]
        for name, section in getattr(settings, kind).items():
            entry = registry.get(name)
            if entry is None:
                known = ", ".join(registry.names()) or "none"
                raise ConfigError(
                    f"{path}: [{kind}.{name}]: no {registry.kind} named {name!r} is registered; "
                    f"registered: {known} (see `botframe plugins`)"
                )
            if not isinstance(section, dict):
                raise ConfigError(f"{path}: [{kind}.{name}] must be a table")
            try:
                validated[kind][name] = entry.settings_model.model_validate(section)
            except ValidationError as exc:
                raise ConfigError(_format_errors(path, exc, (kind, name), entry.settings_model)) from None
    settings = settings.model_copy(update={"plugin_sections": validated})
    _check_cross_references(path, settings, registries)
    return settings


def _check_cross_references(path: Path, settings: Settings, registries: Mapping[str, Any]) -> None:
    if not settings.strategies:
        raise ConfigError(
            f"{path}: no [strategies.<name>] section: add one to run a strategy, e.g. [strategies.imbalance] "
            f"(registered strategies: {', '.join(registries['strategies'].names()) or 'none'})"
        )
    if not settings.venues:
        raise ConfigError(
            f"{path}: no [venues.<name>] section: add the venue your strategies trade, e.g. [venues.binance] "
            f"(registered venues: {', '.join(registries['venues'].names()) or 'none'})"
        )
    for name, model in settings.plugin_sections["strategies"].items():
        venue = getattr(model, "venue", None)
        if venue is not None and venue not in settings.venues:
            raise ConfigError(
                f"{path}: [strategies.{name}] venue = {venue!r}: there is no [venues.{venue}] section; "
                f"add it or use one of: {', '.join(settings.venues)}"
            )
    if settings.executor not in registries["executors"].names():
        raise ConfigError(
            f"{path}: executor = {settings.executor!r}: no such executor is registered; "
            f"registered: {', '.join(registries['executors'].names()) or 'none'}"
        )
    if settings.mode is Mode.PAPER and settings.executor != "paper":
        raise ConfigError(
            f"{path}: executor = {settings.executor!r} places real orders but mode = \"paper\"; "
            "use executor = \"paper\", or set mode = \"live\" and pass --live"
        )


def _format_errors(path: Path, exc: ValidationError, prefix: Sequence[str], model: type[BaseModel]) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        full = [*prefix, *loc]
        where = f"[{'.'.join(full[:-1])}] {full[-1]}" if len(full) > 1 else full[0] if full else "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            allowed = ", ".join(owner.model_fields) if owner is not None else ""
            what = "unknown key" + (f"; allowed keys: {allowed}" if allowed else "")
        elif kind == "missing":
            what = "required key is missing; add it"
        else:
            got = err.get("input")
            shown = "a table" if isinstance(got, dict) else repr(got)
            what = f"{err['msg']} (got {shown})"
        lines.append(f"  {where}: {what}")
    return "\n".join(lines)


def _model_at(model: type[BaseModel], loc: Sequence[str]) -> type[BaseModel] | None:
    """The model that owns the key at ``loc`` (to list the keys it allows)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        field_info = current.model_fields.get(part)
        if field_info is None:
            return None
        ann = field_info.annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return current
