"""PAP (Ban & Dong, NeurIPS 2022): Low-Level Layer Lifting Attack with uniform Gaussian sampling."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from pydantic import Field
from torch import Tensor

from zepad_bench.nn.encoder import Encoder
from zepad_bench_plugins.attacks.common import (
    Interval,
    UniversalAttack,
    UniversalLayerOptions,
    cycle,
    frozen,
    layer_output,
    random_delta,
    rebatch,
    resolve_layer,
)

PAP_LAYERS = {
    "resnet18": "backbone.maxpool",
    "resnet18-imagenet": "backbone.maxpool",
    "resnet50": "backbone.maxpool",
    "small-cnn": "backbone.features.2",
}
"""Default lifted layer per arch: the stem output (after the max-pool where there is one; the CIFAR
stem's max-pool is an Identity, so it is relu(bn1(conv1))), as PAP's ``target_layer 0``; for
``small-cnn``, the ReLU of its first block."""


class PAP(UniversalAttack):
    """L4A-ugs (Ban & Dong, "Pre-trained Adversarial Perturbations", NeurIPS 2022; authors' code): a
    universal perturbation that lifts a low-level layer's activations.

    Signed gradient ascent on one δ (start U(−ε, ε), step α = 2e-4, projected to the ε-ball, one
    step per attacker batch, 20k steps) of L = mean(h(G+δ)²) + λ·mean(h(x+δ)²), λ = 0.01, where h is
    a low-level layer's output and G are 8 fresh noise images per step with pixels N(μ_c, σ_c²),
    μ_c ~ U[0.4, 0.6], σ_c ~ U[0.05, 0.1] redrawn every 20 steps. Already label-free and
    encoder-level; white-box sums L over encoders. Deviations: G+δ and x+δ are clamped to [0, 1]
    (``clamp=false``: not, as the authors); the attacker batch is the suite's (``batch_size = 16``:
    the authors').
    ``layer`` names a module of the encoder (``named_modules()``); default: :data:`PAP_LAYERS`.
    """

    name = "pap"

    class Options(UniversalLayerOptions):
        data_weight: float = Field(0.01, ge=0, description="weight λ of the data term mean(h(x+δ)²)")
        noise_images: int = Field(
            8, ge=0, description="Gaussian noise images G per step (0: the data term alone)"
        )
        resample_every: int = Field(20, ge=1, description="steps between redraws of the noise's μ_c and σ_c")
        mean_range: Interval = Field((0.4, 0.6), description="per-channel noise mean μ_c ~ U[lo, hi]")
        std_range: Interval = Field((0.05, 0.1), description="per-channel noise std σ_c ~ U[lo, hi]")

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        taps = [resolve_layer(encoder, self.layer, PAP_LAYERS) for encoder in encoders]
        rng = self.ctx.generator()
        delta: Tensor | None = None
        with frozen(encoders):
            batches = itertools.islice(rebatch(cycle(images), self.batch_size), self.steps)
            for step, x in enumerate(self.ctx.track(batches, "pap", total=self.steps)):
                x = x.to(self.ctx.device)
                if delta is None:
                    delta = random_delta(x, self.eps, rng)
                if step % self.resample_every == 0:
                    mean = torch.empty(1, x.shape[1], 1, 1).uniform_(*self.mean_range, generator=rng)
                    std = torch.empty(1, x.shape[1], 1, 1).uniform_(*self.std_range, generator=rng)
                noise = (mean + std * torch.randn((self.noise_images, *x.shape[1:]), generator=rng)).to(x)
                delta.requires_grad_(True)
                loss = sum(self._lift(encoder, tap, noise, x, delta) for encoder, tap in zip(encoders, taps))
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + self.step_size * grad.sign()).clamp(-self.eps, self.eps)
        self.delta = delta

    def _lift(
        self, encoder: Encoder, tap: torch.nn.Module, noise: Tensor, x: Tensor, delta: Tensor
    ) -> Tensor:
        """mean(h(G+δ)²) + λ·mean(h(x+δ)²) for one encoder, in one forward pass."""
        h = layer_output(encoder, tap, self.add(torch.cat([noise, x]), delta)).pow(2)
        n = len(noise)
        return h[:n].mean() + self.data_weight * h[n:].mean() if n else self.data_weight * h.mean()
