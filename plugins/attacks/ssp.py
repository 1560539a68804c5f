"""SSP (Naseer et al., CVPR 2020): the per-sample self-supervised feature-distortion perturbation
(``ssp``) and PAP's universal variant (``ssp-universal``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from zepad_bench.interfaces import Attack
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.pgd import pgd
from zepad_bench.params import with_defaults
from zepad_bench_plugins.attacks.common import (
    LayerOptions,
    UniversalAttack,
    UniversalLayerOptions,
    cycle,
    frozen,
    layer_output,
    random_delta,
    rebatch,
    resolve_layer,
)

SSP_LAYERS = {
    "resnet18": "backbone.layer2",
    "resnet18-imagenet": "backbone.layer2",
    "resnet50": "backbone.layer2",
    "small-cnn": "backbone.features.5",
}
"""Default distorted layer per arch: the output of ResNet stage 2 (as PAP's SSP baseline; the authors
used VGG-16 relu3_3, a mid-level layer); for ``small-cnn``, the ReLU of its second of four blocks."""


class SSP(Attack):
    """Self-supervised perturbation (Naseer et al., CVPR 2020): per image, distorts a mid-level layer.

    As the authors' ``ssp.py``: per image, maximise MSE(h(x'), h(x)) of an intermediate layer h by
    100 signed steps of 0.01, each projected to the ε-ball and [0, 1] (the authors clip to [0, 1]
    too; ``clamp=false`` skips it). ``ssp-universal`` is PAP's universal variant.

    Label-free by design; adapted by taking h from the public encoder itself (summed over encoders
    in white-box) instead of an ImageNet VGG-16. Not universal: ``fit`` only checks the layers and
    :meth:`perturb` optimises each batch (a pure function of the batch and the run seed).
    As the authors, the ascent starts from an N(0, 1) image clipped to the ε-ball (a ±ε corner).
    ``layer`` names a module of the encoder (``named_modules()``); default: :data:`SSP_LAYERS`.
    """

    name = "ssp"

    Options = with_defaults(LayerOptions, steps=100, step_size=0.01)

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        self._taps()

    def _taps(self) -> list[torch.nn.Module]:
        if not self.encoders:
            raise RuntimeError(f"{self.name}: call fit() (or set encoders) before perturb()")
        return [resolve_layer(encoder, self.layer, SSP_LAYERS) for encoder in self.encoders]

    def perturb(self, x: Tensor) -> Tensor:
        taps = self._taps()
        pairs = list(zip(self.encoders, taps))
        with frozen(self.encoders):
            with torch.no_grad():
                clean = [layer_output(encoder, tap, x) for encoder, tap in pairs]

            def distortion(x_adv: Tensor) -> Tensor:
                return sum(F.mse_loss(layer_output(e, t, x_adv), c) for (e, t), c in zip(pairs, clean))

            start = torch.randn(x.shape, generator=self.ctx.generator()).to(x)  # the authors' N(0, 1) start
            return pgd(distortion, x, self.eps, self.step_size, self.steps, start=start, clamp=self.clamp)


class SSPUniversal(UniversalAttack):
    """SSP's universal variant as benchmarked for pre-trained encoders (PAP's ``utils/ssp.py``, Ban &
    Dong, NeurIPS 2022; objective of Naseer et al., CVPR 2020).

    One δ (start U(−ε, ε)) for all images: per attacker batch, one signed step α = ``step_size``
    (2e-4) ascending MSE(h(x)², h(x + δ)²) — the squared activations of the victim's own stage-2
    output, as PAP's hook stores them (``squared=false``: SSP's raw-feature MSE) — summed over
    encoders, then δ is clipped to ±ε; ``steps`` batches (PAP: 16 images each, ``batch_size``; default
    the suite's). x + δ is clamped to [0, 1] unless ``clamp=false`` (PAP does not clamp).
    ``layer`` names a module of the encoder; default: :data:`SSP_LAYERS`.
    """

    name = "ssp-universal"

    class Options(UniversalLayerOptions):
        squared: bool = Field(
            True, description="compare squared activations, as PAP's hook stores them (false: SSP's raw MSE)"
        )

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        pairs = [(encoder, resolve_layer(encoder, self.layer, SSP_LAYERS)) for encoder in encoders]
        power = 2 if self.squared else 1
        rng = self.ctx.generator()
        delta: Tensor | None = None
        with frozen(encoders):
            batches = itertools.islice(rebatch(cycle(images), self.batch_size), self.steps)
            for x in self.ctx.track(batches, "ssp-universal", total=self.steps):
                x = x.to(self.ctx.device)
                if delta is None:
                    delta = random_delta(x, self.eps, rng)
                delta.requires_grad_(True)
                loss = 0.0
                for encoder, tap in pairs:
                    with torch.no_grad():
                        clean = layer_output(encoder, tap, x).pow(power)
                    loss = loss + F.mse_loss(layer_output(encoder, tap, self.add(x, delta)).pow(power), clean)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + self.step_size * grad.sign()).clamp(-self.eps, self.eps)
        self.delta = delta
