"""AutoAttack-style sanity flags and RA-vs-ε curves, from stored results.

Pure functions on :func:`zepad_bench.leaderboard.results_frame` (one row per cell, with the rows'
attack and defense roles); the worst case per defense is the leaderboard's "worst" column. Robust
accuracy under the strongest attack, with sanity checks, is how RobustBench and AutoAttack report
robustness (Croce & Hein, ICML 2020, Sec. 5; Carlini et al. 2019, "On Evaluating Adversarial
Robustness", Sec. 5 checklist); a defense is as robust as its worst case.

Usage (e.g. in the leaderboard)::

    frame = results_frame(rows)                       # rows: ResultStore rows of one suite
    flags = sanity_flags(frame)                       # footnotes; JSON-able dicts
    auc = ra_auc(frame)                               # "RA AUC" per adaptive attack and defense
    robustness_figure(frame, out / "ra_vs_eps.png")   # None when no ε sweep
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SETTING = ["victim", "tuning", "task", "task_data"]
"""Columns that identify where a defense was evaluated (a worst case is taken within each)."""


def _numeric(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows whose ``metric`` is a number (``"n/a"`` and missing dropped), as float."""
    if metric not in frame:
        return frame.iloc[0:0].assign(**{metric: []})
    values = pd.to_numeric(frame[metric], errors="coerce")
    return frame[values.notna()].assign(**{metric: values[values.notna()]})


def _controls(frame: pd.DataFrame) -> set[str]:
    """Ids of the attacks whose role is ``"control"`` (equal-budget noise)."""
    return set(frame.loc[frame["attack_role"] == "control", "attack"]) if "attack_role" in frame else set()


