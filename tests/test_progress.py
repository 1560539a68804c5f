"""Progress of a local run: counted in stages (cached share included), with an ETA from the stage log."""

from __future__ import annotations

from rich.progress import Progress

from zepad_bench import load_registry
from zepad_bench.context import RunContext
from zepad_bench.progress import StageEstimates, StageProgress, task_log
from zepad_bench.runner import Runner
from zepad_bench.suite import load_suite


def load(path):
    return load_suite(path, load_registry(["zb_outside_plugin"]))


def test_the_bar_counts_every_stage_of_the_run_and_what_was_cached(smoke_suite, tmp_path):
    suite = load(smoke_suite)
    runner = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    cells = runner.pending(suite.cells())
    plan = StageProgress.of(runner, cells)
    # every distinct stage the 4 cells read: 4 dataset splits, 2 encoders, 1 attack fit, 1 tuning,
    # 2 attacked test sets and the 4 cells themselves
    kinds = sorted(s.kind for s in plan.stages.values())
    assert kinds.count("dataset") == 4 and kinds.count("task") == 4 and len(kinds) == 14
    assert plan.cached == set() and plan.completed() == 0
    assert plan.eta() == (0.0, 14)  # an empty log: nothing was ever timed
    runner.stages.on_stage = plan.event
    for cell in cells:
        runner.run_cell(cell)
    assert plan.completed() == 14 and plan.running == []

    # a second seed: nothing of it is cached (every stage here is per seed), and each of its stages is
    # estimated from the same stage of seed 0 in the log
    smoke_suite.write_text(
        smoke_suite.read_text().replace('tasks = ["cls", "cls2"]', 'tasks = ["cls", "cls2"]\nseeds = [0, 1]')
    )
    suite = load(smoke_suite)
    again = Runner(suite, suite.registry, tmp_path / "wd", device="cpu")
    plan = StageProgress.of(again, again.pending(suite.cells()))
    assert len(plan.stages) == 14 and plan.cached == set()
    log = {
        (r["stage"], r["label"].replace("seed 0", "seed 1").replace("seed=0", "seed=1")): r["seconds"]
        for r in [*again.store.stage_runs(), *task_log(again.store)]
    }
    same = [s for s in plan.stages.values() if (s.kind, s.label) in log]
    assert {s.kind for s in same} >= {"dataset", "encoder", "attack", "adversarial", "task"}
    assert all(plan.estimates(s) == log[(s.kind, s.label)] for s in same)
    left, untimed = plan.eta()
    assert untimed == 0 and abs(left - sum(plan.estimates(s) for s in plan.stages.values())) < 1e-9


def test_estimates_fall_back_from_the_stage_to_its_plugin_to_its_kind():
    log = [
        {
            "stage": "defense",
            "key": "a",
            "label": "zepad for r (seed 0)",
            "plugin": "zepad",
            "seconds": 100.0,
        },
        {
            "stage": "defense",
            "key": "b",
            "label": "zepad for q (seed 0)",
            "plugin": "zepad",
            "seconds": 300.0,
        },
        {"stage": "defense", "key": "c", "label": "none for r (seed 0)", "plugin": "none", "seconds": 1.0},
    ]
    from zepad_bench.stages import Stage

    estimates = StageEstimates(log)
    assert estimates(Stage("defense", "a", "zepad for r (seed 0)", {}, "zepad")) == 100.0  # the stage
    assert estimates(Stage("defense", "x", "zepad for q (seed 3)", {}, "zepad")) == 300.0  # another seed
    assert estimates(Stage("defense", "y", "zepad for z (seed 0)", {}, "zepad")) == 200.0  # its plugin
    assert estimates(Stage("defense", "z", "trades for r (seed 0)", {}, "trades")) == 100.0  # its kind
    assert estimates(Stage("attack", "w", "pap (seed 0)", {}, "pap")) is None


def test_inner_loops_of_unknown_length_get_no_bar():
    progress = Progress()
    ctx = RunContext(progress=progress)
    seen = []
    for _ in ctx.track(iter(range(3)), "uapgd"):
        seen.append(len(progress.tasks))
    for _ in ctx.track(range(3), "head"):
        seen.append(len(progress.tasks))
    assert seen == [0, 0, 0, 1, 1, 1]
