"""solo-learn checkpoints: our writer, the `pretrain` command, safe and strict loading of solo-learn files."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import solo_resnet18, write_solo_file
from torch import nn

from zepad_bench.errors import UserError
from zepad_bench.nn.checkpoints import load_solo_learn, save_solo_learn
from zepad_bench.nn.encoder_choices import CIFAR_MEAN, CIFAR_STD
from zepad_bench.nn.ssl import pretrain
from zepad_bench.zoo import pretrain_command
from zepad_bench_plugins.datasets.offline import Photos
from zepad_bench_plugins.encoders.solo_learn import SoloLearnEncoder


@pytest.fixture(scope="module")
def solo_net() -> nn.Module:
    torch.manual_seed(3)
    net = solo_resnet18()
    with torch.no_grad():  # non-default BN statistics, so a load that skips buffers would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize("prefix", ["backbone.", "encoder."])
def test_solo_learn_layout_loads_strictly(tmp_path, solo_net, prefix):
    path = write_solo_file(tmp_path / "simclr-cifar10-b30xch14-ep=999.ckpt", solo_net, prefix)
    encoder = load_solo_learn(path, "resnet18", input_size=32)
    loaded = encoder.backbone.state_dict()
    assert set(loaded) == set(solo_net.state_dict())
    assert all(torch.equal(loaded[k], v) for k, v in solo_net.state_dict().items())
    assert encoder.meta["dropped"] == ["classifier", f"momentum_{prefix[:-1]}", "projector", "queue"]
    x = torch.rand(2, 3, 40, 40)
    resized = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(encoder(x), solo_net((resized - mean) / std), atol=1e-5)


def test_loader_errors_name_the_file_and_the_cause(tmp_path, solo_net):
    good = write_solo_file(tmp_path / "good.ckpt", solo_net, "backbone.")
    data = good.read_bytes()
    cases = {
        "missing": (tmp_path / "absent.ckpt", "not found"),
        "truncated": (tmp_path / "truncated.ckpt", "corrupt"),
        "garbage": (tmp_path / "garbage.ckpt", "corrupt"),
    }
    cases["truncated"][0].write_bytes(data[: len(data) // 2])
    cases["garbage"][0].write_bytes(b"not a checkpoint at all" * 8)
    for path, cause in cases.values():
        with pytest.raises(UserError, match=cause) as info:
            load_solo_learn(path, "resnet18")
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="do not fit arch 'resnet50'"):
        load_solo_learn(good, "resnet50")
    with pytest.raises(UserError, match="do not fit arch 'small-cnn'"):
        load_solo_learn(good, "small-cnn")
    with pytest.raises(UserError, match="sha256 mismatch"):
        load_solo_learn(good, "resnet18", sha256="0" * 64)
    no_backbone = tmp_path / "heads.ckpt"
    torch.save({"state_dict": {"projector.0.weight": torch.ones(2, 2)}}, no_backbone)
    with pytest.raises(UserError, match="no backbone weights"):
        load_solo_learn(no_backbone, "resnet18")


class _Marker:
    """Unpickling this object would create a file: proof that pickled code ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_unsafe_pickles_are_refused_without_running_code(tmp_path, solo_net):
    namespace = write_solo_file(
        tmp_path / "legacy.ckpt", solo_net, "encoder.", hyper_parameters=argparse.Namespace(a=1)
    )
    with pytest.raises(UserError, match="unsafe unpickling.*argparse.Namespace"):
        load_solo_learn(namespace, "resnet18")
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.ones(1)}, "payload": _Marker(str(marker))}, evil)
    with pytest.raises(UserError, match="unsafe unpickling.*makedirs"):
        load_solo_learn(evil, "resnet18")
    assert not marker.exists()


def test_writer_round_trip_and_sidecar(tmp_path):
    torch.manual_seed(0)
    net = solo_resnet18()
    state = {f"backbone.{k}": v for k, v in net.state_dict().items()} | {
        "projector.0.weight": torch.ones(3, 3)
    }
    path = tmp_path / "run" / "m.ckpt"
    digest = save_solo_learn(path, state, {"method": "simclr", "epochs": 1}, epoch=0, global_step=5)
    raw = torch.load(path, weights_only=True)
    assert raw["global_step"] == 5 and raw["hyper_parameters"]["method"] == "simclr"
    assert set(raw) >= {"state_dict", "epoch", "global_step", "pytorch-lightning_version", "hyper_parameters"}
    assert json.loads((path.parent / "args.json").read_text()) == {"method": "simclr", "epochs": 1}
    assert Path(f"{path}.sha256").read_text().split() == [digest, "m.ckpt"]
    loaded = load_solo_learn(path, "resnet18", sha256=digest).backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())
    Path(f"{path}.sha256").write_text("f" * 64 + "  m.ckpt\n")  # a sidecar that no longer matches
    with pytest.raises(UserError, match="sha256 mismatch"):
        load_solo_learn(path, "resnet18")


