"""Leaderboards: mean ± sample std over seeds, ties within noise, one section per task with its own
metrics, the JSON keeps every per-seed value, and the README block is generated from the same data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from zepad_bench.leaderboard import flags, publish, readme_block, render, replace_block, sections
from zepad_bench.statistics import Stat, mark_best

ROOT = Path(__file__).resolve().parents[1]


def row(task, defense, attack, seed, metrics, report=("BA", "RA", "ASR"), role="attack"):
    return {
        "key": f"{task}/{defense}/{attack}/{seed}",
        "suite": "toy",
        "victim": "v",
        "scenario": "semi-black-box",
        "attack": attack,
        "eps": 16 / 255,
        "defense": defense,
        "tuning": "digits",
        "task": task,
        "task_data": "digits",
        "seed": seed,
        "metrics": metrics,
        "config": {"report_metrics": list(report), "attack_role": role, "test_size": 540},
        "versions": {"zepad-bench": "0"},
        "timings": {"cell": 1.0},
        "machine": {"platform": "test", "cpus": 2, "device": "cpu"},
        "created": f"2026-01-01T00:00:0{seed}+00:00",
    }


BA = {"none": [90.0, 92.0, 94.0], "zepad": [95.0, 95.5, 96.0]}
RA = {
    ("none", "pap"): [30.0, 40.0, 50.0],
    ("zepad", "pap"): [70.0, 71.0, 72.0],
    ("none", "uap"): [60.0, 61.0, 62.0],
    ("zepad", "uap"): [20.0, 50.0, 80.0],
    ("none", "noise"): [80.0, 80.0, 80.0],
    ("zepad", "noise"): [90.0, 90.0, 90.0],
}


def toy_rows(seeds=(0, 1, 2)):
    rows = []
    for (defense, attack), ras in RA.items():
        for seed in seeds:
            metrics = {
                "BA": BA[defense][seed],
                "RA": ras[seed],
                "ASR": 100 - ras[seed],
                "head": "retrained",
                "conf_clean:victim": 0.9,
            }
            rows.append(
                row("cls", defense, attack, seed, metrics, role="control" if attack == "noise" else "attack")
            )
            det = {
                "BA": BA[defense][seed],
                "RA": ras[seed],
                "ASR": 1.0,
                "detection_accuracy": 50.0 + seed + len(attack) if defense == "zepad" else "n/a",
                "AUROC": 60.0 + seed if defense == "zepad" else "n/a",
            }
            rows.append(row("det", defense, attack, seed, det, report=("detection_accuracy", "AUROC")))
    return rows


def test_stat_is_mean_and_sample_std_and_one_seed_shows_no_spread():
    assert Stat.of([90, 92, 94]).text() == "92.00 ± 2.00"  # n − 1
    assert Stat.of([97.03]).text() == "97.03"  # never "± 0.00" for an unknown spread
    assert Stat.of(["n/a", None, float("nan")]).text() == "n/a"
    assert math.isnan(Stat.of([1.0]).std)


def test_best_is_bold_and_ties_are_marked_only_within_noise():
    close, far, best = Stat.of([69, 70, 71]), Stat.of([10, 11, 12]), Stat.of([70, 71, 72])
    assert mark_best([close, far, best]) == ["≈ 70.00 ± 1.00", "11.00 ± 1.00", "**71.00 ± 1.00**"]
    assert mark_best([close, best], higher_is_better=False)[0] == "**70.00 ± 1.00**"
    assert mark_best([Stat.of([70]), Stat.of([70.5])]) == ["70.00", "**70.50**"]  # one seed: no ties


def test_sections_are_per_task_with_their_own_metrics_and_honest_spread():
    lines, tables = sections(toy_rows())
    text = "\n".join(lines)
    cls, det = text.split("## Task `det`")
    assert "### cls: clean" in cls and "### cls: RA" in cls and "### cls: ASR" in cls
    assert "92.00 ± 2.00" in cls  # BA std over seeds, not over the value repeated once per attack
    assert "detection_accuracy" not in cls and "conf_" not in text
    assert "### det: detection_accuracy" in det and "AUROC" in det and "det: RA" not in det
    assert "| none " not in det  # the undefended model has no detector: its rows are left out
    ra = next(t for t in tables if t["title"] == "cls: RA")
    zepad = next(r for r in ra["rows"] if r["defense"] == "zepad")
    assert zepad["uap"]["values"] == [20.0, 50.0, 80.0] and zepad["uap"]["n"] == 3
    # worst case: per seed the minimum over the attacks (control excluded), then mean ± std
    assert zepad["worst"]["values"] == [20.0, 50.0, 72.0]
    assert "noise (control)" in cls


def test_render_is_self_contained(tmp_path):
    text = render("toy", toy_rows(), "suites/toy.toml", description="A toy.")
    for needle in (
        "victim encoder(s): v",
        "D_f (defense tuning data): digits",
        "test-set size: digits 540",
        "seeds: 0, 1, 2 (n = 3)",
        "**BA**: benign accuracy",
        "**RA**: robust accuracy",
        "**ASR**: attack success rate",
        "**AUROC**",
        "(control)** columns",
        "results created 2026-01-01T00:00:00+00:00 … 2026-01-01T00:00:02+00:00",
    ):
        assert needle in text, needle
    single = render("toy", toy_rows(seeds=(0,)), "suites/toy.toml")
    assert "**One seed**" in single and "± 0.00" not in single


def test_json_keeps_every_seed_and_the_readme_block_is_generated(tmp_path):
    rows = toy_rows()
    paths = publish("toy", rows, tmp_path, "suites/toy.toml")
    payload = json.loads(paths[2].read_text())
    assert len(payload["results"]) == len(rows) and payload["tables"]
    block = readme_block("toy", payload["results"], payload["source"], payload["runs"], tasks=("cls",))
    readme = "intro\n<!-- leaderboard:toy -->\nSTALE\n<!-- /leaderboard:toy -->\nafter\n"
    new = replace_block(readme, "toy", block)
    assert new.startswith("intro\n<!-- leaderboard:toy -->\n") and new.endswith(
        "<!-- /leaderboard:toy -->\nafter\n"
    )
    assert "STALE" not in new and "#### cls: RA" in new and "det:" not in new
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers", "toy", block)


def test_the_readme_results_block_is_the_published_quickstart_board():
    payload = json.loads((ROOT / "leaderboard" / "quickstart.json").read_text())
    block = readme_block("quickstart", payload["results"], payload["source"], payload["runs"])
    readme = (ROOT / "README.md").read_text()
    assert replace_block(readme, "quickstart", block) == readme, (
        "run: zepad-bench leaderboard suites/quickstart.toml --readme README.md"
    )


def test_a_collapsed_defense_is_flagged():
    rows = toy_rows()
    for r in rows:
        r["metrics"]["top_class_share"] = 12.0
        r["metrics"]["top_class_share_adv"] = (
            97.0 if r["defense"] == "zepad" and r["attack"] == "pap" else 20.0
        )
    found = [f for f in flags(rows) if f["kind"].startswith("collapse")]
    assert [(f["kind"], f["defense"], f["attack"]) for f in found] == [("collapse-attacked", "zepad", "pap")]
    assert "`collapse-attacked` zepad × pap" in render("toy", rows)
