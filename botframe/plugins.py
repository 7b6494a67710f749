"""Plugin discovery and the typed facade over pluggy's hooks.

Plugins come from three places, all registered the same way:

* entry points in the group ``botframe`` (the bundled plugins are declared there by botframe's own
  ``pyproject.toml``; a third-party distribution declares its own);
* modules or ``.py`` files named in the config under ``[plugins] paths``;
* objects registered directly by tests or embedding code (:meth:`PluginSystem.register`).

``BOTFRAME_DISABLE_PLUGINS=name1,name2`` (or ``[plugins] disable``) keeps a plugin listed but unloaded.
The rest of the code calls hooks only through :class:`Hooks`, one typed method per hook.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy
from pydantic import BaseModel

from . import hookspecs
from .hookspecs import PROJECT_NAME

if TYPE_CHECKING:
    from .engine import Engine
    from .events import FeedStatus, Fill, OrderIntent, OrderUpdate
    from .risk import Denial, RiskContext
    from .settings import Settings

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "DuplicateRegistrationError",
    "Hooks",
    "PluginError",
    "PluginInfo",
    "PluginSystem",
    "Registry",
    "RegistryEntry",
]

ENTRY_POINT_GROUP = "botframe"
DISABLE_ENV = "BOTFRAME_DISABLE_PLUGINS"
_BUNDLED_DISTRIBUTION = "botframe"

F = TypeVar("F")


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid."""


class DuplicateRegistrationError(PluginError):
    """Two plugins registered the same name in one registry."""


@dataclass(frozen=True, slots=True)
class RegistryEntry(Generic[F]):
    """One registered venue, strategy, executor or service."""

    name: str
    factory: F
    settings_model: type[BaseModel]
    plugin: str


