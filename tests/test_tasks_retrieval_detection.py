"""Retrieval and detection: metric definitions on hand-built cases, both tasks, and a run through the CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TASKS_SUITE as SUITE

from zepad_bench import Branch, DefendedModel, TaskData
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages
from zepad_bench.metrics import (
    auroc,
    detection_rates,
    hit_at_k,
    knn_vote,
    nearest_neighbours,
    neighbour_change_rate,
    precision_at_k,
    retrieval_embedding,
)
from zepad_bench_plugins.defenses.none import NoDefense
from zepad_bench_plugins.defenses.zepad import ZePAD
from zepad_bench_plugins.tasks.detection import Detection
from zepad_bench_plugins.tasks.retrieval import Retrieval


def unit(*degrees: float) -> torch.Tensor:
    """2-d unit vectors at the given angles."""
    radians = torch.tensor(degrees) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=1)


# ---------------------------------------------------------------------- retrieval metrics
def test_nearest_neighbours_rank_by_cosine_not_norm():
    gallery = unit(0, 40, 90, 180) * torch.tensor([[1.0], [5.0], [0.1], [2.0]])  # norms must not matter
    queries = unit(10, 80, 170)
    assert nearest_neighbours(queries, gallery, k=3, chunk=2).tolist() == [[0, 1, 2], [2, 1, 0], [3, 2, 1]]
    with pytest.raises(ValueError):
        nearest_neighbours(queries, gallery, k=5)


def test_hit_precision_and_vote_on_known_neighbour_labels():
    found = torch.tensor([[1, 2, 2, 1, 0], [0, 1, 2, 3, 4], [3, 3, 1, 1, 1], [4, 4, 4, 4, 4]])
    labels = torch.tensor([1, 4, 3, 2])
    assert hit_at_k(found, labels) == 75.0  # the last query never sees its label
    assert precision_at_k(found, labels) == pytest.approx(100 * (2 / 5 + 1 / 5 + 2 / 5 + 0) / 4)
    # 1 vs 2 tie (2 votes each): 1 is met first; no majority: the first neighbour; plain majorities.
    assert knn_vote(found, num_classes=5).tolist() == [1, 0, 1, 4]
    assert knn_vote(torch.tensor([[2, 1, 1, 2]]), num_classes=3).tolist() == [2]


def test_neighbour_change_rate_counts_top1_only():
    clean = torch.tensor([[0, 1], [2, 3], [4, 5], [6, 7]])
    adversarial = torch.tensor([[0, 9], [3, 2], [4, 5], [1, 7]])  # rank-2 changes do not count
    assert neighbour_change_rate(clean, adversarial) == 50.0


def test_retrieval_embedding_similarity_is_mean_branch_similarity():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 5, generator=generator) * 10  # branches of different size and scale
    b = torch.randn(6, 3, generator=generator)
    embedding = retrieval_embedding([a, b])
    cos = torch.nn.functional.cosine_similarity
    expected = (cos(a[:, None], a[None], dim=2) + cos(b[:, None], b[None], dim=2)) / 2
    torch.testing.assert_close(embedding @ embedding.T, expected, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- detection metrics
def test_detection_rates_flag_strictly_above_threshold():
    benign = torch.tensor([0.0, 0.05, 0.1, 0.3])
    adversarial = torch.tensor([0.2, 0.1, 0.5, -0.1])
    rates = detection_rates(benign, adversarial, threshold=0.1)
    assert rates == {"accuracy": 62.5, "TPR": 50.0, "FPR": 25.0}  # 0.1 itself is not flagged


def test_auroc_by_hand_and_against_sklearn():
    from sklearn.metrics import roc_auc_score

    # adversarial 0.2 beats 0.1, ties two 0.2s (½ each), loses to 0.5 → 2; 0.6 beats all 4; 0.05 none → 6/12
    assert auroc(torch.tensor([0.1, 0.2, 0.2, 0.5]), torch.tensor([0.2, 0.6, 0.05])) == pytest.approx(50.0)
    assert auroc(torch.tensor([0.0, 0.1]), torch.tensor([0.2, 0.3])) == 100.0
    assert auroc(torch.tensor([0.2, 0.3]), torch.tensor([0.0, 0.1])) == 0.0
    generator = torch.Generator().manual_seed(1)
    benign, adversarial = (
        torch.randn(50, generator=generator).round(decimals=1),
        torch.randn(40, generator=generator),
    )
    expected = roc_auc_score([0] * 50 + [1] * 40, torch.cat([benign, adversarial]).numpy())
    assert auroc(benign, adversarial) == pytest.approx(100 * expected)


# ---------------------------------------------------------------------- the tasks on hand-built features
def task_data(features: dict[tuple[int, str], torch.Tensor], train_labels, test_labels) -> TaskData:
    def images(n: int) -> torch.Tensor:
        return torch.zeros(n, 3, 4, 4, dtype=torch.uint8)

    classes = [str(c) for c in range(int(max(train_labels.max(), test_labels.max())) + 1)]
    train = LabeledImages(images(len(train_labels)), train_labels, classes, name="train-set")
    test = LabeledImages(images(len(test_labels)), test_labels, classes, name="test-set")
    return TaskData(train, test, test.float_images(), attack=None, feature_fn=lambda i, w: features[(i, w)])


def test_retrieval_task_on_known_neighbours():
    gallery = unit(0, 10, 20, 180, 190, 200)  # class 0 near 0°, class 1 near 180°
    train_labels = torch.tensor([0, 0, 0, 1, 1, 1])
    test_labels = torch.tensor([0, 1, 0, 1])
    clean = unit(4, 184, 14, 194)  # top-1: gallery 0, 3, 1, 4
    # 1st and 4th queries pushed to the other class; the 2nd moves within its class (top-1 3 → 4); 3rd stays
    adversarial = unit(176, 188, 14, 4)
    features = {(0, "train"): gallery, (0, "test"): clean, (0, "test_adv"): adversarial}
    model = DefendedModel([Branch("victim", "victim", None)], NoDefense())
    task = Retrieval(k=3)
    task.ctx = RunContext()
    metrics = task.run(model, task_data(features, train_labels, test_labels))
    assert metrics["knn@3_clean"] == metrics["hit@3_clean"] == metrics["precision@3_clean"] == 100.0
    assert metrics["knn@3_adv"] == 50.0 and metrics["hit@3_adv"] == 50.0
    assert metrics["top1_change"] == 75.0
    assert metrics["ASR"] == 50.0  # the vote changes for the two queries pushed across
    assert (metrics["BA"], metrics["RA"], metrics["main"]) == (100.0, 50.0, "knn@3")
    hit = Retrieval(k=3, main="hit")
    hit.ctx = RunContext()
    assert hit.run(model, task_data(features, train_labels, test_labels))["RA"] == metrics["hit@3_adv"]


@pytest.mark.parametrize("params", [{"k": 0}, {"main": "top1"}, {"k": True}])
def test_retrieval_rejects_bad_params(params):
    with pytest.raises(ValueError):
        Retrieval(**params)


def two_branch_features(n: int, seed: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Branch 0 (MPAE) separates two classes, clean or attacked; branch 1 (BMP) only clean images."""
    generator = torch.Generator().manual_seed(seed)
    train_labels = torch.arange(n) % 2
    test_labels = torch.arange(n) % 2

    def separable(labels):
        centre = (labels.float() * 2 - 1)[:, None] * torch.tensor([4.0, 0.0])
        return centre + 0.3 * torch.randn(len(labels), 2, generator=generator)

    features = {
        (0, "train"): separable(train_labels),
        (0, "test"): separable(test_labels),
        (0, "test_adv"): separable(test_labels),
        (1, "train"): separable(train_labels),
        (1, "test"): separable(test_labels),
        (1, "test_adv"): 0.05 * torch.randn(n, 2, generator=generator),  # between the classes: unsure
    }
    return features, train_labels, test_labels


