"""Slurm resources per phase, from the suite's [slurm] table and the --slurm-* options, checked up front."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from zepad_bench.cli import cli
from zepad_bench.errors import UserError
from zepad_bench.slurm_resources import Resources, cli_resources, phase_resources, suite_resources


def test_options_override_the_suite_and_a_phase_overrides_every_phase():
    suite = suite_resources(
        {"cpus": 4, "timeout_min": 60, "defense": {"gpus": 1, "timeout_min": 600}, "cell": {"cpus": 2}},
        "slurm",
    )
    options = cli_resources({"cpus": ("cell=8", "3"), "mem_gb": ("16",), "partition": ("defense=gpu",)})
    got = phase_resources(suite, options)
    assert got["encoder"] == got["attack"] == Resources(cpus=3, mem_gb=16.0, timeout_min=60)
    assert got["defense"] == Resources(cpus=3, mem_gb=16.0, gpus=1, timeout_min=600, partition="gpu")
    assert got["cell"] == Resources(cpus=8, mem_gb=16.0, timeout_min=60)
    assert got["defense"].submitit() == {
        "cpus_per_task": 3,
        "mem_gb": 16.0,
        "gpus_per_node": 1,
        "timeout_min": 600,
        "slurm_partition": "gpu",
        "tasks_per_node": 1,
    }
    assert phase_resources()["cell"].submitit() == {
        "cpus_per_task": 1,
        "timeout_min": 240,
        "tasks_per_node": 1,
    }


@pytest.mark.parametrize(
    "table, message",
    [
        ({"cpus": 0}, "slurm.cpus: expected an integer ≥ 1, got 0"),
        ({"gpus": -1}, "slurm.gpus: expected an integer ≥ 0, got -1"),
        ({"defense": {"mem_gb": "lots"}}, "slurm.defense.mem_gb: expected a number of GB > 0, got 'lots'"),
        ({"cpu": 2}, "slurm.cpu: unknown key; expected one of cpus, mem_gb, gpus, timeout_min, partition,"),
        ({"tuning": {"gpus": 1}}, "slurm.tuning: unknown key"),
        ({"cell": {"threads": 2}}, "slurm.cell.threads: unknown key"),
        ({"cell": 2}, "slurm.cell: expected a table"),
    ],
)
def test_a_bad_suite_table_is_one_line_naming_the_key(table, message):
    with pytest.raises(UserError) as info:
        suite_resources(table, "slurm")
    assert str(info.value).startswith(message)


def test_a_bad_option_is_one_line_and_a_bad_suite_table_fails_validation(smoke_suite):
    runner = CliRunner()
    args = ["run", str(smoke_suite), "--executor", "slurm"]
    for option, text, message in [
        ("--slurm-cpus", "attack=0", "--slurm-cpus 'attack=0': expected an integer ≥ 1, got 0"),
        ("--slurm-gpus", "tune=1", "--slurm-gpus 'tune=1': unknown phase 'tune'; expected one of encoder,"),
        ("--slurm-timeout", "soon", "--slurm-timeout 'soon': expected an integer number of minutes ≥ 1"),
    ]:
        result = runner.invoke(cli, [*args, option, text])
        assert isinstance(result.exception, UserError) and str(result.exception).startswith(message)
    smoke_suite.write_text(smoke_suite.read_text() + "\n[slurm.defense]\ngpus = 1.5\n")
    result = runner.invoke(cli, ["validate", str(smoke_suite)])
    assert result.exit_code != 0
    assert f"{smoke_suite}: error: slurm.defense.gpus: expected an integer ≥ 0, got 1.5" in result.output
