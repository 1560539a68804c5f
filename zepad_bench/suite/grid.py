"""The grid: its axes, their expansion into cells, and the CLI's replacement of axes."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from zepad_bench.errors import UserError
from zepad_bench.interfaces import SCENARIOS

GRID_AXES = {  # axis → (table its values refer to, or None)
    "victims": "encoders",
    "scenarios": None,
    "attacks": "attacks",
    "eps": None,
    "defenses": "defenses",
    "tuning": "datasets",
    "tasks": "tasks",
    "seeds": None,
}
TUNE_ON_TASK = "task"  # `[grid] tuning = "task"`: each cell tunes on its own task's dataset (D_f = D_d)


@dataclass(frozen=True)
class Cell:
    """One grid point: victim × scenario × attack × eps × defense × D_f × task × seed."""

    victim: str
    scenario: str
    attack: str
    eps: float
    defense: str
    tuning: str
    task: str
    seed: int

    def label(self) -> str:
        return (
            f"{self.victim}/{self.scenario}/{self.attack}@{self.eps:.4f}/{self.defense}"
            f"/Df={self.tuning}/{self.task}/seed={self.seed}"
        )


class Gridded(Protocol):
    """What the grid reads of a suite (``zepad_bench.suite.model.Suite``, which imports this module)."""

    path: Path
    tables: dict[str, dict[str, Any]]
    grid: dict[str, list[Any]]
    adaptive_eps: list[float] | None
    scenario_filter: list[str] | None

    def spec(self, kind: str, id_: str) -> Any: ...

    def attack_scenarios(self, attack: str) -> list[str]: ...

    def attack_tasks(self, attack: str) -> list[str]: ...

    def unsupported_pairing(self) -> tuple[str, str, str] | None: ...


S = TypeVar("S", bound=Gridded)


def expand(suite: Gridded) -> list[Cell]:
    """The grid's product, scenario by scenario (each attack in the scenarios it runs in)."""
    g = suite.grid
    cells = []
    scenarios = list(dict.fromkeys(s for a in g["attacks"] for s in suite.attack_scenarios(a)))
    for victim, scenario, attack in itertools.product(g["victims"], scenarios, g["attacks"]):
        if scenario not in suite.attack_scenarios(attack):
            continue
        if suite.scenario_filter is not None and scenario not in suite.scenario_filter:
            continue
        cells += _cells(suite, victim, scenario, attack)
    return cells


def _cells(suite: Gridded, victim: str, scenario: str, attack: str) -> list[Cell]:
    g, cells = suite.grid, []
    eps_list = suite.adaptive_eps if scenario == "adaptive" and suite.adaptive_eps else g["eps"]
    for eps, defense, tune, task, seed in itertools.product(
        eps_list, g["defenses"], g["tuning"], suite.attack_tasks(attack), g["seeds"]
    ):
        if tune == TUNE_ON_TASK:
            tune = suite.spec("tasks", task).reserved["data"]
        cells.append(Cell(victim, scenario, attack, eps, defense, tune, task, seed))
    return cells


def replace_axes(suite: S, axes: dict[str, list[str] | None]) -> S:
    """``suite`` with grid axes replaced by the given ids (CLI ``--attacks a,b`` …), validated."""
    grid = dict(suite.grid)
    for axis, ids in axes.items():
        if ids is None:
            continue
        table = GRID_AXES[axis]
        for id_ in ids:
            if table and id_ not in suite.tables[table]:
                known = ", ".join(sorted(suite.tables[table]))
                raise UserError(f"--{axis}: unknown {table[:-1]} id {id_!r} in {suite.path}; known: {known}")
            if axis == "scenarios" and id_ not in SCENARIOS:
                raise UserError(f"--scenarios: unknown scenario {id_!r}; known: {', '.join(SCENARIOS)}")
        grid[axis] = list(ids)
    changed = {"grid": grid}
    if axes.get("scenarios") is not None:
        changed["scenario_filter"] = list(axes["scenarios"])
    narrowed = dataclasses.replace(suite, **changed)
    bad = narrowed.unsupported_pairing()
    if bad:
        raise UserError(f"--scenarios/--attacks: {bad[2]}")
    return narrowed
