"""Reading a board in words: figures with their noise, and conclusions stated only where the data
support them (a difference counts when it is beyond the noise, :meth:`Stat.ties`).

Helpers shared by the generated prose of the README and docs (:mod:`zepad_bench.reports.readings`,
:mod:`zepad_bench.reports.fidelity_docs`); pure functions of board rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from zepad_bench.interfaces import TRANSFER_SCENARIOS
from zepad_bench.reports.data import Board, describe, described
from zepad_bench.reports.frame import eps_text
from zepad_bench.statistics import Stat

Row = Mapping[str, Any]


def number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stat(rows: Iterable[Row], metric: str, **where: Any) -> Stat:
    """``metric`` over seeds among the rows matching ``where`` (coordinates, or ``role``/``plugin`` of
    the attack, ``defense_role``); a seed with several matching rows counts with their mean. A clean
    metric (its task describes it as ``clean``) counts only a seed's rows on the most test images: an
    adaptive cell that attacks a subset reports the subset's clean accuracy."""
    per_seed: dict[int, list[float]] = defaultdict(list)
    rows = [row for row in rows if matches(row, where)]
    if any((describe(metric, described(row.get("config", {}))) or {}).get("clean") for row in rows):
        most: dict[int, int] = defaultdict(int)
        for row in rows:
            most[row["seed"]] = max(most[row["seed"]], _size(row))
        rows = [row for row in rows if _size(row) == most[row["seed"]]]
    for row in rows:
        value = number(row["metrics"].get(metric))
        if value is not None:
            per_seed[row["seed"]].append(value)
    return Stat(tuple(sum(v) / len(v) for _, v in sorted(per_seed.items())))


def _size(row: Row) -> int:
    """The test images a row's cell evaluated (0 where not stored)."""
    return int(row.get("config", {}).get("test_size") or 0)


def worst(rows: Iterable[Row], metric: str, **where: Any) -> Stat:
    """Per seed the lowest ``metric`` over the matching rows, then over seeds."""
    per_seed: dict[int, float] = {}
    for row in rows:
        value = number(row["metrics"].get(metric)) if matches(row, where) else None
        if value is not None:
            per_seed[row["seed"]] = min(value, per_seed.get(row["seed"], value))
    return Stat(tuple(v for _, v in sorted(per_seed.items())))


def attribute(row: Row, name: str) -> Any:
    config = row.get("config", {})
    if name == "role":
        return config.get("attack_role", "attack")
    if name == "defense_role":
        return config.get("defense_role", "defense")
    if name == "task_plugin":
        return config.get("task_plugin", row["task"])
    if name == "defense_plugin":  # boards stored before rows named it: the defense id
        return config.get("defense_plugin", row["defense"])
    if name == "transfer":
        return row["scenario"] in TRANSFER_SCENARIOS
    return row[name]


def matches(row: Row, where: Mapping[str, Any]) -> bool:
    return all(attribute(row, k) == v for k, v in where.items())


def ids(rows: Iterable[Row], name: str, **where: Any) -> list[Any]:
    """The distinct values of ``name`` among the matching rows, in the rows' order."""
    return list(dict.fromkeys(attribute(r, name) for r in rows if matches(r, where)))


def first_task(board: Board, plugin: str) -> str | None:
    """The first task of the board run by ``plugin``."""
    return next((t for t in ids(board.ok, "task", task_plugin=plugin)), None)


def baseline(rows: Iterable[Row]) -> str | None:
    return next(iter(ids(rows, "defense", defense_role="baseline")), None)


def span(stats: Iterable[Stat], digits: int = 1, unit: str = " %") -> str:
    """``"a–b %"`` of the means (one value: ``"a %"``)."""
    means = sorted(s.mean for s in stats if s.n)
    if not means:
        return "n/a"
    low, high = f"{means[0]:.{digits}f}", f"{means[-1]:.{digits}f}"
    return f"{low}{unit}" if low == high else f"{low}–{high}{unit}"


def std_span(stats: Iterable[Stat]) -> str:
    stds = sorted(s.std for s in stats if s.n > 1)
    return "n/a" if not stds else f"{stds[0]:.1f}–{stds[-1]:.1f}"


def listing(names: Iterable[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""


def below(a: Stat, b: Stat) -> bool:
    """``a`` lower than ``b`` beyond the noise (with one seed: lower at all)."""
    return a.mean < b.mean and not a.ties(b)


def untested(stats: Iterable[Stat]) -> str:
    """A note for comparisons made on one seed: the means alone, no noise to test them against."""
    return "" if all(s.n > 1 for s in stats) else " (one seed: compared without noise)"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def cold_run(board: Board) -> dict[str, Any] | None:
    """The board's cold whole-grid run record (no cell stored before it), if it lists one."""
    for run in board.runs:
        kind = run.get("kind") or str(run.get("note", "")).split(":")[0]
        if kind == "cold" and not run.get("partial"):
            return run
    return None


def recomputed_since(board: Board, run: Mapping[str, Any]) -> str:
    """``"; cells recomputed since by later runs: 18 in 8 min 17 s"`` when runs after ``run`` (a cold
    one) computed cells of the board (their rows replace the cold run's), else ``""``."""
    later = [r for r in board.runs if r.get("finished", "") > run.get("finished", "") and _computed(r)]
    if not later:
        return ""
    each = "; ".join(f"{_computed(r)} in {duration(r['seconds'])}" for r in later)
    return f"; cells recomputed since by later runs: {each}"


def _computed(run: Mapping[str, Any]) -> int:
    """Cells a run record says it computed (structured or older records)."""
    return int(run.get("cells_computed", run.get("computed", 0)) or 0)


def run_label(run: Mapping[str, Any]) -> str:
    """What a cold run was: a cold run, or its cells computed from stages another run had cached."""
    stages = (run.get("stages") or {}).values()
    if "kind" in run and stages and not sum(v.get("computed", 0) for v in stages):
        return "cells computed from stages cached by an earlier run, in"
    return "cold run"


def run_text(run: Mapping[str, Any]) -> str:
    """A run record's wall time and what it computed: ``"8 min 9 s on 2 CPUs (…)"``."""
    machine = run.get("machine") or {}
    where = f"{machine.get('cpus', '?')} CPUs" + (
        f", {machine['gpu']}" if machine.get("gpu") else f", device {machine.get('device', '?')}"
    )
    if "kind" in run:
        stages = run.get("stages") or {}
        computed = sum(v.get("computed", 0) for v in stages.values())
        reused = sum(v.get("reused", 0) for v in stages.values())
        what = f"{run['cells_computed']} cells; stages {computed} computed, {reused} already cached"
    else:
        what = f"{run['computed']} cells; {run['note']}"
    return f"{duration(run['seconds'])} on {where} ({what}; run finished {run['finished'][:10]})"


def eps_of(rows: Iterable[Row], **where: Any) -> list[float]:
    return sorted(set(ids(rows, "eps", **where)))


def at(eps: float) -> str:
    return f"ε {eps_text(eps)}"
