"""Adversarial-training baselines: PGD-AT, TRADES, MART (adversarial_training.py) and Gen-AF (gen_af.py)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import SMOKE_SUITE
from torch import nn

from zepad_bench import load_registry
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages
from zepad_bench.nn.adversarial_tuning import EncoderWithHead, eval_mode, new_head
from zepad_bench.nn.batched import extract_features
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.heads import MLPHead, train_head
from zepad_bench.nn.pgd import pgd
from zepad_bench.stages import StageGraph
from zepad_bench.suite import load_suite
from zepad_bench_plugins.defenses.adversarial_training import MART, PGDAT, TRADES
from zepad_bench_plugins.defenses.gen_af import (
    GenAF,
    candidate_layers,
    layer_parameters,
    least_critical,
    project_weight_ball,
    robust_sensitivity,
)

LN3 = math.log(3)
FAST = {"epochs": 1, "batch_size": 32}
GEN_AF_FAST = {"sensitivity_epochs": 1, "sensitivity_samples": 32, "finetune_epochs": 1}


@pytest.fixture(scope="module")
def digits() -> tuple[LabeledImages, LabeledImages, LabeledImages]:
    """scikit-learn's digits at 16×16 RGB: (pretraining, tuning D_f, test) splits of 600/400/300."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.from_numpy(raw.images * 255 / 16).float().unsqueeze(1).repeat(1, 3, 1, 1)
    images = F.interpolate(images, size=16, mode="nearest").round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(raw.target).long()
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    classes = [str(d) for d in range(10)]
    return tuple(  # type: ignore[return-value]
        LabeledImages(images[perm[a:b]], labels[perm[a:b]], classes, "digits")
        for a, b in ((0, 600), (600, 1000), (1000, 1300))
    )


def identity_model() -> EncoderWithHead:
    """model(t) = t: the "images" handed to a loss are its logits, so each loss is checked by hand."""
    return EncoderWithHead(nn.Identity(), nn.Identity())


def with_ctx(defense, seed: int = 0):
    defense.ctx = RunContext(seed=seed)
    return defense


# --------------------------------------------------------------------------- losses, by hand
def test_pgd_at_loss_is_ce_on_adversarial_logits_only():
    clean, adv, y = torch.tensor([[5.0, -5.0]]), torch.tensor([[LN3, 0.0]]), torch.tensor([1])
    # p(x') = (3/4, 1/4), y = 1: CE = ln 4; the clean logits play no part.
    assert PGDAT().loss(identity_model(), clean, adv, y).item() == pytest.approx(math.log(4), abs=1e-6)


def test_trades_loss_by_hand():
    clean = torch.tensor([[0.0, LN3], [0.0, 0.0]])
    adv = torch.tensor([[LN3, 0.0], [0.0, 0.0]])
    y = torch.tensor([1, 0])
    # sample 1: p = (1/4, 3/4), p' = (3/4, 1/4): CE(p, y=1) = ln 4/3, KL(p‖p') = ¼ln⅓ + ¾ln3 = ½ln3;
    # sample 2: p = p' = (½, ½): CE = ln 2, KL = 0. Batch means; β = 6 by default.
    ce = (math.log(4 / 3) + math.log(2)) / 2
    expected = ce + 6 * (0.5 * LN3) / 2
    assert TRADES().beta == 6.0
    assert TRADES().loss(identity_model(), clean, adv, y).item() == pytest.approx(expected, abs=1e-6)
    # KL(p‖p'), not KL(p'‖p): the two differ for an asymmetric pair.
    p, q = (0.1, 0.9), (0.6, 0.4)
    clean, adv = torch.tensor([[math.log(v) for v in p]]), torch.tensor([[math.log(v) for v in q]])
    kl = sum(a * math.log(a / b) for a, b in zip(p, q))
    expected = -math.log(0.9) + 2 * kl
    got = TRADES(beta=2).loss(identity_model(), clean, adv, torch.tensor([1])).item()
    assert got == pytest.approx(expected, abs=1e-6)


