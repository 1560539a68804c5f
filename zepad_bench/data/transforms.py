"""Image conversions shared by every dataset: to 3-channel NCHW, and one resize to the suite's size."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def resize_to_uint8(images: Tensor, size: int) -> Tensor:
    """Resize N×C×H×W pixel values in [0, 255] (uint8 or float) to ``size``×``size`` uint8.

    Bilinear with antialiasing (``F.interpolate(..., antialias=True)``) on float, then rounded back to
    uint8; an image already at ``size`` is returned unchanged apart from rounding.
    """
    if images.ndim != 4:
        raise ValueError(f"expected N×C×H×W images, got shape {tuple(images.shape)}")
    x = images.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(torch.uint8)


def to_nchw_rgb(array: np.ndarray | Tensor) -> Tensor:
    """N×H×W (grey) or N×H×W×3 images → an N×3×H×W view of the same values and dtype."""
    x = torch.as_tensor(array)
    if x.ndim == 3:
        return x.unsqueeze(1).expand(-1, 3, -1, -1)
    if x.ndim == 4 and x.shape[-1] == 3:
        return x.permute(0, 3, 1, 2)
    raise ValueError(f"expected N×H×W or N×H×W×3 images, got shape {tuple(x.shape)}")
