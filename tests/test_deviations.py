"""The deviations table from stored rows: each switch paired with the preset it departs from."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from conftest import deviation_row as row
from conftest import deviation_rows as rows

from zepad_bench.params import options_model, resolved
from zepad_bench.registry import load_registry
from zepad_bench.reports.deviations import (
    WHOLE_PRESET,
    deviation_effects,
    deviation_pairs,
    deviations_markdown,
)


def test_each_deviation_is_paired_with_the_preset_it_departs_from():
    pairs = {(p["defense"], p["preset"], p["from"], p["label"]) for p in deviation_pairs(rows())}
    assert pairs == {
        ("zp-a-bn", "zp-a", "authors", "freeze_bn = true"),
        ("zp-fuse", "zp", "corrected", "fuse_on = logits"),
        ("zp-a", "zp", "corrected", WHOLE_PRESET),
    }


def test_effects_are_per_seed_differences_with_their_spread():
    effects = {(e["label"], e["metric"], e["attack"]): e for e in deviation_effects(rows())}
    bn = effects[("freeze_bn = true", "BA", None)]  # BA: one value per seed, whatever the attack
    assert (
        bn["deltas"] == [1.0, 3.0, 5.0]
        and bn["mean"] == pytest.approx(3.0)
        and bn["std"] == pytest.approx(2.0)
    )
    assert effects[("freeze_bn = true", "RA", "adv")]["deltas"] == [5.0, 7.0, 9.0]  # vs authors
    fuse = effects[("fuse_on = logits", "RA", "noise")]
    assert fuse["deltas"] == [0.0, -2.0, -4.0] and fuse["attack_role"] == "control"
    whole = effects[(WHOLE_PRESET, "RA", "adv")]
    assert whole["deltas"] == [-10.0, -12.0, -14.0] and whole["from"] == "corrected"


def test_markdown_names_preset_deviation_and_spread():
    text = deviations_markdown(rows())
    assert "| zepad | authors | freeze_bn = true | +3.00 ± 2.00 | +7.00 ± 2.00 | +7.00 ± 2.00 | 3 |" in text
    assert "ΔRA noise (control)" in text and "#### task cls" in text
    one_seed = [r for r in rows() if r["seed"] == 0]
    assert "+1.00 (1 seed)" in deviations_markdown(one_seed)
    assert deviations_markdown([r for r in rows() if r["defense"] == "none"]).startswith("No deviation")


def test_the_ablation_suite_flips_every_switch_alone_from_both_presets():
    """Every deviation parameter of the presets appears once from each side; fuse_on among them."""
    registry = load_registry()
    path = Path(__file__).resolve().parents[1] / "suites" / "protocol_ablation_offline.toml"
    suite = tomllib.loads(path.read_text())
    fake = []
    for id_ in suite["grid"]["defenses"]:
        table = dict(suite["defenses"][id_])
        plugin = table.pop("plugin")
        config = {"defense_plugin": plugin, "defense_given": table}
        config["defense_params"] = resolved(registry.get("defenses", plugin), table)
        fake.append({**row(id_, "corrected", 0, "adv", 0.0, 0.0), "config": config})
    pairs = deviation_pairs(fake)
    for plugin in ("zepad", "gen-af"):
        presets = options_model(registry.get("defenses", plugin)).presets["protocol"]
        switches = {k for k in presets["authors"] if presets["authors"][k] != presets["corrected"][k]}
        switches -= {"epochs"}  # the suite fixes CPU-sized epochs in every table
        for base, other in (("authors", "corrected"), ("corrected", "authors")):
            labelled = {p["label"] for p in pairs if p["plugin"] == plugin and p["from"] == base}
            flipped = {part for label in labelled for part in label.split(", ")}
            wanted = {f"{k} = {str(presets[other][k]).lower()}" for k in switches}
            assert wanted <= flipped, (plugin, base, wanted - flipped)  # each to the other preset's value
    assert {"fuse_on = probabilities", "bmp = ssl"} <= {p["label"] for p in pairs if p["from"] == "authors"}
    assert (WHOLE_PRESET, "pgd-at") in {(p["label"], p["plugin"]) for p in pairs}
    assert len(suite["grid"]["seeds"]) >= 3


def test_stored_rows_carry_the_defense_params_the_table_reads(tmp_path):
    """End to end: the runner stores each cell's defense plugin and resolved params; the table reads them."""
    from conftest import SMOKE_SUITE

    from zepad_bench.reports.collect import board_from_store
    from zepad_bench.reports.markdown import render
    from zepad_bench.runner import Runner
    from zepad_bench.suite import load_suite

    tables = "".join(
        f'\n[defenses.{id_}]\nplugin = "pgd-at"\nprotocol = "authors"\nepochs = 1\nsteps = 1\n{extra}'
        for id_, extra in (("at", ""), ("at-bn", "freeze_bn = true\n"))
    )
    text = SMOKE_SUITE.replace('defenses = ["none", "none2"]', 'defenses = ["none", "at", "at-bn"]')
    path = tmp_path / "s.toml"
    text = text.replace("[suite]\n", '[suite]\nreports = ["deviations"]\n', 1)
    path.write_text(text.replace("[grid]", tables + "\n[grid]").replace('"cls", "cls2"]', '"cls"]'))
    suite = load_suite(path, load_registry(["zb_outside_plugin"]))
    runner = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    for cell in suite.cells():
        runner.run_cell(cell)
    rows = runner.store.rows()
    config = next(r["config"] for r in rows if r["defense"] == "at-bn")
    assert config["defense_plugin"] == "pgd-at"
    assert config["defense_params"]["freeze_bn"] is True and config["defense_params"]["epochs"] == 1
    assert [(p["defense"], p["from"], p["label"]) for p in deviation_pairs(rows)] == [
        ("at-bn", "authors", "freeze_bn = true")
    ]
    assert {e["metric"] for e in deviation_effects(rows)} == {"BA", "RA"}
    board = board_from_store(suite, tmp_path / "wd")  # the suite's declaration reaches its board
    assert board.reports == ["deviations"] and "| pgd-at | authors | freeze_bn = true |" in render(board)


def test_a_table_that_differs_elsewhere_too_is_no_single_deviation():
    """eps 0.03 vs eps 0.06 with freeze_bn = false: two changes, not "freeze_bn = false" alone."""
    two = [
        row("e3", "corrected", 0, "adv", 97.0, 50.0, eps=0.03),
        row("e6-bn", "corrected", 0, "adv", 97.0, 40.0),
    ]
    two[1]["config"]["defense_given"] |= {"eps": 0.06, "freeze_bn": False}
    two[1]["config"]["defense_params"] |= {"eps": 0.06, "freeze_bn": False}
    assert deviation_pairs(two) == []
    assert [
        p["label"] for p in deviation_pairs([*two, row("e6", "corrected", 0, "adv", 0.0, 0.0, eps=0.06)])
    ] == ["freeze_bn = false"]
