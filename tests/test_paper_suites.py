"""The paper suites (suites/*.toml): fail fast without data, validate on their documented layout, and
cover every cell of the paper tables they reproduce; the offline counterparts validate as they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from zepad_bench.errors import UserError
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


def documented_layout(name: str, root: Path, skip: str | None = None) -> None:
    """Create, under ``root``, empty stand-ins for every path the suite's data and checkpoints need."""
    table = raw(name)
    for spec in table["datasets"].values():
        folder = root / spec["root"]
        for rel in REGISTRY.get("datasets", spec["plugin"]).required or ("",):
            if str(Path(spec["root"]) / rel) != skip:
                (folder / rel).mkdir(parents=True, exist_ok=True)
    for spec in table["encoders"].values():
        if spec["path"] != skip:
            (root / spec["path"]).parent.mkdir(parents=True, exist_ok=True)
            (root / spec["path"]).touch()


@pytest.mark.parametrize("name", sorted(PAPER))
def test_without_data_validation_stops_at_the_first_missing_path(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as error:
        load_suite(SUITES / f"{name}.toml", REGISTRY)
    message = str(error.value)
    assert "\n" not in message
    first = next(iter(raw(name)["datasets"].values()))  # the first dataset table is checked first
    assert str(tmp_path / first["root"]) in message and "download" in message


def test_the_cli_prints_one_line_and_exits_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", "validate", str(SUITES / "comparison.toml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: CIFAR10 not found under")


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_settings_and_documented_layout(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    documented_layout(name, tmp_path)
    suite = load_suite(SUITES / f"{name}.toml", REGISTRY)  # every plugin param accepted too
    assert (suite.image_size, round(suite.eps * 255, 6)) == (64, 10.0)
    assert suite.spec("datasets", suite.attacker_data).plugin == "cifar10"
    header = (SUITES / f"{name}.toml").read_text().split("[suite]")[0]
    for spec in suite.tables["encoders"].values():
        assert spec.params["arch"] in ("resnet18", "resnet18-imagenet")
        method = next(m for m in REGISTRY.get("encoders", "ssl").methods if f"/{m}" in spec.params["path"])
        assert spec.params["path"].replace(method, "<method>") in header  # the header says where it goes
    for spec in suite.tables["datasets"].values():
        assert spec.params["root"] in header
    assert f"zepad-bench run suites/{name}.toml" in header


def test_a_missing_checkpoint_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = "zoo/imagenet/byol.ckpt"
    documented_layout("comparison", tmp_path, skip=missing)
    with pytest.raises(UserError, match=missing):
        load_suite(SUITES / "comparison.toml", REGISTRY)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_suite_covers_every_cell_of_its_tables(name, tmp_path, monkeypatch):
    """Every number of the reproduced tables (except averages and Δ rows) matches some cell of the suite."""
    monkeypatch.chdir(tmp_path)
    documented_layout(name, tmp_path)
    suite = load_suite(SUITES / f"{name}.toml", REGISTRY)
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
    assert len(suite.cells()) <= 48
