"""Head policies: each defense with its joint head and with heads retrained on its frozen encoders."""

from __future__ import annotations

import pytest
import torch
from conftest import recomputed_classification

from zepad_bench import load_registry
from zepad_bench.metrics import top_class_share
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite

TUNED = (
    '\n[defenses.pgd]\nplugin = "pgd-at"\nepochs = 1\nbatch_size = 32\nsteps = 1\n'
    '\n[tasks.cls-retrained]\nplugin = "classification"\ndata = "stripes"\nepochs = 2\nhead = "retrained"\n'
)


def test_joint_and_retrained_heads_are_both_evaluated_and_named(smoke_suite, tmp_path):
    smoke_suite.write_text((smoke_suite.read_text() + TUNED).replace('eps = "16/255"', 'eps = "48/255"'))
    suite = load_suite(smoke_suite, load_registry(["zb_outside_plugin"])).with_axes(
        defenses=["pgd", "none"], tasks=["cls", "cls-retrained"]
    )
    runner = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    cells = {(c.defense, c.task): c for c in suite.cells()}
    rows = {key: runner.run_cell(cell) for key, cell in cells.items()}
    metrics = {key: row["metrics"] for key, row in rows.items()}
    assert metrics["pgd", "cls"]["head"] == metrics["pgd", "cls"]["head:tuned"] == "joint"
    assert metrics["pgd", "cls-retrained"]["head"] == "retrained"
    assert metrics["none", "cls"]["head"] == metrics["none", "cls-retrained"]["head"] == "retrained"
    for key, row in rows.items():  # per-branch accuracies and collapse flags: the named heads' predictions
        again = recomputed_classification(runner, cells[key], row)
        assert {m: row["metrics"][m] for m in again} == pytest.approx(again, rel=1e-6), key


def test_top_class_share_flags_one_class_predictions():
    assert top_class_share(torch.tensor([3, 3, 3, 3])) == 100.0
    assert top_class_share(torch.tensor([0, 1, 2, 2])) == 50.0
