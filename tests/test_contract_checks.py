"""The runner enforces the attack contract on every attacked batch: a budget cheat fails its cell."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import OUTSIDE, SMOKE_SUITE

from zepad_bench.budget import check_budget
from zepad_bench.errors import CellFailed
from zepad_bench_plugins.attacks.random_noise import RandomNoise

CHEATS = '''
import torch
from zepad_bench import hookimpl
from zb_outside_plugin import SignFlip


class OverBudget(SignFlip):
    """Three times its budget."""
    name = "cheat-budget"

    def perturb(self, x):
        return (x + 3 * self.delta.to(x.device)).clamp(0, 1)


class OutOfRange(SignFlip):
    """In budget, but never clamped to [0, 1]."""
    name = "cheat-range"

    def perturb(self, x):
        return x + self.delta.to(x.device)


@hookimpl
def register_attacks(register):
    register(OverBudget)
    register(OutOfRange)
'''


def attack(eps: float = 8 / 255, clamp: bool = True) -> RandomNoise:
    a = RandomNoise(eps)
    a.clamp = clamp
    return a


def test_in_budget_batches_pass():
    x = torch.rand(4, 3, 8, 8)
    check_budget(attack(), x, (x + (torch.rand_like(x) * 2 - 1) * 8 / 255).clamp(0, 1))


@pytest.mark.parametrize(
    "shift, clamp, message",
    [
        (9 / 255, True, r"broke its budget: ‖x_adv − x‖∞ = 0\.0353 \(9\.0/255\) > ε = 0\.0314 \(8\.0/255\)"),
        (-1.0, False, "broke its budget"),
        (0.0, True, r"pixels in \[-0\.031, 1\.031\], outside \[0, 1\]"),
    ],
)
def test_violations_fail_with_one_line_naming_the_plugin(shift, clamp, message):
    x = torch.zeros(2, 3, 4, 4)
    x[0] = 1
    delta = torch.full_like(x, 8 / 255)
    delta[0] = -delta[0]
    x_adv = x - delta if shift == 0 else x + shift
    with pytest.raises(CellFailed, match=message) as info:
        check_budget(attack(clamp=clamp), x, x_adv)
    assert "'random-noise'" in str(info.value) and "\n" not in str(info.value)


def test_unclamped_attacks_may_leave_the_range_but_not_the_budget():
    x = torch.ones(1, 3, 4, 4)
    check_budget(attack(clamp=False), x, x + 8 / 255)  # the authors' evaluation: no clamp


def test_a_cheating_outside_attack_fails_its_cells_which_the_board_shows_as_failed(tmp_path):
    (tmp_path / "zb_cheats.py").write_text(CHEATS)
    suite = tmp_path / "cheat.toml"
    text = SMOKE_SUITE.replace(
        'plugins = ["zb_outside_plugin"]', 'plugins = ["zb_outside_plugin", "zb_cheats"]'
    )
    text = text.replace(
        '[attacks.sign]\nplugin = "outside-sign"',
        '[attacks.sign]\nplugin = "outside-sign"\n\n[attacks.big]\nplugin = "cheat-budget"\n\n'
        '[attacks.wide]\nplugin = "cheat-range"',
    )
    suite.write_text(text)
    workdir, out = tmp_path / "wd", tmp_path / "lb"
    env = {**os.environ, "PYTHONPATH": str(OUTSIDE)}
    args = ["run", str(suite), "--workdir", str(workdir), "--out", str(out), "--quiet"]
    done = subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", *args, "--defenses", "none", "--tasks", "cls"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: 2 cell(s) failed")
    assert "attack plugin 'cheat-budget' broke its budget" in done.stderr
    assert "attack plugin 'cheat-range' returned pixels in" in done.stderr
    board = (out / "smoke.md").read_text()
    summary, rest = board.split("## Threat models")
    assert "| none      | **100.00** | **100.00** (2 failed) | 2 failed  |" in summary
    assert "Cells: 12 — 1 with results, 2 failed, 9 pending (no result yet)." in summary
    table = rest.split("### cls: RA at ε 16/255")[1].split("##")[0]
    assert "| sign " in table and "| big     | wide    |" in table and "| failed  | failed  |" in table
    assert "| big      | cheat-budget | semi-black-box | 16/255 |" in board  # the legend names its plugin
    assert "- at stage `adversarial`: attack plugin 'cheat-budget' broke its budget" in board
    from zepad_bench.store import ResultStore

    rows = ResultStore(workdir).rows()
    assert sorted(r["status"] for r in rows) == ["failed", "failed", "ok"]
    assert all(r["metrics"] == {} for r in rows if r["status"] == "failed")  # nothing of them is ranked
