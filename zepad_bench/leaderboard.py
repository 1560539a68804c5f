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


def extra_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Every other numeric metric (per-branch confidences, detection, retrieval …), per defense × attack."""
    skip = set(ID_COLUMNS) | set(MAIN_METRICS) | {"attack_plugin"}
    numeric = [c for c in frame.columns if c not in skip and pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric:
        return None
    group = [
        c
        for c in ("victim", "scenario", "eps", "task", "defense", "attack")
        if c == "defense" or c == "attack" or frame[c].nunique() > 1
    ]
    table = frame.groupby(group, sort=False)[numeric].agg(lambda s: _mean_std(s)).reset_index()
    return table.loc[:, (table != "n/a").any(axis=0)]


def render(
    suite: str, rows: list[dict[str, Any]], source: str = "", extra_sections: list[str] | None = None
) -> str:
    """The markdown leaderboard of ``rows``, with a provenance header."""
    frame = results_frame(rows)
    machine = rows[-1]["machine"] if rows else {}
    versions = rows[-1]["versions"] if rows else {}
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
        extra = extra_table(frame)
        if extra is not None and len(extra.columns) > 2:
            lines += ["", "## Other metrics", "", extra.to_markdown(index=False)]
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
