"""Shaping: a board's rows as one pandas frame (one row per cell and seed), and how columns are named."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from zepad_bench.interfaces import SCENARIOS

ID_COLUMNS = ["victim", "scenario", "attack", "eps", "defense", "tuning", "task", "task_data", "seed"]
ROLE_COLUMNS = ["attack_plugin", "attack_role", "defense_role", "status", "outdated", "test_size", "members"]
BLOCK_COLUMNS = ("victim", "tuning", "task_data")
"""A block of table rows per value, where they vary within a task."""
BLOCK_HEADERS = {"victim": "victim", "tuning": "D_f", "task_data": "D_d"}
SCENARIO_SHORT = {"semi-black-box": "SBB", "white-box": "WB", "defense-aware": "DA", "adaptive": "AD"}


def results_frame(rows: Iterable[dict[str, Any]], pending: Iterable[dict[str, Any]] = ()) -> pd.DataFrame:
    """One row per cell and seed: its coordinates, roles, ``status`` (``ok``, ``failed``, ``pending``),
    ``outdated`` (bool), ``test_size`` (the test images it evaluated, where stored), ``members`` (an
    adaptive cell's ensemble members in the order they ran, space-separated, where stored) and every
    metric (numbers and labels)."""
    records = []
    for row, status in [*((r, r.get("status", "ok")) for r in rows), *((c, "pending") for c in pending)]:
        config = row.get("config", row)
        record = {c: row[c] for c in ID_COLUMNS}
        record.update(
            attack_plugin=config.get("attack_plugin", row["attack"]),
            attack_role=config.get("attack_role", "attack"),
            defense_role=config.get("defense_role", "defense"),
            status=status,
            outdated=bool(row.get("outdated")),
            test_size=config.get("test_size"),
        )
        if config.get("adaptive_members"):
            record["members"] = " ".join(config["adaptive_members"])
        record.update(row.get("metrics", {}))
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    return frame if len(frame) else pd.DataFrame(columns=ID_COLUMNS + ROLE_COLUMNS)


def eps_text(eps: float) -> str:
    """``16/255`` for 16/255 (budgets are written in 255ths)."""
    return f"{round(float(eps) * 255, 2):g}/255"


def numeric(values: pd.Series) -> pd.Series:
    """Numbers only (labels and ``"n/a"`` become NaN)."""
    return pd.to_numeric(values, errors="coerce")


def numeric_rows(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows whose ``metric`` is a number (failed and pending cells have none), with it as float."""
    if metric not in frame:
        return frame.iloc[0:0].assign(**{metric: []})
    values = numeric(frame[metric])
    return frame[values.notna()].assign(**{metric: values[values.notna()]})


def blocks(part: pd.DataFrame) -> list[str]:
    """The block columns that vary in ``part``."""
    return [c for c in BLOCK_COLUMNS if part[c].nunique() > 1]


@dataclass(frozen=True)
class AttackColumn:
    """One attack as a table column: its id, scenario, plugin, role and short label."""

    attack: str
    scenario: str
    plugin: str
    role: str
    label: str

    @property
    def control(self) -> bool:
        return self.role == "control"


def attack_columns(part: pd.DataFrame) -> list[AttackColumn]:
    """The (attack, scenario) pairs of ``part``: controls first, then by threat model (transfer,
    defense-aware, adaptive), each in the suite's order; labelled by the attack id, with the
    scenario's short name when the id runs in several scenarios."""
    pairs = part.drop_duplicates(["attack", "scenario"])
    several = pairs.groupby("attack")["scenario"].transform("nunique") > 1
    columns = [
        AttackColumn(
            r.attack,
            r.scenario,
            r.attack_plugin,
            r.attack_role,
            f"{r.attack} ({SCENARIO_SHORT.get(r.scenario, r.scenario)})" if many else r.attack,
        )
        for r, many in zip(pairs.itertuples(), several)
    ]
    order = {s: i for i, s in enumerate(SCENARIOS)}
    return sorted(columns, key=lambda c: (not c.control, order.get(c.scenario, len(order))))
