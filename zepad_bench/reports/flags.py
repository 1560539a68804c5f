"""AutoAttack-style sanity flags, from a board's rows: numbers to distrust, each with its reason.

Robust accuracy under the strongest attack, with sanity checks, is how RobustBench and AutoAttack
report robustness (Croce & Hein, ICML 2020, Sec. 5; Carlini et al. 2019, "On Evaluating Adversarial
Robustness", Sec. 5 checklist). Every check compares means over seeds at one ε, never across budgets.
The metrics read by name are the contract's sanity metrics (docs/plugins.md, "Task"): ``BA``, ``RA``,
``top_class_share[_adv]``, ``grad_zero_frac``/``grad_nan_frac`` (``:attacked``), ``RA_after:<member>``,
``RA_recheck``, ``recheck_n`` and ``adaptive_n``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from zepad_bench.reports.frame import numeric_rows

SETTING = ["victim", "tuning", "task", "task_data"]
"""Columns that identify where a defense was evaluated (checks compare within each)."""
TOLERANCE = 1.0
"""Percentage points a check must be exceeded by before it is flagged (seed noise of weak universal
attacks is about this size on the quickstart)."""
COLLAPSE_SHARE = 90.0
"""A prediction giving one class to this share (%) of the test images is flagged as collapsed."""
RECHECK_TOLERANCE = 1.0
"""Points of robust accuracy the convergence re-check may take off its subset before a cell is flagged
(issue 17: "flagged if RA falls by > 1 point")."""
GRADIENT_METRICS = (
    ("grad_zero_frac", "grad-zero", "zero", "clean"),
    ("grad_nan_frac", "grad-nan", "non-finite", "clean"),
    ("grad_zero_frac:attacked", "grad-zero", "zero", "attacked"),
    ("grad_nan_frac:attacked", "grad-nan", "non-finite", "attacked"),
)
KINDS = {
    "above-control": "an attack leaves RA above the equal-budget control's (it harms less than random noise)",
    "adaptive-weaker": "an adaptive attack leaves RA above a transfer or defense-aware attack's at the "
    "same ε (the adaptive attack is broken)",
    "ra-not-falling": "along an attack's ε sweep, RA rises from one ε to the next, or does not fall at all",
    "grad-zero": "the attacked pipeline's input gradient is exactly zero on some images (gradient masking)",
    "grad-nan": "the attacked pipeline's input gradient is not finite on some images",
    "not-converged": "the convergence re-check (the last member again with twice the iterations and "
    f"restarts on a seeded subset) lowers RA on that subset by more than {RECHECK_TOLERANCE:g} point: the "
    "ensemble had not converged",
    "ra-above-ba": "an attack's RA is above the clean accuracy BA (the attack helps the classifier)",
    "collapse-clean": f"≥ {COLLAPSE_SHARE:g} % of the clean test images get one class (a collapsed "
    "prediction)",
    "collapse-attacked": f"≥ {COLLAPSE_SHARE:g} % of the attacked test images get one class",
}
"""Every flag kind with what it means (the board's flag legend)."""


def _means(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean of ``metric`` over seeds per cell setting (everything but the seed)."""
    keys = [*SETTING, "scenario", "attack", "eps", "defense"]
    data = numeric_rows(frame, metric)
    roles = data.groupby(keys, sort=False, as_index=False)["attack_role"].first()
    return data.groupby(keys, sort=False, as_index=False)[metric].mean().merge(roles, on=keys)


def _flag(kind: str, row: Any, message: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "defense": row["defense"],
        "attack": row["attack"],
        "scenario": row["scenario"],
        "eps": float(row["eps"]),
        "task": row["task"],
        "message": message,
    }


def sanity_flags(frame: pd.DataFrame, tol: float = 0.0) -> list[dict[str, Any]]:
    """Every flag of :data:`KINDS` on ``frame`` (:func:`~zepad_bench.reports.frame.results_frame`),
    on means over seeds; a difference counts when it exceeds ``tol`` percentage points. Each flag is
    ``{kind, defense, attack, scenario, eps, task, message}``."""
    flags: list[dict[str, Any]] = []
    ra = _means(frame, "RA")
    ba = _means(frame, "BA").rename(columns={"BA": "_BA"}).drop(columns="attack_role")
    control = ra["attack_role"] == "control"
    attacks, controls = ra[~control], ra[control]
    same = [*SETTING, "defense", "eps"]
    for _, row in attacks.merge(controls[[*same, "attack", "RA"]], on=same, suffixes=("", "_ctl")).iterrows():
        if row["RA"] > row["RA_ctl"] + tol:
            message = f"RA {row['RA']:.2f} above the control {row['attack_ctl']}'s {row['RA_ctl']:.2f}"
            flags.append(_flag("above-control", row, message))
    adaptive, transfer = (
        attacks[attacks["scenario"] == "adaptive"],
        attacks[attacks["scenario"] != "adaptive"],
    )
    pairs = adaptive.merge(transfer[[*same, "scenario", "attack", "RA"]], on=same, suffixes=("", "_tr"))
    for _, row in pairs.iterrows():
        if row["RA"] > row["RA_tr"] + tol:
            other = f"{row['scenario_tr']} {row['attack_tr']}'s {row['RA_tr']:.2f}"
            message = f"adaptive RA {row['RA']:.2f} above {other}"
            flags.append(_flag("adaptive-weaker", row, message))
    for _, part in attacks.groupby([*SETTING, "scenario", "attack", "defense"], sort=False):
        if part["eps"].nunique() < 2:
            continue
        curve = part.sort_values("eps")
        values, eps = curve["RA"].to_numpy(), curve["eps"].to_numpy()
        rises = [i for i in range(1, len(values)) if values[i] > values[i - 1] + tol]
        if rises or (values[-1] >= values[0] - tol and values[0] > 0):
            at = f"from ε {eps[rises[0] - 1] * 255:g}/255 to {eps[rises[0]] * 255:g}/255" if rises else ""
            message = (
                f"RA does not fall as ε grows {at}".rstrip() + f" ({', '.join(f'{v:.1f}' for v in values)})"
            )
            flags.append(_flag("ra-not-falling", curve.iloc[-1], message))
    for metric, kind, what, images in GRADIENT_METRICS:
        for _, row in _means(frame, metric).iterrows():
            if row[metric] > 0:
                message = f"{row[metric]:.1f} % of the {images} images have {what} input gradients"
                flags.append(_flag(kind, row, message))
    flags += _not_converged(frame)
    for _, row in attacks.merge(ba, on=[*SETTING, "scenario", "attack", "eps", "defense"]).iterrows():
        if row["RA"] > row["_BA"] + tol:
            flags.append(_flag("ra-above-ba", row, f"RA {row['RA']:.2f} above BA {row['_BA']:.2f}"))
    return flags + collapse_flags(frame)


def _not_converged(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``not-converged``: per cell, the re-check's drop on its own subset, (RA_after − RA_recheck)·
    adaptive_n/recheck_n with RA_after the robust accuracy after the last member (the smallest
    ``RA_after:<member>``; ``RA_recheck`` counts the re-check's new successes over all adaptive_n
    attacked images), averaged over seeds, above :data:`RECHECK_TOLERANCE`."""
    after = [c for c in frame.columns if isinstance(c, str) and c.startswith("RA_after:")]
    needed = {"RA_recheck", "recheck_n", "adaptive_n"}
    if not after or not needed <= set(frame.columns):
        return []
    last = frame[after].apply(pd.to_numeric, errors="coerce").min(axis=1)
    numbers = {c: pd.to_numeric(frame[c], errors="coerce") for c in needed}
    drop = (last - numbers["RA_recheck"]) * numbers["adaptive_n"] / numbers["recheck_n"]
    rows = frame.assign(_drop=drop)[drop.notna()]
    keys = [*SETTING, "scenario", "attack", "eps", "defense"]
    out = []
    for _, row in rows.groupby(keys, sort=False, as_index=False)["_drop"].mean().iterrows():
        if row["_drop"] > RECHECK_TOLERANCE:
            message = f"the convergence re-check lowers RA by {row['_drop']:.1f} points on its subset"
            out.append(_flag("not-converged", row, message))
    return out


def collapse_flags(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A prediction collapsed to one class: ``top_class_share`` (clean) or ``_adv`` (attacked) at or
    above :data:`COLLAPSE_SHARE` % on average over seeds."""
    out = []
    for column, what in (("top_class_share", "clean"), ("top_class_share_adv", "attacked")):
        for _, row in _means(frame, column).iterrows():
            if row[column] >= COLLAPSE_SHARE:
                message = (
                    f"{row[column]:.1f} % of the {what} test images get one class: a collapsed prediction"
                )
                out.append(_flag(f"collapse-{what}", row, message))
    return out


def flags(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """:func:`sanity_flags` at :data:`TOLERANCE`, one per (kind, defense, attack, scenario, ε) with the
    tasks it fired on (tasks sharing one fused classifier, e.g. classification and detection, repeat
    the same finding)."""
    merged: dict[tuple, dict[str, Any]] = {}
    for flag in sanity_flags(frame, tol=TOLERANCE):
        task = flag.pop("task")
        key = (flag["kind"], flag["defense"], flag["attack"], flag["scenario"], flag["eps"])
        merged.setdefault(key, {**flag, "tasks": []})["tasks"].append(task)
    return list(merged.values())
