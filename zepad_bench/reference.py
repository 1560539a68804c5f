"""The ZePAD paper's published numbers beside ours (``zepad-bench leaderboard SUITE --reference``).

``reference/paper_tables.json`` holds every number of the paper's Tables 1–7 and S1–S9 with its
table id, row and column labels and settings (its ``format`` field says how). Matching a stored
result to a paper cell compares, wherever the paper cell states them:

- ``victim`` / ``auxiliary``: the SSL method of the victim encoder / of its first auxiliary encoder:
  the encoder table's ``method`` param, else a method name among the tokens of the encoder id and
  its string params (e.g. a checkpoint path ``zoo/cifar10/byol-cifar10-ep=999.ckpt``);
- ``pretrain`` (D_p): the plugin of the encoder's ``data`` dataset, else a dataset token of the
  id/params (``cifar10``, ``imagenet``/``imagenet100`` → ``imagenet``);
- ``tuning`` (D_f) / ``downstream`` (D_d): the plugins of the cell's tuning and task datasets;
- ``scenario``, ``eps`` (exact), ``attack`` (plugin; a paper cell without attack, e.g. BA, matches
  every attack and our values are averaged over them), ``task`` (plugin) and the metric name;
- ``defense`` (plugin) and ``defense_params``: the paper's settings of that defense (for ZePAD the
  paper's defaults — λ 20, RFDM, one auxiliary encoder, … — unless the row says otherwise) must
  equal the suite's values (the params given, else the plugin's defaults; ZePAD's
  ``num_auxiliaries`` defaults to the victim's number of auxiliary encoders).

Settings the paper fixes but a match does not require (64×64 inputs, CIFAR10 attacker data,
ResNet18, the authors' encoder stems) are listed under the table when the suite differs. Ours is the
mean over seeds.

Protocols: the paper's numbers were made by the authors' code. Each of our rows names the preset its
defense ran (``protocol``, with any deviation parameter set against it) and whether its attack
clamped x + δ; rows that match the authors' (``protocol = "authors"``, ``clamp = false``; or no
tuned defense) and rows that do not are printed as two tables, the second labelled as no
reproduction gap. Without stored results (or without the data to key them) the paper's numbers for
the suite's cells print alone.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zepad_bench.nn.encoder_choices import SSL_METHODS as METHODS
from zepad_bench.params import options_model, resolved
from zepad_bench.reports.data import IDENTITY
from zepad_bench.suite import Cell, Suite, parse_eps

TABLES_PATH = Path(__file__).parent / "reference" / "paper_tables.json"
MATCH_KEYS = ("victim", "auxiliary", "pretrain", "tuning", "downstream", "scenario", "attack", "task")
ALIASES = {
    "mocov2+": "mocov2plus",
    "moco2+": "mocov2plus",
    "mocov2": "mocov2plus",
    "moco3": "mocov3",
    "imagenet100": "imagenet",
}
PRETRAIN_SETS = ("cifar10", "imagenet")
STEMMED = ("resnet18", "resnet18-imagenet", "resnet50")  # architectures with an authors' stem


@dataclass(frozen=True)
class PaperCell:
    """One transcribed number with the keys it is matched on."""

    table: str
    row: str
    column: str
    keys: dict[str, Any]
    value: float

    @property
    def metric(self) -> str:
        return self.keys["metric"]


@functools.lru_cache(maxsize=1)
def load_tables() -> dict[str, Any]:
    """The transcribed tables (``paper_tables.json``)."""
    return json.loads(TABLES_PATH.read_text(encoding="utf-8"))


def paper_cells(doc: dict[str, Any] | None = None) -> list[PaperCell]:
    """Every number of every table except averages and Δ rows, with settings ∪ row ∪ column keys."""
    doc = doc or load_tables()
    cells = []
    for table in doc["tables"]:
        for row in table["rows"]:
            if "delta" in row["keys"]:
                continue
            for column, value in zip(table["columns"], row["values"]):
                if column.get("average"):
                    continue
                keys = {
                    **table["settings"],
                    **row["keys"],
                    **{k: v for k, v in column.items() if k != "label"},
                }
                keys.setdefault("metric", table["metric"])
                defaults = doc["defense_defaults"].get(keys.get("defense"), {})
                keys["defense_params"] = {**defaults, **keys.get("defense_params", {})}
                label = " / ".join(str(v) for v in row["labels"].values())
                cells.append(PaperCell(table["id"], label, column["label"], keys, value))
    return cells


def _normalise(name: str) -> str:
    token = re.sub(r"[^a-z0-9+]", "", name.lower())
    return ALIASES.get(token, token)


def _tokens(id_: str, params: dict[str, Any]) -> list[str]:
    text = " ".join([id_] + [str(v) for v in params.values() if isinstance(v, str)])
    return [_normalise(t) for t in re.split(r"[^A-Za-z0-9+]+", text) if t]


def encoder_method(suite: Suite, encoder_id: str) -> str | None:
    """The SSL method of an encoder table (``method`` param, else a method token of its id/params)."""
    spec = suite.spec("encoders", encoder_id)
    if isinstance(spec.params.get("method"), str):
        return _normalise(spec.params["method"])
    return next((t for t in _tokens(encoder_id, spec.params) if t in METHODS or t == "clip"), None)


def encoder_pretraining(suite: Suite, encoder_id: str) -> str | None:
    """D_p of an encoder: its ``data`` dataset's plugin, else a pretraining-set token of its id/params."""
    spec = suite.spec("encoders", encoder_id)
    if "data" in spec.reserved:
        return suite.spec("datasets", spec.reserved["data"]).plugin
    return next((t for t in _tokens(encoder_id, spec.params) if t in PRETRAIN_SETS), None)


