"""The adaptive attack's benchmark records in benchmarks/README.md: ``independent_attack.py``'s record is
rendered as its table with issue 17's verdicts (passing and failing data say opposite things),
``adaptive_cost.py``'s as its table; both blocks are regenerated from records written by
:func:`~zepad_bench.bench_record.write_record`, and the script writes a record the block reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import adaptive_suite_text as suite_text
from conftest import run_cli

from zepad_bench.bench_record import write_record
from zepad_bench.reports import bench_docs
from zepad_bench.reports.generated import update_documents

ROOT = Path(__file__).resolve().parents[1]
E = 1 / 255


def checked(defense: str, seed: int, board: float, independent: float) -> dict:
    """One classification cell of ``independent_attack.py``'s figures."""
    return {
        "task": "classification",
        "defense": defense,
        "seed": seed,
        "eps": 4 * E,
        "n": 32,
        "board_RA": board,
        "independent_RA": independent,
        "delta": independent - board,
        "seconds": 1.0,
    }


def retrieval(defense: str, seed: int, adaptive: float, transfer: float) -> dict:
    return {
        "task": "retrieval",
        "defense": defense,
        "seed": seed,
        "adaptive_RA": adaptive,
        "lowest_transfer_RA": transfer,
    }


def project(tmp_path: Path, monkeypatch, script: str, name: str, figures: dict) -> Path:
    """A copy of the project's benchmarks/README.md and records below ``tmp_path``, with ``script``'s
    record ``name`` of ``figures`` written as the script writes it; returns the README."""
    shutil.copytree(ROOT / "benchmarks" / "results", tmp_path / "benchmarks" / "results")
    doc = tmp_path / "benchmarks" / "README.md"
    shutil.copy(ROOT / "benchmarks" / "README.md", doc)
    monkeypatch.setattr(sys, "argv", [f"benchmarks/{script}", "suites/quickstart.toml"])
    write_record(name, figures, out=tmp_path / "benchmarks" / "results")
    return doc


def independent(tmp_path: Path, monkeypatch, figures: dict) -> Path:
    return project(tmp_path, monkeypatch, "independent_attack.py", "independent_attack-quickstart", figures)


def figures(classification: list[dict], compared: list[dict]) -> dict:
    settings = {"steps": 100, "restarts": 2, "step": 0.25, "targets": 3}
    return {
        "suite": "quickstart",
        "settings": settings,
        "classification": classification,
        "retrieval": compared,
        "seconds": 9.0,
    }


def test_a_record_within_three_points_renders_its_table_and_the_criterion_holding(tmp_path, monkeypatch):
    doc = independent(
        tmp_path,
        monkeypatch,
        figures(
            [
                checked("none", 0, 0.0, 0.0),
                checked("zepad", 0, 40.625, 43.75),
                checked("zepad", 1, 43.75, 40.75),
            ],
            [retrieval("none", 0, 12.5, 18.6), retrieval("zepad", 0, 40.6, 40.6)],
        ),
    )
    assert update_documents(tmp_path, write=False) == {doc: ["independent-attack"]}  # the record drifts it
    update_documents(tmp_path)
    text = doc.read_text()
    assert "no record yet: `python benchmarks/independent_attack.py" not in text
    assert "| zepad | classification | 0 | 4/255 | 32 | 40.6 | 43.8 | +3.1 |" in text
    assert "| zepad | classification | 1 | 4/255 | 32 | 43.8 | 40.8 | -3.0 |" in text
    assert "measured by `python benchmarks/independent_attack.py suites/quickstart.toml`" in text.lower()
    assert "**Issue 17's criterion holds**" in text  # a gap of exactly 3 points is within the criterion
    assert "largest gap 3.0 points: zepad (classification, seed 1, 4/255)" in text
    assert "| zepad | retrieval | 0 | 40.6 | 40.6 |" in text
    assert "at or below the lowest transfer RA for every defense and seed (2 of 2)" in text
    assert update_documents(tmp_path, write=False) == {}  # current now


def test_a_record_beyond_three_points_renders_the_criterion_failing(tmp_path, monkeypatch):
    doc = independent(
        tmp_path,
        monkeypatch,
        figures(
            [checked("pgd-at", 0, 50.0, 50.0), checked("zepad", 1, 43.75, 40.625)],
            [retrieval("none", 0, 12.5, 18.6), retrieval("zepad", 0, 86.0, 75.9)],
        ),
    )
    update_documents(tmp_path)
    text = doc.read_text()
    assert "**Issue 17's criterion fails**" in text and "criterion holds" not in text
    assert "below the board's adaptive RA for zepad (classification, seed 1, 4/255) by 3.1 points" in text
    assert (
        "Retrieval: the adaptive RA is **above** the lowest transfer RA for zepad (retrieval, seed 0): "
        in text
    )
    assert "86.0 vs 75.9" in text and "every defense and seed" not in text


