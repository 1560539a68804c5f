"""Figures from a board's rows alone: branch confidences (paper Figure 2), the detection scores'
threshold sweep, and robust accuracy against ε. Per-cell arrays come as the histograms stored with
each row (``records``, :func:`zepad_bench.store.record_histograms`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zepad_bench.reports.curves import ra_curves
from zepad_bench.reports.flags import SETTING

SCORE = "detection_score_{}:{}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _edges(histogram: dict[str, Any]) -> np.ndarray:
    lo, hi = histogram["range"]
    return np.linspace(lo, hi, len(histogram["counts"]) + 1)


def _first_per_attack(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The first row of each attack (attacks before controls, so controls show only when alone)."""
    attacks = [r for r in rows if r.get("config", {}).get("attack_role") != "control"] or rows[:1]
    out: dict[str, dict[str, Any]] = {}
    for row in attacks:
        out.setdefault(row["attack"], row)
    return out


def confidence_figure(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Paper Figure 2: per-branch max-softmax confidence, benign vs adversarial, for the first defense
    with several branches whose rows recorded confidences; one panel per (attack, branch)."""
    rows = [
        r
        for r in rows
        if len(r.get("config", {}).get("branches", [])) > 1
        and any(k.startswith("confidence_") for k in r.get("records", {}))
    ]
    if not rows:
        return None
    defense = rows[0]["defense"]
    by_attack = _first_per_attack([r for r in rows if r["defense"] == defense])
    branches = rows[0]["config"]["branches"]
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(by_attack), len(branches), figsize=(3.2 * len(branches), 2.4 * len(by_attack)), squeeze=False
    )
    for i, (attack, row) in enumerate(by_attack.items()):
        for j, branch in enumerate(branches):
            ax = axes[i][j]
            for kind, colour, label in (("clean", "tab:blue", "benign"), ("adv", "tab:red", "adversarial")):
                histogram = row["records"].get(f"confidence_{kind}:{branch['role']}:{branch['name']}")
                if histogram is not None:
                    ax.stairs(
                        histogram["counts"],
                        _edges(histogram),
                        fill=True,
                        alpha=0.55,
                        color=colour,
                        label=label,
                    )
            ax.set_title(f"{branch['name']} · {attack}", fontsize=8)
            if i == len(by_attack) - 1:
                ax.set_xlabel("max softmax confidence", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Branch confidence, benign vs adversarial ({defense}, {rows[0]['task']})", fontsize=9)
    return save_figure(fig, out)


def sweep(benign: dict[str, Any], adversarial: dict[str, Any]) -> dict[str, np.ndarray]:
    """TPR, FPR and balanced accuracy (%) of "flag when the score is above t", for t at every bin edge
    of two histograms on one range (from everything flagged to nothing)."""
    edges = _edges(benign)
    above = [
        np.concatenate([np.cumsum(np.asarray(h["counts"])[::-1])[::-1], [0]]) for h in (benign, adversarial)
    ]
    fpr, tpr = (100.0 * a / max(h["n"], 1) for a, h in zip(above, (benign, adversarial)))
    return {"threshold": edges, "TPR": tpr, "FPR": fpr, "accuracy": (tpr + 100.0 - fpr) / 2}


def detection_figure(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """The threshold sweep of every detection score the detection task recorded, per attack, for the
    first defense with the paper's confidence gap: ROC curves (each labelled with the row's stored
    AUROC) and the gap's balanced accuracy against its threshold, the defense's threshold marked."""
    rows = [r for r in rows if SCORE.format("adv", "gap") in r.get("records", {})]
    if not rows:
        return None
    defense = rows[0]["defense"]
    by_attack = _first_per_attack([r for r in rows if r["defense"] == defense])
    plt = _pyplot()
    fig, axes = plt.subplots(len(by_attack), 2, figsize=(8, 2.8 * len(by_attack)), squeeze=False)
    for (attack, row), (roc_ax, acc_ax) in zip(by_attack.items(), axes):
        records, metrics = row["records"], row.get("metrics", {})
        names = sorted(
            (k.split(":", 1)[1] for k in records if k.startswith(SCORE.format("clean", ""))),
            key=lambda n: (n != "gap", n),
        )
        for name in names:
            benign, adversarial = records[SCORE.format("clean", name)], records.get(SCORE.format("adv", name))
            if adversarial is None:
                continue
            curve = sweep(benign, adversarial)
            stored = metrics.get(f"AUROC:{name}")
            label = f"{name} (AUROC {stored:.1f})" if isinstance(stored, (int, float)) else name
            roc_ax.plot(curve["FPR"], curve["TPR"], label=label)
            if name == "gap":
                acc_ax.plot(curve["threshold"], curve["accuracy"], color="tab:blue")
        threshold = metrics.get("threshold")
        if isinstance(threshold, (int, float)):
            acc_ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
            acc_ax.legend(fontsize=7)
        roc_ax.plot([0, 100], [0, 100], color="grey", linewidth=0.5)
        roc_ax.set_title(f"ROC · {attack}", fontsize=8)
        roc_ax.set_xlabel("FPR (%)", fontsize=8)
        roc_ax.set_ylabel("TPR (%)", fontsize=8)
        roc_ax.legend(fontsize=6)
        acc_ax.set_title(f"confidence gap: accuracy vs threshold · {attack}", fontsize=8)
        acc_ax.set_xlabel("MPAE − BMP confidence threshold", fontsize=8)
        acc_ax.set_ylabel("accuracy (%)", fontsize=8)
    fig.suptitle(f"DAE detection scores, threshold sweep ({defense}, {rows[0]['task']})", fontsize=9)
    return save_figure(fig, out)


def robustness_figure(frame: pd.DataFrame, out: Path, metric: str = "RA") -> Path | None:
    """RA against ε for every defense under the adaptive scenario, one panel per task (mean ± std
    over seeds as error bars); ``None`` when no adaptive attack swept more than one ε."""
    curves = ra_curves(frame, metric)
    swept = curves.groupby([*SETTING, "attack", "defense"])["eps"].transform("nunique") > 1
    curves = curves[swept]
    if curves.empty:
        return None
    plt = _pyplot()
    panels = list(curves.groupby([*SETTING], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, (setting, part) in zip(axes[0], panels):
        several = part["attack"].nunique() > 1
        for (attack, defense), line in part.groupby(["attack", "defense"], sort=False):
            label = f"{defense} · {attack}" if several else defense
            ax.errorbar(
                line["eps"] * 255,
                line["mean"],
                yerr=line["std"].fillna(0),
                marker="o",
                capsize=2,
                label=label,
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
    return save_figure(fig, out)


def save_figure(fig, out: Path) -> Path:
    """Lay out (leaving room for the figure's title), write ``out`` as a PNG and free the figure."""
    plt = _pyplot()
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return out
