"""Keys come from one place: every artifact the runner stores is under a key the stage graph derives,
and the adaptive key holds everything the attacked pipeline reads."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.cache import content_key
from zepad_bench.runner import Runner
from zepad_bench.stages import STAGE_KINDS
from zepad_bench.suite import load_suite

TABLES = {
    "defenses.zepad": {
        "plugin": "zepad",
        **{"epochs": 1, "steps": 1, "batch_size": 32, "bmp_epochs": 1, "bmp_batch_size": 32},
        "bmp_recipe": {"proj_hidden_dim": 32, "proj_output_dim": 16},
    },
    "tasks.det": {"plugin": "detection", "data": "stripes", "epochs": 2},
    "attacks.adaptive": {
        "plugin": "adaptive",
        **{"scenarios": ["adaptive"], "members": ["apgd-ce", "square"], "apgd_steps": 2, "square_queries": 2},
        **{"samples": 12, "recheck_samples": 4},
    },
    "attacks.aware": {"plugin": "outside-sign", "scenarios": ["defense-aware"]},
}
"""Beside the smoke suite's: a tiny ZePAD, detection, an adaptive and a defense-aware attack."""


def toml(tables: dict[str, dict]) -> str:
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    return "".join(
        f"\n[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in t.items()) for name, t in tables.items()
    )


def suite(tmp_path: Path, precision: str = "fp32", extra: dict[str, dict] | None = None):
    text = SMOKE_SUITE.replace('eps = "16/255"', f'eps = "16/255"\nprecision = "{precision}"')
    text = text.replace("[grid]", toml({**TABLES, **(extra or {})}) + "\n[grid]")
    path = tmp_path / f"keys-{precision}.toml"
    path.write_text(text)
    return load_suite(path, load_registry(["zb_outside_plugin"]))


def stored(workdir: Path) -> dict[str, set[str]]:
    """Kind → keys of the artifacts in ``workdir``; each sidecar's material hashes to its key."""
    found = defaultdict(set)
    for path in (workdir / "artifacts").glob("*/*/*.pt"):
        kind, key = path.parent.parent.name, path.stem
        material = json.loads(path.with_suffix(".json").read_text())
        assert content_key({"stage": kind, **material}) == key, path
        found[kind].add(key)
    return found


def derived(runner: Runner, rows: list[dict], head_params: list[dict]) -> dict[str, set[str]]:
    """Kind → keys the graph derives for the rows' cells: their task stages' closures, features of every
    branch on each of the task's images, and heads of every branch for each of ``head_params``. A cell
    whose task has no adaptive attack ("n/a": detection without a detector) attacks nothing."""
    graph, keys = runner.graph, defaultdict(set)
    cells = {runner.cell_key(c): c for c in runner.suite.cells()}
    for row in rows:
        cell = cells[row["key"]]
        attacked = row["metrics"]["RA"] != "n/a"
        for stage in graph.task(cell).closure():
            if attacked or stage.kind != "adaptive":
                keys[stage.kind].add(stage.key)
        images = ("train", "test", "test_adv") if attacked else ("train", "test")
        for branch in (b["name"] for b in row["config"]["branches"]):
            keys["features"] |= {graph.features(cell, branch, w).key for w in images}
            keys["head"] |= {graph.head(cell, branch, p).key for p in head_params}
    return keys


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_stored_key_is_a_key_the_graph_derives(tmp_path, precision):
    s = suite(tmp_path, precision).with_axes(defenses=["none", "zepad"], tasks=["cls", "det"])
    runner = Runner(s, s.registry, tmp_path / "wd", device="cpu")
    rows = [runner.run_cell(c) for c in s.cells()]
    found = stored(tmp_path / "wd")
    assert set(found) == set(STAGE_KINDS) - {"task"}  # every kind of stage was stored (a task: its row)
    heads = tmp_path.glob("wd/artifacts/head/*/*.json")
    params = list({content_key(p): p for p in (json.loads(h.read_text())["params"] for h in heads)}.values())
    expected = derived(runner, rows, params)
    assert {r["key"] for r in runner.store.rows()} == expected["task"]  # the stored rows: task keys
    for kind, keys in found.items():
        assert keys <= expected[kind], f"{kind}: stored under keys the graph does not derive"
        if kind != "head":  # heads: the graph's derivation over the params the tasks trained with
            assert keys == expected[kind], f"{kind}: the graph derives stages the runner never stored"
    logged = defaultdict(set)
    for run in runner.store.stage_runs():
        logged[run["stage"]].add(run["key"])
    assert logged == found


