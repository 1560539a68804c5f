"""A suite's results as data: the :class:`Board` every report renders, and its JSON file.

The JSON (docs/results.md) is ``{"format": "zepad-bench-results", "version": 2, "suite": {name,
source, description, headline_eps, reports}, "tasks": {task id: {plugin, metrics}}, "results": [row, …],
"pending": [cell, …], "runs": [run record, …], "reference": [markdown line, …]}``. A row is the
results store's row of one cell and seed (``status`` ``"ok"`` or ``"failed"``) plus ``outdated``;
the metric descriptions every row of a task carries are kept once, under ``tasks``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zepad_bench.errors import UserError
from zepad_bench.interfaces import CORE_METRICS, Metric

FORMAT = "zepad-bench-results"
VERSION = 2
IDENTITY = ("victim", "scenario", "attack", "eps", "defense", "tuning", "task", "seed")
"""The grid coordinates naming a cell within its suite."""


@dataclass
class Board:
    """Everything a board shows: the newest row of every cell of the suite, and the cells without one."""

    name: str
    source: str = ""
    description: str = ""
    headline_eps: float | None = None
    """The budget the README ranks at (``[suite] headline_eps``; :func:`default_headline_eps`)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    """Cells of the suite's grid with no stored row: their coordinates and ``task_data``."""
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Task id → ``{"plugin": name, "metrics": [Metric as dict, …]}`` (what the task said it returns)."""
    runs: list[dict[str, Any]] = field(default_factory=list)
    reference: list[str] = field(default_factory=list)
    """Markdown lines comparing the rows with the paper (``leaderboard --reference``), as made."""
    reports: list[str] = field(default_factory=list)
    """Sections the suite asks its board for (``[suite] reports``; :mod:`zepad_bench.reports.sections`)."""

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "ok"]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "failed"]

    @property
    def headline(self) -> float | None:
        return self.headline_eps if self.headline_eps is not None else default_headline_eps(self.rows)

    def metrics(self, task: str) -> list[dict[str, Any]]:
        """The task's metric descriptions (``Metric`` fields as a dict), in the task's order."""
        return self.tasks.get(task, {}).get("metrics", [])

    def task_ids(self) -> list[str]:
        """Tasks in the order their cells come (rows, then pending cells)."""
        return list(dict.fromkeys([r["task"] for r in self.rows] + [c["task"] for c in self.pending]))


def identity(row: dict[str, Any]) -> tuple:
    return tuple(row[c] for c in IDENTITY)


def default_headline_eps(rows: list[dict[str, Any]]) -> float | None:
    """The ε of the first adaptive cell (the first of ``[suite] adaptive_eps``), else of the first cell."""
    adaptive = [r["eps"] for r in rows if r["scenario"] == "adaptive"]
    return adaptive[0] if adaptive else rows[0]["eps"] if rows else None


def tasks_of(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: its plugin and the metric descriptions of its newest finished row."""
    tasks: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: r["created"]):
        config = row.get("config", {})
        if row["status"] == "ok":
            tasks[row["task"]] = {"plugin": config.get("task_plugin", ""), "metrics": described(config)}
    return tasks


def described(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Stored descriptions; rows stored before tasks described their metrics name them only."""
    if "metric_info" in config:
        return config["metric_info"]
    core = {m.name: m for m in CORE_METRICS}
    names = config.get("report_metrics", [m.name for m in CORE_METRICS])
    undescribed = "not described in results stored before tasks described their metrics"
    return [
        (core.get(n) or Metric(n, undescribed, clean=n == "BA" or n.endswith("_clean"))).as_dict()
        for n in names
    ]


def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"<[^<>]+>", name)
    return re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")


def describe(metric: str, described: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The description of ``metric``: its own, else the first family (``RA:<branch>``) it belongs to."""
    for info in described:
        if info["name"] == metric:
            return info
    return next(
        (info for info in described if "<" in info["name"] and _pattern(info["name"]).match(metric)), None
    )


def to_json(board: Board) -> bytes:
    """The board's data as JSON (keys sorted, so the same data gives the same bytes)."""
    rows = [{**r, "config": {k: v for k, v in r["config"].items() if k != "metric_info"}} for r in board.rows]
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "suite": {
            "name": board.name,
            "source": board.source,
            "description": board.description,
            "headline_eps": board.headline_eps,
            "reports": board.reports,
        },
        "tasks": board.tasks,
        "results": rows,
        "pending": board.pending,
        "runs": board.runs,
        "reference": board.reference,
    }
    return json.dumps(payload, indent=1, sort_keys=True, default=str).encode()


def _with_descriptions(row: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A published row with its task's metric descriptions back in its config, as the store gives it
    (:func:`to_json` keeps them once per task)."""
    if row.get("task") not in tasks:
        return row
    return {**row, "config": {**row.get("config", {}), "metric_info": tasks[row["task"]]["metrics"]}}


def from_json(payload: dict[str, Any]) -> Board:
    """The board of a published JSON (version 2, or a version-1 file from before this format had a
    version: every row finished, code versions unknown, metrics named but not described)."""
    if payload.get("format") == FORMAT:
        if payload.get("version") != VERSION:
            raise ValueError(f"format version {payload.get('version')!r}; this zepad-bench reads {VERSION}")
        suite, tasks = payload["suite"], payload.get("tasks", {})
        return Board(
            suite["name"],
            suite.get("source", ""),
            suite.get("description", ""),
            suite.get("headline_eps"),
            [_with_descriptions(row, tasks) for row in payload["results"]],
            payload.get("pending", []),
            tasks,
            payload.get("runs", []),
            payload.get("reference", []),
            suite.get("reports", []),
        )
    if isinstance(payload.get("suite"), str) and isinstance(payload.get("results"), list):
        rows = [
            {"status": "ok", "code": {}, "records": {}, "outdated": None, **r} for r in payload["results"]
        ]
        return Board(
            payload["suite"],
            payload.get("source", ""),
            payload.get("description", ""),
            None,
            rows,
            tasks=tasks_of(rows),
            runs=payload.get("runs", []),
        )
    raise ValueError(f'not a zepad-bench results file (no "format": "{FORMAT}")')


def read_board(path: str | Path) -> Board:
    """:func:`from_json` of a file; a file that is not one is a one-line :class:`UserError`."""
    try:
        return from_json(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read a board from it ({' '.join(str(exc).split())})") from None
