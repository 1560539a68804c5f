"""The deviations table: each deviation from a protocol preset alone, its effect over seeds.

A pure function of stored rows (``ResultStore.rows``), no plugin or torch import. Each row's
``config`` names its defense plugin and resolved params (``defense_plugin``, ``defense_params``,
written by the runner). Among the defenses of one plugin and one ``protocol``, the *preset* is
the table that sets no deviation parameter (they default to ``None``: "the preset's value"); a
*deviation* is a table that equals a preset except for parameters the preset leaves at ``None``
and it sets explicitly (``protocol = "authors"`` with ``freeze_bn = true``: "freeze_bn = true
from authors"). Its effect is Δ = deviation − preset per seed, on the same victim, scenario,
attack, ε, D_f and task; an entry is the mean ± sample std (n − 1) of those per-seed Δs. The two
presets of a plugin side by side give the whole preset's effect (``protocol = authors`` from
``corrected``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

CELL_IDS = ("victim", "scenario", "eps", "tuning", "task", "seed")
WHOLE_PRESET = "protocol = authors (every switch)"


def _value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _defenses(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Defense id → (plugin, resolved params), for the defenses whose params name a ``protocol``."""
    out = {}
    for row in rows:
        config = row.get("config", {})
        params = config.get("defense_params")
        if params is not None and "protocol" in params:
            out[row["defense"]] = (config["defense_plugin"], params)
    return out


def _switches(preset: Mapping[str, Any], other: Mapping[str, Any]) -> dict[str, Any] | None:
    """The parameters ``other`` sets where ``preset`` leaves the preset's value (``None``); ``None`` when
    they differ anywhere else (then ``other`` is no single-preset deviation of ``preset``)."""
    if preset.keys() != other.keys():
        return None
    differing = {k for k in preset if preset[k] != other[k]}
    if not differing or any(preset[k] is not None for k in differing):
        return None
    return {k: other[k] for k in sorted(differing)}


def deviation_pairs(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every deviation among the rows' defenses: its id, its preset's id, plugin, base protocol, label."""
    defenses = _defenses(rows)
    presets = {
        d: (plugin, params)
        for d, (plugin, params) in defenses.items()
        if not any(
            _switches(p, params) for e, (pl, p) in defenses.items() if e != d and pl == plugin
        )  # a preset is no deviation of another table
    }
    pairs = []
    for d, (plugin, params) in defenses.items():
        for p, (preset_plugin, preset) in presets.items():
            switches = _switches(preset, params) if preset_plugin == plugin and p != d else None
            if switches:
                label = ", ".join(f"{k} = {_value(v)}" for k, v in switches.items())
                pairs.append(
                    {"defense": d, "preset": p, "plugin": plugin, "from": preset["protocol"], "label": label}
                )
    for d, (plugin, params) in presets.items():  # the whole preset: authors beside corrected
        if params["protocol"] != "authors":
            continue
        for p, (preset_plugin, preset) in presets.items():
            same = {k for k in params if params[k] != preset.get(k)} == {"protocol"}
            if preset_plugin == plugin and preset["protocol"] == "corrected" and same:
                pairs.append(
                    {"defense": d, "preset": p, "plugin": plugin, "from": "corrected", "label": WHOLE_PRESET}
                )
    return sorted(pairs, key=lambda e: (e["plugin"], e["from"], e["label"] != WHOLE_PRESET, e["label"]))


def _spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def deviation_effects(
    rows: Iterable[Mapping[str, Any]], metrics: tuple[str, ...] = ("BA", "RA")
) -> list[dict]:
    """Per deviation, task and metric (``BA``: clean, one per task; ``RA``: per attack): the per-seed Δs
    (deviation − preset), their mean and sample std (``None`` for one seed) and the attack's role."""
    rows = list(rows)
    index: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        index[(row["defense"], row["attack"], *(row[c] for c in CELL_IDS))] = row
    out = []
    for pair in deviation_pairs(rows):
        deltas: dict[tuple, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
        roles = {}
        for row in rows:
            if row["defense"] != pair["defense"]:
                continue
            reference = index.get((pair["preset"], row["attack"], *(row[c] for c in CELL_IDS)))
            if reference is None:
                continue
            roles[row["attack"]] = row.get("config", {}).get("attack_role", "attack")
            for metric in metrics:
                ours, theirs = row["metrics"].get(metric), reference["metrics"].get(metric)
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ours, theirs)):
                    continue
                attack = None if metric == "BA" else row["attack"]  # BA does not depend on the attack
                deltas[(row["task"], metric, attack)][row["seed"]].append(ours - theirs)
        for (task, metric, attack), per_seed in deltas.items():
            values = [statistics.fmean(v) for _, v in sorted(per_seed.items())]
            mean, std = _spread(values)
            out.append(
                {
                    **pair,
                    "task": task,
                    "metric": metric,
                    "attack": attack,
                    "attack_role": roles.get(attack) if attack else None,
                    "deltas": values,
                    "seeds": sorted(per_seed),
                    "mean": mean,
                    "std": std,
                }
            )
    return out


def _entry(effect: Mapping[str, Any] | None) -> str:
    if effect is None:
        return ""
    if effect["std"] is None:
        return f"{effect['mean']:+.2f} (1 seed)"
    return f"{effect['mean']:+.2f} ± {effect['std']:.2f}"


def deviations_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """The deviations table(s), one per task: deviation → ΔBA and ΔRA per attack, mean ± std over seeds."""
    effects = deviation_effects(rows)
    if not effects:
        return "No deviation of a protocol preset among these results."
    blocks = []
    for task in dict.fromkeys(e["task"] for e in effects):
        mine = [e for e in effects if e["task"] == task]
        attacks = list(dict.fromkeys(e["attack"] for e in mine if e["attack"] is not None))
        columns = ["ΔBA"] + [
            f"ΔRA {a}"
            + (" (control)" if any(e["attack_role"] == "control" for e in mine if e["attack"] == a) else "")
            for a in attacks
        ]
        lines = [
            f"#### task {task}",
            "",
            "| defense | from | deviation | " + " | ".join(columns) + " | seeds |",
            "|" + "---|" * (len(columns) + 4),
        ]
        keys = list(dict.fromkeys((e["plugin"], e["from"], e["label"]) for e in mine))
        for plugin, base, label in keys:
            cells = {
                (e["metric"], e["attack"]): e
                for e in mine
                if (e["plugin"], e["from"], e["label"]) == (plugin, base, label)
            }
            entries = [_entry(cells.get(("BA", None)))] + [_entry(cells.get(("RA", a))) for a in attacks]
            seeds = max((len(e["seeds"]) for e in cells.values()), default=0)
            lines.append(f"| {plugin} | {base} | {label} | " + " | ".join(entries) + f" | {seeds} |")
        blocks.append("\n".join(lines))
    legend = (
        "Δ = the deviation's result − its preset's (percentage points), per seed on the same cells; "
        "mean ± sample std over seeds. *from*: the preset the deviation departs from."
    )
    return "\n\n".join(blocks + [legend])
