"""What was measured, where and when: the provenance every board and the README block state."""

from __future__ import annotations

from typing import Any

import pandas as pd

from zepad_bench.interfaces import TRANSFER_SCENARIOS
from zepad_bench.reports.data import Board
from zepad_bench.reports.frame import eps_text
from zepad_bench.statistics import TIE_FACTOR


def _listing(values) -> str:
    return ", ".join(map(str, dict.fromkeys(values)))


def surrogates(board: Board) -> dict[str, str]:
    """Per transfer scenario, the public encoders its attacks were fitted on (as stored)."""
    out: dict[str, list[str]] = {}
    for row in board.ok:
        if row["scenario"] in TRANSFER_SCENARIOS:
            names = "+".join(row.get("config", {}).get("surrogates", []))
            if names:
                out.setdefault(row["scenario"], []).append(names)
    return {scenario: _listing(names) for scenario, names in out.items()}


def provenance(board: Board, frame: pd.DataFrame) -> list[str]:
    """Suite file, data, budgets, seeds, machines, times, runs and versions, one line each."""
    ok = board.ok
    seeds = sorted(frame["seed"].unique().tolist())
    sizes: dict[str, int] = {}
    for r in ok:
        if r.get("config", {}).get("test_size"):
            sizes[r["task_data"]] = max(sizes.get(r["task_data"], 0), r["config"]["test_size"])
    subsets = sorted(  # adaptive cells that attacked a subset of their test set
        {
            int(n)
            for r in ok
            if isinstance(n := r["metrics"].get("adaptive_n"), (int, float))
            and n < sizes.get(r["task_data"], 0)
        }
    )
    budgets = ", ".join(eps_text(e) for e in sorted(frame["eps"].unique()))
    headline = f"; headline ε {eps_text(board.headline)}" if board.headline is not None else ""
    machines = {_machine(r["machine"]) for r in ok if r.get("machine")}
    created = sorted(r["created"] for r in board.rows)
    versions: dict[str, str] = {}
    for row in ok:
        versions.update(row.get("versions", {}))
    lines = [
        f"- suite file: `{board.source}`" if board.source else "- suite file: (not recorded)",
        f"- victim encoder(s): {_listing(frame['victim'])}; D_f (defense tuning data): "
        f"{_listing(frame['tuning'])}; D_d (downstream data): {_listing(frame['task_data'])}"
        + (f"; test-set size: {', '.join(f'{k} {v}' for k, v in sizes.items())}" if sizes else "")
        + (f" (adaptive cells: seeded subsets of {', '.join(map(str, subsets))})" if subsets else ""),
        f"- budgets ε: {budgets} (L∞, pixels in [0, 1]){headline}; every attacked batch was checked "
        "against ε by the runner",
        f"- seeds: {', '.join(map(str, seeds))} (n = {len(seeds)}); cells: {len(frame)}",
        f"- machine: {'; '.join(sorted(machines)) or '(not recorded)'}",
        f"- results created {created[0]} … {created[-1]}" if created else "- no results stored yet",
    ]
    lines += [f"- {run_line(run)}" for run in board.runs]
    if versions:
        lines.append(f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))}")
    return lines


def _machine(machine: dict[str, Any]) -> str:
    gpu = f" ({machine['gpu']})" if machine.get("gpu") else ""
    cpus, device = machine.get("cpus", "?"), machine.get("device", "?")
    return f"{machine.get('platform', '?')}, {cpus} CPUs, device {device}{gpu}"


def run_line(run: dict[str, Any]) -> str:
    """One run record (``runs`` table: executor, kind, cells and stages computed/reused, wall time)."""
    if "kind" not in run:  # recorded before run records were structured: shown as recorded
        return (
            f"run finished {run['finished']}: {run['seconds']:.1f} s wall, {run['computed']} cells computed, "
            f"{run['reused']} already stored ({run['note']})"
        )
    stages = run.get("stages") or {}
    done = ", ".join(f"{k} {v.get('computed', 0)}/{v.get('reused', 0)}" for k, v in stages.items())
    return (
        f"run finished {run['finished']} ({run['executor']}, {run['kind']}"
        + (", part of the grid" if run.get("partial") else "")
        + f"): {run['seconds']:.1f} s wall (loading the suite and running the cells; publishing not "
        "counted); "
        f"cells {run['cells_computed']} computed, {run['cells_reused']} already stored, "
        f"{run['cells_failed']} failed" + (f"; stages computed/reused: {done}" if done else "")
    )


def noise_note(frame: pd.DataFrame) -> str:
    seeds = frame["seed"].nunique()
    if seeds < 2:
        return (
            "**One seed**: entries are single runs with no measured spread; the same seed on another "
            "machine can differ by several points. Do not rank defenses on these numbers alone."
        )
    return (
        f"Entries are mean ± sample std (n − 1) over {seeds} seeds. A seed changes every random "
        "choice of the run (attack initialisation and data order, defense tuning, heads, splits); shipped "
        "checkpoints stay fixed. The same seeds on another machine differ by about the spread shown. "
        f"**Bold**: best defense in the column; ≈: within noise of it (|Δ| < {TIE_FACTOR:g}·√(sem₁²+sem₂²))."
    )


def status_line(board: Board) -> str:
    """How complete the board is: cells with results, failed, pending, outdated."""
    total = len(board.rows) + len(board.pending)
    outdated = sum(1 for r in board.rows if r.get("outdated"))
    parts = [f"{len(board.ok)} with results"]
    parts += [f"{len(board.failed)} failed"] if board.failed else []
    parts += [f"{len(board.pending)} pending (no result yet)"] if board.pending else []
    parts += [f"{outdated} outdated (†)"] if outdated else []
    return f"Cells: {total} — " + ", ".join(parts) + "."
