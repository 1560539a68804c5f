"""CLI: help without torch, clear one-line errors (no traceback, no result changed), run + leaderboard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import OUTSIDE, SMOKE_SUITE

from zepad_bench.cli import cli, main

ROOT = Path(__file__).resolve().parents[1]


def invoke(args, monkeypatch):
    """Run ``main`` (the console script's entry) and capture its exit code and output."""
    monkeypatch.setattr(sys, "argv", ["zepad-bench", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code


def test_help_does_not_import_torch():
    code = (
        "import sys; from zepad_bench.cli import cli; cli.main(['--help'], standalone_mode=False); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "zepad-bench run suites/quickstart.toml" in out.stdout
    assert out.stdout.strip().endswith("False")


@pytest.mark.parametrize("bad", ['eps = "lots"', "[grid\n", 'plugin = "no-such-attack"'])
def test_bad_suite_exits_nonzero_with_one_line(tmp_path, bad):
    suite = tmp_path / "bad.toml"
    text = (
        SMOKE_SUITE.replace('eps = "16/255"', bad)
        if "eps" in bad
        else SMOKE_SUITE + bad
        if bad.startswith("[")
        else SMOKE_SUITE.replace('plugin = "outside-sign"', bad)
    )
    suite.write_text(text)
    workdir = tmp_path / "wd"
    env = {**os.environ, "PYTHONPATH": str(OUTSIDE)}
    out = subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", "run", str(suite), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and str(suite) in out.stderr
    assert not (workdir / "results.sqlite").exists()


def test_run_validate_leaderboard_and_list(smoke_suite, tmp_path):
    runner = CliRunner()
    wd, lb = str(tmp_path / "wd"), str(tmp_path / "lb")
    result = runner.invoke(cli, ["validate", str(smoke_suite)])
    assert result.exit_code == 0 and "4 cells" in result.output
    args = [
        "run",
        str(smoke_suite),
        "--workdir",
        wd,
        "--out",
        lb,
        "--quiet",
        "--defenses",
        "none",
        "--tasks",
        "cls",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "smoke: cls" in result.output and f"board: {tmp_path / 'lb' / 'smoke.md'}" in result.output
    assert "| sign " in (tmp_path / "lb" / "smoke.md").read_text()
    # a narrowed run publishes the whole suite's board: stored results of other cells stay on it
    assert "Cells: 4 — 1 with results, 3 pending (no result yet)." in result.output
    result = runner.invoke(
        cli, ["run", str(smoke_suite), "--workdir", wd, "--out", lb, "--quiet", "--defenses", "none2"]
    )
    assert result.exit_code == 0, result.output
    board = (tmp_path / "lb" / "smoke.md").read_text()
    assert "| none " in board and "| none2 " in board  # the first run's cells were not dropped
    result = runner.invoke(cli, ["leaderboard", str(smoke_suite), "--workdir", wd, "--out", lb])
    assert result.exit_code == 0 and "Cells: 4 — 3 with results, 1 pending (no result yet)." in result.output
    # the board renders again from its JSON alone, the same text (no new computation, no suite)
    again = runner.invoke(
        cli, ["leaderboard", str(tmp_path / "lb" / "smoke.json"), "--out", str(tmp_path / "re")]
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "re" / "smoke.md").read_text() == (tmp_path / "lb" / "smoke.md").read_text()
    result = runner.invoke(cli, ["list", "defenses"])
    assert result.exit_code == 0 and "none" in result.output and "zepad-bench" in result.output


def test_a_run_writes_its_board_under_the_work_directory(smoke_suite, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["run", str(smoke_suite), "--workdir", "wd", "--quiet", "--tasks", "cls"]
    )
    assert result.exit_code == 0, result.output
    board = tmp_path / "wd" / "leaderboard" / "smoke.md"
    assert board.exists() and f"board: {board}" in result.output  # printed absolute
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smoke.toml", "wd"]  # nothing else written here


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the project's git repository")
def test_a_newcomers_run_in_a_clone_leaves_git_status_clean(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    suite = tmp_path / "smoke.toml"
    suite.write_text(SMOKE_SUITE.replace('tasks = ["cls", "cls2"]', 'tasks = ["cls"]'))
    env = {**os.environ, "PYTHONPATH": str(OUTSIDE)}
    # -P: the installed zepad-bench, as the console script runs it (not the clone's folder of sources)
    args = [sys.executable, "-P", "-m", "zepad_bench.cli", "run", str(suite), "--quiet"]
    done = subprocess.run(args, cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    assert status.stdout == ""
    assert (clone / ".zepad-bench" / "leaderboard" / "smoke.md").exists()


def test_leaderboard_without_results_is_a_user_error(smoke_suite, tmp_path, monkeypatch):
    code = invoke(["leaderboard", str(smoke_suite), "--workdir", str(tmp_path / "empty")], monkeypatch)
    assert code == 2


def test_corrupt_checkpoint_is_one_line_and_stores_nothing(tmp_path):
    ckpt = tmp_path / "enc.ckpt"
    ckpt.write_bytes(b"not a checkpoint at all")
    suite = tmp_path / "s.toml"
    suite.write_text(
        SMOKE_SUITE.replace(
            '[encoders.rand]\nplugin = "outside-random"',
            f'[encoders.rand]\nplugin = "solo-learn"\npath = "{ckpt}"\narch = "small-cnn"',
        )
    )
    workdir = tmp_path / "wd"
    env = {**os.environ, "PYTHONPATH": str(OUTSIDE)}
    out = subprocess.run(
        [sys.executable, "-m", "zepad_bench.cli", "run", str(suite), "--workdir", str(workdir), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and str(ckpt) in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    from zepad_bench.store import ResultStore

    assert ResultStore(workdir).rows() == []


def test_validate_reports_every_suite(smoke_suite, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(SMOKE_SUITE.replace('eps = "16/255"', 'eps = "x"'))
    assert invoke(["validate", str(bad), str(smoke_suite)], monkeypatch) == 2
    out, err = capsys.readouterr()
    assert f"{smoke_suite}: ok" in out and f"{bad}: error:" in err and "1 of 2 suites are invalid" in err
