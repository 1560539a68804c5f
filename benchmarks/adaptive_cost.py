"""CPU seconds of a suite's adaptive cells: does the adaptive attack at full strength fit a budget?

For each ``adaptive`` cell of SUITE (narrowed by ``--defenses``, ``--tasks``, ``--seeds``) it recomputes
the adaptive stage (``--force adaptive``; every other stage comes from the work directory's cache when
it is there) with ``--threads`` torch threads, and prints per cell the process CPU seconds (user + sys
of this process, ``time.process_time``) and wall seconds of the whole cell, the adaptive stage's wall
seconds from the stage log, the attacked-sample count and the robust accuracy, and writes them as the
record ``benchmarks/results/adaptive_cost-<suite>.json`` (:mod:`zepad_bench.bench_record`; ``--out``
another folder; benchmarks/README.md is generated from it). Run the suite once without the adaptive
scenario first, so that the cells time the adaptive stage and little else:

    zepad-bench run suites/quickstart.toml --scenarios semi-black-box,defense-aware --workdir WD
    OMP_NUM_THREADS=1 /usr/bin/time -v python benchmarks/adaptive_cost.py suites/quickstart.toml --workdir WD
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import torch

from zepad_bench import load_registry
from zepad_bench.bench_record import write_record
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite


def number(value) -> float | None:
    """A metric or stage time as a JSON number, ``None`` where there is none ("n/a", absent, NaN)."""
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--defenses", default="", help="only these defense ids (comma-separated)")
    parser.add_argument("--tasks", default="", help="only these task ids (comma-separated)")
    parser.add_argument("--seeds", default="", help="only these seeds (comma-separated)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=None, help="folder for the record (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suite = load_suite(args.suite, load_registry())
    runner = Runner(
        suite, suite.registry, args.workdir, device="cpu", force="adaptive", log=lambda line: None
    )
    wanted = {
        "defense": set(filter(None, args.defenses.split(","))),
        "task": set(filter(None, args.tasks.split(","))),
        "seed": set(filter(None, args.seeds.split(","))),
    }
    print(
        f"# {platform.platform()}, {len(os.sched_getaffinity(0))} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )
    print("| defense | task | seed | n | RA | cell CPU s | cell wall s | adaptive stage wall s |")
    print("|---|---|---|---|---|---|---|---|")
    cells = []
    for cell in suite.cells():
        chosen = {"defense": cell.defense, "task": cell.task, "seed": str(cell.seed)}
        if cell.scenario != "adaptive" or any(v and chosen[k] not in v for k, v in wanted.items()):
            continue
        cpu, wall = time.process_time(), time.perf_counter()
        metrics = runner.run_cell(cell)["metrics"]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        stage = runner.graph.adaptive(cell)
        stage_seconds = runner.done.get((stage.kind, stage.key))  # None: not computed here
        row = {
            "defense": cell.defense,
            "task": cell.task,
            "seed": cell.seed,
            "n": number(metrics.get("adaptive_n")),
            "RA": number(metrics.get("RA")),
            "cpu_s": cpu,
            "wall_s": wall,
            "stage_wall_s": number(stage_seconds),
        }
        cells.append(row)
        shown = [
            "n/a" if row[k] is None else f"{row[k]:.{d}f}"
            for k, d in (("n", 0), ("RA", 1), ("stage_wall_s", 1))
        ]
        print(
            f"| {cell.defense} | {cell.task} | {cell.seed} | {shown[0]} | {shown[1]} | {cpu:.1f} | "
            f"{wall:.1f} | {shown[2]} |",
            flush=True,
        )
    total = sum(row["cpu_s"] for row in cells)
    print(f"total cell CPU s: {total:.1f}; load now {os.getloadavg()[0]:.2f}")
    figures = {"suite": suite.name, "threads": args.threads, "cells": cells, "total_cpu_s": total}
    write_record(f"adaptive_cost-{suite.name}", figures, out=args.out)


if __name__ == "__main__":
    main()
