"""ZePAD's tuning ε against a fixed attack ε: per-branch robustness and confidence, and DAE detection.

The explanation of why the paper's confidence-gap detector fails at a small scale
(``suites/detection_sweep_offline.toml``; docs/fidelity.md), as functions of stored rows alone
(``ResultStore.rows``: ``metrics`` and ``config["defense_params"]["eps"]``, the tuning ε). The
classification rows give each branch's RA and mean max-softmax confidence on clean and attacked
images (``RA:<branch>``, ``conf_clean:<branch>``, ``conf_adv:<branch>``); the detection rows the
detectors' AUROC (``AUROC:gap``: the paper's MPAE − BMP confidence; ``AUROC:js``). Every entry is
the mean and sample std over seeds.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

BRANCHES = ("mpae:victim", "mpae:aux0", "bmp")
DETECTORS = ("gap", "js")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tuning_eps(row: Mapping[str, Any]) -> float | None:
    config = row.get("config", {})
    if config.get("defense_plugin") != "zepad":
        return None
    return _number(config.get("defense_params", {}).get("eps"))


def sweep_points(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One record per (attack, tuning ε — ``None`` for the undefended baseline —, quantity): the
    per-seed values, their mean and std. Quantities: ``RA`` (fused) and, per branch, ``RA:<b>``,
    ``conf_clean:<b>``, ``conf_adv:<b>`` (classification rows); ``AUROC:<detector>`` (detection)."""
    values: dict[tuple, dict[int, float]] = defaultdict(dict)
    attack_eps, roles = {}, {}
    for row in rows:
        tuned = _tuning_eps(row)
        undefended = row.get("config", {}).get("defense_role") == "baseline"
        if tuned is None and not undefended:
            continue
        plugin = row.get("config", {}).get("task_plugin")
        names = (
            ["RA"] + [f"{q}:{b}" for b in BRANCHES for q in ("RA", "conf_clean", "conf_adv")]
            if plugin == "classification"
            else [f"AUROC:{d}" for d in DETECTORS]
            if plugin == "detection" and tuned is not None
            else []
        )
        attack_eps[row["attack"]] = row["eps"]
        roles[row["attack"]] = row.get("config", {}).get("attack_role", "attack")
        for name in names:
            value = _number(row["metrics"].get(name))
            if value is not None:
                values[(row["attack"], tuned, name)][row["seed"]] = value
    out = []

    def order(item: tuple[tuple, dict[int, float]]) -> tuple:  # attacks before controls
        attack, tuned, name = item[0]
        return roles[attack] == "control", attack, -1.0 if tuned is None else tuned, name

    for (attack, tuned, name), per_seed in sorted(values.items(), key=order):
        seeds = sorted(per_seed)
        series = [per_seed[s] for s in seeds]
        out.append(
            {
                "attack": attack,
                "attack_eps": attack_eps[attack],
                "attack_role": roles[attack],
                "tuning_eps": tuned,
                "quantity": name,
                "values": series,
                "seeds": seeds,
                "mean": statistics.fmean(series),
                "std": statistics.stdev(series) if len(series) > 1 else None,
            }
        )
    return out


def _fmt(point: Mapping[str, Any] | None, scale: float = 1.0, digits: int = 1) -> str:
    if point is None:
        return ""
    mean = point["mean"] * scale
    if point["std"] is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {point['std'] * scale:.{digits}f}"


def _eps255(eps: float | None) -> str:
    return "undefended" if eps is None else f"{eps * 255:.2f}/255"


