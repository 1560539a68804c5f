"""ZePAD defense: RFDM, L_f (both forms), PGD, the tuning step's gradients, detection, fit end to end."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torch.optim.optimizer as optim_hooks

from zepad_bench import load_registry
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages
from zepad_bench.nn.adversarial_tuning import EncoderWithHead
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.heads import MLPHead
from zepad_bench_plugins.defenses.zepad import (
    ZePAD,
    distribution_loss,
    ensemble_log_weights,
    rfdm_log_weights,
)

TINY = dict(epochs=1, batch_size=16, steps=2, bmp_epochs=1, bmp_batch_size=16)


def toy_data(n: int = 32, size: int = 16, seed: int = 0, classes: int = 2) -> LabeledImages:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.rand(n, 3, size, size, generator=g) * 0.5 + labels.view(-1, 1, 1, 1) * 0.4
    names = [str(c) for c in range(classes)]
    return LabeledImages((images * 255).round().to(torch.uint8), labels, names, "toy")


def encoder(seed: int) -> Encoder:
    torch.manual_seed(seed)
    return Encoder("small-cnn", {"width": 8})


def defense(seed: int = 0, **params) -> ZePAD:
    d = ZePAD(**{**TINY, **params})
    d.ctx = RunContext(seed=seed)
    return d


def states(model) -> list[torch.Tensor]:
    out = []
    for b in model.branches:
        out += list(b.encoder.state_dict().values()) + (list(b.head.state_dict().values()) if b.head else [])
    return out


# ------------------------------------------------------------------ RFDM and the other ensembles
def test_rfdm_weights_hand_computed():
    p1 = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    p2 = torch.tensor([[0.3, 0.7], [0.5, 0.5]])
    c = [[m * math.exp(3 * (m - 0.5)) for m in ms] for ms in ([0.9, 0.6], [0.7, 0.5])]
    expected = torch.tensor([[c[b][n] / (c[0][n] + c[1][n]) for n in range(2)] for b in range(2)])
    weights = rfdm_log_weights([p1.log(), p2.log()]).exp()
    assert torch.allclose(weights, expected, atol=1e-6)
    # sample 0: branch 1 (m = 0.9 → c = 0.9·e^1.2 ≈ 2.988) outweighs branch 2 (0.7·e^0.6 ≈ 1.276)
    assert weights[0, 0].item() == pytest.approx(2.98804 / (2.98804 + 1.27548), abs=1e-4)


def test_fuse_is_the_rfdm_weighted_sum_of_logits_or_probabilities():
    logits = [torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 0.5, 0.0]])]
    probs = [torch.softmax(y, 1) for y in logits]
    m = [p.max().item() for p in probs]
    c = [v * math.exp(3 * (v - 0.5)) for v in m]
    w = [v / sum(c) for v in c]
    expected_logits = w[0] * logits[0] + w[1] * logits[1]
    assert torch.allclose(defense(fuse_on="logits").fuse(logits), expected_logits, atol=1e-6)
    assert torch.allclose(defense(protocol="authors").fuse(logits), expected_logits, atol=1e-6)
    expected_probs = w[0] * probs[0] + w[1] * probs[1]
    assert torch.allclose(defense().fuse(logits), expected_probs, atol=1e-6)  # corrected: probabilities
    assert torch.allclose(
        defense(ensemble="average", fuse_on="logits").fuse(logits), (logits[0] + logits[1]) / 2
    )
    assert torch.equal(defense(fuse_on="logits").fuse(logits[:1]), logits[0])  # one branch: identity


def test_entropy_ensemble_weights_the_less_confident_branch_more():
    p1, p2 = torch.tensor([[0.9, 0.1]]), torch.tensor([[0.5, 0.5]])
    h1 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    h2 = math.log(2)
    w = ensemble_log_weights([p1.log(), p2.log()], "entropy").exp()
    assert torch.allclose(w, torch.tensor([[h1 / (h1 + h2)], [h2 / (h1 + h2)]]), atol=1e-6)
    assert w[1, 0] > w[0, 0]


# ------------------------------------------------------------------ L_f
def lf_paper_by_hand(b: list[list[float]], a: list[list[float]]) -> float:
    """Eq. 5–6 literally: cosine distance minus the row's nearest-neighbour distance, normalised on j ≠ i."""

    def dist(z):
        n = len(z)
        norm = [math.sqrt(sum(x * x for x in row)) for row in z]
        d = [
            [1 - sum(x * y for x, y in zip(z[i], z[j])) / (norm[i] * norm[j]) for j in range(n)]
            for i in range(n)
        ]
        out = []
        for i in range(n):
            rho = min(d[i][j] for j in range(n) if j != i)
            num = [2 - (d[i][j] - rho) if j != i else 0.0 for j in range(n)]
            out.append([v / sum(num) for v in num])
        return out

    db, da = dist(b), dist(a)
    n = len(b)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                p, q = db[i][j], da[i][j]
                total += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    return total