def test_detection_task_detects_when_only_the_bmp_branch_is_fooled():
    features, train_labels, test_labels = two_branch_features(200, seed=0)
    defense = ZePAD()
    model = DefendedModel([Branch("mpae:victim", "mpae", None), Branch("bmp", "bmp", None)], defense)
    task = Detection(epochs=15, batch_size=64)
    task.ctx = RunContext(seed=0)
    metrics = task.run(model, task_data(features, train_labels, test_labels))
    assert metrics["threshold"] == defense.detection_threshold == 0.1
    assert metrics["FPR"] < 5 and metrics["TPR"] > 80
    assert metrics["detection_accuracy"] == pytest.approx((100 - metrics["FPR"] + metrics["TPR"]) / 2)
    assert metrics["AUROC"] > 95
    # RFDM follows the confident MPAE branch: the fooled, unsure BMP branch flips (almost) no fused prediction
    assert metrics["BA"] > 95 and metrics["ASR"] <= 1
    scores = task.ctx.records
    assert scores["detection_score_clean"].shape == scores["detection_score_adv"].shape == (200,)
    assert metrics["AUROC:js"] > 95 and metrics["accuracy:js"] > 90 and metrics["accuracy:gap"] > 90
    assert metrics["AUROC:disagreement"] > 60  # the unsure BMP flips its top-1 on about half the DAEs
    assert all(f"detection_score_adv:{s}" in scores for s in ("gap", "js", "disagreement", "entropy"))


def test_detection_task_reports_na_without_a_detector():
    features, train_labels, test_labels = two_branch_features(40, seed=1)
    model = DefendedModel([Branch("victim", "victim", None)], NoDefense())
    task = Detection(epochs=2)
    task.ctx = RunContext()
    metrics = task.run(model, task_data(features, train_labels, test_labels))
    assert {metrics[k] for k in Detection.DETECTION_KEYS} == {"n/a"}
    assert {metrics[f"AUROC:{s}"] for s in ("js", "disagreement")} == {"n/a"}
    assert isinstance(metrics["BA"], float) and isinstance(metrics["AUROC:entropy"], float)


# ---------------------------------------------------------------------- through the runner and the CLI


def test_retrieval_and_detection_through_the_cli(tmp_path: Path):
    suite = tmp_path / "tasks6.toml"
    suite.write_text(SUITE)
    outside = Path(__file__).parent / "outside"
    env = {"PYTHONPATH": str(outside), "PATH": str(Path(sys.executable).parent)}
    args = [sys.executable, "-m", "zepad_bench.cli"]
    common = ["--workdir", str(tmp_path / "wd"), "--out", str(tmp_path / "lb")]
    run = subprocess.run(
        [*args, "run", str(suite), *common, "--quiet"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    board = subprocess.run(
        [*args, "leaderboard", str(suite), *common, "--reference"], env=env, capture_output=True, text=True
    )
    assert board.returncode == 0, board.stderr
    text = (tmp_path / "lb" / "tasks6.md").read_text()
    assert "## Per downstream dataset and task (paper Tables 3–4 layout" in text  # two task datasets
    assert "hit@5_clean" in text and "### ret: precision@5_adv" in text and "### det: AUROC" in text
    assert "No result of this suite matches a paper cell" in text
    assert "inputs 16×16 (paper: 64×64)" in text
