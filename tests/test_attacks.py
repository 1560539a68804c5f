"""Built-in attacks: budget and range, label-free fitting, seeding, cached state, the property that
defines each algorithm, and effectiveness against the equal-budget random-noise control."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from zepad_bench import load_registry
from zepad_bench.context import RunContext
from zepad_bench.errors import UserError
from zepad_bench.nn.encoder import Encoder
from zepad_bench_plugins.attacks import ATTACKS
from zepad_bench_plugins.attacks.advencoder import PerturbationGenerator, high_pass
from zepad_bench_plugins.attacks.common import (
    PseudoLabelProbe,
    UniversalAttack,
    apply_delta,
    layer_output,
    rebatch,
    resolve_layer,
)
from zepad_bench_plugins.attacks.pap import PAP_LAYERS
from zepad_bench_plugins.attacks.ssp import SSP_LAYERS
from zepad_bench_plugins.attacks.uap import deepfool
from zepad_bench_plugins.attacks.uapgd import epgd_increment

SIZE = 16
# Tiny but working settings per attack (the papers' defaults are for GPUs and 10k+ images).
FAST = {
    "advencoder": dict(epochs=4, ngf=8, z_batch=4, lr=5e-3),
    "pap": dict(steps=20, step_size=0.005, noise_images=4),
    "uap": dict(clusters=3, max_images=64, max_passes=1, candidates=3, deepfool_iters=3),
    "uapgd": dict(images=128, steps=3, step_size=0.01, decay_after=64),
    "uapgd-reference": dict(
        images=128, steps=5, step_size=0.02, decay_after=1000, clusters=3, probe_images=48
    ),
    "ssp": dict(steps=5, step_size=0.02),
    "ssp-universal": dict(steps=20, step_size=0.005),
    "art": dict(
        attack="ProjectedGradientDescent", params={"max_iter": 3, "eps_step": 0.02}, clusters=3, max_images=64
    ),
    "random-noise": {},
}
NAMES = sorted(FAST)
CLASSES = {cls.name: cls for cls in ATTACKS}


class TensorStream:
    """A re-iterable stream of unlabeled float batches: tensors only, never (x, y) pairs."""

    def __init__(self, images: Tensor, batch_size: int = 16):
        self.images, self.batch_size, self.passes = images, batch_size, 0

    def __iter__(self):
        self.passes += 1
        for start in range(0, len(self.images), self.batch_size):
            yield self.images[start : start + self.batch_size].float() / 255


def photo_patches(n: int, seed: int) -> Tensor:
    """``n`` uint8 SIZE×SIZE patches of scikit-image's sample photos (offline data)."""
    from skimage import data
    from skimage.transform import resize

    photos = [
        resize(im, (96, 96), anti_aliasing=True)
        for im in (
            data.astronaut(),
            data.coffee(),
            data.chelsea(),
            data.rocket(),
            data.immunohistochemistry(),
        )
    ]
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        i, j = rng.integers(0, 96 - 2 * SIZE, 2)
        patch = photos[k % len(photos)][i : i + 2 * SIZE, j : j + 2 * SIZE]
        out.append(resize(patch, (SIZE, SIZE), anti_aliasing=True))
    return (
        (torch.tensor(np.stack(out), dtype=torch.float32).permute(0, 3, 1, 2) * 255).round().to(torch.uint8)
    )


@pytest.fixture(scope="module")
def attacker_images() -> Tensor:
    return photo_patches(64, seed=0)


@pytest.fixture(scope="module")
def encoders() -> list[Encoder]:
    torch.manual_seed(0)
    return [Encoder("small-cnn", {"width": 8}).eval() for _ in range(2)]


@pytest.fixture(scope="module")
def pretrained() -> Encoder:
    """A small CNN briefly pretrained with SimCLR on photo patches."""
    from zepad_bench.nn.ssl import pretrain

    encoder, _, _ = pretrain(
        "simclr", photo_patches(384, seed=3), arch_params={"width": 8}, epochs=2, batch_size=128, seed=0
    )
    return encoder.eval()


def make(name: str, eps: float, seed: int = 0) -> UniversalAttack:
    attack = CLASSES[name](eps, **FAST[name])
    attack.ctx = RunContext(seed=seed)
    return attack


def fitted(name: str, eps: float, encoders: list[Encoder], images: Tensor, seed: int = 0):
    attack = make(name, eps, seed)
    attack.fit(encoders, TensorStream(images))
    return attack


