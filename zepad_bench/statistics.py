"""Numbers with their noise: mean ± sample std over seeds, and ties within that noise."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

TIE_FACTOR = 2.0
"""Two entries tie when |Δ mean| < TIE_FACTOR · sqrt(sem₁² + sem₂²) (about a 95 % band for n ≥ 3)."""


@dataclass(frozen=True)
class Stat:
    """Per-seed values of one table entry: ``mean``, sample ``std`` (n − 1), ``n`` and the values."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[object]) -> Stat:
        """Numeric values only: ``"n/a"``, ``None`` and NaN are left out."""
        kept = []
        for value in values:
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if not math.isnan(number):
                kept.append(number)
        return cls(tuple(kept))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (n − 1); NaN with fewer than two values (the noise is unknown)."""
        if self.n < 2:
            return math.nan
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    @property
    def sem(self) -> float:
        return self.std / math.sqrt(self.n) if self.n >= 2 else math.nan

    def ties(self, other: Stat) -> bool:
        """Whether the two means are within the noise of each other (False when either noise is unknown)."""
        if self.n < 2 or other.n < 2:
            return False
        return abs(self.mean - other.mean) < TIE_FACTOR * math.hypot(self.sem, other.sem)

    def text(self) -> str:
        """``"mean ± std"``; the mean alone for one seed (never "± 0.00" for an unknown spread)."""
        if not self.n:
            return "n/a"
        if self.n == 1:
            return f"{self.mean:.2f}"
        return f"{self.mean:.2f} ± {self.std:.2f}"

    def as_dict(self) -> dict[str, object]:
        return {
            "mean": self.mean if self.n else None,
            "std": self.std if self.n > 1 else None,
            "n": self.n,
            "values": list(self.values),
        }


def mark_best(stats: list[Stat], higher_is_better: bool = True) -> list[str]:
    """Texts of ``stats`` with the best mean in **bold** and entries tied with it (within noise) marked ≈."""
    present = [i for i, s in enumerate(stats) if s.n]
    if not present:
        return [s.text() for s in stats]
    pick = max if higher_is_better else min
    best = pick(present, key=lambda i: stats[i].mean)
    out = []
    for i, stat in enumerate(stats):
        if i == best:
            out.append(f"**{stat.text()}**")
        elif stat.n and stat.ties(stats[best]):
            out.append(f"≈ {stat.text()}")
        else:
            out.append(stat.text())
    return out
