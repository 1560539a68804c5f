"""The paper's torchvision datasets, read from ``root`` by torchvision's own code.

``fetch()`` runs torchvision's own download (``download=True``: fetch, verify the md5, extract) into
``root``; the runner calls it only for datasets a suite asks to download (``--download`` or
``download = true``). Loading never downloads.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from zepad_bench.data.transforms import to_nchw_rgb
from zepad_bench.errors import UserError
from zepad_bench_plugins.datasets.base import SPLITS, DiskDataset, Table


def _how_to(holds: str) -> str:
    return (
        "run with `zepad-bench run SUITE --download` (or set download = true in its [datasets.<id>] "
        f"table) to fetch it with torchvision, or point root= at the folder holding {holds}"
    )


class TorchvisionDataset(DiskDataset):
    """A set torchvision can read and download: ``source(split)`` builds torchvision's dataset object."""

    source_class: ClassVar[str]  # the class name in torchvision.datasets
    split_style: ClassVar[str] = "split"  # how the class takes the split: split="train"|"test", or train=bool

    def _construct(self, split: str, download: bool) -> Any:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.source_class)
        which = {"train": split == "train"} if self.split_style == "train" else {"split": split}
        return cls(str(self.root), download=download, **which)

    def source(self, split: str) -> Any:
        """torchvision's dataset object of ``split`` under ``root`` (never downloads); errors → UserError."""
        return self.open(lambda: self._construct(split, download=False))

    def fetch(self) -> None:
        """Download and verify every split into ``root`` with torchvision (files already verified stay)."""
        for split in SPLITS:
            try:
                self._construct(split, download=True)
            except (OSError, RuntimeError) as exc:  # no network, refused, checksum mismatch, disk full
                raise UserError(f"{self.title}: download into {self.root.resolve()} failed: {exc}") from None


class CIFAR10(TorchvisionDataset):
    """CIFAR-10 (Krizhevsky 2009), official 50k/10k split, from the python batches (32×32)."""

    name = "cifar10"
    title = "CIFAR10"
    required = ("cifar-10-batches-py",)
    how_to = _how_to("cifar-10-batches-py")
    source_class = "CIFAR10"
    split_style = "train"

    def _table(self, split: str, seed: int) -> Table:
        data = self.source(split)
        images = to_nchw_rgb(data.data)
        return Table(torch.tensor(data.targets), list(data.classes), self.array_reader(images))


STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


class STL10(TorchvisionDataset):
    """STL-10 (Coates 2011), labelled train 5k / test 8k (96×96), from the binary files.

    torchvision verifies every file's checksum, ``unlabeled_X.bin`` included, so all must be present.
    """

    name = "stl10"
    title = "STL10"
    required = ("stl10_binary",)
    how_to = _how_to("stl10_binary")
    source_class = "STL10"

    def _table(self, split: str, seed: int) -> Table:
        data = self.source(split)
        classes = getattr(data, "classes", None) or list(STL10_CLASSES)
        images = torch.from_numpy(data.data)
        return Table(torch.from_numpy(data.labels).long(), classes, self.array_reader(images))


class SVHN(TorchvisionDataset):
    """SVHN (Netzer 2011) cropped digits, official train 73,257 / test 26,032 (32×32), label 10 → 0."""

    name = "svhn"
    title = "SVHN"
    required = ("train_32x32.mat", "test_32x32.mat")
    how_to = _how_to("train_32x32.mat and test_32x32.mat")
    source_class = "SVHN"

    def _table(self, split: str, seed: int) -> Table:
        data = self.source(split)
        return Table(
            torch.from_numpy(data.labels).long(),
            [str(d) for d in range(10)],
            self.array_reader(torch.from_numpy(data.data)),
        )


class GTSRB(TorchvisionDataset):
    """GTSRB (Stallkamp 2012), 43 classes, official train 26,640 / test 12,630 (.ppm files of varying size).

    The paper's code split the training folder at random instead; this uses the official test set.
    """

    name = "gtsrb"
    title = "GTSRB"
    required = ("gtsrb/GTSRB/Training", "gtsrb/GTSRB/Final_Test/Images", "gtsrb/GT-final_test.csv")
    how_to = _how_to("gtsrb/")
    source_class = "GTSRB"

    def _table(self, split: str, seed: int) -> Table:
        data = self.source(split)
        samples = data._samples  # (path, class id) pairs; torchvision has no public list
        return Table(
            torch.tensor([c for _, c in samples], dtype=torch.long),
            [str(c) for c in range(43)],
            self.file_reader([path for path, _ in samples]),
        )
