"""``hub`` (timm) and ``clip`` (open_clip) encoder sources: the real architectures at tiny sizes, random
or cached weights (no network), preprocessing inside ``forward``, pixel budgets, provenance, caching."""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.context import RunContext
from zepad_bench.errors import UserError
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.hub import weights_sha256
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite
from zepad_bench_plugins.encoders.hub import ClipEncoder, HubEncoder

VIT = "vit_tiny_patch16_224.augreg_in21k"
TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 2}
TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def built(source):
    source.ctx = RunContext()
    return source.build(None)


def normalise(x, encoder):
    return (x - encoder.mean) / encoder.std


def test_timm_encoder_carries_the_models_own_preprocessing():
    import timm

    encoder = built(HubEncoder(model=VIT, pretrained=False, model_params=TINY_VIT))
    cfg = timm.get_pretrained_cfg(VIT)
    assert encoder.input_size == 32 and encoder.feature_dim == 192
    assert torch.allclose(encoder.mean.flatten(), torch.tensor(cfg.mean))
    assert torch.allclose(encoder.std.flatten(), torch.tensor(cfg.std))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), encoder.backbone(normalise(x, encoder)), atol=1e-6)
        small = torch.rand(2, 3, 16, 16)  # a 16px suite: resized inside, to the model's input side
        resized = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
        assert torch.allclose(encoder(small), encoder.backbone(normalise(resized, encoder)), atol=1e-6)
    assert encoder.meta["weights"] == "random" and encoder.meta["weights_sha256"] == weights_sha256(
        encoder.backbone
    )


def test_clip_encoder_is_the_image_tower_with_clips_normalisation():
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    encoder = built(ClipEncoder(model="ViT-B-32", pretrained=False, model_params=TINY_CLIP))
    assert encoder.arch == "open_clip:ViT-B-32" and encoder.feature_dim == 24 and encoder.input_size == 32
    assert torch.allclose(encoder.mean.flatten(), torch.tensor(OPENAI_DATASET_MEAN))
    assert torch.allclose(encoder.std.flatten(), torch.tensor(OPENAI_DATASET_STD))
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert encoder(x).shape == (3, 24)
        assert torch.allclose(encoder(x), encoder.backbone(normalise(x, encoder)), atol=1e-6)
    restored = Encoder.from_state(encoder.to_state()).eval()  # rebuilt offline from the cached state
    with torch.no_grad():
        assert torch.equal(restored(x), encoder(x))


def test_bad_names_and_pins_are_rejected():
    with pytest.raises(ValueError, match="unknown timm model"):
        HubEncoder(model="no_such_model")
    with pytest.raises(ValueError, match="unknown pretrained tag"):
        ClipEncoder(model="RN50", pretrained="no-such-tag")
    with pytest.raises(ValueError, match="tag or false"):
        ClipEncoder(model="RN50", pretrained=True)
    with pytest.raises(UserError, match="differs from the pinned"):
        built(HubEncoder(model=VIT, pretrained=False, model_params=TINY_VIT, sha256="0" * 64))


def test_pretrained_weights_come_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """The layout timm's first use leaves in the HF cache; offline mode, so nothing is fetched."""
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    torch.manual_seed(1)
    source_model = timm.create_model(VIT, num_classes=0, **TINY_VIT)
    repo = tmp_path / f"models--{timm.get_pretrained_cfg(VIT).hf_hub_id.replace('/', '--')}"
    (repo / "snapshots" / "rev").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev")
    weights = repo / "snapshots" / "rev" / "model.safetensors"
    save_file(source_model.state_dict(), str(weights))

    encoder = built(HubEncoder(model=VIT, model_params=TINY_VIT, cache_dir=str(tmp_path)))
    for key, value in source_model.state_dict().items():
        assert torch.equal(encoder.backbone.state_dict()[key], value)
    digest = weights_sha256(source_model)
    assert encoder.meta["weights_sha256"] == digest and encoder.meta["weights"].startswith("hf-hub:timm/")
    assert encoder.meta["file_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    pinned = built(HubEncoder(model=VIT, model_params=TINY_VIT, cache_dir=str(tmp_path), sha256=digest))
    assert pinned.meta["weights_sha256"] == digest


HUB_SUITE = SMOKE_SUITE.replace(
    "[grid]",
    f"""
[encoders.vit]
plugin = "hub"
model = "{VIT}"
pretrained = false
model_params = {{ img_size = 32, patch_size = 8, depth = 2 }}
auxiliaries = ["clip"]

[encoders.clip]
plugin = "clip"
model = "ViT-B-32"
pretrained = false
model_params = {{ embed_dim = 24, vision_cfg = {{ image_size = 32, layers = 2, width = 64, patch_size = 8, \
head_width = 32 }}, text_cfg = {{ context_length = 8, vocab_size = 64, width = 32, heads = 2, layers = 1 }} }}

[attacks.upgd]
plugin = "uapgd"
images = 32
steps = 2

[grid]""",
).replace('victims = ["rand"]', 'victims = ["vit"]\nattacks = ["upgd"]\nscenarios = ["white-box"]')


def test_a_hub_victim_runs_a_cell_within_the_pixel_budget_and_caches(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text(HUB_SUITE)
    suite = load_suite(path, load_registry()).with_axes(defenses=["none"], tasks=["cls"])
    runner = Runner(suite, suite.registry, tmp_path / "w", device="cpu")
    (cell,) = suite.cells()
    row = runner.run_cell(cell)
    assert row["metrics"]
    attack, _ = runner.attack(cell)  # crafted on the ViT and the CLIP tower (white-box)
    test, _ = runner.dataset("stripes", "test", 0)
    adv = runner.adversarial(cell, attack, test)
    delta = adv - test.images.float() / 255
    assert delta.abs().max() <= cell.eps + 1e-6 and delta.abs().max() > cell.eps / 2  # pixel units
    again = Runner(suite, suite.registry, tmp_path / "w", device="cpu")
    for id_ in ("vit", "clip"):
        first, second = runner.encoder(id_, 0)[0], again.encoder(id_, 0)[0]
        x = torch.rand(2, 3, 16, 16)
        with torch.no_grad():
            assert torch.equal(first(x), second(x))
        assert second.meta["weights_sha256"] == weights_sha256(second.backbone)
    assert again.reused["encoder"] == 2 and again.computed["encoder"] == 0
