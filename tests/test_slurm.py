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
    rows = run_slurm(str(smoke_suite), axes, workdir, "cpu", False, {"timeout_min": 5}, cluster="local")
    assert len(rows) == 1 and 0 <= rows[0]["metrics"]["BA"] <= 100
    suite = load_suite(smoke_suite, load_registry(["zb_outside_plugin"]))
    runs = Runner(suite, suite.registry, workdir).store.stage_runs("smoke")
    stages = [r["stage"] for r in runs]
    assert stages.count("attack") == 1 and stages.count("defense") == 1


def test_encoders_pretrained_in_the_run_get_their_own_jobs(smoke_suite):
    from zepad_bench.executors import encoders_to_pretrain

    text = smoke_suite.read_text().replace(
        "[encoders.rand2]",
        '[encoders.ssl]\nplugin = "ssl"\nmethod = "simclr"\ndata = "stripes"\n\n[encoders.rand2]',
    )
    smoke_suite.write_text(text.replace('auxiliaries = ["rand2"]', 'auxiliaries = ["ssl", "rand2"]'))
    suite = load_suite(smoke_suite, load_registry(["zb_outside_plugin"]))
    assert encoders_to_pretrain(suite, suite.cells()) == ["ssl"]  # loaded encoders are built in attack jobs
