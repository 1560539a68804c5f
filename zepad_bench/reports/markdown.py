"""The markdown board of a suite, rendered from its :class:`~zepad_bench.reports.data.Board` alone.

Layout: the sections the suite declares (:mod:`~zepad_bench.reports.sections`), the summary (which
defense holds up at each ε), then threat models, provenance and
noise, the columns (legend and glossary from the tasks' own metric descriptions), one section per
task (clean metrics, one table per attacked metric and ε, the adaptive attack's log), failed,
pending and outdated cells, sanity flags, RA against ε, the per-dataset layout, and the paper
comparison where one was made.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from zepad_bench.interfaces import CORE_METRICS
from zepad_bench.reports.curves import ra_auc
from zepad_bench.reports.data import Board
from zepad_bench.reports.flags import COLLAPSE_SHARE, TOLERANCE, flags
from zepad_bench.reports.frame import SCENARIO_SHORT, eps_text, numeric, numeric_rows, results_frame
from zepad_bench.reports.glossary import flag_legend, host_lines, legend, metric_lines, threat_model_lines
from zepad_bench.reports.provenance import noise_note, provenance, status_line, surrogates
from zepad_bench.reports.ranking import has_summary, holds_up, summary_table
from zepad_bench.reports.sections import declared_lines
from zepad_bench.reports.tables import Entry, Table, attacked_tables, clean_table, grouped
from zepad_bench.statistics import Stat, mark_best

CORE = {m.name for m in CORE_METRICS}
SUMMARY_INTRO = (
    "Per defense: clean accuracy and the worst robust accuracy of each threat model at each budget ε "
    "(worst over that model's attacks, per seed, then mean ± std; never mixed across budgets). "
    "Which defense holds up best:"
)
MEMBER = "RA_after:"
"""Robust accuracy after each member of an adaptive ensemble (``RA_after:<member>``, cumulative)."""


def entry_text(entry: Entry, marked: str) -> str:
    """An entry as text: its (marked) numbers, or its label, or why it has none."""
    if entry.stat.n:
        text = marked
    elif entry.label:
        text = entry.label
    else:
        text = "failed" if entry.failed else "pending" if entry.pending else "n/a"
    if entry.stat.n and entry.failed:
        text += f" ({entry.failed} failed)"
    if entry.stat.n and entry.pending:
        text += f" ({entry.pending} pending)"
    return text + (" †" if entry.outdated else "")


def table_markdown(table: Table) -> str:
    """A table as markdown: best per column in bold, ties within noise marked ≈."""
    marked = [
        mark_best([row.entries[i].stat for row in table.rows], column.higher_is_better)
        for i, column in enumerate(table.columns)
    ]
    headers = [c.label + ("°" if c.attack is not None and c.attack.control else "") for c in table.columns]
    records = []
    for r, row in enumerate(table.rows):
        cells = [
            entry.label if column.notes else entry_text(entry, marked[i][r])
            for i, (column, entry) in enumerate(zip(table.columns, row.entries))
        ]
        records.append([*row.blocks.values(), row.defense, *cells])
    frame = pd.DataFrame(records, columns=[*table.block_headers, "defense", *headers])
    return frame.to_markdown(index=False, disable_numparse=True)


def member_order(at: pd.DataFrame, members: list[str]) -> list[str]:
    """``RA_after:<member>`` columns in the order the members ran, as the rows store it; for rows
    stored before they did, by falling mean RA (cumulative: RA falls member by member)."""
    ran = at["members"].dropna().str.split().explode() if "members" in at else pd.Series(dtype=str)
    stored = [MEMBER + m for m in dict.fromkeys(ran) if MEMBER + m in members]
    rest = sorted(set(members) - set(stored), key=lambda m: (-numeric(at[m]).mean(), m))
    return stored + rest


def adaptive_logs(part: pd.DataFrame, task: str) -> list[str]:
    """Per ε, the adaptive attack's log: RA after each ensemble member (cumulative), the convergence
    re-check, the attacked-sample count and the 95 % interval, where the rows have them."""
    members = [c for c in part.columns if c.startswith(MEMBER) and part[c].notna().any()]
    adaptive = part[(part["scenario"] == "adaptive") & (part["status"] == "ok")]
    if not members or adaptive.empty:
        return []
    lines = []
    for eps in sorted(adaptive["eps"].unique()):
        at = adaptive[adaptive["eps"] == eps]
        order = member_order(at, members)
        columns = {"BA": "clean", **{m: f"after {m[len(MEMBER) :]}" for m in order}, "RA": "RA"}
        columns.update({m: label for m, label in (("RA_recheck", "re-check"),) if m in at})
        counts = {m: label for m, label in (("recheck_n", "re-check n"), ("adaptive_n", "n")) if m in at}
        records = []
        for labels, defense, cells in grouped(at):
            record = {**labels, "defense": defense}
            record.update(
                {label: Stat.of(numeric(cells[m])).text() for m, label in columns.items() if m in cells}
            )
            record.update(
                {
                    label: "/".join(f"{n:g}" for n in sorted(set(numeric(cells[m]).dropna())))
                    for m, label in counts.items()
                }
            )
            if {"RA_ci95_low", "RA_ci95_high"} <= set(cells.columns):
                low, high = numeric(cells["RA_ci95_low"]).mean(), numeric(cells["RA_ci95_high"]).mean()
                record["95 % interval"] = f"{low:.2f}–{high:.2f}" if low == low else "n/a"
            records.append(record)
        lines += [
            f"### {task}: adaptive attack log at ε {eps_text(eps)}",
            "",
            "RA after each member (cumulative, the per-sample worst case so far, as AutoAttack's log); "
            "the 95 % interval is each seed's, averaged over seeds.",
            "",
            pd.DataFrame(records).to_markdown(index=False, disable_numparse=True),
            "",
        ]
    return lines


def _cells(frame: pd.DataFrame) -> str:
    return ", ".join(
        f"{r.attack} × {r.defense} [{SCENARIO_SHORT.get(r.scenario, r.scenario)}, ε {eps_text(r.eps)}, "
        f"{r.task}, seed {r.seed}]"
        for r in frame.itertuples()
    )


def failure_sections(board: Board) -> list[str]:
    """Failed cells with their reasons, pending cells, and rows whose inputs changed since stored."""
    lines = []
    if board.failed:
        failed = pd.DataFrame(board.failed)
        lines += [
            "## Failed cells",
            "",
            "Shown as *failed* in the tables; a later successful run replaces them.",
            "",
        ]
        for (stage, reason), part in failed.groupby(["stage", "reason"], sort=False, dropna=False):
            lines.append(f"- at stage `{stage}`: {reason} — {len(part)} cell(s): {_cells(part)}")
        lines.append("")
    if board.pending:
        pending = pd.DataFrame(board.pending)
        lines += [
            "## Pending cells",
            "",
            f"{len(pending)} cell(s) of the grid have no result yet (not run, or "
            "interrupted): " + _cells(pending),
            "",
        ]
    outdated = [r for r in board.rows if r.get("outdated")]
    if outdated:
        frame = pd.DataFrame(outdated)
        lines += [
            "## Outdated rows (†)",
            "",
            "Stored results whose inputs changed since they were computed; "
            "shown, marked, and recomputed by the next run of the suite.",
            "",
        ]
        for reason, part in frame.groupby("outdated", sort=False):
            lines.append(
                f"- {reason}: {len(part)} row(s), attacks {', '.join(dict.fromkeys(part['attack']))}; "
                f"defenses {', '.join(dict.fromkeys(part['defense']))}"
            )
        lines.append("")
    return lines


def flag_section(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = [
        "## Sanity flags",
        "",
        f"AutoAttack-style checks on the means over seeds, at one ε each (a difference counts above "
        f"{TOLERANCE:g} point; a collapse at ≥ {COLLAPSE_SHARE:g} %). Each marks a number to distrust, "
        "not a result.",
        "",
        *flag_legend(),
        "",
    ]
    for f in found:
        lines.append(
            f"- `{f['kind']}` {f['defense']} × {f['attack']} [{f['scenario']}, ε {eps_text(f['eps'])}; "
            f"{', '.join(f['tasks'])}]: {f['message']}"
        )
    return lines + [""]


def curve_section(frame: pd.DataFrame) -> list[str]:
    """Adaptive RA against ε: the area under each defense's curve (mean RA over the ε range)."""
    auc = ra_auc(frame)
    if auc.empty or not (auc["eps_max"] > auc["eps_min"]).any():
        return []
    auc = auc[auc["eps_max"] > auc["eps_min"]]
    table = pd.DataFrame(
        {
            "task": auc["task"],
            "attack": auc["attack"],
            "defense": auc["defense"],
            "ε range": [f"{eps_text(a)}–{eps_text(b)}" for a, b in zip(auc["eps_min"], auc["eps_max"])],
            "RA AUC": [
                Stat((m,)).text() if s != s else f"{m:.2f} ± {s:.2f}"
                for m, s in zip(auc["RA AUC"], auc["RA AUC std"])
            ],
        }
    )
    return [
        "## Robust accuracy against ε (adaptive scenario)",
        "",
        "RA AUC: the area under RA(ε) divided by the ε range (the mean RA over it), per seed, then "
        "mean ± std; the RA-vs-ε figure plots the curves.",
        "",
        table.to_markdown(index=False, disable_numparse=True),
        "",
    ]


