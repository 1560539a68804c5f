"""A finished cell's row in the results store: its grid point, metrics, configuration, plugin versions,
timings and machine."""

from __future__ import annotations

import platform
from typing import Any

import torch

import zepad_bench
from zepad_bench.interfaces import Attack, DefendedModel, Task
from zepad_bench.machine import machine_info, now
from zepad_bench.registry import Registry
from zepad_bench.suite import Cell, Suite


def cell_row(
    suite: Suite,
    registry: Registry,
    cell: Cell,
    key: str,
    *,
    attack: Attack,
    model: DefendedModel,
    task: Task,
    test_size: int,
    stage_keys: dict[str, str],
    metrics: dict[str, Any],
    timings: dict[str, float],
    device: str,
) -> dict[str, Any]:
    """The row of ``cell`` (its task stage's ``key``); ``stage_keys`` holds the ``attack`` and ``defense``
    keys it read."""
    return {
        "key": key,
        "suite": suite.name,
        **cell.__dict__,
        "task_data": suite.spec("tasks", cell.task).reserved["data"],
        "metrics": metrics,
        "config": {
            "cell": cell.__dict__,
            "attack_plugin": attack.name,
            "attack_role": attack.role,
            "defense_role": model.defense.role,
            "report_metrics": list(task.report_metrics),
            "task_plugin": task.name,
            "surrogates": suite.surrogates(cell.victim, cell.scenario),
            "test_size": test_size,
            "precision": suite.precision,
            "attack_key": stage_keys["attack"],
            "defense_key": stage_keys["defense"],
            "branches": [{"name": b.name, "role": b.role} for b in model.branches],
        },
        "versions": versions(suite, registry, cell),
        "timings": timings,
        "machine": machine_info(device),
        "created": now(),
    }


def versions(suite: Suite, registry: Registry, cell: Cell) -> dict[str, str]:
    """zepad-bench, torch and Python versions, and the provider of each plugin the cell ran."""
    used = {
        ("attacks", suite.spec("attacks", cell.attack).plugin),
        ("defenses", suite.spec("defenses", cell.defense).plugin),
        ("tasks", suite.spec("tasks", cell.task).plugin),
    }
    out = {
        "zepad-bench": zepad_bench.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    for kind, name in sorted(used):
        out[f"{kind[:-1]}:{name}"] = str(registry.provider(kind, name))
    return out
