"""Reports: every board a function of the results data alone (markdown, CSV, JSON, README block,
figures); mean ± sample std over seeds, ties within noise; worst cases and the summary per ε; failed,
pending and outdated cells shown as such; metric descriptions from the tasks themselves."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CLS, DET, E, board, row, toy_rows

from zepad_bench.cell_row import adaptive_members
from zepad_bench.interfaces import CORE_METRICS, Metric, Task
from zepad_bench.reports.data import from_json, read_board, to_json
from zepad_bench.reports.files import publish
from zepad_bench.reports.flags import flags
from zepad_bench.reports.frame import results_frame
from zepad_bench.reports.markdown import render, summaries
from zepad_bench.reports.readme import readme_block
from zepad_bench.reports.tables import attacked_tables, clean_table
from zepad_bench.statistics import Stat, mark_best

ROOT = Path(__file__).resolve().parents[1]


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


def test_tables_are_per_task_with_their_own_metrics_and_honest_spread():
    frame = results_frame(toy_rows())
    cls, det = frame[frame["task"] == "cls"], frame[frame["task"] == "det"]
    clean = clean_table(cls, "cls", CLS)
    assert [c.label for c in clean.columns] == ["BA", "head"]  # a family with report=False is not a column
    none = next(r for r in clean.rows if r.defense == "none")
    assert none.entries[0].stat.text() == "92.00 ± 2.00"  # BA over seeds, not repeated once per attack
    assert none.entries[1].label == "retrained"
    tables = {t.title: t for t in attacked_tables(cls, "cls", CLS)}
    ra = tables["cls: RA at ε 16/255"]
    labels = [c.label for c in ra.columns]
    assert labels == ["noise", "pap", "uap", "worst"] and ra.columns[0].attack.control  # controls first
    zepad = next(r for r in ra.rows if r.defense == "zepad")
    assert zepad.entries[2].stat.values == (20.0, 50.0, 80.0)
    assert zepad.entries[3].stat.values == (20.0, 50.0, 72.0)  # per seed the minimum, control excluded
    det_tables = [t.title for t in attacked_tables(det, "det", DET)]
    assert "det: detection_accuracy at ε 16/255" in det_tables and not any(": RA" in t for t in det_tables)
    det_acc = next(t for t in attacked_tables(det, "det", DET) if t.metric == "detection_accuracy")
    assert [r.defense for r in det_acc.rows] == ["zepad"]  # no detector: the undefended row is left out


def test_worst_case_and_summary_are_per_budget():
    """A worst case is taken at one ε: the 4/255 adaptive RA never mixes with 16/255 transfer RA."""
    frame = results_frame(toy_rows())
    tables = {t.title: t for t in attacked_tables(frame[frame["task"] == "cls"], "cls", CLS)}
    assert "worst" not in [c.label for c in tables["cls: RA at ε 4/255"].columns]  # one attack at 4/255
    worst = next(r for r in tables["cls: RA at ε 16/255"].rows if r.defense == "zepad").entries[-1]
    assert worst.stat.values == (20.0, 50.0, 72.0)  # the adaptive 15–17 at 4/255 does not enter
    (summary,) = summaries(board(), frame, flags(frame), ["cls"])
    assert [c.label for c in summary.columns] == ["BA", "adaptive 4/255", "transfer 16/255", "flags"]
    zepad = next(r for r in summary.rows if r.defense == "zepad")
    assert zepad.entries[1].stat.values == (15.0, 16.0, 17.0)
    assert zepad.entries[2].stat.values == (20.0, 50.0, 72.0)
    assert [r.defense for r in summary.rows] == ["zepad", "none"]  # ranked by adaptive RA at the headline ε


def test_summary_opens_the_board_and_the_readme_ranks_at_the_headline_eps():
    text = render(board())
    summary = text.split("## Summary", 1)[1].split("## Threat models", 1)[0]
    assert text.index("## Summary") < text.index("## Provenance")
    assert "| defense   | BA               | adaptive 4/255   | transfer 16/255   | flags" in summary
    assert "- **adaptive, ε 4/255**: zepad 16.00 ± 1.00" in summary
    assert "### det" not in summary  # detection does not report RA: no summary of its own
    block = readme_block(board(), tasks=("cls",))
    assert "Defenses ranked by worst RA over the adaptive attacks at ε 4/255 on `cls`" in block
    assert "zepad 16.00 ± 1.00; none 2.00 ± 1.00." in block
    # a headline at 16/255 ranks by the transfer column there
    assert "worst transfer RA at ε 16/255" in readme_block(board(headline_eps=16 * E), tasks=("cls",))


def test_render_is_self_contained_and_explains_itself():
    text = render(board())
    for needle in (
        "victim encoder(s): v",
        "D_f (defense tuning data): digits",
        "test-set size: digits 540",
        "seeds: 0, 1, 2 (n = 3)",
        "- **BA** (%): benign accuracy",
        "- **RA** (%): robust accuracy",
        "- **ASR** (%; lower is better): attack success rate",
        "- **conf_clean:<branch>** (in the data only): a branch's confidence",
        "- **AUROC** (%): detector AUROC",
        "| noise°   | noise    | semi-black-box | 16/255 |",
        "- **semi-black-box**: the attacker has the victim's public pre-trained encoder",
        "(here fitted on: v)",
        "- **adaptive**: the attacker has everything the defender deploys",
        "results created 2026-01-01T00:00:00+00:00 … 2026-01-01T00:00:02+00:00",
    ):
        assert needle in text, needle
    assert (
        "surrogates: v" not in text.split("**adaptive**")[1].split("\n")[0]
    )  # the adaptive attacker has none
    single = render(board(toy_rows(seeds=(0,))))
    assert "**One seed**" in single and "± 0.00" not in single


def test_every_report_is_a_function_of_the_json(tmp_path):
    """Render twice from the same JSON: identical; change one stored value: the board changes there."""
    rows = toy_rows()
    path = tmp_path / "toy.json"
    path.write_bytes(to_json(board(rows)))
    first = read_board(path)
    before = render(first)
    time.sleep(1.1)  # a board stamped with the time it was rendered would differ now
    second = read_board(path)
    assert render(second) == before == render(board(rows))
    assert readme_block(first) == readme_block(second)
    assert to_json(first) == path.read_bytes()  # the data round-trips byte for byte
    payload = json.loads(path.read_text())
    assert payload["format"] == "zepad-bench-results" and payload["version"] == 2
    assert "metric_info" not in payload["results"][0]["config"] and payload["tasks"]["cls"]["metrics"] == CLS
    changed = next(r for r in payload["results"] if r["defense"] == "zepad" and r["attack"] == "pap")
    changed["metrics"]["RA"] = 12.0
    assert "| zepad     |" in render(from_json(payload)) and render(from_json(payload)) != render(first)
    assert Stat.of([12.0, 71.0, 72.0]).text() in render(from_json(payload))  # the pap column


def test_publish_writes_readable_files_at_absolute_paths(tmp_path):
    old = os.umask(0o022)
    try:
        paths = publish(board(), tmp_path / "lb")
    finally:
        os.umask(old)
    assert [p.suffix for p in paths[:3]] == [".md", ".csv", ".json"] and all(p.is_absolute() for p in paths)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # a temp file alone is owner-only (0600)
    assert json.loads(paths[2].read_text())["results"]


def test_failed_and_pending_cells_are_shown_as_such():
    rows = toy_rows()
    failed = next(r for r in rows if r["task"] == "cls" and r["defense"] == "zepad" and r["attack"] == "uap")
    failed.update(
        status="failed", metrics={}, reason="attack plugin 'uap' broke its budget", stage="adversarial"
    )
    gone = next(r for r in rows if r["task"] == "cls" and r["defense"] == "none" and r["attack"] == "pap")
    rows.remove(gone)
    pending = {
        k: gone[k] for k in ("victim", "scenario", "attack", "eps", "defense", "tuning", "task", "seed")
    }
    toy = board(rows, pending=[{**pending, "task_data": "digits", "attack_plugin": "pap"}])
    text = render(toy)
    assert "Cells: 42 — 40 with results, 1 failed, 1 pending (no result yet)." in text
    assert (
        "- at stage `adversarial`: attack plugin 'uap' broke its budget — 1 cell(s): uap × zepad [SBB" in text
    )
    assert "## Pending cells" in text and "pap × none [SBB, ε 16/255, cls, seed 0]" in text
    table = text.split("### cls: RA at ε 16/255", 1)[1]
    assert "(1 failed)" in table and "(1 pending)" in table
    only_failed = [
        dict(r, status="failed", metrics={}, reason="x", stage="task") for r in rows if r["attack"] == "uap"
    ]
    rest = [r for r in rows if r["attack"] != "uap"]
    text = render(board(rest + only_failed))
    assert (
        "| failed " in text.split("### cls: RA at ε 16/255", 1)[1]
    )  # no result at all: "failed", not a number
    summary = text.split("## Threat models")[0]
    assert "3 failed" in summary  # the summary's flags column counts them


def test_an_outdated_row_is_shown_and_marked():
    rows = toy_rows()
    for r in rows:
        if r["attack"] == "uap" and r["defense"] == "zepad":
            r["outdated"] = "code changed since it was stored: attack:uap"
    text = render(board(rows))
    assert "88.00 ± 30.00 †" not in text and "50.00 ± 30.00 †" in text
    assert "- code changed since it was stored: attack:uap: 6 row(s), attacks uap; defenses zepad" in text


def test_glossary_is_complete_for_outside_tasks_in_either_form():
    new = [Metric("score@3", "an outside task's own score", unit="").as_dict()]
    rows = [row("mine", "none", "pap", 0, {"score@3": 1.5, "extra": 2.0}, info=new)]
    text = render(board(rows))
    assert "- **score@3**: an outside task's own score" in text
    assert "- in the data, not described by its task: extra" in text
    old = {**rows[0], "config": {k: v for k, v in rows[0]["config"].items() if k != "metric_info"}}
    old["config"]["report_metrics"] = ["BA", "score@3"]
    assert "not described in results stored before tasks described their metrics" in render(board([old]))


def test_a_task_in_the_old_report_metrics_form_still_describes_its_columns():
    class Old(Task):
        name = "old"
        report_metrics = ("BA", "RA", "score_clean", "score")

    described = {m.name: m for m in Old().metrics()}
    assert described["BA"] == CORE_METRICS[0] and described["RA"] == CORE_METRICS[1]
    assert described["score_clean"].clean and not described["score"].clean
    assert described["score"].definition == "not described by its task (old `report_metrics` form)"
    assert [m.name for m in Task().metrics()] == ["BA", "RA", "ASR"]


def test_the_json_of_before_this_format_still_renders():
    payload = {"suite": "old", "source": "s.toml", "description": "", "runs": [], "results": toy_rows()}
    for r in payload["results"]:
        del r["status"], r["code"], r["records"], r["outdated"]
        r["config"]["report_metrics"] = [m["name"] for m in r["config"].pop("metric_info") if m["report"]]
    old = from_json(payload)
    assert old.rows[0]["status"] == "ok" and "## Summary" in render(old)
    with pytest.raises(ValueError, match="format version"):
        from_json({"format": "zepad-bench-results", "version": 99})


def test_a_collapsed_defense_is_flagged():
    rows = toy_rows()
    for r in rows:
        r["metrics"]["top_class_share"] = 12.0
        r["metrics"]["top_class_share_adv"] = (
            97.0 if r["defense"] == "zepad" and r["attack"] == "pap" else 20.0
        )
    found = [f for f in flags(results_frame(rows)) if f["kind"].startswith("collapse")]
    assert [(f["kind"], f["defense"], f["attack"]) for f in found] == [("collapse-attacked", "zepad", "pap")]
    assert "`collapse-attacked` zepad × pap" in render(board(rows))


def test_the_adaptive_log_shows_each_member_the_recheck_and_the_interval():
    rows = [r for r in toy_rows() if r["scenario"] == "adaptive"]
    for r in rows:
        ra = r["metrics"]["RA"]
        r["metrics"].update(
            {
                "RA_after:apgd-ce": ra + 10,
                "RA_after:apgd-t": ra + 2,
                "RA_after:square": ra,
                "RA_recheck": ra - 3,
            }
        )
        r["metrics"].update(
            {"adaptive_n": 200, "recheck_n": 100, "RA_ci95_low": ra - 6, "RA_ci95_high": ra + 7}
        )
    text = render(board(rows))
    log = text.split("### cls: adaptive attack log at ε 4/255", 1)[1]
    header = next(line for line in log.splitlines() if line.startswith("| defense"))
    assert header.split("|")[1:-1] == [
        " defense   ", " clean        ", " after apgd-ce   ", " after apgd-t   ", " after square   ",
        " RA           ", " re-check     ", " re-check n   ", " n   ", " 95 % interval   ",
    ]  # fmt: skip
    assert "| zepad     | 95.50 ± 0.50 | 26.00 ± 1.00    | 18.00 ± 1.00   | 16.00 ± 1.00   |" in log
    assert "10.00–23.00" in log and "`not-converged` zepad × adaptive" in text


def test_the_adaptive_log_lists_members_in_the_order_they_ran_after_a_json_round_trip():
    """Members that leave RA unchanged tie, and published JSON sorts metric names: the log's columns
    follow the order the cell row stores (``adaptive_members``), not the alphabet."""
    rows = [r for r in toy_rows() if r["scenario"] == "adaptive"]
    for r in rows:
        ra = r["metrics"]["RA"]
        after = {"apgd-ce": ra + 5, "apgd-t": ra, "square": ra, "apgd-mt": ra}
        r["metrics"].update({f"RA_after:{m}": v for m, v in after.items()})
        r["config"] = {**r["config"], **adaptive_members(r["metrics"])}
    published = from_json(json.loads(to_json(board(rows))))
    log = render(published).split("### cls: adaptive attack log at ε 4/255", 1)[1]
    header = next(line for line in log.splitlines() if line.startswith("| defense"))
    shown = [c.strip() for c in header.split("|") if c.strip().startswith("after ")]
    assert shown == ["after apgd-ce", "after apgd-t", "after square", "after apgd-mt"]


def test_the_board_renders_from_json_without_torch_or_plugins(tmp_path):
    """`zepad-bench leaderboard FILE.json` where torch cannot be imported at all."""
    path = tmp_path / "toy.json"
    path.write_bytes(to_json(board()))
    code = (
        "import sys; sys.modules['torch'] = None\n"  # `import torch` raises ImportError from here on
        "from zepad_bench.cli import main\n"
        f"sys.argv = ['zepad-bench', 'leaderboard', {str(path)!r}, '--out', {str(tmp_path / 'lb')!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'zepad_bench_plugins')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['torch']"  # only the blocker itself
    assert f"board: {tmp_path / 'lb' / 'toy.md'}" in out.stdout
    assert (tmp_path / "lb" / "toy.md").read_text() == render(board())
