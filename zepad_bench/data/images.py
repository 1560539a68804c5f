"""In-memory labeled image sets (uint8 NCHW) and unlabeled batch streams for attackers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class LabeledImages:
    """Images as uint8 N×3×H×W (pixel value/255 is the [0, 1] image), int64 labels, class names.

    ``name`` is the suite's dataset id; ``indices`` are the rows taken from the source (the split).
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str = ""
    indices: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"images must be uint8 N×3×H×W, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError("images and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def float_images(self, index: slice | Tensor | None = None) -> Tensor:
        """Images in [0, 1] as float32 (all, or the rows in ``index``)."""
        images = self.images if index is None else self.images[index]
        return images.float().div_(255)

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(x in [0,1] float, y)`` batches; shuffled by ``generator`` when asked."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            idx = order[start : start + batch_size]
            yield self.float_images(idx), self.labels[idx]

    def subset(self, index: Tensor) -> LabeledImages:
        base = self.indices if self.indices is not None else torch.arange(len(self))
        return LabeledImages(self.images[index], self.labels[index], self.classes, self.name, base[index])


class UnlabeledBatches:
    """Re-iterable stream of unlabeled float batches (the attacker's data); a new shuffle each pass."""

    def __init__(self, images: Tensor, batch_size: int, seed: int = 0, device: str = "cpu"):
        self._images, self.batch_size, self.device = images, batch_size, device
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self._images) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[Tensor]:
        order = torch.randperm(len(self._images), generator=self._generator)
        for start in range(0, len(order), self.batch_size):
            batch = self._images[order[start : start + self.batch_size]]
            yield (
                batch.to(self.device).float().div_(255)
                if batch.dtype == torch.uint8
                else batch.to(self.device)
            )
