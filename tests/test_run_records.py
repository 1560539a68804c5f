"""Run records are structured fields; cells carry the logged cost of every stage they read; a failed cell
is a stored failure that the next run computes again; stores written before keep working."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import SMOKE_SUITE

from zepad_bench import load_registry
from zepad_bench.cli import cli
from zepad_bench.executors import run_local
from zepad_bench.store import ResultStore
from zepad_bench.suite import load_suite


def rows(store: ResultStore, status: str) -> list[dict]:
    """The smoke suite's stored cells with ``status`` (ok or failed)."""
    return [r for r in store.rows("smoke") if r["status"] == status]


def run(suite_path, tmp_path, *options):
    args = [
        "run",
        str(suite_path),
        "--workdir",
        str(tmp_path / "wd"),
        "--out",
        str(tmp_path / "lb"),
        "--quiet",
    ]
    result = CliRunner().invoke(cli, [*args, *options])
    assert result.exit_code == 0, result.output
    return ResultStore(tmp_path / "wd")


def test_runs_are_recorded_as_fields_and_rendered_from_them(smoke_suite, tmp_path):
    store = run(smoke_suite, tmp_path)
    cold = store.runs("smoke")[-1]
    assert (cold["executor"], cold["kind"], cold["partial"]) == ("local", "cold", False)
    assert (cold["cells_computed"], cold["cells_reused"], cold["cells_failed"]) == (4, 0, 0)
    counts = {kind: s["computed"] for kind, s in cold["stages"].items()}
    assert counts == {
        "dataset": 4,
        "encoder": 2,
        "attack": 1,
        "defense": 1,
        "adversarial": 2,
        "features": 6,
        "head": 2,
    }
    logged = {}
    for r in store.stage_runs("smoke"):
        if r["stage"] in counts:
            logged[r["stage"]] = logged.get(r["stage"], 0.0) + r["seconds"]
    assert {kind: s["seconds"] for kind, s in cold["stages"].items()} == logged
    warm = run(smoke_suite, tmp_path).runs("smoke")[-1]
    assert (warm["kind"], warm["cells_computed"], warm["cells_reused"], warm["stages"]) == ("warm", 0, 4, {})
    forced = run(smoke_suite, tmp_path, "--force", "attack").runs("smoke")[-1]
    assert forced["kind"] == "forced" and forced["stages"]["attack"] == {
        "computed": 1,
        "reused": 0,
        "seconds": forced["stages"]["attack"]["seconds"],
    }
    narrowed = run(smoke_suite, tmp_path, "--tasks", "cls").runs("smoke")[-1]
    assert narrowed["partial"] is True
    board = json.loads((tmp_path / "lb" / "smoke.json").read_text())
    assert [r["kind"] for r in board["runs"]] == [
        "cold",
        "warm",
        "forced",
    ]  # the latest whole-grid run of each
    text = (tmp_path / "lb" / "smoke.md").read_text()
    assert "(local, cold): " in text and "cells 4 computed, 0 already stored, 0 failed" in text
    run(smoke_suite, tmp_path, "--tasks", "cls", "--force", "task")  # part of the grid, cells recomputed
    board = json.loads((tmp_path / "lb" / "smoke.json").read_text())
    assert [(r["kind"], r["partial"]) for r in board["runs"]] == [
        ("cold", False),
        ("warm", False),
        ("forced", False),
        ("forced", True),
    ]  # and every later run that recomputed cells, so each stored row's run is listed
    assert "(local, forced, part of the grid)" in (tmp_path / "lb" / "smoke.md").read_text()


