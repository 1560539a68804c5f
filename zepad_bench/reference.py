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
ResNet18) are listed under the table when the suite differs. Ours is the mean over seeds.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zepad_bench.nn.encoder_choices import SSL_METHODS as METHODS
from zepad_bench.suite import Suite, parse_eps

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
    params: dict[str, Any] = {}
    if suite.registry is not None and spec.plugin in suite.registry.kind("defenses"):
        signature = inspect.signature(suite.registry.get("defenses", spec.plugin).__init__)
        params = {
            n: p.default for n, p in signature.parameters.items() if p.default is not inspect.Parameter.empty
        }
    params.update(spec.params)
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


def comparisons(suite: Suite, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (paper cell, our cell without seed — and without attack when the paper has none)."""
    candidates: dict[tuple[str, str | None], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for row in rows:  # indexed by (defense, D_d), and by (defense, None) for cells without a D_d
        keys = result_keys(suite, row)
        for downstream in (keys["downstream"], None):
            candidates.setdefault((keys["defense"], downstream), []).append((row, keys))
    out = []
    for cell in paper_cells():
        groups: dict[tuple, list[float]] = {}
        for row, keys in candidates.get((cell.keys["defense"], cell.keys.get("downstream")), []):
            value = _number(row["metrics"].get(cell.metric))
            if value is None or not matches(cell, keys):
                continue
            ids = tuple(row[c] for c in ("victim", "scenario", "eps", "defense", "tuning", "task"))
            attack = row["attack"] if cell.keys.get("attack") is not None else "(any)"
            groups.setdefault(ids + (attack,), []).append(value)
        for (victim, scenario, eps, defense, tuning, task, attack), values in groups.items():
            mean = sum(values) / len(values)
            std = (
                (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
            )
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
                    "ours": mean,
                    "ours_std": std,
                    "n": len(values),
                    "paper": cell.value,
                    "difference": mean - cell.value,
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
    return notes


def reference_section(suite: Suite, rows: list[dict[str, Any]]) -> list[str]:
    """Markdown sections: our numbers beside the paper's, with the difference (ours − paper)."""
    import pandas as pd

    lines = [
        "",
        "## Paper reference (ZePAD)",
        "",
        "Ours (mean over seeds) beside the matching cells of the paper's tables; difference = ours − paper. "
        "Matching: victim/auxiliary SSL method, D_p, D_f, D_d, scenario, attack, ε, defense and its "
        "settings, task and metric (see `zepad_bench/reference.py`).",
    ]
    found = comparisons(suite, rows)
    if not found:
        lines += [
            "",
            "No result of this suite matches a paper cell: the paper uses CIFAR10/ImageNet-pretrained "
            "solo-learn encoders and the datasets cifar10, stl10, animals10, gtsrb, imagenet20, svhn.",
        ]
    else:
        for c in found:
            c["ours"] = f"{c['ours']:.2f}" + ("" if c["ours_std"] is None else f" ± {c['ours_std']:.2f}")
            c["eps"] = f"{round(c['eps'] * 255, 2):g}/255"
            c["paper"], c["difference"] = f"{c['paper']:.2f}", f"{c['difference']:+.2f}"
        columns = [
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
            "ours",
            "paper",
            "difference",
        ]
        table = pd.DataFrame(found)[columns].to_markdown(index=False, disable_numparse=True)
        lines += ["", table]
    differences = setting_differences(suite)
    if differences:
        lines += ["", "Settings that differ from the paper's: " + "; ".join(differences) + "."]
    return ["\n".join(lines)]
