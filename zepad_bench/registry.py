"""Loads plugins (entry points in group ``zepad_bench`` and ad-hoc modules) into a registry."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from zepad_bench import hookspecs
from zepad_bench.errors import UserError
from zepad_bench.plugin_failures import BrokenPlugin, PluginLoadError

KINDS = ("attacks", "defenses", "encoders", "datasets", "tasks")
ENV_ALLOWLIST = "ZEPAD_BENCH_PLUGINS"
"""Comma-separated distribution names of outside plugins to load; unset loads all, empty loads none."""

SELF_DISTRIBUTION = "zepad-bench"


@dataclass(frozen=True)
class Provider:
    """Who registered a plugin class: a distribution (with version) or a module path."""

    name: str
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name} {self.version}".strip()


@dataclass
class Registry:
    """Name → class maps for each plugin kind, and who provided each entry."""

    attacks: dict[str, type] = field(default_factory=dict)
    defenses: dict[str, type] = field(default_factory=dict)
    encoders: dict[str, type] = field(default_factory=dict)
    datasets: dict[str, type] = field(default_factory=dict)
    tasks: dict[str, type] = field(default_factory=dict)
    backbones: dict[str, Callable[..., Any]] = field(default_factory=dict)
    """Architectures from plugins (name → builder); the built-ins are in ``zepad_bench.nn.backbones``."""
    providers: dict[tuple[str, str], Provider] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)
    """Installed plugins skipped because they could not load (one line each: ``str(b)``)."""

    def kind(self, kind: str) -> dict[str, type]:
        return getattr(self, kind)

    def provider(self, kind: str, name: str) -> Provider:
        return self.providers[(kind, name)]

    def get(self, kind: str, name: str) -> type:
        table = self.kind(kind)
        if name not in table:
            raise UserError(self.unknown(kind, name))
        return table[name]

    def unknown(self, kind: str, name: str) -> str:
        """Why ``name`` is not a ``kind`` plugin: the known names, and the plugins that failed to load."""
        known = ", ".join(sorted(self.kind(kind))) or "none"
        skipped = "".join(f"; not loaded, may provide it: {b}" for b in self.broken)
        return f"unknown {kind[:-1]} plugin {name!r}; known: {known}{skipped}"


def _allowed(dist_name: str) -> bool:
    allow = os.environ.get(ENV_ALLOWLIST)
    if dist_name == SELF_DISTRIBUTION or allow is None:
        return True
    return dist_name in {n.strip() for n in allow.split(",") if n.strip()}


def entry_points() -> list[tuple[Provider, importlib.metadata.EntryPoint]]:
    """The allowed entry points of group ``zepad_bench``, with the distribution that declares each."""
    return [
        (Provider(dist.metadata["name"], dist.version), ep)
        for dist in importlib.metadata.distributions()
        for ep in dist.entry_points
        if ep.group == "zepad_bench" and _allowed(dist.metadata["name"])
    ]


@dataclass(frozen=True)
class _Loaded:
    """A plugin object registered with pluggy: who provides it, and how it was named."""

    plugin: Any
    provider: Provider
    source: str  # "entry point NAME = MODULE" or "module MODULE"
    module: str
    adhoc: bool  # named by a suite (or ``load_registry(modules)``): a failure is the caller's error


def _plugin_manager(
    modules: tuple[str, ...],
) -> tuple[pluggy.PluginManager, list[_Loaded], list[BrokenPlugin]]:
    """Import every allowed entry point (one that raises is skipped and reported) and ``modules`` (one
    that raises is a :class:`PluginLoadError`)."""
    pm = pluggy.PluginManager("zepad_bench")
    pm.add_hookspecs(hookspecs)
    loaded: list[_Loaded] = []
    broken: list[BrokenPlugin] = []
    for provider, ep in entry_points():
        source = f"entry point {ep.name} = {ep.value}"
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken outside plugin must not take the host down
            broken.append(BrokenPlugin.of(exc, str(provider), source, ep.module))
            continue
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=f"{provider.name}:{ep.name}")
        loaded.append(_Loaded(plugin, provider, source, ep.module, adhoc=False))
    for module_name in modules:
        source = f"module {module_name}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginLoadError(BrokenPlugin.of(exc, module_name, source, module_name)) from None
        if not pm.is_registered(module):
            pm.register(module, name=module_name)
            loaded.append(_Loaded(module, Provider(module_name), source, module_name, adhoc=True))
    return pm, loaded, broken


def _collect(pm: pluggy.PluginManager, entry: _Loaded, bases: dict[str, type]) -> dict[str, list[Any]]:
    """Call ``entry``'s ``register_*`` hooks: kind → the classes (backbones: ``(name, builder)``) it
    registers, each checked for its kind. Raises whatever the plugin's hooks raise."""
    staged: dict[str, list[Any]] = {kind: [] for kind in (*KINDS, "backbones")}
    for kind in staged:
        impls = [i for i in getattr(pm.hook, f"register_{kind}").get_hookimpls() if i.plugin is entry.plugin]
        for impl in impls:

            def register(*args, _kind=kind):
                staged[_kind].append(_checked(entry.provider, _kind, bases, *args))

            impl.function(register=register)
    return staged


