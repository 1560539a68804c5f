"""The summary every board opens with, in the manner of RobustBench's lists: per defense, BA and the
worst RA of each threat model at each ε (never a minimum across budgets), ranked at the headline ε."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd

from zepad_bench.interfaces import TRANSFER_SCENARIOS
from zepad_bench.reports.frame import eps_text
from zepad_bench.reports.tables import Column, Entry, Row, Table, entry, grouped, per_seed, worst_entry

GROUPS = (
    ("transfer", TRANSFER_SCENARIOS),
    ("defense-aware", ("defense-aware",)),
    ("adaptive", ("adaptive",)),
)
"""Threat-model groups of the summary: attacks fitted on public encoders, on the defended encoders,
and through the whole defended pipeline."""


def has_summary(described: list[dict[str, Any]]) -> bool:
    """A task gets a summary when it reports robust accuracy (``RA``)."""
    return any(m["name"] == "RA" and m["report"] for m in described)


def summary_table(
    part: pd.DataFrame, task: str, found: list[dict[str, Any]], headline: float | None
) -> Table:
    """Defense | BA | per ε and group: the worst RA over that group's attacks at that ε (per seed, then
    mean ± std) | flags; rows ordered by :func:`headline_column` (best first)."""
    attacks = part[part["attack_role"] != "control"]
    slots = [
        (group, float(eps))
        for eps in sorted(attacks["eps"].unique())
        for group, scenarios in GROUPS
        if attacks[(attacks["eps"] == eps) & attacks["scenario"].isin(scenarios)].size
    ]
    columns = [Column("BA", True)] if "BA" in part else []
    columns += [Column(f"{group} {eps_text(eps)}", True, group=group, eps=eps) for group, eps in slots]
    rows = []
    for labels, defense, cells in grouped(part):
        entries = []
        if "BA" in part:
            entries.append(entry(per_seed(cells), "BA"))
        for group, eps in slots:
            scenarios = dict(GROUPS)[group]
            at = cells[
                (cells["eps"] == eps)
                & cells["scenario"].isin(scenarios)
                & (cells["attack_role"] != "control")
            ]
            entries.append(worst_entry(at, "RA", True) if len(at) else Entry())
        entries.append(Entry(label=_flag_text(cells, [f for f in found if f["defense"] == defense], task)))
        rows.append(Row(labels, defense, entries))
    table = Table(task, f"{task}: summary", "RA", None, list(rows[0].blocks) if rows else [], columns, rows)
    table.columns.append(Column("flags", notes=True))
    at = headline_column(table, headline)
    if at is not None:
        table.rows.sort(key=lambda r: -r.entries[at].stat.mean if r.entries[at].stat.n else float("inf"))
    return table


def _flag_text(cells: pd.DataFrame, found: list[dict[str, Any]], task: str) -> str:
    kinds = Counter(f["kind"] for f in found if task in f["tasks"])
    parts = [f"{kind} ×{n}" if n > 1 else kind for kind, n in kinds.items()]
    for status in ("failed", "pending"):
        n = int((cells["status"] == status).sum())
        if n:
            parts.append(f"{n} {status}")
    if cells["outdated"].any():
        parts.append("† outdated")
    return "; ".join(parts)


def headline_column(table: Table, headline: float | None) -> int | None:
    """Index of the column the summary ranks by: adaptive RA at the headline ε, else the worst transfer
    RA there, else the first RA column."""
    for group in ("adaptive", "transfer"):
        for i, column in enumerate(table.columns):
            if column.group == group and headline is not None and abs(column.eps - headline) < 1e-12:
                return i
    return next((i for i, c in enumerate(table.columns) if c.group), None)


def ranking(table: Table, headline: float | None) -> str:
    """One line ranking the summary's defenses by its headline column (ties within noise marked ≈)."""
    at = headline_column(table, headline)
    if at is None:
        return ""
    column = table.columns[at]
    ranked = [r for r in table.rows if r.entries[at].stat.n]
    if not ranked:
        return ""
    best = ranked[0].entries[at].stat
    parts = []
    for row in ranked:
        stat = row.entries[at].stat
        tie = "≈ " if row is not ranked[0] and stat.ties(best) else ""
        parts.append(f"{tie}{_name(row)} {stat.text()}")
    what = "worst RA over the adaptive attacks" if column.group == "adaptive" else f"worst {column.group} RA"
    return (
        f"Defenses ranked by {what} at ε {eps_text(column.eps)} on `{table.task}` (per seed the lowest RA "
        f"over those attacks, then mean ± std; ≈ within noise of the first): " + "; ".join(parts) + "."
    )


def holds_up(table: Table) -> list[str]:
    """Per RA column of the summary: the defense that holds up best, and those within noise of it."""
    lines = []
    for i, column in enumerate(table.columns):
        if not column.group:
            continue
        stats = [(r, r.entries[i].stat) for r in table.rows if r.entries[i].stat.n]
        if not stats:
            continue
        best_row, best = max(stats, key=lambda pair: pair[1].mean)
        ties = [_name(r) for r, s in stats if r is not best_row and s.ties(best)]
        lines.append(
            f"- **{column.group}, ε {eps_text(column.eps)}**: {_name(best_row)} {best.text()}"
            + (f" (within noise: {', '.join(ties)})" if ties else "")
        )
    return lines


def _name(row: Row) -> str:
    """The defense, with its block (victim, D_f, D_d) where blocks vary."""
    where = ", ".join(f"{k} {v}" for k, v in row.blocks.items())
    return f"{row.defense} ({where})" if where else row.defense
