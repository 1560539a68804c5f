"""Sections a suite declares for its board (`[suite] reports`): stored in the board JSON, rendered by
whoever renders the board (markdown, HTML, figures), chosen by the data, never by the suite's name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib
from conftest import deviation_rows, row, sweep_rows

from zepad_bench.errors import SuiteError
from zepad_bench.registry import load_registry
from zepad_bench.reports.data import Board, from_json, tasks_of, to_json
from zepad_bench.reports.files import publish
from zepad_bench.reports.html import render_html
from zepad_bench.reports.markdown import render
from zepad_bench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def full(rows: list[dict]) -> list[dict]:
    """Synthetic deviation/sweep rows completed into stored rows a board renders."""
    out = []
    for r in rows:
        base = row(r["task"], r["defense"], r["attack"], r["seed"], r["metrics"], eps=r["eps"])
        out.append({**base, "config": {**base["config"], **r["config"]}})
    return out


def test_a_board_shows_the_sections_its_data_declare():
    rows = full(deviation_rows())
    declared = Board("anything", rows=rows, tasks=tasks_of(rows), reports=["deviations"])
    text = render(declared)
    assert "## One deviation at a time" in text
    assert "| zepad | authors | freeze_bn = true | +3.00 ± 2.00 |" in text
    assert text.index("## One deviation at a time") < text.index("## Summary")
    assert "One deviation" not in render(Board("protocol_ablation_offline", rows=rows, tasks=tasks_of(rows)))
    back = from_json(json.loads(to_json(declared)))  # the declaration travels with the data
    assert back.reports == ["deviations"] and render(back) == text
    assert "One deviation at a time" in render_html(declared)
    unknown = Board("x", rows=rows, tasks=tasks_of(rows), reports=["later"])
    assert "A section this zepad-bench does not know" in render(unknown)


def test_the_sweep_section_draws_its_figure_beside_the_board(tmp_path):
    rows = full(sweep_rows())
    paths = publish(Board("sweep", rows=rows, tasks=tasks_of(rows), reports=["tuning-sweep"]), tmp_path)
    assert tmp_path.resolve() / "sweep-tuning-sweep.png" in paths
    assert "## ZePAD's tuning ε against a fixed attack ε" in (tmp_path / "sweep.md").read_text()


def test_a_suite_declares_known_sections_and_the_two_suites_declare_theirs(tmp_path):
    from conftest import SMOKE_SUITE

    path = tmp_path / "s.toml"
    path.write_text(SMOKE_SUITE.replace("[suite]\n", '[suite]\nreports = ["nope"]\n', 1))
    with pytest.raises(SuiteError, match="suite.reports: unknown board section 'nope'; expected one of"):
        load_suite(path, load_registry(["zb_outside_plugin"]))
    for suite, section in (
        ("protocol_ablation_offline", "deviations"),
        ("detection_sweep_offline", "tuning-sweep"),
    ):
        head = tomllib.loads((ROOT / "suites" / f"{suite}.toml").read_text())["suite"]
        assert head["reports"] == [section]
