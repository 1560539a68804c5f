"""What an encoder table may name, without importing torch (validation, the CLI, reports): the
paper's SSL methods and the input normalisations an encoder applies inside ``forward``."""

from __future__ import annotations

from zepad_bench.errors import UserError

SSL_METHODS: tuple[str, ...] = (
    "wmse", "byol", "nnclr", "simclr", "mocov2plus", "mocov3", "supcon", "ressl", "dino", "swav", "vibcreg",
)  # fmt: skip
"""The paper's eleven SSL methods; the same tuple as ``zepad_bench.nn.ssl.METHODS`` (checked by tests)."""

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALISATIONS: tuple[str, ...] = ("cifar", "imagenet", "stl10", "none")


def normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of a named input normalisation.

    ``stl10`` and ``none`` are the authors' (AdvEncoder/Gen-AF/ZePAD code), which normalise by the
    *downstream* dataset: ImageNet statistics for CIFAR-10, STL-10's for STL-10 and GTSRB, none else.
    """
    table = {
        "cifar": (CIFAR_MEAN, CIFAR_STD),
        "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
        "stl10": ((0.44087798, 0.42790666, 0.38678814), (0.25507198, 0.24801506, 0.25641308)),
        "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    }
    if name not in table:
        raise UserError(f"unknown normalisation {name!r}; known: {', '.join(table)}")
    return table[name]
