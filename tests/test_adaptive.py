"""Defense-aware and adaptive scenarios: contract, validation, runner, pipeline gradients, ensemble."""

from __future__ import annotations

import pytest
import torch
from conftest import adaptive_suite_text as suite_text

from zepad_bench import load_registry
from zepad_bench.adaptive_target import AdaptiveTarget
from zepad_bench.context import RunContext
from zepad_bench.errors import SuiteError, UserError
from zepad_bench.interfaces import Branch, DefendedModel
from zepad_bench.pipeline import (
    classification_target,
    evaluate,
    judge,
    subset,
    wilson_interval,
)
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite
from zepad_bench_plugins.attacks.adaptive import (
    STANDARD,
    AdaptiveEnsemble,
    targeted_dlr_loss,
    targeted_margin_loss,
)
from zepad_bench_plugins.defenses.none import NoDefense
from zepad_bench_plugins.defenses.zepad import ZePAD
from zepad_bench_plugins.tasks.detection import Detection, flagged_prediction


def load(path):
    return load_suite(path, load_registry(["zb_outside_plugin"]))


# ------------------------------------------------------------------ toy targets


def toy_model(defense, branches: int = 3, classes: int = 5, margin: float = 0.0, seed: int = 0, scale=1.0):
    """Linear-tanh encoders on 3×8×8 images and linear heads whose class-0 logit is ``margin`` above
    the others (plus a feature-dependent part of size ``scale``), so gradients exist and decisions can
    be flipped."""
    g = torch.Generator().manual_seed(seed)
    encoders, heads = [], []
    for _ in range(branches):
        linear = torch.nn.Linear(192, 16)
        head = torch.nn.Linear(16, classes)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(16, 192, generator=g) * 4 / 192**0.5)
            linear.bias.zero_()
            head.weight.copy_(torch.randn(classes, 16, generator=g) * scale)
            head.bias.zero_()
            head.bias[0] = margin
        encoders.append(
            torch.nn.Sequential(torch.nn.Flatten(), linear, torch.nn.Tanh()).requires_grad_(False)
        )
        heads.append(head.requires_grad_(False))
    roles = ["mpae"] * (branches - 1) + ["bmp"]
    model = DefendedModel([Branch(f"b{i}", r, e) for i, (r, e) in enumerate(zip(roles, encoders))], defense)
    return model, heads


def attack(eps: float, **params) -> AdaptiveEnsemble:
    made = AdaptiveEnsemble(eps, **{"apgd_steps": 10, "square_queries": 50, **params})
    made.ctx = RunContext(seed=0)
    return made


FUSIONS = [
    pytest.param(ZePAD(ensemble="rfdm"), id="rfdm"),
    pytest.param(ZePAD(ensemble="average"), id="average"),
    pytest.param(ZePAD(ensemble="entropy"), id="entropy"),
    pytest.param(NoDefense(), id="mean"),
]


# ------------------------------------------------------------------ numerics an attacker can climb


@pytest.mark.parametrize("defense", FUSIONS)
def test_input_gradients_survive_a_logit_margin_of_30(defense):
    """Every branch 30 logits sure of class 0: the fused cross-entropy still has a finite, non-zero
    input gradient on every sample (a clamped log of fused probabilities has exactly zero there)."""
    model, heads = toy_model(defense, margin=30.0, scale=0.05)  # every margin within 30 ± 0.5
    target = classification_target(model, heads, 5)
    x, y = torch.rand(8, 3, 8, 8), torch.zeros(8, dtype=torch.long)
    fooled, stats = judge(target, x, y, batch_size=4)
    assert not fooled.any()  # the margin holds: every sample is classified as 0
    assert stats["grad_zero_frac"] == 0 and stats["grad_nan_frac"] == 0 and stats["grad_norm"] > 0