class Registry(Generic[F]):
    """What a discovery hook receives: ``registry.add(name, factory, settings_model)``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry[F]] = {}
        self._current_plugin = "<direct>"

    def add(self, name: str, factory: F, settings_model: type[BaseModel]) -> None:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise PluginError(f"{self._current_plugin}: invalid {self.kind} name {name!r}")
        if not (isinstance(settings_model, type) and issubclass(settings_model, BaseModel)):
            raise PluginError(f"{self._current_plugin}: the settings model of {self.kind} {name!r} "
                              "must be a pydantic BaseModel subclass")
        existing = self._entries.get(name)
        if existing is not None:
            raise DuplicateRegistrationError(
                f"{self.kind} {name!r} is registered twice: by {existing.plugin!r} and by "
                f"{self._current_plugin!r}; disable one of them with {DISABLE_ENV}"
            )
        self._entries[name] = RegistryEntry(name, factory, settings_model, self._current_plugin)

    def get(self, name: str) -> RegistryEntry[F] | None:
        return self._entries.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[RegistryEntry[F]]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class PluginInfo:
    """What ``botframe plugins`` shows about one plugin."""

    name: str
    source: str  # "bundled", "entry point", "path", "registered"
    origin: str  # distribution, file or module
    enabled: bool
    registers: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)


def _disabled_from_env() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginSystem:
    """Loads plugins, collects their registrations and exposes the typed :class:`Hooks` facade."""

    def __init__(self, *, disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled) | _disabled_from_env()
        self.infos: dict[str, PluginInfo] = {}
        self.hooks = Hooks(self.pm)
        self.venues: Registry[Callable[..., Any]] = Registry("venue")
        self.strategies: Registry[Any] = Registry("strategy")
        self.executors: Registry[Callable[..., Any]] = Registry("executor")
        self.services: Registry[Callable[..., Any]] = Registry("service")
        self._discovered = False

    # -- loading ------------------------------------------------------------------------------------

    def register(self, plugin: object, name: str, *, source: str = "registered", origin: str = "") -> None:
        """Register a plugin object (module or instance) unless it is disabled."""
        if name in self.infos and self.infos[name].enabled:
            raise PluginError(f"plugin {name!r} is loaded twice (from {self.infos[name].origin} and {origin})")
        enabled = name not in self.disabled
        self.infos[name] = PluginInfo(name=name, source=source, origin=origin or repr(plugin), enabled=enabled)
        if enabled:
            self.pm.register(plugin, name=name)
            self.infos[name].hooks = sorted(
                impl_name for impl_name in dir(plugin) if impl_name.startswith("botframe_")
            )
        self._discovered = False

    def unregister(self, name: str) -> None:
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._discovered = False

    def load_entry_points(self) -> None:
        """Register every plugin declared in the ``botframe`` entry-point group."""
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "?"
            source = "bundled" if dist == _BUNDLED_DISTRIBUTION else "entry point"
            if ep.name in self.disabled:
                self.infos[ep.name] = PluginInfo(ep.name, source, f"{dist}: {ep.value}", enabled=False)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(f"entry point {ep.name!r} ({ep.value}) of {dist} failed to load: {exc}") from exc
            self.register(plugin, ep.name, source=source, origin=f"{dist}: {ep.value}")

    def load_path(self, spec: str, *, base_dir: Path | None = None) -> str:
        """Load a plugin from a ``.py`` file path or an importable module name; return its plugin name."""
        if spec.endswith(".py") or os.sep in spec or "/" in spec:
            path = Path(spec)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            module = _import_file(path)
            name = path.stem
            origin = str(path)
        else:
            try:
                module = importlib.import_module(spec)
            except ImportError as exc:
                raise PluginError(f"plugin module {spec!r} cannot be imported: {exc}") from exc
            name = spec.rsplit(".", 1)[-1]
            origin = spec
        self.register(module, name, source="path", origin=origin)
        return name

    # -- discovery ----------------------------------------------------------------------------------

    def discover(self) -> None:
        """Run the discovery hooks once, attributing each registration to the plugin that made it."""
        if self._discovered:
            return
        for registry in (self.venues, self.strategies, self.executors, self.services):
            registry._entries.clear()
        self._call_register("botframe_register_venues", self.venues)
        self._call_register("botframe_register_strategies", self.strategies)
        self._call_register("botframe_register_executors", self.executors)
        self._call_register("botframe_register_services", self.services)
        for info in self.infos.values():
            info.registers = []
        for registry in (self.venues, self.strategies, self.executors, self.services):
            for entry in registry:
                if entry.plugin in self.infos:
                    self.infos[entry.plugin].registers.append(f"{registry.kind} {entry.name}")
        for impl in self.pm.hook.botframe_check_order.get_hookimpls():
            if impl.plugin_name in self.infos:
                check = impl.function.__name__.removeprefix("check_").removeprefix("botframe_")
                self.infos[impl.plugin_name].registers.append(f"risk check {check}")
        self._discovered = True

    def _call_register(self, hook_name: str, registry: Registry[Any]) -> None:
        caller = getattr(self.pm.hook, hook_name)
        # One implementation at a time, so every entry knows the plugin that added it.
        for impl in reversed(caller.get_hookimpls()):
            registry._current_plugin = impl.plugin_name
            try:
                impl.function(registry)
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc}") from exc
        registry._current_plugin = "<direct>"

    def plugin_infos(self) -> list[PluginInfo]:
        self.discover()
        return sorted(self.infos.values(), key=lambda i: (i.source != "bundled", i.name))


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"plugin file {str(path)!r} does not exist")
    module_name = f"botframe_userplugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin file {str(path)!r} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin file {str(path)!r} failed to import: {exc}") from exc
    return module


class Hooks:
    """One typed method per hook; the only way core code calls plugins."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    def configure(self, settings: Settings) -> None:
        self._pm.hook.botframe_configure(settings=settings)

    def startup(self, engine: Engine) -> None:
        self._pm.hook.botframe_startup(engine=engine)

    def shutdown(self, engine: Engine) -> None:
        self._pm.hook.botframe_shutdown(engine=engine)

    def check_order(self, intent: OrderIntent, context: RiskContext) -> list[Denial | None]:
        result: list[Denial | None] = self._pm.hook.botframe_check_order(intent=intent, context=context)
        return result

    def on_fill(self, fill: Fill) -> None:
        self._pm.hook.botframe_on_fill(fill=fill)

    def on_order_update(self, update: OrderUpdate) -> None:
        self._pm.hook.botframe_on_order_update(update=update)

    def on_feed_status(self, status: FeedStatus) -> None:
        self._pm.hook.botframe_on_feed_status(status=status)

    def has_observers(self, hook_name: str) -> bool:
        """Whether any plugin implements an observation hook (skip the call entirely when none does)."""
        return bool(getattr(self._pm.hook, hook_name).get_hookimpls())
