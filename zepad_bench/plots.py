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
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
