"""The equal-budget control: one random universal perturbation of L∞ size eps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import Field
from torch import Tensor

from zepad_bench.nn.encoder import Encoder
from zepad_bench_plugins.attacks.common import AttackOptions, UniversalAttack, cycle, random_delta


class RandomNoise(UniversalAttack):
    """Random universal noise of the attacks' budget: ±eps signs, or uniform in [−eps, eps].

    Not an attack: the control every attack must beat (a DAE that harms no more than random
    noise of the same ‖·‖∞ shows nothing). Ignores the encoders; one δ drawn from the run seed.
    """

    name = "random-noise"
    role = "control"

    class Options(AttackOptions):
        distribution: Literal["sign", "uniform"] = Field(
            "sign", description="±eps at every pixel (signs drawn at random), or uniform in [−eps, eps]"
        )

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        first = next(cycle(images))
        self.delta = random_delta(first, self.eps, self.ctx.generator(), sign=self.distribution == "sign")