def test_an_interrupted_run_is_recorded_with_the_cells_it_finished(smoke_suite, tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which the CLI turns into it) after the first cell: that cell's row and a run
    record (part of the grid, one cell computed) are stored, and the interruption goes on up."""
    from zepad_bench.runner import Runner

    finished = Runner.run_cell
    calls = []

    def stopping(self, cell):
        calls.append(cell)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return finished(self, cell)

    monkeypatch.setattr(Runner, "run_cell", stopping)
    suite = load_suite(smoke_suite, load_registry(["zb_outside_plugin"]))
    with pytest.raises(KeyboardInterrupt):
        run_local(suite, str(tmp_path / "wd"), "cpu", False, quiet=True)
    store = ResultStore(tmp_path / "wd")
    record = store.runs("smoke")[-1]
    assert (record["kind"], record["partial"], record["cells_computed"]) == ("cold", True, 1)
    assert len(store.rows("smoke")) == 1


def test_sigterm_stops_the_cli_as_ctrl_c_does():
    """A command killed with SIGTERM (``kill``, a scheduler's time limit) ends as Ctrl-C does: one line,
    exit 130, and the finally blocks (the run record) run."""
    code = (
        "import os, signal\n"
        "from zepad_bench import cli\n"
        "cli.cli.main = lambda **_: os.kill(os.getpid(), signal.SIGTERM)\n"
        "cli.main()\n"
    )
    stopped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.startswith("interrupted: finished cells and stages are saved")


def test_a_cell_carries_the_logged_cost_of_stages_an_earlier_run_made(smoke_suite, tmp_path):
    store = run(smoke_suite, tmp_path, "--tasks", "cls")
    store = run(smoke_suite, tmp_path, "--tasks", "cls2")  # reads the attack fit and tuning made above
    seconds = {r["key"]: r["seconds"] for r in store.stage_runs("smoke")}
    for row in store.rows("smoke"):
        timings = row["timings"]
        assert timings["attack_fit"] == seconds[row["config"]["attack_key"]] > 0
        assert timings["defense_fit"] == seconds[row["config"]["defense_key"]] > 0
        assert timings["stages"]["attack"] == timings["attack_fit"] and timings["stages"]["encoder"] > 0


FLAKY = '''
import os
from zb_outside_plugin import SignFlip
from zepad_bench import hookimpl


class Flaky(SignFlip):
    """Breaks its budget while $ZB_BREAK is set (not part of any key)."""
    name = "test-flaky"

    def perturb(self, x):
        return (x + (3 if os.environ.get("ZB_BREAK") else 1) * self.delta.to(x.device)).clamp(0, 1)


@hookimpl
def register_attacks(register):
    register(Flaky)
'''


def test_a_failed_cell_is_stored_as_failed_and_the_next_run_computes_only_it(tmp_path, monkeypatch):
    (tmp_path / "zb_flaky.py").write_text(FLAKY)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "smoke.toml"
    text = SMOKE_SUITE.replace(
        'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin", "zb_flaky"]'
    )
    path.write_text(text + '\n[attacks.flaky]\nplugin = "test-flaky"\n')
    suite = load_suite(path, load_registry(["zb_outside_plugin", "zb_flaky"])).with_axes(
        defenses=["none"], tasks=["cls"]
    )
    monkeypatch.setenv("ZB_BREAK", "1")
    done, failed = run_local(suite, str(tmp_path / "wd"), "cpu", False, quiet=True)
    assert len(done) == 1 and len(failed) == 1 and "broke its budget" in failed[0]
    store = ResultStore(tmp_path / "wd")
    (row,) = rows(store, "failed")
    assert (row["attack"], row["stage"]) == ("flaky", "adversarial") and "broke its budget" in row["reason"]
    assert store.runs("smoke")[-1]["cells_failed"] == 1
    monkeypatch.delenv("ZB_BREAK")
    done, failed = run_local(suite, str(tmp_path / "wd"), "cpu", False, quiet=True)
    assert [r["attack"] for r in done] == ["flaky"] and failed == []
    assert rows(store, "failed") == [] and len(rows(store, "ok")) == 2


OLD_SCHEMA = """
CREATE TABLE results (
    key TEXT PRIMARY KEY, suite TEXT, victim TEXT, scenario TEXT, attack TEXT, eps REAL,
    defense TEXT, tuning TEXT, task TEXT, task_data TEXT, seed INTEGER,
    metrics TEXT, config TEXT, versions TEXT, timings TEXT, machine TEXT, created TEXT
);
CREATE TABLE stage_runs (stage TEXT, key TEXT, label TEXT, seconds REAL, suite TEXT, created TEXT);
CREATE TABLE runs (
    suite TEXT, finished TEXT, seconds REAL, computed INTEGER, reused INTEGER, failed INTEGER,
    note TEXT, machine TEXT
);
INSERT INTO results VALUES ('k', 's', 'v', 'x', 'a', 0.1, 'd', 't', 'c', 'c', 0, '{"BA": 1.0}', '{}', '{}',
    '{}', '{}', '2026-01-01T00:00:00+00:00');
INSERT INTO runs VALUES ('s', '2026-01-01T00:00:00+00:00', 9.5, 4, 0, 0,
    'cold: no cell stored; stages 7 computed, 0 reused', '{"cpus": 2}');
INSERT INTO runs VALUES ('s', '2026-01-02T00:00:00+00:00', 1.5, 1, 3, 0, 'warm; partial grid', '{"cpus": 2}');
"""


def test_a_store_written_before_opens_with_its_runs_carried_over(tmp_path):
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.executescript(OLD_SCHEMA)
    store = ResultStore(tmp_path)
    assert store.has("k") and store.rows("s")[0]["metrics"] == {"BA": 1.0}
    cold, warm = store.runs("s")
    assert (cold["kind"], cold["partial"], cold["cells_computed"], cold["executor"]) == (
        "cold",
        False,
        4,
        "local",
    )
    assert (warm["kind"], warm["partial"], warm["cells_reused"]) == ("warm", True, 3)
    store.log_stage("attack", "a", "x (seed 0)", 1.0, "s", "2026-01-03", "pap")
    assert store.stage_runs()[0]["plugin"] == "pap"
    ResultStore(tmp_path)  # a second opening finds nothing to migrate
    assert len(store.runs("s")) == 2
