"""Projected gradient ascent in [0, 1] pixel space (Madry et al., ICLR 2018, Eq. 2.1 / §2.1).

Gradients are taken with ``torch.autograd.grad`` w.r.t. the input only, so no parameter
gradient is ever accumulated (the authors' ZePAD code leaked them into the update).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def project(x_adv: Tensor, x: Tensor, eps: float, clamp: bool = True) -> Tensor:
    """Clip ``x_adv`` into the L∞ ball of radius ``eps`` around ``x`` and, if ``clamp``, into [0, 1]."""
    x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
    return x_adv.clamp_(0.0, 1.0) if clamp else x_adv


def pgd(
    loss_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = False,
    generator: torch.Generator | None = None,
    start: Tensor | None = None,
    clamp: bool = True,
    iterates: list[Tensor] | None = None,
) -> Tensor:
    """Maximise ``loss_fn(x_adv)`` (a scalar) by signed-gradient steps; returns detached ``x_adv``.

    The ascent starts at ``x``, at uniform noise in the ε-ball (``random_start``), or at ``start``
    (projected; e.g. TRADES' ``x + 0.001·N(0, I)``), which overrides ``random_start``.
    ``iterates``, when given, receives each point at which a gradient is taken (detached).
    Guarantees ``‖x_adv − x‖∞ ≤ eps`` and, with ``clamp`` (default), ``x_adv ∈ [0, 1]``.
    """
    x = x.detach()
    if start is not None:
        x_adv = project(start.detach(), x, eps, clamp)
    elif random_start:
        noise = torch.rand(x.shape, generator=generator).to(x.device) * 2 - 1
        x_adv = project(x + eps * noise, x, eps, clamp)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        if iterates is not None:
            iterates.append(x_adv.detach())
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
        x_adv = project(x_adv.detach() + step_size * grad.sign(), x, eps, clamp)
    return x_adv.detach()
