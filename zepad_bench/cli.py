"""The ``zepad-bench`` command line (heavy imports happen inside commands, not at start-up)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from zepad_bench.errors import UserError
from zepad_bench.zoo import pretrain_command

AXIS_OPTIONS = (
    ("victims", "encoder ids"),
    ("scenarios", "scenarios (semi-black-box, white-box, defense-aware, adaptive)"),
    ("attacks", "attack ids"),
    ("defenses", "defense ids"),
    ("tuning", "tuning dataset ids (D_f)"),
    ("tasks", "task ids"),
)


WORKDIR_OPTION = click.option(
    "--workdir",
    default=".zepad-bench",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Artifact cache and results store.",
)
OUT_OPTION = click.option(
    "--out",
    "out_dir",
    default="leaderboard",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the leaderboard (.md/.csv/.json) is published.",
)


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _axis_options(func):
    for axis, what in reversed(AXIS_OPTIONS):
        func = click.option(
            f"--{axis}", metavar="ID,…", help=f"Replace the grid's {axis} axis by these {what}."
        )(func)
    return func


def _load(suite_path: str, axes: dict[str, str | None]):
    from zepad_bench.registry import load_registry
    from zepad_bench.suite import load_suite

    suite = load_suite(suite_path, load_registry())
    return suite.with_axes(**{k: _split(v) for k, v in axes.items()})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zepad-bench")
def cli() -> None:
    """Benchmark downstream-agnostic adversarial examples (DAEs) and defenses for SSL encoders.

    \b
    First run (offline, CPU, a few minutes):
        zepad-bench run suites/quickstart.toml
    Then:
        zepad-bench leaderboard suites/quickstart.toml    # re-render the table
        zepad-bench list attacks                          # registered plugins
        zepad-bench validate suites/*.toml                # check suites without running
    """


@cli.command()
@click.argument("suite_path", metavar="SUITE", type=click.Path(dir_okay=False))
@_axis_options
@WORKDIR_OPTION
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Override the suite's device (default: the suite's, usually auto).",
)
@click.option("--force", is_flag=True, help="Recompute every stage and cell, ignoring cached results.")
@OUT_OPTION
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm"]),
    default="local",
    show_default=True,
    help="Run cells here, or fan out to a Slurm cluster through submitit.",
)
@click.option("--slurm-partition", default=None, help="Slurm partition (with --executor slurm).")
@click.option("--slurm-gpus", default=0, show_default=True, type=int, help="GPUs per Slurm job.")
@click.option("--slurm-timeout", default=240, show_default=True, type=int, help="Minutes per Slurm job.")
@click.option("--slurm-jobs", default=8, show_default=True, type=int, help="Most Slurm jobs running at once.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(
    suite_path,
    workdir,
    device,
    force,
    out_dir,
    executor,
    slurm_partition,
    slurm_gpus,
    slurm_timeout,
    slurm_jobs,
    quiet,
    **axes,
):
    """Run SUITE's grid of cells (cached, resumable) and publish its leaderboard.

    Every stage (encoder, attack fit, defense tuning, attacked images, features) is cached in
    WORKDIR under the hash of its configuration and inputs: an attack is fitted once per surrogate
    and reused by every defense and task, a defense is tuned once and reused by every task.
    Finished cells are skipped; an interrupted run resumes where it stopped.
    """
    from zepad_bench.executors import run_local, run_slurm

    suite = _load(suite_path, axes)
    if executor == "slurm":
        options = {
            "slurm_partition": slurm_partition,
            "gpus_per_node": slurm_gpus or None,
            "timeout_min": slurm_timeout,
            "slurm_array_parallelism": slurm_jobs,
        }
        rows = run_slurm(suite_path, axes, workdir, device, force, {k: v for k, v in options.items() if v})
    else:
        rows = run_local(suite, workdir, device, force, quiet)
    _publish(suite, workdir, out_dir, rows_of_run=rows)


def _publish(suite, workdir: str, out_dir: str, rows_of_run=None, reference: bool = False) -> None:
    from rich.console import Console

    from zepad_bench.leaderboard import main_table, publish, results_frame
    from zepad_bench.plots import confidence_figure
    from zepad_bench.runner import Runner

    runner = Runner(suite, suite.registry, workdir, device="cpu")
    keys = [runner.cell_key(c) for c in suite.cells()]
    rows = runner.store.rows(keys=keys)
    if not rows:
        raise UserError(f"no results stored for suite {suite.name!r} in {workdir}; run it first")
    rows.sort(key=lambda r: keys.index(r["key"]))
    extra = []
    if reference:
        from zepad_bench.reference import reference_section

        extra = reference_section(suite, rows)
    paths = publish(suite.name, rows, out_dir, source=str(suite.path), extra_sections=extra)
    figure = confidence_figure(rows, runner.cache, Path(out_dir) / f"{suite.name}-confidence.png")
    paths += [figure] if figure else []
    console = Console()
    console.print(main_table(results_frame(rows)).to_markdown(index=False))
    for section in extra:
        console.print(section)
    missing = len(keys) - len(rows)
    if missing:
        console.print(f"[yellow]{missing} of {len(keys)} cells have no result yet[/yellow]")
    console.print(f"leaderboard: {', '.join(str(p) for p in paths)}")


@cli.command()
@click.argument("suite_paths", metavar="SUITE...", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(suite_paths):
    """Check suites (syntax, names, types, budgets, references, data paths) without running.

    Every suite is checked; the exit status is 2 if any of them is invalid.
    """
    failed = []
    for path in suite_paths:
        try:
            suite = _load(path, {})
        except UserError as exc:
            if len(suite_paths) == 1:
                raise
            failed.append(path)
            click.echo(f"{path}: error: {exc}", err=True)
            continue
        click.echo(f"{path}: ok ({len(suite.cells())} cells)")
    if failed:
        raise UserError(f"{len(failed)} of {len(suite_paths)} suites are invalid")


@cli.command()
@click.argument("suite_path", metavar="SUITE", type=click.Path(dir_okay=False))
@_axis_options
@WORKDIR_OPTION
@OUT_OPTION
@click.option("--reference", is_flag=True, help="Print the paper's numbers beside ours, with the difference.")
def leaderboard(suite_path, workdir, out_dir, reference, **axes):
    """Render SUITE's leaderboard from the results store (no computation)."""
    _publish(_load(suite_path, axes), workdir, out_dir, reference=reference)


@cli.command("list")
@click.argument(
    "kind", required=False, type=click.Choice(["attacks", "defenses", "encoders", "datasets", "tasks"])
)
def list_plugins(kind):
    """Show registered plugins (KIND: attacks, defenses, encoders, datasets, tasks) with their provider."""
    from zepad_bench.registry import KINDS, load_registry

    registry = load_registry()
    for k in [kind] if kind else KINDS:
        click.echo(f"{k}:")
        for name, cls in sorted(registry.kind(k).items()):
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            click.echo(f"  {name:<16} {str(registry.provider(k, name)):<24} {doc}")
            extra = getattr(cls, "methods", None)
            if extra:
                click.echo(f"  {'':<16} methods: {', '.join(extra)}")


cli.add_command(pretrain_command)


def main() -> None:
    """Entry point: user errors print one line (no traceback) and exit 2."""
    try:
        cli.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(
            "interrupted: finished cells and stages are saved; run the same command again to resume", err=True
        )
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
