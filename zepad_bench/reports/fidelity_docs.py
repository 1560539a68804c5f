"""The generated parts of docs/fidelity.md: protocols side by side, each deviation alone, the attacks
as their authors ran them, DAE detection, the tuning-ε sweep and ZePAD's branches across tasks.

Every function is a pure function of published boards (``None`` while a board is absent) and states
a conclusion only where the data support it: a paired difference counts when its mean is beyond twice
its standard error over seeds, two entries differ when they do not tie (:meth:`Stat.ties`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from zepad_bench.reports.claims import (
    Row,
    at,
    baseline,
    below,
    first_task,
    ids,
    listing,
    number,
    span,
    stat,
    untested,
)
from zepad_bench.reports.data import Board
from zepad_bench.reports.deviations import deviations_markdown
from zepad_bench.reports.frame import eps_text
from zepad_bench.reports.tuning_sweep import BRANCHES, sweep_markdown, sweep_points
from zepad_bench.statistics import Stat


def not_run(suite: str) -> str:
    return (
        f"Not yet run: there is no `leaderboard/{suite}.json`. `zepad-bench run suites/{suite}.toml --out "
        "leaderboard`, then `zepad-bench docs`, fill this in."
    )


def _params(rows: Iterable[Row]) -> bool:
    return any("defense_params" in r.get("config", {}) for r in rows)


def predates_params(suite: str) -> str:
    return (
        f"The published `leaderboard/{suite}.json` was stored before rows named their defense's parameters "
        f"(protocol, switches); re-run it (`zepad-bench run suites/{suite}.toml --out leaderboard`)."
    )


def paired(deltas: Stat) -> str:
    """A paired difference in words: its sign where its mean is beyond twice its standard error."""
    if deltas.n < 2:
        return "one seed: not tested"
    if deltas.mean and abs(deltas.mean) >= 2 * deltas.sem:
        return "lower" if deltas.mean < 0 else "higher"
    return "within noise"


def _signed(s: Stat) -> str:
    if not s.n:
        return "n/a"
    return f"{s.mean:+.2f}" if s.n == 1 else f"{s.mean:+.2f} ± {s.std:.2f}"


def _protocol(row: Row) -> str:
    return str(row.get("config", {}).get("defense_params", {}).get("protocol", "—"))


def _head(rows: Iterable[Row]) -> str:
    labels = sorted(
        {str(r["metrics"].get("head")) for r in rows if isinstance(r["metrics"].get("head"), str)}
    )
    return "/".join(labels) or "—"


def _deltas(rows: list[Row], ours: str, theirs: str, metric: str, **where: Any) -> Stat:
    """Per seed ``metric`` of defense ``theirs`` − of ``ours`` on the same cells, over seeds."""
    mine = {
        r["seed"]: number(r["metrics"].get(metric)) for r in rows if r["defense"] == ours and _at(r, where)
    }
    other = {
        r["seed"]: number(r["metrics"].get(metric)) for r in rows if r["defense"] == theirs and _at(r, where)
    }
    return Stat(
        tuple(other[s] - mine[s] for s in sorted(mine) if mine[s] is not None and other.get(s) is not None)
    )


def _at(row: Row, where: Mapping[str, Any]) -> bool:
    return all(row[k] == v for k, v in where.items())


def protocols_side_by_side(board: Board | None) -> str:
    """``fidelity_offline``: per defense, task and protocol the entries, then Δ authors − corrected per
    seed for each tuned plugin that runs both presets, and what each Δ says."""
    if board is None:
        return not_run("fidelity_offline")
    rows = board.ok
    attacks = ids(rows, "attack")
    lines = [
        "| defense | task (head) | protocol | seeds | BA | "
        + " | ".join(f"RA {a}" for a in attacks)
        + " | top-class share, adv |",
        "|" + "---|" * (len(attacks) + 6),
    ]
    for task in ids(rows, "task"):
        for defense in ids(rows, "defense", task=task):
            mine = [r for r in rows if r["task"] == task and r["defense"] == defense]
            ra = [stat(mine, "RA", attack=a).text() for a in attacks]
            lines.append(
                f"| {defense} | {task} ({_head(mine)}) | {_protocol(mine[0])} | "
                f"{len({r['seed'] for r in mine})} | {stat(mine, 'BA').text()} | "
                + " | ".join(ra)
                + f" | {stat(mine, 'top_class_share_adv').text()} |"
            )
    if not _params(rows):
        return "\n".join([*lines, "", predates_params("fidelity_offline")])
    pairs = preset_pairs(rows)
    lines += [
        "",
        "Δ authors − corrected, per seed on the same cells (same task, attack and seed), mean ± std over "
        "seeds; *lower*/*higher*: beyond twice the Δ's standard error, else *within noise*:",
        "",
        "| plugin | task | ΔBA | " + " | ".join(f"ΔRA {a}" for a in attacks) + " | ΔRA read |",
        "|" + "---|" * (len(attacks) + 4),
    ]
    for plugin, (ours, theirs) in pairs.items():
        for task in ids(rows, "task", defense=ours):
            ba = _deltas(rows, ours, theirs, "BA", task=task, attack=attacks[0])
            ras = [_deltas(rows, ours, theirs, "RA", task=task, attack=a) for a in attacks]
            read = "; ".join(f"{a}: {paired(d)}" for a, d in zip(attacks, ras))
            lines.append(
                f"| {plugin} | {task} | {_signed(ba)} ({paired(ba)}) | "
                + " | ".join(_signed(d) for d in ras)
                + f" | {read} |"
            )
    return "\n".join(lines)


def preset_pairs(rows: list[Row]) -> dict[str, tuple[str, str]]:
    """Per tuned plugin with exactly one ``corrected`` and one ``authors`` defense: (corrected, authors)."""
    by: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        config = row.get("config", {})
        protocol = config.get("defense_params", {}).get("protocol")
        if protocol in ("corrected", "authors"):
            found = by.setdefault(config["defense_plugin"], {}).setdefault(protocol, [])
            if row["defense"] not in found:
                found.append(row["defense"])
    return {
        plugin: (found["corrected"][0], found["authors"][0])
        for plugin, found in by.items()
        if len(found.get("corrected", [])) == 1 and len(found.get("authors", [])) == 1
    }


def deviations_alone(board: Board | None) -> str:
    """``protocol_ablation_offline``'s deviations table, as its board shows it."""
    if board is None:
        return not_run("protocol_ablation_offline")
    if not _params(board.ok):
        return predates_params("protocol_ablation_offline")
    return deviations_markdown(board.ok)


