"""The transcribed paper tables (reference/paper_tables.json) and the matching of our results to them."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from zepad_bench.reference import METHODS, comparisons, load_tables, paper_cells, reference_section
from zepad_bench.registry import load_registry
from zepad_bench.suite import PluginSpec, Suite

DOC = load_tables()
TABLES = {t["id"]: t for t in DOC["tables"]}
DATASETS = {"cifar10", "stl10", "animals10", "gtsrb", "imagenet20", "svhn", "imagenet"}


def value(table: str, column: str, **labels: str) -> float:
    """The cell of ``table`` in ``column`` on the one row whose labels include ``labels``."""
    t = TABLES[table]
    rows = [r for r in t["rows"] if all(r["labels"].get(k) == v for k, v in labels.items())]
    assert len(rows) == 1, (table, labels, len(rows))
    index = [c["label"] for c in t["columns"]].index(column)
    return rows[0]["values"][index]


def d(x: float) -> Decimal:
    return Decimal(repr(x))


def test_every_row_is_complete_and_uses_plugin_names():
    for table in DOC["tables"]:
        for row in table["rows"]:
            assert len(row["values"]) == len(table["columns"]), (table["id"], row["labels"])
    for cell in paper_cells():
        k = cell.keys
        assert k["metric"], (cell.table, cell.row)
        assert {k.get("pretrain"), k.get("tuning"), k.get("downstream")} - {None} <= DATASETS, cell
        assert k.get("victim") in (None, *METHODS), cell
        assert k["defense"] in {"none", "zepad", "gen-af", "pgd-at", "trades", "mart"}, cell
    # every number of Tables 1–7 and S1–S9 (the text's table lines hold 2,337 numbers)
    assert sum(len(r["values"]) for t in DOC["tables"] for r in t["rows"]) == 2337


def test_cells_repeated_across_tables_agree():
    """The same experiment printed in two tables has the same number (this also pins the label fixes)."""
    for method, column in (("W-MSE", "W-MSE"), ("BYOL", "BYOL"), ("NNCLR", "NNCLR"), ("SimCLR", "SimCLR")):
        cifar = {"D_p": "CIFAR10", "D_f and D_d": "CIFAR10", "Method": "ours"}
        assert value("S5", f"{method} BA", **{"λ": "20"}) == value("1", column, **cifar)
        assert value("S5", f"{method} RA", **{"λ": "20"}) == value("2", column, **cifar)
    for column in ("BYOL", "SupCon", "SimCLR", "NNCLR"):
        cifar = {"D_p": "CIFAR10", "D_f and D_d": "CIFAR10", "Method": "ours"}
        assert value("S4", column, **{"ϵ": "10/255"}) == value("2", column, **cifar)
    for dataset in ("CIFAR10", "STL10", "ANIMALS10"):
        for column in ("W-MSE", "SimCLR", "NNCLR", "MoCo2+", "MoCo3"):
            s8 = value("S8", column, Dataset=dataset, Method="Baseline")
            table1 = {"D_p": "CIFAR10", "D_f and D_d": dataset, "Method": "baseline"}
            assert s8 == value("1", column, **table1)
    for model, column in (("SimCLR", "SimCLR"), ("MoCo v2+", "MoCo2+")):
        stl = {"D_p": "ImageNet", "D_f and D_d": "STL10", "Method": "ours"}
        assert value("7", "BA", Model=model, Method="ZePAD(ours)") == value("1", column, **stl)
        assert value("7", "AdvEncoder RA", Model=model, Method="ZePAD(ours)") == value("2", column, **stl)
    ablation = TABLES["5"]["rows"]
    animals = {"D_p": "CIFAR10", "D_f and D_d": "ANIMALS10", "Method": "baseline"}
    assert ablation[0]["values"][:2] == [value("1", "DINO", **animals), value("2", "DINO", **animals)]
    cross = {"D_f": "CIFAR10", "D_d": "ANIMALS10", "Method": "ours"}
    assert ablation[-1]["values"][:2] == [value("3", "DINO", **cross), value("4", "DINO", **cross)]


def test_the_papers_averages_and_differences_are_reproduced_from_the_cells():
    errata = {(e["table"], tuple(sorted(e["row"].items())), e["column"]): e for e in DOC["errata"]}
    checked = 0
    for table in DOC["tables"]:
        labels = [c["label"] for c in table["columns"]]
        average = [i for i, c in enumerate(table["columns"]) if c.get("average")]
        rows = table["rows"]
        for r, row in enumerate(rows):
            values = [d(v) for v in row["values"]]
            for i, v in enumerate(
                row["values"]
            ):  # apply errata: the printed value must be what we transcribed
                erratum = errata.get((table["id"], tuple(sorted(row["labels"].items())), labels[i]))
                if erratum:
                    assert v == erratum["printed"]
                    values[i] = d(erratum["consistent_value"])
            cells = [v for i, v in enumerate(values) if i not in average]
            delta = row["keys"].get("delta")
            if delta and delta["minus"] == "none":  # Δ = the "ours" row minus the baseline row above it
                ours, base = rows[r - 1], rows[r - 2]
                assert (ours["keys"]["defense"], base["keys"]["defense"]) == ("zepad", "none")
                for i in range(len(values)):
                    if i not in average:
                        fixed = [d(x) for x in (ours["values"][i], base["values"][i])]
                        key = (table["id"], tuple(sorted(base["labels"].items())), labels[i])
                        if key in errata:
                            fixed[1] = d(errata[key]["consistent_value"])
                        assert values[i] == fixed[0] - fixed[1], (table["id"], row["labels"], labels[i])
                if average:  # the paper averaged unrounded numbers: within 0.01 of the mean of Δs
                    assert abs(values[average[0]] - sum(cells) / len(cells)) <= Decimal("0.01")
            elif delta:  # Table 7: ZePAD minus the best other defense of its block
                block = rows[r - 5 : r]
                zepad = next(b for b in block if b["keys"]["defense"] == "zepad")
                for i, v in enumerate(values):
                    best = max(d(b["values"][i]) for b in block if b is not zepad)
                    assert v == d(zepad["values"][i]) - best, (row["labels"], labels[i])
            elif average:
                mean = (sum(cells) / len(cells)).quantize(Decimal("0.01"), ROUND_HALF_UP)
                assert values[average[0]] == mean, (table["id"], row["labels"])
            checked += 1
    assert checked == sum(len(t["rows"]) for t in DOC["tables"])


def test_erratum_is_needed():
    """Without the erratum, Table 3's GTSRB baseline AVG is not reproduced (so the erratum is real)."""
    row = next(
        r
        for r in TABLES["3"]["rows"]
        if r["labels"] == {"D_f": "CIFAR10", "D_d": "GTSRB", "Method": "baseline"}
    )
    mean = sum(d(v) for v in row["values"][:-1]) / 11
    assert mean.quantize(Decimal("0.01"), ROUND_HALF_UP) != d(row["values"][-1])


