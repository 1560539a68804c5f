"""``protocol = "authors" | "corrected"``: presets, the authors' training step by hand, the suite key."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from conftest import SMOKE_SUITE, solo_resnet18, write_solo_file

from zepad_bench import load_registry
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages
from zepad_bench.download import fetch_all
from zepad_bench.errors import SuiteError, SuiteMissing, UserError
from zepad_bench.nn.adversarial_tuning import EncoderWithHead, adversarial_finetune
from zepad_bench.nn.backbones import build_backbone
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.encoder_choices import normalisation
from zepad_bench.nn.heads import MLPHead
from zepad_bench.nn.pgd import pgd
from zepad_bench.paper_encoders import paper_encoder
from zepad_bench.suite import load_suite
from zepad_bench_plugins.defenses.adversarial_training import PGDAT
from zepad_bench_plugins.defenses.distribution_loss import distribution_loss
from zepad_bench_plugins.defenses.gen_af import GenAF, least_critical
from zepad_bench_plugins.defenses.zepad import ZePAD

EPS, STEP, STEPS = 0.03, 0.007, 3


def _batch() -> LabeledImages:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 16, 16), generator=g, dtype=torch.uint8)
    return LabeledImages(images, torch.arange(12) % 3, ["a", "b", "c"])


def _model() -> EncoderWithHead:
    torch.manual_seed(0)
    encoder = Encoder("small-cnn", {"width": 4})
    with torch.no_grad():  # non-trivial BN running statistics, so that eval-mode PGD differs from train mode
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return EncoderWithHead(encoder, MLPHead(encoder.feature_dim, 3, dropout=0.0))


def _authors_steps(model: EncoderWithHead, data: LabeledImages, batch_size: int, lambda_f: float) -> None:
    """Steps as the authors' ``adversarial_fine-tuning.py`` (ZePAD and Gen-AF stage I) runs them."""
    encoder, head = model.encoder, model.head
    optimizers = [
        torch.optim.Adam(encoder.parameters(), lr=1e-4, weight_decay=8e-4),
        torch.optim.Adam(head.parameters(), lr=5e-3, weight_decay=8e-4),
    ]
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))  # our loop's shuffle
    for start in range(0, len(data), batch_size):
        x, y = (
            data.float_images(order[start : start + batch_size]),
            data.labels[order[start : start + batch_size]],
        )
        for optimizer in optimizers:
            optimizer.zero_grad()
        model.eval()  # pgd_attack: raw input, no random start, loss.backward() fills parameter grads
        x_adv = x.clone()
        for _ in range(STEPS):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(head(encoder.backbone(x_adv)), y)
            loss.backward()
            x_adv = (
                torch.min(torch.max(x_adv + STEP * x_adv.grad.sign(), x - EPS), x + EPS).clamp(0, 1).detach()
            )
        model.train()  # BN statistics trained
        adv_logits, clean_logits = model(x_adv), model(x)  # Encoder.forward normalises
        w = F.cross_entropy(clean_logits, y, reduction="none")
        loss = F.cross_entropy(adv_logits, y) + lambda_f * distribution_loss(clean_logits, adv_logits, y, w)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()


def _assert_same_state(a: EncoderWithHead, b: EncoderWithHead) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.allclose(sa[key].float(), sb[key].float(), atol=1e-6, rtol=0), key


@pytest.mark.parametrize(
    "defense",
    [
        GenAF(protocol="authors", steps=STEPS, epochs=1, batch_size=6),
        ZePAD(protocol="authors", eps=EPS, step_size=STEP, steps=STEPS, epochs=1, batch_size=6),
    ],
    ids=["gen-af", "zepad"],
)
def test_authors_steps_equal_the_authors_code_by_hand(defense):
    """Two optimiser steps (Adam's first alone is nearly sign(g)); parameters and BN statistics to 1e-6."""
    defense.ctx = RunContext()
    data = _batch()
    ours, theirs = _model(), _model()
    before = copy.deepcopy(ours.state_dict())
    loss_fn = partial(defense.tuning_loss, generator=torch.Generator())
    adversarial_finetune(ours, data, loss_fn, defense.config, seed=0)
    _authors_steps(theirs, data, 6, 20.0)
    _assert_same_state(ours, theirs)
    moved = [k for k, v in ours.state_dict().items() if not torch.equal(v, before[k])]
    assert any("running_mean" in k for k in moved) and any(k.startswith("head.") for k in moved)


def test_corrected_step_differs_from_the_authors():
    data = _batch()
    runs = []
    for protocol in ("corrected", "authors"):
        defense = GenAF(protocol=protocol, lf_on="logits", steps=STEPS, epochs=1, batch_size=12)
        defense.ctx = RunContext()
        model = _model()
        adversarial_finetune(model, data, partial(defense.tuning_loss), defense.config, seed=0)
        runs.append(model.state_dict())
    assert torch.equal(
        runs[0]["encoder.backbone.features.1.running_mean"],
        _model().state_dict()["encoder.backbone.features.1.running_mean"],
    )  # corrected: BN statistics frozen
    assert not torch.allclose(runs[0]["head.net.0.weight"], runs[1]["head.net.0.weight"], atol=1e-6)


