"""Sanity flags and RA-vs-ε curves on constructed result frames (zepad_bench.reports)."""

from __future__ import annotations

import pytest

from zepad_bench.reports.curves import ra_auc, ra_curves
from zepad_bench.reports.figures import robustness_figure
from zepad_bench.reports.flags import sanity_flags
from zepad_bench.reports.frame import results_frame

E = 1 / 255


def cell(attack, eps, RA, *, defense="zepad", scenario="semi-black-box", seed=0, BA=90.0, role="attack", **m):
    metrics = {"BA": BA, "RA": RA, **m}
    return {
        "victim": "byol",
        "scenario": scenario,
        "attack": attack,
        "eps": eps,
        "defense": defense,
        "tuning": "digits",
        "task": "classification",
        "task_data": "digits",
        "seed": seed,
        "metrics": metrics,
        "config": {"attack_plugin": attack, "attack_role": role, "defense_role": "defense"},
    }


def clean_rows():
    """A consistent suite: every attack beats the control, adaptive is strongest, RA falls with ε."""
    rows = []
    for seed, shift in ((0, 0.0), (1, 2.0)):
        rows += [
            cell("random-noise", 16 * E, 85 + shift, seed=seed, role="control"),
            cell("uapgd", 16 * E, 60 + shift, seed=seed),
            cell("uapgd-aware", 16 * E, 40 + shift, scenario="defense-aware", seed=seed),
        ]
        for eps, ra in ((2, 70), (4, 45), (16, 5)):
            rows.append(
                cell("adaptive", eps * E, ra + shift, scenario="adaptive", seed=seed, grad_zero_frac=0.0)
            )
    return rows


def recheck_cell(RA_recheck: float, recheck_n: float = 25.0):
    after = {"RA_after:apgd-ce": 30.0, "RA_after:square": 20.0}
    metrics = {**after, "RA_recheck": RA_recheck, "recheck_n": recheck_n, "adaptive_n": 200.0}
    return cell("adaptive", 32 * E, 20.0, scenario="adaptive", grad_zero_frac=0.0, **metrics)


def test_a_converged_recheck_is_not_flagged():
    """Taking none, or a share within 1 point of the rechecked subset, is convergence."""
    for ra_recheck, n in ((20.0, 25.0), (19.5, 200.0)):
        rows = clean_rows()
        rows.append(recheck_cell(ra_recheck, n))
        assert "not-converged" not in kinds(rows)


def kinds(rows):
    return sorted({f["kind"] for f in sanity_flags(results_frame(rows))})


def test_no_flag_on_a_consistent_suite():
    assert sanity_flags(results_frame(clean_rows())) == []


@pytest.mark.parametrize(
    "change, kind",
    [
        (lambda r: r.append(cell("uap", 16 * E, 88.0, role="attack")), "above-control"),
        (lambda r: r.append(cell("pap", 2 * E, 50.0)), "adaptive-weaker"),
        (
            lambda r: r.append(cell("adaptive", 8 * E, 60.0, scenario="adaptive", grad_zero_frac=0.0)),
            "ra-not-falling",
        ),
        (
            lambda r: r.append(cell("adaptive", 32 * E, 0.0, scenario="adaptive", grad_zero_frac=12.5)),
            "grad-zero",
        ),
        (
            lambda r: r.append(cell("adaptive", 32 * E, 0.0, scenario="adaptive", grad_nan_frac=1.0)),
            "grad-nan",
        ),
        (
            lambda r: r.append(
                cell("adaptive", 32 * E, 0.0, scenario="adaptive", **{"grad_zero_frac:attacked": 3.0})
            ),
            "grad-zero",
        ),
        (lambda r: r.append(cell("ssp", 16 * E, 80.0, BA=70.0)), "ra-above-ba"),
        # the re-check takes 1 of 25 rechecked samples (4 points there, 0.5 over the 200 attacked)
        (lambda r: r.append(recheck_cell(RA_recheck=19.5)), "not-converged"),
    ],
)
def test_each_flag_fires_on_its_constructed_case(change, kind):
    rows = clean_rows()
    change(rows)
    assert kind in kinds(rows)
    flag = next(f for f in sanity_flags(results_frame(rows)) if f["kind"] == kind)
    assert {"kind", "defense", "attack", "message"} <= set(flag) and flag["defense"] == "zepad"


def test_flat_curve_above_zero_is_flagged_but_a_saturated_one_is_not():
    flat = [cell("adaptive", e * E, 100.0, scenario="adaptive", BA=100.0) for e in (1, 2, 4)]
    saturated = [cell("adaptive", e * E, 0.0, scenario="adaptive") for e in (1, 2, 4)]
    assert kinds(flat) == ["ra-not-falling"]
    assert kinds(saturated) == []


def test_curve_and_area_under_it():
    frame = results_frame(clean_rows())
    curve = ra_curves(frame)
    assert curve["eps"].tolist() == pytest.approx([2 * E, 4 * E, 16 * E])
    assert curve["mean"].tolist() == pytest.approx([71.0, 46.0, 6.0])
    (auc,) = ra_auc(frame).to_dict("records")
    by_hand = ((70 + 45) / 2 * 2 + (45 + 5) / 2 * 12) / 14  # trapezoid over [2, 16]/255, seed 0
    assert auc["RA AUC"] == pytest.approx(by_hand + 1.0)  # mean of seed 0 and seed 1 = seed 0 + 2
    assert auc["eps_min"] == pytest.approx(2 * E) and auc["seeds"] == 2


def test_robustness_figure(tmp_path):
    frame = results_frame(clean_rows())
    assert robustness_figure(frame, tmp_path / "ra.png").stat().st_size > 0
    assert robustness_figure(frame[frame["scenario"] != "adaptive"], tmp_path / "none.png") is None


def test_a_control_above_ba_is_not_an_attack_failure():
    rows = clean_rows()
    rows[0]["metrics"]["RA"] = 95.0  # random noise that helps the classifier says nothing of the attacks
    assert kinds(rows) == []
