"""SSL pretraining: every method learns, runs are seeded, augmentations and metrics behave as defined."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from zepad_bench.data.images import LabeledImages
from zepad_bench.errors import UserError
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.encoder_choices import SSL_METHODS
from zepad_bench.nn.ssl import METHODS, Pretrainer, knn_accuracy, pretrain, recipe, view_matching_accuracy
from zepad_bench.nn.ssl import augment as A
from zepad_bench.nn.ssl.methods import IterNorm
from zepad_bench_plugins.datasets.offline import Photos
from zepad_bench_plugins.encoders.ssl import SSLEncoder


@pytest.fixture(scope="module")
def patches() -> LabeledImages:
    """256 photo patches at 16×16 (label = source photo)."""
    return Photos(patches_per_image=60).load("train", 16, 0).subset(torch.arange(256))


TINY = {"proj_hidden_dim": 64, "proj_output_dim": 32}
"""Per-method settings for an 8-step run: small heads, and queues one batch long."""
SETTINGS = {
    "wmse": {"proj_output_dim": 8, "whitening_size": 32},
    "byol": {"pred_hidden_dim": 64},
    "nnclr": {"pred_hidden_dim": 64, "queue_size": 64},
    "mocov2plus": {"queue_size": 64},
    "mocov3": {"pred_hidden_dim": 64},
    "ressl": {"queue_size": 64},
    "dino": {"num_prototypes": 128},
    "swav": {"num_prototypes": 32, "queue_size": 64},
    "vibcreg": {"proj_output_dim": 64, "iternorm_groups": 8},
}
QUEUED = {"nnclr", "mocov2plus", "ressl"}
"""Their first step compares against the random initial queue, which is easier than real keys."""


def run(method: str, data: LabeledImages, **overrides) -> tuple[Encoder, dict, list[float]]:
    params = {**TINY, **SETTINGS.get(method, {}), **overrides}
    return pretrain(
        method,
        data.images,
        labels=data.labels,
        arch_params={"width": 8},
        epochs=2,
        batch_size=64,
        seed=0,
        **params,
    )


def test_the_paper_methods_are_listed_once():
    assert METHODS == SSL_METHODS == SSLEncoder.methods
    assert sorted(METHODS) == sorted(
        [
            "wmse",
            "byol",
            "nnclr",
            "simclr",
            "mocov2plus",
            "mocov3",
            "supcon",
            "ressl",
            "dino",
            "swav",
            "vibcreg",
        ]
    )


@pytest.mark.parametrize("method", METHODS)
def test_each_method_lowers_its_loss(method, patches):
    _, state, losses = run(method, patches)
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert any(k.startswith("backbone.") for k in state)
    if method == "dino":
        # DINO's centre starts at 0, so its targets flatten over the first steps whatever the student does;
        # compare with the same run (same views, same centre updates) whose student never moves.
        _, _, frozen = run(method, patches, lr=0.0, warmup_start_lr=0.0)
        assert sum(losses[-3:]) < sum(frozen[-3:])
        return
    losses = losses[1:] if method in QUEUED else losses
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_key_layout_follows_solo_learn(patches):
    keys = {m: {k.split(".")[0] for k in run(m, patches, lr=0.0)[1]} for m in ("simclr", "byol", "dino")}
    assert keys["simclr"] == {"backbone", "projector"}
    assert keys["byol"] == {"backbone", "projector", "predictor", "momentum_backbone", "momentum_projector"}
    assert {"backbone", "head", "momentum_backbone", "momentum_head"} <= keys["dino"]


def test_runs_are_determined_by_the_seed(patches):
    a = pretrain("simclr", patches.images, arch_params={"width": 8}, epochs=1, batch_size=64, seed=1, **TINY)
    b = pretrain("simclr", patches.images, arch_params={"width": 8}, epochs=1, batch_size=64, seed=1, **TINY)
    c = pretrain("simclr", patches.images, arch_params={"width": 8}, epochs=1, batch_size=64, seed=2, **TINY)
    assert a[2] == b[2] and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert a[2] != c[2]
    # labels are for SupCon only: giving them to SimCLR changes nothing
    d = pretrain(
        "simclr",
        patches.images,
        labels=patches.labels,
        arch_params={"width": 8},
        epochs=1,
        batch_size=64,
        seed=1,
        **TINY,
    )
    assert d[2] == a[2]


def test_resuming_matches_an_uninterrupted_run(patches):
    kwargs = dict(arch_params={"width": 8}, epochs=2, batch_size=64, seed=0, **TINY, **SETTINGS["mocov2plus"])
    full = Pretrainer("mocov2plus", patches.images, **kwargs)
    list(full.steps())
    first = Pretrainer("mocov2plus", patches.images, **kwargs)
    for _ in zip(range(3), first.steps()):
        pass
    state = first.state_dict()
    second = Pretrainer("mocov2plus", patches.images, **kwargs)
    second.load_state_dict(state)
    list(second.steps())
    assert second.history == full.history
    assert all(
        torch.equal(v, full.checkpoint_state_dict()[k]) for k, v in second.checkpoint_state_dict().items()
    )


def test_bad_inputs_are_refused(patches):
    with pytest.raises(ValueError, match="supervised"):
        pretrain("supcon", patches.images, epochs=1, seed=0)
    with pytest.raises(ValueError, match="unknown recipe parameter 'temprature'"):
        recipe("simclr", temprature=0.1)
    with pytest.raises(ValueError, match="expects float"):
        recipe("simclr", lr="fast")
    with pytest.raises(ValueError, match="unknown SSL method"):
        recipe("simsiam")
    with pytest.raises(ValueError, match="whitening_size"):
        pretrain("wmse", patches.images, epochs=1, batch_size=100, seed=0)
    with pytest.raises(ValueError, match="temprature"):
        SSLEncoder(method="simclr", temprature=0.1)
    with pytest.raises(UserError, match="needs data"):
        SSLEncoder(method="simclr").build(None)


def test_ssl_plugin_pretrains_on_the_suite_data(patches):
    source = SSLEncoder(
        method="byol", arch_params={"width": 8}, epochs=1, batch_size=64, **TINY, pred_hidden_dim=64
    )
    encoder = source.build(patches)
    assert encoder.meta["ssl_method"] == "byol" and not encoder.training
    assert encoder(patches.float_images(slice(0, 4))).shape == (4, 32)


@pytest.mark.parametrize("method", ["simclr", "mocov3"])
def test_pretraining_beats_its_random_init_on_view_matching(method):
    """300 steps on ~2k photo patches; held-out patches from the photos' other part.

    Adam replaces solo-learn's LARS here: that recipe is tuned for 195k steps, not 300.
    """
    photos = Photos(patches_per_image=400)
    train, test = photos.load("train", 16, 0), photos.load("test", 16, 0)
    trainer = Pretrainer(
        method, train.images, labels=train.labels, arch_params={"width": 8}, epochs=10, batch_size=64, seed=0,
        proj_hidden_dim=256, proj_output_dim=64, optimizer="adam", lr=3e-3,
        **({"pred_hidden_dim": 256} if method == "mocov3" else {}),
    )  # fmt: skip

    def score(encoder: Encoder) -> float:
        batches = [test.images[i : i + 64] for i in range(0, 192, 64)]
        return sum(view_matching_accuracy(encoder, b, seed=s) for b in batches for s in range(2)) / 6

    before = score(trainer.encoder.copy().eval())
    list(trainer.steps())
    after = score(trainer.result())
    assert after > before + 2, (before, after)


def test_augmentations_follow_torchvision():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 20, 20, generator=generator)
    shift = torch.tensor([-0.5, -0.2, 0.0, 0.1, 0.3, 0.45])
    expected = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(6)])
    assert torch.allclose(A.adjust_hue(x, shift), expected, atol=1e-5)
    whole = torch.tensor([[0.0, 0.0, 20.0, 20.0]]).repeat(6, 1)
    assert torch.allclose(A.resized_crop(x, whole, torch.zeros(6, dtype=torch.bool), 20), x, atol=1e-6)
    flipped = A.resized_crop(x, whole, torch.ones(6, dtype=torch.bool), 20)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-6)
    boxes = A.crop_boxes(2000, 20, 30, (0.08, 1.0), generator)
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 20).all() and (left + w <= 30).all()
    area = h * w / 600
    assert area.min() >= 0.06 and area.max() <= 1.0  # rounding lets areas dip just below 0.08
    uint8 = (x * 255).round().to(torch.uint8)
    one = A.make_views(uint8, A.PRESETS["asymmetric"], 16, torch.Generator().manual_seed(5))
    two = A.make_views(uint8, A.PRESETS["asymmetric"], 16, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    assert one[0].shape == (6, 3, 16, 16) and 0 <= one[0].min() and one[0].max() <= 1
    assert not torch.equal(one[0], one[1])


def test_iternorm_whitens_each_group():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=generator) @ torch.randn(16, 16, generator=generator)
    norm = IterNorm(16, num_groups=2, iterations=10).train()
    y = norm(x).detach()
    for group in (y[:, :8], y[:, 8:]):
        centred = group - group.mean(0)
        covariance = centred.T @ centred / len(group)
        assert torch.allclose(covariance, torch.eye(8), atol=0.05)


def test_knn_accuracy_is_perfect_on_its_own_training_set(patches):
    torch.manual_seed(0)
    encoder = Encoder("small-cnn", {"width": 8}).eval()
    assert knn_accuracy(encoder, patches, patches, k=1) == 100.0
    shuffled = LabeledImages(patches.images, patches.labels[torch.randperm(len(patches))], patches.classes)
    assert knn_accuracy(encoder, shuffled, patches, k=1) < 50.0
