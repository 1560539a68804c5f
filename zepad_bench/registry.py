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
from zepad_bench.params import did_you_mean

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

    def kind(self, kind: str) -> dict[str, type]:
        return getattr(self, kind)

    def provider(self, kind: str, name: str) -> Provider:
        return self.providers[(kind, name)]

    def get(self, kind: str, name: str) -> type:
        table = self.kind(kind)
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise UserError(
                f"unknown {kind[:-1]} plugin {name!r}{did_you_mean(name, sorted(table))}; known: {known}"
            )
        return table[name]


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


def _plugin_manager(modules: tuple[str, ...]) -> tuple[pluggy.PluginManager, dict[int, Provider]]:
    pm = pluggy.PluginManager("zepad_bench")
    pm.add_hookspecs(hookspecs)
    providers: dict[int, Provider] = {}
    for provider, ep in entry_points():
        plugin = ep.load()
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=f"{provider.name}:{ep.name}")
        providers[id(plugin)] = provider
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise UserError(f"cannot import plugin module {module_name!r}: {exc}") from None
        if not pm.is_registered(module):
            pm.register(module, name=module_name)
            providers[id(module)] = Provider(module_name)
    return pm, providers


def load_registry(modules: tuple[str, ...] | list[str] = ()) -> Registry:
    """Load every installed plugin (plus ``modules``, imported by path) into a :class:`Registry`.

    Two plugins registering the same name in one kind is an error naming both providers.
    """
    from zepad_bench import interfaces

    bases = {
        "attacks": interfaces.Attack,
        "defenses": interfaces.Defense,
        "encoders": interfaces.EncoderSource,
        "datasets": interfaces.DatasetSource,
        "tasks": interfaces.Task,
    }
    pm, providers = _plugin_manager(tuple(modules))
    registry = Registry()
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")
        table = registry.kind(kind)
        for impl in hook.get_hookimpls():
            provider = providers.get(id(impl.plugin), Provider(impl.plugin_name))

            def register(cls, _provider=provider, _kind=kind, _table=table):
                if not (isinstance(cls, type) and issubclass(cls, bases[_kind])):
                    raise UserError(
                        f"{_provider} registered {cls!r} in {_kind}, which is not a subclass of "
                        f"zepad_bench.{bases[_kind].__name__}"
                    )
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not name:
                    raise UserError(f"{_provider} registered {cls!r} in {_kind} without a string `name`")
                if name in _table:
                    other = registry.providers[(_kind, name)]
                    raise UserError(
                        f"duplicate {_kind[:-1]} plugin name {name!r}: provided by {other} and by {_provider}"
                    )
                _table[name] = cls
                registry.providers[(_kind, name)] = _provider

            impl.function(register=register)
    _load_backbones(pm, providers, registry)
    return registry


def _load_backbones(pm: pluggy.PluginManager, providers: dict[int, Provider], registry: Registry) -> None:
    """Collect ``register_backbones`` and make the architectures buildable (a clash is an error)."""
    for impl in pm.hook.register_backbones.get_hookimpls():
        provider = providers.get(id(impl.plugin), Provider(impl.plugin_name))

        def register(name, builder, _provider=provider):
            if not isinstance(name, str) or not name or not callable(builder):
                raise UserError(f"{_provider}: register_backbones takes register(name: str, builder)")
            if ("backbones", name) in registry.providers:
                other = registry.providers[("backbones", name)]
                raise UserError(f"duplicate backbone {name!r}: provided by {other} and by {_provider}")
            registry.backbones[name] = builder
            registry.providers[("backbones", name)] = _provider

        impl.function(register=register)
    if registry.backbones:
        from zepad_bench.nn.backbones import register_backbone

        for name, builder in registry.backbones.items():
            try:
                register_backbone(name, builder)
            except ValueError as exc:
                raise UserError(f"{registry.providers[('backbones', name)]}: {exc}") from None
