"""Head policies: each defense with its joint head and with heads retrained on its frozen encoders."""

from __future__ import annotations

import torch

from zepad_bench import load_registry
from zepad_bench.metrics import top_class_share
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite

TUNED = (
    '\n[defenses.pgd]\nplugin = "pgd-at"\nepochs = 1\nbatch_size = 32\nsteps = 1\n'
    '\n[tasks.cls-retrained]\nplugin = "classification"\ndata = "stripes"\nepochs = 2\nhead = "retrained"\n'
)


def test_joint_and_retrained_heads_are_both_evaluated_and_named(smoke_suite, tmp_path):
    smoke_suite.write_text(smoke_suite.read_text() + TUNED)
    suite = load_suite(smoke_suite, load_registry(["zb_outside_plugin"])).with_axes(
        defenses=["pgd", "none"], tasks=["cls", "cls-retrained"]
    )
    runner = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    rows = {(r["defense"], r["task"]): r["metrics"] for r in map(runner.run_cell, suite.cells())}
    assert rows["pgd", "cls"]["head"] == rows["pgd", "cls"]["head:tuned"] == "joint"
    assert rows["pgd", "cls-retrained"]["head"] == "retrained"
    assert rows["none", "cls"]["head"] == rows["none", "cls-retrained"]["head"] == "retrained"
    for metrics in rows.values():  # per-branch accuracies, and the fused prediction's collapse flag
        branches = [k.split(":", 1)[1] for k in metrics if k.startswith("head:")]
        assert all(0 <= metrics[f"{m}:{b}"] <= 100 for b in branches for m in ("BA", "RA"))
        assert 0 < metrics["top_class_share"] <= 100 and 0 < metrics["top_class_share_adv"] <= 100


def test_top_class_share_flags_one_class_predictions():
    assert top_class_share(torch.tensor([3, 3, 3, 3])) == 100.0
    assert top_class_share(torch.tensor([0, 1, 2, 2])) == 50.0
