"""UAPGD: universal perturbation by enhanced (momentum) projected gradient ascent: our batched
feature-space version (``uapgd``) and the reference per-image algorithm (``uapgd-reference``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from zepad_bench.interfaces import Attack
from zepad_bench.nn.encoder import Encoder
from zepad_bench.params import Budget
from zepad_bench_plugins.attacks.common import (
    AttackOptions,
    ProbeOptions,
    PseudoLabelProbe,
    UniversalAttack,
    collect,
    cosine_distance,
    fit_probe,
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

    class Options(AttackOptions):
        images: int = Field(30000, ge=1, description="attacker images the perturbation is fitted on")
        steps: int = Field(
            10, ge=1, description="inner sign-ascent steps T per batch (per image: uapgd-reference)"
        )
        step_size: Budget = Field(0.002, description="step α of each signed step, in pixels")
        decay_after: int = Field(
            10000, ge=0, description="images after which the step becomes step_size·decay"
        )
        decay: float = Field(0.1, gt=0, le=1, description="factor of the step after decay_after images")
        momentum: float = Field(
            0.5, ge=0, le=1, description="momentum β of the gradient accumulator g ← β·g + ∇"
        )

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


@contextmanager
def single_thread() -> Iterator[None]:
    """One intra-op CPU thread for the block (restored after): one-image forward/backward passes gain
    nothing from threads, and on a busy CPU their synchronisation made them 60× slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def epgd_increment(
    objective: Callable[[Tensor], tuple[Tensor, bool]],
    base: Tensor,
    start: Tensor,
    steps: int,
    step_size: float,
    momentum: float,
    weight_gain: float,
) -> Tensor:
    """Enhanced PGD on one image (Deng & Karam, ICIP 2020), as PAP's ``utils/uapepgd.py:get_delta``.

    From ``d = start``, at most ``steps`` times: evaluate ``objective(d)`` → (loss, fooled) at
    ``base + d``, ``g ← β·g + γ·(base + d) + ∇_d loss`` (β = ``momentum``, γ = ``weight_gain``, the
    "weight gain" term), ``d ← d + α·sgn(g)``; stop after the step whose evaluation was already
    fooled (the reference checks the label before its step). ``d`` is not projected: the caller clips
    the universal δ + d. Returns the detached increment ``d``.
    """
    d, g = start.detach(), torch.zeros_like(start)
    for _ in range(steps):
        d.requires_grad_(True)
        loss, fooled = objective(d)
        (grad,) = torch.autograd.grad(loss, d)
        g = momentum * g + weight_gain * (base + d.detach()) + grad
        d = d.detach() + step_size * g.sign()
        if fooled:
            break
    return d


class UAPGDReference(UAPGD):
    """UAPGD as the reference code used for pre-trained models runs it (PAP's ``utils/uapepgd.py``,
    Ban & Dong, NeurIPS 2022; algorithm of Deng & Karam, "Universal Adversarial Attack via Enhanced
    Projected Gradient Descent", ICIP 2020).

    One image at a time (``images`` of them, from the attacker stream): skip it when the current δ
    already fools it — its pseudo-label on x + δ differs from that on x — else run
    :func:`epgd_increment` from d ~ U(−ε, ε) at x + δ (T = ``steps`` = 10, β = 0.5, γ = 1e-5, sign
    step α = ``step_size``, ×``decay`` after ``decay_after`` images: PAP's 0.002 then 2e-4 after 10k),
    early-stopped once the image is fooled, and set δ ← clip(δ + d, ±ε). δ starts U(−ε, ε).

    Label-free adaptation: labels come from the :class:`PseudoLabelProbe` (k-means with ``clusters``
    pseudo-classes on ``probe_images`` attacker images + a logistic-regression probe), whose flip is
    the "fooled" test. ``loss = "cosine"`` (default) ascends the feature distance of ``uapgd``,
    Σ_encoders 1 − cos(f(x), f(x + δ + d)); ``loss = "ce"`` is the reference's CE of the
    L2-normalised probe logits against the clean pseudo-label. x + δ + d is clamped to [0, 1] unless
    ``clamp=false`` (the reference does not clamp).
    """

    name = "uapgd-reference"

    class Options(UAPGD.Options, ProbeOptions):
        probe_images_option: ClassVar[str] = "probe_images"

        weight_gain: float = Field(
            1e-5, ge=0, description="γ of the reference's weight-gain term γ·(x + δ + d) in the momentum"
        )
        loss: Literal["cosine", "ce"] = Field(
            "cosine",
            description="ascended loss: feature distance Σ 1 − cos(f(x), f(x + δ + d)), or the reference's "
            "CE of the L2-normalised probe logits",
        )
        probe_images: int = Field(
            10000, ge=1, description="attacker images the pseudo-label probe is fitted on"
        )

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        Attack.fit(self, encoders, images)
        device = self.ctx.device
        data, batch_size = collect(images, self.probe_images)
        weight, bias = fit_probe(encoders, data, self.clusters, self.ctx.seed, batch_size, device)
        probe = PseudoLabelProbe(encoders, weight.to(device), bias.to(device))
        rng = self.ctx.generator()
        delta: Tensor | None = None
        seen = 0
        with frozen(encoders), single_thread():
            for batch in self.ctx.track(take(images, self.images), "uapgd-reference"):
                for x in batch[: self.images - seen].to(device).split(1):
                    if delta is None:
                        delta = random_delta(x, self.eps, rng)
                    alpha = self.step_size if seen < self.decay_after else self.step_size * self.decay
                    delta = self.update(probe, x, delta, alpha, rng)
                    seen += 1
        self.delta = delta

    def update(
        self, probe: PseudoLabelProbe, x: Tensor, delta: Tensor, alpha: float, rng: torch.Generator
    ) -> Tensor:
        """δ after one image ``x`` (1×C×H×W): unchanged if x + δ is already fooled, else clip(δ + d, ±ε)."""
        encoders = list(probe.encoders)
        with torch.no_grad():
            clean = [encoder(x) for encoder in encoders]
            label = probe.logits(clean).argmax(1)
            if probe(self.add(x, delta)).argmax(1).item() != label.item():
                return delta
        base = x + delta

        def objective(d: Tensor) -> tuple[Tensor, bool]:
            features = [encoder(self.add(base, d)) for encoder in encoders]
            logits = probe.logits(features)
            if self.loss == "ce":
                loss = F.cross_entropy(F.normalize(logits, dim=1), label)
            else:
                loss = sum((1 - F.cosine_similarity(f, c, dim=1)).sum() for f, c in zip(features, clean))
            return loss, logits.argmax(1).item() != label.item()

        d = epgd_increment(
            objective,
            base,
            random_delta(x, self.eps, rng),
            self.steps,
            alpha,
            self.momentum,
            self.weight_gain,
        )
        return (delta + d).clamp(-self.eps, self.eps)
