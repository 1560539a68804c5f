"""Batched SSL augmentations in torch (solo-learn's CIFAR pipeline, no per-image PIL loop).

Every random draw comes from a CPU ``torch.Generator`` and is then moved to the images' device, so a
seed gives the same views on CPU and GPU, and the image work itself runs on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

_LUMA = (0.299, 0.587, 0.114)
REFERENCE_SIZE = 32
"""solo-learn's CIFAR recipes are written for 32×32 crops; pixel-sized parameters (blur σ) scale from it."""


@dataclass(frozen=True)
class ViewAugment:
    """One view's recipe, in solo-learn's order: crop → colour jitter → grayscale → blur → solarize → flip.

    ``jitter`` is (brightness, contrast, saturation, hue) as in torchvision's ``ColorJitter``; blur σ is
    drawn from U(0.1, 2) for 32-pixel crops and scaled with the crop size.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    solarize_p: float = 0.0
    flip_p: float = 0.5


_STRONG = ViewAugment(jitter=(0.8, 0.8, 0.8, 0.2), blur_p=0.5)
_ASYMMETRIC = ViewAugment()
PRESETS: dict[str, tuple[ViewAugment, ...]] = {
    # SimCLR, SupCon, SwAV (solo-learn HEAD: blur 0.5; legacy 0)
    "symmetric": (_STRONG,),
    # MoCo v2+
    "symmetric_weak": (replace(_STRONG, jitter=(0.4, 0.4, 0.4, 0.1)),),
    # BYOL, NNCLR, MoCo v3, DINO: solarize on the second view only
    "asymmetric": (_ASYMMETRIC, replace(_ASYMMETRIC, solarize_p=0.2)),
    # ReSSL: strong view for the online branch, weak (crop + flip) view for the momentum branch
    "ressl": (replace(_ASYMMETRIC, blur_p=0.5), ViewAugment(jitter_p=0.0, gray_p=0.0)),
    # VIbCReg
    "vibcreg": (ViewAugment(crop_scale=(0.2, 1.0), solarize_p=0.1),),
    # W-MSE (HEAD jitter)
    "wmse": (ViewAugment(crop_scale=(0.2, 1.0), jitter=(0.8, 0.8, 0.8, 0.2)),),
    # not a training recipe: the views of the view-matching check (crops large enough to overlap)
    "view_matching": (ViewAugment(crop_scale=(0.35, 1.0), jitter=(0.4, 0.4, 0.4, 0.1)),),
}


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _bernoulli(n: int, p: float, generator: torch.Generator) -> Tensor:
    return torch.rand(n, generator=generator) < p


def crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], generator: torch.Generator, tries: int = 10
) -> Tensor:
    """torchvision ``RandomResizedCrop.get_params`` for ``n`` images at once: rows (top, left, h, w).

    Ten candidates per image (area ∈ scale, log-uniform ratio ∈ [3/4, 4/3]); the first that fits is
    taken, else the whole image clipped to the ratio range, centred.
    """
    area = height * width
    target = area * (torch.rand(n, tries, generator=generator) * (scale[1] - scale[0]) + scale[0])
    log_ratio = torch.rand(n, tries, generator=generator) * (2 * math.log(4 / 3)) - math.log(4 / 3)
    ratio = log_ratio.exp()
    w = (target * ratio).sqrt().round()
    h = (target / ratio).sqrt().round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.float().argmax(1, keepdim=True)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    ok = fits.any(1)
    in_ratio = width / height
    fw = float(width if in_ratio <= 4 / 3 else round(height * 4 / 3))
    fh = float(height if in_ratio >= 3 / 4 else round(width / (3 / 4)))
    w, h = torch.where(ok, w, fw), torch.where(ok, h, fh)
    u = torch.rand(n, 2, generator=generator)
    top = torch.where(ok, (u[:, 0] * (height - h + 1)).floor(), ((height - h) / 2).round())
    left = torch.where(ok, (u[:, 1] * (width - w + 1)).floor(), ((width - w) / 2).round())
    return torch.stack([top, left, h, w], 1)


def resized_crop(x: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop each image to its box, resize to ``size`` (bicubic, as solo-learn) and mirror where ``flip``."""
    n, _, height, width = x.shape
    boxes = boxes.to(x.device, x.dtype)
    top, left, h, w = boxes.unbind(1)
    sign = 1.0 - 2.0 * flip.to(x.device, x.dtype)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = w / width * sign
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False).clamp_(0, 1)


