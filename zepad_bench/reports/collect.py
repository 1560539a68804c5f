"""A suite's board gathered from the results store: the newest row of every cell of its grid, found
by the suite's name and the cell's coordinates (never by keys recomputed from today's code), and
marked where its inputs changed since it was stored. The one report module that reads a suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zepad_bench.code_version import stage_code_versions
from zepad_bench.errors import UserError
from zepad_bench.reports.data import IDENTITY, Board, identity, tasks_of
from zepad_bench.stages import Stage, StageGraph
from zepad_bench.store import ResultStore
from zepad_bench.suite import Suite

RUN_KINDS = ("cold", "warm", "forced")


def outdated(row: dict[str, Any], stage: Stage) -> str | None:
    """Why a stored row no longer matches its cell's stage (its key differs): the plugins whose code
    changed since, or that another input (parameters, data, a checkpoint) did; ``None`` when current."""
    if row["key"] == stage.key:
        return None
    if not row.get("code"):
        return "inputs changed since it was stored (stored without code versions)"
    current = stage_code_versions(stage.closure())
    changed = sorted(k for k in {*current, *row["code"]} if current.get(k) != row["code"].get(k))
    if changed:
        return f"code changed since it was stored: {', '.join(changed)}"
    return "inputs changed since it was stored (parameters, data or checkpoints)"


def shown_runs(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run records a board lists, oldest first: the latest whole-grid run of each kind (cold, warm,
    forced) and every run since the latest cold one that computed cells (part of the grid included:
    their rows replace the cold run's); records from before run records were structured: the latest
    one, as recorded."""
    structured = [r for r in records if "kind" in r]
    if not structured:
        return records[-1:]
    latest = {r["kind"]: r for r in structured if not r.get("partial")}
    cold = latest["cold"]["finished"] if "cold" in latest else ""
    since = [r for r in structured if r["finished"] > cold and r.get("cells_computed")]
    shown = {id(r): r for r in [*(latest[k] for k in RUN_KINDS if k in latest), *since]}
    return sorted(shown.values(), key=lambda r: r["finished"])


def display_path(path: Path) -> str:
    """The suite's path relative to the current directory when it lies below it (as users type it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def headline_eps(suite: Suite) -> float:
    """``[suite] headline_eps``, else the first adaptive ε, else the grid's first ε."""
    if suite.headline_eps is not None:
        return suite.headline_eps
    return (suite.adaptive_eps or suite.grid["eps"])[0]


def board_from_store(suite: Suite, workdir: str | Path, reference: bool = False) -> Board:
    """The board of every cell of ``suite``'s grid from the results store in ``workdir``: the newest
    row of each (finished or failed; outdated ones marked), and the cells with none as pending."""
    if not (Path(workdir) / "results.sqlite").exists():
        raise UserError(f"no results stored in {workdir}; run the suite first (zepad-bench run {suite.path})")
    store = ResultStore(Path(workdir))
    graph = StageGraph(suite, suite.registry)
    newest = {identity(r): r for r in store.rows(suite=suite.name)}
    rows, pending = [], []
    for cell in suite.cells():
        row = newest.get(tuple(getattr(cell, c) for c in IDENTITY))
        stage = graph.task(cell)
        if row is not None:
            rows.append({**row, "outdated": outdated(row, stage)})
            continue
        pending.append({**cell.__dict__, "task_data": graph.task_data(cell), **graph.roles(cell)})
    if not rows:
        raise UserError(f"no results stored for suite {suite.name!r} in {workdir}; run it first")
    extra: list[str] = []
    if reference:
        from zepad_bench.reference import reference_section

        extra = reference_section(suite, [r for r in rows if r["status"] == "ok"])
    head = suite.raw.get("suite", {})
    return Board(
        suite.name,
        display_path(suite.path),
        head.get("description", ""),
        headline_eps(suite),
        rows,
        pending,
        tasks_of(rows),
        shown_runs(store.runs(suite.name)),
        extra,
        list(head.get("reports", [])),
    )
