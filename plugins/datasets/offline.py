"""Offline datasets built from data that installed packages ship (no download): digits, lfw, photos."""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import AfterValidator, Field, PositiveInt, model_validator
from torch import Tensor

from zepad_bench.data.transforms import resize_to_uint8, to_nchw_rgb
from zepad_bench_plugins.datasets.base import (
    CHUNK,
    SPLITS,
    ImageDataset,
    RandomSplitDataset,
    Table,
    seeded_generator,
)


class Digits(RandomSplitDataset):
    """scikit-learn's ``load_digits``: 1,797 8×8 grey digits (0–16 scaled to 0–255), 3 channels, upsampled."""

    name = "digits"
    title = "digits"

    def _table(self, split: str, seed: int) -> Table:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = to_nchw_rgb(torch.from_numpy(digits.images * (255 / 16)))
        labels = torch.from_numpy(digits.target).long()
        return Table(labels, [str(d) for d in range(10)], self.array_reader(images))


class LFWSubset(RandomSplitDataset):
    """scikit-image's ``lfw_subset``: 200 grey 25×25 crops, the first 100 faces, the next 100 non-faces."""

    name = "lfw"
    title = "lfw"

    def _table(self, split: str, seed: int) -> Table:
        from skimage.data import lfw_subset

        images = to_nchw_rgb(torch.from_numpy(lfw_subset() * 255))
        labels = torch.arange(len(images)).ge(100).long()
        return Table(labels, ["face", "non-face"], self.array_reader(images))


PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle",
)
"""Colour photographs bundled with scikit-image (no pooch download); a patch's label is its photo."""


def load_photo(name: str) -> Tensor:
    """One bundled photo as uint8 3×H×W."""
    import skimage.data

    pixels = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)


def _ordered(pair: tuple[int, int]) -> tuple[int, int]:
    if pair[0] > pair[1]:
        raise ValueError(f"must be [min, max] with min ≤ max (got {list(pair)})")
    return pair


class Photos(ImageDataset):
    """Square patches cut at a few scales from scikit-image's colour photos; label = source photo.

    Each photo is cut along its width into a train part (left ``1 − test_fraction``) and a test part
    (right), so train and test patches never share a pixel. Patch sides are ``scales`` log-spaced
    sizes in ``patch_size`` (source pixels, capped by the part's size), placed uniformly at random;
    everything is drawn from the seed. ``patches_per_image`` counts both splits.
    """

    name = "photos"
    title = "photos"

    class Options(ImageDataset.Options):
        patches_per_image: int = Field(
            1600, ge=1, description="patches cut from each photo, both splits together"
        )
        patch_size: Annotated[tuple[PositiveInt, PositiveInt], AfterValidator(_ordered)] = Field(
            (32, 128), description="[min, max] patch side in source pixels (capped by the photo part)"
        )
        scales: int = Field(4, ge=1, description="log-spaced patch sides between min and max")
        test_fraction: float = Field(
            0.3, gt=0, lt=1, description="share of each photo's width (right part) for test"
        )

        @model_validator(mode="after")
        def _both_splits(self) -> Photos.Options:
            n_test = round(self.patches_per_image * self.test_fraction)
            if not 0 < n_test < self.patches_per_image:
                raise ValueError("patches_per_image × test_fraction must leave patches in both splits")
            return self

    def __init__(self, **params: Any):
        super().__init__(**params)
        n_test = round(self.patches_per_image * self.test_fraction)
        self.counts = {"train": self.patches_per_image - n_test, "test": n_test}

    def _table(self, split: str, seed: int) -> Table:
        photos = [load_photo(name) for name in PHOTOS]
        sizes = torch.tensor(np.geomspace(*self.patch_size, self.scales)).round().long()
        generator = seeded_generator(seed, 100 + SPLITS.index(split))
        n = self.counts[split]
        boxes = []  # per patch: photo, top, left, side
        for p, photo in enumerate(photos):
            height, width = photo.shape[1:]
            cut = math.floor(width * (1 - self.test_fraction))
            left, right = (0, cut) if split == "train" else (cut, width)
            side = sizes[torch.randint(len(sizes), (n,), generator=generator)]
            side = side.clamp(max=min(height, right - left))
            top = (torch.rand(n, generator=generator) * (height - side + 1)).long()
            x = left + (torch.rand(n, generator=generator) * (right - left - side + 1)).long()
            boxes.append(torch.stack([torch.full((n,), p), top, x, side], 1))
        return Table(
            torch.arange(len(photos)).repeat_interleave(n),
            list(PHOTOS),
            self._patch_reader(photos, torch.cat(boxes)),
        )

    def _patch_reader(self, photos: list[Tensor], boxes: Tensor):
        """Crops the rows' boxes, resizing all patches of one photo and side together."""

        def read(rows: Tensor, size: int) -> Tensor:
            out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
            chosen = boxes[rows]
            groups = torch.unique(chosen[:, [0, 3]], dim=0)
            for photo, side in self.ctx.track(groups.tolist(), f"{self.title}: cutting patches"):
                where = torch.nonzero((chosen[:, 0] == photo) & (chosen[:, 3] == side)).flatten()
                for start in range(0, len(where), CHUNK):
                    part = where[start : start + CHUNK]
                    crops = torch.stack(
                        [
                            photos[photo][:, t : t + side, x : x + side]
                            for t, x in chosen[part][:, 1:3].tolist()
                        ]
                    )
                    out[part] = resize_to_uint8(crops, size)
            return out

        return read
