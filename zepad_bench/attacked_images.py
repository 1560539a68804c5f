"""The attacked test images of a cell: a fitted attack's ``perturb`` per batch (transfer and
defense-aware scenarios), or ``perturb_pipeline`` per batch through the task's defended pipeline with
the test labels (``adaptive``). Every attacked batch is checked against the budget."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import nn

from zepad_bench.budget import check_budget
from zepad_bench.data.images import LabeledImages
from zepad_bench.interfaces import Attack, DefendedModel
from zepad_bench.pipeline import DefendedPipeline, input_gradient_stats

T = TypeVar("T")
Track = Callable[[Iterable[T], str], Iterable[T]]


def transfer_images(
    attack: Attack, data: LabeledImages, batch_size: int, device: str, track: Track
) -> torch.Tensor:
    """``attack.perturb`` on every batch of ``data`` (float, CPU)."""
    out = []
    for start in track(range(0, len(data), batch_size), f"perturb {data.name}"):
        x = data.float_images(slice(start, start + batch_size)).to(device)
        x_adv = attack.perturb(x).detach().float()
        check_budget(attack, x, x_adv)
        out.append(x_adv.cpu())
    return torch.cat(out)


def adaptive_images(
    attack: Attack,
    model: DefendedModel,
    heads: list[nn.Module],
    test: LabeledImages,
    batch_size: int,
    device: str,
    track: Track,
) -> dict[str, Any]:
    """``adaptive`` scenario: the test images attacked per batch through the task's whole pipeline
    (``attack.perturb_pipeline`` with the test labels), and the pipeline's input-gradient statistics
    (:func:`zepad_bench.pipeline.input_gradient_stats`): ``{"images": …, "stats": {…}}``."""
    pipeline = DefendedPipeline(model, heads)
    out = []
    for start in track(range(0, len(test), batch_size), f"adaptive {test.name}"):
        window = slice(start, start + batch_size)
        x = test.float_images(window).to(device)
        x_adv = attack.perturb_pipeline(pipeline, x, test.labels[window].to(device))
        check_budget(attack, x, x_adv.detach().float())
        out.append(x_adv.detach().float().cpu())
    images = torch.cat(out)
    stats = input_gradient_stats(pipeline, test.float_images(slice(None)), test.labels)
    return {"images": images, "stats": stats}
