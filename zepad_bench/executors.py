"""Where cells run: here (with rich progress), or on a Slurm cluster through submitit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from zepad_bench.errors import CellFailed


def run_local(
    suite, workdir: str, device: str | None, force: bool, quiet: bool = False, partial: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run the suite's pending cells in this process with progress bars; returns their rows and one
    line per failed cell (a failed cell stores nothing; the others go on). The run is logged."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zepad_bench.runner import Runner, _now, machine_info

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
    start = time.perf_counter()
    with progress:
        overall = progress.add_task("cells", total=len(pending))
        for cell in pending:
            try:
                rows.append(runner.run_cell(cell))
            except CellFailed as exc:
                failed.append(f"{cell.label()}: {exc}")
                progress.console.print(f"cell failed: {failed[-1]}", markup=False, highlight=False)
                if quiet:
                    click.echo(f"cell failed: {failed[-1]}", err=True)
            else:
                m = rows[-1]["metrics"]
                console.log(f"cell      {cell.label()}  BA {m.get('BA', nan):.2f}  RA {m.get('RA', nan):.2f}")
            progress.advance(overall)
    runner.store.log_run(
        {
            "suite": suite.name,
            "finished": _now(),
            "seconds": time.perf_counter() - start,
            "computed": len(rows),
            "reused": len(cells) - len(pending),
            "failed": len(failed),
            "note": (
                "forced"
                if force
                else "cold: nothing stored"
                if len(pending) == len(cells)
                else "warm: resumed from the store"
            )
            + ("; partial grid" if partial else ""),
            "machine": machine_info(runner.device),
        }
    )
    summary = ", ".join(
        f"{stage} {runner.computed[stage]} computed / {runner.reused[stage]} reused"
        for stage in ("dataset", "encoder", "attack", "defense", "adversarial", "features", "head")
    )
    console.print(f"stages: {summary}")
    return rows, failed


def _job_run_cells(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force: bool,
    indices: list[int],
    stage: str,
) -> list[str]:
    """Slurm job body: load the suite anew and run ``stage`` (attack, defense or cell) for ``indices``;
    returns one line per failed cell."""
    from zepad_bench.cli import _load
    from zepad_bench.runner import Runner

    suite = _load(suite_path, axes)
    runner = Runner(suite, suite.registry, workdir, device, force)
    cells = suite.cells()
    failed = []
    for i in indices:
        try:
            {"attack": runner.attack, "defense": runner.defense, "cell": runner.run_cell}[stage](cells[i])
        except CellFailed as exc:
            failed.append(f"{cells[i].label()}: {exc}")
    return failed


def run_slurm(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force: bool,
    options: dict[str, Any],
    cluster: str | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Fan out through submitit: first one job per distinct attack fit and defense tuning, then the cells.

    The workdir must be on a filesystem shared by the nodes; stages meet in its content-addressed
    cache, so the second phase reuses every fit. ``cluster="local"`` runs the same jobs as local
    processes (submitit's local executor), which is how the tests exercise this path.
    """
    import submitit
    from rich.console import Console

    from zepad_bench.cli import _load
    from zepad_bench.runner import Runner

    console = Console(stderr=True)
    suite = _load(suite_path, axes)
    runner = Runner(suite, suite.registry, workdir, device, force)
    cells = suite.cells()
    pending = [cells.index(c) for c in runner.pending(cells)]
    executor = submitit.AutoExecutor(folder=Path(workdir) / "slurm", cluster=cluster)
    executor.update_parameters(name=f"zepad-{suite.name}", **options)
    first: dict[str, dict[tuple, int]] = {"attack": {}, "defense": {}}
    for i in pending:
        c = cells[i]
        first["attack"].setdefault((c.attack, c.eps, c.victim, c.scenario, c.seed), i)
        first["defense"].setdefault((c.defense, c.victim, c.tuning, c.seed), i)
    for stage in ("attack", "defense"):
        jobs = [
            executor.submit(_job_run_cells, str(suite_path), axes, workdir, device, force, [i], stage)
            for i in first[stage].values()
        ]
        console.print(f"submitted {len(jobs)} {stage} jobs")
        for job in jobs:
            job.result()  # a failing fit fails its cells again below, with one line each
    chunks = [pending[k : k + 4] for k in range(0, len(pending), 4)]
    jobs = [
        executor.submit(_job_run_cells, str(suite_path), axes, workdir, device, False, chunk, "cell")
        for chunk in chunks
    ]
    console.print(f"submitted {len(jobs)} cell jobs")
    failed = [line for job in jobs for line in job.result()]
    keys = {runner.cell_key(cells[i]) for i in pending}
    return runner.store.rows(keys=list(keys)), failed
