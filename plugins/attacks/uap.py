"""UAP (Moosavi-Dezfooli et al., CVPR 2017): iterative universal perturbation with DeepFool steps."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from pydantic import Field
from torch import Tensor, nn

from zepad_bench.nn.encoder import Encoder
from zepad_bench_plugins.attacks.common import (
    ProbeOptions,
    PseudoLabelProbe,
    UniversalAttack,
    collect,
    fit_probe,
    frozen,
)


def deepfool(
    model: nn.Module, x: Tensor, candidates: int, overshoot: float, max_iter: int, clamp: bool = True
) -> tuple[Tensor, Tensor]:
    """Batched multi-class L2 DeepFool (Moosavi-Dezfooli et al., CVPR 2016, Alg. 2) on ``model``'s logits.

    Each sample independently: linearise the ``candidates`` top clean classes, step to the nearest
    linearised boundary, repeat until its argmax changes or ``max_iter``. Returns the perturbation
    (1+overshoot)·r_tot and whether it flips the sample's label; iterates are clamped to [0, 1] if ``clamp``.
    """
    box = (0.0, 1.0) if clamp else (-torch.inf, torch.inf)
    x = x.detach()
    with torch.no_grad():
        clean = model(x)
    order = clean.topk(min(candidates, clean.shape[1]), dim=1).indices
    label, rows = order[:, 0], torch.arange(len(x), device=x.device)
    r_tot = torch.zeros_like(x)
    for _ in range(max_iter):
        x_i = (x + (1 + overshoot) * r_tot).clamp(*box).requires_grad_(True)
        logits = model(x_i)
        active = logits.argmax(1) == label
        if not active.any():
            break
        chosen = logits.gather(1, order)  # (N, k): the candidate classes, original label first
        grads = torch.stack(
            [
                torch.autograd.grad(chosen[:, j].sum(), x_i, retain_graph=j < chosen.shape[1] - 1)[0]
                for j in range(chosen.shape[1])
            ],
            dim=1,
        )
        w = grads[:, 1:] - grads[:, :1]
        f = (chosen[:, 1:] - chosen[:, :1]).detach()
        w_norm = w.flatten(2).norm(dim=2) + 1e-8
        best = (f.abs() / w_norm).argmin(1)
        scale = (f[rows, best].abs() / w_norm[rows, best] + 1e-4) / w_norm[rows, best]
        r_tot = r_tot + (scale * active)[:, None, None, None] * w[rows, best]
    r = (1 + overshoot) * r_tot
    with torch.no_grad():
        flipped = model((x + r).clamp(*box)).argmax(1) != label
    return r, flipped


class UAP(UniversalAttack):
    """Universal adversarial perturbation (Moosavi-Dezfooli et al., CVPR 2017, Alg. 1; official code).

    Passes over the attacker images X (up to ``max_images``, 10k in the paper): for each x still
    classified as on clean input, DeepFool at x+v (top 10 classes, overshoot 0.02, 10 iterations)
    and, if it converged, v ← clip(v + Δv, ±ε); stop once the fooling rate on X reaches
    ``target_fooling`` = 1 − δ = 0.8, or after ``max_passes`` = 10 (the MATLAB code's cap).
    Adaptation to an encoder: the classifier is the label-free :class:`PseudoLabelProbe` (k-means with
    ``clusters`` pseudo-classes on the encoders' features of X + a logistic-regression probe); it never
    sees downstream labels. Batched: DeepFool runs on a whole batch at the current v, then the
    batch's increments are applied one after another with projection (v is stale within a batch).
    x+v is clamped to [0, 1] unless ``clamp=false``.
    """

    name = "uap"

    class Options(ProbeOptions):
        max_images: int = Field(10000, ge=1, description="attacker images X the perturbation is fitted on")
        target_fooling: float = Field(
            0.8, gt=0, le=1, description="stop once this share of X is fooled (1 − δ in the paper's Alg. 1)"
        )
        max_passes: int = Field(10, ge=1, description="passes over X at most (the MATLAB code's cap)")
        overshoot: float = Field(
            0.02, ge=0, description="DeepFool's overshoot: the step is (1 + overshoot)·r"
        )
        candidates: int = Field(10, ge=2, description="top clean classes DeepFool linearises")
        deepfool_iters: int = Field(10, ge=1, description="DeepFool iterations per image at most")

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        device = self.ctx.device
        data, batch_size = collect(images, self.max_images)
        weight, bias = fit_probe(encoders, data, self.clusters, self.ctx.seed, batch_size, device)
        probe = PseudoLabelProbe(encoders, weight.to(device), bias.to(device))
        rng = self.ctx.generator()
        v = torch.zeros((1, *data.shape[1:]), device=device)
        with frozen(encoders):
            labels = self._predict(probe, data, None, batch_size)
            for _ in self.ctx.track(range(self.max_passes), "uap passes"):
                order = torch.randperm(len(data), generator=rng)
                for start in range(0, len(data), batch_size):
                    idx = order[start : start + batch_size]
                    x = data[idx].to(device)
                    with torch.no_grad():
                        todo = probe(self.add(x, v)).argmax(1) == labels[idx].to(device)
                    if not todo.any():
                        continue
                    r, converged = deepfool(
                        probe,
                        self.add(x[todo], v),
                        self.candidates,
                        self.overshoot,
                        self.deepfool_iters,
                        self.clamp,
                    )
                    for increment in r[converged]:
                        v = (v + increment).clamp(-self.eps, self.eps)
                fooling = (self._predict(probe, data, v, batch_size) != labels).float().mean().item()
                if fooling >= self.target_fooling:
                    break
        self.delta = v

    @torch.no_grad()
    def _predict(self, probe: nn.Module, data: Tensor, v: Tensor | None, batch_size: int) -> Tensor:
        """Pseudo-labels (CPU) of ``data`` (+ ``v`` when given)."""
        out = []
        for start in range(0, len(data), batch_size):
            x = data[start : start + batch_size].to(self.ctx.device)
            out.append(probe(x if v is None else self.add(x, v)).argmax(1).cpu())
        return torch.cat(out)
