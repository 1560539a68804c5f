"""Where cells run: here (with rich progress), or on a Slurm cluster through submitit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zepad_bench.errors import CellFailed

if TYPE_CHECKING:
    from zepad_bench.stages import ForceSpec


def run_local(
    suite,
    workdir: str,
    device: str | None,
    force: bool | str | Sequence[str],
    quiet: bool = False,
    partial: bool = False,
    started: float | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the suite's pending cells in this process with progress bars; returns their rows and one
    line per failed cell (stored as failed with its reason; the others go on). The run is logged with its
    wall time since ``started`` (a ``time.perf_counter()`` value; default: now, after loading)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zepad_bench.machine import machine_info, now
    from zepad_bench.runner import Runner
    from zepad_bench.stages import STAGE_KINDS

    console = Console(stderr=True, quiet=quiet, log_path=False)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet,
    )
    runner = Runner(
        suite,
        suite.registry,
        workdir,
        device,
        force,
        progress=progress,
        log=lambda message: console.log(message),
    )
    cells = suite.cells()
    pending = runner.pending(cells)
    console.print(
        f"suite [bold]{suite.name}[/bold]: {len(cells)} cells, {len(cells) - len(pending)} already done, "
        f"device {runner.device}, workdir {workdir}"
    )
    rows, failed, nan = [], [], float("nan")
    start = time.perf_counter() if started is None else started
    with progress:
        overall = progress.add_task("cells", total=len(pending))
        for cell in pending:
            try:
                rows.append(runner.run_cell(cell))
            except CellFailed as exc:
                runner.store_failed(cell, exc)
                failed.append(f"{cell.label()}: {exc}")
                progress.console.print(f"cell failed: {failed[-1]}", markup=False, highlight=False)
                if quiet:
                    click.echo(f"cell failed: {failed[-1]}", err=True)
            else:
                m = rows[-1]["metrics"]
                ba, ra = (_shown(m.get(name, nan)) for name in ("BA", "RA"))
                console.log(f"cell      {cell.label()}  BA {ba}  RA {ra}")
            progress.advance(overall)
    note = "forced" if runner.force else "cold: no cell stored" if len(pending) == len(cells) else "warm"
    if rows:  # stages may be shared with other suites in the same work directory: say how many were
        note += f"; stages {sum(runner.computed.values())} computed, {sum(runner.reused.values())} reused"
    runner.store.log_run(
        {
            "suite": suite.name,
            "finished": now(),
            "seconds": time.perf_counter() - start,
            "computed": len(rows),
            "reused": len(cells) - len(pending),
            "failed": len(failed),
            "note": note + ("; partial grid" if partial else ""),
            "machine": machine_info(runner.device),
        }
    )
    summary = ", ".join(
        f"{stage} {runner.computed[stage]} computed / {runner.reused[stage]} reused"
        for stage in STAGE_KINDS
        if stage != "task"
    )
    console.print(f"stages: {summary}")
    return rows, failed


PHASES = ("encoder", "attack", "defense", "cell")
WAVES = (("encoder",), ("attack", "defense"), ("cell",))
"""Slurm waves, in dependency order: every distinct pending encoder (pretraining) is one job; then
every attack fit and defense tuning (they read only encoders and data); then the cells, in chunks.
Stage locks make any overlap harmless."""


def slurm_plan(runner, cells: list) -> dict[str, list]:
    """The work of each phase: encoder ids, or indices into ``cells`` (one cell per distinct stage)."""
    pending = runner.pending(cells)
    plan: dict[str, dict[str, Any]] = {phase: {} for phase in PHASES[:-1]}
    for cell in pending:
        for stage in runner.graph.task(cell).closure():
            if stage.kind not in plan:
                continue
            if runner.cache.has(stage.kind, stage.key) and not runner.force.hits(stage):
                continue
            plan[stage.kind].setdefault(
                stage.key, stage.args if stage.kind == "encoder" else cells.index(cell)
            )
    return {
        **{phase: list(work.values()) for phase, work in plan.items()},
        "cell": [cells.index(c) for c in pending],
    }


def _job(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force: ForceSpec,
    since: str,
    phase: str,
    items: list,
) -> list[str]:
    """Slurm job body: load the suite anew and make ``phase``'s stage for each of ``items``; returns one
    line per failed cell."""
    from zepad_bench.loading import load_with_axes
    from zepad_bench.runner import Runner

    suite = load_with_axes(suite_path, axes)
    runner = Runner(suite, suite.registry, workdir, device, force, since=since)
    cells = suite.cells()
    failed = []
    make = {"attack": runner.attack, "defense": runner.defense, "cell": runner.run_cell}
    for item in items:
        try:
            if phase == "encoder":
                runner.encoder(*item)
            else:
                make[phase](cells[item])
        except CellFailed as exc:
            if phase == "cell":
                runner.store_failed(cells[item], exc)
            failed.append(f"{cells[item].label()}: {exc}")
    return failed


def run_slurm(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force: bool | str | Sequence[str],
    options: dict[str, Any],
    cluster: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Fan out through submitit in :data:`WAVES`: encoders, then attack fits and defense tunings, then cells.

    The workdir must be on a filesystem shared by the nodes; stages meet in its content-addressed
    cache (atomic writes, one lock per stage key), so no stage is computed twice, and forced stages
    are recomputed once for the whole run. ``cluster="local"`` runs the same jobs as local
    processes (submitit's local executor), which is how the tests exercise this path.
    """
    import submitit
    from rich.console import Console

    from zepad_bench.loading import load_with_axes
    from zepad_bench.runner import Runner
    from zepad_bench.stages import ForceSpec

    console = Console(stderr=True)
    suite = load_with_axes(suite_path, axes)
    spec = ForceSpec.parse(force)
    runner = Runner(suite, suite.registry, workdir, device, spec)
    cells = suite.cells()
    plan = slurm_plan(runner, cells)
    executor = submitit.AutoExecutor(folder=Path(workdir) / "slurm", cluster=cluster)
    executor.update_parameters(name=f"zepad-{suite.name}", **options)
    failed: list[str] = []
    for wave in WAVES:
        jobs = []
        for phase in wave:
            work, size = plan[phase], 4 if phase == "cell" else 1
            chunks = [work[k : k + size] for k in range(0, len(work), size)]
            args = (str(suite_path), axes, workdir, device, spec, runner.since, phase)
            jobs += [executor.submit(_job, *args, chunk) for chunk in chunks]
            console.print(f"submitted {len(chunks)} {phase} jobs")
        failed += [line for job in jobs for line in job.result()]
    return runner.store.rows(keys=[runner.cell_key(cells[i]) for i in plan["cell"]]), failed


def _shown(value: object) -> str:
    """A metric for the progress log: a number to two decimals, else as it is ("n/a")."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)