def defense_params(suite: Suite, defense_id: str, victim: str) -> dict[str, Any]:
    """The suite's defense params over the plugin's defaults (ZePAD ``num_auxiliaries`` resolved)."""
    spec = suite.spec("defenses", defense_id)
    params = dict(spec.params)
    if suite.registry is not None and spec.plugin in suite.registry.kind("defenses"):
        params = resolved(suite.registry.get("defenses", spec.plugin), spec.params)
    if "num_auxiliaries" in params and params["num_auxiliaries"] is None:
        params["num_auxiliaries"] = len(suite.auxiliaries(victim))
    return params


def result_keys(suite: Suite, row: dict[str, Any]) -> dict[str, Any]:
    """The keys of a stored result row in the paper's vocabulary."""
    auxiliaries = suite.auxiliaries(row["victim"])
    return {
        "victim": encoder_method(suite, row["victim"]),
        "auxiliary": encoder_method(suite, auxiliaries[0]) if auxiliaries else None,
        "pretrain": encoder_pretraining(suite, row["victim"]),
        "tuning": suite.spec("datasets", row["tuning"]).plugin,
        "downstream": suite.spec("datasets", row["task_data"]).plugin,
        "scenario": row["scenario"],
        "attack": suite.spec("attacks", row["attack"]).plugin,
        "eps": row["eps"],
        "defense": suite.spec("defenses", row["defense"]).plugin,
        "defense_params": defense_params(suite, row["defense"], row["victim"]),
        "task": suite.spec("tasks", row["task"]).plugin,
    }