def test_solo_learn_plugin_checks_cheaply(tmp_path):
    with pytest.raises(UserError, match="not found"):
        SoloLearnEncoder(path=str(tmp_path / "none.ckpt")).check()
    with pytest.raises(ValueError, match="sha256"):
        SoloLearnEncoder(path="x.ckpt", sha256="abc")
    with pytest.raises(ValueError, match="normalisation"):
        SoloLearnEncoder(path="x.ckpt", normalisation="mnist")


CLI_ARGS = dict(method="byol", epochs=2, batch_size=32, seed=3, arch="small-cnn", arch_params={"width": 8})
CLI_RECIPE = {"proj_hidden_dim": 32, "proj_output_dim": 16, "pred_hidden_dim": 32}


def _run_cli(out: Path, *extra: str):
    args = [
        "--method", CLI_ARGS["method"], "--dataset", "photos", "-p", "patches_per_image=20",
        "--epochs", str(CLI_ARGS["epochs"]), "--batch-size", str(CLI_ARGS["batch_size"]),
        "--seed", str(CLI_ARGS["seed"]), "--arch", "small-cnn", "--arch-params", '{"width": 8}',
        "--image-size", "16", "--device", "cpu", "--out", str(out), "--quiet",
        *[f"-r{k}={v}" for k, v in CLI_RECIPE.items()], *extra,
    ]  # fmt: skip
    result = CliRunner().invoke(pretrain_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_pretrain_command_checkpoint_reloads_bit_exactly_and_resumes(tmp_path):
    _run_cli(tmp_path / "full")
    (ckpt,) = (tmp_path / "full").glob("*.ckpt")
    assert ckpt.name == "byol-photos-small-cnn-seed3-ep=1.ckpt"
    source = SoloLearnEncoder(path=str(ckpt), arch="small-cnn", arch_params={"width": 8})
    source.check()
    loaded = source.build(None)
    data = Photos(patches_per_image=20).load("train", 16, CLI_ARGS["seed"])
    kwargs = {k: v for k, v in CLI_ARGS.items() if k != "method"}
    reference, state, _ = pretrain(CLI_ARGS["method"], data.images, **kwargs, **CLI_RECIPE)
    expected = reference.backbone.state_dict()
    assert all(torch.equal(loaded.backbone.state_dict()[k], v) for k, v in expected.items())
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], v) for k, v in state.items())
    assert {k.split(".")[0] for k in saved} >= {"backbone", "projector", "predictor", "momentum_backbone"}

    interrupted = tmp_path / "interrupted"
    stopped = _run_cli(interrupted, "--max-steps", "3")
    assert "stopped at step 3/" in stopped.output and (interrupted / "resume.pt").is_file()
    assert not list(interrupted.glob("*.ckpt"))
    assert "resuming from step 3" in _run_cli(interrupted).output
    resumed = torch.load(interrupted / ckpt.name, weights_only=True)["state_dict"]
    assert all(torch.equal(resumed[k], v) for k, v in saved.items())
    assert not (interrupted / "resume.pt").exists()
    assert "already complete" in _run_cli(interrupted).output


def test_pretrain_command_errors_are_user_errors(tmp_path):
    runner = CliRunner()
    base = ["--method", "simclr", "--out", str(tmp_path / "o"), "--quiet", "--device", "cpu"]
    result = runner.invoke(pretrain_command, [*base, "--dataset", "no-such-set"])
    assert isinstance(result.exception, UserError) and "no-such-set" in str(result.exception)
    result = runner.invoke(
        pretrain_command, [*base, "--dataset", "photos", "-p", "patches_per_image=10", "-r", "tau=2"]
    )
    assert isinstance(result.exception, UserError) and "unknown recipe parameter 'tau'" in str(
        result.exception
    )
