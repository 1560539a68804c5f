"""The stage graph of a suite: every stage's key derived once, from resolved inputs, before any work.

A stage's key is the hash of its resolved parameters (every declared default filled in), the
plugin's code version (provider + source hash, :mod:`zepad_bench.code_version`), its fingerprint,
and the keys of the stages it reads. A cell's key is the key of its task stage, so a changed
default, an edited plugin module or a replaced unpinned checkpoint changes exactly the keys of
the stages downstream of it, and ``pending()`` sees those cells as not done. The runner asks this
graph for every key it stores under; it derives none itself.

    dataset ─┬─ encoder ─┬─ attack ─┬─ adversarial (transfer) ─┬─ features ─┬─ task (= the cell)
             │           │          └─ adaptive ───────────────┤            │
             │           └─ defense ───────────────────────────┴─ head ─────┤
             └──────────────────────────────────────────────────────────────┘

Features and heads are derived when a task asks for them: their keys need the tuned defense's
branch names and the task's head settings (:data:`ON_DEMAND`), nothing a trained weight holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from zepad_bench.cache import content_key
from zepad_bench.code_version import code_version
from zepad_bench.context import RunContext
from zepad_bench.errors import UserError
from zepad_bench.interfaces import TRANSFER_SCENARIOS
from zepad_bench.params import resolved
from zepad_bench.registry import KINDS, Registry
from zepad_bench.suite import KIND_OF, Cell, Suite, instantiate

SPLITS = ("train", "test")

STAGE_KINDS = (
    "dataset",
    "encoder",
    "attack",
    "defense",
    "adversarial",
    "adaptive",
    "features",
    "head",
    "task",
)
ON_DEMAND = ("features", "head")
"""Stages a task stage reads that are derived when the task asks (:meth:`StageGraph.features`,
:meth:`StageGraph.head`), so they are not in its :meth:`Stage.closure`."""


@dataclass(frozen=True, eq=False)
class Stage:
    """One node: its kind, key, the plugin it runs (``None`` for derived stages), what it reads."""

    kind: str
    key: str
    label: str
    material: dict[str, Any] = field(repr=False)
    plugin: str | None = None
    inputs: tuple[Stage, ...] = field(default=(), repr=False)
    args: tuple[Any, ...] = ()
    """What the runner's method for this stage takes (encoders: id and seed), for executors."""

    def closure(self) -> Iterator[Stage]:
        """This stage and every stage it reads, inputs before readers, each once."""
        seen: set[tuple[str, str]] = set()

        def visit(stage: Stage) -> Iterator[Stage]:
            if (stage.kind, stage.key) in seen:
                return
            seen.add((stage.kind, stage.key))
            for parent in stage.inputs:
                yield from visit(parent)
            yield stage

        yield from visit(self)


def _node(kind: str, label: str, material: dict[str, Any], plugin=None, inputs=(), args=()) -> Stage:
    key = content_key({"stage": kind, **material})
    return Stage(kind, key, label, material, plugin, tuple(inputs), tuple(args))


