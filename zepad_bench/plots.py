"""Figures rendered from stored per-cell records (e.g. paper Figure 2: branch confidences)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zepad_bench.cache import ArtifactCache


def confidence_figure(rows: list[dict[str, Any]], cache: ArtifactCache, out: Path) -> Path | None:
    """Paper Figure 2: per-branch max-softmax confidence, benign vs adversarial, for a multi-branch defense.

    One panel per (attack, branch) of the first defense with several branches; ``None`` if there is none.
    """
    rows = [
        r
        for r in rows
        if len(r["config"].get("branches", [])) > 1
        and cache.has("records", r["key"])
        and any(k.startswith("confidence_") for k in cache.load("records", r["key"]))
    ]
    if not rows:
        return None
    defense = rows[0]["defense"]
    attacks = [r for r in rows if r["defense"] == defense and r["config"].get("attack_role") != "control"]
    rows = attacks or rows[:1]
    by_attack: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_attack.setdefault(row["attack"], row)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    branches = [b["name"] for b in rows[0]["config"]["branches"]]
    fig, axes = plt.subplots(
        len(by_attack),
        len(branches),
        figsize=(3.2 * len(branches), 2.4 * len(by_attack)),
        squeeze=False,
        sharex=True,
    )
    for i, (attack, row) in enumerate(by_attack.items()):
        records = cache.load("records", row["key"])
        for j, branch in enumerate(row["config"]["branches"]):
            ax = axes[i][j]
            for kind, colour in (("clean", "tab:blue"), ("adv", "tab:red")):
                values = records.get(f"confidence_{kind}:{branch['role']}:{branch['name']}")
                if values is not None:
                    ax.hist(
                        values.numpy(),
                        bins=20,
                        range=(0, 1),
                        alpha=0.55,
                        color=colour,
                        label="benign" if kind == "clean" else "adversarial",
                    )
            ax.set_title(f"{branch['name']} · {attack}", fontsize=8)
            if i == len(by_attack) - 1:
                ax.set_xlabel("max softmax confidence", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Branch confidence, benign vs adversarial ({defense}, {rows[0]['task']})", fontsize=9)
    return save_figure(fig, out)


def detection_figure(rows: list[dict[str, Any]], cache: ArtifactCache, out: Path) -> Path | None:
    """The threshold sweep of every detection score (``zepad_bench.detection``), per attack.

    Reads the scores the detection task records (``detection_score_{clean,adv}:<score>``) for the first
    defense that has the paper's confidence gap. Left panel: ROC curves (TPR vs FPR over all
    thresholds) with each score's AUROC; right panel: balanced accuracy vs threshold of the gap score,
    the defense's threshold marked. ``None`` if no row has recorded scores.
    """
    from zepad_bench.detection import SCORES, threshold_sweep
    from zepad_bench.metrics import auroc

    def scores(row: dict[str, Any]) -> dict[str, Any]:
        return cache.load("records", row["key"]) if cache.has("records", row["key"]) else {}

    rows = [r for r in rows if "detection_score_adv:gap" in scores(r)]
    if not rows:
        return None
    defense = rows[0]["defense"]
    by_attack: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["defense"] == defense:
            by_attack.setdefault(row["attack"], row)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(by_attack), 2, figsize=(8, 2.8 * len(by_attack)), squeeze=False)
    for (attack, row), (roc_ax, acc_ax) in zip(by_attack.items(), axes):
        records = scores(row)
        for name in SCORES:
            benign = records.get(f"detection_score_clean:{name}")
            adversarial = records.get(f"detection_score_adv:{name}")
            if benign is None or adversarial is None:
                continue
            sweep = threshold_sweep(benign, adversarial)
            label = f"{name} (AUROC {auroc(benign, adversarial):.1f})"
            roc_ax.plot(sweep["FPR"].numpy(), sweep["TPR"].numpy(), label=label)
            if name == "gap":
                acc_ax.plot(sweep["threshold"][1:].numpy(), sweep["accuracy"][1:].numpy(), color="tab:blue")
        threshold = row.get("metrics", {}).get("threshold")
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


def save_figure(fig, out: Path) -> Path:
    """Lay out (leaving room for the figure's title), write ``out`` as a PNG and free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