def test_all_attacks_registered():
    assert set(NAMES) <= set(load_registry().kind("attacks"))


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    eps=st.floats(1 / 255, 0.5),
    seed=st.integers(0, 2**16),
    kind=st.sampled_from(["uniform", "zeros", "ones", "binary"]),
    n=st.integers(1, 5),
)
def test_budget_and_range_for_any_input(name, eps, seed, kind, n, encoders, attacker_images):
    attack = fitted(name, eps, encoders, attacker_images, seed % 7)
    u = torch.rand((n, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))
    x = {"uniform": u, "zeros": u * 0, "ones": u * 0 + 1, "binary": (u > 0.5).float()}[kind]
    x_adv = attack.perturb(x)
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if isinstance(attack, UniversalAttack):  # one δ for every image
        assert torch.equal(x_adv, apply_delta(x, attack.delta))
        assert attack.delta.abs().max() <= eps + 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_unclamped_attacks_leave_the_unit_box_but_keep_the_budget(name, encoders, attacker_images):
    """``clamp=false`` (the authors' evaluation): x + δ is not clipped to [0, 1], the budget still holds;
    the default (``clamp=true``) never leaves [0, 1] on the same inputs."""
    eps = 8 / 255
    x = torch.cat([torch.zeros(2, 3, SIZE, SIZE), torch.ones(2, 3, SIZE, SIZE)])
    attack = CLASSES[name](eps, clamp=False, **FAST[name])
    attack.ctx = RunContext(seed=0)
    attack.fit(encoders, TensorStream(attacker_images))
    assert attack.clamp is False
    x_adv = attack.perturb(x)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert (x_adv < 0).any() or (x_adv > 1).any()
    clamped = fitted(name, eps, encoders, attacker_images).perturb(x)
    assert clamped.min() >= 0 and clamped.max() <= 1


@pytest.mark.parametrize("name", NAMES)
def test_fit_reads_only_unlabeled_tensors_and_leaves_encoders_untouched(name, attacker_images):
    torch.manual_seed(1)
    encoder = Encoder("small-cnn", {"width": 8}).train()  # train mode: BN statistics would move if used
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    stream = TensorStream(attacker_images)
    attack = make(name, 8 / 255)
    attack.fit([encoder], stream)
    attack.perturb(attacker_images[:4].float() / 255)
    if name == "ssp":
        assert stream.passes == 0  # per-sample SSP has nothing to fit
    else:
        assert stream.passes >= 1
    assert encoder.training and all(m.training for m in encoder.modules())
    assert all(p.grad is None for p in encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_perturbation(name, encoders, attacker_images):
    x = attacker_images[:6].float() / 255
    first = fitted(name, 8 / 255, encoders, attacker_images, seed=5).perturb(x)
    again = fitted(name, 8 / 255, encoders, attacker_images, seed=5).perturb(x)
    assert torch.equal(first, again)


def test_seed_changes_random_noise(encoders, attacker_images):
    x = attacker_images[:2].float() / 255
    a = fitted("random-noise", 8 / 255, encoders, attacker_images, seed=1).perturb(x)
    b = fitted("random-noise", 8 / 255, encoders, attacker_images, seed=2).perturb(x)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("name", [*NAMES, "art-universal"])
def test_state_round_trip_reproduces_perturb(name, encoders, attacker_images):
    if name == "art-universal":
        params = dict(
            attack="UniversalPerturbation",
            params={"max_iter": 1, "attacker_params": {"max_iter": 5}},
            clusters=3,
            max_images=24,
        )
        attack = CLASSES["art"](8 / 255, **params)
        attack.fit(encoders[:1], TensorStream(attacker_images[:24]))
        assert attack.delta is not None
        fresh = CLASSES["art"](8 / 255, **params)
    else:
        attack = fitted(name, 8 / 255, encoders[:1], attacker_images)
        fresh = make(name, 8 / 255)
    buffer = io.BytesIO()
    torch.save(attack.state_dict(), buffer)
    buffer.seek(0)
    fresh.ctx, fresh.encoders = RunContext(seed=0), encoders[:1]  # as the runner does before loading
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = attacker_images[:5].float() / 255
    assert torch.equal(fresh.perturb(x), attack.perturb(x))


def mean_cosine(encoder: Encoder, x: Tensor, x_adv: Tensor) -> float:
    with torch.no_grad():
        return F.cosine_similarity(encoder(x), encoder(x_adv), dim=1).mean().item()


def test_every_attack_beats_equal_budget_random_noise(pretrained, attacker_images):
    x = photo_patches(48, seed=1).float() / 255  # held-out images
    eps = 16 / 255
    cosine = {
        name: mean_cosine(pretrained, x, fitted(name, eps, [pretrained], attacker_images).perturb(x))
        for name in NAMES
    }
    control = cosine.pop("random-noise")
    assert all(value < control for value in cosine.values()), (cosine, control)


def test_deepfool_steps_to_the_nearest_linear_boundary():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3)).eval()
    x = 0.5 + 0.01 * torch.rand(4, 3, 8, 8)
    overshoot = 0.02
    r, flipped = deepfool(model, x, candidates=3, overshoot=overshoot, max_iter=10)
    assert flipped.all()
    with torch.no_grad():
        logits = model(x)
    w = model[1].weight
    label = logits.argmax(1)
    for i in range(len(x)):
        others = [k for k in range(3) if k != label[i]]
        gaps = [(logits[i, label[i]] - logits[i, k]) / (w[label[i]] - w[k]).norm() for k in others]
        nearest = min(g.item() for g in gaps)  # for a linear model one DeepFool step lands on this boundary
        assert r[i].norm().item() == pytest.approx((1 + overshoot) * (nearest + 1e-4), rel=1e-3)


