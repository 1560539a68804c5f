"""The ``zepad-bench`` command line (heavy imports happen inside commands, not at start-up)."""

from __future__ import annotations

import signal
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
    default=None,
    type=click.Path(file_okay=False),
    help="Folder for the board (<suite>.md, .csv, .json, .html and figures); default: WORKDIR/leaderboard. "
    "`--out leaderboard` in a clone of the project publishes into its tracked boards.",
)


def _slurm_resource_options(func):
    for name, metavar, what in reversed(
        (
            ("partition", "NAME", "Slurm partition"),
            ("cpus", "N", "CPUs per job (default 1); torch uses as many threads"),
            ("mem", "GB", "memory per job (default: the cluster's)"),
            ("gpus", "N", "GPUs per job (default 0)"),
            ("timeout", "MIN", "time limit per job in minutes (default 240)"),
        )
    ):
        func = click.option(
            f"--slurm-{name}",
            f"slurm_{'mem_gb' if name == 'mem' else 'timeout_min' if name == 'timeout' else name}",
            multiple=True,
            metavar=f"[PHASE=]{metavar}",
            help=f"{what[0].upper()}{what[1:]}; PHASE=… for one phase only; repeatable.",
        )(func)
    return func


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


def _load(suite_path: str, axes: dict, download: bool = False, checks: bool = True):
    """The validated suite (with CLI axis overrides) over every installed plugin; ``checks=False``: no
    plugin's data or files are checked."""
    return load_with_axes(suite_path, axes, download, _registry(), checks)


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
    First run (offline, CPU; seconds when cached; README.md gives the published run's time):
        zepad-bench run suites/quickstart.toml
    Then:
        zepad-bench leaderboard suites/quickstart.toml    # re-render the board (.zepad-bench/leaderboard/)
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
    help="Run cells here, or as Slurm jobs through submitit (the workdir must be shared by the nodes).",
)
@_slurm_resource_options
@click.option(
    "--slurm-jobs",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most Slurm jobs of this run queued or running at once.",
)
@click.option(
    "--slurm-poll",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between asking Slurm for job states (sacct, else squeue; each call times out).",
)
@click.option(
    "--on-failure",
    type=click.Choice(["continue", "cancel"]),
    default="continue",
    show_default=True,
    help="With --executor slurm, when a job fails: let the other jobs finish, or cancel them. Either way "
    "the failed cells are stored as failed, the board is published and the exit status is 2.",
)
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
    slurm_jobs,
    slurm_poll,
    on_failure,
    quiet,
    download,
    **options,
):
    """Run SUITE's grid of cells (cached, resumable) and publish its leaderboard.

    Every stage (encoder, attack fit, defense tuning, attacked images, features) is cached in
    WORKDIR under the hash of its configuration and inputs: an attack is fitted once per surrogate
    and reused by every defense and task, a defense is tuned once and reused by every task.
    Finished cells are skipped; an interrupted run resumes where it stopped. A failed cell is stored
    as failed with its reason and runs again next time.

    \b
    The board (<suite>.md with its .csv, .json data, .html page and figures) goes to
    WORKDIR/leaderboard unless --out says otherwise; the terminal gets its summary and the board's path.

    \b
    Slurm resources per job, for every phase or one (encoder, attack, defense, cell), e.g.
        --slurm-cpus 4 --slurm-gpus defense=1 --slurm-timeout defense=600 --slurm-mem 16
    or in the suite: [slurm] cpus = 4 … and [slurm.defense] gpus = 1 … (the options win).
    torch in a job uses the job's CPUs.
    """
    started = time.perf_counter()  # the run's logged wall time includes loading the suite
    from zepad_bench.download import fetch_all
    from zepad_bench.executors import run_local, run_slurm
    from zepad_bench.stages import ForceSpec

    axes = {axis: options.pop(axis) for axis, _ in AXIS_OPTIONS}
    suite = _load(suite_path, axes, download)
    full = _load(suite_path, {}, download)
    ForceSpec.parse(force).check_known(suite.registry)
    partial = suite.grid != full.grid
    if executor == "slurm":
        from zepad_bench.slurm_resources import cli_resources, phase_resources, suite_resources

        resources = phase_resources(
            suite_resources(suite.raw.get("slurm", {}), "slurm"),
            cli_resources({name[len("slurm_") :]: values for name, values in options.items()}),
        )
    fetch_all(suite)
    if executor == "slurm":
        rows, failed = run_slurm(
            suite_path,
            axes,
            workdir,
            device,
            force,
            resources,
            slurm_jobs,
            on_failure,
            slurm_poll,
            partial,
            started,
        )
    else:
        rows, failed = run_local(suite, workdir, device, force, quiet, partial=partial, started=started)
    # the board of the whole suite, failed cells included: a narrowed run adds its cells and drops no
    # stored result
    _publish(full, workdir, out_dir)
    if failed:
        raise UserError(f"{len(failed)} cell(s) failed (on the board as failed); first: {failed[0]}")