def matches(cell: PaperCell, ours: dict[str, Any]) -> bool:
    """Whether our keys agree with every key the paper cell states (see the module docstring)."""
    paper = cell.keys
    if paper.get("defense") != ours["defense"]:
        return False
    for key in MATCH_KEYS:
        if paper.get(key) is not None and paper[key] != ours[key]:
            return False
    if paper.get("eps") is not None and abs(parse_eps(paper["eps"]) - ours["eps"]) > 1e-9:
        return False
    return all(
        k in ours["defense_params"] and ours["defense_params"][k] == v
        for k, v in paper["defense_params"].items()
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def defense_protocol(suite: Suite, defense_id: str) -> str | None:
    """The protocol preset a defense table runs — ``"authors"``, ``"corrected"``, with any deviation
    parameter set against it (``"authors with freeze_bn = True"``) — or ``None`` for a defense without
    presets (nothing tuned, e.g. ``none``)."""
    spec = suite.spec("defenses", defense_id)
    if suite.registry is None:
        return None
    model = options_model(suite.registry.get("defenses", spec.plugin))
    presets = model.presets.get("protocol")
    if not presets:
        return None
    protocol = spec.params.get("protocol", model.model_fields["protocol"].default)
    preset = presets[protocol]
    switches = [f"{k} = {v}" for k, v in spec.params.items() if k in preset and v != preset[k]]
    return protocol + (f" with {', '.join(switches)}" if switches else "")


def attack_clamps(suite: Suite, attack_id: str) -> bool:
    """Whether the attack table keeps x + δ in [0, 1] (ours) rather than unclamped (the authors' code)."""
    return bool(suite.spec("attacks", attack_id).params.get("clamp", True))


def _items(
    suite: Suite, rows: list[dict[str, Any]], cells: list[Cell] | None
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """(cell ids, metrics) of every stored row, then of every cell without a row (metrics ``None``)."""
    items = [(row, row["metrics"]) for row in rows]
    stored = {tuple(row[c] for c in IDENTITY) for row in rows}
    for cell in cells or ():
        if tuple(getattr(cell, c) for c in IDENTITY) not in stored:
            items.append(
                ({**cell.__dict__, "task_data": suite.spec("tasks", cell.task).reserved["data"]}, None)
            )
    return items


def comparisons(
    suite: Suite, rows: list[dict[str, Any]], cells: list[Cell] | None = None
) -> list[dict[str, Any]]:
    """One entry per (paper cell, our cell without seed — and without attack when the paper has none).

    ``cells``: also the suite's cells that have no stored row (``ours`` is then ``None``, ``n`` 0), so the
    paper's numbers print before anything ran. Every entry names the defense's protocol preset and
    whether the attack clamped x + δ (see :func:`defense_protocol`, :func:`attack_clamps`).
    """
    candidates: dict[tuple[str, str | None], list[tuple[dict[str, Any], dict[str, Any], Any]]] = {}
    for ids, metrics in _items(suite, rows, cells):  # indexed by (defense, D_d) and (defense, None)
        keys = result_keys(suite, ids)
        for downstream in (keys["downstream"], None):
            candidates.setdefault((keys["defense"], downstream), []).append((ids, keys, metrics))
    out = []
    for cell in paper_cells():
        groups: dict[tuple, list[float]] = {}
        for ids, keys, metrics in candidates.get((cell.keys["defense"], cell.keys.get("downstream")), []):
            if not matches(cell, keys):
                continue
            value = None if metrics is None else _number(metrics.get(cell.metric))
            if metrics is not None and value is None:
                continue  # stored, but without this metric
            group = tuple(ids[c] for c in ("victim", "scenario", "eps", "defense", "tuning", "task"))
            group += (ids["attack"] if cell.keys.get("attack") is not None else "(any)",)
            groups.setdefault(group, [])
            if value is not None:
                groups[group].append(value)
        for (victim, scenario, eps, defense, tuning, task, attack), values in groups.items():
            mean = sum(values) / len(values) if values else None
            std = statistics.stdev(values) if len(values) > 1 else None
            attacks = [attack] if attack != "(any)" else suite.grid.get("attacks", [])
            out.append(
                {
                    "table": cell.table,
                    "row": cell.row,
                    "column": cell.column,
                    "metric": cell.metric,
                    "victim": victim,
                    "scenario": scenario,
                    "eps": eps,
                    "defense": defense,
                    "tuning": tuning,
                    "task": task,
                    "attack": attack,
                    "protocol": defense_protocol(suite, defense),
                    "clamped": any(attack_clamps(suite, a) for a in attacks),
                    "ours": mean,
                    "ours_std": std,
                    "n": len(values),
                    "paper": cell.value,
                    "difference": None if mean is None else mean - cell.value,
                }
            )
    return out


def setting_differences(suite: Suite) -> list[str]:
    """Paper settings this suite does not share (not required for a match, but they change numbers)."""
    notes = []
    if suite.image_size != 64:
        notes.append(f"inputs {suite.image_size}×{suite.image_size} (paper: 64×64)")
    if suite.attacker_data is not None and suite.spec("datasets", suite.attacker_data).plugin != "cifar10":
        notes.append(f"attacker data {suite.spec('datasets', suite.attacker_data).plugin} (paper: cifar10)")
    archs = {str(s.params["arch"]) for s in suite.tables["encoders"].values() if "arch" in s.params}
    if archs - {"resnet18", "resnet18-imagenet"}:
        notes.append(f"encoder architectures {', '.join(sorted(archs))} (paper: ResNet18)")
    standard = [
        id_
        for id_, s in suite.tables["encoders"].items()
        if s.params.get("arch") in STEMMED and (s.params.get("arch_params") or {}).get("stem") != "authors"
    ]
    if standard:
        notes.append(
            f'encoders {", ".join(standard)} with the standard stem (the authors\': `stem = "authors"`)'
        )
    return notes


SAME = "Same protocol as the paper's numbers"
OTHER = "Another protocol beside the paper's numbers"
COLUMNS = (
    "table",
    "row",
    "column",
    "victim",
    "scenario",
    "attack",
    "eps",
    "defense",
    "tuning",
    "task",
    "metric",
)


def _protocol_label(entry: dict[str, Any]) -> str:
    defense = entry["protocol"] or "— (no preset)"
    return f"{defense}; x + δ {'clamped' if entry['clamped'] else 'unclamped'}"


def reference_section(suite: Suite, rows: list[dict[str, Any]]) -> list[str]:
    """Markdown sections: the paper's numbers for this suite's cells, ours beside them (mean over
    seeds) where stored, each row naming its protocol. Rows on the authors' protocol (their defense
    preset, unclamped x + δ) and rows on another one (our ``corrected`` preset, a deviation, clamped
    attacks) are two tables: the latter's difference is no reproduction gap and is labelled so."""
    import pandas as pd

    lines = [
        "",
        "## Paper reference (ZePAD)",
        "",
        "**Paper**: the numbers of the ZePAD paper's tables, made by the authors' code "
        "(github.com/Lawliet0o/ZePAD): their training step, RFDM over logits, their BMP-Branch (a public "
        'SimCLR-CIFAR10 checkpoint), unclamped x + δ — `protocol = "authors"` and `clamp = false` here. '
        "**Ours**: mean ± std over seeds of this suite's results; the *protocol* column names the preset "
        "each row's defense ran and whether its DAEs were clamped to [0, 1]. Matching: victim/auxiliary "
        "SSL method, D_p, D_f, D_d, scenario, attack, ε, defense and its settings, task and metric "
        "(`zepad_bench/reference.py`); difference = ours − paper.",
    ]
    found = comparisons(suite, rows, suite.cells() if suite.grid else None)
    if not found:
        lines += [
            "",
            "No result of this suite matches a paper cell: the paper uses CIFAR10/ImageNet-pretrained "
            "solo-learn encoders and the datasets cifar10, stl10, animals10, gtsrb, imagenet20, svhn.",
        ]
    if found and all(c["ours"] is None for c in found):
        lines += ["", "No result of this suite is stored: the paper's numbers alone."]
    same = [c for c in found if c["protocol"] in (None, "authors") and not c["clamped"]]
    other = [c for c in found if c not in same]
    for title, entries, ours, difference in (
        (SAME, same, "ours", "ours − paper"),
        (OTHER, other, "ours (not the paper's protocol)", "ours − paper (protocols differ)"),
    ):
        if not entries:
            continue
        table = []
        for c in entries:
            value = None if c["ours"] is None else f"{c['ours']:.2f}"
            if value is not None and c["ours_std"] is not None:
                value += f" ± {c['ours_std']:.2f}"
            table.append(
                {
                    **{k: c[k] for k in COLUMNS},
                    "eps": f"{round(c['eps'] * 255, 2):g}/255",
                    "protocol": _protocol_label(c),
                    ours: value or "not run",
                    "paper (authors' code)": f"{c['paper']:.2f}",
                    difference: "" if c["difference"] is None else f"{c['difference']:+.2f}",
                }
            )
        note = (
            "These rows ran the authors' protocol: the difference is what remains (scale, data, seeds)."
            if title == SAME
            else "These rows did **not** run the protocol that made the paper's numbers (see *protocol*): "
            "their difference mixes our protocol's corrections with every other difference and is no "
            "reproduction gap (docs/fidelity.md measures each deviation alone)."
        )
        frame = pd.DataFrame(table).to_markdown(index=False, disable_numparse=True)
        lines += ["", f"### {title}", "", note, "", frame]
    differences = setting_differences(suite)
    if differences:
        lines += ["", "Settings that differ from the paper's: " + "; ".join(differences) + "."]
    return ["\n".join(lines)]