def lf_label_aware_by_hand(benign, adversarial, labels, weights) -> float:
    """The authors' ``genetic_regularization`` step by step (reference notes §2), with explicit loops."""
    n, eps = len(benign), 1e-7

    def shifted(z):
        z = [[x / (math.sqrt(sum(v * v for v in row)) + eps) for x in row] for row in z]
        d = [[1 - sum(x * y for x, y in zip(z[i], z[j])) for j in range(n)] for i in range(n)]
        rho = [min(d[i][j] for j in range(n) if j != i) for i in range(n)]
        return [[0.0 if i == j else d[i][j] - rho[i] for j in range(n)] for i in range(n)]

    def distribution(d):
        p = [[((1 - min(max(v, eps), 2 - eps)) + 1) / 2 for v in row] for row in d]
        return [[v / sum(row) for v in row] for row in p]

    w = [[math.tanh((weights[i] + weights[j]) / 32) for j in range(n)] for i in range(n)]
    m = [[1.0 if labels[i] != labels[j] else -1.0 for j in range(n)] for i in range(n)]
    model = distribution(shifted(benign))
    t = shifted(adversarial)
    target = distribution(
        [[(1 - w[i][j]) * t[i][j] + 2 * m[i][j] * w[i][j] for j in range(n)] for i in range(n)]
    )
    total = 0.0
    for prow, qrow in zip(target, model):
        for p, q in zip(prow, qrow):
            total += p * (math.log(p + eps) - math.log(q + eps))
            total += (1 - p) * (math.log(1 - p + eps) - math.log(1 - q + eps))
    return total


def t64(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


BENIGN = [[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.5, 0.5, 0.5], [-0.4, 0.2, 1.0]]
ADVERSARIAL = [[0.8, 0.6, 0.1], [0.3, 0.7, -0.2], [0.9, -0.1, 0.4], [-0.2, 0.5, 0.8]]


def test_paper_lf_matches_eq5_eq6_by_hand():
    got = distribution_loss(t64(BENIGN), t64(ADVERSARIAL))
    expected = lf_paper_by_hand(BENIGN, ADVERSARIAL)
    assert expected > 1e-3
    assert got.item() == pytest.approx(expected, rel=1e-4)


def test_paper_lf_is_exactly_zero_when_adversarial_equals_benign():
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert distribution_loss(z, z.clone()).item() == 0.0
    assert distribution_loss(z, z + 0.1).item() > 0


def test_label_aware_lf_matches_the_authors_steps_by_hand():
    labels, weights = [0, 1, 0, 1], [0.5, 2.0, 1.0, 3.0]
    got = distribution_loss(t64(BENIGN), t64(ADVERSARIAL), torch.tensor(labels), t64(weights))
    expected = lf_label_aware_by_hand(BENIGN, ADVERSARIAL, labels, weights)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    # the label shift matters: with other labels the loss changes
    other = distribution_loss(t64(BENIGN), t64(ADVERSARIAL), torch.tensor([0, 0, 1, 1]), t64(weights))
    assert other.item() != pytest.approx(got.item(), rel=1e-3)


# ------------------------------------------------------------------ tuning internals
def tiny_model(seed: int = 0, classes: int = 2) -> EncoderWithHead:
    enc = encoder(seed)
    return EncoderWithHead(enc, MLPHead(enc.feature_dim, classes)).eval()


def test_pgd_stays_in_the_eps_ball_and_raises_the_loss():
    data = toy_data(8)
    x, y = data.float_images(), data.labels
    model = tiny_model()
    d = defense(steps=5, eps=0.03, step_size=0.01)
    x_adv = d.adversarial(model, x, y)
    assert (x_adv - x).abs().max().item() <= 0.03 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y)
    assert all(p.grad is None for p in model.parameters())  # crafting leaves no parameter gradient


