"""A task's decision as the adaptive attacker attacks it, and the adaptive evaluation around an attack.

Adaptive evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness"; Tramèr et al.
2020, "On Adaptive Attacks to Adversarial Example Defenses") attacks what the defender deploys, on
the task's own terms: image → every branch encoder → the task's decision (classification: heads →
the defense's fusion; retrieval: the k-NN vote on the defended embedding; detection: the fused class
or "flagged"). :class:`AdaptiveTarget` is that decision: differentiable scores an attacker climbs and
the exact decision the task scores with, one function for both (:meth:`Task.adaptive_target`).
:func:`evaluate` runs an attack against it and measures what AutoAttack's log shows (robust
accuracy after each member), a convergence re-check, gradient sanity and, for a subset, a 95 %
interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from zepad_bench.adaptive_target import AdaptiveTarget, forbidden_ce

if TYPE_CHECKING:
    from zepad_bench.interfaces import Attack, DefendedModel, TaskData

HEAD_DEFAULTS: dict[str, Any] = {"epochs": 20, "lr": 5e-3, "batch_size": 256}
"""Training settings of a retrained per-branch head (the ``classification`` task's defaults)."""


# ---------------------------------------------------------------------- classification-style targets
def task_heads(
    model: DefendedModel, data: TaskData, seed: int, device: str, head: str = "auto", **train: Any
) -> tuple[list[nn.Module], list[str]]:
    """Per branch: the head a classification-style task uses, and ``"joint"`` or ``"retrained"``.

    A branch's jointly tuned head is used when ``head="auto"`` and it was tuned on this task's
    dataset with its classes; otherwise a paper MLP head is trained on the branch's frozen train
    features (``train``: :func:`zepad_bench.nn.heads.train_head` settings over :data:`HEAD_DEFAULTS`,
    seed ``seed + branch``), served from the runner's head cache.
    """
    heads, kinds = [], []
    for i, branch in enumerate(model.branches):
        joint = (
            head == "auto"
            and branch.head is not None
            and branch.head_data == data.train.name
            and branch.head.num_classes == data.train.num_classes
        )
        if joint:
            heads.append(branch.head)
        else:
            heads.append(data.head(model, i, **{**HEAD_DEFAULTS, **train}, seed=seed + i, device=device))
        kinds.append("joint" if joint else "retrained")
    return heads, kinds


def fused_prediction(model: DefendedModel, logits: list[Tensor]) -> tuple[Tensor, Tensor]:
    """The defense's fused class scores (:meth:`Defense.fused_scores`) of per-branch logits and their
    argmax: the prediction classification-style tasks score and their adaptive targets judge by."""
    scores = model.fused_scores(logits)
    return scores, scores.argmax(1)


def classification_target(model: DefendedModel, heads: list[nn.Module], num_classes: int) -> AdaptiveTarget:
    """The fused classifier on per-branch ``heads``: :func:`fused_prediction` of the heads' logits."""

    def decide(features: list[Tensor]) -> tuple[Tensor, Tensor]:
        return fused_prediction(model, [head(f) for head, f in zip(heads, features)])

    return AdaptiveTarget([b.encoder for b in model.branches], decide, num_classes)


# ---------------------------------------------------------------------- evaluation of an attack
@dataclass
class AdaptiveRun:
    """What :func:`evaluate` returns: the attacked images, the test rows they come from, and metrics."""

    images: Tensor
    indices: Tensor
    metrics: dict[str, float]


def subset(n_total: int, n: int, generator: torch.Generator) -> Tensor:
    """Sorted indices of a seeded random subset of ``n`` of ``n_total`` rows (all if n is 0 or ≥ n_total)."""
    if n <= 0 or n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=generator)[:n].sort().values


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval (%) of a binomial proportion (Wilson 1927; sound at small n and near 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * max(centre - half, 0.0), 100.0 * min(centre + half, 1.0)


def judge(target: AdaptiveTarget, x: Tensor, y: Tensor, batch_size: int) -> tuple[Tensor, dict[str, float]]:
    """The task's decision on ``x`` (fooled per sample) and the input gradient of :func:`forbidden_ce`
    there: ``grad_zero_frac`` — % of samples whose gradient is exactly zero everywhere (masked or
    saturated gradients), ``grad_nan_frac`` — % with a non-finite entry, ``grad_norm`` — mean L1 norm."""
    device = _device_of(target)
    fooled, zero, nan, norm = [], 0, 0, 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).clone().requires_grad_(True)
        yb = y[start : start + batch_size].to(device)
        with torch.enable_grad():
            scores, decision = target(xb)
            (grad,) = torch.autograd.grad(forbidden_ce(scores, target.forbidden(yb)).sum(), xb)
        fooled.append(target.fooled(decision, yb).cpu())
        flat = grad.flatten(1)
        finite = torch.isfinite(flat).all(1)
        nan += int((~finite).sum())
        zero += int((finite & (flat == 0).all(1)).sum())
        norm += float(flat[finite].abs().sum())
    n = max(len(x), 1)
    stats = {"grad_zero_frac": 100.0 * zero / n, "grad_nan_frac": 100.0 * nan / n, "grad_norm": norm / n}
    return torch.cat(fooled) if fooled else torch.zeros(0, dtype=torch.bool), stats