def _attacks(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[~frame["attack"].isin(_controls(frame))]


def _means(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean of ``metric`` over seeds per cell setting (everything but the seed)."""
    keys = [*SETTING, "scenario", "attack", "eps", "defense"]
    return _numeric(frame, metric).groupby(keys, sort=False, as_index=False)[metric].mean()


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
    """AutoAttack-style warnings (Croce & Hein 2020, Sec. 5; Carlini et al. 2019, Sec. 5), on means
    over seeds; a difference counts when it exceeds ``tol`` percentage points. Each flag is a dict
    ``{kind, defense, attack, scenario, eps, task, message}``; ``kind`` is one of

    - ``above-control``: RA above the equal-budget control's (role ``"control"``, same ε) — the
      attack harms less than random noise;
    - ``adaptive-weaker``: an adaptive-scenario attack leaves a higher RA than some transfer or
      defense-aware attack on the same defense at the same ε — the adaptive attack is broken;
    - ``ra-not-falling``: along an attack's ε sweep, RA rises from one ε to the next, or does not
      fall at all from the smallest to the largest ε while above 0;
    - ``grad-zero`` / ``grad-nan``: the adaptive pipeline's input gradient was exactly zero / not
      finite on some samples, clean or attacked (metrics ``grad_zero_frac`` / ``grad_nan_frac`` and
      their ``:attacked`` versions, measured after each ensemble member; gradient masking);
    - ``not-converged``: the convergence re-check (the last member again with twice the iterations and
      restarts on ``recheck_n`` of the ``adaptive_n`` attacked samples) lowers robust accuracy on that
      subset by more than 1 point: (RA_after − RA_recheck)·adaptive_n/recheck_n > 1, with RA_after the
      robust accuracy after the last member (the smallest ``RA_after:<member>``);
    - ``ra-above-ba``: an attack's RA above the clean accuracy BA (the attack helps the classifier).
    """
    flags: list[dict[str, Any]] = []
    ra = _means(frame, "RA")
    ba = _means(frame, "BA").rename(columns={"BA": "_BA"})
    control = ra["attack"].isin(_controls(frame))
    attacks, controls = ra[~control], ra[control]
    same = [*SETTING, "defense", "eps"]
    for _, row in attacks.merge(controls[[*same, "attack", "RA"]], on=same, suffixes=("", "_ctl")).iterrows():
        if row["RA"] > row["RA_ctl"] + tol:
            flags.append(
                _flag(
                    "above-control",
                    row,
                    f"RA {row['RA']:.2f} above the control {row['attack_ctl']}'s {row['RA_ctl']:.2f}",
                )
            )
    adaptive, transfer = (
        attacks[attacks["scenario"] == "adaptive"],
        attacks[attacks["scenario"] != "adaptive"],
    )
    pairs = adaptive.merge(transfer[[*same, "scenario", "attack", "RA"]], on=same, suffixes=("", "_tr"))
    for _, row in pairs.iterrows():
        if row["RA"] > row["RA_tr"] + tol:
            flags.append(
                _flag(
                    "adaptive-weaker",
                    row,
                    f"adaptive RA {row['RA']:.2f} above {row['scenario_tr']} {row['attack_tr']}'s "
                    f"{row['RA_tr']:.2f}",
                )
            )
    for _, part in attacks.groupby([*SETTING, "scenario", "attack", "defense"], sort=False):
        if part["eps"].nunique() < 2:
            continue
        curve = part.sort_values("eps")
        values, eps = curve["RA"].to_numpy(), curve["eps"].to_numpy()
        rises = [i for i in range(1, len(values)) if values[i] > values[i - 1] + tol]
        if rises or (values[-1] >= values[0] - tol and values[0] > 0):
            at = f"from ε {eps[rises[0] - 1] * 255:g}/255 to {eps[rises[0]] * 255:g}/255" if rises else ""
            flags.append(
                _flag(
                    "ra-not-falling",
                    curve.iloc[-1],
                    f"RA does not fall as ε grows {at}".rstrip()
                    + f" ({', '.join(f'{v:.1f}' for v in values)})",
                )
            )
    for metric, kind, what in (("grad_zero_frac", "grad-zero", "zero"), ("grad_nan_frac", "grad-nan", "NaN")):
        for suffix, where in (("", "clean"), (":attacked", "attacked")):
            for _, row in _means(frame, metric + suffix).iterrows():
                if row[metric + suffix] > 0:
                    share = f"{row[metric + suffix]:.1f} % of {where} samples"
                    flags.append(_flag(kind, row, f"{share} have {what} input gradients"))
    flags += _not_converged(frame)
    for _, row in attacks.merge(ba, on=[*SETTING, "scenario", "attack", "eps", "defense"]).iterrows():
        if row["RA"] > row["_BA"] + tol:
            flags.append(_flag("ra-above-ba", row, f"RA {row['RA']:.2f} above BA {row['_BA']:.2f}"))
    return flags


RECHECK_TOLERANCE = 1.0
"""Points of robust accuracy the convergence re-check may take off before a cell is flagged."""


def _not_converged(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``not-converged`` flags: per cell, the re-check's drop on its subset, (RA_after − RA_recheck)·n/
    recheck_n, averaged over seeds, above :data:`RECHECK_TOLERANCE`."""
    after = [c for c in frame.columns if isinstance(c, str) and c.startswith("RA_after:")]
    needed = {"RA_recheck", "recheck_n", "adaptive_n"}
    if not after or not needed <= set(frame.columns):
        return []
    values = frame[after].apply(pd.to_numeric, errors="coerce").min(axis=1)
    numbers = {c: pd.to_numeric(frame[c], errors="coerce") for c in needed}
    drop = (values - numbers["RA_recheck"]) * numbers["adaptive_n"] / numbers["recheck_n"]
    rows = frame.assign(_drop=drop)[drop.notna()]
    keys = [*SETTING, "scenario", "attack", "eps", "defense"]
    flags = []
    for _, row in rows.groupby(keys, sort=False, as_index=False)["_drop"].mean().iterrows():
        if row["_drop"] > RECHECK_TOLERANCE:
            message = f"the convergence re-check lowers RA by {row['_drop']:.1f} points on its subset"
            flags.append(_flag("not-converged", row, message))
    return flags


def ra_curves(frame: pd.DataFrame, metric: str = "RA", scenario: str | None = "adaptive") -> pd.DataFrame:
    """RA-vs-ε curve points: per (``SETTING`` …, scenario, attack, defense, ε) the mean and std over
    seeds of ``metric`` (rows of ``scenario`` only, all scenarios with ``None``; controls excluded)."""
    data = _attacks(_numeric(frame, metric))
    if scenario is not None:
        data = data[data["scenario"] == scenario]
    keys = [*SETTING, "scenario", "attack", "defense", "eps"]
    grouped = data.groupby(keys, sort=True)[metric]
    out = grouped.mean().rename("mean").to_frame().join(grouped.std(ddof=1).rename("std"))
    return out.join(grouped.size().rename("seeds")).reset_index()


def ra_auc(frame: pd.DataFrame, metric: str = "RA", scenario: str | None = "adaptive") -> pd.DataFrame:
    """Area under the RA-vs-ε curve per (``SETTING`` …, scenario, attack, defense), per seed by the
    trapezoid rule over that attack's ε grid, divided by the ε range: the mean RA (%) over
    [ε_min, ε_max] (the RA itself for a single ε). Columns ``<metric> AUC`` (mean over seeds),
    ``<metric> AUC std``, ``eps_min``, ``eps_max``, ``seeds``."""
    data = _attacks(_numeric(frame, metric))
    if scenario is not None:
        data = data[data["scenario"] == scenario]
    out = []
    for keys, part in data.groupby([*SETTING, "scenario", "attack", "defense"], sort=False):
        areas = []
        for _, seed_part in part.groupby("seed"):
            curve = seed_part.groupby("eps")[metric].mean().sort_index()
            eps, values = curve.index.to_numpy(float), curve.to_numpy(float)
            span = eps[-1] - eps[0]
            areas.append(
                values[0]
                if span == 0
                else float(((values[1:] + values[:-1]) / 2 * np.diff(eps)).sum()) / span
            )
        out.append(
            {
                **dict(zip([*SETTING, "scenario", "attack", "defense"], keys)),
                f"{metric} AUC": float(np.mean(areas)),
                f"{metric} AUC std": float(np.std(areas, ddof=1)) if len(areas) > 1 else np.nan,
                "eps_min": float(part["eps"].min()),
                "eps_max": float(part["eps"].max()),
                "seeds": len(areas),
            }
        )
    return pd.DataFrame(out)


def robustness_figure(frame: pd.DataFrame, path: str | Path, metric: str = "RA") -> Path | None:
    """RA against ε for every defense under the adaptive scenario, one panel per task (mean ± std
    over seeds as error bars); ``None`` when no adaptive attack swept more than one ε."""
    curves = ra_curves(frame, metric)
    swept = curves.groupby([*SETTING, "attack", "defense"])["eps"].transform("nunique") > 1
    curves = curves[swept]
    if curves.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zepad_bench.plots import save_figure

    panels = list(curves.groupby([*SETTING], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (setting, part) in zip(axes[0], panels):
        several = part["attack"].nunique() > 1
        for (attack, defense), line in part.groupby(["attack", "defense"], sort=False):
            ax.errorbar(
                line["eps"] * 255,
                line["mean"],
                yerr=line["std"].fillna(0),
                marker="o",
                capsize=2,
                label=f"{defense} · {attack}" if several else defense,
            )
        ax.set_xscale("log", base=2)
        ticks = sorted(part["eps"].unique() * 255)
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel("ε (/255)", fontsize=8)
        ax.set_ylabel(f"{metric} (%)", fontsize=8)
        ax.set_ylim(-2, 102)
        ax.set_title(f"{setting[2]} on {setting[3]} (victim {setting[0]})", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Adaptive robust accuracy against ε", fontsize=9)
    return save_figure(fig, Path(path))