def test_presets_and_explicit_parameters():
    corrected, authors = GenAF(), GenAF(protocol="authors")
    assert (corrected.lf_on, corrected.pgd_ce_term, corrected.pgd_input) == ("features", False, "normalised")
    assert (corrected.config.freeze_bn, corrected.stage2_head_layers, corrected.finetune_count) == (
        True,
        False,
        "ceil",
    )
    assert (authors.lf_on, authors.pgd_ce_term, authors.pgd_input) == ("logits", True, "raw")
    assert (authors.config.freeze_bn, authors.stage2_head_layers, authors.finetune_count) == (
        False,
        True,
        "int",
    )
    mixed = GenAF(protocol="authors", freeze_bn=True, lf_on="features")
    assert (mixed.config.freeze_bn, mixed.lf_on, mixed.pgd_ce_term) == (True, "features", True)
    assert (PGDAT(protocol="authors").config.freeze_bn, PGDAT(protocol="authors").pgd_ce_term) == (
        False,
        False,
    )
    assert ZePAD(protocol="authors").pgd_input == "raw" and not ZePAD().pgd_ce_term
    for bad in (
        {"protocol": "paper"},
        {"pgd_input": "scaled"},
        {"lf_on": "pixels"},
        {"finetune_count": "round"},
    ):
        with pytest.raises(ValueError):
            GenAF(**bad)
    assert least_critical({"a": 1.0, "b": 2.0, "c": 3.0, "d": 0.5}, 0.2, "int") == []  # int(0.8) = 0
    assert least_critical({"a": 1.0, "b": 2.0, "c": 3.0, "d": 0.5}, 0.2) == ["d"]  # ceil(0.8) = 1


def test_pgd_records_its_iterates():
    x = torch.full((2, 3, 4, 4), 0.5)
    iterates: list[torch.Tensor] = []
    out = pgd(lambda t: t.sum(), x, 0.1, 0.03, 3, iterates=iterates)
    assert [round(float(t.mean()), 4) for t in iterates] == [0.5, 0.53, 0.56]
    assert torch.allclose(out, torch.full_like(x, 0.59))


def test_suite_protocol_reaches_defenses_that_take_it(tmp_path):
    registry = load_registry(["zb_outside_plugin"])
    text = SMOKE_SUITE.replace(
        'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin"]\nprotocol = "authors"'
    )
    text += '\n[defenses.pgd-at]\nplugin = "pgd-at"\n'
    text += '\n[defenses.mine]\nplugin = "gen-af"\nprotocol = "corrected"\n'
    path = tmp_path / "s.toml"
    path.write_text(text)
    suite = load_suite(path, registry)
    assert suite.spec("defenses", "pgd-at").params["protocol"] == "authors"
    assert suite.spec("defenses", "mine").params["protocol"] == "corrected"  # the table wins
    assert "protocol" not in suite.spec("defenses", "none").params  # `none` takes no protocol
    path.write_text(text.replace('protocol = "authors"', 'protocol = "paper"'))
    with pytest.raises(SuiteError, match="suite.protocol"):
        load_suite(path, registry)


def _layer4_side(arch: str, stem: str, size: int) -> int:
    net, _ = build_backbone(arch, stem=stem)
    seen = {}
    net.layer4.register_forward_hook(lambda m, i, o: seen.update(side=o.shape[-1]))
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, size, size))
    return seen["side"]


def test_authors_stems_and_normalisations():
    assert _layer4_side("resnet18-imagenet", "default", 64) == 2
    assert _layer4_side("resnet18-imagenet", "authors", 64) == 8  # 7×7 stride 1 padding 1, no max-pool
    assert _layer4_side("resnet18", "default", 32) == 5 and _layer4_side("resnet18", "authors", 32) == 4
    for arch in ("resnet18", "resnet18-imagenet"):  # same parameters: checkpoints load under either stem
        default, authors = (
            build_backbone(arch)[0].state_dict(),
            build_backbone(arch, stem="authors")[0].state_dict(),
        )
        assert {k: v.shape for k, v in default.items()} == {k: v.shape for k, v in authors.items()}
    with pytest.raises(ValueError):
        build_backbone("resnet18", stem="wide")
    assert normalisation("none") == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert normalisation("stl10")[0][0] == pytest.approx(0.44087798)


