"""Where cells run: here (progress counted in stages, with an ETA), or on a Slurm cluster through
submitit. Both store a failed cell as a failed row, keep everything that finished, and write one
structured run record (``store.RUN_COLUMNS``)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from zepad_bench.errors import CellFailed, UserError

if TYPE_CHECKING:
    from zepad_bench.slurm_resources import Resources


def run_local(
    suite,
    workdir: str,
    device: str | None,
    force: bool | str | Sequence[str],
    quiet: bool = False,
    partial: bool = False,
    started: float | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the suite's pending cells in this process with a progress bar over the run's stages;
    returns their rows and one line per failed cell (stored as failed; the others go on). The run is
    recorded with its wall time since ``started`` (a ``time.perf_counter()`` value; default: now), also
    when it is interrupted (then as part of the grid, with the cells it finished)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zepad_bench.machine import machine_info
    from zepad_bench.progress import EtaColumn, StageProgress
    from zepad_bench.runner import Runner

    start = time.perf_counter() if started is None else started
    console = Console(stderr=True, quiet=quiet, log_path=False)
    runner = Runner(suite, suite.registry, workdir, device, force, log=lambda message: console.log(message))
    cells = suite.cells()
    pending = runner.pending(cells)
    plan = StageProgress.of(runner, pending)
    eta = EtaColumn(plan)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        eta,
        console=console,
        transient=True,
        disable=quiet,
    )
    runner.progress = progress  # plugins' inner loops of known length get their own bars
    console.print(
        f"suite [bold]{suite.name}[/bold]: {len(cells)} cells, {len(cells) - len(pending)} already done, "
        f"device {runner.device}, workdir {workdir}"
    )
    if pending:
        console.print(plan.summary(), markup=False, highlight=False)
    rows, failed, nan = [], [], float("nan")
    try:
        with progress:
            total, completed = len(plan.stages), plan.completed()
            eta.task_id = bar = progress.add_task(plan.line(), total=total, completed=completed)

            def show(*event: str) -> None:
                plan.event(*event)
                progress.update(bar, description=plan.line(), completed=plan.completed())

            runner.stages.on_stage = show
            for cell in pending:
                try:
                    rows.append(runner.run_cell(cell))
                except CellFailed as exc:
                    runner.store_failed(cell, exc)
                    failed.append(f"{cell.label()}: {exc}")
                    plan.finish(runner.cell_key(cell))
                    progress.console.print(f"cell failed: {failed[-1]}", markup=False, highlight=False)
                    if quiet:
                        click.echo(f"cell failed: {failed[-1]}", err=True)
                else:
                    m = rows[-1]["metrics"]
                    ba, ra = (_shown(m.get(name, nan)) for name in ("BA", "RA"))
                    console.log(f"cell      {cell.label()}  BA {ba}  RA {ra}")
    finally:  # an interrupted run is recorded too, as part of the grid, with the cells it finished
        stages = stage_summary((kind, key, seconds) for (kind, key), seconds in runner.done.items())
        counts = {"cells": len(cells), "pending": len(pending), "computed": len(rows), "failed": len(failed)}
        whole = len(rows) + len(failed) == len(pending)
        record_run(runner, "local", start, counts, partial or not whole, stages, machine_info(runner.device))
    console.print(summary_line(stages), soft_wrap=True)
    return rows, failed


def stage_summary(done: Iterable[tuple[str, str, float | None]]) -> dict[str, dict[str, float]]:
    """``{kind: {"computed": n, "reused": n, "seconds": s}}`` over distinct stages: ``done`` holds
    ``(kind, key, seconds)`` for each stage read, ``seconds`` ``None`` when it was found cached (a stage
    computed by one process and read by others counts as computed)."""
    seconds: dict[tuple[str, str], float | None] = {}
    for kind, key, value in done:
        if value is not None or (kind, key) not in seconds:
            seconds[(kind, key)] = value
    out: dict[str, dict[str, float]] = {}
    for (kind, _), value in seconds.items():
        entry = out.setdefault(kind, {"computed": 0, "reused": 0, "seconds": 0.0})
        entry["computed" if value is not None else "reused"] += 1
        entry["seconds"] += value or 0.0
    return out


def summary_line(stages: dict[str, dict[str, float]]) -> str:
    """``stages: dataset 2 computed / 0 reused, …`` over every stage kind but the cell's own."""
    from zepad_bench.stages import STAGE_KINDS

    kinds = [kind for kind in STAGE_KINDS if kind != "task"]
    counts = {kind: stages.get(kind, {"computed": 0, "reused": 0}) for kind in kinds}
    parts = [f"{kind} {c['computed']} computed / {c['reused']} reused" for kind, c in counts.items()]
    return "stages: " + ", ".join(parts)