def _checked(provider: Provider, kind: str, bases: dict[str, type], *args: Any) -> Any:
    """One ``register(...)`` call's argument(s) if they fit ``kind``, else a UserError naming ``provider``."""
    if kind == "backbones":
        name, builder = args if len(args) == 2 else (None, None)
        if not isinstance(name, str) or not name or not callable(builder):
            raise UserError(f"{provider}: register_backbones takes register(name: str, builder)")
        return name, builder
    (cls,) = args
    if not (isinstance(cls, type) and issubclass(cls, bases[kind])):
        raise UserError(
            f"{provider} registered {cls!r} in {kind}, which is not a subclass of "
            f"zepad_bench.{bases[kind].__name__}"
        )
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise UserError(f"{provider} registered {cls!r} in {kind} without a string `name`")
    return cls


def load_registry(modules: tuple[str, ...] | list[str] = ()) -> Registry:
    """Load every installed plugin (plus ``modules``, imported by path) into a :class:`Registry`.

    An installed plugin whose import or hooks raise is skipped and listed in ``registry.broken`` (one
    line each); a module of ``modules`` that does so raises :class:`PluginLoadError`. Two plugins
    registering the same name in one kind is an error naming both providers.
    """
    from zepad_bench import interfaces

    bases = {
        "attacks": interfaces.Attack,
        "defenses": interfaces.Defense,
        "encoders": interfaces.EncoderSource,
        "datasets": interfaces.DatasetSource,
        "tasks": interfaces.Task,
    }
    pm, loaded, broken = _plugin_manager(tuple(modules))
    registry = Registry(broken=broken)
    for entry in loaded:
        try:
            staged = _collect(pm, entry, bases)
        except Exception as exc:
            failure = BrokenPlugin.of(exc, str(entry.provider), entry.source, entry.module)
            if entry.adhoc:
                raise PluginLoadError(failure) from None
            broken.append(failure)
            continue
        for kind in KINDS:
            table = registry.kind(kind)
            for cls in staged[kind]:
                if cls.name in table:
                    other = registry.providers[(kind, cls.name)]
                    raise UserError(
                        f"duplicate {kind[:-1]} plugin name {cls.name!r}: provided by {other} and by "
                        f"{entry.provider}"
                    )
                table[cls.name] = cls
                registry.providers[(kind, cls.name)] = entry.provider
        _add_backbones(registry, entry.provider, staged["backbones"])
    _register_backbones(registry)
    return registry


def _add_backbones(registry: Registry, provider: Provider, backbones: list[tuple[str, Any]]) -> None:
    """Architectures a plugin registered (a name another provider has is an error naming both)."""
    for name, builder in backbones:
        if ("backbones", name) in registry.providers:
            other = registry.providers[("backbones", name)]
            raise UserError(f"duplicate backbone {name!r}: provided by {other} and by {provider}")
        registry.backbones[name] = builder
        registry.providers[("backbones", name)] = provider


def _register_backbones(registry: Registry) -> None:
    """Make the plugins' architectures buildable (a clash with a built-in is an error)."""
    if registry.backbones:
        from zepad_bench.nn.backbones import register_backbone

        for name, builder in registry.backbones.items():
            try:
                register_backbone(name, builder)
            except ValueError as exc:
                raise UserError(f"{registry.providers[('backbones', name)]}: {exc}") from None
