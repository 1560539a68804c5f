"""Suite validation: every bad input is a one-line error naming file, key and expectation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.errors import SuiteError, UserError
from zepad_bench.suite import load_suite, parse_eps

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry():
    return load_registry(["zb_outside_plugin"])


def write(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "value, expected", [("10/255", 10 / 255), ("8 / 255", 8 / 255), (0.03, 0.03), (1, 1.0)]
)
def test_parse_eps_accepts_fractions_and_floats(value, expected):
    assert parse_eps(value) == pytest.approx(expected, abs=0)


@pytest.mark.parametrize("value", ["ten", "1/0", 0, -0.1, 1.5, True, "2/1"])
def test_parse_eps_rejects_bad_budgets(value):
    with pytest.raises(ValueError):
        parse_eps(value)


def test_grid_expands_to_cells(tmp_path, registry):
    suite = load_suite(write(tmp_path, SMOKE_SUITE), registry)
    cells = suite.cells()
    assert len(cells) == 1 * 1 * 1 * 1 * 2 * 1 * 2 * 1
    assert {c.defense for c in cells} == {"none", "none2"}
    assert suite.surrogates("rand", "white-box") == ["rand", "rand2"]
    assert suite.surrogates("rand", "semi-black-box") == ["rand"]
    narrowed = suite.with_axes(defenses=["none2"], tasks=["cls"])
    assert [(c.defense, c.task) for c in narrowed.cells()] == [("none2", "cls")]
    with pytest.raises(UserError, match="unknown defense id 'nope'.*known: none, none2"):
        suite.with_axes(defenses=["nope"])


def test_a_suite_declaring_board_sections_keeps_its_name(tmp_path, registry):
    """``[suite] reports = [...]`` names sections of the board, never the suite (whose name names its
    board files and is part of every cell key)."""
    text = SMOKE_SUITE.replace('name = "smoke"', 'name = "smoke"\nreports = ["deviations"]', 1)
    assert text != SMOKE_SUITE
    assert load_suite(write(tmp_path, text), registry).name == "smoke"


def test_an_attack_table_s_tasks_narrow_its_cells(tmp_path, registry):
    """``tasks = [...]`` in an attack table: that attack's cells on those tasks only, others untouched."""
    text = SMOKE_SUITE.replace('plugin = "outside-sign"', 'plugin = "outside-sign"\ntasks = ["cls"]', 1)
    cells = load_suite(write(tmp_path, text), registry).cells()
    assert {(c.attack, c.task) for c in cells} == {("sign", "cls")}
    assert len(cells) == len(load_suite(write(tmp_path, SMOKE_SUITE), registry).cells()) // 2
    bad = write(
        tmp_path, SMOKE_SUITE.replace('plugin = "outside-sign"', 'plugin = "outside-sign"\ntasks = ["clz"]')
    )
    with pytest.raises(SuiteError, match="unknown task id 'clz'") as info:
        load_suite(bad, registry)
    assert info.value.key == "attacks.sign.tasks[0]"


@pytest.mark.parametrize(
    "old, new, key, message",
    [
        ('eps = "16/255"', "eps = [", "", "TOML syntax error"),
        ('plugin = "outside-sign"', 'plugin = "nope"', "attacks.sign.plugin", "known: .*outside-sign"),
        (
            'plugin = "outside-sign"',
            'plugin = "outside-sgn"',
            "attacks.sign.plugin",
            "did you mean 'outside-sign'",
        ),
        ('eps = "16/255"', 'eps = "sixteen"', "suite.eps", 'a number or a fraction like "10/255"'),
        ('eps = "16/255"', 'eps = "-16/255"', "suite.eps", "must be positive \\(got '-16/255'\\)"),
        ("seed = 0", 'seed = "zero"', "suite.seed", "an integer"),
        (
            'data = "stripes"\nepochs = 2',
            'data = "stripez"\nepochs = 2',
            "tasks.cls.data",
            "unknown dataset id",
        ),
        ('tuning = ["stripes"]', 'tuning = ["x"]', r"grid.tuning\[0\]", "unknown dataset id 'x'"),
        ('tuning = ["stripes"]', 'tuning = ["stripes"]\nfoo = [1]', "grid.foo", "unknown axis"),
        (
            "epochs = 2\n\n[tasks.cls2]",
            "epochs = -1\n\n[tasks.cls2]",
            "tasks.cls",
            "epochs must be ≥ 1 \\(got -1\\)$",
        ),
        (
            "width = 4",
            "widht = 4",
            "encoders.rand2",
            "unknown parameter 'widht' \\(did you mean 'width'\\?\\)$",
        ),
        ('victims = ["rand"]', 'victims = "rand"', "grid.victims", "expected a list"),
        (
            'victims = ["rand"]',
            'victims = ["rand"]\nscenarios = ["grey-box"]',
            r"grid.scenarios\[0\]",
            "white-box",
        ),
    ],
)
def test_bad_suites_name_file_key_and_expectation(tmp_path, registry, old, new, key, message):
    assert old in SMOKE_SUITE
    path = write(tmp_path, SMOKE_SUITE.replace(old, new, 1))
    with pytest.raises(SuiteError, match=message) as info:
        load_suite(path, registry)
    assert str(path) in str(info.value)
    if key:
        assert info.value.key.startswith(key.replace("\\", ""))
    else:
        assert info.value.key == ""
    assert "\n" not in str(info.value).strip()


