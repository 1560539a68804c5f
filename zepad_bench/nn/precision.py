"""Mixed precision: ``precision = "bf16"`` runs backbones under bf16 autocast, everything else in fp32.

Only the backbone forward (convolutions and matmuls, the bulk of the work) is autocast; its output
is cast back to fp32, so losses, PGD steps and projections, SSL queues and whitening, heads and
metrics stay fp32 and weights and optimiser states are never reduced. That is the numerically safe
part: autocast's own per-op lists keep reductions such as softmax and norms in fp32 inside it.
The runner sets the precision per stage (:func:`use`); code outside a run (tests, notebooks) is fp32.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from torch import Tensor, nn

PRECISIONS = ("fp32", "bf16")
_current: contextvars.ContextVar[str] = contextvars.ContextVar("precision", default="fp32")


@contextlib.contextmanager
def use(precision: str) -> Iterator[None]:
    """Run the enclosed code's backbones at ``precision`` ("fp32" | "bf16")."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    token = _current.set(precision)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> str:
    return _current.get()


def run_backbone(backbone: nn.Module, x: Tensor) -> Tensor:
    """``backbone(x)``, under bf16 autocast when the current precision is bf16; fp32 output."""
    if _current.get() == "fp32":
        return backbone(x)
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        out = backbone(x)
    return out.float()