def test_mart_loss_by_hand():
    logs = lambda *p: [math.log(v) for v in p]  # noqa: E731
    clean = torch.tensor([logs(0.6, 0.2, 0.2), logs(0.2, 0.2, 0.6)])
    adv = torch.tensor([logs(0.5, 0.3, 0.2), logs(0.5, 0.3, 0.2)])
    y = torch.tensor([0, 2])
    # sample 1: p'_y is the top class, so the boosted term uses the runner-up (0.3);
    # sample 2: the top class (0.5) is wrong, so it is used.
    bce = (-math.log(0.5) - math.log(1.0001 - 0.3) - math.log(0.2) - math.log(1.0001 - 0.5)) / 2
    kl1 = 0.6 * math.log(0.6 / 0.5) + 0.2 * math.log(0.2 / 0.3) + 0.2 * math.log(0.2 / 0.2)
    kl2 = 0.2 * math.log(0.2 / 0.5) + 0.2 * math.log(0.2 / 0.3) + 0.6 * math.log(0.6 / 0.2)
    weighted = (kl1 * (1.0000001 - 0.6) + kl2 * (1.0000001 - 0.6)) / 2
    got = MART().loss(identity_model(), clean, adv, y).item()
    assert got == pytest.approx(bce + 6 * weighted, abs=1e-5)


def test_gen_af_stage_one_loss_by_hand():
    clean = torch.tensor([[LN3, 0.0], [0.0, LN3]])  # p_y = 3/4: clean CE ln(4/3) each
    adv = torch.tensor([[0.0, LN3], [LN3, 0.0]])  # p'_y = 1/4: adversarial CE ln 4 each
    y = torch.tensor([0, 1])
    # Two samples: every distance minus its row's nearest neighbour is 0, so L_f depends only on
    # the label shift. W = tanh((w_i + w_j)/32) with w = clean CE; the adversarial (target) side
    # moves same-class pairs (here only i = j) to distance 0 and the other pair to 2W; the benign side
    # stays uniform (Q = ½). Similarities 1 − d/2, rows normalised; binary KL summed over the 4 pairs.
    w = math.tanh(2 * math.log(4 / 3) / 32)
    a, b = 1 - 0.5e-7, 1 - w  # distances clamp at 1e-7
    target = [a / (a + b), b / (a + b)] * 2
    lf = sum(p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5) for p in target)
    expected = math.log(4) + 20 * lf
    got = GenAF().loss(identity_model(), clean, adv, y).item()
    assert got == pytest.approx(expected, abs=1e-5)
    assert GenAF(lambda_f=0).loss(identity_model(), clean, adv, y).item() == pytest.approx(math.log(4))


@pytest.mark.parametrize("plugin", ["pgd-at", "trades", "mart", "gen-af"])
def test_written_defaults_keep_the_tuning_key_and_a_changed_value_changes_it(tmp_path, plugin):
    def tuning(lines: str) -> tuple[str, dict]:
        table = f'[defenses.d]\nplugin = "{plugin}"\n{lines}\n\n[grid]'
        (tmp_path / "s.toml").write_text(SMOKE_SUITE.replace("[grid]", table))
        suite = load_suite(tmp_path / "s.toml", load_registry(["zb_outside_plugin"]))
        node = StageGraph(suite, suite.registry).defense(suite.with_axes(defenses=["d"]).cells()[0])
        return node.key, node.material["params"]

    key, params = tuning("")  # the key holds every resolved parameter, defaults filled in
    written = {k: v for k, v in params.items() if v is not None and not isinstance(v, dict)}
    assert tuning("\n".join(f"{k} = {json.dumps(v)}" for k, v in written.items()))[0] == key
    for changed in ("eps = 0.01", f"epochs = {params['epochs'] + 1}", f"head_lr = {params['head_lr'] / 2}"):
        assert tuning(changed)[0] != key, changed


def test_bad_parameters_are_rejected():
    assert PGDAT(eps=0.1).eps == 0.1
    for bad in ({"eps": 0}, {"steps": 0}, {"start": "gauss"}, {"epochs": 0}, {"gamma": 1.5}):
        with pytest.raises(ValueError):
            PGDAT(**bad)
    with pytest.raises(ValueError):
        TRADES(beta=-1)
    with pytest.raises(ValueError):
        GenAF(finetune_fraction=0)
    with pytest.raises(ValueError, match="unknown parameter 'beta'"):
        PGDAT(beta=6)