def test_probability_fusion_is_computed_in_log_space():
    model, heads = toy_model(ZePAD(), margin=3.0)
    logits = [h(e(torch.rand(4, 3, 8, 8))) for e, h in zip([b.encoder for b in model.branches], heads)]
    fused = model.fuse(logits)  # probabilities (fuse_on = "probabilities")
    assert torch.allclose(fused.sum(1), torch.ones(4)) and torch.allclose(
        model.fused_scores(logits).exp(), fused
    )


def test_gradient_flows_through_the_rfdm_weights():
    """ZePAD's fusion is differentiable end to end: the input gradient is that of Eq. 7–8's
    Σ W_i·p_i with the weights W depending on x, not that with the weights held constant."""
    model, heads = toy_model(ZePAD(), margin=1.0)
    encoders = [b.encoder for b in model.branches]
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(model.fuse([h(e(x)) for e, h in zip(encoders, heads)])[:, 1].sum(), x)

    def by_hand(detach: bool) -> torch.Tensor:
        probabilities = [torch.softmax(h(e(x)), 1) for e, h in zip(encoders, heads)]
        m = torch.stack([p.max(1).values for p in probabilities])
        c = m * torch.exp(3 * (m - 0.5))
        w = c / c.sum(0)
        w = w.detach() if detach else w
        fused = sum(wi.unsqueeze(1) * p for wi, p in zip(w, probabilities))
        return torch.autograd.grad(fused[:, 1].sum(), x)[0]

    assert torch.allclose(grad, by_hand(detach=False), atol=1e-6)
    assert not torch.allclose(grad, by_hand(detach=True), atol=1e-6)


# ------------------------------------------------------------------ the ensemble, as a critic checks it


def clean_labelled(target, n: int = 48, seed: int = 0):
    x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return x, target(x)[1]  # every sample starts classified right


def test_ra_is_ba_at_a_vanishing_budget_and_falls_as_the_budget_grows():
    model, heads = toy_model(ZePAD())
    target = classification_target(model, heads, 5)
    x, y = clean_labelled(target)
    ra = []
    for eps in (1e-6, 1 / 255, 4 / 255, 16 / 255):
        run = evaluate(attack(eps), target, x, y, 16, torch.Generator().manual_seed(0))
        assert (run.images - x).abs().max() <= eps + 1e-6 and 0 <= run.images.min() and run.images.max() <= 1
        ra.append(run.metrics["RA_after:apgd-mt"])
        after = [run.metrics[f"RA_after:{m}"] for m in ("apgd-ce", "apgd-t", "square", "apgd-mt")]
        assert after == sorted(after, reverse=True)  # cumulative: a later member never restores a sample
    assert ra[0] == 100.0  # ε → 0: RA = BA (here 100: the labels are the clean predictions)
    assert ra == sorted(ra, reverse=True) and ra[-1] < ra[1] < 100.0


def test_a_stronger_configuration_finds_little_more():
    """The convergence check (last member, 2× iterations and restarts) and a 2× ensemble move RA by
    less than the flag's 1-point tolerance... on this toy, by nothing beyond a few samples."""
    model, heads = toy_model(ZePAD(), seed=1)
    target = classification_target(model, heads, 5)
    x, y = clean_labelled(target, n=64)
    eps = 4 / 255
    standard = evaluate(attack(eps, recheck_samples=64), target, x, y, 32, torch.Generator().manual_seed(0))
    stronger = evaluate(
        attack(eps, apgd_steps=20, apgd_restarts=2, square_queries=100), target, x, y, 32, torch.Generator()
    )
    ra = standard.metrics["RA_after:apgd-mt"]
    assert 0 < ra < 100
    assert ra - standard.metrics["RA_recheck"] <= 100 * 2 / 64
    assert ra - stronger.metrics["RA_after:apgd-mt"] <= 100 * 2 / 64