def _device_of(target: AdaptiveTarget) -> torch.device:
    for encoder in target.encoders:
        for p in encoder.parameters():
            return p.device
    return torch.device("cpu")


def evaluate(
    attack: Attack,
    target: AdaptiveTarget,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    generator: torch.Generator,
    check: Callable[[Tensor, Tensor], None] = lambda x, x_adv: None,
    track: Callable[[Any, str], Any] = lambda items, description: items,
) -> AdaptiveRun:
    """Attack a seeded subset (``attack.samples``; all of ``x`` when 0) per batch and measure it.

    Metrics (percentages of the n attacked samples, judged by the task's own decision):
    ``adaptive_n``; ``RA_after:<member>`` — robust accuracy after each stage the attack reports
    (cumulative per-sample worst case, as AutoAttack's log); ``RA_ci95_low``/``RA_ci95_high`` — the
    final RA's 95 % Wilson interval when n is a subset; ``RA_recheck`` — the final RA when, on a
    seeded subset of ``recheck_n`` attacked samples, each sample also counts as fooled if
    ``attack.convergence_check()`` fools it (so (RA − RA_recheck)·n/recheck_n is the drop on that
    subset); ``grad_zero_frac``/``grad_nan_frac``/``grad_norm`` on the clean images and
    ``grad_zero_frac:attacked``/``grad_nan_frac:attacked`` — the largest share over the members'
    outputs. ``check(x, x_adv)`` vets every attacked batch (the runner's budget check).
    """
    total = len(x)
    index = subset(total, attack.samples, generator)
    x, y = x[index], y[index]
    stages = _attack_batches(attack, target, x, y, batch_size, check, track)
    n = len(y)
    _, metrics = judge(target, x, y, batch_size)
    metrics["adaptive_n"] = float(n)
    zero = nan = 0.0
    fooled = torch.zeros(n, dtype=torch.bool)
    for name, images in stages.items():
        fooled, stats = judge(target, images, y, batch_size)
        metrics[f"RA_after:{name}"] = _percent(~fooled)
        zero, nan = max(zero, stats["grad_zero_frac"]), max(nan, stats["grad_nan_frac"])
    metrics["grad_zero_frac:attacked"], metrics["grad_nan_frac:attacked"] = zero, nan
    robust = int((~fooled).sum())
    if n < total:
        metrics["RA_ci95_low"], metrics["RA_ci95_high"] = wilson_interval(robust, n)
    stronger = attack.convergence_check()
    if stronger is not None and attack.recheck_samples > 0 and n:
        again = subset(n, attack.recheck_samples, generator)
        left = again[~fooled[again]]  # those the ensemble fooled stay fooled: only the others can change
        newly = 0
        if len(left):
            redo = _attack_batches(stronger, target, x[left], y[left], batch_size, check, track)
            newly = int(judge(target, list(redo.values())[-1], y[left], batch_size)[0].sum())
        metrics["recheck_n"] = float(len(again))
        metrics["RA_recheck"] = 100.0 * (robust - newly) / n
    final = list(stages.values())[-1] if stages else x.clone()
    return AdaptiveRun(final, index, metrics)


def _percent(mask: Tensor) -> float:
    return 100.0 * float(mask.sum()) / max(len(mask), 1)


def _attack_batches(
    attack: Attack,
    target: AdaptiveTarget,
    x: Tensor,
    y: Tensor,
    batch_size: int,
    check: Callable[[Tensor, Tensor], None],
    track: Callable[[Any, str], Any],
) -> dict[str, Tensor]:
    """``attack.perturb_adaptive`` per batch; each stage's images (CPU) over all of ``x``."""
    device = _device_of(target)
    stages: dict[str, list[Tensor]] = {}
    for start in track(range(0, len(x), batch_size), f"adaptive {attack.name}"):
        xb, yb = x[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        for name, x_adv in attack.perturb_adaptive(target, xb, yb).items():
            x_adv = x_adv.detach().float()
            check(xb, x_adv)
            stages.setdefault(name, []).append(x_adv.cpu())
    return {name: torch.cat(parts) for name, parts in stages.items()}