# --------------------------------------------------------------------------- inner maximisation
@pytest.mark.parametrize("cls", [PGDAT, TRADES, MART, GenAF])
def test_inner_maximisation_raises_its_objective(cls, digits):
    torch.manual_seed(0)
    encoder = Encoder("small-cnn", {"width": 8})
    model = EncoderWithHead(encoder, new_head(encoder, digits[1], "cpu")).train()
    defense = with_ctx(cls(eps=8 / 255, step_size=2 / 255))
    x, y = next(digits[1].batches(64))
    x_adv = defense.adversarial(model, x, y, torch.Generator().manual_seed(0))
    assert model.training and all(p.grad is None for p in model.parameters())  # no mode or gradient leak
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    noisy = (x + 8 / 255 * signs).clamp(0, 1)  # the same budget spent at random
    with eval_mode(model), torch.no_grad():
        objective = defense.inner_objective(model, x, y)
        at_x, at_noise, at_adv = objective(x).item(), objective(noisy).item(), objective(x_adv).item()
    assert at_adv > at_noise and at_adv > at_x


# --------------------------------------------------------------------------- Gen-AF stage II
class ToyEncoder(nn.Module):
    """Layers named ``layer1.0.conv1`` and ``layer1.0.conv10``: a substring match of the first hits both."""

    feature_dim = 4

    def __init__(self):
        super().__init__()
        block = nn.ModuleDict(
            {"conv1": nn.Conv2d(3, 4, 3, padding=1), "conv10": nn.Conv2d(4, 4, 3, padding=1)}
        )
        self.layer1 = nn.ModuleList([block])
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        block = self.layer1[0]
        return self.fc(F.relu(block["conv10"](F.relu(block["conv1"](x)))).mean((2, 3)))


def test_least_critical_rounds_up_and_orders_by_sensitivity():
    sensitivity = {"a": 0.5, "b": 0.1, "c": 0.3, "d": 0.2, "e": 0.9}
    assert least_critical(sensitivity, 0.2) == ["b"]  # 0.2 × 5 = 1 exactly (no float overshoot to 2)
    assert least_critical({**sensitivity, "f": 0.0}, 0.2) == ["f", "b"]  # ceil(1.2) = 2
    assert least_critical({"a": 1.0, "b": 2.0, "c": 3.0}, 0.2) == ["a"]  # ceil(0.6) = 1
    assert least_critical(sensitivity, 1.0) == ["b", "d", "c", "a", "e"]


