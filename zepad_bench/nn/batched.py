"""Several encoders of one architecture evaluated together: weights stacked, one ``vmap``-ed forward.

ZePAD's branches (victim copies, tuned encoders, auxiliaries of the victim's architecture) run on the
same images; stacking their weights (``torch.func.stack_module_state``) and mapping the forward over
them (``torch.func.vmap`` of ``functional_call``) turns N small forwards into one wider one (grouped
convolutions on the GPU). Encoders of other architectures run on their own; results equal
:func:`~zepad_bench.nn.encoder.extract_features` run per encoder (up to float rounding).
"""

from __future__ import annotations

import copy
import json

import torch
from torch import Tensor, nn

from zepad_bench.nn.encoder import Encoder, extract_features


def architecture_key(encoder: nn.Module) -> str | None:
    """Encoders with equal keys can be stacked (same arch, params, preprocessing); ``None``: alone."""
    if not isinstance(encoder, Encoder):
        return None
    spec = {k: v for k, v in encoder.spec().items() if k != "meta"}
    return json.dumps(spec, sort_keys=True, default=str)


def groups_by_architecture(encoders: list[nn.Module]) -> list[list[int]]:
    """Indices of ``encoders`` grouped by :func:`architecture_key`, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, encoder in enumerate(encoders):
        groups.setdefault(architecture_key(encoder) or f"alone:{i}", []).append(i)
    return list(groups.values())


@torch.no_grad()
def extract_features_together(
    encoders: list[nn.Module], images: Tensor, batch_size: int = 256, device: str = "cpu"
) -> list[Tensor]:
    """Features (CPU, fp32) of every encoder on ``images``, same-architecture ones in one forward."""
    from torch.func import functional_call, stack_module_state, vmap

    out: list[Tensor | None] = [None] * len(encoders)
    for group in groups_by_architecture(encoders):
        if len(group) == 1:
            out[group[0]] = extract_features(encoders[group[0]], images, batch_size, device)
            continue
        members = [encoders[i] for i in group]
        modes = [m.training for m in members]
        for m in members:
            m.eval()
        params, buffers = stack_module_state(members)
        base = copy.deepcopy(members[0]).to("meta")

        def forward(p, b, x, base=base):
            return functional_call(base, (p, b), (x,))

        batched = vmap(forward, in_dims=(0, 0, None))
        parts = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device)
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            parts.append(batched(params, buffers, x).float().cpu())
        stacked = torch.cat(parts, dim=1) if parts else torch.empty(len(group), 0)
        for k, i in enumerate(group):
            out[i] = stacked[k]
        for m, mode in zip(members, modes):
            m.train(mode)
    return out  # type: ignore[return-value]