def test_step_gradients_are_those_of_the_training_loss_alone():
    """At each optimiser step, p.grad equals ∂L(x, x_adv, y)/∂p recomputed from the same adversarial batch."""
    d = defense(steps=3, use_bmp=False, num_auxiliaries=0)
    objective, adversarial = d.objective, d.adversarial
    seen: dict = {}

    def record_adversarial(model, x, y, attack=None, generator=None):
        seen["x_adv"] = adversarial(model, x, y, attack, generator)
        return seen["x_adv"]

    def record_objective(model, x, x_adv, y):
        seen.update(model=model, x=x, y=y, rng=torch.get_rng_state())
        return objective(model, x, x_adv, y)

    checked = []

    def compare(optimizer, args, kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.set_rng_state(seen["rng"])  # same dropout mask as the training forward
        with torch.enable_grad():
            loss = objective(seen["model"], seen["x"], seen["x_adv"], seen["y"])
            expected = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, expected):
            g = torch.zeros_like(p) if g is None else g
            got = torch.zeros_like(p) if p.grad is None else p.grad
            assert torch.allclose(got, g, rtol=1e-5, atol=1e-7)
        checked.append(len(params))

    d.adversarial, d.objective = record_adversarial, record_objective
    handle = optim_hooks.register_optimizer_step_pre_hook(compare)
    try:
        d.fit(encoder(0), [], toy_data(32))
    finally:
        handle.remove()
    assert len(checked) == 2  # 32 images, batch 16, 1 epoch


# ------------------------------------------------------------------ detection
def test_detection_rule():
    mpae1 = torch.tensor([[0.9, 0.1], [0.75, 0.25], [0.6, 0.4]])
    mpae2 = torch.tensor([[0.5, 0.5], [0.7, 0.3], [0.95, 0.05]])
    bmp = torch.tensor([[0.7, 0.3], [0.7, 0.3], [0.8, 0.2]])
    d = defense()
    score = d.detection_score([mpae1, mpae2, bmp])
    assert torch.allclose(score, torch.tensor([0.2, 0.05, 0.15]), atol=1e-6)  # max over MPAE − BMP
    assert (score > d.detection_threshold).tolist() == [True, False, True]
    mean = defense(mpae_confidence="mean").detection_score([mpae1, mpae2, bmp])
    assert torch.allclose(mean, torch.tensor([0.0, 0.025, -0.025]), atol=1e-6)
    assert defense(use_bmp=False).detection_score([mpae1, mpae2]) is None
    assert defense(detection_threshold=0.3).detection_threshold == 0.3


# ------------------------------------------------------------------ fit end to end
def test_fit_end_to_end_is_deterministic_by_seed():
    data, victim, aux = toy_data(32), encoder(0), encoder(1)
    before = [v.clone() for v in victim.state_dict().values()]
    first = defense(seed=0, joint_heads=True).fit(victim, [aux], data)
    names = [(b.name, b.role) for b in first.branches]
    assert names == [("mpae:victim", "mpae"), ("mpae:aux0", "mpae"), ("bmp", "bmp")]
    assert all(b.head is not None and b.head_data == "toy" for b in first.branches[:2])
    assert first.branches[2].head is None
    assert all(
        b.head is None for b in defense(seed=0).fit(victim, [aux], data).branches
    )  # default: per-task heads
    assert all(torch.equal(a, b) for a, b in zip(before, victim.state_dict().values()))  # inputs untouched
    assert any(not torch.equal(a, b) for a, b in zip(before, first.branches[0].encoder.state_dict().values()))
    again = defense(seed=0, joint_heads=True).fit(victim, [aux], data)
    assert all(torch.equal(a, b) for a, b in zip(states(first), states(again)))
    other = defense(seed=1, joint_heads=True).fit(victim, [aux], data)
    assert any(not torch.equal(a, b) for a, b in zip(states(first), states(other)))


