"""The results data at its source: rows with status, code versions and figure histograms in the store;
failed cells stored and replaced; a suite's board gathered by cell coordinates, outdated rows marked;
the built-in tasks describing every metric they return."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import torch
from conftest import OUTSIDE, SMOKE_SUITE, TASKS_SUITE

from zepad_bench import load_registry
from zepad_bench.errors import SuiteError
from zepad_bench.reports.collect import board_from_store
from zepad_bench.reports.figures import confidence_figure, detection_figure, sweep
from zepad_bench.reports.glossary import describe
from zepad_bench.reports.markdown import render
from zepad_bench.runner import Runner
from zepad_bench.store import ResultStore, record_histograms
from zepad_bench.suite import load_suite

CELL = {
    "key": "k1",
    "suite": "s",
    "victim": "v",
    "scenario": "semi-black-box",
    "attack": "a",
    "eps": 16 / 255,
    "defense": "d",
    "tuning": "t",
    "task": "cls",
    "task_data": "t",
    "seed": 0,
    "created": "2026-01-01T00:00:00+00:00",
}


def test_a_failed_cell_is_stored_not_counted_and_replaced_by_a_later_success(tmp_path):
    store = ResultStore(tmp_path)
    store.put_failed({**CELL, "reason": "attack plugin 'a' broke its budget", "stage": "adversarial"})
    (failed,) = store.rows()
    assert failed["status"] == "failed" and failed["stage"] == "adversarial" and failed["metrics"] == {}
    assert not store.has("k1")  # a failed cell runs again
    with pytest.raises(ValueError, match="one line"):
        store.put_failed({**CELL, "reason": "two\nlines", "stage": "task"})
    ok = {**CELL, "metrics": {"RA": 50.0}, "config": {}, "versions": {}, "timings": {}, "machine": {}}
    store.put({**ok, "created": "2026-01-01T00:00:01+00:00"})
    (row,) = store.rows()
    assert row["status"] == "ok" and row["reason"] is None and store.has("k1")


def test_a_store_from_before_failed_cells_opens_with_every_row_ok(tmp_path):
    columns = (
        "key, suite, victim, scenario, attack, eps, defense, tuning, task, task_data, seed, metrics, config, "
    )
    columns += "versions, timings, machine, created"
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        db.execute(f"CREATE TABLE results ({columns})")
        values = [CELL[c] for c in columns.split(", ")[:11]] + [
            '{"RA": 1.0}',
            "{}",
            "{}",
            "{}",
            "{}",
            CELL["created"],
        ]
        db.execute(f"INSERT INTO results VALUES ({', '.join('?' * 17)})", values)
    store = ResultStore(tmp_path)
    (row,) = store.rows()
    assert row["status"] == "ok" and row["code"] == {} and row["records"] == {} and store.has("k1")


def test_records_are_stored_as_small_histograms_on_a_shared_range():
    clean, adv = torch.tensor([0.1, 0.2, 0.2, float("nan")]), torch.tensor([0.5, 0.9])
    out = record_histograms(
        {"score_clean:x": clean, "score_adv:x": adv, "threshold": torch.tensor(0.1)}, bins=4
    )
    assert out["threshold"] == pytest.approx(0.1)
    assert out["score_clean:x"]["range"] == out["score_adv:x"]["range"] == pytest.approx([0.1, 0.9])
    assert out["score_clean:x"] == {"n": 3, "range": pytest.approx([0.1, 0.9]), "counts": [3, 0, 0, 0]}
    assert out["score_adv:x"]["counts"] == [0, 0, 1, 1]
    json.dumps(out)  # plain data


def test_the_sweep_from_histograms_is_the_exact_roc_at_the_bin_edges():
    rng = np.random.default_rng(0)
    benign, adversarial = rng.normal(0, 1, 300), rng.normal(1, 1, 200)
    hist = record_histograms({"s_clean": benign, "s_adv": adversarial}, bins=10)
    curve = sweep(hist["s_clean"], hist["s_adv"])
    for t, tpr, fpr in zip(curve["threshold"][:-1], curve["TPR"], curve["FPR"]):
        assert tpr == pytest.approx(100 * (adversarial >= t - 1e-12).mean())
        assert fpr == pytest.approx(100 * (benign >= t - 1e-12).mean())
    assert curve["TPR"][-1] == curve["FPR"][-1] == 0.0


def _row(defense, attack, records, **metrics):
    branches = [{"name": "m", "role": "mpae"}, {"name": "b", "role": "bmp"}]
    config = {"branches": branches, "attack_role": "attack"}
    return {
        "defense": defense,
        "attack": attack,
        "task": "det",
        "config": config,
        "records": records,
        "metrics": metrics,
    }


def test_figures_render_from_the_rows_alone(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        f"confidence_{k}:{r}:{n}": rng.random(50)
        for k in ("clean", "adv")
        for r, n in (("mpae", "m"), ("bmp", "b"))
    }
    arrays |= {
        f"detection_score_{k}:{s}": rng.random(50) + (k == "adv")
        for k in ("clean", "adv")
        for s in ("gap", "js")
    }
    rows = [
        _row("zepad", "pap", record_histograms(arrays), threshold=0.1, **{"AUROC:gap": 80.0}),
        _row("zepad", "uap", {}),
    ]
    assert confidence_figure(rows, tmp_path / "c.png").stat().st_size > 0
    assert detection_figure(rows, tmp_path / "d.png").stat().st_size > 0
    assert (
        confidence_figure(rows[1:], tmp_path / "none.png") is None
        and detection_figure(rows[1:], tmp_path / "x") is None
    )


ADAPTIVE = """
[attacks.adaptive]
plugin = "adaptive"
scenarios = ["adaptive"]
members = ["apgd-ce"]
apgd_steps = 1
"""


def test_the_builtin_tasks_describe_every_metric_they_return(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(TASKS_SUITE.replace('tasks = ["ret", "det"]', 'tasks = ["cls", "ret", "det"]') + ADAPTIVE)
    suite = load_suite(path, load_registry(["zb_outside_plugin"]))
    runner = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    rows = [runner.run_cell(c) for c in suite.cells()]
    assert {(r["task"], r["scenario"]) for r in rows} == {
        (t, s) for t in ("cls", "ret", "det") for s in ("semi-black-box", "adaptive")
    }
    for row in rows:
        described = row["config"]["metric_info"]
        missing = [m for m in row["metrics"] if describe(m, described) is None]
        assert missing == [], (row["task"], missing)
        assert all("reported by the task plugin" not in m["definition"] for m in described)
    assert any(r["records"] for r in rows)  # histograms for the figures travel with the rows


def test_editing_a_plugin_keeps_its_stored_rows_on_the_board_marked(tmp_path, monkeypatch):
    """Publishing finds rows by cell coordinates: an edited plugin's rows are shown, marked †."""
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "zb_editable.py"
    module.write_text((OUTSIDE / "zb_outside_plugin.py").read_text().replace('"outside-', '"ed-'))
    path = tmp_path / "s.toml"
    text = SMOKE_SUITE.replace('plugins = ["zb_outside_plugin"]', 'plugins = ["zb_editable"]')
    path.write_text(text.replace('"outside-', '"ed-').replace('tasks = ["cls", "cls2"]', 'tasks = ["cls"]'))
    suite = load_suite(path, load_registry())
    Runner(suite, suite.registry, tmp_path / "wd", device="cpu").run_cell(suite.cells()[0])
    assert board_from_store(suite, tmp_path / "wd").rows[0]["outdated"] is None
    module.write_text(module.read_text().replace("* self.eps", "* self.eps * 1.0"))  # code, not docs
    board = board_from_store(load_suite(path, load_registry()), tmp_path / "wd")
    (row,) = board.rows
    assert row["status"] == "ok" and len(board.pending) == 1  # shown, not hidden behind a new key
    assert row["outdated"].startswith("code changed since it was stored: attack:ed-sign")
    table = render(board).split("### cls: RA at ε 16/255", 1)[1]
    assert " †" in table.split("| none ", 1)[1].split("\n")[0]


def test_headline_eps_must_be_a_budget_of_the_suite(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SMOKE_SUITE.replace('eps = "16/255"', 'eps = "16/255"\nheadline_eps = "8/255"'))
    with pytest.raises(
        SuiteError, match=r"suite.headline_eps: 8/255 is no budget of the suite's cells \(16/255\)"
    ):
        load_suite(path, load_registry(["zb_outside_plugin"]))
    path.write_text(SMOKE_SUITE.replace('eps = "16/255"', 'eps = "16/255"\nheadline_eps = "16/255"'))
    assert load_suite(path, load_registry(["zb_outside_plugin"])).headline_eps == pytest.approx(16 / 255)