def _publish(
    suite, workdir: str, out_dir: str | None, reference: bool = False, readme: str | None = None
) -> None:
    """Gather the suite's board from the store and write it (default: WORKDIR/leaderboard)."""
    from zepad_bench.reports.collect import board_from_store

    board = board_from_store(suite, workdir, reference)
    _write(board, Path(out_dir) if out_dir else Path(workdir) / "leaderboard", readme)


def _write(board, out: Path, readme: str | None, data: bool = True) -> None:
    from rich.console import Console

    from zepad_bench.reports.files import publish
    from zepad_bench.reports.generated import update_documents
    from zepad_bench.reports.terminal import print_summary

    paths = publish(board, out, data)
    if readme:  # `zepad-bench docs README.md --root <its folder>`: from the published data beside it
        update_documents(Path(readme).resolve().parent, [Path(readme)])
        paths.append(Path(readme).resolve())
    console = Console()
    for line in board.reference:
        console.print(line, markup=False, highlight=False)
    print_summary(board, paths, console)


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
@click.argument("source", metavar="SUITE|BOARD.json", type=click.Path(dir_okay=False, exists=True))
@_axis_options
@WORKDIR_OPTION
@OUT_OPTION
@click.option(
    "--reference",
    is_flag=True,
    help="Print the paper's numbers beside ours, each row naming its protocol (needs SUITE; without its "
    "data or results: the paper's numbers alone).",
)
@click.option(
    "--readme",
    type=click.Path(dir_okay=False, exists=True),
    help="Also rewrite the generated blocks of this markdown file (e.g. README.md) from the published data "
    "beside it, as `zepad-bench docs FILE` does.",
)
def leaderboard(source, workdir, out_dir, reference, readme, **axes):
    """Render a board (no computation): from SUITE's results in WORKDIR, or from a published BOARD.json.

    \b
    From a suite, the board holds every cell of its grid: the newest stored row of each, failed
    cells with their reason, cells without a result as pending, and rows whose plugin code or
    inputs changed since they were stored marked †. From BOARD.json (what `run` writes beside the
    board) it renders that data alone, without torch or plugins; default --out: the JSON's folder.
    With --reference and no board to render (no data to key the results, or none stored), the
    paper's numbers for the suite's cells print alone.
    \b
    Regenerate the project's published board, then every figure of its documents (in a clone):
        zepad-bench run suites/quickstart.toml --out leaderboard
        zepad-bench docs
    """
    if Path(source).suffix == ".json":
        from zepad_bench.reports.data import read_board

        if reference or any(axes.values()):
            raise UserError(f"{source}: --reference and axis options need the suite file, not its board")
        out = Path(out_dir) if out_dir else Path(source).parent
        _write(read_board(source), out, readme, data=out.resolve() != Path(source).resolve().parent)
        return
    try:
        _publish(_load(source, axes), workdir, out_dir, reference=reference, readme=readme)
    except UserError as exc:
        if not reference:
            raise
        from zepad_bench.reference import reference_section

        click.echo(f"no board: {exc}\nthe paper's numbers for this suite's cells:")
        click.echo("\n".join(reference_section(_load(source, axes, checks=False), [])))


@cli.command()
@click.argument("files", metavar="[FILE.md]...", nargs=-1, type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--root",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False, exists=True),
    help="The project's root: the published data are read below it (leaderboard/*.json, "
    "benchmarks/results/*.json), and its documents are rewritten.",
)
@click.option("--check", is_flag=True, help="Change nothing; exit 2 when a block differs from its data.")
def docs(files, root, check):
    """Regenerate every figure of the project's documents from the published data.

    \b
    A generated block sits between two markers naming it and its sources:
        <!-- generated: NAME (leaderboard/quickstart.json) --> … <!-- /generated: NAME -->
    and is rendered from published boards and benchmark records alone (no torch, no plugins).
    Without FILE.md: README.md, docs/*.md and benchmarks/README.md below --root.
    \b
    After publishing boards (in a clone):
        zepad-bench run suites/quickstart.toml --out leaderboard
        zepad-bench docs            # rewrite every block
        zepad-bench docs --check    # what CI checks: every block is what its data produce
    """
    from zepad_bench.reports.generated import update_documents

    paths = [Path(f) for f in files] or None
    changed = update_documents(root, paths, write=not check)
    listed = "; ".join(f"{path}: {', '.join(names)}" for path, names in changed.items())
    if check and changed:
        raise UserError(f"generated blocks differ from their data ({listed}); run `zepad-bench docs`")
    click.echo(f"rewritten: {listed}" if changed else "every generated block is current")


