"""Outside architectures (register_backbones), the head codec, and register's subclass check."""

from __future__ import annotations

import pytest
import torch
from conftest import SMOKE_SUITE, recomputed_classification

from zepad_bench import load_registry
from zepad_bench.errors import UserError
from zepad_bench.nn.codec import head_from_state, head_state
from zepad_bench.nn.encoder import Encoder
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite


def test_an_outside_backbone_is_built_cached_reloaded_and_attacked(tmp_path):
    text = SMOKE_SUITE.replace(
        '[encoders.rand]\nplugin = "outside-random"',
        '[encoders.rand]\nplugin = "outside-random"\narch = "outside-tiny"',
    ).replace(
        '[attacks.sign]\nplugin = "outside-sign"',
        '[attacks.sign]\nplugin = "uapgd"\nimages = 64\nsteps = 2\nstep_size = 0.02\ndecay_after = 0',
    )
    (tmp_path / "s.toml").write_text(text)
    suite = load_suite(tmp_path / "s.toml", load_registry(["zb_outside_plugin"]))
    suite = suite.with_axes(defenses=["none"], tasks=["cls"])
    first = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    row = first.run_cell(suite.cells()[0])
    attack, _ = first.attack(suite.cells()[0])
    assert type(attack.encoders[0].backbone).__name__ == "TinyConv"
    assert 0 < attack.delta.abs().max() <= 16 / 255 + 1e-6  # gradients flowed through the outside arch
    again = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    encoder, _ = again.encoder("rand", 0)  # rebuilt from the cached state through the backbone registry
    assert again.reused["encoder"] == 1 and encoder.feature_dim == 8
    again = recomputed_classification(first, suite.cells()[0], row)  # the outside arch's features, scored
    assert {m: row["metrics"][m] for m in again} == pytest.approx(again, rel=1e-6)


class ScaledHead(torch.nn.Module):
    """A non-MLP head: a linear layer scaled by a constant."""

    def __init__(self, in_dim: int, classes: int, scale: float):
        super().__init__()
        self.init_kwargs = {"in_dim": in_dim, "classes": classes, "scale": scale}
        self.linear, self.scale = torch.nn.Linear(in_dim, classes), scale

    def forward(self, x):
        return self.linear(x) * self.scale


def test_any_module_head_round_trips_through_the_codec():
    head = ScaledHead(4, 3, 2.0)
    restored = head_from_state(head_state(head))
    x = torch.randn(5, 4)
    assert type(restored) is ScaledHead and torch.equal(restored(x), head(x))
    with pytest.raises(TypeError, match="init_kwargs"):
        head_state(torch.nn.Linear(4, 3))


def test_register_rejects_a_class_of_the_wrong_kind(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "zb_wrong_kind.py").write_text(
        "from zepad_bench import Defense, hookimpl\n\n"
        "class NotAnAttack(Defense):\n    name = 'not-an-attack'\n\n"
        "@hookimpl\ndef register_attacks(register):\n    register(NotAnAttack)\n"
    )
    with pytest.raises(
        UserError, match=r"zb_wrong_kind registered .*NotAnAttack.* not a subclass of zepad_bench\.Attack"
    ):
        load_registry(["zb_wrong_kind"])


def test_a_backbone_may_not_take_a_built_in_name(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "zb_clash.py").write_text(
        "import torch\nfrom zepad_bench import hookimpl\n\n"
        "@hookimpl\ndef register_backbones(register):\n    register('small-cnn', torch.nn.Identity)\n"
    )
    with pytest.raises(UserError, match="zb_clash: backbone 'small-cnn' is a built-in"):
        load_registry(["zb_clash"])
    assert Encoder("small-cnn", {"width": 4}).feature_dim == 16  # the built-in stands


def test_backbones_live_in_their_registry_not_in_a_module_table():
    from zepad_bench.nn.backbones import BUILDERS, known_archs, plugin_backbones

    with_outside, plain = load_registry(["zb_outside_plugin"]), load_registry()
    assert "outside-tiny" in with_outside.backbones and "outside-tiny" not in plain.backbones
    assert "outside-tiny" not in BUILDERS and "outside-tiny" not in known_archs()  # loading edits nothing
    with pytest.raises(ValueError, match="unknown arch 'outside-tiny'"):
        Encoder("outside-tiny")
    with plugin_backbones(plain.backbones), pytest.raises(ValueError, match="unknown arch 'outside-tiny'"):
        Encoder("outside-tiny")
    with plugin_backbones(with_outside.backbones):
        assert Encoder("outside-tiny", {"width": 3}).feature_dim == 3