def tuning_sweep(board: Board | None) -> str:
    """``detection_sweep_offline``: the sweep table and figure, and what they say about the hypothesis
    that the gap fails because the attack lies far outside ZePAD's tuning budget."""
    if board is None:
        return not_run("detection_sweep_offline")
    points = sweep_points(board.ok)
    if not points:
        return predates_params("detection_sweep_offline")
    lines = [
        sweep_markdown(board.ok),
        "",
        f"![ZePAD's tuning ε swept](../leaderboard/{board.name}-tuning-sweep.png)",
        "",
        "What the sweep says (smallest → largest tuning ε; a change counts beyond the noise over seeds):",
        "",
    ]
    index = {(p["attack"], p["tuning_eps"], p["quantity"]): Stat(tuple(p["values"])) for p in points}
    for attack in ids([p for p in points if p["attack_role"] == "attack"], "attack"):
        tuned = sorted(
            {p["tuning_eps"] for p in points if p["attack"] == attack and p["tuning_eps"] is not None}
        )
        if len(tuned) < 2:
            continue
        low, high = tuned[0], tuned[-1]

        def change(
            quantity: str, attack: str = attack, low: float = low, high: float = high
        ) -> tuple[str, str]:
            a, b = (index.get((attack, e, quantity), Stat(())) for e in (low, high))
            if not (a.n and b.n):
                return "n/a", "not stored"
            word = "rises" if below(a, b) else "falls" if below(b, a) else "does not change beyond the noise"
            return f"{a.mean:.1f} → {b.mean:.1f}", word

        parts, rising = [], []
        for quantity, label in (
            *((f"RA:{b}", f"RA of {b}") for b in BRANCHES if b.startswith("mpae")),
            *(
                (f"conf_adv:{b}", f"attacked-image confidence of {b} (×100)")
                for b in BRANCHES
                if b.startswith("mpae")
            ),
            ("AUROC:gap", "the gap's AUROC"),
        ):
            figures, word = change(quantity)
            if quantity.startswith("conf_adv") and figures != "n/a":
                a, b = (index[(attack, e, quantity)].mean * 100 for e in (low, high))
                figures = f"{a:.1f} → {b:.1f}"
            parts.append(f"{label} {figures} ({word})")
            rising.append(word == "rises")
        verdict = (
            "supports the hypothesis (each rises)"
            if all(rising)
            else "does not support it: the gap's AUROC does not rise"
            if not rising[-1]
            else "supports it in part (the gap's AUROC rises, not every branch quantity does)"
        )
        lines.append(
            f"- `{attack}` at attack {at(_attack_eps(points, attack))}, tuning ε {eps_text(low)} → "
            f"{eps_text(high)}: {'; '.join(parts)}. This {verdict}."
        )
    return "\n".join(lines)


