"""The conformance kit (zepad_bench.testing) over every registered attack, defense and outside backbone."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from zepad_bench import load_registry
from zepad_bench.testing import check_attack, check_plugin

REGISTRY = load_registry(["zb_outside_plugin"])
# Tiny settings (the defaults are sized for GPUs and 10k+ images); a plugin not listed runs on its defaults.
TINY = {
    "advencoder": dict(epochs=1, ngf=8, z_batch=4),
    "pap": dict(steps=4, noise_images=2),
    "uap": dict(clusters=2, max_images=32, max_passes=1, candidates=2, deepfool_iters=2),
    "uapgd": dict(images=32, steps=2, decay_after=16),
    "ssp": dict(steps=3),
    "ssp-universal": dict(steps=4),
    "uapgd-reference": dict(images=8, steps=2, clusters=2, probe_images=32),
    "adaptive": dict(apgd_steps=3, targets=2, square_queries=10),
    "art": dict(
        attack="ProjectedGradientDescent", params={"max_iter": 2, "eps_step": 0.02}, clusters=2, max_images=32
    ),
    "zepad": dict(
        epochs=1,
        batch_size=16,
        steps=1,
        bmp_epochs=1,
        bmp_batch_size=16,
        bmp_recipe={"proj_hidden_dim": 16, "proj_output_dim": 8},
    ),
    "pgd-at": dict(epochs=1, batch_size=16, steps=1),
    "trades": dict(epochs=1, batch_size=16, steps=1),
    "mart": dict(epochs=1, batch_size=16, steps=1),
    "gen-af": dict(
        epochs=1, batch_size=16, steps=1, sensitivity_epochs=1, sensitivity_samples=16, finetune_epochs=1
    ),
}
PLUGINS = [
    *((kind, name) for kind in ("attacks", "defenses") for name in sorted(REGISTRY.kind(kind))),
    *(("backbones", name) for name in REGISTRY.backbones),
]


@pytest.mark.parametrize("kind, name", PLUGINS, ids=[f"{k}:{n}" for k, n in PLUGINS])
def test_every_registered_plugin_conforms(kind, name):
    report = check_plugin(kind, name, TINY.get(name), REGISTRY)
    assert report.ok, "\n".join(report.lines())


def test_the_outside_plugin_brings_a_backbone_and_an_attack():
    assert ("backbones", "outside-tiny") in PLUGINS and ("attacks", "outside-sign") in PLUGINS


def test_the_kit_fails_an_attack_that_breaks_the_contract():
    from zepad_bench import Attack

    class Overshoot(Attack):
        """Adds 2·eps and keeps a list as its fitted state: over budget, lost by the cache."""

        name = "overshoot"

        def fit(self, encoders, images):
            super().fit(encoders, images)
            self.deltas = [2 * self.eps]

        def perturb(self, x):
            return (x + self.deltas[0]).clamp(0, 1)

    failed = {name for name, ok, _ in check_attack(Overshoot).results if not ok}
    assert failed == {"budget", "state round trip"}


def test_check_plugin_command_prints_a_report(monkeypatch):
    from zepad_bench.cli import cli

    monkeypatch.setenv("ZEPAD_BENCH_PLUGINS", "")
    result = CliRunner().invoke(cli, ["check-plugin", "uapgd", "--param", "images=32", "--param", "steps=2"])
    assert result.exit_code == 0, result.output
    assert "PASS  budget" in result.output and "attack uapgd: 6 passed, 0 failed" in result.output
