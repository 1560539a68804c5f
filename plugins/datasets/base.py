"""Shared machinery of the built-in datasets: per-split tables, seeded splits and subsets, one resize."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from zepad_bench import DatasetSource
from zepad_bench.data.images import LabeledImages
from zepad_bench.data.splits import stratified_split
from zepad_bench.data.transforms import resize_to_uint8
from zepad_bench.errors import MissingData, UserError

SPLITS = ("train", "test")
CHUNK = 512  # images resized per call: bounds the float copy (512×3×256×256 floats ≈ 400 MB at most)
DECODE_THREADS = 4  # PIL decoding and torch resizing release the GIL
LIMIT_STREAM = 1  # generator stream of ``limit_per_class``, independent of the split's permutation


def seeded_generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one independent random stream of a dataset seed."""
    return torch.Generator().manual_seed(seed * 1_000_003 + stream)


def limit_rows(labels: Tensor, limit: int, seed: int) -> Tensor:
    """Sorted positions keeping at most ``limit`` rows per class, chosen by a seeded permutation.

    For one seed, the rows kept under a smaller limit are a subset of those kept under a larger one.
    """
    generator = seeded_generator(seed, LIMIT_STREAM)
    keep = []
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=generator)[:limit]])
    return torch.cat(keep).sort().values


def positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"{what} must be in (0, 1), got {value!r}")
    return float(value)


@dataclass
class Table:
    """One split (or the whole set) of a source: a label per row, class names, and a reader of rows."""

    labels: Tensor
    classes: list[str]
    read: Callable[[Tensor, int], Tensor]  # (rows, image_size) → uint8 N×3×size×size


class ImageDataset(DatasetSource):
    """Base of the built-in datasets: a table per split, optional ``limit_per_class``, resized uint8.

    ``indices`` of the loaded :class:`LabeledImages` are the rows of the table (the official split's
    file, or the whole set when the split is made here).
    """

    title: ClassVar[str]  # the dataset's usual spelling, for messages

    def __init__(self, limit_per_class: int | None = None, **params: Any):
        super().__init__(**params)
        if limit_per_class is not None:
            positive_int(limit_per_class, "limit_per_class")
        self.limit_per_class = limit_per_class

    def load(self, split: str, image_size: int, seed: int) -> LabeledImages:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        positive_int(image_size, "image_size")
        table, rows = self._rows(split, seed)
        if self.limit_per_class is not None:
            rows = rows[limit_rows(table.labels[rows], self.limit_per_class, seed)]
        images = table.read(rows, image_size)
        return LabeledImages(images, table.labels[rows], list(table.classes), indices=rows)

    def _rows(self, split: str, seed: int) -> tuple[Table, Tensor]:
        """The table holding ``split`` and its rows that form the split (default: an official split)."""
        table = self._table(split, seed)
        return table, torch.arange(len(table.labels))

    def _table(self, split: str, seed: int) -> Table:
        """The table of ``"train"``, ``"test"``, or ``"all"`` (the whole set, for sets split here)."""
        raise NotImplementedError

    def array_reader(self, images: Tensor) -> Callable[[Tensor, int], Tensor]:
        """Reader of rows of an N×3×H×W tensor (uint8 or float in [0, 255]), resized in chunks."""

        def read(rows: Tensor, size: int) -> Tensor:
            out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
            for start in self.ctx.track(range(0, len(rows), CHUNK), f"{self.title}: resizing to {size}px"):
                out[start : start + CHUNK] = resize_to_uint8(images[rows[start : start + CHUNK]], size)
            return out

        return read

    def file_reader(self, paths: list[str]) -> Callable[[Tensor, int], Tensor]:
        """Reader of rows of a list of image files: decoded with PIL as RGB, then resized."""

        def read(rows: Tensor, size: int) -> Tensor:
            out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
            with ThreadPoolExecutor(DECODE_THREADS) as pool:
                images = pool.map(lambda i: decode_image(paths[i], size), rows.tolist())
                for k, image in enumerate(self.ctx.track(images, f"{self.title}: decoding", total=len(rows))):
                    out[k] = image
            return out

        return read


def decode_image(path: str, size: int) -> Tensor:
    """One image file → uint8 3×size×size (RGB)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
    return resize_to_uint8(pixels.permute(2, 0, 1)[None], size)[0]


class RandomSplitDataset(ImageDataset):
    """A set without an official split: seeded stratified train/test split by ``test_fraction``."""

    def __init__(self, test_fraction: float = 0.3, **params: Any):
        super().__init__(**params)
        self.test_fraction = fraction(test_fraction, "test_fraction")

    def _rows(self, split: str, seed: int) -> tuple[Table, Tensor]:
        table = self._table("all", seed)
        train, test = stratified_split(table.labels, self.test_fraction, seed)
        return table, train if split == "train" else test


class DiskDataset(ImageDataset):
    """A set read from ``root``: ``check()`` names the missing path and how to obtain the data."""

    default_root: ClassVar[str] = "data"
    path_params = ("root",)
    required: ClassVar[tuple[str, ...]] = ()  # paths under root that must exist
    how_to: ClassVar[str]

    def __init__(self, root: str | None = None, **params: Any):
        super().__init__(**params)
        self.root = Path(root if root is not None else self.default_root).expanduser()

    def check(self) -> None:
        missing = [rel for rel in self.required if not (self.root / rel).exists()]
        if not self.root.is_dir() or missing:
            what = f" (missing {', '.join(missing)})" if self.root.is_dir() else ""
            raise MissingData(f"{self.title} not found under {self.root.resolve()}{what}: {self.how_to}")

    def load(self, split: str, image_size: int, seed: int) -> LabeledImages:
        self.check()
        return super().load(split, image_size, seed)

    def open(self, factory: Callable[[], Any]) -> Any:
        """Run a torchvision dataset constructor; its "not found or corrupted" errors become a UserError."""
        try:
            return factory()
        except (RuntimeError, FileNotFoundError) as exc:
            raise UserError(f"{self.title} under {self.root.resolve()}: {exc}; {self.how_to}") from None
