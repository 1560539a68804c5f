"""Training-free detection scores, the held-out threshold and the sweep (zepad_bench.detection)."""

from __future__ import annotations

import math

import pytest
import torch

from zepad_bench.detection import (
    best_threshold,
    calibrated_accuracy,
    detection_scores,
    entropy,
    js_divergence,
    threshold_sweep,
)


def test_entropy_and_js_on_known_distributions():
    uniform, one_hot, other = torch.full((1, 4), 0.25), torch.eye(4)[:1], torch.eye(4)[1:2]
    assert entropy(uniform).item() == pytest.approx(math.log(4))
    assert entropy(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert js_divergence(one_hot, one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert js_divergence(one_hot, other).item() == pytest.approx(math.log(2))
    p, q = torch.softmax(torch.randn(5, 3), 1), torch.softmax(torch.randn(5, 3), 1)
    assert torch.allclose(js_divergence(p, q), js_divergence(q, p))


def test_scores_use_branch_roles():
    robust = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    bmp = torch.tensor([[0.9, 0.1], [0.1, 0.9]])  # agrees on the first image only
    fused = (robust + bmp) / 2
    gap = torch.tensor([0.0, -0.1])
    scores = detection_scores([robust, bmp], ["mpae", "bmp"], fused, gap)
    assert set(scores) == {"gap", "js", "disagreement", "entropy"}
    assert scores["disagreement"].tolist() == [0.0, 1.0]
    assert scores["js"][0].item() == pytest.approx(0.0, abs=1e-6) and scores["js"][1] > 0.1
    assert torch.allclose(scores["entropy"], entropy(fused))
    # one branch (the undefended model): only the fused entropy
    assert set(detection_scores([robust], ["victim"], robust, None)) == {"entropy"}


def test_best_threshold_and_held_out_accuracy():
    benign, adversarial = torch.arange(10.0), torch.arange(10.0) + 10
    t = best_threshold(benign, adversarial)
    assert 9 <= t < 10
    assert calibrated_accuracy(benign, adversarial, seed=0)[0] == 100.0
    same = torch.rand(400, generator=torch.Generator().manual_seed(0))
    shuffled = same[torch.randperm(400, generator=torch.Generator().manual_seed(1))]
    accuracy, _ = calibrated_accuracy(same, shuffled, seed=0)
    assert 40 < accuracy < 60  # no signal: chance on the held-out half


def test_threshold_sweep_runs_from_everything_flagged_to_nothing():
    sweep = threshold_sweep(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.25, 0.4]))
    assert sweep["TPR"][0] == sweep["FPR"][0] == 100.0
    assert sweep["TPR"][-1] == sweep["FPR"][-1] == 0.0
    assert sweep["accuracy"].max().item() == pytest.approx(100 * (2 / 3 + 2 / 2) / 2)  # t = 0.2
    assert torch.all(sweep["threshold"][1:] > sweep["threshold"][:-1])


def test_detection_figure_draws_the_recorded_scores(tmp_path):
    from zepad_bench.cache import ArtifactCache
    from zepad_bench.plots import detection_figure

    cache = ArtifactCache(tmp_path / "cache")
    generator = torch.Generator().manual_seed(0)
    records = {
        f"detection_score_{kind}:{name}": torch.rand(30, generator=generator) + (kind == "adv")
        for kind in ("clean", "adv")
        for name in ("gap", "js", "entropy")
    }
    cache.save("records", "k1", records)
    row = {
        "key": "k1",
        "defense": "zepad",
        "attack": "pap",
        "task": "detection",
        "metrics": {"threshold": 0.1},
    }
    other = {**row, "key": "k2", "attack": "uap"}  # no records: left out
    out = detection_figure([row, other], cache, tmp_path / "fig" / "detection.png")
    assert out is not None and out.stat().st_size > 0
    assert detection_figure([other], cache, tmp_path / "none.png") is None
