"""The attack contract's budget, checked by the runner on every attacked batch."""

from __future__ import annotations

import torch

from zepad_bench.errors import CellFailed
from zepad_bench.interfaces import Attack

BUDGET_TOLERANCE = 1e-5
"""Float slack of the budget check (uint8 images made float, then perturbed in float32)."""


def check_budget(attack: Attack, x: torch.Tensor, x_adv: torch.Tensor) -> None:
    """Same shape, finite values, ‖x_adv − x‖∞ ≤ ε and, for attacks that clamp (our protocol), values
    in [0, 1]. A violation fails the cell (:class:`CellFailed`, one line naming the plugin); it is
    never clipped into a result."""
    who = f"attack plugin {attack.name!r}"
    if x_adv.shape != x.shape:
        raise CellFailed(f"{who} returned shape {tuple(x_adv.shape)} for inputs of shape {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise CellFailed(f"{who} returned non-finite pixel values")
    norm = (x_adv - x).abs().max().item()
    if norm > attack.eps + BUDGET_TOLERANCE:
        raise CellFailed(
            f"{who} broke its budget: ‖x_adv − x‖∞ = {norm:.4f} ({norm * 255:.1f}/255) "
            f"> ε = {attack.eps:.4f} ({attack.eps * 255:.1f}/255)"
        )
    low, high = x_adv.min().item(), x_adv.max().item()
    if attack.clamp and (low < -BUDGET_TOLERANCE or high > 1 + BUDGET_TOLERANCE):
        raise CellFailed(f"{who} returned pixels in [{low:.3f}, {high:.3f}], outside [0, 1]")
