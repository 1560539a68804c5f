"""UAPGD: universal perturbation by enhanced (momentum) projected gradient ascent, on features."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from zepad_bench.nn.encoder import Encoder
from zepad_bench_plugins.attacks.common import (
    UniversalAttack,
    check_float,
    check_int,
    cosine_distance,
    frozen,
    random_delta,
    take,
)


class UAPGD(UniversalAttack):
    """Universal PGD with momentum (Deng & Karam, ICIP 2020, "UAP-EPGD"), batched and label-free.

    Per attacker batch, ``steps`` inner sign-ascent steps on the shared δ with momentum
    ``g ← β·g + ∇`` (β = ``momentum``, g reset per batch), each projected to the ε-ball; the step is
    ``step_size`` for the first ``decay_after`` images, then ``step_size·decay``. Defaults follow PAP's
    re-implementation (no official code): T = 10, β = 0.5, α = 0.002 then 2e-4 after 10k of 30k images,
    δ starts U(−ε, ε). Adaptation to an encoder: the loss is the feature distance
    Σ_encoders mean(1 − cos(f(x), f(x+δ))) instead of CE on predicted labels, so there
    is no "already fooled" skip or early stop and every image contributes; δ is updated per batch
    instead of per image; PAP's weight-gain term γ·x (γ = 1e-5) is omitted. ``uapgd-reference`` is the
    reference algorithm. x+δ is clamped to [0, 1] unless ``clamp=false`` (the authors').
    """

    name = "uapgd"

    def __init__(
        self,
        eps: float,
        *,
        images: int = 30000,
        steps: int = 10,
        step_size: float = 0.002,
        decay_after: int = 10000,
        decay: float = 0.1,
        momentum: float = 0.5,
        clamp: bool = True,
    ):
        super().__init__(eps, clamp=clamp)
        self.images = check_int("images", images)
        self.steps = check_int("steps", steps)
        self.step_size = check_float("step_size", step_size, 0.0, 1.0)
        self.decay_after = check_int("decay_after", decay_after, 0)
        self.decay = check_float("decay", decay, 0.0, 1.0)
        self.momentum = check_float("momentum", momentum, 0.0, 1.0, strict=False)

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        delta: Tensor | None = None
        seen = 0
        with frozen(encoders):
            for x in self.ctx.track(take(images, self.images), "uapgd"):
                x = x.to(self.ctx.device)
                if delta is None:
                    delta = random_delta(x, self.eps, self.ctx.generator())
                alpha = self.step_size if seen < self.decay_after else self.step_size * self.decay
                with torch.no_grad():
                    clean = [encoder(x) for encoder in encoders]
                momentum = torch.zeros_like(delta)
                for _ in range(self.steps):
                    delta.requires_grad_(True)
                    (grad,) = torch.autograd.grad(cosine_distance(clean, encoders, self.add(x, delta)), delta)
                    momentum = self.momentum * momentum + grad
                    delta = (delta.detach() + alpha * momentum.sign()).clamp(-self.eps, self.eps)
                seen += len(x)
        self.delta = delta
