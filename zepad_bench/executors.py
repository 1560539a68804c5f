"""Where cells run: here (with rich progress), or on a Slurm cluster through submitit."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_local(
    suite, workdir: str, device: str | None, force: bool, quiet: bool = False
) -> list[dict[str, Any]]:
    """Run the suite's pending cells in this process with progress bars; returns their rows."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zepad_bench.runner import Runner

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
    rows, nan = [], float("nan")
    with progress:
        overall = progress.add_task("cells", total=len(pending))
        for cell in pending:
            rows.append(runner.run_cell(cell))
            m = rows[-1]["metrics"]
            console.log(f"cell      {cell.label()}  BA {m.get('BA', nan):.2f}  RA {m.get('RA', nan):.2f}")
            progress.advance(overall)
    summary = ", ".join(
        f"{stage} {runner.computed[stage]} computed / {runner.reused[stage]} reused"
        for stage in ("dataset", "encoder", "attack", "defense", "adversarial", "features", "head")
    )
    console.print(f"stages: {summary}")
    return rows


def _job_run_cells(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force: bool,
    indices: list[int],
    stage: str,
) -> int:
    """Slurm job body: load the suite anew and run ``stage`` (attack, defense or cell) for ``indices``."""
    from zepad_bench.cli import _load
    from zepad_bench.runner import Runner

    suite = _load(suite_path, axes)
    runner = Runner(suite, suite.registry, workdir, device, force)
    cells = suite.cells()
    for i in indices:
        {"attack": runner.attack, "defense": runner.defense, "cell": runner.run_cell}[stage](cells[i])
    return len(indices)


def encoders_to_pretrain(suite, cells: list) -> list[str]:
    """Ids of the encoders ``cells`` use that are pretrained in the run (their table has ``data``), in
    first-use order: on Slurm each gets its own job before any attack or defense job needs it."""
    used = dict.fromkeys(e for c in cells for e in [c.victim, *suite.auxiliaries(c.victim)])
    return [e for e in used if "data" in suite.spec("encoders", e).reserved]


def _job_build_encoder(
    suite_path: str, axes: dict[str, str | None], workdir: str, device: str | None, force: bool, id_: str
) -> str:
    """Slurm job body: build (pretrain, load or fetch from a hub) one encoder into the shared cache."""
    from zepad_bench.cli import _load
    from zepad_bench.runner import Runner

    suite = _load(suite_path, axes)
    return Runner(suite, suite.registry, workdir, device, force).encoder(id_)[1]


def run_slurm(
    suite_path: str,
    axes: dict[str, str | None],
    workdir: str,
    device: str | None,
    force: bool,
    options: dict[str, Any],
    cluster: str | None = None,
) -> list[dict[str, Any]]:
    """Fan out through submitit: one job per encoder pretrained in the run, then one per distinct
    attack fit and defense tuning, then the cells.

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
    jobs = [
        executor.submit(_job_build_encoder, str(suite_path), axes, workdir, device, force, id_)
        for id_ in encoders_to_pretrain(suite, [cells[i] for i in pending])
    ]
    if jobs:
        console.print(f"submitted {len(jobs)} encoder pretraining jobs")
    for job in jobs:
        job.result()
    for stage in ("attack", "defense"):
        jobs = [
            executor.submit(_job_run_cells, str(suite_path), axes, workdir, device, force, [i], stage)
            for i in first[stage].values()
        ]
        console.print(f"submitted {len(jobs)} {stage} jobs")
        for job in jobs:
            job.result()
    chunks = [pending[k : k + 4] for k in range(0, len(pending), 4)]
    jobs = [
        executor.submit(_job_run_cells, str(suite_path), axes, workdir, device, False, chunk, "cell")
        for chunk in chunks
    ]
    console.print(f"submitted {len(jobs)} cell jobs")
    for job in jobs:
        job.result()
    keys = {runner.cell_key(cells[i]) for i in pending}
    return runner.store.rows(keys=list(keys))