class StageGraph:
    """Stages of ``suite`` (memoised): the one place where keys are derived."""

    def __init__(self, suite: Suite, registry: Registry):
        self.suite, self.registry = suite, registry
        self._memo: dict[tuple, Stage] = {}

    def _plugin_material(self, section: str, id_: str, drop: tuple[str, ...] = ()) -> dict[str, Any]:
        spec = self.suite.spec(section, id_)
        kind = KIND_OF[section]
        cls = self.registry.get(kind, spec.plugin)
        plugin = instantiate(self.suite, self.registry, section, id_, eps=self.suite.grid["eps"][0])
        plugin.ctx = RunContext(plugins=self.registry.get)  # code_dependencies() may look plugins up
        code = code_version(cls, self.registry.provider(kind, spec.plugin))
        return {
            "plugin": spec.plugin,
            "params": resolved(cls, spec.params, drop),
            "code": [code, *(code_version(dep, dep.__module__) for dep in plugin.code_dependencies())],
            "fingerprint": plugin.fingerprint(),
        }

    def _node(
        self, kind: str, label: str, material: dict[str, Any], plugin=None, inputs=(), args=()
    ) -> Stage:
        """A stage of this suite; under ``precision = "bf16"`` every stage but data is keyed apart."""
        if self.suite.precision != "fp32" and kind != "dataset":  # fp32 keys: as before the option
            material = {**material, "precision": self.suite.precision}
        return _node(kind, label, material, plugin, inputs, args)

    def _memoised(self, key: tuple, build) -> Stage:
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def dataset(self, id_: str, split: str, seed: int) -> Stage:
        """A split of a dataset; the seed splits sets without an official split and samples data."""

        def build() -> Stage:
            material = {
                **self._plugin_material("datasets", id_),
                "split": split,
                "image_size": self.suite.image_size,
                "seed": seed,
            }
            plugin = self.suite.spec("datasets", id_).plugin
            return self._node("dataset", f"{id_}:{split} (seed {seed})", material, plugin)

        return self._memoised(("dataset", id_, split, seed), build)

    def encoder(self, id_: str, seed: int) -> Stage:
        """A public encoder; pretrained inside the suite per seed (a loaded file is the same for all)."""

        def build() -> Stage:
            data_id = self.suite.spec("encoders", id_).reserved.get("data")
            data = self.dataset(data_id, "train", seed) if data_id else None
            material = {
                **self._plugin_material("encoders", id_),
                "data": data.key if data else None,
                "image_size": self.suite.image_size,
                "seed": seed,
            }
            plugin = self.suite.spec("encoders", id_).plugin
            inputs = [data] if data else []
            return self._node("encoder", f"{id_} (seed {seed})", material, plugin, inputs, (id_, seed))

        return self._memoised(("encoder", id_, seed), build)

    def attacker_data(self, attack_id: str) -> str:
        return self.suite.spec("attacks", attack_id).reserved.get("data", self.suite.attacker_data)

    def attack(self, cell: Cell) -> Stage:
        """The fitted attack: on the public surrogates (transfer scenarios), or on every branch of the
        defended model (``defense-aware``, ``adaptive``): then the defense's tuning is its input."""
        if cell.scenario in TRANSFER_SCENARIOS:
            surrogate_ids = self.suite.surrogates(cell.victim, cell.scenario)
            reads = ("public", *surrogate_ids)
        else:
            surrogate_ids = [f"{cell.defense}'s branches"]
            reads = ("defended", cell.defense, cell.victim, cell.tuning)

        def build() -> Stage:
            if reads[0] == "public":
                surrogates = [self.encoder(i, cell.seed) for i in surrogate_ids]
            else:
                surrogates = [self.defense(cell)]
            data = self.dataset(self.attacker_data(cell.attack), "train", cell.seed)
            material = {
                **self._plugin_material("attacks", cell.attack),
                "eps": cell.eps,
                "surrogates": [s.key for s in surrogates],
                "data": data.key,
                "batch_size": self.suite.batch_size,
                "seed": cell.seed,
            }
            label = f"{cell.attack}@{cell.eps:.4f} on {'+'.join(surrogate_ids)} (seed {cell.seed})"
            plugin = self.suite.spec("attacks", cell.attack).plugin
            return self._node("attack", label, material, plugin, [*surrogates, data])

        return self._memoised(("attack", cell.attack, cell.eps, reads, cell.seed), build)

    def defense(self, cell: Cell) -> Stage:
        def build() -> Stage:
            spec = self.suite.spec("defenses", cell.defense)
            cls = self.registry.get("defenses", spec.plugin)
            victim = self.encoder(cell.victim, cell.seed)
            auxiliaries = [self.encoder(i, cell.seed) for i in self.suite.auxiliaries(cell.victim)]
            data = self.dataset(cell.tuning, "train", cell.seed)
            material = {
                **self._plugin_material("defenses", cell.defense, drop=tuple(cls.inference_params)),
                "victim": victim.key,
                "auxiliaries": [a.key for a in auxiliaries],
                "data": data.key,
                "seed": cell.seed,
            }
            label = f"{cell.defense} for {cell.victim} on D_f={cell.tuning} (seed {cell.seed})"
            return self._node("defense", label, material, spec.plugin, [victim, *auxiliaries, data])

        return self._memoised(("defense", cell.defense, cell.victim, cell.tuning, cell.seed), build)

    def roles(self, cell: Cell) -> dict[str, str]:
        """The cell's attack and task plugins and the attack's and defense's roles, as a row's config
        states them (for cells without a result: failed or pending)."""
        attack = self.suite.spec("attacks", cell.attack).plugin
        defense = self.suite.spec("defenses", cell.defense).plugin
        return {
            "attack_plugin": attack,
            "attack_role": self.registry.get("attacks", attack).role,
            "defense_role": self.registry.get("defenses", defense).role,
            "task_plugin": self.suite.spec("tasks", cell.task).plugin,
        }

    def task_data(self, cell: Cell) -> str:
        """The id of the dataset the cell's task runs on."""
        return self.suite.spec("tasks", cell.task).reserved["data"]

    def adversarial(self, cell: Cell) -> Stage:
        """The attacked test split of the cell's task dataset (transfer and defense-aware scenarios)."""
        attack, test = self.attack(cell), self.dataset(self.task_data(cell), "test", cell.seed)

        def build() -> Stage:
            material = {"attack": attack.key, "data": test.key, "batch_size": self.suite.batch_size}
            label = f"{attack.label.split(' on ')[0]} on {test.label}"
            return self._node("adversarial", label, material, None, [attack, test])

        return self._memoised(("adversarial", attack.key, test.key), build)

    def adaptive(self, cell: Cell) -> Stage:
        """The test split attacked per sample through the task's whole pipeline (``adaptive`` scenario).

        Its key holds everything the attacked pipeline reads: the fitted attack (on the defended
        model), the defense's tuning and its inference params (fusion rule and settings, detection
        threshold), the task plugin with its resolved params and code version (they choose the heads
        and the attack's objective), the train split (heads are trained on it; retrieval's gallery)
        and the test split, the seed, the batch size and (through :meth:`_node`) the precision.
        """

        def build() -> Stage:
            attack, defense = self.attack(cell), self.defense(cell)
            train, test = self._task_splits(cell)
            material = {
                "attack": attack.key,
                "defense": defense.key,
                "defense_inference": self._inference_params(cell),
                "task": self._plugin_material("tasks", cell.task),
                "train": train.key,
                "test": test.key,
                "seed": cell.seed,
                "batch_size": self.suite.batch_size,
            }
            label = f"{cell.attack}@{cell.eps:.4f} adaptive on {cell.defense}/{cell.task} (seed {cell.seed})"
            return self._node("adaptive", label, material, None, [attack, defense, train, test])

        return self._memoised(("adaptive", cell), build)

    def attacked(self, cell: Cell) -> Stage:
        """The cell's attacked test images: :meth:`adaptive` in that scenario, else :meth:`adversarial`."""
        return self.adaptive(cell) if cell.scenario == "adaptive" else self.adversarial(cell)

    def images(self, cell: Cell, which: str) -> Stage:
        """The stage of the cell's task images ``which`` ∈ {"train", "test", "test_adv"}."""
        if which == "test_adv":
            return self.attacked(cell)
        if which not in SPLITS:
            raise ValueError(f"which must be train, test or test_adv, got {which!r}")
        return self.dataset(self.task_data(cell), which, cell.seed)

    def features(self, cell: Cell, branch: str, which: str) -> Stage:
        """Features of the defended model's branch ``branch`` on the cell's images ``which``; shared by
        every task and cell on the same images (the key holds no task)."""
        defense, images = self.defense(cell), self.images(cell, which)

        def build() -> Stage:
            material = {"defense": defense.key, "branch": branch, "images": images.key}
            return self._node("features", f"{branch} on {which}", material, None, [defense, images])

        return self._memoised(("features", defense.key, branch, images.key), build)

    def head(self, cell: Cell, branch: str, params: dict[str, Any]) -> Stage:
        """A head trained on branch ``branch``'s frozen features of the task's train split, with
        :func:`zepad_bench.nn.heads.train_head` settings ``params`` (seed included, device excluded)."""
        defense, train = self.defense(cell), self.images(cell, "train")
        features = self.features(cell, branch, "train")

        def build() -> Stage:
            material = {"defense": defense.key, "branch": branch, "data": train.key, "params": params}
            label = f"{branch} on {self.task_data(cell)}"
            return self._node("head", label, material, None, [defense, train, features])

        return self._memoised(("head", defense.key, branch, train.key, content_key(params)), build)

    def task(self, cell: Cell) -> Stage:
        """The cell itself: its key is the results store's row key (and the key of its records)."""

        def build() -> Stage:
            attack, defense, attacked = self.attack(cell), self.defense(cell), self.attacked(cell)
            train, test = self._task_splits(cell)
            material = {
                **self._plugin_material("tasks", cell.task),
                "suite": self.suite.name,
                "cell": cell.__dict__,
                "attack": attack.key,
                "defense": defense.key,
                # fusion and detection settings act after the tuning: they are part of the cell
                "defense_inference": self._inference_params(cell),
                "adversarial": attacked.key,
                "train": train.key,
                "test": test.key,
                "batch_size": self.suite.batch_size,
            }
            plugin = self.suite.spec("tasks", cell.task).plugin
            return self._node(
                "task", cell.label(), material, plugin, [attack, defense, attacked, train, test]
            )

        return self._memoised(("task", cell), build)

    def _task_splits(self, cell: Cell) -> tuple[Stage, Stage]:
        return self.images(cell, "train"), self.images(cell, "test")

    def _inference_params(self, cell: Cell) -> dict[str, Any]:
        """The defense table's resolved params that act only when fusing or detecting."""
        spec = self.suite.spec("defenses", cell.defense)
        cls = self.registry.get("defenses", spec.plugin)
        return {k: v for k, v in resolved(cls, spec.params).items() if k in cls.inference_params}


