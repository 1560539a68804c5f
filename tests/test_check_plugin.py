"""`check-plugin`: a bad parameter is a usage error, every check is reported, suite modules are seen."""

from __future__ import annotations

import sys

import torch
from conftest import SMOKE_SUITE
from conftest import run_main as invoke

from zepad_bench import Attack, Defense
from zepad_bench.testing import check_attack, check_defense

ATTACK_CHECKS = [
    "label-free fit",
    "budget",
    "range [0, 1]",
    "non-zero effect",
    "determinism per seed",
    "state round trip",
]


def test_a_bad_param_value_is_a_one_line_usage_error_not_a_failed_check(monkeypatch, capsys):
    monkeypatch.setenv("ZEPAD_BENCH_PLUGINS", "")
    assert invoke(["check-plugin", "uapgd", "--param", "images=32", "--param", "steps=-1"], monkeypatch) == 2
    out, err = capsys.readouterr()
    assert "PASS" not in out and "FAIL" not in out
    assert err.strip() == (
        "error: check-plugin uapgd: bad parameters (--param images=32 --param steps=-1): "
        "steps must be an integer ≥ 1, got -1"
    )


def test_one_failed_check_does_not_skip_the_others():
    class Scribbles(Attack):
        """A good universal shift whose fit writes into the public encoder (breaks the label-free rule)."""

        name = "scribbles"

        def fit(self, encoders, images):
            super().fit(encoders, images)
            with torch.no_grad():
                next(encoders[0].parameters()).add_(1.0)
            self.delta = torch.full((1, 3, 1, 1), self.eps / 2)

        def perturb(self, x):
            return (x + self.delta).clamp(0, 1)

    results = {name: ok for name, ok, _ in check_attack(Scribbles).results}
    assert list(results) == ATTACK_CHECKS
    assert [name for name, ok in results.items() if not ok] == ["label-free fit"]

    class Crashes(Attack):
        name = "crashes"

        def fit(self, encoders, images):
            raise RuntimeError("fit is broken")

    report = check_attack(Crashes)
    assert [name for name, _, _ in report.results] == ATTACK_CHECKS
    assert all(not ok and "RuntimeError: fit is broken" in detail for _, ok, detail in report.results)

    class NoBranches(Defense):
        name = "no-branches"

        def fit(self, victim, auxiliaries, data):
            raise RuntimeError("tuning is broken")

    report = check_defense(NoBranches)
    assert [name for name, ok, _ in report.results] == ["fit", "branch heads", "fusion shapes"]
    assert not any(ok for _, ok, _ in report.results)


BESIDE = '''from zb_outside_plugin import SignFlip

from zepad_bench import hookimpl


class BesideSign(SignFlip):
    """The outside checkerboard attack, from a module beside its suite."""

    name = "beside-sign"


@hookimpl
def register_attacks(register):
    register(BesideSign)
'''


def test_check_plugin_sees_the_plugin_modules_of_a_suite(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "zb_beside_check.py").write_text(BESIDE)
    suite = folder / "s.toml"
    suite.write_text(
        SMOKE_SUITE.replace(
            'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin", "zb_beside_check"]'
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZEPAD_BENCH_PLUGINS", "")
    assert invoke(["check-plugin", "beside-sign"], monkeypatch) == 2
    assert "no attack, defense or backbone named 'beside-sign'" in capsys.readouterr().err
    assert invoke(["check-plugin", "beside-sign", "--suite", str(suite)], monkeypatch) == 0
    assert "attack beside-sign: 6 passed, 0 failed" in capsys.readouterr().out
    sys.modules.pop("zb_beside_check", None)
