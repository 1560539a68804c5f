"""Adaptive per-sample attack on a task's own decision: AutoAttack's standard ensemble, in torch.

APGD (Croce & Hein, ICML 2020, Alg. 1) and Square (Andriushchenko et al., ECCV 2020) are written
here rather than taken from a library because every library attack (ART, torchattacks, AutoAttack
itself) judges success as ``argmax(model(x)) != y`` on the scores it differentiates, while a task's
decision may be another function (retrieval: the hard k-NN vote; detection: the fused class or
"flagged", two outcomes that both defeat the attacker); and ART's APGD returns only its last iterate,
losing a sample's earlier success. Here each member climbs the target's differentiable scores and
judges every iterate by the task's exact decision, keeping each sample's first success.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import torch
from pydantic import AfterValidator, Field
from torch import Tensor

from zepad_bench.adaptive_target import AdaptiveTarget, fools, forbidden_ce
from zepad_bench.interfaces import Attack

MEMBERS = ("apgd-ce", "apgd-dlr", "apgd-t", "square", "apgd-mt")
"""Every member; a member's random stream is seeded by its index here, so new members go last."""
STANDARD = ("apgd-ce", "apgd-t", "square")
"""AutoAttack's standard L∞ ensemble (Croce & Hein 2020, Sec. 5), FAB-T left out (see the class docstring)."""
DEFAULT = (*STANDARD, "apgd-mt")
"""The default: AutoAttack's standard ensemble, then ``apgd-mt`` (why: the class docstring)."""

Loss = Callable[[Tensor, Tensor], Tensor]
"""(scores of the active lanes, their rows among all lanes) → per-lane loss to maximise."""


def _split(scores: Tensor, forbidden: Tensor) -> tuple[Tensor, Tensor]:
    """Per sample: the largest score among the forbidden outcomes and among the others."""
    low = torch.finfo(scores.dtype).min
    return scores.masked_fill(~forbidden, low).max(1).values, scores.masked_fill(forbidden, low).max(1).values


def dlr_loss(scores: Tensor, forbidden: Tensor) -> Tensor:
    """Difference of logits ratio (Croce & Hein 2020, Eq. 6) with the label's score the largest
    forbidden one: −(z_F − max_{allowed} z) / (z_π1 − z_π3); below 3 outcomes (DLR undefined) the
    plain margin −(z_F − max_{allowed} z)."""
    z_f, z_other = _split(scores, forbidden)
    top = scores.sort(dim=1, descending=True).values
    scale = top[:, 0] - top[:, 2] + 1e-12 if scores.shape[1] >= 3 else 1.0
    return -(z_f - z_other) / scale


