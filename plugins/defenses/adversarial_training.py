"""Adversarial-training baselines that fine-tune a public encoder with a head: PGD-AT, TRADES, MART.

No authors' code exists for the encoder setting, so each is implemented from its own paper (and
the loss code its authors released for classifiers), adapted the same way for all three:

- The papers train a classifier from scratch with SGD for 76–205 epochs. Here the victim encoder
  is copied and fine-tuned jointly with a new 3-layer head on D_f with the protocol of ZePAD's
  adversarial tuning (Adam, encoder lr 1e-4, head lr 5e-3, weight decay 8e-4, ExponentialLR 0.96,
  20 epochs, batch 256), so that every defense of the comparison gets the same optimiser and budget.
- BatchNorm running statistics stay frozen while tuning (``freeze_bn``; the papers' code updates
  them, small encoders diverge when they do). ``protocol = "authors"`` trains them.
- The inner maximisation runs in [0, 1] pixel space through the encoder's own normalisation, with
  the model in eval mode, and never leaks parameter gradients into the update.
- Auxiliary encoders are ignored: each defense tunes the victim only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from zepad_bench import Branch, DefendedModel, Defense
from zepad_bench.data.images import LabeledImages
from zepad_bench.nn.adversarial_tuning import (
    EncoderWithHead,
    adversarial_finetune,
    eval_mode,
    new_head,
)
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.pgd import pgd
from zepad_bench.params import Budget, with_defaults

from .protocol import iterate_ce, pgd_input_mode
from .tuning import TuningOptions

STARTS = ("uniform", "normal", "none")
NORMAL_START_STD = 0.001  # TRADES' and MART's code: x' = x + 0.001·N(0, I)


def trades_loss(logits: Tensor, adv_logits: Tensor, y: Tensor, beta: float) -> Tensor:
    """TRADES (Zhang et al., ICML 2019; as the authors coded it): CE(f(x), y) + β·KL(p(x) ‖ p(x')).

    KL is summed over classes and averaged over the batch ("batchmean"); gradients flow through
    both sides, as in the authors' code.
    """
    kl = F.kl_div(F.log_softmax(adv_logits, dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + beta * kl


def mart_loss(logits: Tensor, adv_logits: Tensor, y: Tensor, beta: float) -> Tensor:
    """MART (Wang et al., ICLR 2020; as the authors coded it): BCE(p', y) + β·mean KL(p‖p')·(1 − p_y).

    BCE(p', y) = CE(f(x'), y) − log(1 − max_{k≠y} p'_k) (boosted CE); the weight 1 − p_y uses the
    clean true-class probability. The constants 1.0001, 1e-12 and 1.0000001 are the authors'.
    """
    adv_probs = F.softmax(adv_logits, dim=1)
    top2 = adv_probs.topk(2, dim=1).indices
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])  # most probable wrong class under p'
    p_wrong = adv_probs.gather(1, wrong.unsqueeze(1)).squeeze(1)
    bce = F.cross_entropy(adv_logits, y) - torch.log(1.0001 - p_wrong + 1e-12).mean()
    probs = F.softmax(logits, dim=1)
    kl = F.kl_div(torch.log(adv_probs + 1e-12), probs, reduction="none").sum(dim=1)
    p_true = probs.gather(1, y.unsqueeze(1)).squeeze(1)
    return bce + beta * (kl * (1.0000001 - p_true)).mean()


class AdversarialTraining(Defense):
    """Base of the adversarial-training baselines: tune a copy of the victim and a new head with :meth:`loss`.

    Subclasses set the defaults of the inner maximisation of their paper (their ``Options``) and
    :meth:`loss`, and may change the inner objective (:meth:`inner_objective`). ``protocol``
    ("corrected" | "authors") presets the deviation parameters (``freeze_bn``, ``pgd_ce_term``,
    ``pgd_input``; see :mod:`.protocol`); explicit values win.
    """

    class Options(TuningOptions):
        eps: Budget = Field(8 / 255, description="L∞ budget ε of the inner maximisation (PGD), pixels")
        step_size: Budget = Field(2 / 255, description="PGD step size, pixels")
        steps: int = Field(10, ge=1, description="PGD steps")
        start: Literal[STARTS] = Field(
            "uniform",
            description='PGD start: "uniform" noise in the ε-ball, "normal" x + 0.001·N(0, I), or "none" (x)',
        )

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.config = self.options.tuning()

    def fit(self, victim: Encoder, auxiliaries: list[Encoder], data: LabeledImages) -> DefendedModel:
        """One branch "tuned": the victim's copy and its head, tuned jointly on D_f (auxiliaries ignored)."""
        model, history = self.tune(victim, data)
        return self.defended(model, data, {"history": history})

    def defended(self, model: EncoderWithHead, data: LabeledImages, info: dict[str, Any]) -> DefendedModel:
        branch = Branch("tuned", "tuned", model.encoder.eval(), head=model.head.eval(), head_data=data.name)
        return DefendedModel([branch], self, info)

    def tune(self, victim: Encoder, data: LabeledImages) -> tuple[EncoderWithHead, list[float]]:
        """Copy the victim, add a new head, tune both with :meth:`tuning_loss`; returns per-epoch losses."""
        device = self.ctx.device
        torch.manual_seed(self.ctx.seed)
        encoder = victim.copy().to(device)
        model = EncoderWithHead(encoder, new_head(encoder, data, device))
        loss_fn = partial(self.tuning_loss, generator=self.ctx.generator(1))
        history = adversarial_finetune(
            model,
            data,
            loss_fn,
            self.config,
            seed=self.ctx.seed,
            device=device,
            track=self.ctx.track,
            description=f"{self.name}: tune",
        )
        return model, history

    def tuning_loss(
        self, model: EncoderWithHead, x: Tensor, y: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Craft x' by the inner maximisation, then return the training loss (what the optimiser steps on).

        With ``pgd_ce_term`` the loss also holds Σ_t CE at the PGD iterates (the authors' leaked gradients).
        """
        iterates: list[Tensor] | None = [] if self.pgd_ce_term else None
        extra = {} if iterates is None else {"iterates": iterates}  # overrides of `adversarial` may lack it
        x_adv = self.adversarial(model, x, y, generator, **extra)
        # before the training forward, which moves BN statistics: the PGD saw the old ones
        leaked = iterate_ce(model, iterates, y, self.pgd_input) if iterates is not None else 0.0
        return self.loss(model, x, x_adv, y) + leaked

    def adversarial(
        self,
        model: EncoderWithHead,
        x: Tensor,
        y: Tensor,
        generator: torch.Generator | None = None,
        iterates: list[Tensor] | None = None,
    ) -> Tensor:
        """The inner maximisation: PGD on :meth:`inner_objective`, model in eval mode, from ``start``."""
        start = None
        if self.start == "normal":
            start = x + NORMAL_START_STD * torch.randn(x.shape, generator=generator).to(x.device)
        with eval_mode(model), pgd_input_mode(model, self.pgd_input):
            objective = self.inner_objective(model, x, y)
            return pgd(
                objective,
                x,
                self.eps,
                self.step_size,
                self.steps,
                self.start == "uniform",
                generator,
                start,
                iterates=iterates,
            )

    def inner_objective(self, model: EncoderWithHead, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        """What PGD maximises over x': the CE of encoder+head, summed over the batch (Madry et al.'s code)."""
        return lambda x_adv: F.cross_entropy(model(x_adv), y, reduction="sum")

    def loss(self, model: EncoderWithHead, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
        raise NotImplementedError


class PGDAT(AdversarialTraining):
    """PGD-AT (Madry et al., ICLR 2018, Eq. 2.1): CE on PGD examples only (no clean term).

    Inner maximisation from the authors' CIFAR config: ε 8/255, step 2/255, 10 steps, uniform
    random start (the paper's text says 7 steps; the released config trains with 10).
    """

    name = "pgd-at"

    def loss(self, model: EncoderWithHead, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(x_adv), y)


class _Regularised(AdversarialTraining):
    """TRADES and MART: a β-weighted KL regulariser; their authors' inner maximisation settings.

    ε 0.031, step 0.007, 10 steps from x + 0.001·N(0, I); the start is projected into the ε-ball
    and [0, 1] (the authors' code took its first gradient at the unclipped start).
    """

    class Options(with_defaults(AdversarialTraining.Options, eps=0.031, step_size=0.007, start="normal")):
        beta: float = Field(6.0, ge=0, description="weight β of the KL regulariser")


class TRADES(_Regularised):
    """TRADES (Zhang et al., ICML 2019): tuning on CE plus β·KL(clean ‖ adversarial) (:func:`trades_loss`),
    β = 6 (the authors' CIFAR setting).

    The inner maximisation maximises Σ KL(p(x) ‖ p(x')) over x' (p(x) fixed while crafting).
    """

    name = "trades"

    def inner_objective(self, model: EncoderWithHead, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        with torch.no_grad():
            target = F.softmax(model(x), dim=1)
        return lambda x_adv: F.kl_div(F.log_softmax(model(x_adv), dim=1), target, reduction="sum")

    def loss(self, model: EncoderWithHead, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
        return trades_loss(model(x), model(x_adv), y, self.beta)


class MART(_Regularised):
    """MART (Wang et al., ICLR 2020): tuning on boosted CE plus a misclassification-aware KL term
    (:func:`mart_loss`), β = 6.

    β = 6 as the authors' mart.py and WRN script (their ResNet script uses β = 5); the inner
    maximisation is CE PGD (authors' code).
    """

    name = "mart"

    def loss(self, model: EncoderWithHead, x: Tensor, x_adv: Tensor, y: Tensor) -> Tensor:
        return mart_loss(model(x), model(x_adv), y, self.beta)
