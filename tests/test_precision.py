"""``precision = "bf16"``: backbones under bf16 autocast, everything else fp32; metrics agree with fp32."""

from __future__ import annotations

import pytest
import torch
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.errors import SuiteError
from zepad_bench.nn import precision
from zepad_bench.nn.encoder import Encoder
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite

TOLERANCE = 10.0
"""Stated tolerance: each metric (in %) of a bf16 run within 10 points of the fp32 run's, on a
64-image test set (a few images' predictions may flip near the decision boundary)."""


def test_only_the_backbone_runs_in_bf16():
    torch.manual_seed(0)
    encoder = Encoder("small-cnn", {"width": 8}).eval()
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        full = encoder(x)
        assert torch.equal(full, encoder.backbone((x - encoder.mean) / encoder.std))
        with precision.use("bf16"):
            half = encoder(x)
            assert precision.current() == "bf16"
        assert precision.current() == "fp32"
    assert half.dtype == torch.float32 and not torch.equal(half, full)  # bf16 inside, fp32 out
    assert torch.allclose(half, full, rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="precision must be one of"):
        with precision.use("fp16"):
            pass


SUITE = (
    SMOKE_SUITE.replace("image_size = 16", 'image_size = 16\nprecision = "PRECISION"')
    .replace('eps = "16/255"', 'eps = "32/255"')
    .replace('attacker_data = "stripes"', 'attacker_data = "digits"')
    + """
[datasets.digits]
plugin = "digits"
limit_per_class = 24

[tasks.cls-digits]
plugin = "classification"
data = "digits"
epochs = 10

[attacks.upgd]
plugin = "uapgd"
images = 32
steps = 3

"""
).replace("[grid]\n", '[grid]\nattacks = ["upgd"]\n', 1)
AXES = {"defenses": ["none"], "tasks": ["cls-digits"], "tuning": ["digits"]}


@pytest.fixture
def rows(tmp_path):
    out = {}
    for p in ("fp32", "bf16"):
        path = tmp_path / f"{p}.toml"
        path.write_text(SUITE.replace("PRECISION", p))
        suite = load_suite(path, load_registry(["zb_outside_plugin"])).with_axes(**AXES)
        runner = Runner(suite, suite.registry, tmp_path / "w", device="cpu")  # one workdir for both
        out[p] = [runner.run_cell(c) for c in suite.cells()]
        assert runner.computed["attack"] == 1  # bf16 stages are their own, not reused fp32 ones
    return out


def test_bf16_metrics_agree_with_fp32_within_the_stated_tolerance(rows):
    assert 60 <= rows["fp32"][0]["metrics"]["BA"] and rows["fp32"][0]["metrics"]["ASR"] >= 10  # not trivial
    for full, half in zip(rows["fp32"], rows["bf16"], strict=True):
        assert full["key"] != half["key"]  # separate results and cached stages, never mixed
        assert (full["config"]["precision"], half["config"]["precision"]) == ("fp32", "bf16")
        assert full["metrics"].keys() == half["metrics"].keys()
        for name, value in full["metrics"].items():
            if isinstance(value, float):
                assert abs(value - half["metrics"][name]) <= TOLERANCE, (name, value, half["metrics"][name])


def test_unknown_precision_is_a_suite_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(SUITE.replace("PRECISION", "fp16"))
    with pytest.raises(SuiteError, match="suite.precision"):
        load_suite(path, load_registry(["zb_outside_plugin"]))