def test_each_sample_keeps_its_first_success():
    """A decision fooled only near APGD's random start (mean shift in (0, ε/3); the loss grows with the
    shift, so later iterates sit at +ε) is kept, not lost to the last iterate (ART's APGD loses it)."""
    eps = 8 / 255

    def decide(features):
        shift = features[0].mean(1) - 0.5
        scores = torch.stack([-shift, shift], dim=1) * 100  # the loss grows with the mean pixel shift
        fooled = (shift.abs() > 0) & (shift.abs() < eps / 3)
        return scores, fooled.long()

    target = AdaptiveTarget([torch.nn.Flatten()], decide, 2)
    x, y = torch.full((7, 3, 8, 8), 0.5), torch.zeros(7, dtype=torch.long)
    x[-1] = 0.9  # never fooled: the attack runs all its iterations
    x_adv = attack(eps, members=["apgd-ce"]).perturb_adaptive(target, x, y)["apgd-ce"]
    assert target.fooled(target(x_adv)[1], y)[:-1].all()


class Counting:
    """A 5-class decision on 3×8×8 images that records every query: its batch size and whether it ran in
    inference mode. Class 0 leads by 0.5 on clean images; class ``reachable``'s score grows with the mean
    pixel shift (×``gain``), every other class's is constant: only an attack aimed at ``reachable`` can
    turn the decision (apgd-t's lanes must each aim at their own target)."""

    def __init__(self, reachable: int = 4, gain: float = 30.0):
        self.reachable, self.gain, self.calls = reachable, gain, []
        self.origin = torch.full((3, 8, 8), 0.5)

    def decide(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x = features[0].view(-1, 3, 8, 8)
        self.calls.append((len(x), torch.is_inference_mode_enabled()))
        base = torch.tensor([1.0, 0.9, 0.8, 0.7, 0.5]).expand(len(x), 5)
        shift = (x - self.origin).flatten(1).mean(1) * self.gain
        scores = base + torch.nn.functional.one_hot(torch.tensor(self.reachable), 5) * shift[:, None]
        return scores, scores.argmax(1)

    def target(self) -> AdaptiveTarget:
        return AdaptiveTarget([torch.nn.Flatten()], self.decide, 5)


@pytest.mark.parametrize("member", ["apgd-t", "apgd-mt"])
def test_targeted_members_run_every_target_and_restart_as_one_batch(member):
    """A targeted member's 4 targets × 2 restarts are lanes of one batch: 1 + (steps + 1) queries of 8
    lanes per robust sample, not 8 runs one after another; each lane climbs its own target (only the
    lowest-ranked target, class 4, can turn these samples, and it does)."""
    x, y, steps = torch.full((6, 3, 8, 8), 0.5), torch.zeros(6, dtype=torch.long), 5
    counting = Counting()
    made = attack(8 / 255, members=[member], targets=4, apgd_restarts=2, apgd_steps=steps)
    x_adv = made.perturb_adaptive(counting.target(), x, y)[member]
    assert counting.target().fooled(counting.decide([x_adv])[1], y).all()
    grad_queries = counting.calls[1 : 1 + 1 + steps]  # after the clean query: the start, then each step
    assert grad_queries[0] == (6 * 4 * 2, False) and len(counting.calls) <= 1 + 1 + steps + 1
    missed = Counting()  # three targets leave class 4 out: nothing turns the decision
    x_adv = attack(8 / 255, members=[member], targets=3, apgd_steps=steps).perturb_adaptive(
        missed.target(), x, y
    )
    assert not missed.target().fooled(missed.decide([x_adv[member]])[1], y).any()


def test_the_multitargeted_margin_has_no_denominator_to_climb():
    """apgd-mt's loss is z_t − max_forbidden z (Gowal et al. 2019): its gradient reaches the target and
    the largest forbidden score only, and it is unchanged when the low-ranked outcomes' scores fall
    (fused log-probabilities can fall without bound); apgd-t's targeted DLR rises towards 0 there
    without the target gaining anything."""
    scores = torch.tensor([[0.0, -1.0, -2.0, -3.0, -4.0]], requires_grad=True)
    forbidden = torch.tensor([[True, False, False, False, False]])
    target = torch.tensor([1])
    (grad,) = torch.autograd.grad(targeted_margin_loss(scores, forbidden, target).sum(), scores)
    assert grad.tolist() == [[-1.0, 1.0, 0.0, 0.0, 0.0]]
    sunk = scores.detach().clone()
    sunk[0, 2:] -= 50.0
    assert targeted_margin_loss(sunk, forbidden, target) == targeted_margin_loss(scores, forbidden, target)
    assert targeted_dlr_loss(sunk, forbidden, target) > 0.9 * targeted_dlr_loss(scores, forbidden, target)
    assert targeted_dlr_loss(sunk, forbidden, target) > -0.05


def test_the_default_ensemble_is_autoattack_standard_then_the_multitargeted_member():
    """AutoAttack's standard members first (so ``RA_after:square`` is its RA), then apgd-mt; two starts
    per APGD run; ``members=STANDARD`` with one start is AutoAttack's standard ensemble."""
    made = AdaptiveEnsemble(0.1)
    assert made.members == [*STANDARD, "apgd-mt"] and made.apgd_restarts == 2
    assert STANDARD == ("apgd-ce", "apgd-t", "square")
    assert made.convergence_check().members == ["apgd-mt"]


def test_square_queries_run_without_autograd_on_the_robust_samples_with_restarts_batched():
    """Square's queries run in inference mode, its 2 restarts as lanes of one batch (queries + 1
    queries in all, not twice that), only on samples still robust."""
    counting = Counting(gain=0.0)  # nothing turns the decision: every sample stays robust
    x, y = torch.rand(5, 3, 8, 8), torch.zeros(5, dtype=torch.long)
    made = attack(8 / 255, members=["square"], square_queries=7, square_restarts=2)
    made.perturb_adaptive(counting.target(), x, y)
    square = counting.calls[1:]  # after the clean query
    assert square == [(10, True)] * (7 + 1)


def test_detection_outcome_is_the_class_or_flagged():
    """The detection task's outcome: "flagged" (index C) exactly where the defense's score is above its
    threshold, else the fused class; the extra class's score leads exactly there too, and a flagged
    or right outcome leaves the attacker unsuccessful (C&W 2017's detector-as-a-class)."""
    model, heads = toy_model(ZePAD(detection_threshold=0.1))
    x = torch.rand(64, 3, 8, 8)
    logits = [h(b.encoder(x)) for b, h in zip(model.branches, heads)]
    scores, decision = flagged_prediction(model, logits, 0.1)
    flagged = model.detection_score([torch.softmax(y, 1) for y in logits]) > 0.1
    assert flagged.any() and (~flagged).any()
    assert torch.equal(decision == 5, flagged) and torch.equal(scores.argmax(1) == 5, flagged)
    assert torch.equal(decision[~flagged], model.fused_scores(logits).argmax(1)[~flagged])
    target = AdaptiveTarget([], lambda features: (scores, decision), 6, rejected=(5,))
    y = torch.where(flagged, (decision + 1) % 5, decision)  # flagged samples get a wrong label
    assert not target.fooled(decision, y).any()
    assert target.fooled(decision, (y + 1) % 5)[~flagged].all()
    reported = [m.name for m in Detection().metrics() if m.report]
    assert reported[:3] == ["detection_accuracy", "AUROC", "undetected_success"]


def test_an_attack_of_the_older_form_still_runs():
    """An outside attack that implements only ``perturb_pipeline`` gets the target's scores as a module
    and is judged like any other (one stage named after the attack)."""
    from zepad_bench.interfaces import Attack

    class OldForm(Attack):
        name = "old-form"
        scenarios = ("adaptive",)

        def perturb_pipeline(self, pipeline, x, y):
            x = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(pipeline(x), y), x)
            return (x + self.eps * grad.sign()).clamp(0, 1).detach()

    model, heads = toy_model(ZePAD())
    target = classification_target(model, heads, 5)
    x, y = clean_labelled(target)
    old = OldForm(8 / 255)
    run = evaluate(old, target, x, y, 16, torch.Generator().manual_seed(0))
    assert set(k for k in run.metrics if k.startswith("RA_after:")) == {"RA_after:old-form"}
    assert run.metrics["RA_after:old-form"] < 100.0


