"""Leaderboard: stored results → pandas → markdown (tabulate), CSV and JSON, saying how they were made.

Every entry is mean ± sample std over seeds (the mean alone for one seed); per column the best
defense is bold and those within the noise of it are marked ≈ (:mod:`zepad_bench.statistics`).
One section per task, each with the metrics its task declares (``Task.report_metrics``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from zepad_bench.cache import atomic_write_bytes
from zepad_bench.statistics import TIE_FACTOR, Stat, mark_best

ID_COLUMNS = ["victim", "scenario", "attack", "eps", "defense", "tuning", "task", "task_data", "seed"]
BLOCK_COLUMNS = ("victim", "tuning", "task_data")  # a block of rows per value, when they vary
HEADERS = {"victim": "victim", "tuning": "D_f", "task_data": "D_d"}
LOWER_IS_BETTER = re.compile(r"^(ASR|FPR|top1_change)$")
WORST = "worst"
COLLAPSE_SHARE = 90.0
"""A fused prediction giving one class to this share (%) of the test images is flagged as collapsed."""
FLAG_TOLERANCE = 1.0
"""Percentage points a sanity check must be exceeded by before it is flagged (seed noise of weak
universal attacks is about this size on the quickstart)."""

GLOSSARY = {
    "BA": "benign accuracy: accuracy on the clean test images (%)",
    "RA": "robust accuracy: accuracy on the attacked test images (%)",
    "ASR": "attack success rate: share of *all* test images whose prediction changes under attack "
    "(labels unused, the paper's definition; %)",
    "detection_accuracy": "share of the 2N images (N clean, N attacked) the defense's detector "
    "classifies right, at the defense's threshold (paper Table 6; %)",
    "TPR": "share of attacked images the detector flags (%)",
    "FPR": "share of clean images the detector flags (%)",
    "AUROC": "area under the ROC curve of the detection score, attacked vs clean (threshold-free; %)",
    "top1_change": "share of queries whose nearest gallery image changes under attack (%)",
    "head": "the classifier on the defense's encoder(s): `joint` = the head tuned with the encoder on "
    "D_f; `retrained` = heads trained on the task's train split over frozen encoder features",
    WORST: "per seed, the worst value over every attack in the row (controls excluded), then mean ± std",
}
PATTERNS = (
    (
        r"knn@(\d+)_(clean|adv)",
        "accuracy of the majority vote of the {0} nearest gallery images, {1} queries (%)",
    ),
    (r"hit@(\d+)_(clean|adv)", "share of {1} queries with an image of their class among the {0} nearest (%)"),
    (r"precision@(\d+)_(clean|adv)", "mean share of the {0} nearest images with the {1} query's class (%)"),
)


def explain(metric: str) -> str:
    """One line on what a column means (metrics a plugin adds without a gloss say so)."""
    if metric in GLOSSARY:
        return GLOSSARY[metric]
    for pattern, text in PATTERNS:
        match = re.fullmatch(pattern, metric)
        if match:
            k, which = match.groups()
            return text.format(k, "clean" if which == "clean" else "attacked")
    return "reported by the task plugin (see its docstring)"


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell: the cell's ids, roles and plugins, plus every metric (numbers and labels)."""
    records = []
    for row in rows:
        config = row["config"]
        record = {c: row[c] for c in ID_COLUMNS}
        record["attack_plugin"] = config.get("attack_plugin", "")
        record["attack_role"] = config.get("attack_role", "attack")
        record["defense_role"] = config.get("defense_role", "defense")
        record.update(row["metrics"])
        records.append(record)
    return pd.DataFrame.from_records(records)


def _report_metrics(rows: list[dict[str, Any]], task: str, frame: pd.DataFrame) -> list[str]:
    declared = next((r["config"].get("report_metrics") for r in rows if r["task"] == task), None)
    metrics = list(declared or ("BA", "RA", "ASR"))
    return [m for m in metrics if m in frame.columns]


def _attack_label(frame: pd.DataFrame, row: pd.Series) -> str:
    label = str(row["attack"])
    if frame["scenario"].nunique() > 1:
        label += f" [{row['scenario']}]"
    if frame["eps"].nunique() > 1:
        label += f" ε {round(row['eps'] * 255, 2):g}/255"
    return label + (" (control)" if row["attack_role"] == "control" else "")


def is_clean(metric: str) -> bool:
    """Clean metrics (``BA``, ``*_clean``) do not depend on the attack: one column, not one per attack."""
    return metric == "BA" or metric.endswith("_clean")


def _higher_is_better(metric: str) -> bool:
    return not LOWER_IS_BETTER.match(metric)


