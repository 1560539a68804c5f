"""A cell's row in the results store: its identity (key, grid coordinates, the code versions of the
plugins it runs, machine, time), and either its metrics, configuration, plugin versions, timings and
figure histograms (``status = "ok"``) or the one-line reason and stage it failed at."""

from __future__ import annotations

import platform
from typing import Any

import torch

import zepad_bench
from zepad_bench.code_version import stage_code_versions
from zepad_bench.errors import CellFailed
from zepad_bench.interfaces import ADAPTIVE_METRICS, TRANSFER_SCENARIOS, Attack, DefendedModel, Metric, Task
from zepad_bench.machine import machine_info, now
from zepad_bench.params import resolved
from zepad_bench.registry import Registry
from zepad_bench.stages import StageGraph
from zepad_bench.store import record_histograms
from zepad_bench.suite import Cell, Suite


def identity(graph: StageGraph, cell: Cell, device: str) -> dict[str, Any]:
    """What every stored row of ``cell`` holds: key, suite, grid coordinates, the code versions of the
    plugins it runs, machine and time."""
    stage = graph.task(cell)
    return {
        "key": stage.key,
        "suite": graph.suite.name,
        **cell.__dict__,
        "task_data": graph.task_data(cell),
        "code": stage_code_versions(stage.closure()),
        "machine": machine_info(device),
        "created": now(),
    }


def cell_row(
    graph: StageGraph,
    cell: Cell,
    *,
    attack: Attack,
    model: DefendedModel,
    task: Task,
    test_size: int,
    stage_keys: dict[str, str],
    metrics: dict[str, Any],
    timings: dict[str, float],
    records: dict[str, Any],
    device: str,
) -> dict[str, Any]:
    """The row of a finished cell; ``stage_keys`` holds the ``attack`` and ``defense`` keys it read,
    ``records`` what the task recorded (stored as histograms)."""
    suite = graph.suite
    transfer = cell.scenario in TRANSFER_SCENARIOS
    return {
        **identity(graph, cell, device),
        "status": "ok",
        "metrics": metrics,
        "config": {
            "cell": cell.__dict__,
            "attack_plugin": attack.name,
            "attack_role": attack.role,
            "defense_role": model.defense.role,
            **defense_config(suite, graph.registry, cell.defense),
            "metric_info": [m.as_dict() for m in described_metrics(task, cell.scenario)],
            "task_plugin": task.name,
            "surrogates": suite.surrogates(cell.victim, cell.scenario) if transfer else [],
            "test_size": test_size,
            "precision": suite.precision,
            "attack_key": stage_keys["attack"],
            "defense_key": stage_keys["defense"],
            "branches": [{"name": b.name, "role": b.role} for b in model.branches],
            **adaptive_members(metrics),
        },
        "versions": versions(suite, graph.registry, cell),
        "timings": timings,
        "records": record_histograms(records),
    }


def adaptive_members(metrics: dict[str, Any]) -> dict[str, list[str]]:
    """``{"adaptive_members": [...]}``: the adaptive attack's members in the order they ran (the order
    of its ``RA_after:<member>`` metrics, which published JSON, sorting keys, does not keep); ``{}``
    for a cell without them."""
    members = [name.split(":", 1)[1] for name in metrics if name.startswith("RA_after:")]
    return {"adaptive_members": members} if members else {}


def failed_row(graph: StageGraph, cell: Cell, exc: CellFailed, device: str) -> dict[str, Any]:
    """The row of a failed cell: ``exc``'s one-line reason and the stage that raised it."""
    reason = " ".join(str(exc).split())
    failed = {"reason": reason, "stage": exc.stage or "task", "config": graph.roles(cell)}
    return {**identity(graph, cell, device), **failed}


def defense_config(suite: Suite, registry: Registry, defense_id: str) -> dict[str, Any]:
    """What a report needs to know of a cell's defense: its plugin, the parameters its suite table
    gives (``defense_given``) and every resolved one (``defense_params``: defaults and presets filled
    in), so presets and their deviations are told apart from stored rows alone."""
    spec = suite.spec("defenses", defense_id)
    return {
        "defense_plugin": spec.plugin,
        "defense_given": dict(spec.params),
        "defense_params": resolved(registry.get("defenses", spec.plugin), spec.params),
    }


def described_metrics(task: Task, scenario: str) -> list[Metric]:
    """The task's metric descriptions, plus what the runner and the attack add in the adaptive scenario."""
    described = list(task.metrics())
    if scenario == "adaptive":
        names = {m.name for m in described}
        described += [m for m in ADAPTIVE_METRICS if m.name not in names]
    return described


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