def _attack_eps(points: list[dict[str, Any]], attack: str) -> float:
    return next(p["attack_eps"] for p in points if p["attack"] == attack)


ATTACK_ROWS = {
    "A1": (("uapgd", "uapgd-noclamp"), ("pap", "pap-noclamp")),
    "A2": (("uapgd", "uapgd-reference"), ("uapgd", "uapgd-reference-ce")),
    "A3": (("ssp", "ssp-universal"),),
    "A4": (("pap", "pap-b16"),),
}
"""Which attack tables of ``fidelity_attacks_offline`` each row of docs/fidelity.md compares: ours
(the default) → the authors' variant."""


def _detection_rows(board: Board) -> tuple[str | None, list[Row]]:
    task = first_task(board, "detection")
    return task, [r for r in board.ok if r["task"] == task]


def _zepad(rows: list[Row]) -> str | None:
    return next(iter(ids(rows, "defense", defense_plugin="zepad")), None)


def attack_effects(board: Board | None) -> str:
    """Rows A1–A4: RA of the undefended model and ZePAD under our attack and the authors' variant,
    beside the equal-budget control."""
    if board is None:
        return not_run("fidelity_attacks_offline")
    task, rows = _detection_rows(board)
    defenses = [d for d in (baseline(rows), _zepad(rows)) if d]
    controls = ids(rows, "attack", role="control")
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"RA (%) on `{task}`'s fused classifier, seeds {', '.join(map(str, seeds))}; *lower*/*higher*: "
        "beyond the noise over seeds (with one seed any difference is shown, none is tested).",
        "",
        "| # | ours → the authors' variant | " + " | ".join(f"RA {d}" for d in defenses) + " | reading |",
        "|" + "---|" * (len(defenses) + 3),
    ]
    for number_, comparisons in ATTACK_ROWS.items():
        for ours, theirs in comparisons:
            if not (ids(rows, "attack", attack=ours) and ids(rows, "attack", attack=theirs)):
                lines.append(
                    f"| {number_} | {ours} → {theirs} | "
                    + " | ".join("n/a" for _ in defenses)
                    + " | not on the board |"
                )
                continue
            cells, words = [], []
            for defense in defenses:
                a = stat(rows, "RA", defense=defense, attack=ours)
                b = stat(rows, "RA", defense=defense, attack=theirs)
                cells.append(f"{a.text()} → {b.text()}")
                words.append(f"{defense}: " + _compare(b, a, "stronger", "weaker", "as strong"))
            if controls:
                none = defenses[0]
                control = stat(rows, "RA", defense=none, attack=controls[0])
                variant = stat(rows, "RA", defense=none, attack=theirs)
                words.append(
                    f"{theirs} on {none} vs the control `{controls[0]}` ({control.text()}): "
                    + _compare(
                        variant, control, "stronger than noise", "weaker than noise", "as strong as noise"
                    )
                )
            lines.append(
                f"| {number_} | {ours} → {theirs} | " + " | ".join(cells) + f" | {'; '.join(words)} |"
            )
    return "\n".join(lines)


def _compare(attacked: Stat, reference: Stat, lower: str, higher: str, same: str) -> str:
    """An attack's RA against a reference RA (lower RA: a stronger attack); with one seed the means
    alone, marked as untested."""
    if not (attacked.n and reference.n):
        return "n/a"
    if attacked.n < 2 or reference.n < 2:
        word = lower if attacked.mean < reference.mean else higher if attacked.mean > reference.mean else same
        return f"{word} (one seed: not tested)"
    return (
        lower
        if below(attacked, reference)
        else higher
        if below(reference, attacked)
        else f"{same} within noise"
    )


