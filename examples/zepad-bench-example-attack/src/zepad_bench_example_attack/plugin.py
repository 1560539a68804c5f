"""A universal perturbation that turns the public encoders' features away from the clean ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from zepad_bench import Attack, hookimpl


class FeatureTurn(Attack):
    """Universal δ that turns every public encoder's features away from the clean image's.

    Label-free and downstream-agnostic, like UAPGD (Deng & Karam, ICIP 2020) on feature space: δ starts
    uniform in [−ε, ε]; on each unlabeled batch, ``steps`` signed-gradient ascent steps of size
    ``step_size``·ε on the mean feature distance (1 − cosine, or MSE) over the encoders, each
    projected back onto the ε-ball.
    """

    name = "example-feature-turn"
    param_help = {
        "passes": "passes over the attacker's unlabeled data",
        "steps": "ascent steps per batch",
        "step_size": "step length as a fraction of eps",
        "loss": "feature distance to increase",
    }

    def __init__(
        self,
        eps: float,
        passes: int = 1,
        steps: int = 5,
        step_size: float = 0.25,
        loss: Literal["cos", "mse"] = "cos",
    ):
        super().__init__(eps)
        if passes < 1 or steps < 1:
            raise ValueError(f"passes and steps must be ≥ 1, got {passes} and {steps}")
        if not 0 < step_size <= 1:
            raise ValueError(f"step_size must be in (0, 1], got {step_size}")
        self.passes, self.steps, self.step_size, self.loss = passes, steps, step_size, loss
        self.delta: Tensor | None = None  # a tensor attribute: cached by the default state_dict()

    def distance(self, clean: Tensor, attacked: Tensor) -> Tensor:
        if self.loss == "cos":
            return (1 - F.cosine_similarity(clean, attacked, dim=1)).mean()
        return F.mse_loss(attacked, clean)

    def fit(self, encoders: list[torch.nn.Module], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)  # keeps self.encoders
        size = self.ctx.image_size
        noise = torch.rand(1, 3, size, size, generator=self.ctx.generator())  # CPU generator
        delta = (2 * noise - 1) * self.eps
        for _ in range(self.passes):
            for x in self.ctx.track(images, f"{self.name}: fit"):
                delta = delta.to(x.device)
                with torch.no_grad():
                    clean = [encoder(x) for encoder in encoders]
                for _ in range(self.steps):
                    delta.requires_grad_(True)
                    x_adv = (x + delta).clamp(0, 1)
                    loss = sum(self.distance(c, e(x_adv)) for c, e in zip(clean, encoders)) / len(encoders)
                    # gradient w.r.t. δ only: nothing accumulates in the encoders' .grad
                    (grad,) = torch.autograd.grad(loss, delta)
                    step = self.step_size * self.eps * grad.sign()
                    delta = (delta.detach() + step).clamp(-self.eps, self.eps)
        self.delta = delta.detach()

    def perturb(self, x: Tensor) -> Tensor:
        return (x + self.delta.to(x.device)).clamp(0, 1)


@hookimpl
def register_attacks(register):
    register(FeatureTurn)