def record_run(
    runner,
    executor: str,
    started: float,
    counts: dict[str, int],
    partial: bool,
    stages: dict[str, dict[str, float]],
    machine: dict[str, Any],
) -> None:
    """Write the run record; ``counts`` of cells: in the suite (``cells``), ``pending`` before the run,
    ``computed`` and ``failed`` by it. ``kind``: cold (no cell of the suite was stored), warm or forced."""
    from zepad_bench.machine import now

    runner.store.log_run(
        {
            "suite": runner.suite.name,
            "finished": now(),
            "seconds": time.perf_counter() - started,
            "executor": executor,
            "kind": "forced" if runner.force else "cold" if counts["pending"] == counts["cells"] else "warm",
            "partial": partial,
            "cells_computed": counts["computed"],
            "cells_reused": counts["cells"] - counts["pending"],
            "cells_failed": counts["failed"],
            "stages": stages,
            "machine": machine,
        }
    )


def slurm_work(runner, cells: list) -> list:
    """The run's work for the scheduler (:class:`zepad_bench.slurm.Work`), in dependency order: each
    distinct encoder to pretrain, attack fit and defense tuning that is not cached, then each pending
    cell; each names the others it reads and the cells that read it."""
    from zepad_bench.slurm import Work

    pending = runner.pending(cells)
    stages: dict[str, Any] = {}
    readers: dict[str, list[int]] = {}
    closures = {}
    for cell in pending:
        index = cells.index(cell)
        closures[index] = list(runner.graph.task(cell).closure())
        for stage in closures[index]:
            if stage.kind not in ("encoder", "attack", "defense"):
                continue
            if stage.kind == "encoder" and not stage.inputs:  # loaded, not pretrained: made where read
                continue
            if runner.cache.has(stage.kind, stage.key) and not runner.force.hits(stage):
                continue
            stages.setdefault(stage.key, (stage, index))
            readers.setdefault(stage.key, []).append(index)
    order = {"encoder": 0, "attack": 1, "defense": 1}
    work = [
        Work(
            stage.kind,
            stage.label,
            stage.args if stage.kind == "encoder" else index,
            stage.key,
            {s.key for s in stage.closure() if s.key in stages and s.key != stage.key},
            readers[stage.key],
        )
        for stage, index in sorted(stages.values(), key=lambda si: order[si[0].kind])
    ]
    for index, closure in closures.items():
        needs = {s.key for s in closure if s.key in stages}
        work.append(Work("cell", cells[index].label(), index, closure[-1].key, needs, [index]))
    return work