# ---------------------------------------------------------------------- matching our results
def spec(id_: str, plugin: str, reserved: dict | None = None, **params) -> PluginSpec:
    return PluginSpec(id_, plugin, reserved or {}, params)


def make_suite(defense_params: dict, auxiliaries: list[str]) -> Suite:
    tables = {
        "datasets": {"stl": spec("stl", "stl10"), "c10": spec("c10", "cifar10")},
        "encoders": {
            "simclr-in": spec(
                "simclr-in", "solo-learn", {"auxiliaries": auxiliaries}, path="zoo/imagenet/simclr.ckpt"
            ),
            "byol-in": spec("byol-in", "solo-learn", path="zoo/imagenet/byol.ckpt"),
            "mine": spec("mine", "ssl", {"data": "c10", "auxiliaries": ["simclr-in"]}, method="BYOL"),
        },
        "attacks": {"adv": spec("adv", "advencoder"), "uap": spec("uap", "uap")},
        "defenses": {"zp": spec("zp", "zepad", **defense_params), "none": spec("none", "none")},
        "tasks": {"cls": spec("cls", "classification", {"data": "stl"})},
    }
    return Suite(Path("s.toml"), "s", 0, "cpu", 32, 10 / 255, "c10", 256, [], tables, {}, {}, load_registry())


