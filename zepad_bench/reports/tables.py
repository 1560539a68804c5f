"""A board's tables as data: per task, the clean metrics and, per attacked metric, one table per ε.

Every entry is the per-seed values of one cell setting (:class:`~zepad_bench.statistics.Stat`) with
the counts of its failed and pending seeds and whether a stored row is outdated. Markdown (and any
other renderer) formats these; nothing here formats numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from zepad_bench.reports.frame import BLOCK_HEADERS, AttackColumn, attack_columns, blocks, eps_text, numeric
from zepad_bench.statistics import Stat

WORST = "worst"


@dataclass
class Entry:
    """One table entry: per-seed values (finished cells), failed and pending seeds, outdated rows, and
    for a label metric (e.g. a head kind) its distinct values."""

    stat: Stat = field(default_factory=lambda: Stat(()))
    failed: int = 0
    pending: int = 0
    outdated: bool = False
    label: str = ""
    seeds: tuple[int, ...] = ()
    """The seed of each of ``stat.values``, in their order."""


@dataclass
class Column:
    label: str
    higher_is_better: bool = True
    attack: AttackColumn | None = None
    group: str = ""
    """Summary columns: the threat-model group (``transfer``, ``defense-aware``, ``adaptive``)."""
    eps: float | None = None
    notes: bool = False
    """A column of text notes (the summary's flags), not of numbers."""


@dataclass
class Row:
    blocks: dict[str, str]
    defense: str
    entries: list[Entry]


@dataclass
class Table:
    task: str
    title: str
    metric: str | None  # None: the clean table
    eps: float | None
    block_headers: list[str]
    columns: list[Column]
    rows: list[Row]


def entry(cells: pd.DataFrame, metric: str) -> Entry:
    """The entry of ``cells`` (one row per seed) for ``metric``."""
    ok = cells[cells["status"] == "ok"]
    values = ok[metric] if metric in ok else pd.Series(dtype=object)
    labels = [str(v) for v in values.dropna() if isinstance(v, str) and v != "n/a"]
    numbers = numeric(values)
    return Entry(
        Stat.of(numbers),
        int((cells["status"] == "failed").sum()),
        int((cells["status"] == "pending").sum()),
        bool(cells["outdated"].any()),
        "/".join(sorted(set(labels))),
        tuple(int(s) for s in ok["seed"][numbers.notna()]) if metric in ok else (),
    )


def worst_entry(cells: pd.DataFrame, metric: str, higher_is_better: bool) -> Entry:
    """Per seed, the worst value over the attacks in ``cells`` (one ε; controls excluded by the caller),
    then its spread over seeds; failed and pending cells are counted (the worst may be lower)."""
    ok = cells[cells["status"] == "ok"]
    values = numeric(ok[metric]) if metric in ok else pd.Series(dtype=float)
    per_seed = values.groupby(ok["seed"], sort=False)
    worst = per_seed.min() if higher_is_better else per_seed.max()
    return Entry(
        Stat.of(worst),
        int((cells["status"] == "failed").sum()),
        int((cells["status"] == "pending").sum()),
        bool(cells["outdated"].any()),
        seeds=tuple(int(s) for s in worst.index[worst.notna()]),
    )


def grouped(part: pd.DataFrame) -> list[tuple[dict[str, str], str, pd.DataFrame]]:
    """(block labels, defense, its cells) in the suite's order."""
    keys = blocks(part)
    out = []
    for values, block in part.groupby(keys, sort=False) if keys else [((), part)]:
        values = values if isinstance(values, tuple) else (values,)
        labels = {BLOCK_HEADERS[k]: str(v) for k, v in zip(keys, values)}
        for defense in dict.fromkeys(block["defense"]):
            out.append((labels, defense, block[block["defense"] == defense]))
    return out


def per_seed(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per seed for clean metrics, which every cell of a seed on the whole test set repeats: a
    finished one where the seed has one, on the most test images (not an adaptive cell's subset)."""
    size = cells["test_size"] if "test_size" in cells else pd.Series(0, index=cells.index)
    order = pd.DataFrame({"unfinished": cells["status"] != "ok", "size": -size.fillna(0)}, index=cells.index)
    return cells.loc[order.sort_values(["unfinished", "size"], kind="stable").index].drop_duplicates("seed")


def _present(entries: list[Entry]) -> bool:
    return any(e.stat.n or e.failed or e.pending or e.label for e in entries)


def clean_table(part: pd.DataFrame, task: str, described: list[dict[str, Any]]) -> Table | None:
    """The task's clean metrics (described ``clean`` and ``report``), one row per defense; a clean
    metric repeats in every cell of a seed, so each seed counts once."""
    metrics = [m for m in described if m["clean"] and m["report"] and m["name"] in part]
    if not metrics:
        return None
    rows = []
    for labels, defense, cells in grouped(part):
        entries = [entry(per_seed(cells), m["name"]) for m in metrics]
        if _present(entries):
            rows.append(Row(labels, defense, entries))
    columns = [Column(m["name"], m["higher_is_better"]) for m in metrics]
    return Table(task, f"{task}: clean", None, None, list(rows[0].blocks) if rows else [], columns, rows)


def attacked_tables(part: pd.DataFrame, task: str, described: list[dict[str, Any]]) -> list[Table]:
    """Per attacked metric (described, ``report``) and per ε: a column per attack at that ε, and the
    worst case over the attacks at that ε (never across budgets) when there are several."""
    tables = []
    for metric in [m for m in described if not m["clean"] and m["report"] and m["name"] in part]:
        name, higher = metric["name"], metric["higher_is_better"]
        for eps in sorted(part["eps"].unique()):
            at = part[part["eps"] == eps]
            attacks = attack_columns(at)
            columns = [Column(a.label, higher, a) for a in attacks]
            real = [a for a in attacks if not a.control]
            if len(real) > 1:
                columns.append(Column(WORST, higher))
            rows = []
            for labels, defense, cells in grouped(at):
                entries = [entry(_of(cells, a), name) for a in attacks]
                if len(real) > 1:
                    entries.append(worst_entry(cells[cells["attack_role"] != "control"], name, higher))
                if _present(entries):
                    rows.append(Row(labels, defense, entries))
            if rows:
                title = f"{task}: {name} at ε {eps_text(eps)}"
                tables.append(
                    Table(task, title, name, float(eps), list(rows[0].blocks) if rows else [], columns, rows)
                )
    return tables


def _of(cells: pd.DataFrame, attack: AttackColumn) -> pd.DataFrame:
    return cells[(cells["attack"] == attack.attack) & (cells["scenario"] == attack.scenario)]