@dataclass(frozen=True)
class ForceSpec:
    """What ``--force`` recomputes: ``all``, stage kinds (``attack``) or plugins (``attack:uap``, ``uap``);
    every stage downstream of a forced one is recomputed too."""

    targets: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, value: bool | str | Sequence[str] | None) -> ForceSpec:
        if value is None or value is False:
            return cls()
        if value is True:
            return cls(frozenset({"all"}))
        values = [value] if isinstance(value, str) else list(value)
        targets = frozenset(v.strip() for item in values for v in item.split(",") if v.strip())
        for target in targets:
            kind, sep, _ = target.partition(":")
            if sep and kind not in STAGE_KINDS:
                raise UserError(
                    f"--force {target!r}: unknown stage {kind!r}; known: {', '.join(STAGE_KINDS)}"
                )
        return cls(targets)

    def __bool__(self) -> bool:
        return bool(self.targets)

    def matches(self, kind: str, plugin: str | None) -> bool:
        if not self.targets:
            return False
        if "all" in self.targets or kind in self.targets:
            return True
        return plugin is not None and (plugin in self.targets or f"{kind}:{plugin}" in self.targets)

    def check_known(self, registry: Registry) -> None:
        """A target naming no stage kind and no registered plugin is a one-line error."""
        plugins = {name for kind in KINDS for name in registry.kind(kind)}
        for target in self.targets - {"all", *STAGE_KINDS}:
            name = target.partition(":")[2] or target
            if name not in plugins:
                raise UserError(
                    f"--force {target!r}: no stage or plugin of that name; use all, a stage "
                    f"({', '.join(STAGE_KINDS)}), a plugin name or stage:plugin"
                )

    def hits(self, stage: Stage) -> bool:
        """Whether ``stage`` or any stage it reads is forced (a task reads the :data:`ON_DEMAND` ones)."""
        on_demand = ON_DEMAND if stage.kind == "task" else ()
        return any(self.matches(s.kind, s.plugin) for s in stage.closure()) or any(
            self.matches(kind, None) for kind in on_demand
        )