# ---------------------------------------------------------------------- BMP-Branch from a public checkpoint
def _solo_learn_bmp(tmp_path) -> tuple[str, str, torch.nn.Module]:
    """A BMP file in solo-learn's own layout (torchvision ResNet18, CIFAR stem): path, sha256, the net."""

    from zepad_bench.nn.checkpoints import file_sha256

    torch.manual_seed(5)
    net = solo_resnet18().eval()
    path = write_solo_file(tmp_path / "simclr-cifar10-b30xch14-ep=999.ckpt", net, "backbone.")
    return str(path), file_sha256(path), net


def test_bmp_follows_the_preset_and_defaults_to_the_authors_manifest_file():
    assert ZePAD().bmp == "ssl" and ZePAD(protocol="authors").bmp == "checkpoint"
    assert ZePAD(protocol="authors", bmp="ssl").bmp == "ssl"  # an explicit value wins
    manifest = paper_encoder("simclr-cifar10")
    assert ZePAD(protocol="authors").bmp_checkpoint_params == {
        "paper": "simclr-cifar10",
        "arch": manifest["arch"],
        "normalisation": manifest["normalisation"],
        "sha256": manifest["sha256"],  # the authors' Git LFS file: pinned, so it is in the cache key
    }
    with pytest.raises(ValueError, match="sha256"):
        ZePAD(bmp="checkpoint", bmp_checkpoint_params={"arch": "resnet18"})


def test_checkpoint_bmp_is_the_files_encoder_pinned_by_sha256(tmp_path):
    path, digest, net = _solo_learn_bmp(tmp_path)
    params = {"arch": "resnet18", "normalisation": "cifar", "sha256": digest}
    only_bmp = dict(use_mpae_victim=False, num_auxiliaries=0, epochs=1, batch_size=6)
    defense = ZePAD(protocol="authors", bmp_checkpoint=path, bmp_checkpoint_params=params, **only_bmp)
    defense.ctx = RunContext(plugins=load_registry().get)  # as the runner sets it
    defense.check()
    victim = Encoder("small-cnn", {"width": 4})
    (branch,) = defense.fit(victim, [], _batch()).branches
    assert branch.name == "bmp"
    loaded = branch.encoder.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())
    mean, std = normalisation("cifar")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        assert torch.allclose(branch.encoder(x), expected, atol=1e-5)
    assert "solo-learn" in {cls.name for cls in defense.code_dependencies()}
    replaced = ZePAD(
        protocol="authors", bmp_checkpoint=path, bmp_checkpoint_params={**params, "sha256": "0" * 64}
    )
    replaced.ctx = defense.ctx
    with pytest.raises(UserError, match="sha256 mismatch"):
        replaced.fit(victim, [], _batch())


def test_a_missing_bmp_checkpoint_is_one_line_naming_download(tmp_path):
    with pytest.raises(UserError, match="bmp_checkpoint = PATH .*--download") as info:
        ZePAD(protocol="authors").check()
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="checkpoint not found.*--download"):
        ZePAD(protocol="authors", bmp_checkpoint=str(tmp_path / "absent.ckpt")).check()
    ZePAD(protocol="authors", use_bmp=False).check()  # no BMP branch, no file needed
    ZePAD().check()  # corrected: pretrained on D_f


def test_suite_resolves_the_bmp_checkpoint_beside_it_and_download_fetches_it(tmp_path, monkeypatch):
    path, digest, _ = _solo_learn_bmp(tmp_path)
    fetched = []
    monkeypatch.setattr(
        "zepad_bench_plugins.defenses.zepad.fetch_paper_encoder",
        lambda id_, dest: fetched.append((id_, dest)),
    )
    registry = load_registry(["zb_outside_plugin"])
    text = SMOKE_SUITE.replace(
        'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin"]\nprotocol = "authors"'
    )
    text += '\n[defenses.zepad]\nplugin = "zepad"\nbmp_checkpoint = "zoo/bmp.ckpt"\n'
    suite_path = tmp_path / "s.toml"
    suite_path.write_text(text)
    with pytest.raises(
        SuiteMissing, match=r"missing data: defenses\.zepad: .*zoo/bmp\.ckpt: BMP checkpoint not found"
    ):
        load_suite(suite_path, registry)
    suite = load_suite(suite_path, registry, download=True)  # validation alone fetches nothing
    assert suite.spec("defenses", "zepad").params["bmp_checkpoint"] == str(tmp_path / "zoo" / "bmp.ckpt")
    with pytest.raises(UserError):  # the stand-in fetched nothing: the check after fetch says so
        fetch_all(suite)
    assert fetched == [("simclr-cifar10", tmp_path / "zoo" / "bmp.ckpt")]


def test_gen_af_stage_one_epochs_follow_the_preset():
    """The authors' Gen-AF script runs stage I for 50 epochs; ours (the ZePAD paper's tuning) for 20."""
    assert GenAF().config.epochs == 20 and GenAF(protocol="authors").config.epochs == 50
    assert GenAF(protocol="authors", epochs=3).config.epochs == 3  # an explicit value wins
    assert PGDAT(protocol="authors").config.epochs == 20  # only Gen-AF's script says otherwise
