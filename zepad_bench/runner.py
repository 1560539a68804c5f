"""Runs suite cells through the cached stages: dataset → encoder → attack fit → defense fit → task."""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zepad_bench.cache import ArtifactCache, content_key
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages, UnlabeledBatches
from zepad_bench.interfaces import TRANSFER_SCENARIOS, Branch, DefendedModel, TaskData
from zepad_bench.locks import stage_lock
from zepad_bench.nn import precision
from zepad_bench.nn.batched import extract_features_together, groups_by_architecture
from zepad_bench.nn.codec import head_from_state, head_state
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.heads import train_head
from zepad_bench.registry import Registry
from zepad_bench.stages import ForceSpec, StageGraph
from zepad_bench.store import ResultStore
from zepad_bench.suite import Cell, Suite, instantiate

SPLITS = ("train", "test")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        from zepad_bench.errors import UserError

        raise UserError(f"device {device!r} requested but CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; on CUDA also ask cuDNN for deterministic kernels (CPU runs are
    bit-reproducible; GPU runs are as reproducible as torch's CUDA kernels allow)."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def machine_info(device: str) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": _cpu_count(),
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


BUDGET_TOLERANCE = 1e-5
"""Float slack of the budget check (uint8 images made float, then perturbed in float32)."""


def check_budget(attack, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    """The attack contract, checked on every attacked batch: same shape, ‖x_adv − x‖∞ ≤ ε and, for
    attacks that clamp (our protocol), values in [0, 1]. A violation fails the cell (never clipped)."""
    from zepad_bench.errors import CellFailed

    who = f"attack plugin {attack.name!r}"
    if x_adv.shape != x.shape:
        raise CellFailed(f"{who} returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise CellFailed(f"{who} returned non-finite pixel values")
    norm = (x_adv - x).abs().max().item()
    if norm > attack.eps + BUDGET_TOLERANCE:
        raise CellFailed(
            f"{who} broke its budget: ‖x_adv − x‖∞ = {norm:.4f} ({norm * 255:.1f}/255) "
            f"> ε = {attack.eps:.4f} ({attack.eps * 255:.1f}/255)"
        )
    low, high = x_adv.min().item(), x_adv.max().item()
    if attack.clamp and (low < -BUDGET_TOLERANCE or high > 1 + BUDGET_TOLERANCE):
        raise CellFailed(f"{who} returned pixels in [{low:.3f}, {high:.3f}], outside [0, 1]")


class Runner:
    """Executes cells; every stage's output is cached under the hash of its resolved config and inputs."""

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
        self.cache, self.store = ArtifactCache(self.workdir), ResultStore(self.workdir)
        self.device = resolve_device(device or suite.device)
        self.force = force if isinstance(force, ForceSpec) else ForceSpec.parse(force)
        self.progress = progress
        self.graph = StageGraph(suite, registry)
        self.log = log or (lambda message: None)
        self._memo: dict[tuple[str, str], Any] = {}
        self._fresh: set[str] = set()  # keys computed in this run (forcing propagates downstream)
        self.since = since or _now("microseconds")  # start of the run (a Slurm run's jobs share the driver's)
        self.computed: Counter[str] = Counter()
        self.reused: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}

    # ------------------------------------------------------------------ stage machinery
    def _ctx(self, seed: int) -> RunContext:
        return RunContext(
            device=self.device, seed=seed, image_size=self.suite.image_size, progress=self.progress
        )

    def _stage(
        self,
        stage: str,
        material: dict[str, Any],
        label: str,
        seed: int,
        compute: Callable[[], Any],
        encode: Callable[[Any], Any],
        decode: Callable[[Any], Any],
    ) -> tuple[Any, str]:
        key = content_key({"stage": stage, **material})
        if (stage, key) in self._memo:
            return self._memo[(stage, key)], key
        forced = self._forced(stage, key, material)
        value = _MISSING if forced else self._cached(stage, key, label, decode)
        if value is not _MISSING:
            self._memo[(stage, key)] = value
            return value, key
        with stage_lock(self.workdir, stage, key):
            # a concurrent job (Slurm) may have made it while this one waited for the lock
            forced = forced and not self.store.computed_since(key, self.since)
            value = _MISSING if forced else self._cached(stage, key, label, decode)
            if value is _MISSING:
                value = self._compute(stage, key, material, label, seed, compute, encode)
        self._memo[(stage, key)] = value
        return value, key

    def _cached(self, stage: str, key: str, label: str, decode: Callable[[Any], Any]) -> Any:
        """The decoded artifact of ``key``, or ``_MISSING`` (absent, or written by an older plugin
        version in a form that no longer decodes: then it is made anew)."""
        if not self.cache.has(stage, key):
            return _MISSING
        try:
            value = decode(self.cache.load(stage, key))
        except Exception as exc:
            self.log(f"{stage:<9} {label}: cached artifact does not decode ({_one_line(exc)}); recomputing")
            return _MISSING
        self.reused[stage] += 1
        return value

    def _compute(
        self,
        stage: str,
        key: str,
        material: dict[str, Any],
        label: str,
        seed: int,
        compute: Callable[[], Any],
        encode: Callable[[Any], Any],
    ) -> Any:
        seed_everything(seed)
        start = time.perf_counter()
        with precision.use(self.suite.precision):
            value = compute()
        seconds = time.perf_counter() - start
        self.cache.save(stage, key, encode(value), material)
        self.store.log_stage(stage, key, label, seconds, self.suite.name, _now("microseconds"))
        self.computed[stage] += 1
        self._fresh.add(key)
        self.seconds[key] = seconds
        self.log(f"{stage:<9} {label}  [{seconds:.1f}s]")
        return value

    def _forced(self, stage: str, key: str, material: dict[str, Any]) -> bool:
        """``--force`` names this stage (kind or plugin) or a stage it reads was recomputed by force,
        and no job of this run (``since``) has recomputed it yet."""
        if not self.force or key in self._fresh:
            return False
        fresh = self._fresh | self.store.keys_computed_since(self.since)
        if key in fresh:
            return False
        return self.force.matches(stage, material.get("plugin")) or _mentions(material, fresh)

    # ------------------------------------------------------------------ stages
    def dataset(self, id_: str, split: str, seed: int) -> tuple[LabeledImages, str]:
        """A dataset split; sets without an official split are split (and sampled) by ``seed``."""
        material = self.graph.dataset(id_, split, seed).material

        def compute() -> LabeledImages:
            source = instantiate(self.suite, self.registry, "datasets", id_)
            source.ctx = self._ctx(seed)
            data = source.load(split, self.suite.image_size, seed)
            data.name = id_
            return data

        def encode(d: LabeledImages) -> dict[str, Any]:
            return {"images": d.images, "labels": d.labels, "classes": list(d.classes), "indices": d.indices}

        def decode(s: dict[str, Any]) -> LabeledImages:
            return LabeledImages(s["images"], s["labels"], s["classes"], id_, s["indices"])

        data, key = self._stage(
            "dataset", material, f"{id_}:{split} (seed {seed})", seed, compute, encode, decode
        )
        # identical tables share one artifact; each id keeps its own name (tasks match heads by it)
        return dataclasses.replace(data, name=id_), key

    def encoder(self, id_: str, seed: int) -> tuple[Encoder, str]:
        """A public encoder; one pretrained inside the suite is pretrained per ``seed`` (a loaded
        checkpoint is the same file for every seed)."""
        spec = self.suite.spec("encoders", id_)
        data_id = spec.reserved.get("data")
        data, _ = self.dataset(data_id, "train", seed) if data_id else (None, None)
        material = self.graph.encoder(id_, seed).material

        def compute() -> Encoder:
            source = instantiate(self.suite, self.registry, "encoders", id_)
            source.ctx = self._ctx(seed)
            return source.build(data)

        def decode(state: dict[str, Any]) -> Encoder:
            encoder = Encoder.from_state(state).to(self.device).eval()
            return encoder

        encoder, key = self._stage(
            "encoder", material, f"{id_} (seed {seed})", seed, compute, lambda e: e.to_state(), decode
        )
        return encoder.to(self.device).eval(), key

    def attack(self, cell: Cell):
        _, surrogates = self._attacked_encoders(cell)
        encoders = [e for e, _ in surrogates]
        data, _ = self.dataset(self.graph.attacker_data(cell.attack), "train", cell.seed)
        node = self.graph.attack(cell)

        def new_attack():
            attack = instantiate(self.suite, self.registry, "attacks", cell.attack, eps=cell.eps)
            attack.ctx = self._ctx(cell.seed)
            attack.encoders = encoders
            return attack

        def compute():
            attack = new_attack()
            images = UnlabeledBatches(data.images, self.suite.batch_size, seed=cell.seed, device=self.device)
            attack.fit(encoders, images)
            return _round_trip(attack, new_attack, images, perturbs=cell.scenario != "adaptive")

        def decode(state: dict[str, Any]):
            attack = new_attack()
            attack.load_state_dict(state)
            return attack

        return self._stage(
            "attack", node.material, node.label, cell.seed, compute, lambda a: a.state_dict(), decode
        )

    def _attacked_encoders(self, cell: Cell) -> tuple[list[str], list[tuple[Encoder, str]]]:
        """Names and ``(encoder, cache key)`` of the encoders an attack is fitted on: the public
        surrogates (transfer scenarios), or every branch of the defended model (``defense-aware``,
        ``adaptive``), keyed by the defense's tuning so the attack is refitted per defense."""
        if cell.scenario in TRANSFER_SCENARIOS:
            ids = self.suite.surrogates(cell.victim, cell.scenario)
            return ids, [self.encoder(i, cell.seed) for i in ids]
        model, defense_key = self.defense(cell)
        names = [b.name for b in model.branches]
        return names, [(b.encoder, f"{defense_key}:{b.name}") for b in model.branches]

    def adaptive_adversarial(
        self,
        cell: Cell,
        attack,
        attack_key: str,
        model: DefendedModel,
        task,
        data: TaskData,
        test_key: str,
    ) -> tuple[torch.Tensor, torch.Tensor, str, dict[str, float]] | None:
        """``adaptive`` scenario: the task's own decision (``task.adaptive_target``) attacked per batch
        with the test labels (:func:`zepad_bench.pipeline.evaluate`): the attacked images, the test rows
        they come from (a seeded subset when ``attack.samples`` is set), the stage key and the metrics of
        the attack (robust accuracy after each member, re-check, gradient sanity). ``None`` when the task
        has no adaptive attack. Keyed by the fitted attack (whose key includes the defense's tuning), the
        task's resolved params and code, the defense's inference params and the train and test data."""
        from zepad_bench.pipeline import evaluate

        target = task.adaptive_target(model, data)
        if target is None:
            return None
        node = self.graph.task(cell).material
        material = {
            "attack": attack_key,
            "task": {k: node[k] for k in ("plugin", "params", "code", "defense_inference", "train")},
            "test": test_key,
            "batch_size": self.suite.batch_size,
        }

        def compute() -> dict[str, Any]:
            ctx = self._ctx(cell.seed)
            run = evaluate(
                attack,
                target,
                data.test.float_images(slice(None)),
                data.test.labels,
                self.suite.batch_size,
                ctx.generator(0xADA),
                check=lambda x, x_adv: check_budget(attack, x, x_adv),
                track=ctx.track,
            )
            return {"images": run.images, "indices": run.indices, "stats": run.metrics}

        label = f"{attack.name}@{cell.eps:.4f} adaptive on {cell.defense}/{cell.task} (seed {cell.seed})"
        value, key = self._stage("adaptive", material, label, cell.seed, compute, lambda v: v, lambda v: v)
        return value["images"], value["indices"], key, dict(value["stats"])

    def defense(self, cell: Cell) -> tuple[DefendedModel, str]:
        victim, _ = self.encoder(cell.victim, cell.seed)
        auxiliaries = [self.encoder(i, cell.seed) for i in self.suite.auxiliaries(cell.victim)]
        data, _ = self.dataset(cell.tuning, "train", cell.seed)
        material = self.graph.defense(cell).material

        def new_defense():
            defense = instantiate(self.suite, self.registry, "defenses", cell.defense)
            defense.ctx = self._ctx(cell.seed)
            return defense

        def compute() -> DefendedModel:
            return new_defense().fit(victim.copy(), [a.copy() for a, _ in auxiliaries], data)

        def encode(model: DefendedModel) -> dict[str, Any]:
            return {
                "info": model.info,
                "branches": [
                    {
                        "name": b.name,
                        "role": b.role,
                        "encoder": b.encoder.to_state(),
                        "head": head_state(b.head),
                        "head_data": b.head_data,
                    }
                    for b in model.branches
                ],
            }

        def decode(state: dict[str, Any]) -> DefendedModel:
            branches = [
                Branch(
                    b["name"],
                    b["role"],
                    Encoder.from_state(b["encoder"]),
                    head_from_state(b["head"]),
                    b["head_data"],
                )
                for b in state["branches"]
            ]
            return DefendedModel(branches, new_defense(), state["info"])

        label = f"{cell.defense} for {cell.victim} on D_f={cell.tuning} (seed {cell.seed})"
        tuned, key = self._stage("defense", material, label, cell.seed, compute, encode, decode)
        # the tuning may be shared by defense tables that differ only in inference params: fuse and
        # detect with this cell's own settings
        model = DefendedModel(tuned.branches, new_defense(), tuned.info)
        for branch in model.branches:
            branch.encoder.to(self.device).eval()
            if branch.head is not None:
                branch.head.to(self.device).eval()
        return model, key

    def adversarial(
        self, attack, attack_key: str, data: LabeledImages, data_key: str, seed: int
    ) -> torch.Tensor:
        """The attacked test images (float, CPU), computed once per (fitted attack, dataset split)."""
        material = {"attack": attack_key, "data": data_key, "batch_size": self.suite.batch_size}

        def compute() -> torch.Tensor:
            out = []
            batches = range(0, len(data), self.suite.batch_size)
            for start in self._ctx(seed).track(batches, f"perturb {data.name}"):
                x = data.float_images(slice(start, start + self.suite.batch_size)).to(self.device)
                x_adv = attack.perturb(x).detach().float()
                check_budget(attack, x, x_adv)
                out.append(x_adv.cpu())
            return torch.cat(out)

        adv, _ = self._stage(
            "adversarial",
            material,
            f"{attack.name} on {data.name}:test",
            seed,
            compute,
            lambda t: t,
            lambda t: t,
        )
        return adv

    def _feature_fn(
        self, model: DefendedModel, defense_key: str, images: dict[str, tuple[Any, str]], seed: int
    ):
        together: dict[tuple[int, str], torch.Tensor] = {}

        def features(branch: int, which: str) -> torch.Tensor:
            source, source_key = images[which]
            material = {"defense": defense_key, "branch": model.branches[branch].name, "images": source_key}
            tensor = source.images if isinstance(source, LabeledImages) else source

            def compute() -> torch.Tensor:
                # branches of one architecture are evaluated together (nn.batched); the others' features
                # wait in `together` until their own (cached) stage asks for them
                if (branch, which) not in together:
                    encoders = [b.encoder for b in model.branches]
                    group = next(g for g in groups_by_architecture(encoders) if branch in g)
                    feats = extract_features_together(
                        [encoders[i] for i in group], tensor, self.suite.batch_size, self.device
                    )
                    together.update({(i, which): f for i, f in zip(group, feats)})
                return together.pop((branch, which))

            value, _ = self._stage(
                "features",
                material,
                f"{model.branches[branch].name} on {which}",
                seed,
                compute,
                lambda t: t,
                lambda t: t,
            )
            return value

        return features

    def _head_fn(self, model: DefendedModel, defense_key: str, train: tuple[LabeledImages, str], features):
        def head(branch: int, params: dict[str, Any]) -> torch.nn.Module:
            data, data_key = train
            params = {**params, "device": self.device}
            material = {
                "defense": defense_key,
                "branch": model.branches[branch].name,
                "data": data_key,
                "params": {k: v for k, v in params.items() if k != "device"},
            }

            def compute() -> torch.nn.Module:
                return train_head(
                    features(branch, "train"),
                    data.labels,
                    data.num_classes,
                    track=self._ctx(0).track,
                    **params,
                )

            value, _ = self._stage(
                "head",
                material,
                f"{model.branches[branch].name} on {data.name}",
                int(params.get("seed", 0)),
                compute,
                head_state,
                head_from_state,
            )
            return value.to(self.device)

        return head

    # ------------------------------------------------------------------ cells
    def cell_key(self, cell: Cell) -> str:
        """The key of the cell's task stage: derived from the keys of every stage the cell reads."""
        return self.graph.task(cell).key

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        start = time.perf_counter()
        attack, attack_key = self.attack(cell)
        model, defense_key = self.defense(cell)
        task_spec = self.suite.spec("tasks", cell.task)
        train, train_key = self.dataset(task_spec.reserved["data"], "train", cell.seed)
        test, test_key = self.dataset(task_spec.reserved["data"], "test", cell.seed)
        task = instantiate(self.suite, self.registry, "tasks", cell.task)
        ctx = self._ctx(cell.seed)
        task.ctx = ctx
        images = {"train": (train, train_key), "test": (test, test_key)}
        feature_fn = self._feature_fn(model, defense_key, images, cell.seed)
        head_fn = self._head_fn(model, defense_key, (train, train_key), feature_fn)
        pipeline_stats: dict[str, float] = {}
        adaptive = None
        if cell.scenario == "adaptive":
            clean_data = TaskData(train, test, test.float_images(slice(None)), attack, feature_fn, head_fn)
            adaptive = self.adaptive_adversarial(cell, attack, attack_key, model, task, clean_data, test_key)
            if adaptive is not None:
                test_adv, rows, adv_key, pipeline_stats = adaptive
                if len(rows) < len(test):  # a seeded subset was attacked: the task scores those rows
                    test = test.subset(rows)
                    images["test"] = (test, content_key({"rows": adv_key, "of": test_key}))
        else:
            test_adv = self.adversarial(attack, attack_key, test, test_key, cell.seed)
            adv_key = self.graph.adversarial(cell).key
        seed_everything(cell.seed)
        task_start = time.perf_counter()
        if cell.scenario == "adaptive" and adaptive is None:  # no adaptive attack on this task's terms
            metrics: dict[str, Any] = dict.fromkeys(("BA", "RA", "ASR", *task.report_metrics), "n/a")
        else:
            images["test_adv"] = (test_adv, adv_key)
            data = TaskData(train, test, test_adv, attack, feature_fn, head_fn)
            with precision.use(self.suite.precision):
                metrics = {**task.run(model, data), **pipeline_stats}
        task_seconds = time.perf_counter() - task_start
        key = self.cell_key(cell)
        if ctx.records:
            self.cache.save(
                "records", key, {k: v.cpu() if hasattr(v, "cpu") else v for k, v in ctx.records.items()}
            )
        row = {
            "key": key,
            "suite": self.suite.name,
            **cell.__dict__,
            "task_data": task_spec.reserved["data"],
            "metrics": metrics,
            "config": {
                "cell": cell.__dict__,
                "attack_plugin": attack.name,
                "attack_role": attack.role,
                "defense_role": model.defense.role,
                "report_metrics": list(task.report_metrics),
                "task_plugin": task.name,
                "surrogates": self.suite.surrogates(cell.victim, cell.scenario),
                "test_size": len(test),
                "precision": self.suite.precision,
                "attack_key": attack_key,
                "defense_key": defense_key,
                "branches": [{"name": b.name, "role": b.role} for b in model.branches],
            },
            "versions": self.versions(cell),
            "timings": {
                "attack_fit": self.seconds.get(attack_key, 0.0),
                "defense_fit": self.seconds.get(defense_key, 0.0),
                "task": task_seconds,
                "cell": time.perf_counter() - start,
            },
            "machine": machine_info(self.device),
            "created": _now(),
        }
        self.store.put(row)
        return row

    def versions(self, cell: Cell) -> dict[str, str]:
        import zepad_bench

        used = {
            ("attacks", self.suite.spec("attacks", cell.attack).plugin),
            ("defenses", self.suite.spec("defenses", cell.defense).plugin),
            ("tasks", self.suite.spec("tasks", cell.task).plugin),
        }
        out = {
            "zepad-bench": zepad_bench.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
        for kind, name in sorted(used):
            out[f"{kind[:-1]}:{name}"] = str(self.registry.provider(kind, name))
        return out

    def pending(self, cells: list[Cell]) -> list[Cell]:
        """Cells without a stored result, and those reading a stage that ``force`` names."""
        return [
            c for c in cells if self.force.hits(self.graph.task(c)) or not self.store.has(self.cell_key(c))
        ]


_MISSING = object()


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _mentions(material: Any, keys: set[str]) -> bool:
    """Whether ``material`` holds one of ``keys`` (the keys of the stages it reads) anywhere."""
    if isinstance(material, str):
        return material in keys
    if isinstance(material, dict):
        return any(_mentions(v, keys) for v in material.values())
    if isinstance(material, (list, tuple)):
        return any(_mentions(v, keys) for v in material)
    return False


def _round_trip(attack, new_attack: Callable[[], Any], images, perturbs: bool = True) -> Any:
    """The fitted attack as a later run will load it: ``state_dict()`` through ``torch.save``/``load``
    (weights only) into a fresh instance, which must perturb a batch (``perturbs``; an adaptive
    attack perturbs a pipeline, not a batch). A state that does not survive is a one-line error
    naming the plugin and ``state_dict``, on the first run rather than the rerun."""
    import io

    from zepad_bench.errors import UserError

    x = next(iter(images))[:2]
    if perturbs:
        attack.perturb(x)  # a bug of perturb itself keeps its traceback
    try:
        buffer = io.BytesIO()
        torch.save(attack.state_dict(), buffer)
        buffer.seek(0)
        restored = new_attack()
        restored.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
        if perturbs:
            restored.perturb(x)
    except Exception as exc:
        raise UserError(
            f"attack plugin {attack.name!r}: its fitted state does not survive the cache "
            f"(state_dict() → load_state_dict() → perturb failed: {_one_line(exc)}); keep the fitted "
            "state in tensors or plain data, or override state_dict()/load_state_dict()"
        ) from None
    return restored


def _now(timespec: str = "seconds") -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec=timespec)