def per_dataset_section(board: Board, frame: pd.DataFrame) -> list[str]:
    """Paper Tables 3–4 layout: a block of rows per (D_f, D_d), a row per defense, a column per victim.

    One table per headline metric — BA, RA and ASR where a task reports them, else the task's first
    reported metric under attack — per attack, scenario and ε where they vary (a clean metric is
    averaged over them). Cells are means over seeds; AVG is the mean over victims; a ``Δ <defense>``
    row gives that defense minus the suite's ``baseline``-role defense.
    """
    roles = frame.loc[frame["defense_role"] == "baseline", "defense"]
    baseline = roles.iloc[0] if len(roles) else ""
    victims = list(dict.fromkeys(frame["victim"]))
    shared = frame.groupby("task_data")["task"].nunique().max() > 1
    row_keys = ["tuning", "task_data"] + (["task"] if shared else [])
    headers = {"tuning": "D_f", "task_data": "D_d", "task": "task"}
    lines: list[str] = []
    for metric, (info, tasks) in headline_metrics(board).items():
        data = numeric_rows(frame[frame["task"].isin(tasks)], metric).rename(columns={metric: "value"})
        if data.empty:
            continue
        split = (
            [] if info["clean"] else [c for c in ("scenario", "eps") if data[c].nunique() > 1] + ["attack"]
        )
        for split_values, part in data.groupby(split, sort=False) if split else [((), data)]:
            split_values = split_values if isinstance(split_values, tuple) else (split_values,)
            rows = []
            for block_values, block in part.groupby(row_keys, sort=False):
                labels = dict(zip([headers[k] for k in row_keys], block_values))
                means = block.groupby(["defense", "victim"], sort=False)["value"].mean()
                defenses = list(dict.fromkeys(block["defense"]))
                table = {d: [means.get((d, v), float("nan")) for v in victims] for d in defenses}
                if baseline in table:
                    base = table[baseline]
                    table.update(
                        {f"Δ {d}": [a - b for a, b in zip(table[d], base)] for d in defenses if d != baseline}
                    )
                for name, values in table.items():
                    present = [v for v in values if v == v]
                    average = sum(present) / len(present) if present else float("nan")
                    signed = "+" if name.startswith("Δ ") else ""
                    cells = [f"{v:{signed}.2f}" if v == v else "n/a" for v in [*values, average]]
                    rows.append({**labels, "defense": name, **dict(zip([*victims, "AVG"], cells))})
            where = ", ".join(
                f"ε {eps_text(v)}" if k == "eps" else f"{k} {v}" for k, v in zip(split, split_values)
            )
            title = f"### {metric}" + (f" ({where})" if where else "")
            lines += [title, "", pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    return lines


def headline_metrics(board: Board) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Per name, the description of a headline metric and the tasks it heads (:func:`per_dataset_section`)."""
    out: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for task in board.task_ids():
        reported = [m for m in board.metrics(task) if m["report"] and m["unit"]]
        core = [m for m in reported if m["name"] in CORE]
        attacked = [m for m in reported if not m["clean"]]
        for info in core if any(m["name"] == "RA" for m in core) else attacked[:1]:
            out.setdefault(info["name"], (info, []))[1].append(task)
    return out


def summaries(
    board: Board, frame: pd.DataFrame, found: list[dict[str, Any]], tasks: list[str] | None = None
) -> list[Table]:
    """The summary table of every task (of ``tasks``) that reports RA, in the suite's order."""
    return [
        summary_table(frame[frame["task"] == task], task, found, board.headline)
        for task in tasks or board.task_ids()
        if has_summary(board.metrics(task))
    ]


def render(board: Board) -> str:
    """The board as markdown; the same board gives the same text."""
    frame = results_frame(board.rows, board.pending)
    found = flags(frame[frame["status"] == "ok"])
    lines = [f"# Leaderboard: {board.name}", ""] + ([board.description, ""] if board.description else [])
    lines += declared_lines(board)
    lines += ["## Summary", "", SUMMARY_INTRO, ""]
    for table in summaries(board, frame, found):
        lines += [f"### {table.task}", "", *holds_up(table), "", table_markdown(table), ""]
    lines += [status_line(board), "", noise_note(frame), ""]
    lines += ["## Threat models", "", *threat_model_lines(frame, surrogates(board)), ""]
    lines += ["## Provenance", "", *provenance(board, frame), ""]
    lines += ["## Columns", "", *legend(frame), "", *host_lines(), ""]
    for task in board.task_ids():
        part = frame[frame["task"] == task]
        plugin = board.tasks.get(task, {}).get("plugin", "")
        described = board.metrics(task)
        lines += [f"## Task `{task}`" + (f" (plugin `{plugin}`)" if plugin and plugin != task else ""), ""]
        lines += ["Metrics:", "", *metric_lines(part, described), ""]
        tables = [
            t for t in [clean_table(part, task, described), *attacked_tables(part, task, described)] if t
        ]
        for table in tables:
            lines += [f"### {table.title}", "", table_markdown(table), ""]
        lines += adaptive_logs(part, task)
    lines += failure_sections(board)
    lines += flag_section(found)
    lines += curve_section(frame)
    if frame["task_data"].nunique() > 1:
        lines += ["## Per downstream dataset and task (paper Tables 3–4 layout; means over seeds)", ""]
        lines += per_dataset_section(board, frame)
    lines += board.reference
    return "\n".join(lines).rstrip() + "\n"