def test_wilson_interval_and_the_seeded_subset():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(40.383, abs=1e-3) and high == pytest.approx(59.617, abs=1e-3)
    assert wilson_interval(0, 32)[0] == 0.0 and 0 < wilson_interval(0, 32)[1] < 11  # never below 0
    rows = subset(539, 32, torch.Generator().manual_seed(3))
    assert len(rows.unique()) == 32 and torch.equal(rows, subset(539, 32, torch.Generator().manual_seed(3)))
    assert torch.equal(subset(40, 0, torch.Generator()), torch.arange(40))


def test_ensemble_params_are_checked():
    with pytest.raises(ValueError, match="members"):
        AdaptiveEnsemble(0.1, members=["fgsm"])
    with pytest.raises(ValueError, match="square_queries"):
        AdaptiveEnsemble(0.1, square_queries=0)


# ------------------------------------------------------------------ suites and the runner


def test_unsupported_pairings_are_rejected_naming_both(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        suite_text().replace(
            'plugin = "outside-sign"\nscenarios = ["defense-aware"]',
            'plugin = "outside-sign"\nscenarios = ["adaptive"]',
        )
    )
    with pytest.raises(SuiteError, match=r"'aware'.*'outside-sign'.*'adaptive'"):
        load(path)
    path.write_text(
        suite_text().replace('plugin = "adaptive"\nscenarios = ["adaptive"]\n', 'plugin = "adaptive"\n')
    )
    with pytest.raises(SuiteError, match=r"'adaptive'.*'semi-black-box'"):
        load(path)
    path.write_text(suite_text())
    with pytest.raises(UserError, match=r"'sign'.*'adaptive'"):
        load(path).with_axes(scenarios=["adaptive"])
    assert {
        c.scenario for c in load(path).with_axes(scenarios=["adaptive"], attacks=["adaptive"]).cells()
    } == {"adaptive"}