def result(
    victim: str, attack: str, defense: str, seed: int, tuning: str = "stl", eps: float = 10 / 255, **metrics
):
    return {
        "victim": victim,
        "scenario": "semi-black-box",
        "attack": attack,
        "eps": eps,
        "defense": defense,
        "tuning": tuning,
        "task": "cls",
        "task_data": "stl",
        "seed": seed,
        "metrics": metrics,
    }


def test_results_match_the_paper_cells_of_their_setting():
    suite = make_suite({}, ["byol-in"])
    rows = [
        result("simclr-in", "adv", "zp", 0, BA=80.0, RA=70.0),
        result("simclr-in", "adv", "zp", 1, BA=82.0, RA=72.0),
        result("simclr-in", "uap", "zp", 0, BA=80.0, RA=60.0),
        result("simclr-in", "uap", "zp", 1, BA=82.0, RA=62.0),
    ]
    found = {(c["table"], c["metric"], c["attack"], c["column"]): c for c in comparisons(suite, rows)}
    assert set(found) == {
        ("1", "BA", "(any)", "SimCLR"),  # BA does not depend on the attack: both attacks, both seeds
        ("7", "BA", "(any)", "BA"),
        ("2", "RA", "adv", "SimCLR"),
        ("7", "RA", "adv", "AdvEncoder RA"),
        ("7", "RA", "uap", "UAP RA"),
    }
    assert found[("1", "BA", "(any)", "SimCLR")]["n"] == 4
    assert found[("1", "BA", "(any)", "SimCLR")]["ours"] == 81.0
    table7 = found[("7", "RA", "uap", "UAP RA")]
    assert (table7["paper"], table7["ours"]) == (77.56, 61.0)
    assert table7["difference"] == pytest.approx(61.0 - 77.56)
    section = reference_section(suite, rows)[0]
    assert "| 7 " in section and "-16.56" in section and "inputs 32×32 (paper: 64×64)" in section


@pytest.mark.parametrize(
    "defense_params, auxiliaries",
    [({"lambda_f": 1.0}, ["byol-in"]), ({"ensemble": "average"}, ["byol-in"]), ({}, [])],
    ids=["other-lambda", "other-ensemble", "no-auxiliary"],
)
def test_other_defense_settings_do_not_match_the_default_tables(defense_params, auxiliaries):
    suite = make_suite(defense_params, auxiliaries)
    rows = [result("simclr-in", "adv", "zp", 0, BA=80.0, RA=70.0)]
    assert comparisons(suite, rows) == []


def test_method_param_pretraining_data_budget_and_ablation_rows():
    suite = make_suite({"lambda_f": 10}, ["byol-in"])
    tuned_on_cifar = dict(tuning="c10", eps=12 / 255)
    rows = [result("mine", "adv", "zp", 0, RA=50.0, **tuned_on_cifar)]  # BYOL from its `method` param
    rows[0]["task_data"] = "c10"
    assert [(c["table"], c["paper"]) for c in comparisons(suite, rows)] == []  # λ 10 is not S4's default
    suite = make_suite({}, ["byol-in"])
    assert [(c["table"], c["column"], c["paper"]) for c in comparisons(suite, rows)] == [
        ("S4", "BYOL", 74.29)
    ]
    rows[0]["eps"] = 10 / 255
    found = {(c["table"], c["paper"]) for c in comparisons(suite, rows)}
    assert found == {("2", 80.18), ("S4", 80.18), ("S5", 80.18), ("S3", 81.70)}  # S3's RFDM row differs


