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
