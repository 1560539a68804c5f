"""The SSL pretraining loop: recipes, a resumable :class:`Pretrainer`, and :func:`pretrain`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.encoder_choices import CIFAR_MEAN, CIFAR_STD
from zepad_bench.nn.ssl.augment import PRESETS, make_views
from zepad_bench.nn.ssl.methods import COMMON_DEFAULTS, METHOD_CLASSES, WMSE, Step
from zepad_bench.nn.ssl.optim import build_optimizer, warmup_cosine

METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)
"""The paper's eleven SSL methods (solo-learn names)."""

_OPTIMIZERS = ("lars", "sgd", "adam")


def recipe(method: str, **overrides: Any) -> dict[str, Any]:
    """The full recipe of ``method`` (solo-learn CIFAR defaults) with validated ``overrides``.

    Unknown keys, wrong types, an unknown optimiser or augmentation preset raise ``ValueError``.
    """
    if method not in METHOD_CLASSES:
        raise ValueError(f"unknown SSL method {method!r}; known: {', '.join(METHODS)}")
    cfg = {**COMMON_DEFAULTS, **METHOD_CLASSES[method].defaults}
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError(f"{method}: unknown recipe parameter {key!r}; known: {', '.join(sorted(cfg))}")
        default = cfg[key]
        if isinstance(default, bool) or isinstance(default, str):
            ok = isinstance(value, type(default))
        else:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and (isinstance(default, float) or float(value).is_integer())
        if not ok:
            raise ValueError(
                f"{method}: recipe parameter {key!r} expects {type(default).__name__}, got {value!r}"
            )
        cfg[key] = type(default)(value)
    if cfg["optimizer"] not in _OPTIMIZERS:
        raise ValueError(
            f"{method}: optimizer must be one of {', '.join(_OPTIMIZERS)}, got {cfg['optimizer']!r}"
        )
    if cfg["augment"] not in PRESETS:
        raise ValueError(f"{method}: augment must be one of {', '.join(PRESETS)}, got {cfg['augment']!r}")
    return cfg


def _seed(seed: int, stream: int, index: int) -> int:
    return (seed * 1_000_003 + index) * 16 + stream


