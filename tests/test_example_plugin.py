"""The plugin author's example (examples/zepad-bench-example-attack): pip-installed from its own
pyproject.toml (a real build), found through its entry point, conforming, and run in its suite copied
out of the repository and run from a third directory — as docs/plugins.md walks through it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "zepad-bench-example-attack"
CHECKPOINT = "suites/encoders/byol/byol-photos-small-cnn-seed0-ep=14.ckpt"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example installed by pip (wheel built with build isolation) into a folder of its own, so the
    test environment's other tests do not see it."""
    tmp = tmp_path_factory.mktemp("example")
    source = tmp / "source"  # a copy: pip's in-tree build leaves build/ and *.egg-info behind
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return target


def seeing(site: Path, tmp_path: Path) -> dict[str, str]:
    """Environment of a new process that sees the example installed under ``site``."""
    return {"PYTHONPATH": str(site), "ZEPAD_BENCH_CACHE": str(tmp_path / "cache")}


def test_the_installed_example_is_listed_with_its_distribution_and_conforms(site, tmp_path):
    listing = run_cli(["list", "attacks"], tmp_path, seeing(site, tmp_path))
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if "example-feature-turn" in line)
    assert "zepad-bench-example-attack 0.1.0" in line
    check = run_cli(
        ["check-plugin", "example-feature-turn", "--param", "steps=2"], tmp_path, seeing(site, tmp_path)
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "attack example-feature-turn: 6 passed, 0 failed" in check.stdout
    own_tests = subprocess.run(  # the package's own test, as its author runs it
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=tmp_path,
        env={**os.environ, **seeing(site, tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert own_tests.returncode == 0, own_tests.stdout


def test_the_example_suite_runs_copied_out_of_the_repository_from_another_directory(site, tmp_path):
    """Copied with the checkpoint its relative path names (kept at the same place relative to the suite),
    run from a third directory: paths resolve against the suite's folder, outputs go where asked."""
    copy = tmp_path / "copy"
    suite = copy / "examples" / "zepad-bench-example-attack" / "suite.toml"
    suite.parent.mkdir(parents=True)
    shutil.copy(EXAMPLE / "suite.toml", suite)
    (copy / CHECKPOINT).parent.mkdir(parents=True)
    shutil.copy(ROOT / CHECKPOINT, copy / CHECKPOINT)
    cwd = tmp_path / "somewhere"
    cwd.mkdir()
    args = ["run", str(suite), "--workdir", "wd", "--out", "board", "--quiet"]
    done = run_cli(args, cwd, seeing(site, tmp_path))
    assert done.returncode == 0, done.stderr
    assert "feature-turn" in (cwd / "board" / "example-attack.md").read_text()

    from zepad_bench.store import ResultStore

    ra = {row["attack"]: row["metrics"]["RA"] for row in ResultStore(cwd / "wd").rows()}
    assert ra["feature-turn"] < ra["noise"]  # the attack does more than equal-budget noise


def test_the_plugin_page_shows_the_example_as_it_is():
    page = (ROOT / "docs" / "plugins.md").read_text()
    for part in ("pyproject.toml", "src/zepad_bench_example_attack/plugin.py", "tests/test_conformance.py"):
        assert (EXAMPLE / part).read_text().strip() in page, part
