"""Several encoders evaluated on the same images together: ZePAD's branches at inference.

Three ways, all equal to running each encoder on its own (up to float rounding):

- ``sequential``: one encoder after another on each batch (the batch is moved to the device once);
- ``streams``: on a GPU, each encoder on its own CUDA stream, so the small kernels of the branches
  overlap on an under-used device; elsewhere the same as ``sequential``;
- ``stacked``: the weights of same-architecture encoders stacked (``torch.func.stack_module_state``)
  and one ``vmap``-ed forward (``functional_call``) over them.

Measured by ``benchmarks/gpu.py`` (benchmarks/README.md): on a CPU no way beats ``sequential``; on an
H200 ``stacked`` was slower than ``sequential``, so ``auto`` means ``streams`` on a GPU and
``sequential`` elsewhere.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from zepad_bench.nn.encoder import Encoder

HOW = ("auto", "sequential", "streams", "stacked")


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


@contextmanager
def _eval(modules: list[nn.Module]) -> Iterator[None]:
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def _stacked(encoders: list[nn.Module], x: Tensor) -> list[Tensor]:
    from torch.func import functional_call, stack_module_state, vmap

    out: list[Tensor | None] = [None] * len(encoders)
    for group in groups_by_architecture(encoders):
        if len(group) == 1:
            out[group[0]] = encoders[group[0]](x)
            continue
        members = [encoders[i] for i in group]
        params, buffers = stack_module_state(members)
        base = copy.deepcopy(members[0]).to("meta")

        def forward(p, b, images, base=base):
            return functional_call(base, (p, b), (images,))

        stacked = vmap(forward, in_dims=(0, 0, None))(params, buffers, x)
        for k, i in enumerate(group):
            out[i] = stacked[k]
    return out  # type: ignore[return-value]


def _streamed(encoders: list[nn.Module], x: Tensor) -> list[Tensor]:
    current = torch.cuda.current_stream(x.device)
    streams = [torch.cuda.Stream(x.device) for _ in encoders]
    out = []
    for encoder, stream in zip(encoders, streams):
        stream.wait_stream(current)  # x is ready
        with torch.cuda.stream(stream):
            out.append(encoder(x))
    for stream in streams:
        current.wait_stream(stream)
    return out


@torch.no_grad()
def forward_together(encoders: list[nn.Module], x: Tensor, how: str = "auto") -> list[Tensor]:
    """Features of every encoder on one batch ``x`` (float, on its device), eval mode, no copies."""
    if how not in HOW:
        raise ValueError(f"how must be one of {', '.join(HOW)}, got {how!r}")
    if how == "auto":
        how = "streams" if x.is_cuda else "sequential"
    with _eval(encoders):
        if how == "stacked":
            return _stacked(encoders, x)
        if how == "streams" and x.is_cuda and len(encoders) > 1:
            return _streamed(encoders, x)
        return [encoder(x) for encoder in encoders]


@torch.no_grad()
def extract_features_together(
    encoders: list[nn.Module], images: Tensor, batch_size: int = 256, device: str = "cpu", how: str = "auto"
) -> list[Tensor]:
    """Features (CPU, fp32) of every encoder on ``images`` (uint8 or float), each batch moved to
    ``device`` once and run through :func:`forward_together`."""
    parts: list[list[Tensor]] = [[] for _ in encoders]
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        for part, feats in zip(parts, forward_together(encoders, x, how)):
            part.append(feats.float().cpu())
    return [torch.cat(p) if p else torch.empty(0) for p in parts]


def extract_features(
    encoder: nn.Module, images: Tensor, batch_size: int = 256, device: str = "cpu"
) -> Tensor:
    """Features of ``images`` (uint8 or float [0,1]) with the encoder in eval mode; returned on CPU."""
    return extract_features_together([encoder], images, batch_size, device, how="sequential")[0]
