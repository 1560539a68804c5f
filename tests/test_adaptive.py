"""Defense-aware and adaptive scenarios: contract, validation, runner, pipeline gradients, ensemble."""

from __future__ import annotations

import pytest
import torch
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.context import RunContext
from zepad_bench.errors import SuiteError, UserError
from zepad_bench.interfaces import Branch, DefendedModel
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.heads import MLPHead
from zepad_bench.pipeline import EOT, DefendedPipeline, input_gradient_stats
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite
from zepad_bench_plugins.attacks.adaptive import AdaptiveEnsemble
from zepad_bench_plugins.defenses.none import NoDefense
from zepad_bench_plugins.defenses.zepad import ZePAD

TINY_ZEPAD = (
    '[defenses.none2]\nplugin = "zepad"\nepochs = 1\nsteps = 1\nbatch_size = 32\nbmp_epochs = 1\n'
    "bmp_batch_size = 32\nbmp_recipe = { proj_hidden_dim = 32, proj_output_dim = 16 }"
)
EXTRA = """
[tasks.det]
plugin = "detection"
data = "stripes"
epochs = 2

[attacks.adaptive]
plugin = "adaptive"
scenarios = ["adaptive"]
members = ["pgd", "square"]
pgd_steps = 5
square_queries = 10

[attacks.aware]
plugin = "outside-sign"
scenarios = ["defense-aware"]

[grid]"""


def suite_text(extra: str = EXTRA) -> str:
    text = SMOKE_SUITE.replace('[defenses.none2]\nplugin = "none"', TINY_ZEPAD).replace("[grid]", extra)
    return text.replace('eps = "16/255"', 'eps = "16/255"\nadaptive_eps = ["2/255", "16/255"]')


def load(path):
    return load_suite(path, load_registry(["zb_outside_plugin"]))


# ------------------------------------------------------------------ pipeline and its gradients


def toy_model(defense, branches: int, classes: int = 3) -> tuple[DefendedModel, list[MLPHead]]:
    torch.manual_seed(0)
    encoders = [Encoder("small-cnn", {"width": 4}) for _ in range(branches)]
    heads = [MLPHead(e.feature_dim, classes).eval() for e in encoders]
    model = DefendedModel([Branch(f"b{i}", "mpae", e.eval()) for i, e in enumerate(encoders)], defense)
    return model, heads


@pytest.mark.parametrize("defense, branches", [(ZePAD(), 3), (NoDefense(), 1)])
def test_pipeline_input_gradient_is_finite_and_nonzero(defense, branches):
    model, heads = toy_model(defense, branches)
    pipeline = DefendedPipeline(model, heads)
    x, y = torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2])
    stats = input_gradient_stats(pipeline, x, y)
    assert stats["grad_zero_frac"] == 0 and stats["grad_nan_frac"] == 0 and stats["grad_norm"] > 0
    assert not any(p.requires_grad for p in pipeline.parameters())


def test_gradient_flows_through_the_rfdm_weights():
    """ZePAD's fusion is differentiable end to end: the pipeline's input gradient is that of Eq. 7–8's
    Σ W_i·y_i with the weights W depending on x, not that with the weights held constant."""
    from zepad_bench_plugins.defenses.zepad import rfdm_weights

    model, heads = toy_model(ZePAD(), 3)
    pipeline = DefendedPipeline(model, heads)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    (grad,) = torch.autograd.grad(pipeline(x).exp()[:, 0].sum(), x)  # log-probabilities out

    def by_hand(detach: bool) -> torch.Tensor:
        logits = [h(e(x)) for e, h in zip(pipeline.encoders, heads)]
        probabilities = [torch.softmax(y, 1) for y in logits]
        w = rfdm_weights(probabilities)
        w = w.detach() if detach else w
        fused = sum(wi.unsqueeze(1) * yi for wi, yi in zip(w, probabilities))  # fuse_on = "probabilities"
        return torch.autograd.grad(fused[:, 0].sum(), x)[0]

    assert torch.allclose(grad, by_hand(detach=False), atol=1e-7)
    assert not torch.allclose(grad, by_hand(detach=True), atol=1e-7)


def test_eot_averages_forward_passes():
    calls = []

    class Noisy(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            return x.flatten(1)[:, :3] + len(calls)

    out = EOT(Noisy(), 4)(torch.zeros(2, 3, 2, 2))
    assert len(calls) == 4 and torch.allclose(out, torch.full((2, 3), 2.5))


# ------------------------------------------------------------------ the ensemble


def test_ensemble_is_the_per_sample_worst_case_within_budget():
    model, heads = toy_model(ZePAD(), 3)
    pipeline = DefendedPipeline(model, heads)
    x = torch.rand(12, 3, 16, 16)
    with torch.no_grad():
        y = pipeline(x).argmax(1)  # every sample starts correctly classified
    eps = 2 / 255
    robust = {}
    for members in (["pgd"], ["pgd", "square"], ["pgd", "apgd-ce", "apgd-dlr", "square"]):
        attack = AdaptiveEnsemble(eps, members=members, pgd_steps=3, apgd_steps=2, square_queries=5)
        attack.ctx = RunContext(seed=0)
        x_adv = attack.perturb_pipeline(pipeline, x, y)
        assert (x_adv - x).abs().max() <= eps + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
        with torch.no_grad():
            robust[len(members)] = (pipeline(x_adv).argmax(1) == y).sum().item()
    assert robust[4] <= robust[2] <= robust[1] < 12  # more members never leave more robust samples


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
        assert rows[("adaptive", 2 / 255, defense, "det")]["metrics"]["RA"] == weak["metrics"]["RA"]
        assert strong["metrics"]["RA"] <= weak["metrics"]["RA"]
        assert strong["metrics"]["grad_zero_frac"] == 0 and strong["metrics"]["grad_nan_frac"] == 0
        assert strong["metrics"]["RA"] < strong["metrics"]["BA"]  # 16/255 per sample breaks the toy model
    adaptive = [c for c in cells if c.scenario == "adaptive"]
    # one attack run per cell: classification and detection read their own heads and objectives
    assert (
        runner.computed["adaptive"] == len({runner.graph.adaptive(c).key for c in adaptive}) == len(adaptive)
    )

    again = Runner(suite, suite.registry, tmp_path / "wd", device="cpu", force=False)
    adaptive_cell = [c for c in cells if c.scenario == "adaptive"][0]
    key = (adaptive_cell.scenario, adaptive_cell.eps, adaptive_cell.defense, adaptive_cell.task)
    assert again.run_cell(adaptive_cell)["metrics"] == rows[key]["metrics"]
    assert again.computed["adaptive"] == 0 and again.reused["adaptive"] == 1


def test_suites_pair_every_defense_with_defense_aware_and_adaptive_attacks():
    from pathlib import Path

    root = Path(__file__).parent.parent / "suites"
    for name, sweep in (("quickstart", 1), ("adaptive_offline", 5)):
        suite = load_suite(root / f"{name}.toml", load_registry())
        cells = suite.cells()
        for scenario in ("defense-aware", "adaptive"):
            assert {c.defense for c in cells if c.scenario == scenario} == set(suite.grid["defenses"])
        assert len({c.eps for c in cells if c.scenario == "adaptive"}) == sweep
