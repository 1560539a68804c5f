"""The deviations table: each deviation from a protocol preset alone, its effect over seeds.

A pure function of stored rows (``ResultStore.rows``), no plugin or torch import. Each row's
``config`` names its defense plugin, the parameters its suite table gives (``defense_given``) and
every resolved one (``defense_params``, presets filled in), written by the runner. Among the
defenses of one plugin and one ``protocol``, a *deviation* of a *preset* table differs from it, in
resolved parameters, only where it gives parameters the preset does not (``protocol = "authors"``
with ``freeze_bn = true``: "freeze_bn = true from authors"); a preset is a table that is no
deviation of another. The effect is Δ = deviation − preset per seed, on
the same victim, scenario, attack, ε, D_f and task; an entry is the mean ± sample std (n − 1) of
those per-seed Δs. The two presets of a plugin, alike but for ``protocol``, give the whole preset's
effect (``protocol = authors`` from ``corrected``).
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


def _defenses(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    """Defense id → (plugin, given params, resolved params), for defenses whose params name a ``protocol``."""
    out = {}
    for row in rows:
        config = row.get("config", {})
        params = config.get("defense_params")
        if params is not None and "protocol" in params:
            out[row["defense"]] = (config["defense_plugin"], config.get("defense_given", {}), params)
    return out


def _switches(preset: tuple, other: tuple) -> dict[str, Any] | None:
    """What ``other`` (plugin, given, resolved) sets beyond ``preset``, when it is a deviation of it."""
    (plugin, given, params), (other_plugin, other_given, other_params) = preset, other
    if plugin != other_plugin or params["protocol"] != other_params["protocol"]:
        return None
    extra = {k: other_given[k] for k in sorted(other_given) if k not in given}
    changed = {k for k in {*params, *other_params} if params.get(k) != other_params.get(k)}
    return extra if changed and changed <= set(extra) else None


def deviation_pairs(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every deviation among the rows' defenses: its id, its preset's id, plugin, base protocol, label."""
    defenses = _defenses(rows)
    presets = {
        d: table
        for d, table in defenses.items()
        if not any(_switches(other, table) for e, other in defenses.items() if e != d)
    }
    pairs = []
    for d, table in defenses.items():
        for p, preset in presets.items():
            switches = _switches(preset, table) if p != d else None
            if switches:
                label = ", ".join(f"{k} = {_value(v)}" for k, v in switches.items())
                pairs.append(
                    {
                        "defense": d,
                        "preset": p,
                        "plugin": table[0],
                        "from": preset[2]["protocol"],
                        "label": label,
                    }
                )
    for d, (plugin, given, params) in presets.items():  # the whole preset: authors beside corrected
        for p, (other_plugin, other_given, other_params) in presets.items():
            alike = {k: v for k, v in given.items() if k != "protocol"} == {
                k: v for k, v in other_given.items() if k != "protocol"
            }
            if (params["protocol"], other_params["protocol"]) == ("authors", "corrected") and alike:
                if plugin == other_plugin:
                    pairs.append(
                        {
                            "defense": d,
                            "preset": p,
                            "plugin": plugin,
                            "from": "corrected",
                            "label": WHOLE_PRESET,
                        }
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
