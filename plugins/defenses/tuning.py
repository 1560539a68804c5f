"""Options shared by the defenses that adversarially tune a public encoder with a head (PGD-AT,
TRADES, MART, Gen-AF, ZePAD's MPAE branch): the optimiser of ZePAD's code, the same for all of them,
and the ``protocol`` presets of the deviations from the authors' code (:mod:`.protocol`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from zepad_bench import Defense
from zepad_bench.nn.adversarial_tuning import TuningConfig

from .protocol import PGD_INPUTS, PROTOCOL_NAMES

CORRECTED = {"freeze_bn": True, "pgd_ce_term": False, "pgd_input": "normalised"}
"""Our protocol's deviation parameters, shared by every tuning defense."""


class TuningOptions(Defense.Options):
    """Adam on encoder and head, ExponentialLR, and the deviation parameters that ``protocol`` presets."""

    presets = {"protocol": {"corrected": CORRECTED, "authors": {**CORRECTED, "freeze_bn": False}}}

    epochs: int = Field(20, ge=1, description="tuning epochs over D_f")
    batch_size: int = Field(256, ge=1, description="tuning batch size")
    encoder_lr: float = Field(1e-4, gt=0, description="Adam learning rate of the encoder")
    head_lr: float = Field(5e-3, gt=0, description="Adam learning rate of the new head")
    weight_decay: float = Field(8e-4, ge=0, description="Adam weight decay")
    gamma: float = Field(0.96, gt=0, le=1, description="ExponentialLR decay of both learning rates per epoch")
    protocol: Literal[PROTOCOL_NAMES] = Field(
        "corrected",
        description='presets the deviation parameters below: "corrected" (ours) or "authors" (as the '
        "authors' code ran; docs/fidelity.md); explicit values win",
    )
    freeze_bn: bool | None = Field(
        None,
        description="keep BatchNorm running statistics fixed while tuning (the authors' code trained them)",
    )
    pgd_ce_term: bool | None = Field(
        None,
        description="add Σ_t CE at the PGD iterates to the loss (the parameter gradients the authors' PGD "
        "leaked into the update)",
    )
    pgd_input: Literal[PGD_INPUTS] | None = Field(
        None,
        description='input of the inner PGD: "normalised" through the encoder, as training sees it, or "raw" '
        "(the authors' un-normalised PGD input)",
    )

    def tuning(self) -> TuningConfig:
        """The optimiser settings as :func:`~zepad_bench.nn.adversarial_tuning.adversarial_finetune` takes."""
        return TuningConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            encoder_lr=self.encoder_lr,
            head_lr=self.head_lr,
            weight_decay=self.weight_decay,
            gamma=self.gamma,
            freeze_bn=bool(self.freeze_bn),
        )
