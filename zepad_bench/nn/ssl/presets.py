"""solo-learn's published pretraining recipes as presets (``plugin = "ssl"``, ``recipe = "solo-learn"``).

``cifar10``: ``scripts/pretrain/cifar/<method>.yaml`` — ResNet18 with the CIFAR stem, 1000 epochs,
batch 256, 32×32 crops, CIFAR normalisation; the per-method optimiser/head settings are the
methods' own defaults (:mod:`zepad_bench.nn.ssl.methods`, which follow these files).

``imagenet100``: ``scripts/pretrain/imagenet-100/<method>.yaml`` (solo-learn history, read 2026) —
ResNet18 with the ImageNet stem, 400 epochs, 224×224 crops, ImageNet normalisation, the yaml's
per-GPU batch × its 2 GPUs, and the per-method overrides below (lr, weight decay, head sizes,
optimiser, temperatures, EMA). Deviation, named: the augmentation presets stay the CIFAR ones at the
encoder's input size (solo-learn's ImageNet-100 pipelines add Gaussian blur and use RRC min scale
0.08/0.2 per method); pass ``augment`` to change the preset.
"""

from __future__ import annotations

from typing import Any

SOLO_LEARN_SETTINGS: dict[str, dict[str, Any]] = {
    "cifar10": {"arch": "resnet18", "epochs": 1000, "batch_size": 256, "normalisation": "cifar"},
    "imagenet100": {
        "arch": "resnet18-imagenet",
        "epochs": 400,
        "batch_size": 128,
        "normalisation": "imagenet",
        "input_size": 224,
    },
}
"""Encoder-level settings per pretraining set (the ``ssl`` plugin's own parameters)."""

SOLO_LEARN_METHODS: dict[str, dict[str, dict[str, Any]]] = {
    "cifar10": {},  # the methods' defaults are solo-learn's CIFAR recipes
    "imagenet100": {
        "byol": {"batch_size": 256, "lr": 0.5, "weight_decay": 1e-6, "pred_hidden_dim": 8192},
        "simclr": {"lr": 0.3, "weight_decay": 1e-4, "proj_hidden_dim": 4096, "proj_output_dim": 512},
        "mocov2plus": {"lr": 0.3, "weight_decay": 1e-4, "queue_size": 65536},
        "nnclr": {"lr": 0.4, "weight_decay": 1e-5},
        "mocov3": {"batch_size": 256, "lr": 0.3, "weight_decay": 1e-6},
        "supcon": {"optimizer": "sgd", "lr": 0.5, "weight_decay": 1e-5, "proj_output_dim": 512},
        "ressl": {"lr": 0.3, "weight_decay": 1e-4},
        "dino": {"lr": 0.3, "weight_decay": 1e-6, "base_tau": 0.9995},
        "swav": {"batch_size": 256, "lr": 0.6, "weight_decay": 1e-6},
        "vibcreg": {"lr": 0.3, "weight_decay": 1e-4},
        "wmse": {"lr": 2e-3, "weight_decay": 1e-6},
    },
}
"""Per-method overrides of the pretraining set's settings (``batch_size``) and of the method recipe."""

RECIPES = ("solo-learn",)


def solo_learn_preset(method: str, dataset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(encoder settings, recipe overrides) of solo-learn's ``method`` recipe on ``dataset``."""
    if dataset not in SOLO_LEARN_SETTINGS:
        raise ValueError(f"recipe_dataset must be one of {', '.join(SOLO_LEARN_SETTINGS)}, got {dataset!r}")
    settings = dict(SOLO_LEARN_SETTINGS[dataset])
    overrides = dict(SOLO_LEARN_METHODS[dataset].get(method, {}))
    for key in list(overrides):
        if key in settings:
            settings[key] = overrides.pop(key)
    return settings, overrides