def _marked_columns(table: dict[str, list[Stat]], metric_of: dict[str, str]) -> dict[str, list[str]]:
    return {col: mark_best(stats, _higher_is_better(metric_of[col])) for col, stats in table.items()}


def task_section(rows: list[dict[str, Any]], frame: pd.DataFrame, task: str) -> tuple[list[str], list[dict]]:
    """Markdown lines and JSON tables of one task: clean metrics, then one table per attacked metric."""
    part = frame[frame["task"] == task].copy()
    part["column"] = [_attack_label(part, r) for _, r in part.iterrows()]
    blocks = [c for c in BLOCK_COLUMNS if part[c].nunique() > 1]
    metrics = _report_metrics(rows, task, part)
    clean = [m for m in metrics if is_clean(m)]
    attacked = [m for m in metrics if m not in clean]
    lines: list[str] = []
    tables: list[dict] = []

    def emit(title: str, columns: list[str], stat_of, metric_of: dict[str, str], extra=None) -> None:
        md_rows, js_rows = [], []
        for block_values, block in part.groupby(blocks, sort=False) if blocks else [((), part)]:
            block_values = block_values if isinstance(block_values, tuple) else (block_values,)
            labels = {HEADERS[b]: v for b, v in zip(blocks, block_values)}
            defenses = list(dict.fromkeys(block["defense"]))
            stats = {c: [stat_of(block[block["defense"] == d], c) for d in defenses] for c in columns}
            marked = _marked_columns(stats, metric_of)
            for i, defense in enumerate(defenses):
                if not any(stats[c][i].n for c in columns):
                    continue  # nothing to show (e.g. a defense without a detector): the row is left out
                md = {**labels, "defense": defense}
                md.update((extra or {}).get(defense, {}))
                md.update({c: marked[c][i] for c in columns})
                md_rows.append(md)
                js_rows.append({**labels, "defense": defense, **{c: stats[c][i].as_dict() for c in columns}})
        lines.extend([title, "", pd.DataFrame(md_rows).to_markdown(index=False, disable_numparse=True), ""])
        tables.append({"task": task, "title": title.lstrip("# "), "rows": js_rows})

    if clean:
        heads = {
            d: {"head": "/".join(sorted(set(map(str, g["head"].dropna()))))}
            for d, g in part.groupby("defense", sort=False)
            if "head" in g and g["head"].notna().any()
        }

        def clean_stat(sub: pd.DataFrame, metric: str) -> Stat:
            return Stat.of(sub.groupby("seed", sort=False)[metric].first())

        emit(f"### {task}: clean", clean, clean_stat, {m: m for m in clean}, heads)
    columns = list(dict.fromkeys(part["column"]))
    attacks_only = [c for c in columns if not c.endswith("(control)")]
    for metric in attacked:

        def attacked_stat(sub: pd.DataFrame, column: str, metric: str = metric) -> Stat:
            if column == WORST:
                hit = sub[sub["column"].isin(attacks_only)]
                values = pd.to_numeric(hit[metric], errors="coerce").groupby(hit["seed"], sort=False)
                return Stat.of(values.min() if _higher_is_better(metric) else values.max())
            return Stat.of(sub[sub["column"] == column][metric])

        shown = columns + ([WORST] if len(attacks_only) > 1 else [])
        emit(f"### {task}: {metric}", shown, attacked_stat, dict.fromkeys(shown, metric))
    return lines, tables