KINDS = ("attacks", "defenses", "encoders", "datasets", "tasks")


@cli.command("list")
@click.argument("kind", required=False, type=click.Choice(KINDS))
@click.option("--params", "with_params", is_flag=True, help="Also show each plugin's parameters.")
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the parameter reference as markdown (docs/parameters.md: run with ZEPAD_BENCH_PLUGINS= "
    "for the built-ins alone).",
)
def list_plugins(kind, with_params, markdown):
    """Show registered plugins (KIND: attacks, defenses, encoders, datasets, tasks) with their provider.

    Each plugin's line is its description (a `description` class attribute, else its docstring's first
    sentence); --params adds every parameter: type, allowed values or range, default and help.
    """
    from zepad_bench.listing import parameter_reference, plugin_manifest
    from zepad_bench.params import describe_line

    manifest = plugin_manifest()
    _warn_broken(manifest.get("broken", ()))
    kinds = [kind] if kind else list(KINDS)
    if markdown:
        click.echo(parameter_reference({k: manifest[k] for k in kinds}), nl=False)
        return
    for k in kinds:
        click.echo(f"{k}:")
        for name, entry in manifest[k].items():
            click.echo(f"  {name:<16} {entry['provider']:<24} {entry['description']}")
            if entry["methods"]:
                click.echo(f"  {'':<16} methods: {', '.join(entry['methods'])}")
            for param in entry["params"] if with_params else ():
                click.echo(f"  {'':<16}   {describe_line(param)}")


@cli.command()
@click.argument("plugin", metavar="PLUGIN")
def show(plugin):
    """Describe PLUGIN (a name, or KIND:NAME when two kinds share it): provider, doc and parameters."""
    from zepad_bench.listing import plugin_manifest
    from zepad_bench.params import describe_line, did_you_mean

    manifest = plugin_manifest()
    _warn_broken(manifest.get("broken", ()))
    kind, _, name = plugin.rpartition(":")
    found = [k for k in ([kind] if kind in KINDS else KINDS) if name in manifest[k]]
    if not found:
        known = sorted({n for k in KINDS for n in manifest[k]})
        raise UserError(f"no plugin named {name!r}{did_you_mean(name, known)}; see `zepad-bench list`")
    for k in found:
        entry = manifest[k][name]
        click.echo(f"{name} ({k[:-1]}, {entry['provider']})")
        click.echo("\n".join(f"  {line}".rstrip() for line in entry["doc"].splitlines()))
        click.echo("parameters:" if entry["params"] else "parameters: none")
        for param in entry["params"]:
            click.echo(f"  {describe_line(param)}")


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

    from zepad_bench.nn.backbones import BUILDERS
    from zepad_bench.suite.plugin_modules import suite_registry
    from zepad_bench.testing import check_plugin

    registry = suite_registry(suite_path, _registry()) if suite_path else _registry()
    kind, _, name = plugin.rpartition(":")
    kinds = [kind] if kind else ["attacks", "defenses", "backbones"]
    archs = {*BUILDERS, *registry.backbones}
    found = [k for k in kinds if name in (archs if k == "backbones" else registry.kind(k))]
    if len(found) != 1:
        from zepad_bench.params import did_you_mean

        known = [n for k in kinds for n in (archs if k == "backbones" else registry.kind(k))]
        what = "no attack, defense or backbone" if not found else f"both {' and '.join(found)} have one"
        hint = did_you_mean(name, known) if not found else ""
        where = f" (installed or in {suite_path}'s plugins)" if suite_path else ""
        raise UserError(
            f"check-plugin {plugin!r}: {what} named {name!r}{where}{hint}; see `zepad-bench list`"
        )
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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: user errors print one line (no traceback) and exit 2; a valid suite that lacks data
    here prints one line per missing item and exits 3. SIGTERM (``kill``, a scheduler's time limit)
    stops a run as Ctrl-C does: finished cells and stages are kept and the run is recorded."""
    signal.signal(signal.SIGTERM, _interrupt)
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