def sweep_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """Per attack: one line per tuning ε (and the undefended baseline) with fused and per-branch RA (%),
    per-branch mean confidence clean → attacked (×100) and the detectors' AUROC (%)."""
    points = sweep_points(rows)
    if not points:
        return "No ZePAD classification or detection results with a tuning ε among these rows."
    index = {(p["attack"], p["tuning_eps"], p["quantity"]): p for p in points}
    short = {"mpae:victim": "victim", "mpae:aux0": "aux0", "bmp": "BMP"}
    blocks = []
    for attack in dict.fromkeys(p["attack"] for p in points):
        first = next(p for p in points if p["attack"] == attack)
        role = " (control)" if first["attack_role"] == "control" else ""
        header = ["tuning ε", "RA fused"]
        header += [f"RA {short[b]}" for b in BRANCHES]
        header += [f"conf {short[b]} clean → adv" for b in BRANCHES]
        header += [f"AUROC {d}" for d in DETECTORS]
        lines = [
            f"#### {attack}{role}, attack ε {_eps255(first['attack_eps'])}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for tuned in dict.fromkeys(p["tuning_eps"] for p in points if p["attack"] == attack):
            get = {q: p for (a, t, q), p in index.items() if (a, t) == (attack, tuned)}.get
            cells = [_eps255(tuned), _fmt(get("RA"))]
            cells += [_fmt(get(f"RA:{b}")) for b in BRANCHES]
            cells += [
                f"{_fmt(get(f'conf_clean:{b}'), 100)} → {_fmt(get(f'conf_adv:{b}'), 100)}"
                if get(f"conf_clean:{b}")
                else ""
                for b in BRANCHES
            ]
            cells += [_fmt(get(f"AUROC:{d}")) for d in DETECTORS]
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    seeds = sorted({s for p in points for s in p["seeds"]})
    legend = (
        f"Mean ± sample std over seeds {', '.join(map(str, seeds))} (one seed: the value alone). "
        "RA in %, confidence = mean max-softmax probability (×100) of the "
        "branch's head on clean → attacked test images, AUROC in % (gap: the paper's MPAE − BMP "
        "confidence; js: Jensen–Shannon divergence of the MPAE and BMP predictions)."
    )
    return "\n\n".join(blocks + [legend])


def sweep_figure(rows: Iterable[Mapping[str, Any]], out: Path) -> Path | None:
    """Figure: per attack (columns), against the tuning ε: per-branch RA (top), per-branch mean
    confidence on clean (dashed) and attacked (solid) images (middle), detection AUROC (bottom);
    the attack's ε marked. ``None`` when there is nothing to draw."""
    points = sweep_points(rows)
    tuned = [p for p in points if p["tuning_eps"] is not None]
    if not tuned:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zepad_bench.reports.figures import save_figure

    attacks = list(dict.fromkeys(p["attack"] for p in tuned))
    fig, axes = plt.subplots(3, len(attacks), figsize=(4.2 * len(attacks), 9.5), squeeze=False, sharex=True)
    colours = {"RA": "black", "mpae:victim": "tab:blue", "mpae:aux0": "tab:orange", "bmp": "tab:green"}

    def line(ax, attack: str, quantity: str, colour: str, label: str, style: str = "-", scale: float = 1.0):
        series = sorted(
            (p for p in tuned if p["attack"] == attack and p["quantity"] == quantity),
            key=lambda p: p["tuning_eps"],
        )
        if series:
            ax.errorbar(
                [p["tuning_eps"] * 255 for p in series],
                [p["mean"] * scale for p in series],
                yerr=[(p["std"] or 0.0) * scale for p in series],
                color=colour,
                linestyle=style,
                marker="o",
                capsize=3,
                label=label,
            )

    for col, attack in enumerate(attacks):
        top, middle, bottom = axes[:, col]
        first = next(p for p in tuned if p["attack"] == attack)
        role = " (control)" if first["attack_role"] == "control" else ""
        top.set_title(f"{attack}{role}, attack ε {first['attack_eps'] * 255:.0f}/255")
        line(top, attack, "RA", colours["RA"], "fused")
        for b in BRANCHES:
            line(top, attack, f"RA:{b}", colours[b], b)
            line(middle, attack, f"conf_adv:{b}", colours[b], f"{b} attacked")
            line(middle, attack, f"conf_clean:{b}", colours[b], f"{b} clean", style="--")
        baseline = next(
            (
                p
                for p in points
                if p["attack"] == attack and p["tuning_eps"] is None and p["quantity"] == "RA"
            ),
            None,
        )
        if baseline is not None:
            top.axhline(baseline["mean"], color="grey", linestyle=":", label="undefended")
        line(bottom, attack, "AUROC:gap", "tab:red", "gap (paper's rule)")
        line(bottom, attack, "AUROC:js", "tab:purple", "Jensen–Shannon")
        bottom.axhline(50.0, color="grey", linestyle=":", label="chance")
        for ax in (top, middle, bottom):
            ax.axvline(first["attack_eps"] * 255, color="grey", linewidth=0.8)
            ax.grid(alpha=0.3)
        top.set_ylabel("RA (%)")
        middle.set_ylabel("mean max-softmax confidence")
        bottom.set_ylabel("detection AUROC (%)")
        bottom.set_xlabel("ZePAD tuning ε (/255; vertical line: the attack's ε)")
    for ax in axes[:, 0]:
        ax.legend(fontsize=7)
    fig.suptitle(
        "ZePAD tuned at several ε, attacked at a fixed ε: per-branch robustness, confidence, detection"
    )
    return save_figure(fig, out)
