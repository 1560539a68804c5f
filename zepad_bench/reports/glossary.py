"""What a board's columns, marks and threat models mean: metric lines from the tasks' own
descriptions (stored with the results), everything else the host's terms."""

from __future__ import annotations

from typing import Any

import pandas as pd

from zepad_bench.reports.data import describe
from zepad_bench.reports.flags import KINDS
from zepad_bench.reports.frame import ID_COLUMNS, ROLE_COLUMNS, SCENARIO_SHORT, attack_columns, eps_text
from zepad_bench.reports.tables import WORST

THREAT_MODELS = {
    "semi-black-box": "the attacker has the victim's public pre-trained encoder and unlabeled images; it "
    "knows nothing of the defense, the downstream heads or the labels (transfer DAEs)",
    "white-box": "as semi-black-box, with the victim's public auxiliary encoders as well (the attack is "
    "fitted on all of them)",
    "defense-aware": "the attacker has the defended model's encoders (every branch) and fits its attack on "
    "them; still no heads and no labels",
    "adaptive": "the attacker has everything the defender deploys (branch encoders, the task's heads, "
    "the defense's fusion) and attacks each test image through that whole pipeline, with its label",
}
"""Who knows what, per scenario (``zepad_bench.interfaces.SCENARIOS``)."""
UNDESCRIBED = "not described by its task"
MARKS = (
    "**bold**: the best defense in the column; ≈: within noise of it",
    "°: a control (an equal-budget reference that is not an attack; left out of every worst case)",
    "failed: every seed of that entry failed (reasons under *Failed cells*); pending: no result yet; "
    "(k failed) / (k pending) after a number: k seeds are missing from it",
    "†: a stored row whose inputs changed since it was computed (under *Outdated rows*); re-run the suite",
)


def metric_lines(part: pd.DataFrame, described: list[dict[str, Any]]) -> list[str]:
    """One line per metric (or metric family) present in a task's rows, in the task's order, then any
    the task did not describe."""
    present = [c for c in part.columns if c not in ID_COLUMNS + ROLE_COLUMNS and part[c].notna().any()]
    shown: dict[str, dict[str, Any] | None] = {}
    for metric in present:
        info = describe(metric, described)
        shown.setdefault(info["name"] if info else metric, info)
    order = {info["name"]: i for i, info in enumerate(described)}
    lines = []
    for name, info in sorted(shown.items(), key=lambda item: order.get(item[0], len(order))):
        if info is None:
            continue
        notes = [info["unit"]] if info["unit"] else []
        notes += [] if info["higher_is_better"] else ["lower is better"]
        notes += [] if info["report"] else ["in the data only"]
        note = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"- **{name}**{note}: {info['definition']}")
    undescribed = [name for name, info in shown.items() if info is None]
    if undescribed:
        lines.append(f"- in the data, {UNDESCRIBED}: {', '.join(undescribed)}")
    return lines


def host_lines() -> list[str]:
    """The columns and marks the board adds (worst cases, summary groups, marks)."""
    lines = [
        f"- **{WORST}**: per seed, the worst value over every attack at the table's ε (controls excluded), "
        "then mean ± std over seeds; never a minimum across budgets",
        "- **transfer / defense-aware / adaptive ε** (summary): the worst RA over that threat model's "
        "attacks at that ε, per seed, then mean ± std",
        "- **flags** (summary): sanity flags fired on the defense (*Sanity flags*), failed and pending cells",
    ]
    return lines + [f"- {mark}" for mark in MARKS]


def legend(frame: pd.DataFrame) -> list[str]:
    """Every attack column: its label, plugin, threat model, role and budgets."""
    rows = []
    for column in attack_columns(frame):
        at = frame[(frame["attack"] == column.attack) & (frame["scenario"] == column.scenario)]
        budgets = ", ".join(eps_text(e) for e in sorted(at["eps"].unique()))
        label = column.label + ("°" if column.control else "")
        rows.append({"column": label, "plugin": column.plugin, "threat model": column.scenario, "ε": budgets})
    short = ", ".join(f"{v} = {k}" for k, v in SCENARIO_SHORT.items())
    return [
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
        f"Threat models in labels: {short}.",
    ]


def threat_model_lines(frame: pd.DataFrame, surrogates: dict[str, str]) -> list[str]:
    """Who knows what in each scenario of the board (with the attacker's surrogates where it has them)."""
    lines = []
    for scenario in dict.fromkeys(frame["scenario"]):
        text = THREAT_MODELS.get(scenario, "a scenario this zepad-bench does not describe")
        extra = f" (here fitted on: {surrogates[scenario]})" if surrogates.get(scenario) else ""
        lines.append(f"- **{scenario}**: {text}{extra}")
    return lines


def flag_legend() -> list[str]:
    return [f"- `{kind}`: {text}" for kind, text in KINDS.items()]
