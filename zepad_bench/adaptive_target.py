"""The contract's adaptive target: a task's decision as an adaptive attacker attacks it.

:class:`AdaptiveTarget` is what :meth:`zepad_bench.interfaces.Task.adaptive_target` returns and
:meth:`zepad_bench.interfaces.Attack.perturb_adaptive` attacks: differentiable scores an attacker climbs
and the exact decision the task scores with, one function for both. It reads nothing of the host, so
the contract can name it without an import cycle (:mod:`zepad_bench.pipeline` evaluates attacks on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

Decide = Callable[[list[Tensor]], tuple[Tensor, Tensor]]
"""Branch features → (N×K differentiable scores, N exact decisions in 0..K−1)."""


class AdaptiveTarget:
    """A task's decision under attack: ``encoders`` (images in [0, 1] → each branch's features) and
    ``decide`` (those features → N×K scores and the N decisions the task scores with).

    The K outcomes are the task's classes, then any extra outcome (detection: "flagged"). A sample is
    *fooled* when its decision is neither its label nor one of ``rejected`` (outcomes that count as the
    attack failing for every sample). ``metric`` names the task metric that equals 100 − the attacker's
    success rate on the same images (classification and retrieval: ``RA``).
    """

    def __init__(
        self,
        encoders: list[nn.Module],
        decide: Decide,
        num_outcomes: int,
        rejected: tuple[int, ...] = (),
        metric: str = "RA",
    ):
        self.encoders, self.decide = list(encoders), decide
        self.num_outcomes, self.rejected, self.metric = num_outcomes, tuple(rejected), metric

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(scores N×K, decision N) of images ``x``."""
        return self.decide([encoder(x) for encoder in self.encoders])

    def forbidden(self, y: Tensor) -> Tensor:
        """N×K: the outcomes that leave each sample unfooled (its label and ``rejected``)."""
        mask = torch.zeros(len(y), self.num_outcomes, dtype=torch.bool, device=y.device)
        mask[torch.arange(len(y), device=y.device), y] = True
        mask[:, list(self.rejected)] = True
        return mask

    def fooled(self, decision: Tensor, y: Tensor) -> Tensor:
        """Whether each decision fools the task (the attacker's success)."""
        return fools(decision, self.forbidden(y))

    def as_module(self) -> nn.Module:
        """The scores as a frozen ``nn.Module`` (images → N×K), for the older ``perturb_pipeline`` form."""
        return _Scores(self)


class _Scores(nn.Module):
    def __init__(self, target: AdaptiveTarget):
        super().__init__()
        self.target = target
        self.encoders = nn.ModuleList(target.encoders)

    def forward(self, x: Tensor) -> Tensor:
        return self.target(x)[0]


def fools(decision: Tensor, forbidden: Tensor) -> Tensor:
    """Whether each decision fools the task, given each sample's forbidden outcomes (N×K,
    :meth:`AdaptiveTarget.forbidden`): the decision is none of them."""
    return ~forbidden.gather(1, decision.view(-1, 1)).squeeze(1)


def forbidden_ce(scores: Tensor, forbidden: Tensor) -> Tensor:
    """Per-sample −log Σ_{k ∈ forbidden} softmax(scores)_k: the cross-entropy for a single forbidden
    outcome (the label), its generalisation when several outcomes count as failure (detection)."""
    log_p = torch.log_softmax(scores.float(), dim=1)
    return -log_p.masked_fill(~forbidden, -math.inf).logsumexp(dim=1)