def grayscale(x: Tensor) -> Tensor:
    """ITU-R 601 luma, as torchvision, kept as one channel (N×1×H×W)."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    return (factor.view(-1, 1, 1, 1) * x + (1 - factor.view(-1, 1, 1, 1)) * other).clamp_(0, 1)


def _rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hr = ((g - b) / safe) % 6
    hg = (b - r) / safe + 2
    hb = (r - g) / safe + 4
    hue = torch.where(maxc == r, hr, torch.where(maxc == g, hg, hb)) / 6
    hue = torch.where(delta > 0, hue, torch.zeros_like(hue))
    sat = torch.where(
        maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    return torch.stack([hue, sat, maxc], 1)


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of each image by ``shift`` (fraction of the colour wheel, in [−0.5, 0.5])."""
    hsv = _rgb_to_hsv(x)
    hsv[:, 0] = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return _hsv_to_rgb(hsv).clamp_(0, 1)


def color_jitter(
    x: Tensor, strength: tuple[float, float, float, float], generator: torch.Generator
) -> Tensor:
    """torchvision ``ColorJitter``: brightness, contrast, saturation, hue in a random order per image."""
    n = len(x)
    b, c, s, h = strength
    factors = torch.stack(
        [
            _uniform(n, max(0.0, 1 - b), 1 + b, generator),
            _uniform(n, max(0.0, 1 - c), 1 + c, generator),
            _uniform(n, max(0.0, 1 - s), 1 + s, generator),
            _uniform(n, -h, h, generator),
        ],
        1,
    ).to(x.device)
    order = torch.rand(n, 4, generator=generator).argsort(1).to(x.device)
    active = torch.tensor([b > 0, c > 0, s > 0, h > 0], device=x.device)
    x = x.clone()
    for position in range(4):
        for op in range(4):
            rows = ((order[:, position] == op) & active[op]).nonzero().squeeze(1)
            if len(rows) == 0:
                continue
            part, f = x[rows], factors[rows, op]
            if op == 0:
                part = _blend(part, torch.zeros_like(part), f)
            elif op == 1:
                part = _blend(part, grayscale(part).mean((1, 2, 3), keepdim=True), f)
            elif op == 2:
                part = _blend(part, grayscale(part), f)
            else:
                part = adjust_hue(part, f)
            x[rows] = part
    return x


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur with a per-image σ (pixels); kernel half-width ⌈3σ_max⌉, reflect padding."""
    n, ch, height, width = x.shape
    radius = min(math.ceil(3 * float(sigma.max())), height - 1, width - 1)
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * sigma.to(x.device, x.dtype).view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(ch, 0)
    y = F.pad(x.reshape(1, n * ch, height, width), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(n * ch, 1, 1, -1), groups=n * ch)
    y = F.conv2d(y, kernel.view(n * ch, 1, -1, 1), groups=n * ch)
    return y.view(n, ch, height, width)


def augment(x: Tensor, recipe: ViewAugment, size: int, generator: torch.Generator) -> Tensor:
    """One augmented view of a batch ``x`` (float [0, 1] or uint8, N×3×H×W) at ``size``×``size``."""
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    n = len(x)
    boxes = crop_boxes(n, x.shape[-2], x.shape[-1], recipe.crop_scale, generator)
    flip = _bernoulli(n, recipe.flip_p, generator)
    x = resized_crop(x, boxes, flip, size)

    def apply(mask: Tensor, fn) -> None:
        rows = mask.nonzero().squeeze(1).to(x.device)
        if len(rows):
            x[rows] = fn(x[rows], mask.nonzero().squeeze(1))

    jitter, gray = _bernoulli(n, recipe.jitter_p, generator), _bernoulli(n, recipe.gray_p, generator)
    blur, solar = _bernoulli(n, recipe.blur_p, generator), _bernoulli(n, recipe.solarize_p, generator)
    sigma = _uniform(n, 0.1, 2.0, generator) * (size / REFERENCE_SIZE)
    if any(recipe.jitter):
        apply(jitter, lambda part, _: color_jitter(part, recipe.jitter, generator))
    apply(gray, lambda part, _: grayscale(part).expand(-1, 3, -1, -1))
    apply(blur, lambda part, rows: gaussian_blur(part, sigma[rows]))
    apply(solar, lambda part, _: torch.where(part >= 128 / 255, 1 - part, part))
    return x


def make_views(
    x: Tensor, recipes: tuple[ViewAugment, ...], size: int, generator: torch.Generator, num_views: int = 2
) -> list[Tensor]:
    """``num_views`` views of ``x``; view ``i`` uses ``recipes[i]`` (the last recipe if there are fewer)."""
    return [augment(x, recipes[min(i, len(recipes) - 1)], size, generator) for i in range(num_views)]
