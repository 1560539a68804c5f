"""The ``zepad-bench`` command line (heavy imports happen inside commands, not at start-up)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from zepad_bench.errors import Missing, UserError
from zepad_bench.loading import load_with_axes
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


_WARNED: set[str] = set()


def _warn_broken(broken) -> None:
    """One line on stderr per installed plugin that could not load (once per process); work goes on."""
    for failure in map(str, broken):
        if failure not in _WARNED:
            _WARNED.add(failure)
            click.echo(f"warning: {failure}; skipped, everything else works", err=True)


def _registry():
    """Every installed plugin; the ones that cannot load are named on stderr and skipped."""
    from zepad_bench.registry import load_registry

    registry = load_registry()
    _warn_broken(registry.broken)
    return registry


def _load(suite_path: str, axes: dict, download: bool = False):
    """The validated suite (with CLI axis overrides) over every installed plugin."""
    return load_with_axes(suite_path, axes, download, _registry())


def _axis_options(func):
    for axis, what in reversed(AXIS_OPTIONS):
        func = click.option(
            f"--{axis}", metavar="ID,…", help=f"Replace the grid's {axis} axis by these {what}."
        )(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zepad-bench")
def cli() -> None:
    """Benchmark downstream-agnostic adversarial examples (DAEs) and defenses for SSL encoders.

    \b
    First run (offline, CPU, about nine minutes on 2 cores; seconds when cached):
        zepad-bench run suites/quickstart.toml
    Then:
        zepad-bench leaderboard suites/quickstart.toml    # re-render the table
        zepad-bench list attacks --params                 # registered plugins and their parameters
        zepad-bench validate suites/*.toml                # check suites without running
        zepad-bench run SUITE --force attack:uap          # recompute one plugin's stages and their readers
        zepad-bench check-plugin my-attack                # conformance kit for a plugin (tiny data)
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
@click.option(
    "--force",
    multiple=True,
    is_flag=False,
    flag_value="all",
    default=(),
    metavar="[TARGET]",
    help="Recompute cached stages: plain --force = all; or a stage (attack, defense, encoder, …), a plugin "
    "(uap) or stage:plugin (attack:uap), repeatable; stages downstream of a forced one are recomputed too.",
)
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
@click.option(
    "--download", is_flag=True, help="First fetch and verify what the suite needs (datasets, encoders)."
)
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
    download,
    **axes,
):
    """Run SUITE's grid of cells (cached, resumable) and publish its leaderboard.

    Every stage (encoder, attack fit, defense tuning, attacked images, features) is cached in
    WORKDIR under the hash of its configuration and inputs: an attack is fitted once per surrogate
    and reused by every defense and task, a defense is tuned once and reused by every task.
    Finished cells are skipped; an interrupted run resumes where it stopped.
    """
    started = time.perf_counter()  # the run's logged wall time includes loading the suite
    from zepad_bench.download import fetch_all
    from zepad_bench.executors import run_local, run_slurm
    from zepad_bench.stages import ForceSpec

    suite = _load(suite_path, axes, download)
    full = _load(suite_path, {}, download)
    ForceSpec.parse(force).check_known(suite.registry)
    fetch_all(suite)
    if executor == "slurm":
        options = {
            "slurm_partition": slurm_partition,
            "gpus_per_node": slurm_gpus or None,
            "timeout_min": slurm_timeout,
            "slurm_array_parallelism": slurm_jobs,
        }
        rows, failed = run_slurm(
            suite_path, axes, workdir, device, force, {k: v for k, v in options.items() if v}
        )
    else:
        partial = suite.grid != full.grid
        rows, failed = run_local(suite, workdir, device, force, quiet, partial=partial, started=started)
    if rows or not failed:
        # the board of the whole suite: a narrowed run adds its cells and drops no stored result
        _publish(full, workdir, out_dir)
    if failed:
        raise UserError(f"{len(failed)} cell(s) failed (nothing stored for them); first: {failed[0]}")


def _publish(suite, workdir: str, out_dir: str, reference: bool = False, readme: str | None = None) -> None:
    from rich.console import Console

    from zepad_bench.leaderboard import publish, readme_block, replace_block, results_frame, sections
    from zepad_bench.plots import confidence_figure, detection_figure
    from zepad_bench.robustness import robustness_figure
    from zepad_bench.runner import Runner

    runner = Runner(suite, suite.registry, workdir, device="cpu")
    keys = [runner.cell_key(c) for c in suite.cells()]
    rows = runner.store.rows(keys=keys)
    if not rows:
        raise UserError(f"no results stored for suite {suite.name!r} in {workdir}; run it first")
    rows.sort(key=lambda r: keys.index(r["key"]))
    whole = [r for r in runner.store.runs(suite.name) if "partial" not in r["note"]]
    runs = [
        latest[-1]
        for kind in ("cold", "warm")
        if (latest := [r for r in whole if r["note"].split(";")[0].split(":")[0] == kind])
    ]
    extra = []
    if reference:
        from zepad_bench.reference import reference_section

        extra = reference_section(suite, rows)
    description = suite.raw.get("suite", {}).get("description", "")
    source = _display_path(suite.path)
    paths = publish(suite.name, rows, out_dir, source, extra, description, runs)
    out = Path(out_dir)
    figures = [
        confidence_figure(rows, runner.cache, out / f"{suite.name}-confidence.png"),
        detection_figure(rows, runner.cache, out / f"{suite.name}-detection.png"),
        robustness_figure(results_frame(rows), out / f"{suite.name}-ra-vs-eps.png"),
    ]
    paths += [f for f in figures if f]
    if readme:
        text = Path(readme).read_text(encoding="utf-8")
        try:
            text = replace_block(text, suite.name, readme_block(suite.name, rows, source, runs))
        except ValueError as exc:
            raise UserError(f"{readme}: {exc}") from None
        Path(readme).write_text(text, encoding="utf-8")
        paths.append(Path(readme))
    console = Console()
    body, _ = sections([r for r in rows if r["task"] == rows[0]["task"]])
    console.print("\n".join(body), markup=False, highlight=False)
    for section in extra:
        console.print(section)
    missing = len(keys) - len(rows)
    if missing:
        console.print(f"[yellow]{missing} of {len(keys)} cells have no result yet[/yellow]")
    console.print(f"leaderboard: {', '.join(str(p) for p in paths)}")


def _display_path(path: Path) -> str:
    """The suite's path relative to the current directory when it lies below it (as users type it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@cli.command()
@click.argument("suite_paths", metavar="SUITE...", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(suite_paths):
    """Check suites (syntax, names, types, budgets, references, data paths) without running.

    Every suite is checked. A valid suite prints "ok"; one that only lacks data, checkpoints or optional
    packages on this machine lists every missing item (each line says how to get it, e.g. with
    `zepad-bench run SUITE --download`); a broken suite prints its first error.

    \b
    Exit status: 0 all valid and complete
                 3 none broken, but some lack data, checkpoints or packages here
                 2 at least one suite is broken (or cannot be read)
    """
    counts = {"ok": 0, "missing": 0, "error": 0}
    for path in suite_paths:
        try:
            suite = _load(path, {})
        except Missing as exc:
            counts["missing"] += 1
            click.echo(str(exc), err=True)
            continue
        except UserError as exc:
            counts["error"] += 1
            text = str(exc)
            click.echo(f"{path}: error: {text.removeprefix(f'{path}: ')}", err=True)
            continue
        counts["ok"] += 1
        click.echo(f"{path}: ok ({len(suite.cells())} cells)")
    total, lacking = len(suite_paths), "lack data, checkpoints or packages on this machine (lines above)"
    if counts["error"]:
        also = f"; {counts['missing']} {lacking}" if counts["missing"] else ""
        raise UserError(f"{counts['error']} of {total} suites are invalid{also}")
    if counts["missing"]:
        raise Missing(f"{counts['missing']} of {total} suites are valid but {lacking}")


@cli.command()
@click.argument("suite_path", metavar="SUITE", type=click.Path(dir_okay=False))
@_axis_options
@WORKDIR_OPTION
@OUT_OPTION
@click.option("--reference", is_flag=True, help="Print the paper's numbers beside ours, with the difference.")
@click.option(
    "--readme",
    type=click.Path(dir_okay=False, exists=True),
    help="Also rewrite the block between <!-- leaderboard:NAME --> and <!-- /leaderboard:NAME --> in this "
    "markdown file (e.g. README.md) from the same results.",
)
def leaderboard(suite_path, workdir, out_dir, reference, readme, **axes):
    """Render SUITE's leaderboard from the results store (no computation).

    Entries are mean ± std over the suite's seeds; one section per task with its own metrics.
    """
    _publish(_load(suite_path, axes), workdir, out_dir, reference=reference, readme=readme)


KINDS = ("attacks", "defenses", "encoders", "datasets", "tasks")


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option("--params", "with_params", is_flag=True, help="Also show each plugin's declared parameters.")
def list_plugins(kind, with_params):
    """Show registered plugins (KIND: attacks, defenses, encoders, datasets, tasks) with their provider."""
    from zepad_bench.listing import plugin_manifest

    manifest = plugin_manifest()
    _warn_broken(manifest.get("broken", ()))
    for k in [kind] if kind else KINDS:
        click.echo(f"{k}:")
        for name, entry in manifest[k].items():
            doc = entry["doc"].splitlines()[0] if entry["doc"] else ""
            click.echo(f"  {name:<16} {entry['provider']:<24} {doc}")
            if entry["methods"]:
                click.echo(f"  {'':<16} methods: {', '.join(entry['methods'])}")
            for line in entry["params"] if with_params else ():
                click.echo(f"  {'':<16}   {line}")


@cli.command()
@click.argument("plugin", metavar="PLUGIN")
def show(plugin):
    """Describe PLUGIN (a name, or KIND:NAME when two kinds share it): provider, doc and parameters."""
    from zepad_bench.listing import plugin_manifest

    manifest = plugin_manifest()
    _warn_broken(manifest.get("broken", ()))
    kind, _, name = plugin.rpartition(":")
    found = [k for k in ([kind] if kind in KINDS else KINDS) if name in manifest[k]]
    if not found:
        raise UserError(f"no plugin named {name!r}; see `zepad-bench list`")
    for k in found:
        entry = manifest[k][name]
        click.echo(f"{name} ({k[:-1]}, {entry['provider']})")
        click.echo("\n".join(f"  {line}" for line in entry["doc"].splitlines()))
        click.echo("parameters:" if entry["params"] else "parameters: none")
        for line in entry["params"]:
            click.echo(f"  {line}")


@cli.command("check-plugin")
@click.argument("plugin", metavar="NAME")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A plugin parameter (a TOML value); repeatable. A bad value is a usage error, not a failed check.",
)
@click.option(
    "--suite",
    "suite_path",
    metavar="SUITE",
    type=click.Path(dir_okay=False, exists=True),
    help="Also load SUITE's `[suite] plugins` modules (looked up beside the suite file first).",
)
def check_plugin_command(plugin, params, suite_path):
    """Run the conformance kit on NAME (an attack, defense or backbone; KIND:NAME if ambiguous) on tiny data.

    \b
    Attacks: label-free fit, budget, [0, 1] range, non-zero effect, determinism, state round trip.
    Defenses: fit, branch encoders and heads survive the cache, head and fusion shapes.
    Backbones: out_dim, gradients to the input, rebuild from the cached state.
    Every check runs and is reported, whatever failed before it. Exit status 2 when one fails.
    """
    import tomllib

    from zepad_bench.nn.backbones import known_archs
    from zepad_bench.suite.plugin_modules import suite_registry
    from zepad_bench.testing import check_plugin

    registry = suite_registry(suite_path, _registry()) if suite_path else _registry()
    kind, _, name = plugin.rpartition(":")
    kinds = [kind] if kind else ["attacks", "defenses", "backbones"]
    found = [k for k in kinds if name in (known_archs() if k == "backbones" else registry.kind(k))]
    if len(found) != 1:
        what = "no attack, defense or backbone" if not found else f"both {' and '.join(found)} have one"
        where = f" (installed or in {suite_path}'s plugins)" if suite_path else ""
        raise UserError(f"check-plugin {plugin!r}: {what} named {name!r}{where}; see `zepad-bench list`")
    values = {}
    for item in params:
        key, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--param {item!r}: expected KEY=VALUE")
        try:
            values[key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip()] = text
    try:
        report = check_plugin(found[0], name, values, registry)
    except (TypeError, ValueError) as exc:
        given = " ".join(f"--param {p}" for p in params) or "no --param"
        raise UserError(
            f"check-plugin {plugin}: bad parameters ({given}): {' '.join(str(exc).split())}"
        ) from None
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise UserError(f"{plugin} does not conform to the plugin contract (see FAIL lines above)")


cli.add_command(pretrain_command)


def main() -> None:
    """Entry point: user errors print one line (no traceback) and exit 2; a valid suite that lacks data
    here prints one line per missing item and exits 3."""
    try:
        cli.main(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Missing as exc:  # a valid suite lacking data here: its lines say how to get each item
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo(
            "interrupted: finished cells and stages are saved; run the same command again to resume", err=True
        )
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
