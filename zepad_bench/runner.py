"""Runs suite cells through their stages: dataset → encoder → attack fit / defense tuning → attacked
images → features and heads → task. Every key comes from the :class:`~zepad_bench.stages.StageGraph`;
the runner builds plugins, computes what a stage needs and leaves storing to the
:class:`~zepad_bench.stage_cache.StageCache`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zepad_bench.attacked_images import adaptive_images, transfer_images
from zepad_bench.branch_stages import BranchStages
from zepad_bench.cell_row import cell_row, failed_row
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages, UnlabeledBatches
from zepad_bench.errors import CellFailed
from zepad_bench.interfaces import TRANSFER_SCENARIOS, Attack, DefendedModel, Task, TaskData
from zepad_bench.machine import now, resolve_device
from zepad_bench.nn import precision
from zepad_bench.nn.encoder import Encoder
from zepad_bench.registry import Registry
from zepad_bench.seeding import seed_everything
from zepad_bench.stage_cache import StageCache, as_is
from zepad_bench.stage_codecs import (
    attack_round_trip,
    decode_dataset,
    decode_defended,
    encode_dataset,
    encode_defended,
)
from zepad_bench.stages import ForceSpec, Stage, StageGraph
from zepad_bench.suite import Cell, Suite, instantiate


class Runner:
    """Executes cells; every stage's output is cached under the key the stage graph derives for it."""

    def __init__(
        self,
        suite: Suite,
        registry: Registry,
        workdir: str | Path = ".zepad-bench",
        device: str | None = None,
        force: bool | str | list[str] | ForceSpec = False,
        progress: Any = None,
        log: Callable[[str], None] | None = None,
        since: str | None = None,
    ):
        self.suite, self.registry = suite, registry
        self.workdir = Path(workdir)
        self.device = resolve_device(device or suite.device)
        self.force = force if isinstance(force, ForceSpec) else ForceSpec.parse(force)
        self.progress = progress
        self.graph = StageGraph(suite, registry)
        self.since = since or now("microseconds")  # start of the run (a Slurm run's jobs share the driver's)
        self.stages = StageCache(
            self.workdir,
            self.force,
            suite.precision,
            registry.backbones,
            suite.name,
            self.since,
            log or (lambda message: None),
        )
        self.cache, self.store = self.stages.cache, self.stages.store
        self.computed, self.reused, self.done = self.stages.computed, self.stages.reused, self.stages.done

    def _ctx(self, seed: int) -> RunContext:
        return RunContext(
            device=self.device,
            seed=seed,
            image_size=self.suite.image_size,
            progress=self.progress,
            plugins=self.registry.get,
        )

    # ------------------------------------------------------------------ stages
    def dataset(self, id_: str, split: str, seed: int) -> tuple[LabeledImages, str]:
        """A dataset split; sets without an official split are split (and sampled) by ``seed``."""
        node = self.graph.dataset(id_, split, seed)

        def compute() -> LabeledImages:
            source = instantiate(self.suite, self.registry, "datasets", id_)
            source.ctx = self._ctx(seed)
            data = source.load(split, self.suite.image_size, seed)
            data.name = id_
            return data

        data = self.stages.get(node, seed, compute, encode_dataset, lambda s: decode_dataset(s, id_))
        # identical tables share one artifact; each id keeps its own name (tasks match heads by it)
        return dataclasses.replace(data, name=id_), node.key

    def encoder(self, id_: str, seed: int) -> tuple[Encoder, str]:
        """A public encoder; one pretrained inside the suite is pretrained per ``seed`` (a loaded
        checkpoint is the same file for every seed)."""
        data_id = self.suite.spec("encoders", id_).reserved.get("data")
        data, _ = self.dataset(data_id, "train", seed) if data_id else (None, None)
        node = self.graph.encoder(id_, seed)

        def compute() -> Encoder:
            source = instantiate(self.suite, self.registry, "encoders", id_)
            source.ctx = self._ctx(seed)
            return source.build(data)

        def decode(state: dict[str, Any]) -> Encoder:
            return Encoder.from_state(state).to(self.device).eval()

        encoder = self.stages.get(node, seed, compute, lambda e: e.to_state(), decode)
        return encoder.to(self.device).eval(), node.key

    def attack(self, cell: Cell) -> tuple[Attack, str]:
        """The fitted attack: on the public surrogates (transfer scenarios), or on every branch of the
        defended model (``defense-aware``, ``adaptive``)."""
        encoders = self._attacked_encoders(cell)
        data, _ = self.dataset(self.graph.attacker_data(cell.attack), "train", cell.seed)
        node = self.graph.attack(cell)

        def new_attack() -> Attack:
            attack = instantiate(self.suite, self.registry, "attacks", cell.attack, eps=cell.eps)
            attack.ctx = self._ctx(cell.seed)
            attack.encoders = encoders
            return attack

        def compute() -> Attack:
            attack = new_attack()
            images = UnlabeledBatches(data.images, self.suite.batch_size, seed=cell.seed, device=self.device)
            attack.fit(encoders, images)
            return attack_round_trip(attack, new_attack, images, perturbs=cell.scenario != "adaptive")

        def decode(state: dict[str, Any]) -> Attack:
            attack = new_attack()
            attack.load_state_dict(state)
            return attack

        return self.stages.get(node, cell.seed, compute, lambda a: a.state_dict(), decode), node.key

    def _attacked_encoders(self, cell: Cell) -> list[Encoder]:
        """The encoders an attack is fitted on: the public surrogates (transfer scenarios), or every
        branch of the defended model (``defense-aware``, ``adaptive``)."""
        if cell.scenario in TRANSFER_SCENARIOS:
            return [self.encoder(i, cell.seed)[0] for i in self.suite.surrogates(cell.victim, cell.scenario)]
        model, _ = self.defense(cell)
        return [b.encoder for b in model.branches]

    def defense(self, cell: Cell) -> tuple[DefendedModel, str]:
        """The tuned defense, fusing and detecting with this cell's own inference params."""
        victim, _ = self.encoder(cell.victim, cell.seed)
        auxiliaries = [self.encoder(i, cell.seed)[0] for i in self.suite.auxiliaries(cell.victim)]
        data, _ = self.dataset(cell.tuning, "train", cell.seed)
        node = self.graph.defense(cell)

        def new_defense():
            defense = instantiate(self.suite, self.registry, "defenses", cell.defense)
            defense.ctx = self._ctx(cell.seed)
            return defense

        def compute() -> DefendedModel:
            return new_defense().fit(victim.copy(), [a.copy() for a in auxiliaries], data)

        def decode(state: dict[str, Any]) -> DefendedModel:
            return decode_defended(state, new_defense())

        tuned = self.stages.get(node, cell.seed, compute, encode_defended, decode)
        # the tuning may be shared by defense tables that differ only in inference params: fuse and
        # detect with this cell's own settings
        model = DefendedModel(tuned.branches, new_defense(), tuned.info)
        for branch in model.branches:
            branch.encoder.to(self.device).eval()
            if branch.head is not None:
                branch.head.to(self.device).eval()
        return model, node.key

    def adversarial(self, cell: Cell, attack: Attack, test: LabeledImages) -> torch.Tensor:
        """The attacked test images (float, CPU), computed once per (fitted attack, dataset split)."""
        node = self.graph.adversarial(cell)

        def compute() -> torch.Tensor:
            track = self._ctx(cell.seed).track
            return transfer_images(attack, test, self.suite.batch_size, self.device, track)

        return self.stages.get(node, cell.seed, compute, as_is, as_is)

    def adaptive(
        self, cell: Cell, attack: Attack, model: DefendedModel, task: Task, data: TaskData
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]] | None:
        """``adaptive`` scenario: the task's own decision (``task.adaptive_target``) attacked per batch
        with the test labels (:func:`zepad_bench.attacked_images.adaptive_images`): the attacked images,
        the test rows they come from (a seeded subset when ``attack.samples`` is set) and the attack's
        metrics (robust accuracy after each member, re-check, gradient sanity). ``None`` when the task
        has no adaptive attack."""
        target = task.adaptive_target(model, data)
        if target is None:
            return None
        node = self.graph.adaptive(cell)

        def compute() -> dict[str, Any]:
            ctx = self._ctx(cell.seed)
            generator = ctx.generator(0xADA)
            return adaptive_images(attack, target, data.test, self.suite.batch_size, generator, ctx.track)

        value = self.stages.get(node, cell.seed, compute, as_is, as_is)
        return value["images"], value["indices"], dict(value["stats"])

    # ------------------------------------------------------------------ cells
    def cell_key(self, cell: Cell) -> str:
        """The key of the cell's task stage: derived from the keys of every stage the cell reads."""
        return self.graph.task(cell).key

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        start = time.perf_counter()
        node = self.graph.task(cell)
        self.stages.on_stage("start", "task", node.key, node.label)
        attack, attack_key = self.attack(cell)
        model, defense_key = self.defense(cell)
        task_data = self.graph.task_data(cell)
        train, _ = self.dataset(task_data, "train", cell.seed)
        test, _ = self.dataset(task_data, "test", cell.seed)
        task = instantiate(self.suite, self.registry, "tasks", cell.task)
        ctx = self._ctx(cell.seed)
        task.ctx = ctx
        branches = BranchStages(
            self.stages, self.graph, cell, model, train, test, self.suite.batch_size, self.device, ctx.track
        )
        pipeline_stats: dict[str, float] = {}
        adaptive = None
        if cell.scenario == "adaptive":
            clean = TaskData(
                train, test, test.float_images(slice(None)), attack, branches.features, branches.head
            )
            adaptive = self.adaptive(cell, attack, model, task, clean)
            if adaptive is not None:
                branches.test_adv, rows, pipeline_stats = adaptive
                if len(rows) < len(test):  # a seeded subset was attacked: the task scores those rows
                    test = test.subset(rows)
                    branches.rows = rows
        else:
            branches.test_adv = self.adversarial(cell, attack, test)
        seed_everything(cell.seed)
        task_start = time.perf_counter()
        if cell.scenario == "adaptive" and adaptive is None:  # no adaptive attack on this task's terms
            names = [m.name for m in task.metrics() if "<" not in m.name]
            metrics: dict[str, Any] = dict.fromkeys(names, "n/a")
        else:
            data = TaskData(train, test, branches.test_adv, attack, branches.features, branches.head)
            with precision.use(self.suite.precision):
                metrics = {**task.run(model, data), **pipeline_stats}
        task_seconds = time.perf_counter() - task_start
        row = cell_row(
            self.graph,
            cell,
            attack=attack,
            model=model,
            task=task,
            test_size=len(test),
            stage_keys={"attack": attack_key, "defense": defense_key},
            metrics=metrics,
            timings=self.costs(node, attack_key, defense_key)
            | {"task": task_seconds, "cell": time.perf_counter() - start},
            records=ctx.records,
            device=self.device,
        )
        self.store.put(row)
        self.stages.on_stage("computed", "task", node.key, node.label)
        return row

    def costs(self, node: Stage, attack_key: str, defense_key: str) -> dict[str, Any]:
        """The logged cost of the stages a cell reads, wherever they ran (this process or a Slurm
        job): its attack fit and defense tuning (``None`` when this work directory's log lacks them),
        and the logged seconds of every stage of its closure, summed by kind."""
        stages = list(node.closure())[:-1]
        logged = self.store.stage_seconds([attack_key, defense_key, *(s.key for s in stages)])
        by_kind: dict[str, float] = {}
        for stage in stages:
            by_kind[stage.kind] = by_kind.get(stage.kind, 0.0) + logged.get(stage.key, 0.0)
        return {
            "attack_fit": logged.get(attack_key),
            "defense_fit": logged.get(defense_key),
            "stages": by_kind,
        }

    def store_failed(self, cell: Cell, exc: CellFailed) -> None:
        """Store ``cell`` as failed with ``exc``'s one-line reason and the stage that raised it."""
        self.store.put_failed(failed_row(self.graph, cell, exc, self.device))

    def pending(self, cells: list[Cell]) -> list[Cell]:
        """Cells without a stored result, and those reading a stage that ``force`` names."""
        return [
            c for c in cells if self.force.hits(self.graph.task(c)) or not self.store.has(self.cell_key(c))
        ]