class Pretrainer:
    """Pretrains one encoder step by step; :meth:`state_dict` / :meth:`load_state_dict` resume exactly.

    Every random draw depends only on (seed, epoch) for the shuffle and (seed, step) for the views,
    so a run resumed from any step matches an uninterrupted one. The last incomplete batch of an
    epoch is dropped (as solo-learn); ``batch_size`` is capped at the number of images. Adaptation:
    the linear warmup (solo-learn: 10 of 1000 epochs) is capped at a tenth of the run, so short runs
    still reach the recipe's lr.
    """

    def __init__(
        self,
        method: str,
        images: Tensor,
        *,
        arch: str = "small-cnn",
        arch_params: dict[str, Any] | None = None,
        epochs: int,
        batch_size: int = 256,
        seed: int,
        device: str = "cpu",
        labels: Tensor | None = None,
        mean: tuple[float, ...] = CIFAR_MEAN,
        std: tuple[float, ...] = CIFAR_STD,
        input_size: int | None = None,
        **overrides: Any,
    ):
        self.cfg = recipe(method, **overrides)
        cls = METHOD_CLASSES[method]
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 N×3×H×W, got {images.dtype} {tuple(images.shape)}")
        if len(images) < 2:
            raise ValueError(f"{method}: need at least 2 images to pretrain, got {len(images)}")
        if cls.needs_labels and labels is None:
            raise ValueError(f"{method} is supervised: it needs labels")
        if labels is not None and len(labels) != len(images):
            raise ValueError("images and labels differ in length")
        if epochs < 1:
            raise ValueError(f"epochs must be ≥ 1, got {epochs}")
        self.method, self.epochs, self.seed, self.device = method, int(epochs), int(seed), device
        self.batch_size = min(int(batch_size), len(images))
        self.images = images.to(device)
        self.labels = labels.to(device) if cls.needs_labels and labels is not None else None
        self.size = int(input_size or images.shape[-1])
        self.steps_per_epoch = len(images) // self.batch_size
        self.total_steps = self.epochs * self.steps_per_epoch
        self.warmup_steps = min(
            round(self.cfg["warmup_epochs"] * self.steps_per_epoch), self.total_steps // 10
        )
        meta = {"ssl_method": method, "epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(self.seed, 0, 0))
            self.encoder = Encoder(
                arch, arch_params, mean, std, input_size, meta={**meta, "recipe": dict(self.cfg)}
            )
            self.model = cls(
                self.encoder.backbone, self.encoder.feature_dim, tuple(mean), tuple(std), self.cfg
            )
        if isinstance(self.model, WMSE):
            self.model.check_batch(self.batch_size)
        self.model.to(device).train()
        self.encoder.to(device)
        self.optimizer = build_optimizer(self.model, self.cfg)
        self.step = 0
        self.history: list[float] = []

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def _batch(self, step: int) -> tuple[Tensor, Tensor | None]:
        epoch, index = divmod(step, self.steps_per_epoch)
        order = torch.randperm(
            len(self.images), generator=torch.Generator().manual_seed(_seed(self.seed, 1, epoch))
        )
        rows = order[index * self.batch_size : (index + 1) * self.batch_size].to(self.images.device)
        return self.images[rows], (self.labels[rows] if self.labels is not None else None)

    def _set_lr(self) -> None:
        c = self.cfg
        lr = warmup_cosine(
            self.step, self.total_steps, self.warmup_steps, c["lr"], c["warmup_start_lr"], c["min_lr"]
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def steps(self) -> Iterator[float]:
        """Train until done, yielding each step's loss (converted to ``float`` every step)."""
        recipes = PRESETS[self.cfg["augment"]]
        while not self.done:
            x, y = self._batch(self.step)
            generator = torch.Generator().manual_seed(_seed(self.seed, 2, self.step))
            info = Step(self.step, self.total_steps, self.step // self.steps_per_epoch, generator)
            views = make_views(x, recipes, self.size, generator, self.model.num_views)
            loss = self.model.loss(views, y, info)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{self.method}: non-finite loss at step {self.step}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.model.after_backward(info)
            self._set_lr()
            self.optimizer.step()
            self.model.after_step(info)
            self.step += 1
            value = float(loss.detach())
            self.history.append(value)
            yield value

    def checkpoint_state_dict(self) -> dict[str, Tensor]:
        """The method module's weights in solo-learn's key layout (CPU copies)."""
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: all buffers (queues included), optimiser, step, loss history."""
        return {
            "model": self.checkpoint_state_dict(),
            "buffers": {k: v.detach().cpu().clone() for k, v in self.model.named_buffers()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"], strict=True)
        buffers = dict(self.model.named_buffers())
        with torch.no_grad():
            for key, value in state["buffers"].items():
                buffers[key].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.history = int(state["step"]), list(state["history"])

    def result(self) -> Encoder:
        """The pretrained encoder (shares the trained backbone), in eval mode."""
        return self.encoder.eval()


class _Sized:
    """A trainer's remaining steps as a sized iterable, so progress bars know the total."""

    def __init__(self, trainer: Pretrainer):
        self.trainer = trainer

    def __len__(self) -> int:
        return self.trainer.total_steps - self.trainer.step

    def __iter__(self) -> Iterator[float]:
        return self.trainer.steps()


def pretrain(
    method: str,
    images: Tensor,
    *,
    arch: str = "small-cnn",
    arch_params: dict[str, Any] | None = None,
    epochs: int,
    batch_size: int = 256,
    seed: int,
    device: str = "cpu",
    track: Callable[..., Any] | None = None,
    labels: Tensor | None = None,
    mean: tuple[float, ...] = CIFAR_MEAN,
    std: tuple[float, ...] = CIFAR_STD,
    input_size: int | None = None,
    **recipe_overrides: Any,
) -> tuple[Encoder, dict[str, Tensor], list[float]]:
    """Pretrain an encoder on uint8 ``images`` with SSL ``method`` (one of :data:`METHODS`).

    Returns ``(encoder, checkpoint_state_dict, loss_history)``: the encoder (eval mode, on
    ``device``), the method's weights in solo-learn's key layout and the per-step losses.
    ``labels`` are used by ``supcon`` only; ``track(iterable, description)`` shows progress;
    ``recipe_overrides`` change the method's recipe (see :func:`recipe`).
    """
    trainer = Pretrainer(
        method,
        images,
        arch=arch,
        arch_params=arch_params,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        device=device,
        labels=labels,
        mean=mean,
        std=std,
        input_size=input_size,
        **recipe_overrides,
    )
    steps: Any = _Sized(trainer)
    if track is not None:
        steps = track(steps, f"pretrain {method}")
    for _ in steps:
        pass
    return trainer.result(), trainer.checkpoint_state_dict(), trainer.history
