"""solo-learn's optimisers and schedule: LARS (with lr clipping), SGD, Adam; warmup-cosine per step."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """LARS (You et al., 2017, arXiv:1708.03888) as solo-learn: SGD with momentum on trust-scaled steps.

    trust = η‖w‖ / (‖g‖ + wd‖w‖ + 1e-8), applied to g + wd·w; with ``clip_lr`` the trust ratio
    becomes min(trust/lr, 1). Groups with ``exclude=True`` (biases, norm layers) get neither the
    trust ratio nor weight decay.
    """

    def __init__(
        self, params: Any, lr: float, momentum: float, weight_decay: float, eta: float, clip_lr: bool
    ):
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "clip_lr": clip_lr,
        }
        super().__init__(params, {**defaults, "exclude": False})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            wd, lr = group["weight_decay"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if not group["exclude"]:
                    p_norm, g_norm = p.norm(), d_p.norm()
                    trust = group["eta"] * p_norm / (g_norm + wd * p_norm + 1e-8)
                    if group["clip_lr"]:
                        trust = torch.clamp(trust / lr, max=1.0)
                    trust = torch.where((p_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                    d_p = (d_p + wd * p) * trust
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = d_p.clone()
                else:
                    buf.mul_(group["momentum"]).add_(d_p)
                p.add_(buf, alpha=-lr)


def build_optimizer(model: nn.Module, cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The recipe's optimiser over the trainable parameters of ``model``."""
    params = [p for p in model.parameters() if p.requires_grad]
    kind, lr, wd = cfg["optimizer"], cfg["lr"], cfg["weight_decay"]
    if kind == "lars":
        exclude = cfg["exclude_bias_n_norm"]
        groups = [
            {"params": [p for p in params if not (exclude and p.ndim == 1)]},
            {"params": [p for p in params if exclude and p.ndim == 1], "exclude": True},
        ]
        groups = [g for g in groups if g["params"]]
        return LARS(
            groups,
            lr=lr,
            momentum=cfg["momentum"],
            weight_decay=wd,
            eta=cfg["lars_eta"],
            clip_lr=cfg["clip_lr"],
        )
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def warmup_cosine(
    step: int, total_steps: int, warmup_steps: int, lr: float, start_lr: float, min_lr: float
) -> float:
    """Linear warmup from ``start_lr`` over ``warmup_steps``, then cosine from ``lr`` to ``min_lr``."""
    if step < warmup_steps:
        return start_lr + (lr - start_lr) * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
