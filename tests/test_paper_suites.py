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
from zepad_bench.paper_encoders import paper_encoders
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
    files = [spec["path"] for spec in table["encoders"].values()]
    files += [spec["bmp_checkpoint"] for spec in table["defenses"].values() if "bmp_checkpoint" in spec]
    for file in files:
        if repo_relative(file) != skip:
            (root / repo_relative(file)).parent.mkdir(parents=True, exist_ok=True)
            (root / repo_relative(file)).touch()
    return copied(name, root)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_without_data_validation_lists_every_missing_path(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path / "..")  # the working directory does not matter
    with pytest.raises(SuiteMissing) as error:
        load_suite(copied(name, tmp_path), REGISTRY)
    table = raw(name)
    files = [f"encoders.{i}" for i, spec in table["encoders"].items() if spec["plugin"] == "solo-learn"]
    files += [
        f"defenses.{i}" for i, spec in table["defenses"].items() if "bmp_checkpoint" in spec
    ]  # authors' BMP
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


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_suites_run_the_authors_protocol_with_ours_beside(name, tmp_path):
    """The paper's numbers came from the authors' code: its preset (their BMP file, Gen-AF's 50 epochs),
    stems and unclamped DAEs at the paper's budgets; our `corrected` preset is a `-corrected` twin."""
    from zepad_bench.suite import instantiate

    suite = load_suite(documented_layout(name, tmp_path), REGISTRY)
    assert raw(name)["suite"]["protocol"] == "authors"
    tuned = {}
    for id_ in suite.grid["defenses"]:
        defense = instantiate(suite, REGISTRY, "defenses", id_)
        if not hasattr(defense, "protocol"):
            continue
        tuned[id_] = defense
        if defense.protocol == "authors" and defense.name == "zepad":
            assert (defense.bmp, defense.eps, defense.step_size) == ("checkpoint", 0.03, 0.007)
            if defense.use_bmp:
                expected = tmp_path / "zoo/cifar10/simclr/simclr-cifar10-resnet18-seed0-ep=999.ckpt"
                assert defense.bmp_checkpoint == str(expected)
                assert defense.bmp_checkpoint_params["sha256"] == paper_encoders()["simclr-cifar10"]["sha256"]
        if defense.protocol == "authors" and defense.name == "gen-af":
            assert defense.config.epochs == 50
        if defense.name in ("pgd-at", "trades", "mart"):
            assert (defense.eps, defense.step_size) == (0.03, 0.007)
    twins = [id_ for id_, d in tuned.items() if d.protocol == "corrected"]
    assert twins and all(
        id_.endswith("-corrected") and id_.removesuffix("-corrected") in tuned for id_ in twins
    )
    for id_ in twins:  # same table but for the preset (and the BMP file only the authors' preset reads)
        ours = dict(suite.spec("defenses", id_).params)
        theirs = dict(suite.spec("defenses", id_.removesuffix("-corrected")).params)
        theirs.pop("bmp_checkpoint", None)
        assert (ours.pop("protocol"), theirs.pop("protocol")) == ("corrected", "authors") and ours == theirs
    if name != "lambda":  # every tuned defense has its twin (lambda: the paper's λ only)
        assert {id_ for id_, d in tuned.items() if d.protocol == "authors"} == {
            t.removesuffix("-corrected") for t in twins
        }
    assert all(suite.spec("attacks", a).params["clamp"] is False for a in suite.grid["attacks"])
    for spec in suite.tables["encoders"].values():
        assert spec.params["arch_params"] == {"stem": "authors"}


@pytest.mark.parametrize(
    "name",
    sorted(p.stem for p in SUITES.glob("*.toml") if p.stem.endswith("_offline") or p.stem == "quickstart"),
)
def test_every_offline_suite_validates_with_what_the_repository_ships(name, tmp_path, monkeypatch):
    """Offline suites need nothing but the installed packages and suites/encoders (e.g. an `authors`
    ZePAD names its BMP checkpoint there)."""
    monkeypatch.chdir(tmp_path)
    suite = load_suite(SUITES / f"{name}.toml", REGISTRY)
    assert suite.cells()