def test_bmp_encoder_never_sees_labels(monkeypatch):
    import zepad_bench.nn.ssl as ssl

    calls, pretrain = [], ssl.pretrain

    def spy(method, images, **kwargs):
        calls.append((method, images, kwargs))
        return pretrain(method, images, **kwargs)

    monkeypatch.setattr(ssl, "pretrain", spy)
    data = toy_data(32)
    shuffled = LabeledImages(data.images, data.labels.flip(0) ^ 1, data.classes, data.name)
    only_bmp = dict(use_mpae_victim=False, num_auxiliaries=0)
    a = defense(**only_bmp).fit(encoder(0), [], data)
    b = defense(**only_bmp).fit(encoder(0), [], shuffled)
    assert [br.role for br in a.branches] == ["bmp"]
    assert all(torch.equal(x, y) for x, y in zip(states(a), states(b)))
    assert [c[0] for c in calls] == ["simclr", "simclr"] and calls[0][1] is data.images
    assert all(kwargs.get("labels") is None for _, _, kwargs in calls)


def test_ablations_and_auxiliary_count():
    data, victim, aux = toy_data(16), encoder(0), encoder(1)
    untuned = defense(adversarial_tuning=False, bmp="public").fit(victim, [aux], data)
    assert [b.name for b in untuned.branches] == ["mpae:victim", "mpae:aux0", "bmp"]
    for branch, public in zip(untuned.branches, [victim, aux, victim]):
        assert branch.head is None
        tuned, original = branch.encoder.state_dict().values(), public.state_dict().values()
        assert all(torch.equal(x, y) for x, y in zip(tuned, original))
    no_aux = defense(adversarial_tuning=False, use_bmp=False, num_auxiliaries=0).fit(victim, [aux], data)
    assert [b.name for b in no_aux.branches] == ["mpae:victim"]
    with pytest.raises(Exception, match="num_auxiliaries"):
        defense(num_auxiliaries=2).fit(victim, [aux], data)
    with pytest.raises(ValueError):
        ZePAD(use_mpae_victim=False, num_auxiliaries=0, use_bmp=False)


def test_generator_adversary_tunes_on_the_fitted_attack_output():
    """Algorithm 1: D_adv = x + G(x), G one attack fitted on the clean victim (here the outside sign one)."""
    d = defense(
        adversary="generator",
        generator="outside-sign",
        eps=8 / 255,
        use_bmp=False,
        num_auxiliaries=0,
    )
    d.ctx.plugins = load_registry(["zb_outside_plugin"]).get  # the host's lookup of the suite's plugins
    adversarial, pairs = d.adversarial, []

    def record(model, x, y, attack=None, generator=None):
        pairs.append((x, adversarial(model, x, y, attack, generator), attack))
        return pairs[-1][1]

    d.adversarial = record
    d.fit(encoder(0), [], toy_data(16))
    x, x_adv, attack = pairs[0]
    assert attack is not None and torch.equal(x_adv, (x + attack.delta).clamp(0, 1))


def test_val_selection_never_tunes_on_the_held_out_split_and_keeps_the_best_epoch():
    d = defense(selection="val", val_fraction=0.25, epochs=3, use_bmp=False, num_auxiliaries=0)
    objective, sizes, held_out = d.objective, [], []
    scores = iter([10.0, 50.0, 20.0])  # validation accuracy per epoch: the middle one is best

    def record(model, x, x_adv, y):
        sizes.append(len(x))
        return objective(model, x, x_adv, y)

    def score(model, val, attack, seed):
        held_out.append(len(val))
        return next(scores)

    d.objective, d._robust_accuracy = record, score
    model = d.fit(encoder(0), [], toy_data(32))
    assert sum(sizes) == 3 * 24 and held_out == [8, 8, 8]  # 8 of 32 images held out, 3 epochs
    assert model.info["selected_epoch"]["victim"] == 1
