"""An independent white-box check of the board's adaptive robust accuracy (issue 17, "Done when").

Written apart from the project's attack code (``zepad_bench_plugins.attacks``, ``evaluate``): its
own L∞ PGD (Madry et al. 2018: random start in the ε-ball, step ``--step``·ε (default ε/4), sign of
the gradient, projection) on the cross-entropy with ``--restarts`` random restarts, then on a
targeted margin loss z_t − z_y against each of the 3 highest-scoring other classes of the clean
image, ``--steps`` steps each; per-sample worst case (a sample is robust only if every run fails on
it; any fooling iterate counts). The project is used only to load what a suite's work directory
stores (the defended models, the task's heads, the test data and the attacked subset's rows) and to
build the exact decision the task scores (``Task.adaptive_target``: fused class scores and their
argmax).

For every ``classification`` cell of the suite's adaptive scenario it prints, per defense and seed,
the independent RA beside the board's adaptive RA on the same attacked images, and for ``retrieval``
the adaptive RA beside the lowest transfer RA of that defense and seed (from the results store). It
writes them, with its settings, as the record ``benchmarks/results/independent_attack-<suite>.json``
(:mod:`zepad_bench.bench_record`; ``--out`` another folder), from which benchmarks/README.md states
whether issue 17's criterion holds:

    python benchmarks/independent_attack.py suites/quickstart.toml --workdir WD
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from zepad_bench import load_registry
from zepad_bench.bench_record import write_record
from zepad_bench.branch_stages import BranchStages
from zepad_bench.interfaces import TaskData
from zepad_bench.runner import Runner
from zepad_bench.suite import instantiate, load_suite

TARGETS = 3
"""The targeted margin runs against this many highest-scoring other classes of the clean image (all
of them where a task has fewer)."""


def pgd(
    decide, x: torch.Tensor, y: torch.Tensor, loss_fn, eps: float, steps: int, step: float, seed: int
) -> torch.Tensor:
    """Samples of ``x`` that L∞ PGD on ``loss_fn(scores, y)`` (maximised) fools at any iterate."""
    g = torch.Generator().manual_seed(seed)
    x_adv = (x + (2 * torch.rand(x.shape, generator=g) - 1).to(x) * eps).clamp(0, 1)
    fooled = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps + 1):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            scores, decision = decide(x_adv)
            (grad,) = torch.autograd.grad(loss_fn(scores, y).sum(), x_adv)
        fooled |= (decision != y).cpu()
        moved = x_adv.detach() + step * eps * grad.sign()
        x_adv = torch.min(torch.max(moved, x - eps), x + eps).clamp(0, 1)
    return fooled


def independent_ra(
    decide, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step: float, restarts: int
) -> float:
    """Robust accuracy (%) under CE restarts, then the targeted margin against the top-3 other classes
    (every other class where there are fewer)."""
    with torch.no_grad():
        clean_scores, decision = decide(x)
    robust = (decision == y).cpu()
    others = clean_scores.scatter(1, y.view(-1, 1), -float("inf")).argsort(1, descending=True).cpu()
    targets = min(TARGETS, clean_scores.shape[1] - 1)  # the true class is the last column
    runs = [None] * restarts + [others[:, j] for j in range(targets)]  # None: CE; else the target class
    for seed, goal in enumerate(runs):
        rows = robust.nonzero().flatten()
        if not len(rows):
            break
        wanted = None if goal is None else goal[rows].to(x.device)

        def loss(scores: torch.Tensor, labels: torch.Tensor, wanted=wanted) -> torch.Tensor:
            if wanted is None:
                return F.cross_entropy(scores.float(), labels, reduction="none")
            pick = lambda index: scores.gather(1, index.view(-1, 1)).squeeze(1)  # noqa: E731
            return pick(wanted) - pick(labels)

        fooled = pgd(decide, x[rows], y[rows], loss, eps, steps, step, seed)
        robust[rows[fooled]] = False
    return 100.0 * float(robust.sum()) / len(y)


def transfer_comparison(suite, rows: list[dict]) -> list[dict]:
    """Per defense and seed of every ``retrieval`` task: the adaptive RA beside the lowest transfer RA
    (controls left out)."""
    best: dict[tuple, dict[str, float]] = {}
    for row in rows:
        if suite.spec("tasks", row["task"]).plugin != "retrieval":
            continue
        ra = row["metrics"].get("RA")
        if row["config"].get("attack_role") == "control" or not isinstance(ra, float):
            continue
        kind = "adaptive" if row["scenario"] == "adaptive" else "transfer"
        slot = best.setdefault((row["task"], row["defense"], row["seed"]), {})
        slot[kind] = min(slot.get(kind, 101.0), ra)
    return [
        {
            "task": task,
            "defense": defense,
            "seed": seed,
            "adaptive_RA": slot["adaptive"],
            "lowest_transfer_RA": slot["transfer"],
        }
        for (task, defense, seed), slot in sorted(best.items())
        if {"adaptive", "transfer"} <= set(slot)
    ]


def check_cell(runner, suite, cell, args) -> dict:
    """The board's adaptive RA of one classification cell and the independent RA on the same images."""
    began = time.perf_counter()
    attack, _ = runner.attack(cell)
    model, _ = runner.defense(cell)
    data_id = runner.graph.task_data(cell)
    train, test = (
        runner.dataset(data_id, "train", cell.seed)[0],
        runner.dataset(data_id, "test", cell.seed)[0],
    )
    task = instantiate(suite, suite.registry, "tasks", cell.task)
    task.ctx = runner._ctx(cell.seed)
    branches = BranchStages(
        runner.stages, runner.graph, cell, model, train, test, suite.batch_size, "cpu", task.ctx.track
    )
    clean = test.float_images(slice(None))
    data = TaskData(train, test, clean, attack, branches.features, branches.head)
    _, index, metrics = runner.adaptive(cell, attack, model, task, data)
    target = task.adaptive_target(model, data)
    board = metrics[[k for k in metrics if k.startswith("RA_after:")][-1]]
    ra = independent_ra(
        target, clean[index], test.labels[index], cell.eps, args.steps, args.step, args.restarts
    )
    return {
        "task": cell.task,
        "defense": cell.defense,
        "seed": cell.seed,
        "eps": cell.eps,
        "n": len(index),
        "board_RA": board,
        "independent_RA": ra,
        "delta": ra - board,
        "seconds": time.perf_counter() - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite")
    parser.add_argument("--workdir", required=True, help="the work directory the suite has run in")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--step", type=float, default=0.25, help="PGD step as a fraction of ε")
    parser.add_argument("--defenses", default="", help="only these defense ids (comma-separated)")
    parser.add_argument("--seeds", default="", help="only these seeds (comma-separated)")
    parser.add_argument("--out", default=None, help="folder for the record (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    suite = load_suite(args.suite, load_registry())
    runner = Runner(suite, suite.registry, args.workdir, device="cpu")
    print("| task | defense | seed | ε | n | board adaptive RA | independent RA | Δ | seconds |")
    print("|" + "---|" * 9)
    start = time.perf_counter()
    checked = []
    chosen = [
        cell
        for cell in suite.cells()
        if (not args.defenses or cell.defense in args.defenses.split(","))
        and (not args.seeds or str(cell.seed) in args.seeds.split(","))
    ]
    for cell in chosen:
        if cell.scenario != "adaptive" or suite.spec("tasks", cell.task).plugin != "classification":
            continue
        r = check_cell(runner, suite, cell, args)
        checked.append(r)
        print(
            f"| {r['task']} | {r['defense']} | {r['seed']} | {r['eps'] * 255:g}/255 | {r['n']} | "
            f"{r['board_RA']:.1f} | {r['independent_RA']:.1f} | {r['delta']:+.1f} | {r['seconds']:.0f} |",
            flush=True,
        )
    rows = runner.store.rows(suite.name, keys=[runner.cell_key(c) for c in chosen])
    retrieval = transfer_comparison(suite, rows)
    print("\n| task | defense | seed | adaptive RA | lowest transfer RA |\n|---|---|---|---|---|")
    for r in retrieval:
        print(
            f"| {r['task']} | {r['defense']} | {r['seed']} | {r['adaptive_RA']:.1f} | "
            f"{r['lowest_transfer_RA']:.1f} |"
        )
    figures = {
        "suite": suite.name,
        "settings": {"steps": args.steps, "restarts": args.restarts, "step": args.step, "targets": TARGETS},
        "classification": checked,
        "retrieval": retrieval,
        "seconds": time.perf_counter() - start,
    }
    write_record(f"independent_attack-{suite.name}", figures, out=args.out)


if __name__ == "__main__":
    main()
