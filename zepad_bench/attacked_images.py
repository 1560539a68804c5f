"""The attacked test images of a cell: a fitted attack's ``perturb`` per batch (transfer and
defense-aware scenarios), or the task's own decision attacked per batch with the test labels
(``adaptive``). Every attacked batch is checked against the budget."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch

from zepad_bench.adaptive_target import AdaptiveTarget
from zepad_bench.budget import check_budget
from zepad_bench.data.images import LabeledImages
from zepad_bench.interfaces import Attack
from zepad_bench.pipeline import evaluate

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
    target: AdaptiveTarget,
    test: LabeledImages,
    batch_size: int,
    generator: torch.Generator,
    track: Track,
) -> dict[str, Any]:
    """``adaptive`` scenario: the task's own decision ``target`` attacked per batch with the test labels
    (:func:`zepad_bench.pipeline.evaluate`, every batch budget-checked): ``{"images": …, "indices": the
    test rows attacked, "stats": the attack's metrics}``."""
    run = evaluate(
        attack,
        target,
        test.float_images(slice(None)),
        test.labels,
        batch_size,
        generator,
        check=lambda x, x_adv: check_budget(attack, x, x_adv),
        track=track,
    )
    return {"images": run.images, "indices": run.indices, "stats": run.metrics}
