"""A validated suite as data: its settings, named plugin tables and grid axes, and what they imply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zepad_bench.registry import Registry
from zepad_bench.suite.grid import Cell, expand, replace_axes


@dataclass(frozen=True)
class PluginSpec:
    """One named table: its id, plugin name, the runner's reserved keys and the plugin's params."""

    id: str
    plugin: str
    reserved: dict[str, Any]
    params: dict[str, Any]

    def resolved(self) -> dict[str, Any]:
        return {"plugin": self.plugin, **self.reserved, "params": self.params}


@dataclass
class Suite:
    path: Path
    name: str
    seed: int
    device: str
    image_size: int
    eps: float
    attacker_data: str
    batch_size: int
    plugins: list[str]
    tables: dict[str, dict[str, PluginSpec]]
    grid: dict[str, list[Any]]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    registry: Registry | None = field(repr=False, default=None)
    download: frozenset[str] = frozenset()  # "<section>.<id>" tables to fetch first (never in any key)
    precision: str = "fp32"  # "bf16": backbones under bf16 autocast (zepad_bench.nn.precision)
    adaptive_eps: list[float] | None = None
    """``[suite] adaptive_eps``: the ε list of ``adaptive`` cells (RA-vs-ε curves); else the grid's."""
    headline_eps: float | None = None
    """``[suite] headline_eps``: the budget the README ranks defenses at (one the suite runs)."""
    scenario_filter: list[str] | None = None
    """``--scenarios`` on the CLI: only cells of these scenarios run."""

    def spec(self, kind: str, id_: str) -> PluginSpec:
        return self.tables[kind][id_]

    def cells(self) -> list[Cell]:
        """The grid's product; with ``tuning = "task"`` each cell tunes on its task's dataset (D_f = D_d)."""
        return expand(self)

    def attack_scenarios(self, attack: str) -> list[str]:
        """The scenarios attack table ``attack`` runs in: its ``scenarios`` key, else the grid's axis."""
        return list(self.spec("attacks", attack).reserved.get("scenarios", self.grid["scenarios"]))

    def attack_tasks(self, attack: str) -> list[str]:
        """The grid's tasks that attack table ``attack`` runs on: those its ``tasks`` key names, else all."""
        only = self.spec("attacks", attack).reserved.get("tasks")
        return [t for t in self.grid["tasks"] if only is None or t in only]

    def unsupported_pairing(self) -> tuple[str, str, str] | None:
        """``(attack id, scenario, message)`` of the first grid pairing the attack's plugin does not
        support (``Attack.scenarios``), or ``None``."""
        if self.registry is None:
            return None
        for attack in self.grid["attacks"]:
            spec = self.spec("attacks", attack)
            supported = self.registry.get("attacks", spec.plugin).scenarios
            for scenario in self.attack_scenarios(attack):
                if scenario not in supported:
                    return (
                        attack,
                        scenario,
                        f"attack {attack!r} (plugin {spec.plugin!r}) does not support scenario "
                        f"{scenario!r}; it supports: {', '.join(supported)} (set `scenarios` in "
                        f"[attacks.{attack}] or the grid's `scenarios`)",
                    )
        return None

    def auxiliaries(self, victim: str) -> list[str]:
        return list(self.spec("encoders", victim).reserved.get("auxiliaries", []))

    def surrogates(self, victim: str, scenario: str) -> list[str]:
        """Public encoders the attacker crafts on: the victim, plus its auxiliaries in white-box."""
        return [victim] + (self.auxiliaries(victim) if scenario == "white-box" else [])

    def with_axes(self, **axes: list[str] | None) -> Suite:
        """Replace grid axes by the given ids (CLI ``--attacks a,b`` …), validated."""
        return replace_axes(self, axes)
