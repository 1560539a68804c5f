"""Same-architecture encoders (ZePAD's branches) evaluated together equal the sequential path."""

from __future__ import annotations

import pytest
import torch
from conftest import SMOKE_SUITE, computed_stages

from zepad_bench import load_registry
from zepad_bench.branch_stages import BranchStages
from zepad_bench.nn.batched import extract_features, extract_features_together, groups_by_architecture
from zepad_bench.nn.encoder import Encoder
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite


def encoders() -> list[Encoder]:
    torch.manual_seed(0)
    out = [Encoder("small-cnn", {"width": 8}) for _ in range(3)] + [Encoder("small-cnn", {"width": 4})]
    for encoder in out:  # non-trivial BatchNorm statistics, so stacked buffers matter
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return out


@pytest.mark.parametrize("how", ["auto", "sequential", "streams", "stacked"])
def test_branches_together_equal_one_encoder_at_a_time(how):
    models = encoders()
    models[0].eval()
    models[1].train()  # modes are restored afterwards; features are always eval-mode
    images = torch.randint(0, 256, (37, 3, 16, 16), dtype=torch.uint8)
    assert groups_by_architecture(models) == [[0, 1, 2], [3]]
    together = extract_features_together(models, images, batch_size=16, how=how)
    for model, feats in zip(models, together):
        assert torch.allclose(feats, extract_features(model, images, batch_size=16), atol=1e-5)
    assert models[1].training and not models[0].training


ZEPAD = """
[defenses.zepad]
plugin = "zepad"
epochs = 1
batch_size = 16
steps = 2
bmp_epochs = 1
bmp_batch_size = 16
"""


def test_runner_features_of_zepad_branches_equal_the_sequential_path(tmp_path):
    path = tmp_path / "z.toml"
    text = SMOKE_SUITE.replace("width = 4", "width = 8").replace("[grid]", ZEPAD + "\n[grid]")
    path.write_text(text)
    suite = load_suite(path, load_registry(["zb_outside_plugin"])).with_axes(
        defenses=["zepad"], tasks=["cls"]
    )
    runner = Runner(suite, suite.registry, tmp_path / "w", device="cpu")
    (cell,) = suite.cells()
    model, _ = runner.defense(cell)
    encoders_ = [b.encoder for b in model.branches]
    assert any(len(g) > 1 for g in groups_by_architecture(encoders_))  # victim and auxiliary copies
    train, _ = runner.dataset("stripes", "train", 0)
    test, _ = runner.dataset("stripes", "test", 0)
    branches = BranchStages(runner.stages, runner.graph, cell, model, train, test, 256, "cpu", lambda x, _: x)
    for i, encoder in enumerate(encoders_):
        assert torch.allclose(branches.features(i, "test"), extract_features(encoder, test.images), atol=1e-5)
    computed = [key for kind, key in computed_stages(runner) if kind == "features"]
    assert sorted(computed) == sorted(
        {runner.graph.features(cell, b.name, "test").key for b in model.branches}
    )
