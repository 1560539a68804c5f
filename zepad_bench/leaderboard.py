"""Leaderboard: stored results → pandas → markdown (tabulate), CSV and JSON, saying how they were made."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd

from zepad_bench.cache import atomic_write_bytes

ID_COLUMNS = ["victim", "scenario", "attack", "eps", "defense", "tuning", "task", "task_data", "seed"]
MAIN_METRICS = ["BA", "RA", "ASR"]
CONTROL_ATTACK = "random-noise"


def results_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell: the cell's ids plus every metric (numbers and labels) as columns."""
    records = []
    for row in rows:
        record = {c: row[c] for c in ID_COLUMNS}
        record["attack_plugin"] = row["config"].get("attack_plugin", "")
        record.update(row["metrics"])
        records.append(record)
    return pd.DataFrame.from_records(records, columns=None)


def _mean_std(values: pd.Series) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def main_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 7 layout: one row per defense, BA then RA/ASR per attack (mean ± std over seeds)."""
    blocks = []
    group_cols = [
        c for c in ("victim", "scenario", "eps", "tuning", "task", "task_data") if frame[c].nunique() > 1
    ]
    attacks = list(dict.fromkeys(frame["attack"]))
    for keys, part in (
        frame.groupby(group_cols + ["defense"], sort=False)
        if group_cols
        else frame.groupby(["defense"], sort=False)
    ):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(group_cols + ["defense"], keys))
        row["BA"] = _mean_std(part["BA"])
        for attack in attacks:
            cells = part[part["attack"] == attack]
            row[f"RA {attack}"] = _mean_std(cells["RA"])
            row[f"ASR {attack}"] = _mean_std(cells["ASR"])
        blocks.append(row)
    return pd.DataFrame(blocks)


def _is_numeric(values: pd.Series) -> bool:
    """Numbers, possibly with "n/a" (or missing) where a metric does not apply."""
    present = values[values.notna() & (values != "n/a")]
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().all()


def extra_tables(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per task: every other numeric metric (branch confidences, detection, retrieval …), defense × attack."""
    skip = set(ID_COLUMNS) | set(MAIN_METRICS) | {"attack_plugin"}
    tables = {}
    for task, part in frame.groupby("task", sort=False):
        numeric = [c for c in part.columns if c not in skip and _is_numeric(part[c])]
        if not numeric:
            continue
        group = [
            c
            for c in ("victim", "scenario", "eps", "defense", "attack")
            if c in ("defense", "attack") or frame[c].nunique() > 1
        ]
        table = part.groupby(group, sort=False)[numeric].agg(_mean_std).reset_index()
        tables[task] = table.loc[:, (table != "n/a").any(axis=0)]
    return tables


DATASET_METRICS = ("BA", "RA", "ASR", "detection_accuracy", "AUROC")


def per_dataset_section(frame: pd.DataFrame, baseline: str = "none") -> list[str]:
    """Paper Tables 3–4 layout: a block of rows per (D_f, D_d), a row per defense, a column per victim.

    One table per metric (and per attack, scenario and ε where they vary; BA, measured on clean
    images only, is averaged over attacks). Cells are means over seeds; AVG is the mean over
    victims; a ``Δ <defense>`` row gives that defense minus the ``baseline`` defense id of its block.
    A task is named too when one downstream dataset serves several tasks; "n/a" values are left out.
    """
    victims = list(dict.fromkeys(frame["victim"]))
    shared = frame.groupby("task_data")["task"].nunique().max() > 1
    row_keys = ["tuning", "task_data"] + (["task"] if shared else [])
    headers = {"tuning": "D_f", "task_data": "D_d", "task": "task"}
    lines: list[str] = []
    for metric in DATASET_METRICS:
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


def render(
    suite: str, rows: list[dict[str, Any]], source: str = "", extra_sections: list[str] | None = None
) -> str:
    """The markdown leaderboard of ``rows``, with a provenance header."""
    frame = results_frame(rows)
    machine = rows[-1]["machine"] if rows else {}
    versions: dict[str, str] = {}
    for row in rows:  # every plugin any cell used, with its provider
        versions.update(row["versions"])
    versions = dict(sorted(versions.items()))
    compute = sum(r["timings"].get("cell", 0.0) for r in rows)
    seeds = sorted(frame["seed"].unique().tolist()) if len(frame) else []
    lines = [
        f"# Leaderboard: {suite}",
        "",
        f"- suite file: `{source}`" if source else "- suite file: (not recorded)",
        f"- cells: {len(rows)}; seeds: {seeds}; budgets ε: "
        f"{sorted({round(e * 255, 2) for e in frame['eps']}) if len(frame) else []} /255",
        f"- machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs, device "
        f"{machine.get('device', '?')}{' (' + machine['gpu'] + ')' if machine.get('gpu') else ''}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}",
        f"- rendered: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}; results created "
        f"{rows[0]['created'] if rows else '?'} … {rows[-1]['created'] if rows else '?'}",
        f"- compute (sum of cell wall times, first computation of each stage counted once): {compute:.0f} s",
        "",
        "BA/RA/ASR in %, mean ± std over seeds. ASR = share of all test images whose prediction changes.",
        f"`{CONTROL_ATTACK}` is the equal-budget random-noise control.",
        "",
        "## Classification (paper Table 7 layout)",
        "",
    ]
    if len(frame):
        lines.append(main_table(frame).to_markdown(index=False))
        for task, table in extra_tables(frame).items():
            lines += ["", f"## Other metrics: {task}", "", table.to_markdown(index=False)]
        if frame["task_data"].nunique() > 1:
            lines += ["", "## Per downstream dataset and task (paper Tables 3–4 layout)", ""]
            lines += per_dataset_section(frame)
    lines += extra_sections or []
    return "\n".join(lines) + "\n"


def publish(
    suite: str,
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    source: str = "",
    extra_sections: list[str] | None = None,
) -> list[Path]:
    """Write ``<suite>.md``, ``.csv`` and ``.json`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    frame = results_frame(rows)
    md = out / f"{suite}.md"
    atomic_write_bytes(md, render(suite, rows, source, extra_sections).encode())
    csv = out / f"{suite}.csv"
    atomic_write_bytes(csv, frame.to_csv(index=False).encode())
    js = out / f"{suite}.json"
    payload = {"suite": suite, "source": source, "results": rows}
    atomic_write_bytes(js, json.dumps(payload, indent=1, sort_keys=True, default=str).encode())
    return [md, csv, js]
