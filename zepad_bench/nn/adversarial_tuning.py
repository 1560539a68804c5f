"""The adversarial fine-tuning loop shared by ZePAD's MPAE-Branch and the AT baselines.

One loop, many objectives: a ``loss_fn(model, x, y)`` crafts its own adversarial examples
(PGD, TRADES' KL maximisation, a generator, …) and returns the training loss. Parameter
gradients are zeroed right before the training loss's backward, so whatever the inner
maximisation did, the step uses the training loss's gradients alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from zepad_bench.data.images import LabeledImages
from zepad_bench.nn.batched import extract_features
from zepad_bench.nn.heads import MLPHead, make_optimizer

LossFn = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class TuningConfig:
    """Optimisation settings of Gen-AF stage I / ZePAD MPAE tuning (authors' defaults)."""

    epochs: int = 20
    batch_size: int = 256
    encoder_lr: float = 1e-4
    head_lr: float = 5e-3
    weight_decay: float = 8e-4
    gamma: float = 0.96
    freeze_bn: bool = True  # keep BatchNorm running statistics fixed (small encoders diverge otherwise)


class EncoderWithHead(nn.Module):
    """``head(encoder(x))`` on [0, 1] pixels: what PGD attacks and what tuning trains."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily put ``model`` in eval mode (e.g. while crafting adversarial examples)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.train(mode)


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def new_head(encoder: nn.Module, data: LabeledImages, device: str) -> MLPHead:
    """A fresh head whose input standardisation comes from the encoder's features on ``data``."""
    head = MLPHead(encoder.feature_dim, data.num_classes).to(device)
    head.set_standardization(extract_features(encoder, data.images, device=device).to(device))
    return head


def adversarial_finetune(
    model: EncoderWithHead,
    data: LabeledImages,
    loss_fn: LossFn,
    config: TuningConfig,
    *,
    seed: int,
    device: str = "cpu",
    track: Callable | None = None,
    description: str = "adversarial tuning",
    on_epoch_end: Callable[[int, EncoderWithHead], None] | None = None,
) -> list[float]:
    """Fine-tune encoder and head jointly on ``data`` (labeled) with ``loss_fn``; returns per-epoch mean loss.

    Two Adam groups (encoder lr, head lr), shared weight decay, per-epoch ExponentialLR.
    ``on_epoch_end(epoch, model)`` runs after each epoch (e.g. model selection on a validation split).
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer, scheduler = make_optimizer(
        [(model.encoder.parameters(), config.encoder_lr), (model.head.parameters(), config.head_lr)],
        config.weight_decay,
        config.gamma,
    )
    history = []
    batches_per_epoch = (len(data) + config.batch_size - 1) // config.batch_size
    steps = range(config.epochs * batches_per_epoch)
    steps_iter = iter(steps if track is None else track(steps, description))
    for epoch in range(config.epochs):
        total, count = 0.0, 0
        for x, y in data.batches(config.batch_size, shuffle=True, generator=generator):
            next(steps_iter, None)
            x, y = x.to(device), y.to(device)
            _train_mode(model, config.freeze_bn)
            loss = loss_fn(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(y), count + len(y)
        scheduler.step()
        history.append(total / max(count, 1))
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
    next(steps_iter, None)
    model.eval()
    return history