def test_high_pass_keeps_only_frequencies_outside_the_disc():
    constant = torch.full((1, 3, 32, 32), 0.7)
    grid = torch.arange(32)
    checker = ((grid[:, None] + grid[None, :]) % 2).float().expand(1, 3, 32, 32) * 2 - 1
    assert high_pass(constant, 8).abs().max() < 1e-5
    assert torch.allclose(high_pass(checker, 8), checker, atol=1e-5)
    smooth = torch.sin(torch.arange(32) * 2 * torch.pi / 32).expand(1, 3, 32, 32)  # frequency 1 < r
    assert high_pass(smooth, 8).abs().max() < 1e-4
    assert high_pass(smooth, 0.5).abs().max() > 0.5


@pytest.mark.parametrize("size", [16, 24, 32, 64])
def test_generator_sized_to_images(size):
    generator = PerturbationGenerator(size, size, ngf=4, z_batch=3)
    assert generator(torch.randn(3, 100, 1, 1)).shape == (1, 3, size, size)


def test_generator_is_the_authors_net_at_64_px():
    generator = PerturbationGenerator(64, 64, ngf=128, z_batch=256)
    assert sum(p.numel() for p in generator.parameters()) == pytest.approx(12.66e6, rel=0.01)


def layer_energy(encoder: Encoder, x: Tensor, layer: str) -> float:
    with torch.no_grad():
        return layer_output(encoder, resolve_layer(encoder, layer, {}), x).pow(2).mean().item()


def test_pap_lifts_its_layer_more_than_noise(pretrained, attacker_images):
    x = photo_patches(32, seed=2).float() / 255
    layer = PAP_LAYERS["small-cnn"]
    pap = fitted("pap", 16 / 255, [pretrained], attacker_images).perturb(x)
    noise = fitted("random-noise", 16 / 255, [pretrained], attacker_images).perturb(x)
    assert layer_energy(pretrained, pap, layer) > layer_energy(pretrained, noise, layer)


def test_ssp_distorts_its_layer_more_than_noise(pretrained, attacker_images):
    x = photo_patches(32, seed=2).float() / 255
    tap = resolve_layer(pretrained, None, SSP_LAYERS)

    def distortion(x_adv: Tensor) -> float:
        with torch.no_grad():
            return F.mse_loss(layer_output(pretrained, tap, x_adv), layer_output(pretrained, tap, x)).item()

    ssp = fitted("ssp", 16 / 255, [pretrained], attacker_images).perturb(x)
    noise = fitted("random-noise", 16 / 255, [pretrained], attacker_images).perturb(x)
    assert distortion(ssp) > distortion(noise)


@pytest.mark.parametrize(
    "name, params",
    [
        ("advencoder", {"epochs": 0}),
        ("advencoder", {"betas": [0.5]}),
        ("advencoder", {"temperature": -1.0}),
        ("pap", {"layer": 3}),
        ("pap", {"mean_range": [0.6, 0.4]}),
        ("pap", {"step_size": 2}),
        ("uap", {"clusters": 1}),
        ("uap", {"target_fooling": 1.5}),
        ("uapgd", {"momentum": -0.1}),
        ("uapgd", {"steps": 2.5}),
        ("ssp", {"steps": True}),
        ("uapgd-reference", {"loss": "mse"}),
        ("uapgd-reference", {"weight_gain": -1.0}),
        ("ssp-universal", {"squared": 1}),
        ("ssp-universal", {"batch_size": 0}),
        ("pap", {"batch_size": 2.5}),
        ("art", {"attack": "not a class"}),
        ("art", {"attack": "ProjectedGradientDescent", "params": {"eps": 0.1}}),
        ("art", {"attack": "ProjectedGradientDescent", "params": [1]}),
        ("random-noise", {"distribution": "gauss"}),
        *((name, {**FAST[name], "clamp": "no"}) for name in NAMES),
    ],
)
def test_bad_params_rejected_at_init(name, params):
    with pytest.raises(ValueError):
        CLASSES[name](8 / 255, **params)