def adaptive_keys(tmp_path, first: dict, second: dict) -> tuple:
    """(adaptive keys, defense keys, attack keys) of the same adaptive cell under two ZePAD tables whose
    only difference is ``first`` vs ``second``."""
    extra = {
        "defenses.zepad_a": {"plugin": "zepad", **first},
        "defenses.zepad_b": {"plugin": "zepad", **second},
    }
    s = suite(tmp_path, extra=extra).with_axes(
        defenses=["zepad_a", "zepad_b"], tasks=["cls"], scenarios=["adaptive"], attacks=["adaptive"]
    )
    graph = Runner(s, s.registry, tmp_path / "wd").graph
    a, b = s.cells()
    return tuple((f(a).key, f(b).key) for f in (graph.adaptive, graph.defense, graph.attack))


@pytest.mark.parametrize(
    "first, second",
    [({"ensemble": "rfdm"}, {"ensemble": "average"}), ({"fuse_on": "logits"}, {"fuse_on": "probabilities"})],
)
def test_defense_tables_differing_only_in_fusion_share_the_tuning_but_not_the_adaptive_attack(
    tmp_path, first, second
):
    (adaptive_a, adaptive_b), (defense_a, defense_b), (attack_a, attack_b) = adaptive_keys(
        tmp_path, first, second
    )
    assert defense_a == defense_b and attack_a == attack_b  # one tuning, one fitted attack …
    assert adaptive_a != adaptive_b  # … but images crafted against one fusion are never scored for another


def test_the_adaptive_key_holds_the_task_and_its_params(tmp_path):
    extra = {"tasks.cls_long": {"plugin": "classification", "data": "stripes", "epochs": 3}}
    s = suite(tmp_path, extra=extra).with_axes(
        defenses=["none"], tasks=["cls", "cls_long", "det"], scenarios=["adaptive"], attacks=["adaptive"]
    )
    graph = Runner(s, s.registry, tmp_path / "wd").graph
    keys = {c.task: graph.adaptive(c).key for c in s.cells()}
    assert len(set(keys.values())) == 3  # the heads' epochs, and the task plugin (its objective)
    bf16 = suite(tmp_path, "bf16", extra=extra).with_axes(
        defenses=["none"], tasks=["cls"], scenarios=["adaptive"], attacks=["adaptive"]
    )
    (cell,) = bf16.cells()
    assert Runner(bf16, bf16.registry, tmp_path / "wd").graph.adaptive(cell).key != keys["cls"]  # precision


def test_the_head_key_needs_no_trained_weights(tmp_path):
    """The head stage's key is the defense's, the branch, the train split's and the head's settings."""
    s = suite(tmp_path).with_axes(defenses=["none"], tasks=["cls", "det", "cls2"])
    graph = Runner(s, s.registry, tmp_path / "wd").graph
    cls, det, cls2 = (next(c for c in s.cells() if c.task == t) for t in ("cls", "det", "cls2"))
    params = {"epochs": 2, "lr": 5e-3, "batch_size": 256, "seed": 0}
    head = graph.head(cls, "victim", params)
    assert head.key == graph.head(det, "victim", params).key  # tasks on one dataset share heads
    assert head.key != graph.head(cls2, "victim", params).key  # another train split
    assert head.key != graph.head(cls, "victim", {**params, "seed": 1}).key
    assert head.key != graph.head(cls, "other", params).key
    assert {s.kind for s in head.inputs} == {"defense", "dataset", "features"}
