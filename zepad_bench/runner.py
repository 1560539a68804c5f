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
from zepad_bench.nn.encoder import Encoder, extract_features
from zepad_bench.nn.heads import MLPHead, train_head
from zepad_bench.registry import Registry
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


def _head_state(head: torch.nn.Module | None) -> dict[str, Any] | None:
    if head is None:
        return None
    if not isinstance(head, MLPHead):
        raise TypeError(f"branch heads must be MLPHead to be cached, got {type(head).__name__}")
    return {
        "in_dim": head.in_dim,
        "num_classes": head.num_classes,
        "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
    }


def _head_from_state(state: dict[str, Any] | None) -> MLPHead | None:
    if state is None:
        return None
    head = MLPHead(state["in_dim"], state["num_classes"])
    head.load_state_dict(state["state_dict"])
    return head.eval()


class Runner:
    """Executes cells; every stage's output is cached under the hash of its resolved config and inputs."""

    def __init__(
        self,
        suite: Suite,
        registry: Registry,
        workdir: str | Path = ".zepad-bench",
        device: str | None = None,
        force: bool = False,
        progress: Any = None,
        log: Callable[[str], None] | None = None,
    ):
        self.suite, self.registry = suite, registry
        self.workdir = Path(workdir)
        self.cache, self.store = ArtifactCache(self.workdir), ResultStore(self.workdir)
        self.device = resolve_device(device or suite.device)
        self.force, self.progress = force, progress
        self.log = log or (lambda message: None)
        self._memo: dict[tuple[str, str], Any] = {}
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
        if not self.force and self.cache.has(stage, key):
            value = decode(self.cache.load(stage, key))
            self.reused[stage] += 1
        else:
            seed_everything(seed)
            start = time.perf_counter()
            value = compute()
            seconds = time.perf_counter() - start
            self.cache.save(stage, key, encode(value), material)
            self.store.log_stage(stage, key, label, seconds, self.suite.name, _now())
            self.computed[stage] += 1
            self.seconds[key] = seconds
            self.log(f"{stage:<9} {label}  [{seconds:.1f}s]")
        self._memo[(stage, key)] = value
        return value, key

    # ------------------------------------------------------------------ stages
    def dataset(self, id_: str, split: str) -> tuple[LabeledImages, str]:
        spec = self.suite.spec("datasets", id_)
        material = {
            "table": spec.resolved(),
            "split": split,
            "image_size": self.suite.image_size,
            "seed": self.suite.seed,
        }

        def compute() -> LabeledImages:
            source = instantiate(self.suite, self.registry, "datasets", id_)
            source.ctx = self._ctx(self.suite.seed)
            data = source.load(split, self.suite.image_size, self.suite.seed)
            data.name = id_
            return data

        def encode(d: LabeledImages) -> dict[str, Any]:
            return {"images": d.images, "labels": d.labels, "classes": list(d.classes), "indices": d.indices}

        def decode(s: dict[str, Any]) -> LabeledImages:
            return LabeledImages(s["images"], s["labels"], s["classes"], id_, s["indices"])

        data, key = self._stage(
            "dataset", material, f"{id_}:{split}", self.suite.seed, compute, encode, decode
        )
        # identical tables share one artifact; each id keeps its own name (tasks match heads by it)
        return dataclasses.replace(data, name=id_), key

    def encoder(self, id_: str) -> tuple[Encoder, str]:
        spec = self.suite.spec("encoders", id_)
        data_id = spec.reserved.get("data")
        data, data_key = self.dataset(data_id, "train") if data_id else (None, None)
        material = {
            "table": {"plugin": spec.plugin, "params": spec.params},
            "fingerprint": instantiate(self.suite, self.registry, "encoders", id_).fingerprint(),
            "data": data_key,
            "image_size": self.suite.image_size,
            "seed": self.suite.seed,
        }

        def compute() -> Encoder:
            source = instantiate(self.suite, self.registry, "encoders", id_)
            source.ctx = self._ctx(self.suite.seed)
            return source.build(data)

        def decode(state: dict[str, Any]) -> Encoder:
            encoder = Encoder.from_state(state).to(self.device).eval()
            return encoder

        encoder, key = self._stage(
            "encoder", material, id_, self.suite.seed, compute, lambda e: e.to_state(), decode
        )
        return encoder.to(self.device).eval(), key

    def attack(self, cell: Cell):
        spec = self.suite.spec("attacks", cell.attack)
        surrogate_ids, surrogates = self._attacked_encoders(cell)
        encoders = [e for e, _ in surrogates]
        data_id = spec.reserved.get("data", self.suite.attacker_data)
        data, data_key = self.dataset(data_id, "train")
        material = {
            "table": {"plugin": spec.plugin, "params": spec.params},
            "eps": cell.eps,
            "surrogates": [k for _, k in surrogates],
            "data": data_key,
            "batch_size": self.suite.batch_size,
            "seed": cell.seed,
        }

        def new_attack():
            attack = instantiate(self.suite, self.registry, "attacks", cell.attack, eps=cell.eps)
            attack.ctx = self._ctx(cell.seed)
            attack.encoders = encoders
            return attack

        def compute():
            attack = new_attack()
            images = UnlabeledBatches(data.images, self.suite.batch_size, seed=cell.seed, device=self.device)
            attack.fit(encoders, images)
            return attack

        def decode(state: dict[str, Any]):
            attack = new_attack()
            attack.load_state_dict(state)
            return attack

        label = f"{cell.attack}@{cell.eps:.4f} on {'+'.join(surrogate_ids)} (seed {cell.seed})"
        return self._stage("attack", material, label, cell.seed, compute, lambda a: a.state_dict(), decode)

    def _attacked_encoders(self, cell: Cell) -> tuple[list[str], list[tuple[Encoder, str]]]:
        """Names and ``(encoder, cache key)`` of the encoders an attack is fitted on: the public
        surrogates (transfer scenarios), or every branch of the defended model (``defense-aware``,
        ``adaptive``), keyed by the defense's tuning so the attack is refitted per defense."""
        if cell.scenario in TRANSFER_SCENARIOS:
            ids = self.suite.surrogates(cell.victim, cell.scenario)
            return ids, [self.encoder(i) for i in ids]
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
    ) -> tuple[torch.Tensor, str, dict[str, float]]:
        """``adaptive`` scenario: the test images attacked per batch through the task's whole pipeline
        (``attack.perturb_pipeline`` with the test labels), the stage key, and the pipeline's input-
        gradient statistics (:func:`zepad_bench.pipeline.input_gradient_stats`). Cached on the fitted
        attack (whose key includes the defense), the heads' content and the test data, so tasks whose
        pipelines are the same (classification and detection on one dataset) share one attack run."""
        from zepad_bench.errors import UserError
        from zepad_bench.pipeline import DefendedPipeline, heads_digest, input_gradient_stats

        heads = task.pipeline_heads(model, data)
        material = {
            "attack": attack_key,
            "heads": heads_digest(heads),
            "test": test_key,
            "batch_size": self.suite.batch_size,
        }

        def compute() -> dict[str, Any]:
            pipeline = DefendedPipeline(model, heads)
            out = []
            batches = range(0, len(data.test), self.suite.batch_size)
            for start in self._ctx(cell.seed).track(batches, f"adaptive {data.test.name}"):
                window = slice(start, start + self.suite.batch_size)
                x = data.test.float_images(window).to(self.device)
                x_adv = attack.perturb_pipeline(pipeline, x, data.test.labels[window].to(self.device))
                if (x_adv - x).abs().max() > attack.eps + 1e-6:
                    raise UserError(f"attack {attack.name} exceeded its budget eps={attack.eps:.4f}")
                out.append(x_adv.detach().float().cpu())
            images = torch.cat(out)
            stats = input_gradient_stats(pipeline, data.test.float_images(slice(None)), data.test.labels)
            return {"images": images, "stats": stats}

        label = f"{attack.name}@{cell.eps:.4f} adaptive on {cell.defense}/{cell.task} (seed {cell.seed})"
        value, key = self._stage("adaptive", material, label, cell.seed, compute, lambda v: v, lambda v: v)
        return value["images"], key, dict(value["stats"])

    def defense(self, cell: Cell) -> tuple[DefendedModel, str]:
        spec = self.suite.spec("defenses", cell.defense)
        victim, victim_key = self.encoder(cell.victim)
        auxiliaries = [self.encoder(i) for i in self.suite.auxiliaries(cell.victim)]
        data, data_key = self.dataset(cell.tuning, "train")
        defense_cls = self.registry.get("defenses", spec.plugin)
        tuning_params = {k: v for k, v in spec.params.items() if k not in defense_cls.inference_params}
        material = {
            "table": {"plugin": spec.plugin, "params": tuning_params},
            "victim": victim_key,
            "auxiliaries": [k for _, k in auxiliaries],
            "data": data_key,
            "seed": cell.seed,
        }

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
                        "head": _head_state(b.head),
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
                    _head_from_state(b["head"]),
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
                out.append(attack.perturb(x).detach().float().cpu())
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
        def features(branch: int, which: str) -> torch.Tensor:
            source, source_key = images[which]
            material = {"defense": defense_key, "branch": model.branches[branch].name, "images": source_key}
            tensor = source.images if isinstance(source, LabeledImages) else source

            def compute() -> torch.Tensor:
                return extract_features(
                    model.branches[branch].encoder, tensor, self.suite.batch_size, self.device
                )

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
                _head_state,
                _head_from_state,
            )
            return value.to(self.device)

        return head

    # ------------------------------------------------------------------ cells
    def cell_key(self, cell: Cell) -> str:
        task = self.suite.spec("tasks", cell.task)
        return content_key(
            {
                "suite": self.suite.name,
                "cell": cell.__dict__,
                "tables": {
                    "victim": self.suite.spec("encoders", cell.victim).resolved(),
                    "auxiliaries": [
                        self.suite.spec("encoders", a).resolved() for a in self.suite.auxiliaries(cell.victim)
                    ],
                    "attack": self.suite.spec("attacks", cell.attack).resolved(),
                    "defense": self.suite.spec("defenses", cell.defense).resolved(),
                    "task": task.resolved(),
                    "datasets": {
                        id_: self.suite.spec("datasets", id_).resolved() for id_ in self._datasets_of(cell)
                    },
                    "image_size": self.suite.image_size,
                    "batch_size": self.suite.batch_size,
                    "seed": self.suite.seed,
                },
            }
        )

    def _datasets_of(self, cell: Cell) -> list[str]:
        """Every dataset id a cell's stages read: pretraining, attacker, tuning and task data."""
        encoders = [cell.victim, *self.suite.auxiliaries(cell.victim)]
        ids = [self.suite.spec("encoders", e).reserved.get("data") for e in encoders]
        ids.append(self.suite.spec("attacks", cell.attack).reserved.get("data", self.suite.attacker_data))
        ids += [cell.tuning, self.suite.spec("tasks", cell.task).reserved["data"]]
        return sorted({i for i in ids if i})

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        start = time.perf_counter()
        attack, attack_key = self.attack(cell)
        model, defense_key = self.defense(cell)
        task_spec = self.suite.spec("tasks", cell.task)
        train, train_key = self.dataset(task_spec.reserved["data"], "train")
        test, test_key = self.dataset(task_spec.reserved["data"], "test")
        task = instantiate(self.suite, self.registry, "tasks", cell.task)
        ctx = self._ctx(cell.seed)
        task.ctx = ctx
        images = {"train": (train, train_key), "test": (test, test_key)}
        feature_fn = self._feature_fn(model, defense_key, images, cell.seed)
        head_fn = self._head_fn(model, defense_key, (train, train_key), feature_fn)
        pipeline_stats: dict[str, float] = {}
        if cell.scenario == "adaptive":
            clean_data = TaskData(train, test, test.float_images(slice(None)), attack, feature_fn, head_fn)
            test_adv, adv_key, pipeline_stats = self.adaptive_adversarial(
                cell, attack, attack_key, model, task, clean_data, test_key
            )
        else:
            test_adv = self.adversarial(attack, attack_key, test, test_key, cell.seed)
            adv_key = content_key({"adv": attack_key, "data": test_key, "batch_size": self.suite.batch_size})
        images["test_adv"] = (test_adv, adv_key)
        data = TaskData(train, test, test_adv, attack, feature_fn, head_fn)
        seed_everything(cell.seed)
        task_start = time.perf_counter()
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
        """Cells without a stored result (all cells when ``force``)."""
        return list(cells) if self.force else [c for c in cells if not self.store.has(self.cell_key(c))]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