def run_slurm(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force: bool | str | Sequence[str],
    resources: dict[str, Resources],
    max_jobs: int = 8,
    on_failure: str = "continue",
    poll: float = 10.0,
    partial: bool = False,
    started: float | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the suite's pending work as Slurm jobs (:class:`zepad_bench.slurm.Scheduler`): at most
    ``max_jobs`` at once, each phase with its ``resources``. A failed, cancelled or timed-out job is one
    line; the cells it was to compute (or that read the stage it was to make) are stored as failed,
    everything that finished is kept, and the other jobs go on (``on_failure="continue"``) or are
    cancelled (``"cancel"``). Returns the rows computed and the failure lines.

    The workdir must be on a filesystem shared by the nodes; stages meet in its content-addressed
    cache (atomic writes, one lock per stage key), so no stage is computed twice, and forced stages are
    recomputed once for the whole run.
    """
    import shutil

    from rich.console import Console

    from zepad_bench.loading import load_with_axes
    from zepad_bench.machine import machine_info
    from zepad_bench.runner import Runner
    from zepad_bench.slurm import Scheduler, job_body
    from zepad_bench.stages import ForceSpec

    start = time.perf_counter() if started is None else started
    try:
        import submitit
    except ImportError:
        raise UserError("--executor slurm needs submitit: pip install 'zepad-bench[slurm]'") from None
    if shutil.which("sbatch") is None:
        raise UserError(
            "--executor slurm: no Slurm here (sbatch is not on PATH); see scripts/slurm-cluster.sh"
        )
    console = Console(stderr=True, log_path=False)
    suite = load_with_axes(suite_path, axes)
    spec = ForceSpec.parse(force)
    runner = Runner(suite, suite.registry, workdir, device, spec)
    cells = suite.cells()
    pending = runner.pending(cells)
    work = slurm_work(runner, cells)
    folder = Path(workdir).resolve() / "slurm"
    executors = {}
    for phase, wanted in resources.items():
        executors[phase] = submitit.AutoExecutor(folder=folder, cluster="slurm")
        executors[phase].update_parameters(name=f"zb-{suite.name}-{phase}", **wanted.submitit())
    args = (str(suite_path), axes, workdir, device, spec, runner.since)
    asked = "; ".join(f"{p}: {r.text()}" for p, r in resources.items())
    console.print(
        f"suite [bold]{suite.name}[/bold]: {len(cells)} cells, {len(cells) - len(pending)} already done; "
        f"{len(work) - len(pending)} stage(s) and {len(pending)} cell(s) to run as Slurm jobs, at most "
        f"{max_jobs} at once ({asked}); logs in {folder}"
    )

    def submit(phase: str, items: list):
        return executors[phase].submit(job_body, *args, phase, items)

    def say(line: str) -> None:
        console.log(line, markup=False)

    def tell(line: str) -> None:  # a failure: one line, never wrapped
        click.echo(line, err=True)

    outcome = Scheduler(work, submit, max_jobs, on_failure, poll, say, tell).run()
    keys = [runner.cell_key(c) for c in pending]
    rows = [r for r in runner.store.rows(keys=keys) if r["status"] == "ok"]
    done = {r["key"] for r in rows}
    failed = []
    for index, (reason, stage) in sorted(outcome.failed_cells.items()):
        if runner.cell_key(cells[index]) not in done:  # a cell stored before its job died keeps its result
            exc = CellFailed(reason)
            exc.stage = stage
            runner.store_failed(cells[index], exc)
            failed.append(f"{cells[index].label()}: {reason}")
    stages = stage_summary(tuple(d) for report in outcome.reports for d in report["done"])
    machine = {
        "executor": "slurm",
        "driver": machine_info(runner.device),
        "jobs": outcome.jobs,
        "hosts": sorted({r["host"] for r in outcome.reports}),
        "threads": sorted({r["threads"] for r in outcome.reports}),
        "resources": {phase: r.submitit() for phase, r in resources.items()},
    }
    counts = {"cells": len(cells), "pending": len(pending), "computed": len(rows), "failed": len(failed)}
    record_run(runner, "slurm", start, counts, partial, stages, machine)
    console.print(summary_line(stages), soft_wrap=True)
    return rows, failed


def _shown(value: object) -> str:
    """A metric for the progress log: a number to two decimals, else as it is ("n/a")."""
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)
