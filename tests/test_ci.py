"""CI runs the README's test command in a new virtual environment (a fresh machine)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_in_a_fresh_venv():
    ci = (ROOT / ".ci" / "run").read_text()
    command = ci.split("# The README's test command:\n", 1)[1].strip().splitlines()[0]
    assert command in (ROOT / "README.md").read_text()
    assert re.search(r"python3 -m venv \"\$venv\"", ci) and '. "$venv/bin/activate"' in ci
    assert ci.index("activate") < ci.index(command)  # the install happens inside the new venv


def test_ci_starts_the_slurm_cluster_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in ci.splitlines() if not line.lstrip().startswith("#")]
    assert "scripts/slurm-cluster.sh" in lines
    assert lines.index("scripts/slurm-cluster.sh") < lines.index(
        'python3 -m pip install -e ".[test]" && python3 -m pytest'
    )