def targeted_dlr_loss(scores: Tensor, forbidden: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR (Croce & Hein 2020, Sec. 5): −(z_F − z_t) / (z_π1 − (z_π3 + z_π4)/2); below 4
    outcomes the plain margin −(z_F − z_t)."""
    top = scores.sort(dim=1, descending=True).values
    scale = top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12 if scores.shape[1] >= 4 else 1.0
    return targeted_margin_loss(scores, forbidden, target) / scale


def targeted_margin_loss(scores: Tensor, forbidden: Tensor, target: Tensor) -> Tensor:
    """The MultiTargeted margin (Gowal et al. 2019, "An Alternative Surrogate Loss for PGD-based
    Adversarial Testing"): z_t − z_F, the target's score above the largest forbidden one, unnormalised."""
    z_f, _ = _split(scores, forbidden)
    return scores.gather(1, target.view(-1, 1)).squeeze(1) - z_f


TARGETED_LOSSES = {"apgd-t": targeted_dlr_loss, "apgd-mt": targeted_margin_loss}
"""The members that run once per target class, and the loss each climbs."""


def _distinct(members: list[str]) -> list[str]:
    """The members in order, each once."""
    return list(dict.fromkeys(members))


class AdaptiveEnsemble(Attack):
    """AutoAttack's standard ensemble (Croce & Hein, ICML 2020) and a MultiTargeted member (Gowal et
    al. 2019) against a task's own decision.

    Members run in order, each on the samples no earlier member fooled (a sample is robust only if
    every member fails); every iterate is judged by the task's exact decision and a sample keeps its
    first success (never fooled: APGD-CE's highest-loss point). ``perturb_adaptive`` returns the
    images after each member, so the runner stores robust accuracy after each, as AutoAttack's log.

    - ``apgd-ce``: APGD (Alg. 1: step 2ε, momentum 0.75, step halved at the checkpoints
      0, 0.22, … of ``apgd_steps`` when fewer than 75 % of the steps since the last one raised the loss
      or the best loss stalled, restart from the best point) on the cross-entropy of the forbidden
      outcomes (the label; detection: label or "flagged");
    - ``apgd-t``: APGD on the targeted DLR loss, once per target: the ``targets`` highest-scoring
      allowed outcomes of the clean image (AutoAttack: 9);
    - ``apgd-mt``: APGD on the MultiTargeted margin z_t − z_F (Gowal et al. 2019), unnormalised, over
      the same ``targets``;
    - ``apgd-dlr``: APGD on the untargeted DLR loss (Eq. 6), AutoAttack's earlier second member;
    - ``square``: Square Attack (L∞, ``square_queries`` queries, ``p_init`` 0.8, AutoAttack's schedule
      of the square size), gradient-free on the margin of the scores: it catches masked gradients.

    The default ensemble is AutoAttack's standard one (``STANDARD``; its log, ``RA_after:square``, is
    AutoAttack's standard RA) and then ``apgd-mt``, with two random starts per APGD run. DLR's ratio
    is invariant to a shift and a scale of a *logit* vector, which is why AutoAttack uses it; a
    defense that fuses probabilities (ZePAD: log Σ_i W_i softmax(z_i)) scores with log-probabilities
    that are no shifted logit vector, the low-ranked outcomes' scores move freely, and the targeted
    DLR climbs mostly its denominator (z_π1 − (z_π3 + z_π4)/2) instead of the target's margin. The
    unnormalised margin has no denominator to climb. Its measured effect is the board's
    ``RA_after:square`` → ``RA_after:apgd-mt``. A second random start, because near the decision
    boundary one start finds a point another misses (the convergence check, which re-runs the last
    member with twice the steps and starts, would flag it). ``members = ["apgd-ce", "apgd-t",
    "square"]`` with ``apgd_restarts = 1`` is AutoAttack's standard ensemble exactly.

    Standard iterations (``apgd_steps`` 100, ``square_queries`` 5000, one Square restart) are the
    defaults. FAB-T (AutoAttack's third member) is not implemented: AutoAttack lists "FAB-T or Square"
    as interchangeable for this role and Square needs no gradient. ``samples`` attacks a seeded random
    subset of the test set (reported with a 95 % interval) where the full set does not fit a budget;
    ``recheck_samples`` re-attacks a seeded subset with :meth:`convergence_check` (the last member with
    twice the iterations and restarts). ``eot`` > 1 averages that many scores per query (Athalye et
    al., ICML 2018) for randomised defenses. Random starts come from seeded generators of the run.

    A member's runs — its restarts and, for ``apgd-t``, its targets × restarts — are *lanes* of one
    batch rather than runs one after another: every lane of a sample stops once one of them fools the
    decision, and the sample keeps the lowest such lane's image (the run that would have come first);
    a sample no lane fools keeps its first lane's best point. Square's queries run under
    ``torch.inference_mode`` on the lanes still robust only.
    """

    name = "adaptive"
    scenarios = ("adaptive",)

    class Options(Attack.Options):
        members: Annotated[list[Literal[MEMBERS]], AfterValidator(_distinct)] = Field(
            default_factory=lambda: list(DEFAULT),
            min_length=1,
            description="ensemble members, run in this order on the samples no earlier member fooled",
        )
        apgd_steps: int = Field(100, ge=1, description="iterations per APGD run (AutoAttack: 100)")
        apgd_restarts: int = Field(2, ge=1, description="random starts per APGD run (AutoAttack standard: 1)")
        targets: int = Field(9, ge=1, description="target classes of apgd-t and apgd-mt (AutoAttack: 9)")
        square_queries: int = Field(5000, ge=1, description="queries per Square run (AutoAttack: 5000)")
        square_restarts: int = Field(1, ge=1, description="restarts of Square (AutoAttack standard: 1)")
        p_init: float = Field(
            0.8, gt=0, le=1, description="Square's initial share of pixels changed (AutoAttack: 0.8)"
        )
        samples: int = Field(
            0, ge=0, description="attack a seeded random subset of this many test images (0: all)"
        )
        recheck_samples: int = Field(
            0, ge=0, description="re-attack this many attacked images with the last member at 2× (0: none)"
        )
        eot: int = Field(
            1, ge=1, description="forward passes averaged per query (EOT, for randomised defenses)"
        )

    def __init__(self, eps: float, **options):
        super().__init__(eps, **options)
        self.rechecking = False  # a convergence check draws its own random streams

    def perturb(self, x: Tensor) -> Tensor:
        raise NotImplementedError("adaptive attacks a task's decision: use the adaptive scenario")

    def convergence_check(self) -> AdaptiveEnsemble:
        """The last member alone with twice the iterations (queries) and twice the restarts."""
        check = AdaptiveEnsemble(
            self.eps,
            members=self.members[-1:],
            apgd_steps=2 * self.apgd_steps,
            apgd_restarts=2 * self.apgd_restarts,
            targets=self.targets,
            square_queries=2 * self.square_queries,
            square_restarts=2 * self.square_restarts,
            p_init=self.p_init,
            eot=self.eot,
        )
        check.ctx, check.encoders, check.rechecking = self.ctx, self.encoders, True
        return check

    # ------------------------------------------------------------------ the ensemble
    def perturb_adaptive(self, target: AdaptiveTarget, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        forbidden = target.forbidden(y)
        with torch.no_grad():
            scores, decision = self._query(target, x)
        fooled = target.fooled(decision, y)
        x_adv, out = x.clone(), {}
        for position, name in enumerate(self.members):
            index = (~fooled).nonzero().flatten()
            if len(index):
                found, hit = self._run(name, target, x[index], forbidden[index], scores[index])
                keep = hit if position else torch.ones_like(hit)  # never fooled: APGD-CE's best-loss point
                x_adv[index[keep]] = found[keep]
                fooled[index[hit]] = True
            out[name] = x_adv.clone()
        return out

    def _generator(self, name: str) -> torch.Generator:
        """A seeded CPU stream per member, the same for every call (a batch's result depends on it alone)."""
        offset = 100 + MEMBERS.index(name) + (50 if self.rechecking else 0)
        return torch.Generator().manual_seed(self.ctx.seed * 1_000_003 + offset)

    def _query(self, target: AdaptiveTarget, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.eot == 1:
            return target(x)
        draws = [target(x) for _ in range(self.eot)]
        return torch.stack([scores for scores, _ in draws]).mean(0), draws[-1][1]

    def _run(
        self, name: str, target: AdaptiveTarget, x: Tensor, forbidden: Tensor, clean: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One member on samples all still robust: (images, fooled) — each sample's first success, else
        the best-loss point of its first run. The member's runs (restarts; targeted: targets × restarts)
        are lanes of one batch rather than runs one after another (:func:`_first_success`)."""
        generator, n = self._generator(name), len(x)
        if name == "square":
            lanes = self.square_restarts
            every = forbidden.repeat(lanes, 1)
            found, fooled = self._square(target, x.repeat(lanes, 1, 1, 1), every, n, generator)
            return _first_success(found, fooled, n)
        lanes = self.apgd_restarts
        targeted = TARGETED_LOSSES.get(name)
        if targeted:  # lane j·restarts + r: target j (the j-th highest-scoring allowed outcome)
            order = clean.float().masked_fill(forbidden, -math.inf).argsort(dim=1, descending=True)
            count = min(self.targets, int((~forbidden).sum(1).min()))
            goals = order[:, :count].T.repeat_interleave(lanes, dim=0).reshape(-1)
            lanes *= count
        every = forbidden.repeat(lanes, 1)

        def loss(scores: Tensor, rows: Tensor) -> Tensor:
            if targeted:
                return targeted(scores, every[rows], goals[rows])
            return (forbidden_ce if name == "apgd-ce" else dlr_loss)(scores, every[rows])

        found, fooled = self._apgd(target, x.repeat(lanes, 1, 1, 1), every, loss, n, generator)
        return _first_success(found, fooled, n)

    def _apgd(
        self,
        target: AdaptiveTarget,
        x: Tensor,
        forbidden: Tensor,
        loss: Loss,
        n: int,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """APGD (Croce & Hein 2020, Alg. 1, L∞) on every lane of ``x`` (lane-major copies of ``n`` samples):
        per lane (its first success, else its best-loss point) and whether it fooled the decision.

        A sample stops once any of its lanes fooled the decision, so only still-robust samples cost
        queries; step sizes, momentum and checkpoints are per lane, as they are per sample in Alg. 1."""
        eps, steps, rows = self.eps, self.apgd_steps, len(x)
        sample = torch.arange(rows, device=x.device) % n
        t = 2 * torch.rand(x.shape, generator=generator).to(x) - 1
        scale = t.flatten(1).abs().max(1).values.clamp_min(1e-12).view(-1, 1, 1, 1)
        x_adv = (x + eps * t / scale).clamp(0, 1)
        found, fooled = x_adv.clone(), torch.zeros(rows, dtype=torch.bool, device=x.device)
        done = torch.zeros(n, dtype=torch.bool, device=x.device)  # some lane of the sample fooled it
        value, grad = torch.zeros(rows, device=x.device), torch.zeros_like(x)

        def evaluate(active: Tensor) -> None:
            xa = x_adv[active].requires_grad_(True)
            with torch.enable_grad():
                scores, decision = self._query(target, xa)
                per_sample = loss(scores, active)
                (g,) = torch.autograd.grad(per_sample.sum(), xa)
            value[active], grad[active] = per_sample.detach().float(), g
            hit = active[fools(decision, forbidden[active])]
            found[hit], fooled[hit], done[sample[hit]] = x_adv[hit], True, True

        evaluate(torch.arange(rows, device=x.device))
        best, best_value, best_grad = x_adv.clone(), value.clone(), grad.clone()
        step = torch.full((rows, 1, 1, 1), 2 * eps, device=x.device)
        previous = x_adv.clone()
        history = torch.zeros(steps, rows, device=x.device)
        period, period_min, decrement = (
            max(int(0.22 * steps), 1),
            max(int(0.06 * steps), 1),
            max(int(0.03 * steps), 1),
        )
        since, last_best, reduced = 0, best_value.clone(), torch.ones(rows, dtype=torch.bool, device=x.device)
        for i in range(steps):
            active = (~done[sample]).nonzero().flatten()
            if not len(active):
                break
            momentum = 0.75 if i > 0 else 1.0
            xa, origin = x_adv[active], x[active]
            z = _project(xa + step[active] * grad[active].sign(), origin, eps)
            moved = _project(xa + momentum * (z - xa) + (1 - momentum) * (xa - previous[active]), origin, eps)
            previous[active], x_adv[active] = xa, moved
            evaluate(active)
            history[i] = value
            better = value > best_value
            best[better], best_value[better], best_grad[better] = x_adv[better], value[better], grad[better]
            since += 1
            if since == period:  # a checkpoint w_j: halve the step where progress stalled (Alg. 1)
                rises = (history[max(i - period + 1, 1) : i + 1] > history[max(i - period, 0) : i]).sum(0)
                halve = (rises <= 0.75 * period) | (~reduced & (last_best >= best_value))
                reduced, last_best = halve, best_value.clone()
                step[halve] /= 2
                x_adv[halve], grad[halve] = best[halve], best_grad[halve]
                period, since = max(period - decrement, period_min), 0
        found[~fooled] = best[~fooled]
        return found, fooled

    def _square(
        self, target: AdaptiveTarget, x: Tensor, forbidden: Tensor, n: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Square Attack (Andriushchenko et al. 2020, L∞) on every lane of ``x`` (lane-major copies of
        ``n`` samples): random vertical-stripe start, then per query one square per lane set to x ± ε per
        channel, kept when the margin of the scores (largest forbidden − largest allowed) falls; success
        is the task's decision. Per lane: (its first success, else its lowest-margin point, fooled).

        Gradient-free, so every query runs under ``torch.inference_mode``, only on the lanes of samples
        no lane has fooled yet; those lanes' images, margins and forbidden outcomes are kept gathered
        and are gathered anew only when a sample is fooled."""
        eps, (rows, c, h, w) = self.eps, x.shape
        device = x.device
        sample = torch.arange(rows, device=device) % n
        span_h, span_w = (
            torch.arange(h, device=device).view(1, 1, h, 1),
            torch.arange(w, device=device).view(1, 1, 1, w),
        )

        def signs(*shape: int) -> Tensor:
            return (2 * torch.randint(0, 2, shape, generator=generator) - 1).to(x)

        with torch.inference_mode():
            best = (x + eps * signs(rows, c, 1, w)).clamp(0, 1)
            scores, decision = self._query(target, best)
            best_margin, fooled = _margin(scores, forbidden), fools(decision, forbidden)
            done = torch.zeros(n, dtype=torch.bool, device=device)
            done[sample[fooled]] = True
            active = (~done[sample]).nonzero().flatten()
            lane_x, lane_best, lane_margin, lane_forbidden = (
                x[active],
                best[active],
                best_margin[active],
                forbidden[active],
            )
            for i in range(self.square_queries):
                if not len(active):
                    break
                size = min(max(int(round(math.sqrt(_square_share(self.p_init, i) * h * w))), 1), h, w)
                top = torch.randint(0, h - size + 1, (len(active), 1, 1, 1), generator=generator).to(device)
                left = torch.randint(0, w - size + 1, (len(active), 1, 1, 1), generator=generator).to(device)
                window = (span_h >= top) & (span_h < top + size) & (span_w >= left) & (span_w < left + size)
                # inside the square x ± ε per channel (= the projection of best ± 2ε there), else best
                candidate = torch.where(
                    window, (lane_x + eps * signs(len(active), c, 1, 1)).clamp(0, 1), lane_best
                )
                scores, decision = self._query(target, candidate)
                value, hit = _margin(scores, lane_forbidden), fools(decision, lane_forbidden)
                take = (value < lane_margin) | hit
                lane_best[take], lane_margin[take] = candidate[take], value[take]
                if hit.any():  # keep the fooled lanes' images; go on with the samples still robust
                    best[active] = lane_best
                    fooled[active[hit]] = True
                    done[sample[active[hit]]] = True
                    keep = ~done[sample[active]]
                    active = active[keep]
                    lane_x, lane_best, lane_margin, lane_forbidden = (
                        lane_x[keep],
                        lane_best[keep],
                        lane_margin[keep],
                        lane_forbidden[keep],
                    )
            best[active] = lane_best
        return best.clone(), fooled.clone()


def _margin(scores: Tensor, forbidden: Tensor) -> Tensor:
    """Square's loss: the largest forbidden score minus the largest allowed one (< 0: fooled)."""
    z_f, z_other = _split(scores.float(), forbidden)
    return z_f - z_other


def _first_success(found: Tensor, fooled: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Per sample of ``n`` from lane-major ``found``/``fooled`` (row l·n + s is lane l of sample s): the
    image of its lowest lane that fooled the decision — the lane that would have run first had the
    lanes run one after another — else lane 0's; and whether any lane fooled it."""
    lanes = fooled.view(-1, n)
    first = lanes.int().argmax(0)  # the first lane that fooled the sample (0 when none did)
    images = found.view(lanes.shape[0], n, *found.shape[1:])[first, torch.arange(n, device=found.device)]
    return images, lanes.any(0)


def _project(x_adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Into the L∞ ball of radius ``eps`` around ``x`` and [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def _square_share(p_init: float, i: int) -> float:
    """Square's share of pixels changed at query ``i`` (AutoAttack's schedule for 5000 queries)."""
    for bound, divisor in (
        (10, 1),
        (50, 2),
        (200, 4),
        (500, 8),
        (1000, 16),
        (2000, 32),
        (4000, 64),
        (6000, 128),
        (8000, 256),
    ):
        if i <= bound:
            return p_init / divisor
    return p_init / 512
