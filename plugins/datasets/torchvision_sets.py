"""The paper's torchvision datasets, read from ``root`` by torchvision's own code (``download=False``)."""

from __future__ import annotations

import torch

from zepad_bench.data.transforms import to_nchw_rgb
from zepad_bench_plugins.datasets.base import DiskDataset, Table


def _how_to(cls: str, holds: str, splits: bool = False) -> str:
    call = (
        f"torchvision.datasets.{cls}(root, split='train'|'test', download=True)"
        if splits
        else f"torchvision.datasets.{cls}(root, download=True)"
    )
    return f"download it with {call} on a machine with internet, or point root= at the folder holding {holds}"


class CIFAR10(DiskDataset):
    """CIFAR-10 (Krizhevsky 2009), official 50k/10k split, from the python batches (32×32)."""

    name = "cifar10"
    title = "CIFAR10"
    required = ("cifar-10-batches-py",)
    how_to = _how_to("CIFAR10", "cifar-10-batches-py")

    def _table(self, split: str, seed: int) -> Table:
        from torchvision.datasets import CIFAR10 as Source

        data = self.open(lambda: Source(str(self.root), train=split == "train", download=False))
        images = to_nchw_rgb(data.data)
        return Table(torch.tensor(data.targets), list(data.classes), self.array_reader(images))


STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


class STL10(DiskDataset):
    """STL-10 (Coates 2011), labelled train 5k / test 8k (96×96), from the binary files.

    torchvision verifies every file's checksum, ``unlabeled_X.bin`` included, so all must be present.
    """

    name = "stl10"
    title = "STL10"
    required = ("stl10_binary",)
    how_to = _how_to("STL10", "stl10_binary", splits=True)

    def _table(self, split: str, seed: int) -> Table:
        from torchvision.datasets import STL10 as Source

        data = self.open(lambda: Source(str(self.root), split=split, download=False))
        classes = getattr(data, "classes", None) or list(STL10_CLASSES)
        images = torch.from_numpy(data.data)
        return Table(torch.from_numpy(data.labels).long(), classes, self.array_reader(images))


class SVHN(DiskDataset):
    """SVHN (Netzer 2011) cropped digits, official train 73,257 / test 26,032 (32×32), label 10 → 0."""

    name = "svhn"
    title = "SVHN"
    required = ("train_32x32.mat", "test_32x32.mat")
    how_to = _how_to("SVHN", "train_32x32.mat and test_32x32.mat", splits=True)

    def _table(self, split: str, seed: int) -> Table:
        from torchvision.datasets import SVHN as Source

        data = self.open(lambda: Source(str(self.root), split=split, download=False))
        return Table(
            torch.from_numpy(data.labels).long(),
            [str(d) for d in range(10)],
            self.array_reader(torch.from_numpy(data.data)),
        )


class GTSRB(DiskDataset):
    """GTSRB (Stallkamp 2012), 43 classes, official train 26,640 / test 12,630 (.ppm files of varying size).

    The paper's code split the training folder at random instead; this uses the official test set.
    """

    name = "gtsrb"
    title = "GTSRB"
    required = ("gtsrb/GTSRB/Training", "gtsrb/GTSRB/Final_Test/Images", "gtsrb/GT-final_test.csv")
    how_to = _how_to("GTSRB", "gtsrb/", splits=True)

    def _table(self, split: str, seed: int) -> Table:
        from torchvision.datasets import GTSRB as Source

        data = self.open(lambda: Source(str(self.root), split=split, download=False))
        samples = data._samples  # (path, class id) pairs; torchvision has no public list
        return Table(
            torch.tensor([c for _, c in samples], dtype=torch.long),
            [str(c) for c in range(43)],
            self.file_reader([path for path, _ in samples]),
        )
