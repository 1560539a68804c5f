"""`run --executor slurm` on a real one-node Slurm cluster (scripts/slurm-cluster.sh: munge, MariaDB +
slurmdbd, slurmctld, slurmd), started by the fixture; a cluster that does not come up fails the tests.

The suite is the tests' smoke suite (tiny encoders, 16×16 stripes) plus a test attack whose fit
waits, so that one job can be cancelled while it runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import OUTSIDE, SMOKE_SUITE, cell_stages
from submitit.core.utils import pickle_load

from zepad_bench.loading import load_with_axes
from zepad_bench.runner import Runner
from zepad_bench.store import ResultStore

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[1]

SLOW_PLUGIN = '''
"""Test attack: the outside checkerboard, whose fit first writes its Slurm job id to
$ZB_SLOW_MARKER.<tag> and waits $ZB_SLOW_SECONDS (neither is part of any cache key)."""

import os
import time
from pathlib import Path

from zb_outside_plugin import SignFlip

from zepad_bench import hookimpl


class SlowSign(SignFlip):
    name = "test-slow-sign"

    def __init__(self, eps: float, tag: str = "slow", **params):
        super().__init__(eps, **params)
        self.tag = tag

    def fit(self, encoders, images):
        if os.environ.get("ZB_SLOW_MARKER"):
            Path(f"{os.environ['ZB_SLOW_MARKER']}.{self.tag}").write_text(os.environ.get("SLURM_JOB_ID", ""))
        time.sleep(float(os.environ.get("ZB_SLOW_SECONDS", "0")))
        super().fit(encoders, images)


@hookimpl
def register_attacks(register):
    register(SlowSign)
'''
SLOW_TABLES = """
[attacks.slow]
plugin = "test-slow-sign"

[attacks.slow2]
plugin = "test-slow-sign"
tag = "slow2"
"""


@pytest.fixture(scope="module")
def cluster():
    """The one-node cluster, started (installed if need be) by the repository's idempotent script."""
    started = subprocess.run(
        [str(ROOT / "scripts" / "slurm-cluster.sh")], capture_output=True, text=True, timeout=900
    )
    assert started.returncode == 0, f"the Slurm cluster did not start: {started.stderr[-2000:]}"
    info = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    assert info.returncode == 0 and info.stdout.split()[0] in ("idle", "mixed", "allocated"), info


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    """The smoke suite with the slow test attacks, its plugin modules beside it (as a user's would be);
    the queue empty first (no job an earlier test left can hold the node's CPUs)."""
    subprocess.run(["scancel", "--user", str(os.getuid())], timeout=30)
    deadline = time.monotonic() + 120
    while subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout.strip():
        assert time.monotonic() < deadline, "jobs of an earlier test did not leave the queue"
        time.sleep(1)
    shutil.copy(OUTSIDE / "zb_outside_plugin.py", tmp_path)
    (tmp_path / "zb_slow_plugin.py").write_text(SLOW_PLUGIN)
    path = tmp_path / "smoke.toml"
    text = SMOKE_SUITE.replace(
        'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin", "zb_slow_plugin"]'
    )
    path.write_text(text + SLOW_TABLES)
    return path


def rows(store: ResultStore, status: str) -> list[dict]:
    """The smoke suite's stored cells with ``status`` (ok or failed)."""
    return [r for r in store.rows("smoke") if r["status"] == status]


