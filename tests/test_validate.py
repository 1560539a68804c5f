"""Validation a newcomer can act on: what is missing on this machine is told apart from a broken suite,
every missing item of a suite at once, each message once with its suite and table; exit 0 / 3 / 2."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner
from conftest import SMOKE_SUITE
from conftest import run_main as invoke

from zepad_bench.cli import cli
from zepad_bench.errors import SuiteError, SuiteMissing
from zepad_bench.registry import load_registry
from zepad_bench.suite import load_suite

MISSING_TABLES = """
[datasets.cifar]
plugin = "cifar10"
root = "nodata/cifar10"

[datasets.animals]
plugin = "animals10"
root = "nodata/animals"

[encoders.ckpt]
plugin = "solo-learn"
path = "nodata/encoder.ckpt"
arch = "small-cnn"
"""


@pytest.fixture
def suites(tmp_path):
    paths = {}
    for name, text in {
        "ok": SMOKE_SUITE,
        "lacking": SMOKE_SUITE + MISSING_TABLES,
        "broken": SMOKE_SUITE.replace('eps = "16/255"', 'eps = "lots"') + MISSING_TABLES,
    }.items():
        paths[name] = tmp_path / f"{name}.toml"
        paths[name].write_text(text)
    return paths


def test_every_missing_item_of_a_suite_is_listed_once_with_its_table(suites, tmp_path):
    with pytest.raises(SuiteMissing) as info:
        load_suite(suites["lacking"], load_registry())
    assert [key for key, _ in info.value.items] == ["datasets.cifar", "datasets.animals", "encoders.ckpt"]
    lines = str(info.value).splitlines()
    assert len(lines) == 3
    for line, key in zip(lines, ("datasets.cifar", "datasets.animals", "encoders.ckpt")):
        assert line.startswith(f"{suites['lacking']}: missing data: {key}: ")
        assert line.count(str(suites["lacking"])) <= 2  # the suite once (the cifar line also in its hint)
    # the --download hint where it applies, naming this suite; never where it cannot fetch
    assert f"`zepad-bench run {suites['lacking']} --download`" in lines[0]
    assert "--download" not in lines[1] and "--download" not in lines[2]
    assert str(tmp_path / "nodata" / "animals") in lines[1] and "encoder.ckpt" in lines[2]


def test_a_broken_suite_stays_an_error(suites):
    with pytest.raises(SuiteError, match="suite.eps"):
        load_suite(suites["broken"], load_registry())


def test_validate_exit_status_says_ready_lacking_data_or_broken(suites, monkeypatch, capsys):
    assert invoke(["validate", str(suites["ok"])], monkeypatch) == 0
    capsys.readouterr()

    assert invoke(["validate", str(suites["ok"]), str(suites["lacking"])], monkeypatch) == 3
    out, err = capsys.readouterr()
    assert f"{suites['ok']}: ok" in out
    lacking = [line for line in err.splitlines() if str(suites["lacking"]) in line]
    assert len(lacking) == 3 and all(": missing data: " in line for line in lacking)
    assert "error" not in err and err.splitlines()[-1].startswith("1 of 2 suites are valid but lack")

    assert invoke(["validate", *map(str, suites.values())], monkeypatch) == 2
    out, err = capsys.readouterr()
    broken = [line for line in err.splitlines() if str(suites["broken"]) in line]
    assert broken == [
        f"{suites['broken']}: error: suite.eps: expected a number or a fraction string like "
        "\"10/255\", got 'lots'"
    ]
    assert err.splitlines()[-1] == (
        "error: 1 of 3 suites are invalid; 1 lack data, checkpoints or packages on this machine (lines above)"
    )

    help_text = CliRunner().invoke(cli, ["validate", "--help"]).output
    assert "Exit status: 0" in help_text and "3 none broken" in help_text and "2 at least one" in help_text


def test_run_of_a_suite_lacking_data_lists_it_all_and_writes_nothing(suites, tmp_path, monkeypatch, capsys):
    workdir = tmp_path / "wd"
    assert invoke(["run", str(suites["lacking"]), "--workdir", str(workdir)], monkeypatch) == 3
    _, err = capsys.readouterr()
    assert len(err.splitlines()) == 3 and "Traceback" not in err and not workdir.exists()


def test_a_missing_optional_package_is_missing_not_broken_with_suite_and_table(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed: import fails
    path = tmp_path / "hub.toml"
    path.write_text(SMOKE_SUITE + '\n[encoders.dino]\nplugin = "hub"\nmodel = "vit_small_patch16_224.dino"\n')
    with pytest.raises(SuiteMissing) as info:
        load_suite(path, load_registry())
    assert str(info.value) == (
        f"{path}: missing package: encoders.dino: timm is not installed: pip install 'zepad-bench[hub]'"
    )
