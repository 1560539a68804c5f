"""Shared fixtures: a tiny suite built on the test-only outside plugin (tests/outside), and the toy rows,
suites and checkpoint files that several test modules build on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models

from zepad_bench.interfaces import CORE_METRICS, Metric
from zepad_bench.reports.data import Board, tasks_of

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


# --- shared with other test modules: from test_reports.py

E = 1 / 255


CLS = [m.as_dict() for m in CORE_METRICS] + [
    Metric("head", "the head", unit="", clean=True).as_dict(),
    Metric("conf_clean:<branch>", "a branch's confidence", unit="", clean=True, report=False).as_dict(),
]


DET = [
    Metric("detection_accuracy", "detector accuracy").as_dict(),
    Metric("AUROC", "detector AUROC").as_dict(),
    *(
        Metric(m.name, m.definition, m.higher_is_better, m.unit, m.clean, report=False).as_dict()
        for m in CORE_METRICS
    ),
]


def row(
    task, defense, attack, seed, metrics, *, eps=16 * E, scenario="semi-black-box", role="attack", info=None
):
    return {
        "key": f"{task}/{defense}/{attack}/{scenario}/{eps}/{seed}",
        "suite": "toy",
        "victim": "v",
        "scenario": scenario,
        "attack": attack,
        "eps": eps,
        "defense": defense,
        "tuning": "digits",
        "task": task,
        "task_data": "digits",
        "seed": seed,
        "status": "ok",
        "metrics": metrics,
        "config": {
            "metric_info": info if info is not None else (CLS if task == "cls" else DET),
            "task_plugin": "classification" if task == "cls" else "detection",
            "attack_plugin": attack,
            "attack_role": role,
            "defense_role": "baseline" if defense == "none" else "defense",
            "surrogates": ["v"] if scenario == "semi-black-box" else [],
            "test_size": 540,
        },
        "versions": {"zepad-bench": "0"},
        "code": {f"attack:{attack}": "p src:1"},
        "records": {},
        "timings": {"cell": 1.0},
        "machine": {"platform": "test", "cpus": 2, "device": "cpu"},
        "created": f"2026-01-01T00:00:0{seed}+00:00",
        "outdated": None,
    }


BA = {"none": [90.0, 92.0, 94.0], "zepad": [95.0, 95.5, 96.0]}


RA = {
    ("none", "pap"): [30.0, 40.0, 50.0],
    ("zepad", "pap"): [70.0, 71.0, 72.0],
    ("none", "uap"): [60.0, 61.0, 62.0],
    ("zepad", "uap"): [20.0, 50.0, 80.0],
    ("none", "noise"): [80.0, 80.0, 80.0],
    ("zepad", "noise"): [90.0, 90.0, 90.0],
}


ADAPTIVE = {"none": [1.0, 2.0, 3.0], "zepad": [15.0, 16.0, 17.0]}  # at 4/255: below every 16/255 RA of zepad


def toy_rows(seeds=(0, 1, 2), adaptive=True):
    rows = []
    for (defense, attack), ras in RA.items():
        for seed in seeds:
            metrics = {"BA": BA[defense][seed], "RA": ras[seed], "ASR": 100 - ras[seed], "head": "retrained"}
            metrics["conf_clean:victim"] = 0.9
            role = "control" if attack == "noise" else "attack"
            rows.append(row("cls", defense, attack, seed, metrics, role=role))
            det = {
                "BA": BA[defense][seed],
                "RA": ras[seed],
                "ASR": 1.0,
                "detection_accuracy": 50.0 + seed + len(attack) if defense == "zepad" else "n/a",
                "AUROC": 60.0 + seed if defense == "zepad" else "n/a",
            }
            rows.append(row("det", defense, attack, seed, det, role=role))
    for defense, ras in ADAPTIVE.items():
        for seed in seeds if adaptive else ():
            metrics = {"BA": BA[defense][seed], "RA": ras[seed], "ASR": 100 - ras[seed], "head": "retrained"}
            rows.append(row("cls", defense, "adaptive", seed, metrics, eps=4 * E, scenario="adaptive"))
    return rows


def board(rows=None, **kwargs) -> Board:
    rows = toy_rows() if rows is None else rows
    defaults = dict(source="suites/toy.toml", description="A toy.", rows=rows, tasks=tasks_of(rows))
    return Board("toy", **{**defaults, **kwargs})


# --- shared with other test modules: from test_deviations.py

DEVIATION_PRESETS = {  # as a defense's Options fills them in
    "corrected": {"freeze_bn": True, "pgd_ce_term": False, "fuse_on": "probabilities"},
    "authors": {"freeze_bn": False, "pgd_ce_term": True, "fuse_on": "logits"},
}


def deviation_row(
    defense: str, protocol: str, seed: int, attack: str, ba: float, ra: float, **switches
) -> dict:
    given = {"protocol": protocol, **switches}
    return {
        "defense": defense,
        "victim": "byol",
        "scenario": "semi-black-box",
        "attack": attack,
        "eps": 16 / 255,
        "tuning": "digits",
        "task": "cls",
        "seed": seed,
        "metrics": {"BA": ba, "RA": ra, "head": "retrained"},
        "config": {
            "defense_plugin": "zepad",
            "defense_given": given,
            "defense_params": {"eps": 0.015, **DEVIATION_PRESETS[protocol], **given},
            "attack_role": "control" if attack == "noise" else "attack",
        },
    }


def deviation_rows() -> list[dict]:
    out = []
    for seed, shift in ((0, 0.0), (1, 2.0), (2, 4.0)):
        for attack, ra in (("adv", 50.0), ("noise", 90.0)):
            out += [
                deviation_row("zp", "corrected", seed, attack, 97.0, ra),
                deviation_row("zp-a", "authors", seed, attack, 96.0, ra - 10 - shift),
                deviation_row("zp-a-bn", "authors", seed, attack, 97.0 + shift, ra - 5, freeze_bn=True),
                deviation_row("zp-fuse", "corrected", seed, attack, 97.0, ra - shift, fuse_on="logits"),
            ]
    out.append({**deviation_row("none", "corrected", 0, "adv", 90.0, 10.0), "config": {"defense_params": {}}})
    return out


# --- shared with other test modules: from test_tuning_sweep.py

SWEEP_ATTACK_EPS = 16 / 255


def sweep_row(defense: str, eps: float | None, task: str, attack: str, seed: int, **metrics) -> dict:
    zepad = eps is not None
    return {
        "defense": defense,
        "attack": attack,
        "eps": SWEEP_ATTACK_EPS,
        "seed": seed,
        "task": task,
        "metrics": metrics,
        "config": {
            "defense_plugin": "zepad" if zepad else "none",
            "defense_role": "defense" if zepad else "baseline",
            "defense_params": {"eps": eps} if zepad else {},
            "task_plugin": {"cls": "classification", "det": "detection"}[task],
            "attack_role": "control" if attack == "noise" else "attack",
        },
    }


def sweep_rows() -> list[dict]:
    out = []
    for seed in (0, 1, 2):
        for eps in (0.015, 0.06):
            conf = {f"conf_clean:{b}": 0.9 for b in ("mpae:victim", "mpae:aux0", "bmp")}
            conf |= {"conf_adv:mpae:victim": 0.5 + eps + 0.01 * seed, "conf_adv:bmp": 0.8}
            out.append(
                sweep_row(
                    f"zp{eps}", eps, "cls", "adv", seed, RA=40.0 + 100 * eps, **{"RA:bmp": 80.0}, **conf
                )
            )
            out.append(
                sweep_row(
                    f"zp{eps}", eps, "det", "adv", seed, **{"AUROC:gap": 50.0 + seed, "AUROC:js": "n/a"}
                )
            )
        out.append(sweep_row("none", None, "cls", "adv", seed, RA=30.0))
        out.append(sweep_row("none", None, "det", "adv", seed, **{"AUROC:gap": "n/a"}))
    return out


# --- shared with other test modules: from test_adaptive.py

TINY_ZEPAD = (
    '[defenses.none2]\nplugin = "zepad"\nepochs = 1\nsteps = 1\nbatch_size = 32\nbmp_epochs = 1\n'
    "bmp_batch_size = 32\nbmp_recipe = { proj_hidden_dim = 32, proj_output_dim = 16 }"
)


ADAPTIVE_GRID = """
[tasks.det]
plugin = "detection"
data = "stripes"
epochs = 2

