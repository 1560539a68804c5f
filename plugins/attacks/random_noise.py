"""The equal-budget control: one random universal perturbation of L∞ size eps."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from torch import Tensor

from zepad_bench.nn.encoder import Encoder
from zepad_bench_plugins.attacks.common import UniversalAttack, cycle, random_delta


class RandomNoise(UniversalAttack):
    """Random universal noise of the attacks' budget: ±eps signs, or uniform in [−eps, eps].

    Not an attack: the control every attack must beat (a DAE that harms no more than random
    noise of the same ‖·‖∞ shows nothing). Ignores the encoders; one δ drawn from the run seed.
    """

    name = "random-noise"
    role = "control"

    param_help = {"distribution": "±eps signs, or uniform in [−eps, eps]", "clamp": "keep images in [0, 1]"}

    def __init__(self, eps: float, *, distribution: Literal["sign", "uniform"] = "sign", clamp: bool = True):
        super().__init__(eps, clamp=clamp)
        self.distribution = distribution

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        super().fit(encoders, images)
        first = next(cycle(images))
        self.delta = random_delta(first, self.eps, self.ctx.generator(), sign=self.distribution == "sign")
