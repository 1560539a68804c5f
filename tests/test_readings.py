"""The generated words: each conclusion is stated only where the data support it, and the opposite
data say the opposite; benchmark records carry their command, machine, date and commit, and a
transcribed record says so. Documents regenerate without torch or plugins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import board, deviation_rows, row, sweep_rows, toy_rows

from zepad_bench.bench_record import write_record
from zepad_bench.reports import bench_docs, claims, fidelity_docs, readings
from zepad_bench.reports.data import Board, from_json, to_json
from zepad_bench.reports.frame import results_frame
from zepad_bench.reports.provenance import provenance
from zepad_bench.reports.tables import per_seed
from zepad_bench.statistics import Stat

ROOT = Path(__file__).resolve().parents[1]
E = 1 / 255


def changed(
    rows: list[dict], defense: str, attack: str | None, metric: str, values: list[float]
) -> list[dict]:
    """``rows`` with ``metric`` of (defense, attack — any for None) set per seed to ``values``."""
    out = []
    for r in rows:
        if r["defense"] == defense and attack in (None, r["attack"]) and metric in r["metrics"]:
            r = {**r, "metrics": {**r["metrics"], metric: values[r["seed"]]}}
        out.append(r)
    return out


def test_zero_sacrifice_holds_only_when_zepad_keeps_the_clean_accuracy():
    text = readings.zero_sacrifice(board(), "cls", 16 * E)
    assert "claim holds here" in text and "the best clean accuracy of all defenses" in text
    lower = board(changed(toy_rows(), "zepad", None, "BA", [80.0, 81.0, 82.0]))
    text = readings.zero_sacrifice(lower, "cls", 16 * E)
    assert "claim does not hold here" in text and "below it beyond the noise" in text


def test_an_attack_counts_as_working_only_beyond_the_noise_control():
    assert "**Every transfer attack lowers the undefended RA" in readings.attacks_work(board(), "cls", 16 * E)
    weak = board(changed(toy_rows(), "none", "uap", "RA", [76.0, 80.0, 84.0]))  # ties the control's 80
    text = readings.attacks_work(weak, "cls", 16 * E)
    assert "**1 of 2 transfer attacks" in text and "not beyond it: uap" in text


def test_the_worst_case_and_the_ranking_change_are_read_from_the_rows():
    text = readings.worst_cases(board(), "cls")
    assert "worst case is the adaptive scenario for every defense" in text
    assert "although it runs at ε 4/255 and the transfer attacks at ε 16/255" in text
    strong = board(changed(toy_rows(), "zepad", "adaptive", "RA", [95.0, 96.0, 97.0]))
    assert "Each defense's worst attack" in readings.worst_cases(strong, "cls")


def test_a_paired_difference_is_a_change_only_beyond_twice_its_standard_error():
    assert fidelity_docs.paired(Stat((-10.0, -11.0, -9.0))) == "lower"
    assert fidelity_docs.paired(Stat((3.0, -2.0, 1.0))) == "within noise"
    assert fidelity_docs.paired(Stat((4.0,))) == "one seed: not tested"


def test_the_sweep_supports_the_hypothesis_only_when_the_gap_rises():
    rows = [{**r, "status": "ok"} for r in sweep_rows()]
    text = fidelity_docs.tuning_sweep(Board("detection_sweep_offline", rows=rows))
    assert "the gap's AUROC 51.0 → 51.0 (does not change beyond the noise)" in text
    assert "does not support it" in text and "detection_sweep_offline-tuning-sweep.png" in text
    rising = [
        {
            **r,
            "metrics": {
                **r["metrics"],
                "AUROC:gap": 50.0 + r["seed"] + 1000 * r["config"]["defense_params"]["eps"],
            },
        }
        if r["task"] == "det" and r["config"]["defense_params"]
        else r
        for r in rows
    ]
    assert "the gap's AUROC 66.0 → 111.0 (rises)" in fidelity_docs.tuning_sweep(Board("s", rows=rising))


def test_the_deviations_block_is_the_boards_table_and_absent_data_say_so():
    rows = [{**r, "status": "ok"} for r in deviation_rows()]
    text = fidelity_docs.deviations_alone(Board("protocol_ablation_offline", rows=rows))
    assert "| zepad | authors | freeze_bn = true | +3.00 ± 2.00 |" in text
    assert fidelity_docs.deviations_alone(None).startswith("Not yet run")
    predates = [{**r, "config": {}} for r in rows]
    assert "was stored before rows named their defense's parameters" in fidelity_docs.deviations_alone(
        Board("protocol_ablation_offline", rows=predates)
    )


def test_a_benchmark_record_names_its_command_machine_date_and_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/install_size.py", "--flag"])
    path = write_record("toy", {"bytes": {"total": 1}}, out=tmp_path)
    record = json.loads(path.read_text())
    assert record["command"].endswith("install_size.py --flag") and record["provenance"] == "measured"
    assert {"platform", "cpus", "device"} <= set(record["machine"]) and record["date"][:2] == "20"
    assert record["commit"] and record["figures"] == {"bytes": {"total": 1}}
    assert bench_docs.provenance(record).startswith("measured by `python")
    transcribed = json.loads((ROOT / "benchmarks" / "results" / "gpu-cuda-paper.json").read_text())
    assert transcribed["provenance"] == "transcribed"
    assert bench_docs.gpu_tables(transcribed, "gpu-cuda-paper").startswith(
        "Transcribed from the printed output"
    )
    assert bench_docs.gpu_tables(None, "gpu-cpu-default").startswith(
        "no record yet: `python benchmarks/gpu.py"
    )


def test_documents_regenerate_without_torch_or_plugins():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from zepad_bench.reports.generated import update_documents\n"
        f"update_documents({str(ROOT)!r}, write=False)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'zepad_bench_plugins')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['torch']"  # only the blocker itself


def test_clean_accuracy_comes_from_the_whole_test_set_not_an_adaptive_subset():
    """An adaptive cell that attacks 32 of 539 test images reports the subset's BA: the reading, the
    summary's BA column and the provenance line take BA from the cells on all 539."""
    rows = []
    for r in toy_rows():
        size = 32 if r["scenario"] == "adaptive" else 539
        if r["scenario"] == "adaptive":
            r = {**r, "metrics": {**r["metrics"], "BA": 100.0, "adaptive_n": 32}}
        rows.append({**r, "config": {**r["config"], "test_size": size}})
    whole = board(rows[::-1])  # the adaptive cells first
    assert claims.stat(whole.ok, "BA", defense="zepad", task="cls").mean == pytest.approx(
        claims.stat(board().ok, "BA", defense="zepad", task="cls").mean
    )
    frame = results_frame(whole.ok)
    picked = per_seed(frame[(frame["task"] == "cls") & (frame["defense"] == "zepad")])
    assert (picked["test_size"] == 539).all() and (picked["BA"] != 100.0).all()
    assert "test-set size: digits 539 (adaptive cells: seeded subsets of 32)" in "\n".join(
        provenance(whole, frame)
    )