def attack_variants(board: Board | None) -> str:
    """BA, and RA/ASR of the undefended model and ZePAD per attack variant."""
    if board is None:
        return not_run("fidelity_attacks_offline")
    task, rows = _detection_rows(board)
    defenses = [d for d in (baseline(rows), _zepad(rows)) if d]
    ba = ", ".join(f"{d} {stat(rows, 'BA', defense=d).text()}" for d in defenses)
    lines = [
        f"BA on `{task}`'s fused classifier: {ba} (the same heads serve every row).",
        "",
        "| attack | "
        + " | ".join(f"RA {d}" for d in defenses)
        + " | "
        + " | ".join(f"ASR {d}" for d in defenses)
        + " |",
        "|" + "---|" * (2 * len(defenses) + 1),
    ]
    for attack in ids(rows, "attack"):
        cells = [stat(rows, m, defense=d, attack=attack).text() for m in ("RA", "ASR") for d in defenses]
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SCORES = ("gap", "js", "disagreement", "entropy")


def detection_effect(board: Board | None) -> str:
    """Row D1's measured effect: the paper's gap against the Jensen–Shannon score, over the attacks."""
    if board is None:
        return not_run("fidelity_attacks_offline")
    _, rows = _detection_rows(board)
    zepad = _zepad(rows)
    if zepad is None:
        return "No ZePAD detection rows on the board."
    mine = [r for r in rows if r["defense"] == zepad]
    attacks = ids(mine, "attack", role="attack")
    gap = {a: stat(mine, "AUROC:gap", attack=a) for a in attacks}
    js = {a: stat(mine, "AUROC:js", attack=a) for a in attacks}
    better = [a for a in attacks if below(gap[a], js[a])]
    return (
        f"The gap: AUROC {span(gap.values())}, paper-rule accuracy "
        f"{span(stat(mine, 'detection_accuracy', attack=a) for a in attacks)}. The JS divergence: AUROC "
        f"{span(js.values())}, held-out accuracy "
        f"{span(stat(mine, 'accuracy:js', attack=a) for a in attacks)}; "
        f"above the gap's AUROC on {len(better)} of {len(attacks)} attacks"
        + untested([*gap.values(), *js.values()])
        + (
            f" (not on {listing([a for a in attacks if a not in better])})"
            if len(better) < len(attacks)
            else ""
        )
        + "."
    )