# ---------------------------------------------------------------------- protocols on both sides
def test_rows_name_their_protocol_and_a_corrected_row_is_never_shown_as_a_reproduction_gap():
    suite = make_suite({"protocol": "authors"}, ["byol-in"])
    suite.tables["defenses"]["zp-ours"] = spec("zp-ours", "zepad", protocol="corrected")
    suite.tables["defenses"]["zp-bn"] = spec("zp-bn", "zepad", protocol="authors", freeze_bn=True)
    suite.tables["attacks"]["adv-authors"] = spec("adv-authors", "advencoder", clamp=False)
    rows = [
        result("simclr-in", attack, defense, 0, BA=80.0, RA=70.0)
        for attack in ("adv", "adv-authors")
        for defense in ("zp", "zp-ours", "zp-bn")
    ]
    found = {
        (c["defense"], c["attack"], c["metric"]): c for c in comparisons(suite, rows) if c["table"] == "2"
    }
    assert found[("zp", "adv-authors", "RA")]["protocol"] == "authors"
    assert not found[("zp", "adv-authors", "RA")]["clamped"] and found[("zp", "adv", "RA")]["clamped"]
    assert found[("zp-ours", "adv-authors", "RA")]["protocol"] == "corrected"
    assert found[("zp-bn", "adv-authors", "RA")]["protocol"] == "authors with freeze_bn = True"
    section = reference_section(suite, rows)[0]
    same, other = section.split("### Another protocol beside the paper's numbers")
    assert "### Same protocol as the paper's numbers" in same and "paper (authors' code)" in same
    # only the authors' preset with unclamped DAEs sits beside the paper's number as a reproduction
    assert [line for line in same.splitlines() if "| 2 " in line] == [
        line for line in same.splitlines() if "| 2 " in line and "authors; x + δ unclamped" in line
    ]
    assert "| zp " in same and "zp-ours" not in same and "zp-bn" not in same
    for label in ("corrected; x + δ unclamped", "authors with freeze_bn = True", "authors; x + δ clamped"):
        assert label in other
    assert "ours − paper (protocols differ)" in other and "no reproduction gap" in other


def test_the_papers_numbers_print_for_cells_not_run():
    suite = make_suite({"protocol": "authors"}, ["byol-in"])
    suite.grid = {
        "victims": ["simclr-in"],
        "scenarios": ["semi-black-box"],
        "attacks": ["adv"],
        "eps": [10 / 255],
        "defenses": ["zp", "none"],
        "tuning": ["stl"],
        "tasks": ["cls"],
        "seeds": [0, 1],
    }
    found = comparisons(suite, [], suite.cells())
    assert found and all(c["ours"] is None and c["n"] == 0 for c in found)
    assert {(c["table"], c["column"], c["paper"]) for c in found} >= {
        ("7", "BA", 82.07),
        ("2", "SimCLR", 73.26),
    }
    section = reference_section(suite, [])[0]
    assert "No result of this suite is stored" in section and "not run" in section and "82.07" in section


def test_leaderboard_reference_prints_the_papers_numbers_without_data(tmp_path):
    """comparison.toml where neither its data nor its encoders are: Table 7's numbers, both protocols."""
    import shutil

    from click.testing import CliRunner

    from zepad_bench.cli import cli
    from zepad_bench.errors import Missing

    (tmp_path / "suites").mkdir()
    suite = shutil.copy(
        Path(__file__).resolve().parents[1] / "suites" / "comparison.toml", tmp_path / "suites"
    )
    workdir = str(tmp_path / "wd")
    plain = CliRunner().invoke(cli, ["leaderboard", suite, "--workdir", workdir])
    assert plain.exit_code != 0 and "CIFAR10 not found" in str(plain.exception)  # a board needs the data
    assert isinstance(plain.exception, Missing)
    result = CliRunner().invoke(cli, ["leaderboard", suite, "--reference", "--workdir", workdir])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("no board: ") and "CIFAR10 not found" in result.output.split("\n#")[0]
    same, other = result.output.split("### Another protocol beside the paper's numbers")
    assert (
        "| 7 " in same and "82.07" in same and "authors; x + δ unclamped" in same and "corrected" not in same
    )
    assert (
        "zepad-corrected" in other and "gen-af-corrected" in other and "corrected; x + δ unclamped" in other
    )