def per_dataset_section(frame: pd.DataFrame, baseline: str | None = None) -> list[str]:
    """Paper Tables 3–4 layout: a block of rows per (D_f, D_d), a row per defense, a column per victim.

    One table per headline metric (and per attack, scenario and ε where they vary; BA, measured on
    clean images only, is averaged over attacks). Cells are means over seeds; AVG is the mean over
    victims; a ``Δ <defense>`` row gives that defense minus the suite's ``baseline``-role defense.
    """
    if baseline is None:
        roles = frame.loc[frame["defense_role"] == "baseline", "defense"]
        baseline = roles.iloc[0] if len(roles) else ""
    victims = list(dict.fromkeys(frame["victim"]))
    shared = frame.groupby("task_data")["task"].nunique().max() > 1
    row_keys = ["tuning", "task_data"] + (["task"] if shared else [])
    headers = {"tuning": "D_f", "task_data": "D_d", "task": "task"}
    lines: list[str] = []
    for metric in ("BA", "RA", "ASR", "detection_accuracy", "AUROC"):
        if metric not in frame:
            continue
        data = frame.assign(value=pd.to_numeric(frame[metric], errors="coerce")).dropna(subset=["value"])
        split = [c for c in ("scenario", "eps") if data[c].nunique() > 1]
        split += [] if metric == "BA" else ["attack"]
        if data.empty:
            continue
        for split_values, part in data.groupby(split, sort=False) if split else [((), data)]:
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
                f"ε {round(v * 255, 2):g}/255" if k == "eps" else f"{k} {v}"
                for k, v in zip(split, split_values)
            )
            title = f"### {metric}" + (f" ({where})" if where else "")
            lines += [title, "", pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    return lines


def _listing(values) -> str:
    return ", ".join(map(str, dict.fromkeys(values)))


def provenance(
    suite: str, rows: list[dict[str, Any]], source: str = "", runs: list[dict] | None = None
) -> list[str]:
    """What was measured, where and when: the header every board (and the README block) starts with."""
    frame = results_frame(rows)
    machine = rows[-1]["machine"] if rows else {}
    created = sorted(r["created"] for r in rows)
    seeds = sorted(frame["seed"].unique().tolist()) if len(frame) else []
    sizes = {f"{r['task_data']}": r["config"].get("test_size") for r in rows if r["config"].get("test_size")}
    surrogates = {tuple(r["config"].get("surrogates", [r["victim"]])) for r in rows}
    lines = [
        f"- suite file: `{source}`" if source else "- suite file: (not recorded)",
        f"- victim encoder(s): {_listing(frame['victim'])}; scenario(s): {_listing(frame['scenario'])} "
        f"(attacker's surrogates: {'; '.join('+'.join(s) for s in sorted(surrogates))})",
        f"- D_f (defense tuning data): {_listing(frame['tuning'])}; D_d (downstream data): "
        f"{_listing(frame['task_data'])}"
        + (f"; test-set size: {', '.join(f'{k} {v}' for k, v in sizes.items())}" if sizes else ""),
        f"- budgets ε: {', '.join(f'{round(e * 255, 2):g}/255' for e in sorted(set(frame['eps'])))} "
        "(L∞, pixels in [0, 1]); every attacked batch was checked against ε by the runner",
        f"- seeds: {', '.join(map(str, seeds))} (n = {len(seeds)}); cells: {len(rows)}",
        f"- machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs, device "
        f"{machine.get('device', '?')}{' (' + machine['gpu'] + ')' if machine.get('gpu') else ''}",
        f"- results created {created[0] if created else '?'} … {created[-1] if created else '?'}",
    ]
    for run in runs or []:
        if "note" in run:  # a record published before runs were recorded as fields: shown as it was
            lines.append(
                f"- run finished {run['finished']}: {run['seconds']:.1f} s wall (loading the suite and "
                f"running the cells; publishing not counted), {run['computed']} cells computed, "
                f"{run['reused']} already stored ({run['note']})"
            )
            continue
        stages = run["stages"].values()
        lines.append(
            f"- {run['kind']} run ({run['executor']}) finished {run['finished']}: {run['seconds']:.1f} s "
            f"wall (loading the suite and running the cells; publishing not counted), "
            f"{run['cells_computed']} cells computed, {run['cells_reused']} already stored, "
            f"{run['cells_failed']} failed; stages "
            f"{sum(s['computed'] for s in stages)} computed, {sum(s['reused'] for s in stages)} reused"
        )
    return lines


def noise_note(rows: list[dict[str, Any]]) -> str:
    seeds = {r["seed"] for r in rows}
    if len(seeds) < 2:
        return (
            "**One seed**: entries are single runs with no measured spread; the same seed on another "
            "machine can differ by several points. Do not rank defenses on these numbers alone."
        )
    return (
        f"Entries are mean ± sample std (n − 1) over {len(seeds)} seeds. A seed changes every random "
        "choice of the run (attack initialisation and data order, defense tuning, heads, splits); shipped "
        "checkpoints stay fixed. The same seeds on another machine differ by about the spread shown. "
        f"**Bold**: best defense in the column; ≈: within noise of it (|Δ| < {TIE_FACTOR:g}·√(sem₁²+sem₂²))."
    )


def glossary(frame: pd.DataFrame, rows: list[dict[str, Any]]) -> list[str]:
    metrics: list[str] = []
    for task in dict.fromkeys(frame["task"]):
        metrics += _report_metrics(rows, task, frame)
    names = list(dict.fromkeys(["BA", "RA", "ASR", *metrics, "head", WORST]))
    lines = [f"- **{m}**: {explain(m)}" for m in names]
    controls = sorted(set(frame.loc[frame["attack_role"] == "control", "attack"]))
    if controls:
        lines.append(
            f"- **(control)** columns ({', '.join(controls)}): equal-budget references that are not attacks; "
            "an attack that does no better than them shows nothing"
        )
    mains = {r["metrics"].get("main") for r in rows if r["metrics"].get("main")}
    if mains:
        lines.append(
            f"- retrieval BA/RA are its `main` metric ({', '.join(sorted(mains))}) on clean/attacked queries"
        )
    return lines


def flags(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AutoAttack-style sanity flags (:func:`zepad_bench.robustness.sanity_flags`), one per
    (kind, defense, attack, scenario, ε) with the tasks it fired on (tasks sharing one fused
    classifier, e.g. classification and detection, repeat the same finding)."""
    from zepad_bench.robustness import sanity_flags

    merged: dict[tuple, dict[str, Any]] = {}
    for flag in sanity_flags(results_frame(rows), tol=FLAG_TOLERANCE) + collapse_flags(rows):
        task = flag.pop("task")
        key = (flag["kind"], flag["defense"], flag["attack"], flag["scenario"], flag["eps"])
        merged.setdefault(key, {**flag, "tasks": []})["tasks"].append(task)
    return list(merged.values())


def collapse_flags(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A fused prediction collapsed to one class: ``top_class_share`` (clean) or ``_adv`` (attacked)
    at or above :data:`COLLAPSE_SHARE` % on average over seeds, where the test set has several classes."""
    frame = results_frame(rows)
    out = []
    for column, what in (("top_class_share", "clean"), ("top_class_share_adv", "attacked")):
        if column not in frame:
            continue
        values = frame.assign(value=pd.to_numeric(frame[column], errors="coerce")).dropna(subset=["value"])
        keys = ["task", "defense", "attack", "scenario", "eps"]
        for key, part in values.groupby(keys, sort=False):
            share = part["value"].mean()
            if share >= COLLAPSE_SHARE:
                task, defense, attack, scenario, eps = key
                message = f"{share:.1f} % of the {what} test images get one class: a collapsed prediction"
                out.append(
                    dict(
                        kind=f"collapse-{what}",
                        task=task,
                        defense=defense,
                        attack=attack,
                        scenario=scenario,
                        eps=float(eps),
                        message=message,
                    )
                )
    return out


def flag_section(found: list[dict[str, Any]]) -> list[str]:
    if not found:
        return []
    lines = [
        "## Sanity flags",
        "",
        f"AutoAttack-style checks on the means over seeds (a difference counts above {FLAG_TOLERANCE:g} "
        "point): an attack weaker than the equal-budget control, an adaptive attack weaker than a "
        "transfer attack, RA that does not fall as ε grows, zero or NaN input gradients, RA above BA, "
        f"a fused prediction giving one class to ≥ {COLLAPSE_SHARE:g} % of the images (collapse). "
        "Each marks a number to distrust, not a result.",
        "",
    ]
    for f in found:
        lines.append(
            f"- `{f['kind']}` {f['defense']} × {f['attack']} [{f['scenario']}, ε {f['eps'] * 255:g}/255; "
            f"{', '.join(f['tasks'])}]: {f['message']}"
        )
    return lines + [""]


def curve_section(rows: list[dict[str, Any]]) -> list[str]:
    """Adaptive RA against ε: the area under each defense's curve (mean RA over the ε range)."""
    from zepad_bench.robustness import ra_auc

    auc = ra_auc(results_frame(rows))
    if auc.empty or not (auc["eps_max"] > auc["eps_min"]).any():
        return []
    auc = auc[auc["eps_max"] > auc["eps_min"]]
    table = pd.DataFrame(
        {
            "task": auc["task"],
            "attack": auc["attack"],
            "defense": auc["defense"],
            "ε range": [f"{a * 255:g}–{b * 255:g}/255" for a, b in zip(auc["eps_min"], auc["eps_max"])],
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
        "mean ± std; the figure beside this board plots the curves.",
        "",
        table.to_markdown(index=False, disable_numparse=True),
        "",
    ]


def ranking(rows: list[dict[str, Any]], task: str = "classification") -> str:
    """One line ranking defenses by the board's worst-case RA column on ``task`` (per seed the minimum
    over every attack, controls excluded, then mean ± std), with the attack of lowest mean RA."""
    _, tables = sections([r for r in rows if r["task"] == task])
    table = next((t for t in tables if t["title"] == f"{task}: RA"), None)
    if table is None or not all(WORST in r for r in table["rows"]):
        return ""
    ranked = []
    for row in sorted(table["rows"], key=lambda r: -(r[WORST]["mean"] or 0)):
        attacks = {
            k: v for k, v in row.items() if isinstance(v, dict) and k != WORST and "(control)" not in k
        }
        weakest = min(attacks, key=lambda k: attacks[k]["mean"] if attacks[k]["mean"] is not None else 1e9)
        ranked.append(f"{row['defense']} {Stat(tuple(row[WORST]['values'])).text()} ({weakest})")
    return (
        f"Defenses ranked by worst-case RA on `{task}` (attack of lowest RA in brackets): "
        + "; ".join(ranked)
        + "."
    )


def sections(rows: list[dict[str, Any]]) -> tuple[list[str], list[dict]]:
    """Every task's section (markdown) and tables (JSON)."""
    frame = results_frame(rows)
    lines: list[str] = []
    tables: list[dict] = []
    for task in dict.fromkeys(frame["task"]):
        plugin = next(r["config"].get("task_plugin", "") for r in rows if r["task"] == task)
        lines += [f"## Task `{task}`" + (f" (plugin `{plugin}`)" if plugin and plugin != task else ""), ""]
        md, js = task_section(rows, frame, task)
        lines += md
        tables += js
    return lines, tables


def render(
    suite: str,
    rows: list[dict[str, Any]],
    source: str = "",
    extra_sections: list[str] | None = None,
    description: str = "",
    runs: list[dict] | None = None,
) -> str:
    """The markdown leaderboard of ``rows``, self-contained: provenance, definitions, one section per task."""
    frame = results_frame(rows)
    versions: dict[str, str] = {}
    for row in rows:
        versions.update(row["versions"])
    lines = [f"# Leaderboard: {suite}", ""] + ([description, ""] if description else [])
    lines += provenance(suite, rows, source, runs)
    lines += [
        f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))}",
        f"- rendered {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} from stored results",
        "",
        noise_note(rows),
        "",
        "## Columns",
        "",
        *glossary(frame, rows),
        "",
    ]
    body, _ = sections(rows)
    lines += body
    lines += flag_section(flags(rows))
    lines += curve_section(rows)
    if frame["task_data"].nunique() > 1:
        lines += ["## Per downstream dataset and task (paper Tables 3–4 layout; means over seeds)", ""]
        lines += per_dataset_section(frame)
    lines += extra_sections or []
    return "\n".join(lines) + "\n"