def test_art_check_rejects_unknown_attack_and_params():
    CLASSES["art"](8 / 255, attack="UniversalPerturbation", params={"max_iter": 1}).check()
    with pytest.raises(UserError, match="no evasion attack"):
        CLASSES["art"](8 / 255, attack="NoSuchAttack").check()
    with pytest.raises(UserError, match="no parameter"):
        CLASSES["art"](8 / 255, attack="ProjectedGradientDescent", params={"bogus": 1}).check()


@pytest.mark.parametrize("name", ["pap", "ssp"])
def test_layer_is_validated_against_named_modules(name, encoders, attacker_images):
    attack = CLASSES[name](8 / 255, layer="backbone.nope", **FAST[name])
    with pytest.raises(UserError, match="not a module"):
        attack.fit(encoders[:1], TensorStream(attacker_images))
    attack = CLASSES[name](8 / 255, layer="backbone.features.8", **FAST[name])
    attack.fit(encoders[:1], TensorStream(attacker_images))


def test_delta_size_mismatch_is_an_error():
    with pytest.raises(ValueError, match="fitted on"):
        apply_delta(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 16, 16))


def test_rebatch_regroups_a_stream_into_fixed_batches():
    stream = [torch.full((n, 1), float(i)) for i, n in enumerate([5, 3, 9, 2])]
    out = list(rebatch(stream, 4))
    assert [len(b) for b in out] == [4, 4, 4, 4]  # 19 images: the partial last group is dropped
    assert torch.equal(torch.cat(out), torch.cat(stream)[:16])
    assert list(rebatch(stream, None)) == stream


def test_epgd_increment_follows_the_reference_update():
    """g ← β·g + γ·(x' + d) + ∇, d ← d + α·sgn(g); the step is taken, then the loop stops if the
    evaluated point was already fooled (PAP's get_delta)."""
    base = torch.full((1, 3, 4, 4), 0.5)
    start = torch.linspace(-0.01, 0.01, 48).reshape(1, 3, 4, 4)
    calls = []

    def flat(d: Tensor) -> tuple[Tensor, bool]:  # no gradient: only the γ term moves d (x' > 0)
        calls.append(1)
        return (d * 0).sum(), False

    d = epgd_increment(flat, base, start, steps=4, step_size=0.003, momentum=0.5, weight_gain=1e-5)
    assert len(calls) == 4
    assert torch.allclose(d, start + 4 * 0.003)

    direction = -torch.ones_like(base)  # ∇ = −1 everywhere outweighs γ·x'

    def fooled_at_once(d: Tensor) -> tuple[Tensor, bool]:
        calls.append(1)
        return (d * direction).sum(), True

    calls.clear()
    d = epgd_increment(fooled_at_once, base, start, steps=4, step_size=0.003, momentum=0.5, weight_gain=1e-5)
    assert len(calls) == 1 and torch.allclose(d, start - 0.003)


def test_uapgd_reference_skips_fooled_images_and_steps_on_the_others(encoders):
    """The skip rule: an image already fooled by δ leaves δ unchanged; any other moves it (≤ ε)."""
    attack = CLASSES["uapgd-reference"](0.5, **FAST["uapgd-reference"])
    attack.ctx = RunContext(seed=0)
    rng = torch.Generator().manual_seed(0)
    probe = PseudoLabelProbe(encoders[:1], torch.randn(3, 32, generator=rng), torch.zeros(3))
    delta = 0.5 * torch.sign(torch.randn(1, 3, SIZE, SIZE, generator=rng))
    x = torch.rand(64, 3, SIZE, SIZE, generator=rng)
    with torch.no_grad():
        flipped = probe(x).argmax(1) != probe(apply_delta(x, delta)).argmax(1)
    assert flipped.any() and (~flipped).any()
    fooled, clean = x[flipped][:1], x[~flipped][:1]
    assert torch.equal(attack.update(probe, fooled, delta, 0.01, rng), delta)
    moved = attack.update(probe, clean, delta, 0.01, rng)
    assert not torch.equal(moved, delta) and moved.abs().max() <= 0.5
