"""The paper suites (suites/*.toml): list all that is missing without data, validate on their documented
layout, and cover every cell of the paper tables they reproduce; the offline counterparts validate as they
are."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from zepad_bench.errors import SuiteMissing
from zepad_bench.reference import comparisons, paper_cells
from zepad_bench.registry import load_registry
from zepad_bench.suite import load_suite

SUITES = Path(__file__).resolve().parents[1] / "suites"
PAPER = {  # suite → the paper tables it reproduces
    "comparison": {"7"},
    "semi_black_box": {"1", "2"},
    "cross_task": {"3", "4"},
    "white_box": {"S1", "S2"},
    "ablation": {"5"},
    "ensembles": {"S3"},
    "budgets": {"S4"},
    "lambda": {"S5"},
    "detection": {"6"},
    "retrieval": {"S7"},
}
OFFLINE = ("cross_task_offline", "white_box_offline", "retrieval_offline")
REGISTRY = load_registry()


def raw(name: str) -> dict:
    return tomllib.loads((SUITES / f"{name}.toml").read_text())


def copied(name: str, root: Path) -> Path:
    """The suite copied to ``root/suites/`` (its relative paths then point into ``root``)."""
    (root / "suites").mkdir(exist_ok=True)
    return Path(shutil.copy(SUITES / f"{name}.toml", root / "suites"))


def repo_relative(path: str) -> str:
    """A suite's path (relative to suites/) as the header documents it (relative to the repository)."""
    return path.removeprefix("../")


def documented_layout(name: str, root: Path, skip: str | None = None) -> Path:
    """Copy the suite under ``root`` and create empty stand-ins for every path its data and checkpoints
    need (``skip``: one repository-relative path left out); returns the copy's path."""
    table = raw(name)
    for spec in table["datasets"].values():
        folder = root / repo_relative(spec["root"])
        for rel in REGISTRY.get("datasets", spec["plugin"]).required or ("",):
            if str(Path(repo_relative(spec["root"])) / rel) != skip:
                (folder / rel).mkdir(parents=True, exist_ok=True)
    for spec in table["encoders"].values():
        if repo_relative(spec["path"]) != skip:
            (root / repo_relative(spec["path"])).parent.mkdir(parents=True, exist_ok=True)
            (root / repo_relative(spec["path"])).touch()
    return copied(name, root)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_without_data_validation_lists_every_missing_path(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "..")  # the working directory does not matter
    with pytest.raises(SuiteMissing) as error:
        load_suite(copied(name, tmp_path), REGISTRY)
    table = raw(name)
    files = [f"encoders.{i}" for i, spec in table["encoders"].items() if spec["plugin"] == "solo-learn"]
    assert [key for key, _ in error.value.items] == [f"datasets.{i}" for i in table["datasets"]] + files
    lines = str(error.value).splitlines()
    assert len(lines) == len(error.value.items)  # one line per missing item, naming its table
    first_id, first = next(iter(table["datasets"].items()))
    assert lines[0].startswith(f"{tmp_path}/suites/{name}.toml: missing data: datasets.{first_id}: ")
    assert str(tmp_path / repo_relative(first["root"])) in lines[0] and "download" in lines[0]


def test_the_cli_lists_what_is_missing_and_exits_3(tmp_path):
    suite = copied("comparison", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", "validate", str(suite)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3 and "error" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        f"{suite}: missing data: datasets.cifar10: CIFAR10 not found under {tmp_path}/data"
    )
    assert all(line.startswith(f"{suite}: missing data: ") for line in lines[:-1])
    assert lines[-1].startswith("1 of 1 suites are valid but lack data")


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_settings_and_documented_layout(name, tmp_path):
    suite = load_suite(documented_layout(name, tmp_path), REGISTRY)  # every plugin param accepted too
    assert (suite.image_size, round(suite.eps * 255, 6)) == (64, 10.0)
    assert suite.spec("datasets", suite.attacker_data).plugin == "cifar10"
    header = (SUITES / f"{name}.toml").read_text().split("[suite]")[0]
    for id_, spec in raw(name)["encoders"].items():
        assert spec["arch"] in ("resnet18", "resnet18-imagenet")
        path = repo_relative(spec["path"])
        method = next(m for m in REGISTRY.get("encoders", "ssl").methods if f"/{m}" in path)
        assert path.replace(method, "<method>") in header  # the header says where it goes
        assert suite.spec("encoders", id_).params["path"] == str(tmp_path / path)  # resolved
    for spec in raw(name)["datasets"].values():
        assert repo_relative(spec["root"]) in header
    assert f"zepad-bench run suites/{name}.toml" in header


def test_a_missing_checkpoint_is_named(tmp_path):
    missing = "zoo/imagenet/byol.ckpt"
    suite = documented_layout("comparison", tmp_path, skip=missing)
    expected = f"missing data: encoders.byol-imagenet: {tmp_path / missing}: checkpoint not found"
    with pytest.raises(SuiteMissing, match=expected):
        load_suite(suite, REGISTRY)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_suite_covers_every_cell_of_its_tables(name, tmp_path):
    """Every number of the reproduced tables (except averages and Δ rows) matches some cell of the suite."""
    suite = load_suite(documented_layout(name, tmp_path), REGISTRY)
    metrics = dict.fromkeys(("BA", "RA", "ASR", "detection_accuracy"), 50.0)
    rows = [
        {**cell.__dict__, "task_data": suite.spec("tasks", cell.task).reserved["data"], "metrics": metrics}
        for cell in suite.cells()
    ]
    matched = {(c["table"], c["row"], c["column"]) for c in comparisons(suite, rows)}
    wanted = {(c.table, c.row, c.column) for c in paper_cells() if c.table in PAPER[name]}
    assert wanted and wanted <= matched, sorted(wanted - matched)[:5]


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_suites_validate_without_data(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = load_suite(SUITES / f"{name}.toml", REGISTRY)
    assert {spec.plugin for spec in suite.tables["datasets"].values()} <= {"digits", "lfw", "photos"}
    assert {spec.plugin for spec in suite.tables["encoders"].values()} == {"ssl"}
    assert "random-noise" in {suite.spec("attacks", a).plugin for a in suite.grid["attacks"]}
    assert len(suite.cells()) <= 72 and len(suite.grid["seeds"]) >= 3  # CPU-sized, with honest spread
