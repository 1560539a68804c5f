"""Slurm fan-out through submitit, exercised with submitit's local executor (real subprocess jobs)."""

from __future__ import annotations

import os

from conftest import OUTSIDE

from zepad_bench import load_registry
from zepad_bench.executors import run_slurm
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite


def test_slurm_path_fits_each_stage_once_then_runs_cells(smoke_suite, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(OUTSIDE), os.environ.get("PYTHONPATH", "")]))
    workdir = str(tmp_path / "wd")
    axes = {"tasks": "cls", "defenses": "none"}
    options = {"timeout_min": 5}
    rows, failed = run_slurm(str(smoke_suite), axes, workdir, "cpu", False, options, cluster="local")
    assert failed == [] and len(rows) == 1 and 0 <= rows[0]["metrics"]["BA"] <= 100
    suite = load_suite(smoke_suite, load_registry(["zb_outside_plugin"]))
    runs = Runner(suite, suite.registry, workdir).store.stage_runs("smoke")
    stages = [r["stage"] for r in runs]
    assert stages.count("attack") == 1 and stages.count("defense") == 1