def detection_scores(board: Board | None) -> str:
    """Every detection score's AUROC and held-out accuracy per attack and defense."""
    if board is None:
        return not_run("fidelity_attacks_offline")
    _, rows = _detection_rows(board)
    metrics = ["detection_accuracy", *(f"AUROC:{s}" for s in SCORES), *(f"accuracy:{s}" for s in SCORES)]
    header = ["paper rule acc.", *(f"AUROC:{s}" for s in SCORES), *(f"accuracy:{s}" for s in SCORES)]
    lines = ["| attack | defense | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 2)]
    for attack in ids(rows, "attack"):
        for defense in ids(rows, "defense", attack=attack):
            mine = [r for r in rows if r["attack"] == attack and r["defense"] == defense]
            cells = [_entry(mine, m) for m in metrics]
            lines.append(f"| {attack} | {defense} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _entry(rows: list[Row], metric: str) -> str:
    s = stat(rows, metric)
    return s.text() if s.n else "n/a"


def _histogram(rows: list[Row], name: str) -> dict[str, Any] | None:
    found = [r["records"].get(name) for r in rows if isinstance(r.get("records", {}).get(name), dict)]
    return found[0] if len(found) == 1 else None


def _edges(h: Mapping[str, Any]) -> list[float]:
    lo, hi = h["range"]
    k = len(h["counts"])
    return [lo + (hi - lo) * i / k for i in range(k + 1)]


def share_from(h: Mapping[str, Any], threshold: float) -> float:
    """Percentage of the values in bins whose lower edge is at or above ``threshold`` (exact for a 0/1
    score: its values sit in the first and last bins)."""
    edges = _edges(h)
    return 100 * sum(c for c, lo in zip(h["counts"], edges) if lo >= threshold) / max(h["n"], 1)


def hist_mean(h: Mapping[str, Any]) -> float:
    edges = _edges(h)
    return sum(c * (a + b) / 2 for c, a, b in zip(h["counts"], edges, edges[1:])) / max(h["n"], 1)


def hist_median(h: Mapping[str, Any]) -> float:
    edges, seen = _edges(h), 0
    for count, a, b in zip(h["counts"], edges, edges[1:]):
        if seen + count >= h["n"] / 2:
            return (a + b) / 2
        seen += count
    return edges[-1]


def bin_width(h: Mapping[str, Any]) -> float:
    lo, hi = h["range"]
    return (hi - lo) / len(h["counts"])


def _decimals(width: float) -> int:
    return max(0, min(4, -math.floor(math.log10(width / 2)))) if width > 0 else 3


DETECTION_CELL = "uapgd"
"""The transfer attack whose ZePAD cell docs/fidelity.md examines in detail."""


def why_gap_fails(board: Board | None) -> str:
    """On one cell (ZePAD under :data:`DETECTION_CELL`): what the attack does to the branches' agreement
    and to the gap, from the stored metrics and score histograms (40 bins: means and medians to within
    half a bin)."""
    if board is None:
        return not_run("fidelity_attacks_offline")
    _, rows = _detection_rows(board)
    zepad = _zepad(rows)
    mine = [r for r in rows if r["defense"] == zepad and r["attack"] == DETECTION_CELL]
    if not mine:
        return f"No ZePAD `{DETECTION_CELL}` detection cell on the board."
    seeds = sorted({r["seed"] for r in mine})
    lines = [f"Measured on ZePAD's `{DETECTION_CELL}` cell (seed {', '.join(map(str, seeds))}):", ""]
    one = len(mine) == 1
    clean, adv = (_histogram(mine, f"detection_score_{w}:disagreement") for w in ("clean", "adv"))
    if one and clean and adv:
        a, c = share_from(adv, 0.5), share_from(clean, 0.5)
        verdict = "changes which class" if a > c else "does not change which class"
        lines.append(
            f"- The attack {verdict} the branches agree on: MPAE and BMP disagree on the top-1 class for "
            f"{a:.1f} % of attacked images, against {c:.1f} % of clean ones."
        )
    clean, adv = (_histogram(mine, f"detection_score_{w}:gap") for w in ("clean", "adv"))
    if one and clean and adv:
        d = _decimals(bin_width(clean))
        lines.append(
            f"- The mean gap (MPAE − BMP confidence) moves from ≈ {hist_mean(clean):.{d}f} (clean) to "
            f"≈ {hist_mean(adv):.{d}f} (attacked), from the stored histograms "
            f"(± {bin_width(clean) / 2:.{d}f})."
        )
    tpr, fpr, acc = (stat(mine, m) for m in ("TPR", "FPR", "detection_accuracy"))
    threshold = stat(mine, "threshold")
    if tpr.n and fpr.n:
        lines.append(
            f"- At the paper's threshold ({threshold.text() if threshold.n else 'n/a'}) {tpr.text()} % of "
            f"attacked images are flagged and {fpr.text()} % of clean ones: paper-rule accuracy "
            f"{acc.text()} %; "
            f"at the best held-out threshold the gap reaches {stat(mine, 'accuracy:gap').text()} %."
        )
    clean, adv = (_histogram(mine, f"detection_score_{w}:js") for w in ("clean", "adv"))
    if one and clean and adv:
        d = _decimals(bin_width(clean))
        rises = "rises" if hist_median(adv) > hist_median(clean) else "does not rise"
        lines.append(
            f"- A divergence between the two predicted distributions sees the class change: its median "
            f"{rises} from ≈ {hist_median(clean):.{d}f} to ≈ {hist_median(adv):.{d}f} nats (stored "
            f"histograms, ± {bin_width(clean) / 2:.{d}f}); AUROC:js {stat(mine, 'AUROC:js').text()} %."
        )
    return "\n".join(lines)


def other_scores(board: Board | None, level: float = 70.0) -> str:
    """Which attacks the other scores detect at ``level`` % held-out accuracy, the undefended model's
    entropy beside ZePAD's, and the control's detection rates."""
    if board is None:
        return not_run("fidelity_attacks_offline")
    _, rows = _detection_rows(board)
    none, zepad = baseline(rows), _zepad(rows)
    if zepad is None:
        return ""
    attacks = ids(rows, "attack", role="attack")
    controls = ids(rows, "attack", role="control")
    lines = []
    for score in ("disagreement", "entropy"):
        reached = [
            f"{a} ({stat(rows, f'accuracy:{score}', defense=zepad, attack=a).text()} %)"
            for a in attacks
            if stat(rows, f"accuracy:{score}", defense=zepad, attack=a).mean >= level
        ]
        lines.append(
            f"- `{score}` reaches ≥ {level:g} % held-out accuracy on ZePAD "
            + (f"on {listing(reached)}." if reached else "on no attack.")
        )
    if none is not None:
        pairs = [
            (
                a,
                stat(rows, "accuracy:entropy", defense=none, attack=a),
                stat(rows, "accuracy:entropy", defense=zepad, attack=a),
            )
            for a in attacks
        ]
        higher = [a for a, n, z in pairs if below(n, z)]
        lines.append(
            f"- `entropy` on the undefended model: held-out accuracy {span(n for _, n, _ in pairs)}, on "
            f"ZePAD {span(z for _, _, z in pairs)}; ZePAD's is higher on {len(higher)} of {len(pairs)} "
            f"attacks{untested(s for _, n, z in pairs for s in (n, z))}; entropy needs one branch only: it "
            "measures the model's own uncertainty."
        )
    for control in controls:
        ra = stat(rows, "RA", defense=none, attack=control) if none else Stat(())
        js = stat(rows, "AUROC:js", defense=zepad, attack=control)
        lines.append(
            f"- The equal-budget control `{control}` is flagged too (AUROC:js {js.text()} % on ZePAD) and "
            f"changes predictions (RA of {none} {ra.text()} %): a detector of perturbed images is not "
            "specific to DAEs; compare each attack's AUROC with the control's."
        )
    return "\n".join(lines)


def branches_across_tasks(board: Board | None, attack_plugin: str = "advencoder") -> str:
    """``cross_task_offline``: per downstream task, each branch's BA, RA and attacked-image confidence
    (ZePAD, per D_f), the fused RA and the undefended RA, under one attack."""
    if board is None:
        return not_run("cross_task_offline")
    rows = [r for r in board.ok if r.get("config", {}).get("attack_plugin", r["attack"]) == attack_plugin]
    zepad, none = _zepad(rows), baseline(rows)
    if zepad is None:
        return f"No ZePAD rows under `{attack_plugin}` on the board."
    mine = [r for r in rows if r["defense"] == zepad]
    names = [
        m.split(":", 1)[1] for m in sorted({k for r in mine for k in r["metrics"] if k.startswith("RA:")})
    ]
    seeds = sorted({r["seed"] for r in mine})
    lines = [
        f"Under `{attack_plugin}`, mean ± std over seeds {', '.join(map(str, seeds))}; confidence = mean "
        "max-softmax probability on attacked images (×100).",
        "",
        "| D_f | task | branch | BA | RA | confidence, attacked |",
        "|---|---|---|---|---|---|",
    ]
    readings = []
    for tuning in ids(mine, "tuning"):
        for task in ids(mine, "task", tuning=tuning):
            cell = [r for r in mine if r["tuning"] == tuning and r["task"] == task]
            undefended = [
                r for r in rows if r["defense"] == none and r["tuning"] == tuning and r["task"] == task
            ]
            lines.append(
                f"| {tuning} | {task} | none (undefended) | {stat(undefended, 'BA').text()} | "
                f"{stat(undefended, 'RA').text()} | |"
            )
            per = {}
            for branch in names:
                ra, conf = stat(cell, f"RA:{branch}"), stat(cell, f"conf_adv:{branch}")
                if not ra.n:
                    continue
                per[branch] = (ra, conf)
                confidence = Stat(tuple(100 * v for v in conf.values)).text() if conf.n else "n/a"
                lines.append(
                    f"| {tuning} | {task} | {branch} | {stat(cell, f'BA:{branch}').text()} | {ra.text()} | "
                    f"{confidence} |"
                )
            fused = stat(cell, "RA")
            lines.append(f"| {tuning} | {task} | **fused** | {stat(cell, 'BA').text()} | {fused.text()} | |")
            if per:
                weakest = min(per, key=lambda b: per[b][0].mean)
                surest = max(per, key=lambda b: per[b][1].mean if per[b][1].n else -1)
                best = max(per, key=lambda b: per[b][0].mean)
                readings.append(
                    f"- D_f {tuning}, `{task}`: the most fooled branch is {weakest} "
                    f"(RA {per[weakest][0].text()})"
                    + (
                        ", and it is also the most confident on attacked images"
                        if weakest == surest
                        else f"; the most confident on attacked images is {surest}"
                    )
                    + f". Fused RA {fused.text()} against the best branch's ({best}) "
                    f"{per[best][0].text()} and the undefended {stat(undefended, 'RA').text()}"
                    + (
                        ": the fusion does not keep the best branch's robustness."
                        if below(fused, per[best][0])
                        else "."
                    )
                )
    return "\n".join([*lines, "", *readings])