def test_missing_suite_file(tmp_path, registry):
    with pytest.raises(UserError, match="no such suite file"):
        load_suite(tmp_path / "absent.toml", registry)


def test_tuning_on_task_data_pairs_each_task_with_its_dataset(tmp_path, registry):
    suite = load_suite(
        write(tmp_path, SMOKE_SUITE.replace('tuning = ["stripes"]', 'tuning = "task"')), registry
    )
    assert sorted((c.task, c.tuning) for c in suite.cells() if c.defense == "none") == [
        ("cls", "stripes"),
        ("cls2", "stripes2"),
    ]
    assert {c.tuning for c in suite.with_axes(tuning=["stripes2"]).cells()} == {"stripes2"}


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x01\x02binary\xff", "not a text file"),
        ("[suite]\nname = 'caf\xe9'\n".encode("latin-1"), "not UTF-8 text"),
        (b"datasets = 3\n", "datasets: expected"),
        (b"[datasets]\nstripes = 5\n", "datasets.stripes: expected a table"),
        (b"just = 'a value'\n", "just: unknown section"),
    ],
)
def test_unreadable_or_shapeless_suites_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    workdir = tmp_path / "wd"
    done = subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", "run", str(path), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and str(path) in done.stderr and message in done.stderr
    assert not workdir.exists()  # nothing written


def test_a_directory_is_not_a_suite(tmp_path, registry):
    with pytest.raises(UserError, match=f"{tmp_path}: is a directory"):
        load_suite(tmp_path, registry)


def test_paths_and_plugin_modules_resolve_against_the_suite_folder(tmp_path, registry, monkeypatch):
    """A suite moved to another folder with its files runs the same from any working directory."""
    shutil.copytree(ROOT / "suites" / "encoders", tmp_path / "elsewhere" / "encoders")
    shutil.copy(ROOT / "suites" / "quickstart.toml", tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "zb_beside.py").write_text(
        "from zepad_bench import hookimpl\nfrom zepad_bench_plugins.defenses.none import NoDefense\n\n"
        "class Beside(NoDefense):\n    name = 'beside-none'\n\n"
        "@hookimpl\ndef register_defenses(register):\n    register(Beside)\n"
    )
    text = (tmp_path / "elsewhere" / "quickstart.toml").read_text()
    text = text.replace("batch_size = 128\n", 'batch_size = 128\nplugins = ["zb_beside"]\n', 1)
    (tmp_path / "elsewhere" / "quickstart.toml").write_text(
        text + '\n[defenses.beside]\nplugin = "beside-none"\n'
    )
    monkeypatch.chdir(tmp_path)
    suite = load_suite(tmp_path / "elsewhere" / "quickstart.toml", registry)
    path = suite.spec("encoders", "byol").params["path"]
    assert path == str(
        tmp_path / "elsewhere" / "encoders" / "byol" / "byol-photos-small-cnn-seed0-ep=14.ckpt"
    )
    assert suite.spec("defenses", "beside").plugin == "beside-none"
    (tmp_path / "elsewhere" / "encoders" / "nnclr").rename(tmp_path / "elsewhere" / "encoders" / "gone")
    with pytest.raises(
        UserError, match=r"encoders.nnclr: .*/elsewhere/encoders/nnclr/nnclr-.*: checkpoint not found"
    ):
        load_suite(tmp_path / "elsewhere" / "quickstart.toml", registry)
