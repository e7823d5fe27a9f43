"""Finding plugins through entry points, and collecting what they register.

Plugins are discovered in the ``backbone_hub`` entry-point group. Each one is
imported on its own; a plugin that fails to import, marks a function that is no
hook of :mod:`hub.hookspecs` with ``@hookimpl`` (a misspelt hook name: pluggy's
``check_pending``, per plugin), raises in a hook, or registers an object of the
wrong type is recorded as a failure (see ``hub plugins``) and a
:class:`HubPluginWarning` is issued, while every other plugin keeps working.
``HUB_PLUGINS`` / ``HUB_DISABLE_PLUGINS`` choose which entry points load (see :mod:`hub.config`).
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from hub import hookspecs
from hub.config import Settings, get_settings
from hub.errors import PluginError, PluginLoadError
from hub.provider import Provider

__all__ = ["ENTRY_POINT_GROUP", "HubPluginWarning", "PluginRecord", "Registry", "collect",
           "discover"]

ENTRY_POINT_GROUP = "backbone_hub"


class HubPluginWarning(UserWarning):
    """A plugin failed; the rest of the hub keeps working."""


@dataclass
class PluginRecord:
    """What is known about one plugin: where it comes from and whether it works."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    ok: bool = True
    errors: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.ok = False
        self.errors.append(message)
        warnings.warn(f"backbone-hub plugin {self.name!r}: {message}", HubPluginWarning, stacklevel=3)


@dataclass
class Registry:
    """Everything the loaded plugins registered."""

    plugins: dict[str, PluginRecord] = field(default_factory=dict)
    providers: dict[str, tuple[Provider, str]] = field(default_factory=dict)
    manifest_paths: list[tuple[Path, str]] = field(default_factory=list)
    converters: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = field(
        default_factory=dict)

    def provider(self, name: str) -> Provider | None:
        entry = self.providers.get(name)
        return entry[0] if entry else None


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def discover(settings: Settings | None = None, extra: Iterable[tuple[str, object]] = (),
             ) -> tuple[pluggy.PluginManager, dict[str, PluginRecord]]:
    """Build a plugin manager from the entry points, isolating and recording failures.

    :param settings: which plugins to load (default: read from the environment).
    :param extra: ``(name, plugin)`` pairs registered in addition, e.g. by tests.
    :returns: the manager and one :class:`PluginRecord` per plugin tried.
    """
    settings = settings or get_settings()
    pm = _new_manager()
    records: dict[str, PluginRecord] = {}
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        if settings.only_plugins is not None and ep.name not in settings.only_plugins:
            continue
        if ep.name in settings.disabled_plugins or ep.name in records:
            continue
        dist = getattr(ep, "dist", None)
        record = PluginRecord(name=ep.name, module=ep.value,
                              distribution=dist.metadata["Name"] if dist else None,
                              version=dist.version if dist else None)
        records[ep.name] = record
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the hub
            record.fail(f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}")
            continue
        _register(pm, ep.name, plugin, record)
    for name, plugin in extra:
        record = PluginRecord(name=name, module=getattr(plugin, "__name__", repr(plugin)))
        records[name] = record
        _register(pm, name, plugin, record)
    return pm, records


def _register(pm: pluggy.PluginManager, name: str, plugin: object, record: PluginRecord) -> None:
    """Register one plugin, or record why not: pluggy's own validation, then the check
    ``check_pending`` makes for the whole manager, made for this plugin alone (a hook
    implementation that matches no hook specification), so one plugin's error is its own."""
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        record.fail(f"registration failed: {exc}")
        return
    unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or []
                     if not caller.has_spec()
                     and any(impl.plugin is plugin and not impl.optionalhook
                             for impl in caller.get_hookimpls()))
    if unknown:
        pm.unregister(plugin, name=name)
        hooks = sorted(n for n, caller in vars(pm.hook).items()
                       if not n.startswith("_") and caller.has_spec())
        record.fail("not loaded: " + "; ".join(_unknown_hook(n, hooks) for n in unknown)
                    + f". The hooks are {', '.join(hooks)} (hub.hookspecs).")


def _unknown_hook(name: str, hooks: list[str]) -> str:
    close = difflib.get_close_matches(name, hooks, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"@hookimpl {name!r} is not a backbone-hub hook{hint}"


def _call_each(pm: pluggy.PluginManager, hook_name: str, records: dict[str, PluginRecord],
               make_register: Callable[[PluginRecord], Callable[..., None]]) -> None:
    """Call one hook plugin by plugin, so one failure cannot hide the others."""
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        record = records[impl.plugin_name]
        try:
            impl.function(register=make_register(record))
        except PluginError as exc:
            record.fail(f"{hook_name}: {exc}")
        except Exception as exc:  # isolate third-party failures, report them
            record.fail(f"{hook_name} raised {type(exc).__name__}: {exc}")


def collect(pm: pluggy.PluginManager, records: dict[str, PluginRecord]) -> Registry:
    """Run the registration hooks and gather providers, manifest paths and converters."""
    reg = Registry(plugins=records)

    def providers_for(record: PluginRecord) -> Callable[[Provider], None]:
        def register(provider: Provider) -> None:
            if not isinstance(provider, Provider) or not provider.name:
                raise PluginLoadError(f"register_providers got {provider!r}, not a named "
                                      "hub.provider.Provider instance")
            if provider.name in reg.providers:
                other = reg.providers[provider.name][1]
                raise PluginLoadError(f"provider {provider.name!r} is already registered by plugin "
                                      f"{other!r}; disable one with HUB_DISABLE_PLUGINS")
            reg.providers[provider.name] = (provider, record.name)
            record.providers.append(provider.name)
        return register

    def manifests_for(record: PluginRecord) -> Callable[[Path], None]:
        def register(path: Path) -> None:
            if not isinstance(path, (str, Path)):
                raise PluginLoadError(f"register_manifests got {path!r}, not a path")
            p = Path(path)
            if p.is_dir():
                files = sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml"))
            elif p.is_file():
                files = [p]
            else:
                raise PluginLoadError(f"manifest path {str(p)!r} does not exist")
            for f in files:
                reg.manifest_paths.append((f, record.name))
                record.manifests.append(str(f))
        return register

    def converters_for(record: PluginRecord) -> Callable[..., None]:
        def register(name: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
            if not isinstance(name, str) or not callable(fn):
                raise PluginLoadError(f"register_converters got ({name!r}, {fn!r}); expected a "
                                      "name and a callable")
            if name in reg.converters:
                other = reg.converters[name][1]
                raise PluginLoadError(f"converter {name!r} is already registered by plugin {other!r}")
            reg.converters[name] = (fn, record.name)
        return register

    _call_each(pm, "register_providers", records, providers_for)
    _call_each(pm, "register_manifests", records, manifests_for)
    _call_each(pm, "register_converters", records, converters_for)
    return reg
