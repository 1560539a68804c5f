"""Shared fixtures: a tiny suite built on the test-only outside plugin (tests/outside)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is as fast and far steadier on a shared 2-core box

OUTSIDE = Path(__file__).parent / "outside"
sys.path.insert(0, str(OUTSIDE))

SMOKE_SUITE = """
[suite]
name = "smoke"
seed = 0
image_size = 16
eps = "16/255"
attacker_data = "stripes"
plugins = ["zb_outside_plugin"]

[datasets.stripes]
plugin = "outside-stripes"

[datasets.stripes2]
plugin = "outside-stripes"
n = 48

[encoders.rand]
plugin = "outside-random"
auxiliaries = ["rand2"]

[encoders.rand2]
plugin = "outside-random"
width = 4

[attacks.sign]
plugin = "outside-sign"

[defenses.none]
plugin = "none"

[defenses.none2]
plugin = "none"

[tasks.cls]
plugin = "classification"
data = "stripes"
epochs = 2

[tasks.cls2]
plugin = "classification"
data = "stripes2"
epochs = 2

[grid]
victims = ["rand"]
defenses = ["none", "none2"]
tuning = ["stripes"]
tasks = ["cls", "cls2"]
"""


@pytest.fixture(autouse=True, scope="session")
def _plugin_manifest_cache(tmp_path_factory):
    """`zepad-bench list` caches plugin manifests: keep the tests' out of the user's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("ZEPAD_BENCH_CACHE", str(tmp_path_factory.mktemp("zepad-bench-cache")))
    yield
    mp.undo()


@pytest.fixture
def smoke_suite(tmp_path: Path) -> Path:
    path = tmp_path / "smoke.toml"
    path.write_text(SMOKE_SUITE)
    return path


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    """``zepad-bench ARGS`` in a new process (a fresh plugin registry), in ``cwd``, with ``env_extra``."""
    return subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", *args],
        cwd=cwd,
        env={**os.environ, **env_extra},
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_main(args: list[str], monkeypatch) -> int:
    """Run ``main`` (the console script's entry) in this process and return its exit status."""
    monkeypatch.setattr(sys, "argv", ["zepad-bench", *args])
    try:
        from zepad_bench.cli import main

        main()
    except SystemExit as exc:
        return exc.code
    return 0


def classification_head_params(runner, cell, branch: int) -> dict:
    """The settings a classification-style task trains branch ``branch``'s head with: its epochs, lr and
    batch size, seeded ``cell seed + branch`` (``zepad_bench.pipeline.task_heads``)."""
    from zepad_bench.suite import instantiate

    task = instantiate(runner.suite, runner.registry, "tasks", cell.task)
    return {"epochs": task.epochs, "lr": task.lr, "batch_size": task.batch_size, "seed": cell.seed + branch}


def cell_stages(runner, cell, row) -> list:
    """Every stage a finished classification-style cell reads, as the graph derives it: its task
    stage's closure, the features of each branch on the task's images and each retrained head."""
    graph = runner.graph
    stages = [s for s in graph.task(cell).closure() if s.kind != "task"]
    for i, branch in enumerate(b["name"] for b in row["config"]["branches"]):
        stages += [graph.features(cell, branch, which) for which in ("train", "test", "test_adv")]
        if row["metrics"].get(f"head:{branch}", "retrained") == "retrained":  # unreported: retrained
            stages.append(graph.head(cell, branch, classification_head_params(runner, cell, i)))
    return stages


def computed_stages(runner) -> list[tuple[str, str]]:
    """(kind, key) of every stage computation this runner's run logged, in order."""
    return [(r["stage"], r["key"]) for r in runner.store.stage_runs() if r["created"] >= runner.since]


def recomputed_classification(runner, cell, row) -> dict[str, float]:
    """BA, RA, ASR, top-class shares and per-branch BA/RA of a classification cell, recomputed from what
    its stages stored: each branch's cached features of the clean and attacked test images through its
    head (the cached head stage, or the branch's joint head), fused by the defense, compared with the
    test labels by counting."""
    from zepad_bench.nn.codec import head_from_state
    from zepad_bench.nn.heads import predict_logits

    graph, cache = runner.graph, runner.cache
    model, _ = runner.defense(cell)
    labels = runner.dataset(graph.task_data(cell), "test", cell.seed)[0].labels
    out: dict[str, float] = {}
    logits: dict[str, list[torch.Tensor]] = {"test": [], "test_adv": []}
    for i, branch in enumerate(model.branches):
        if row["metrics"][f"head:{branch.name}"] == "joint":
            head = branch.head.cpu()
        else:
            params = classification_head_params(runner, cell, i)
            head = head_from_state(cache.load("head", graph.head(cell, branch.name, params).key))
        for which, metric in (("test", "BA"), ("test_adv", "RA")):
            features = cache.load("features", graph.features(cell, branch.name, which).key)
            logits[which].append(predict_logits(head, features))
            out[f"{metric}:{branch.name}"] = _percent(logits[which][-1].argmax(1) == labels)
    clean, adv = (model.defense.fuse(logits[w]).argmax(1) for w in ("test", "test_adv"))
    out.update(BA=_percent(clean == labels), RA=_percent(adv == labels), ASR=_percent(clean != adv))
    out.update(top_class_share=_percent(clean == clean.mode().values))
    out.update(top_class_share_adv=_percent(adv == adv.mode().values))
    return out


def _percent(hits: torch.Tensor) -> float:
    return 100 * int(hits.sum()) / len(hits)