[tasks.ret]
plugin = "retrieval"
data = "stripes"
k = 3

[attacks.adaptive]
plugin = "adaptive"
scenarios = ["adaptive"]
apgd_steps = 5
targets = 1
square_queries = 10
recheck_samples = 4

[attacks.aware]
plugin = "outside-sign"
scenarios = ["defense-aware"]

[grid]"""


def adaptive_suite_text(extra: str = ADAPTIVE_GRID) -> str:
    text = SMOKE_SUITE.replace('[defenses.none2]\nplugin = "none"', TINY_ZEPAD).replace("[grid]", extra)
    return text.replace('eps = "16/255"', 'eps = "16/255"\nadaptive_eps = ["2/255", "16/255"]')


# --- shared with other test modules: from test_tasks_retrieval_detection.py

TASKS_SUITE = (
    SMOKE_SUITE.replace('name = "smoke"', 'name = "tasks6"')
    .replace('defenses = ["none", "none2"]', 'defenses = ["none"]')
    .replace('tasks = ["cls", "cls2"]', 'tasks = ["ret", "det"]')
    + """
[tasks.ret]
plugin = "retrieval"
data = "stripes2"
k = 5

[tasks.det]
plugin = "detection"
data = "stripes"
epochs = 2
"""
)


# --- shared with other test modules: from test_checkpoints.py


def solo_resnet18() -> nn.Module:
    """torchvision ResNet18 with solo-learn's CIFAR stem, built here independently of zepad_bench."""
    net = models.resnet18()
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=2, bias=False)
    net.maxpool, net.fc = nn.Identity(), nn.Identity()
    return net


def write_solo_file(path: Path, net: nn.Module, prefix: str, **extra) -> Path:
    """A file laid out like solo-learn's own: Lightning dict, heads, momentum copy and online probe."""
    state = {f"{prefix}{k}": v for k, v in net.state_dict().items()}
    state.update(
        {f"momentum_{prefix}{k}": v + 1 for k, v in net.state_dict().items() if v.is_floating_point()}
    )
    state.update({"projector.0.weight": torch.randn(16, 512), "projector.0.bias": torch.zeros(16)})
    state.update({"classifier.weight": torch.randn(10, 512), "classifier.bias": torch.zeros(10)})
    state["queue"] = torch.randn(2, 16, 64)
    checkpoint = {
        "epoch": 999,
        "global_step": 195000,
        "pytorch-lightning_version": "1.5.3",
        "state_dict": state,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.4, "params": [0, 1]}]}],
        "lr_schedulers": [{"last_epoch": 999}],
        **extra,
    }
    torch.save(checkpoint, path)
    return path
