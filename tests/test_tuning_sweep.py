"""The detection explanation from stored rows: per-branch RA/confidence and detection AUROC by tuning ε."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from conftest import sweep_rows as rows

from zepad_bench.reports.tuning_sweep import sweep_figure, sweep_markdown, sweep_points


def test_points_are_keyed_by_the_stored_tuning_eps_with_their_spread():
    points = {(p["tuning_eps"], p["quantity"]): p for p in sweep_points(rows())}
    assert points[(0.06, "RA")]["mean"] == pytest.approx(46.0) and points[(0.06, "RA")]["std"] == 0.0
    victim = points[(0.015, "conf_adv:mpae:victim")]
    assert victim["values"] == pytest.approx([0.515, 0.525, 0.535]) and victim["std"] == pytest.approx(0.01)
    assert points[(0.015, "AUROC:gap")]["values"] == [50.0, 51.0, 52.0]
    assert (0.015, "AUROC:js") not in points  # "n/a" is not a number
    assert points[(None, "RA")]["mean"] == 30.0  # the undefended baseline, classification only
    assert (None, "AUROC:gap") not in points


def test_markdown_and_figure_come_from_the_rows(tmp_path):
    text = sweep_markdown(rows())
    assert "#### adv, attack ε 16.00/255" in text
    assert "| 3.82/255 | 41.5 ± 0.0 |" in text and "| undefended | 30.0 ± 0.0 |" in text
    assert "90.0 ± 0.0 → 52.5 ± 1.0" in text  # MPAE victim: confidence falls on attacked images
    path = sweep_figure(rows(), tmp_path / "sweep.png")
    assert path is not None and path.stat().st_size > 10_000
    assert sweep_figure([r for r in rows() if r["defense"] == "none"], tmp_path / "none.png") is None


def test_the_sweep_suite_brackets_the_quickstart_and_the_attack_budget():
    path = Path(__file__).resolve().parents[1] / "suites" / "detection_sweep_offline.toml"
    suite = tomllib.loads(path.read_text())
    quickstart = tomllib.loads((path.parent / "quickstart.toml").read_text())
    tuned = sorted(t["eps"] for t in suite["defenses"].values() if t["plugin"] == "zepad")
    assert (
        tuned[0] == quickstart["defenses"]["zepad"]["eps"] and 0.03 in tuned
    )  # the quickstart's, the paper's
    assert tuned[-1] == pytest.approx(16 / 255) and suite["suite"]["eps"] == "16/255"  # tuning = attack ε
    assert {"classification", "detection"} <= {t["plugin"] for t in suite["tasks"].values()}
    assert len(suite["grid"]["seeds"]) >= 3