def test_without_a_record_a_block_says_which_command_writes_it():
    assert bench_docs.independent_check(None) == (
        "no record yet: `python benchmarks/independent_attack.py suites/quickstart.toml --workdir WD` writes "
        "`benchmarks/results/independent_attack-quickstart.json`"
    )
    assert bench_docs.adaptive_cost_table(None).startswith(
        "no record yet: `python benchmarks/adaptive_cost.py suites/quickstart.toml --workdir WD` writes "
    )


def test_an_adaptive_cost_record_renders_each_cell_and_the_total(tmp_path, monkeypatch):
    cells = [
        {
            "defense": "zepad",
            "task": "classification",
            "seed": 0,
            "n": 32.0,
            "RA": 40.625,
            "cpu_s": 95.0,
            "wall_s": 96.5,
            "stage_wall_s": 90.25,
        },
        {
            "defense": "zepad",
            "task": "detection",
            "seed": 0,
            "n": None,
            "RA": None,
            "cpu_s": 1.0,
            "wall_s": 1.5,
            "stage_wall_s": None,
        },
    ]
    figures = {"suite": "quickstart", "threads": 1, "cells": cells, "total_cpu_s": 96.0}
    doc = project(tmp_path, monkeypatch, "adaptive_cost.py", "adaptive_cost-quickstart", figures)
    assert update_documents(tmp_path, write=False) == {doc: ["adaptive-cost"]}
    update_documents(tmp_path)
    text = doc.read_text()
    assert "| zepad | classification | 0 | 32 | 40.6 | 95.0 | 96.5 | 90.2 |" in text
    assert "| zepad | detection | 0 | n/a | n/a | 1.0 | 1.5 | n/a |" in text
    assert "Total cell CPU time: 96.0 s." in text


def test_the_scripts_write_records_the_blocks_read(tmp_path):
    """``independent_attack.py`` and ``adaptive_cost.py`` on a tiny suite's work directory (classification
    and retrieval, one defense): each writes its record, and the block renders it."""
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        suite_text()
        .replace('defenses = ["none", "none2"]', 'defenses = ["none"]')
        .replace('tasks = ["cls", "cls2"]', 'tasks = ["cls", "ret"]')
        .replace('adaptive_eps = ["2/255", "16/255"]', 'adaptive_eps = ["16/255"]')
    )
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "outside"), os.environ.get("PYTHONPATH", "")])}
    workdir, records = ["--workdir", str(tmp_path / "wd")], ["--out", str(tmp_path / "records")]
    ran = run_cli(["run", str(suite), *workdir, "--out", str(tmp_path / "board"), "--quiet"], tmp_path, env)
    assert ran.returncode == 0, ran.stderr

    def script(name: str, *args: str) -> dict:
        command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), str(suite), *workdir, *records]
        out = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=300, env={**os.environ, **env}
        )
        assert out.returncode == 0, out.stderr
        record = json.loads((tmp_path / "records" / f"{name}-smoke.json").read_text())
        assert record["command"].startswith(f"python benchmarks/{name}.py")
        return record

    record = script("independent_attack", "--steps", "2")
    f = record["figures"]
    assert f["settings"] == {"steps": 2, "restarts": 2, "step": 0.25, "targets": 3}
    cells = [(r["task"], r["defense"], r["seed"], r["n"]) for r in f["classification"]]
    assert cells == [("cls", "none", 0, 64)]  # two classes: the margin runs against the one other class
    assert [(r["task"], r["defense"]) for r in f["retrieval"]] == [("ret", "none")]
    text = bench_docs.independent_check(record, "independent_attack-smoke")
    assert "| none | cls | 0 | 16/255 | 64 |" in text and "| none | ret | 0 |" in text

    record = script("adaptive_cost")
    assert [(r["task"], r["n"], r["stage_wall_s"] is not None) for r in record["figures"]["cells"]] == [
        ("cls", 64.0, True),
        ("ret", 64.0, True),
    ]
    assert "| none | cls | 0 | 64 |" in bench_docs.adaptive_cost_table(record, "adaptive_cost-smoke")
