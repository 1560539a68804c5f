"""Slurm fan-out through submitit, exercised with submitit's local executor (real subprocess jobs)."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from conftest import OUTSIDE, cell_stages, recomputed_classification

from zepad_bench.executors import run_slurm
from zepad_bench.loading import load_with_axes
from zepad_bench.runner import Runner
from zepad_bench.store import ResultStore

SSL = (
    '[encoders.rand]\nplugin = "ssl"\nmethod = "simclr"\ndata = "stripes"\nepochs = 1\nbatch_size = 32\n'
    "arch_params = { width = 4 }\nproj_hidden_dim = 16\nproj_output_dim = 8"
)


def test_slurm_waves_compute_each_stage_exactly_once(smoke_suite, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(OUTSIDE), os.environ.get("PYTHONPATH", "")]))
    old = '[encoders.rand]\nplugin = "outside-random"\nauxiliaries = ["rand2"]'
    smoke_suite.write_text(
        smoke_suite.read_text().replace(old, SSL) + '\n[attacks.noise]\nplugin = "random-noise"\n'
    )
    workdir = str(tmp_path / "wd")
    axes = {"tasks": "cls", "defenses": "none", "attacks": "sign,noise"}
    options = {"timeout_min": 5}
    rows, failed = run_slurm(str(smoke_suite), axes, workdir, "cpu", False, options, cluster="local")
    assert failed == [] and len(rows) == 2
    runs = ResultStore(tmp_path / "wd").stage_runs("smoke")
    # two attack jobs and a defense job read the ssl victim: pretrained once, in the first wave
    assert max(Counter((r["stage"], r["key"]) for r in runs).values()) == 1
    suite = load_with_axes(str(smoke_suite), axes)
    runner = Runner(suite, suite.registry, workdir, device="cpu")
    cells = {runner.cell_key(c): c for c in suite.cells()}
    reads = {(s.kind, s.key) for r in rows for s in cell_stages(runner, cells[r["key"]], r)}
    assert {(r["stage"], r["key"]) for r in runs} == reads  # the jobs made every stage the cells read
    for row in rows:
        again = recomputed_classification(runner, cells[row["key"]], row)
        assert {m: row["metrics"][m] for m in again} == pytest.approx(again, rel=1e-6)
