"""Robust accuracy against ε: curve points and the area under each curve, from a board's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zepad_bench.reports.flags import SETTING
from zepad_bench.reports.frame import numeric_rows


def _attacked(frame: pd.DataFrame, metric: str, scenario: str | None) -> pd.DataFrame:
    data = numeric_rows(frame, metric)
    data = data[data["attack_role"] != "control"]
    return data if scenario is None else data[data["scenario"] == scenario]


def ra_curves(frame: pd.DataFrame, metric: str = "RA", scenario: str | None = "adaptive") -> pd.DataFrame:
    """RA-vs-ε curve points: per (``SETTING`` …, scenario, attack, defense, ε) the mean and std over
    seeds of ``metric`` (rows of ``scenario`` only, all scenarios with ``None``; controls excluded)."""
    keys = [*SETTING, "scenario", "attack", "defense", "eps"]
    grouped = _attacked(frame, metric, scenario).groupby(keys, sort=True)[metric]
    out = grouped.mean().rename("mean").to_frame().join(grouped.std(ddof=1).rename("std"))
    return out.join(grouped.size().rename("seeds")).reset_index()


def ra_auc(frame: pd.DataFrame, metric: str = "RA", scenario: str | None = "adaptive") -> pd.DataFrame:
    """Area under the RA-vs-ε curve per (``SETTING`` …, scenario, attack, defense), per seed by the
    trapezoid rule over that attack's ε grid, divided by the ε range: the mean RA (%) over
    [ε_min, ε_max] (the RA itself for a single ε). Columns ``<metric> AUC`` (mean over seeds),
    ``<metric> AUC std``, ``eps_min``, ``eps_max``, ``seeds``."""
    out = []
    keys = [*SETTING, "scenario", "attack", "defense"]
    for values, part in _attacked(frame, metric, scenario).groupby(keys, sort=False):
        areas = []
        for _, seed_part in part.groupby("seed"):
            curve = seed_part.groupby("eps")[metric].mean().sort_index()
            eps, ra = curve.index.to_numpy(float), curve.to_numpy(float)
            span = eps[-1] - eps[0]
            areas.append(ra[0] if span == 0 else float(((ra[1:] + ra[:-1]) / 2 * np.diff(eps)).sum()) / span)
        out.append(
            {
                **dict(zip(keys, values)),
                f"{metric} AUC": float(np.mean(areas)),
                f"{metric} AUC std": float(np.std(areas, ddof=1)) if len(areas) > 1 else np.nan,
                "eps_min": float(part["eps"].min()),
                "eps_max": float(part["eps"].max()),
                "seeds": len(areas),
            }
        )
    return pd.DataFrame(out)
