"""Adaptive per-sample attack on the whole defended pipeline: an AutoAttack-style ensemble from ART."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import AfterValidator, Field
from torch import Tensor, nn

from zepad_bench.interfaces import Attack
from zepad_bench.nn.pgd import project
from zepad_bench.pipeline import EOT
from zepad_bench.seeding import seeded_global_rng

MEMBERS = ("pgd", "apgd-ce", "apgd-dlr", "square")


def _distinct(members: list[str]) -> list[str]:
    """The members in order, each once."""
    return list(dict.fromkeys(members))


class AdaptiveEnsemble(Attack):
    """AutoAttack-style ensemble (Croce & Hein, ICML 2020) on the whole defended task pipeline.

    Per-sample worst case over white-box attacks and a gradient-free check, run on the task's
    complete pipeline (branch encoders → task heads → the defense's fusion), in the manner of
    AutoAttack (Sec. 4: APGD-CE, APGD-DLR, Square; a sample is robust only if every member fails).

    Members (ART 1.20 implementations, on a ``PyTorchClassifier`` over the pipeline, ``clip_values``
    (0, 1) so ε is in pixels), run in order on the samples still classified right:
    ``pgd`` — Madry et al. 2018 L∞ PGD, ``pgd_steps`` steps of 2.5·ε/steps from a random start,
    ``pgd_restarts`` restarts; ``apgd-ce`` / ``apgd-dlr`` — Croce & Hein 2020 Alg. 1 with the
    cross-entropy / difference-of-logits-ratio loss (Eq. 6), ``apgd_steps`` iterations, initial step
    2ε, ``apgd_restarts`` restarts (DLR is skipped below three classes); ``square`` —
    Andriushchenko et al., ECCV 2020, ``square_queries`` queries (gradient-free: catches masked
    gradients). ``eot`` > 1 averages that many forward passes per query (Athalye et al. 2018) for
    randomised defenses. Outputs are projected to the ε-ball and [0, 1]; ART's global RNG draws are
    seeded from the run.
    """

    name = "adaptive"
    scenarios = ("adaptive",)

    class Options(Attack.Options):
        members: Annotated[list[Literal[MEMBERS]], AfterValidator(_distinct)] = Field(
            default_factory=lambda: list(MEMBERS),
            min_length=1,
            description="ensemble members, run in this order on the samples still classified right",
        )
        pgd_steps: int = Field(20, ge=1, description="PGD iterations (step 2.5·ε/pgd_steps)")
        pgd_restarts: int = Field(1, ge=1, description="PGD random starts")
        apgd_steps: int = Field(50, ge=1, description="APGD-CE/-DLR iterations (initial step 2ε)")
        apgd_restarts: int = Field(1, ge=1, description="APGD-CE/-DLR random starts")
        square_queries: int = Field(300, ge=1, description="Square attack queries (gradient-free)")
        eot: int = Field(
            1, ge=1, description="forward passes averaged per query (EOT, for randomised defenses)"
        )

    def perturb(self, x: Tensor) -> Tensor:
        raise NotImplementedError("adaptive attacks the defended pipeline: use the adaptive scenario")

    def _member(self, name: str, classifier: Any, batch_size: int) -> Callable[[np.ndarray, np.ndarray], Any]:
        from art.attacks.evasion import AutoProjectedGradientDescent, ProjectedGradientDescent, SquareAttack

        common = {"eps": self.eps, "batch_size": batch_size, "verbose": False}
        if name == "pgd":
            attack = ProjectedGradientDescent(
                classifier,
                eps_step=2.5 * self.eps / self.pgd_steps,
                max_iter=self.pgd_steps,
                num_random_init=self.pgd_restarts,
                **common,
            )
        elif name == "square":
            attack = SquareAttack(classifier, max_iter=self.square_queries, nb_restarts=1, **common)
        else:
            attack = AutoProjectedGradientDescent(
                classifier,
                eps_step=2 * self.eps,
                max_iter=self.apgd_steps,
                nb_random_init=self.apgd_restarts,
                loss_type="cross_entropy" if name == "apgd-ce" else "difference_logits_ratio",
                **common,
            )
        return lambda x, y: attack.generate(x, y=y)

    def perturb_pipeline(self, pipeline: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        from art.estimators.classification import PyTorchClassifier

        model = EOT(pipeline, self.eot) if self.eot > 1 else pipeline
        with torch.no_grad():
            robust = model(x).argmax(1) == y
        cuda = x.device.type == "cuda"
        with torch.cuda.device(x.device) if cuda else nullcontext():
            classifier = PyTorchClassifier(
                model,
                loss=nn.CrossEntropyLoss(),
                input_shape=tuple(x.shape[1:]),
                nb_classes=int(model(x[:1]).shape[1]),
                clip_values=(0.0, 1.0),
                device_type="gpu" if cuda else "cpu",
            )
        x_adv = x.clone()
        for i, name in enumerate(self.members):
            index = robust.nonzero().flatten()
            if len(index) == 0:
                break
            if name == "apgd-dlr" and classifier.nb_classes < 3:
                continue  # the DLR loss (Eq. 6) needs the third-largest logit
            run = self._member(name, classifier, len(index))
            with seeded_global_rng(self.ctx.generator(100 + i).initial_seed()), torch.enable_grad():
                found = run(x[index].cpu().numpy(), y[index].cpu().numpy())
            candidate = project(torch.from_numpy(np.asarray(found, np.float32)).to(x), x[index], self.eps)
            with torch.no_grad():
                fooled = model(candidate).argmax(1) != y[index]
            x_adv[index[fooled]] = candidate[fooled]
            robust[index[fooled]] = False
        return x_adv