def readme_block(
    suite: str,
    rows: list[dict[str, Any]],
    source: str = "",
    runs: list[dict] | None = None,
    tasks: tuple[str, ...] = ("classification",),
) -> str:
    """The README's results block, generated from the same rows as the leaderboard (so it cannot drift)."""
    shown = [r for r in rows if r["task"] in tasks] or rows
    body, _ = sections(shown)
    found = flags(shown)
    lines = [
        f"Generated by `zepad-bench leaderboard {source or suite} --readme README.md` from "
        f"`leaderboard/{suite}.json`; full board: `leaderboard/{suite}.md`.",
        "",
        *provenance(suite, rows, source, runs),
        "",
        noise_note(rows),
        "",
        ranking(shown, shown[0]["task"]),
        "",
        *[line.replace("### ", "#### ") for line in body if not line.startswith("## ")],
        *[line.replace("## ", "#### ") for line in flag_section(found)],
    ]
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, suite: str, block: str) -> str:
    """Replace the ``<!-- leaderboard:SUITE -->`` … ``<!-- /leaderboard:SUITE -->`` part of ``text``."""
    start, end = f"<!-- leaderboard:{suite} -->", f"<!-- /leaderboard:{suite} -->"
    if start not in text or end not in text:
        raise ValueError(f"no '{start}' … '{end}' markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}{end}{tail}"


def publish(
    suite: str,
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    source: str = "",
    extra_sections: list[str] | None = None,
    description: str = "",
    runs: list[dict] | None = None,
) -> list[Path]:
    """Write ``<suite>.md``, ``.csv`` (one line per cell and seed) and ``.json`` (every per-seed row,
    the summary tables with each entry's per-seed values, and the runs) into ``out_dir``."""
    out = Path(out_dir)
    frame = results_frame(rows)
    md = out / f"{suite}.md"
    atomic_write_bytes(md, render(suite, rows, source, extra_sections, description, runs).encode())
    csv = out / f"{suite}.csv"
    atomic_write_bytes(csv, frame.to_csv(index=False).encode())
    js = out / f"{suite}.json"
    _, tables = sections(rows)
    payload = {
        "suite": suite,
        "source": source,
        "description": description,
        "runs": runs or [],
        "tables": tables,
        "flags": flags(rows),
        "results": rows,
    }
    atomic_write_bytes(js, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())
    return [md, csv, js]