def test_defense_aware_and_adaptive_cells_run_on_the_defended_model(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(suite_text())
    suite = load(path).with_axes(tasks=["cls", "det"])
    cells = suite.cells()
    assert sorted({(c.scenario, c.attack, round(c.eps * 255)) for c in cells}) == [
        ("adaptive", "adaptive", 2),
        ("adaptive", "adaptive", 16),
        ("defense-aware", "aware", 16),
        ("semi-black-box", "sign", 16),
    ]
    runner = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    rows = {(c.scenario, c.eps, c.defense, c.task): runner.run_cell(c) for c in cells}

    aware = [c for c in cells if c.scenario == "defense-aware" and c.defense == "none2"][0]
    attack, key = runner.attack(aware)
    model, _ = runner.defense(aware)
    assert attack.encoders == [b.encoder for b in model.branches] and len(attack.encoders) == 3
    keys = {runner.attack(c)[1] for c in cells if c.scenario == "defense-aware"}
    assert len(keys) == 2  # fitted once per defense (the key includes the defense's tuning)

    for defense in ("none", "none2"):
        weak, strong = (
            rows[("adaptive", 2 / 255, defense, "cls")],
            rows[("adaptive", 16 / 255, defense, "cls")],
        )
        assert strong["metrics"]["RA"] <= weak["metrics"]["RA"]
        assert strong["metrics"]["grad_zero_frac"] == 0 and strong["metrics"]["grad_nan_frac"] == 0
        assert strong["metrics"]["RA"] < strong["metrics"]["BA"]  # 16/255 per sample breaks the toy model
        assert "RA_recheck" in strong["metrics"] and strong["metrics"]["recheck_n"] == 4
        ran = [m.split(":", 1)[1] for m in strong["metrics"] if m.startswith("RA_after:")]
        assert strong["config"]["adaptive_members"] == ran and len(ran) > 1  # the order they ran in
    # detection is attacked on its own terms, and only where there is a detector (none: n/a)
    assert rows[("adaptive", 2 / 255, "none", "det")]["metrics"]["RA"] == "n/a"
    assert isinstance(rows[("adaptive", 2 / 255, "none2", "det")]["metrics"]["RA_detect"], float)
    assert runner.computed["adaptive"] == 2 * 3  # per ε: classification of both, detection of ZePAD

    again = Runner(suite, suite.registry, tmp_path / "wd", device="cpu", force=False)
    adaptive_cell = [c for c in cells if c.scenario == "adaptive"][0]
    key = (adaptive_cell.scenario, adaptive_cell.eps, adaptive_cell.defense, adaptive_cell.task)
    assert again.run_cell(adaptive_cell)["metrics"] == rows[key]["metrics"]
    assert again.computed["adaptive"] == 0 and again.reused["adaptive"] == 1


def clean_accuracy_of_target(runner: Runner, cell) -> float:
    """The task's adaptive target built as the runner builds it, judged on the clean test images."""
    from zepad_bench.branch_stages import BranchStages
    from zepad_bench.interfaces import TaskData
    from zepad_bench.suite import instantiate

    model, _ = runner.defense(cell)
    data_id = runner.graph.task_data(cell)
    train, test = (
        runner.dataset(data_id, "train", cell.seed)[0],
        runner.dataset(data_id, "test", cell.seed)[0],
    )
    task = instantiate(runner.suite, runner.registry, "tasks", cell.task)
    task.ctx = runner._ctx(cell.seed)
    branches = BranchStages(runner.stages, runner.graph, cell, model, train, test, 16, "cpu", task.ctx.track)
    clean = test.float_images(slice(None))
    target = task.adaptive_target(model, TaskData(train, test, clean, None, branches.features, branches.head))
    fooled, _ = judge(target, clean, test.labels, 16)
    return 100.0 * float((~fooled).sum()) / len(fooled)


@pytest.mark.parametrize("samples", [0, 20])
def test_the_attack_is_judged_by_the_decision_the_task_scores(tmp_path, samples):
    """One computation for judging and scoring: on the stored attacked images, the task's own metric
    (classification and retrieval RA, detection RA_detect) equals the attack's robust accuracy after
    its last member (100 − its success rate), on all test images or on the seeded subset; and on
    clean images the target's decisions give the task's BA."""
    path = tmp_path / "s.toml"
    path.write_text(suite_text().replace("recheck_samples = 4", f"recheck_samples = 4\nsamples = {samples}"))
    suite = load(path).with_axes(tasks=["cls", "ret", "det"], scenarios=["adaptive"], attacks=["adaptive"])
    runner = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    checked = set()
    for cell in suite.cells():
        if cell.defense != "none2" or cell.eps != 16 / 255:
            continue
        metrics = runner.run_cell(cell)["metrics"]
        metric = {"cls": "RA", "ret": "RA", "det": "RA_detect"}[cell.task]
        assert metrics[metric] == pytest.approx(metrics["RA_after:apgd-mt"], abs=1e-4), cell.task  # float32
        assert metrics["adaptive_n"] == (samples or 64)  # stripes: 64 test images
        assert ("RA_ci95_low" in metrics) == bool(samples)
        if cell.task != "det":
            assert metrics[metric] < metrics["BA"]  # the attack did something to judge
            if not samples:
                assert clean_accuracy_of_target(runner, cell) == pytest.approx(metrics["BA"], abs=1e-4)
        checked.add(cell.task)
    assert checked == {"cls", "ret", "det"}


def test_suites_pair_every_defense_with_defense_aware_and_adaptive_attacks():
    from pathlib import Path

    root = Path(__file__).parent.parent / "suites"
    for name, sweep in (("quickstart", 1), ("adaptive_offline", 5)):
        suite = load_suite(root / f"{name}.toml", load_registry())
        cells = suite.cells()
        for scenario in ("defense-aware", "adaptive"):
            assert {c.defense for c in cells if c.scenario == scenario} == set(suite.grid["defenses"])
        assert len({c.eps for c in cells if c.scenario == "adaptive"}) == sweep
