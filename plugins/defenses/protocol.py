"""``protocol = "authors" | "corrected"``: every deviation from the authors' code as a named parameter.

Each defense's options declare, per protocol, the values of its deviation parameters (``presets``
of its ``Options``, :class:`.tuning.TuningOptions`): the chosen protocol fills every one left unset,
explicitly given parameters win. The authors' training step has two parts that are not plain
settings, provided here:

- ``pgd_input = "raw"``: the authors' PGD called the model on un-normalised [0, 1] input while
  the training forward normalised it (:func:`pgd_input_mode`);
- ``pgd_ce_term = True``: their PGD loop ran ``loss.backward()`` after the optimiser's
  ``zero_grad()``, so the parameter gradients of the CE at every PGD iterate were added to the
  update. Here that is an explicit loss term, Σ_t CE(f(x_t), y) over the iterates, evaluated the
  way the PGD saw them (model in eval mode, same input mode) — :func:`iterate_ce`.

See docs/fidelity.md for each deviation, the authors' file and its measured effect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zepad_bench.nn.adversarial_tuning import eval_mode

PROTOCOL_NAMES = ("corrected", "authors")
PGD_INPUTS = ("normalised", "raw")


@contextlib.contextmanager
def pgd_input_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Within: ``model.encoder`` skips its normalisation when ``mode == "raw"`` (authors' PGD input)."""
    encoder = getattr(model, "encoder", None)
    if mode == "normalised" or encoder is None:
        yield
        return
    mean, std = encoder.mean, encoder.std
    encoder.mean, encoder.std = torch.zeros_like(mean), torch.ones_like(std)
    try:
        yield
    finally:
        encoder.mean, encoder.std = mean, std


def iterate_ce(model: nn.Module, iterates: list[Tensor], y: Tensor, mode: str) -> Tensor:
    """Σ_t mean CE(model(x_t), y) over the PGD iterates, model in eval mode, input as the PGD saw it.

    The term's graph keeps the BatchNorm running statistics of now: the module gets copies, so a
    later training forward's in-place update does not reach back into this term's backward.
    """
    with eval_mode(model), pgd_input_mode(model, mode):
        loss = sum((F.cross_entropy(model(x_t), y) for x_t in iterates), torch.zeros((), device=y.device))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean, m.running_var = m.running_mean.clone(), m.running_var.clone()
    return loss