def test_a_metric_is_clean_where_its_task_describes_it_so_in_the_store_and_in_the_published_json():
    """Which metric counts only the whole-test-set cells is read from the task's stored description
    (``Metric.clean``), not guessed from its name — the same after a round trip through the board's
    JSON, which keeps the descriptions once per task."""
    info = [
        {"name": "BA", "clean": True},
        {"name": "gallery_recall", "clean": True},
        {"name": "BA_shift", "clean": False},
    ]
    rows = []
    for r in toy_rows():
        if r["task"] != "cls" or r["defense"] != "zepad":
            continue
        subset = r["scenario"] == "adaptive"
        metrics = {"gallery_recall": 10.0 if subset else 90.0, "BA_shift": 10.0 if subset else 90.0}
        config = {**r["config"], "test_size": 32 if subset else 539, "metric_info": info}
        rows.append({**r, "metrics": {**r["metrics"], **metrics}, "config": config})
    stored = board(rows)
    published = from_json(json.loads(to_json(stored)))
    for made in (stored, published):
        assert claims.stat(made.ok, "gallery_recall").mean == 90.0  # clean: the subset cells left out
        assert claims.stat(made.ok, "BA_shift").mean < 90.0  # named like BA, described as not clean


def test_retrieval_adaptive_against_transfer_is_read_per_defense_seed_and_budget():
    def rows(adaptive_zepad_seed1: float) -> list[dict]:
        out = []
        for defense in ("none", "zepad"):
            for seed in (0, 1):
                ra = adaptive_zepad_seed1 if (defense, seed) == ("zepad", 1) else 30.0
                for attack, scenario, value in (
                    ("uapgd", "semi-black-box", 50.0),
                    ("adaptive", "adaptive", ra),
                ):
                    r = row(
                        "ret", defense, attack, seed, {"RA": value}, eps=4 * E, scenario=scenario, info=[]
                    )
                    out.append({**r, "config": {**r["config"], "task_plugin": "retrieval"}})
        return out

    text = readings.adaptive_tasks_summary(board(rows(30.0)))
    assert "at or below its lowest transfer RA at the same ε in all 4 defense × seed × ε pairs" in text
    text = readings.adaptive_tasks_summary(board(rows(60.0)))
    assert "above its lowest transfer RA for zepad seed 1 at ε 4/255 (1 of 4 pairs)" in text
