"""An encoder: [0, 1] pixels → features, carrying its own resize and normalisation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zepad_bench.nn.backbones import build_backbone
from zepad_bench.nn.encoder_choices import CIFAR_MEAN, CIFAR_STD
from zepad_bench.nn.precision import run_backbone


class Encoder(nn.Module):
    """Backbone with its input pipeline inside ``forward``: resize (if ``input_size``) then normalise.

    So attacks and defenses always work in [0, 1] pixel space and ε is in pixel units.
    """

    def __init__(
        self,
        arch: str,
        arch_params: dict[str, Any] | None = None,
        mean: tuple[float, ...] = CIFAR_MEAN,
        std: tuple[float, ...] = CIFAR_STD,
        input_size: int | None = None,
        meta: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.arch, self.arch_params = arch, dict(arch_params or {})
        self.backbone, self.feature_dim = build_backbone(arch, **self.arch_params)
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.input_size = input_size
        self.meta = dict(meta or {})

    def forward(self, x: Tensor) -> Tensor:
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        return run_backbone(self.backbone, (x - self.mean) / self.std)

    def spec(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "arch_params": self.arch_params,
            "mean": tuple(self.mean.flatten().tolist()),
            "std": tuple(self.std.flatten().tolist()),
            "input_size": self.input_size,
            "meta": self.meta,
        }

    def to_state(self) -> dict[str, Any]:
        """Plain data (no pickled code): spec + CPU state dict; see :meth:`from_state`."""
        return {
            "spec": self.spec(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Encoder:
        encoder = cls(**state["spec"])
        encoder.load_state_dict(state["state_dict"], strict=True)
        return encoder

    def copy(self) -> Encoder:
        """An independent copy (same weights, same device)."""
        clone = Encoder.from_state(self.to_state())
        return clone.to(self.mean.device)