def zepad_bench(
    suite: Path, name: str, *options: str, env: dict[str, str] | None = None, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    args = [sys.executable, "-m", "zepad_bench.cli", "run", str(suite), "--workdir", str(suite.parent / name)]
    args += ["--out", str(suite.parent / f"{name}-board"), *options]
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    if not wait:
        return subprocess.Popen(
            args, cwd=suite.parent, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    return subprocess.run(args, cwd=suite.parent, env=env, text=True, capture_output=True, timeout=600)


def job_reports(workdir: Path) -> list[dict]:
    """What each job of a run returned (submitit's result files)."""
    outcomes = [pickle_load(p) for p in sorted((workdir / "slurm").glob("*_result.pkl"))]
    assert all(kind == "success" for kind, _ in outcomes)
    return [report for _, report in outcomes]


SLURM = ("--executor", "slurm", "--slurm-poll", "2")


SSL = (
    '[encoders.rand]\nplugin = "ssl"\nmethod = "simclr"\ndata = "stripes"\nepochs = 1\nbatch_size = 32\n'
    'arch_params = { width = 4 }\nproj_hidden_dim = 16\nproj_output_dim = 8\nauxiliaries = ["rand2"]'
)


def test_a_slurm_run_equals_the_local_run_costs_included(cluster, suite):
    # the victim is pretrained in the suite: its own job, which the attack fit and the tuning wait for
    suite.write_text(
        suite.read_text().replace('[encoders.rand]\nplugin = "outside-random"\nauxiliaries = ["rand2"]', SSL)
    )
    # a float sum's last digit depends on how many threads share it: the local run uses the jobs' one
    narrow = ("--attacks", "sign", "--tasks", "cls")
    local = zepad_bench(suite, "local", *narrow, env={"OMP_NUM_THREADS": "1"})
    assert local.returncode == 0, local.stderr
    started = time.perf_counter()
    remote = zepad_bench(suite, "slurm", *narrow, *SLURM, "--slurm-jobs", "1", "--slurm-cpus", "1")
    print(f"slurm run: {time.perf_counter() - started:.1f}s")
    assert remote.returncode == 0, remote.stderr
    boards = {name: suite.parent / f"{name}-board" for name in ("local", "slurm")}
    assert (boards["local"] / "smoke.csv").read_bytes() == (boards["slurm"] / "smoke.csv").read_bytes()
    # when, the job's CPU count, and the run's own record (executor, wall time)
    stamped = re.compile(r"^- (results created|rendered|machine:|run finished) ")
    local_md, slurm_md = ((boards[n] / "smoke.md").read_text().splitlines() for n in ("local", "slurm"))
    assert [line for line in local_md if not stamped.match(line)] == [
        line for line in slurm_md if not stamped.match(line)
    ]
    stores = {name: ResultStore(suite.parent / name) for name in ("local", "slurm")}
    # every stage computed exactly once, in jobs: every stage the cells read; the same as the local run's
    log = stores["slurm"].stage_runs("smoke")
    assert max(Counter((r["stage"], r["key"]) for r in log).values()) == 1
    loaded = load_with_axes(str(suite), {"attacks": "sign", "tasks": "cls"})
    runner = Runner(loaded, loaded.registry, suite.parent / "slurm", device="cpu")
    cells = {runner.cell_key(c): c for c in loaded.cells()}
    reads = {
        (s.kind, s.key)
        for r in stores["slurm"].rows("smoke")
        for s in cell_stages(runner, cells[r["key"]], r)
    }
    assert {(r["stage"], r["key"]) for r in log} == reads
    assert Counter(r["stage"] for r in log) == Counter(
        r["stage"] for r in stores["local"].stage_runs("smoke")
    )
    # each cell carries the cost of the fits it read, as the stage log has them (not 0 for other jobs' work)
    seconds = {r["key"]: r["seconds"] for r in log}
    for row in stores["slurm"].rows("smoke"):
        assert row["timings"]["attack_fit"] == seconds[row["config"]["attack_key"]] > 0
        assert row["timings"]["defense_fit"] == seconds[row["config"]["defense_key"]] > 0
    # the same structured run record and computed/reused summary as the local run
    runs = {name: store.runs("smoke")[-1] for name, store in stores.items()}
    assert runs["slurm"]["executor"] == "slurm" and runs["slurm"]["kind"] == "cold"
    for field in ("kind", "partial", "cells_computed", "cells_reused", "cells_failed", "stages"):
        if field == "stages":
            assert {k: v["computed"] for k, v in runs["slurm"][field].items()} == {
                k: v["computed"] for k, v in runs["local"][field].items()
            }
        else:
            assert runs["slurm"][field] == runs["local"][field]
    summary = [line for line in remote.stderr.splitlines() if line.startswith("stages:")]
    assert summary == [line for line in local.stderr.splitlines() if line.startswith("stages:")]
    # pretraining the victim, the attack fit, the tuning, the 2 cells (rand2 is loaded where it is read)
    reports = job_reports(suite.parent / "slurm")
    assert len(reports) == runs["slurm"]["machine"]["jobs"] == 4
    assert {r["threads"] for r in reports} == {1}  # torch used the job's CPU
    # --slurm-jobs 1: by Slurm's accounting no two of the run's jobs ran at once (the node has room for two)
    ids = sorted(int(p.name.split("_")[0]) for p in (suite.parent / "slurm" / "slurm").glob("*_result.pkl"))
    accounting = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "Start,End", "-j", ",".join(map(str, ids))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    spans = sorted(tuple(line.split("|")) for line in accounting.stdout.split())
    assert len(spans) == 4 and all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    # a warm re-run submits nothing
    again = zepad_bench(suite, "slurm", *narrow, *SLURM)
    assert again.returncode == 0 and "submitted" not in again.stderr
    assert stores["slurm"].runs("smoke")[-1]["kind"] == "warm"


def finish(run: subprocess.Popen, seconds: float) -> str:
    """The stderr of a run started with ``wait=False``; a run still going after ``seconds`` is killed."""
    try:
        return run.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise


def _wait_for(path: Path, seconds: float, run: subprocess.Popen) -> str:
    """The Slurm job id the slow attack's fit wrote to ``path`` once it started."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text()):
        assert run.poll() is None, f"the run ended before {path} appeared: {run.communicate()[1][-3000:]}"
        if time.monotonic() > deadline:
            run.kill()
            listing = ["squeue", "-o", "%i %T %R %C %m"]
            queue = subprocess.run(listing, capture_output=True, text=True, timeout=30)
            raise AssertionError(f"{path} did not appear within {seconds}s; the queue:\n{queue.stdout}")
        time.sleep(0.5)
    return path.read_text()


def test_a_cancelled_job_is_one_line_a_board_for_the_rest_and_a_rerun_completes_it(cluster, suite):
    marker = suite.parent / "marker"
    env = {"ZB_SLOW_MARKER": str(marker), "ZB_SLOW_SECONDS": "300"}
    run = zepad_bench(suite, "wd", "--attacks", "sign,slow", "--tasks", "cls", *SLURM, env=env, wait=False)
    job = _wait_for(marker.with_suffix(".slow"), 180, run)
    subprocess.run(["scancel", job], check=True, timeout=30)
    err = finish(run, 300)
    print(err)
    assert run.returncode == 2
    lines = [line for line in err.splitlines() if f"job {job} " in line and "submitted" not in line]
    lines = [line for line in lines if not line.startswith("error:")]
    assert len(lines) == 1 and "attack job" in lines[0] and "CANCELLED" in lines[0]
    assert f"{job}_0_log.err" in lines[0]
    assert err.strip().splitlines()[-1].startswith("error: 2 cell(s) failed")
    store = ResultStore(suite.parent / "wd")
    assert {(r["attack"], r["defense"]) for r in rows(store, "ok")} == {("sign", "none"), ("sign", "none2")}
    failed = rows(store, "failed")
    assert {(r["attack"], r["stage"]) for r in failed} == {("slow", "attack")}
    assert len(failed) == 2 and all(f"job {job} CANCELLED" in r["reason"] for r in failed)
    board = (suite.parent / "wd-board" / "smoke.md").read_text()
    assert "| sign " in board and f"job {job} CANCELLED" in board  # sign's results; slow's cells failed
    record = store.runs("smoke")[-1]
    assert (record["cells_computed"], record["cells_failed"]) == (2, 2)
    # the re-run makes the cancelled fit and the cells that read it, nothing else
    before = len(store.stage_runs("smoke"))
    again = zepad_bench(
        suite, "wd", "--attacks", "sign,slow", "--tasks", "cls", *SLURM, env={"ZB_SLOW_SECONDS": "0"}
    )
    assert again.returncode == 0, again.stderr
    redone = store.stage_runs("smoke")[before:]
    assert Counter(r["stage"] for r in redone)["attack"] == 1 and not {"encoder", "defense"} & {
        r["stage"] for r in redone
    }
    assert store.runs("smoke")[-1]["cells_computed"] == 2 and store.runs("smoke")[-1]["cells_reused"] == 2
    assert len(rows(store, "ok")) == 4 and rows(store, "failed") == []


def test_without_accounting_a_cancelled_job_ends_the_run_and_cancel_stops_the_others(cluster, suite):
    """No slurmdbd: sacct fails, states come from squeue; --on-failure cancel cancels the other jobs."""
    script = str(ROOT / "scripts" / "slurm-cluster.sh")
    subprocess.run([script, "stop", "slurmdbd"], check=True, timeout=120)
    try:
        assert subprocess.run(["sacct", "-n"], capture_output=True, timeout=60).returncode != 0
        marker = suite.parent / "marker"
        env = {"ZB_SLOW_MARKER": str(marker), "ZB_SLOW_SECONDS": "300"}
        options = (
            "--attacks",
            "slow,slow2",
            "--tasks",
            "cls",
            "--defenses",
            "none",
            "--on-failure",
            "cancel",
        )
        run = zepad_bench(suite, "wd", *options, *SLURM, env=env, wait=False)
        job = _wait_for(marker.with_suffix(".slow"), 180, run)
        other = _wait_for(marker.with_suffix(".slow2"), 180, run)
        subprocess.run(["scancel", job], check=True, timeout=30)
        cancelled = time.monotonic()
        err = finish(run, 120)
        print(err)
        assert time.monotonic() - cancelled < 60  # squeue told the driver; it did not wait for sacct
        assert run.returncode == 2
        assert any(f"attack job {job} CANCELLED" in line for line in err.splitlines())
        assert any(
            re.match(rf"cancelled \d other job\(s\) \(.*\b{other}\b", line) for line in err.splitlines()
        )
        states = subprocess.run(
            ["squeue", "-h", "-t", "all", "-j", other, "-o", "%T"], capture_output=True, text=True, timeout=30
        )
        assert states.stdout.strip() in ("CANCELLED", "COMPLETING")
        store = ResultStore(suite.parent / "wd")
        assert {r["attack"] for r in rows(store, "failed")} == {"slow"}  # slow2's stay pending
    finally:
        subprocess.run([script], check=True, timeout=300)
