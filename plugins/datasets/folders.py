"""The paper's image-folder datasets (one sub-folder per class), listed by torchvision's ``ImageFolder``."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from zepad_bench.errors import UserError
from zepad_bench.params import with_defaults
from zepad_bench_plugins.datasets.base import DiskDataset, RandomSplitDataset, Table

ANIMALS10_ENGLISH = {
    "cane": "dog",
    "cavallo": "horse",
    "elefante": "elephant",
    "farfalla": "butterfly",
    "gallina": "chicken",
    "gatto": "cat",
    "mucca": "cow",
    "pecora": "sheep",
    "ragno": "spider",
    "scoiattolo": "squirrel",
}
"""The Kaggle set's Italian folder names (its own ``translate.py``); labels keep the folders' sorted order."""


class FolderDataset(DiskDataset):
    """Base of the image-folder sets: files listed by ``ImageFolder``, decoded only for the rows loaded."""

    def folder_table(self, path: Path) -> Table:
        from torchvision.datasets import ImageFolder

        folder = self.open(lambda: ImageFolder(str(path)))
        return Table(
            torch.tensor(folder.targets, dtype=torch.long),
            list(folder.classes),
            self.file_reader([p for p, _ in folder.samples]),
        )


class Animals10(FolderDataset, RandomSplitDataset):
    """ANIMALS10 (Kaggle, Alessio 2020), 26,179 photos of 10 animals; seeded stratified split.

    The paper's code split ``raw-img`` at random into 20,000 train / the rest test; the default
    ``test_fraction`` keeps those proportions (per class, and reproducibly from the seed).
    """

    name = "animals10"
    title = "ANIMALS10"
    how_to = (
        "download the Kaggle dataset alessiocorrado99/animals10 and point root= at its raw-img folder "
        "(one sub-folder per class)"
    )

    class Options(DiskDataset.Options, RandomSplitDataset.Options):
        root: str = Field(
            "data/animals10/raw-img", description=DiskDataset.Options.model_fields["root"].description
        )
        test_fraction: float = Field(
            1 - 20_000 / 26_179,
            gt=0,
            lt=1,
            description="share of each class in the seeded test split (the "
            "paper's 20,000 train images of 26,179)",
        )

    def _table(self, split: str, seed: int) -> Table:
        table = self.folder_table(self.root)
        table.classes = [ANIMALS10_ENGLISH.get(c, c) for c in table.classes]
        return table


class ImageNet20(FolderDataset):
    """ImageNet20: 20 ImageNet classes (the paper does not list them), official ``train``/``val`` folders."""

    name = "imagenet20"
    title = "ImageNet20"
    Options = with_defaults(DiskDataset.Options, root="data/imagenet20")
    required = ("train", "val")
    how_to = (
        "make root/train and root/val from ImageNet (ILSVRC-2012), one sub-folder per class with the "
        "same class folders in both"
    )

    def _table(self, split: str, seed: int) -> Table:
        from torchvision.datasets.folder import find_classes

        table = self.folder_table(self.root / ("train" if split == "train" else "val"))
        other = self.open(lambda: find_classes(str(self.root / ("val" if split == "train" else "train"))))[0]
        if other != table.classes:
            raise UserError(
                f"{self.title} under {self.root.resolve()}: train and val hold different class "
                f"folders ({len(table.classes)} vs {len(other)}); {self.how_to}"
            )
        return table