def test_layer_selection_is_exact_by_module_name(digits):
    toy = ToyEncoder()
    assert list(candidate_layers(toy)) == ["layer1.0.conv1", "layer1.0.conv10", "fc"]
    selected = layer_parameters(toy, ["layer1.0.conv1"])
    assert sorted(selected) == ["layer1.0.conv1.bias", "layer1.0.conv1.weight"]

    torch.manual_seed(0)
    model = EncoderWithHead(toy, MLPHead(4, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = with_ctx(GenAF(finetune_epochs=1, batch_size=64)).finetune(
        model, ["encoder.layer1.0.conv1"], digits[1]
    )
    assert len(history) == 1
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"encoder.layer1.0.conv1.weight", "encoder.layer1.0.conv1.bias"}
    assert all(p.requires_grad for p in model.parameters())  # the freeze is undone


def test_robust_sensitivity_is_a_bounded_loss_increase(digits):
    weight = torch.tensor([3.0, 4.0])  # ‖W0‖ = 5: radius 0.1 allows ‖ΔW‖ ≤ 0.5
    moved = weight + torch.tensor([3.0, 0.0])
    project_weight_ball(moved, weight, 0.1)
    assert moved.tolist() == pytest.approx([3.5, 4.0])
    inside = weight + torch.tensor([0.0, 0.2])
    project_weight_ball(inside, weight, 0.1)
    assert inside.tolist() == pytest.approx([3.0, 4.2])

    torch.manual_seed(0)
    model = EncoderWithHead(ToyEncoder(), MLPHead(4, 10))
    x, y = digits[1].float_images()[:64], digits[1].labels[:64]
    layers = {f"encoder.{k}": m for k, m in candidate_layers(model.encoder).items()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    frozen = robust_sensitivity(model, layers, x, y, radius=0.0, epochs=2, batch_size=32)
    assert frozen == {name: 0.0 for name in layers}  # no room to move: no loss increase
    sensitivity = robust_sensitivity(model, layers, x, y, radius=0.1, epochs=2, batch_size=32)
    assert min(sensitivity.values()) >= 0 and max(sensitivity.values()) > 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # weights restored


def test_gen_af_fit_finetunes_the_least_critical_encoder_layers(digits):
    victim = Encoder("small-cnn", {"width": 8})
    model = with_ctx(GenAF(**FAST, **GEN_AF_FAST)).fit(victim, [], digits[1])
    info = model.info
    assert sorted(info["sensitivity"]) == [f"encoder.backbone.features.{i}" for i in (0, 3, 6, 9)]
    assert info["finetuned_layers"] == least_critical(info["sensitivity"], 0.2)
    assert len(info["finetuned_layers"]) == 1 and len(info["finetune_history"]) == 1


# --------------------------------------------------------------------------- fit: shape, determinism
def _state(defended) -> dict[str, torch.Tensor]:
    branch = defended.branches[0]
    return {**branch.encoder.state_dict(), **{f"head.{k}": v for k, v in branch.head.state_dict().items()}}


@pytest.mark.parametrize("cls,params", [(PGDAT, {}), (TRADES, {}), (MART, {}), (GenAF, GEN_AF_FAST)])
def test_fit_is_one_tuned_branch_and_deterministic_by_seed(cls, params, digits):
    torch.manual_seed(0)
    victim = Encoder("small-cnn", {"width": 8})
    data = digits[1].subset(torch.arange(96))
    victim_state = {k: v.clone() for k, v in victim.state_dict().items()}
    first = with_ctx(cls(**FAST, **params), seed=1).fit(victim, [victim.copy()], data)
    again = with_ctx(cls(**FAST, **params), seed=1).fit(victim, [], data)
    other = with_ctx(cls(**FAST, **params), seed=2).fit(victim, [], data)
    (branch,) = first.branches
    assert (branch.name, branch.role, branch.head_data) == ("tuned", "tuned", "digits")
    assert isinstance(branch.head, MLPHead) and branch.encoder is not victim
    assert all(torch.equal(v, victim_state[k]) for k, v in victim.state_dict().items())  # victim untouched
    a, b, c = _state(first), _state(again), _state(other)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert first.info["history"] == again.info["history"]


# --------------------------------------------------------------------------- robustness
def _robust_accuracy(model: EncoderWithHead, data: LabeledImages, eps: float) -> float:
    x, y = data.float_images(), data.labels
    with eval_mode(model):
        x_adv = pgd(
            lambda xa: F.cross_entropy(model(xa), y, reduction="sum"),
            x,
            eps,
            eps / 4,
            10,
            True,
            torch.Generator().manual_seed(5),
        )
        with torch.no_grad():
            return 100.0 * (model(x_adv).argmax(1) == y).float().mean().item()


def test_adversarial_training_raises_pgd_robust_accuracy(digits):
    """Each baseline beats the untuned encoder + a head trained on its clean features under PGD-10.

    The victim is a small CNN pretrained (supervised, 3 epochs) on a disjoint split. Gen-AF runs with
    λ = 1: its λ = 20 L_f (a sum over the batch's pairs) swamps the CE at this scale.
    """
    pretrain, tuning, test = digits
    torch.manual_seed(0)
    victim = Encoder("small-cnn", {"width": 8})
    probe = nn.Linear(victim.feature_dim, 10)
    optimizer = torch.optim.Adam([*victim.parameters(), *probe.parameters()], 1e-2)
    victim.train()
    for epoch in range(3):
        for x, y in pretrain.batches(64, shuffle=True, generator=torch.Generator().manual_seed(epoch)):
            optimizer.zero_grad()
            F.cross_entropy(probe(victim(x)), y).backward()
            optimizer.step()
    victim.eval()
    eps = 8 / 255
    head = train_head(extract_features(victim, tuning.images), tuning.labels, 10, epochs=20, seed=0)
    baseline = _robust_accuracy(EncoderWithHead(victim, head), test, eps)
    common = {"eps": eps, "step_size": eps / 4, "epochs": 3, "batch_size": 64, "encoder_lr": 1e-3}
    gen_af = {"lambda_f": 1.0, "sensitivity_epochs": 2, "sensitivity_samples": 200, "finetune_epochs": 3}
    for cls, params in ((PGDAT, {}), (TRADES, {}), (MART, {}), (GenAF, gen_af)):
        (branch,) = with_ctx(cls(**common, **params)).fit(victim, [], tuning).branches
        robust = _robust_accuracy(EncoderWithHead(branch.encoder, branch.head), test, eps)
        assert robust > baseline + 5, (cls.name, robust, baseline)
