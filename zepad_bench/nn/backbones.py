"""Backbones by name: solo-learn's CIFAR ResNet18 stem, the ImageNet ResNet18, and a small CPU CNN."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ARCHS = ("resnet18", "resnet18-imagenet", "resnet50", "small-cnn")
STEMS = ("default", "authors")


class SmallCNN(nn.Module):
    """Four conv–BN–ReLU blocks (stride 2 after the first) and global average pooling; CPU-sized."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            stride = 1 if i == 0 else 2
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def build_backbone(arch: str, **params: Any) -> tuple[nn.Module, int]:
    """Return ``(backbone, feature_dim)``; torchvision layer names, so solo-learn keys load as is.

    ``resnet18``/``resnet50``: solo-learn's CIFAR variant (conv1 3×3, stride 1, padding 2; maxpool
    and fc removed). ``resnet18-imagenet``: the standard stem, fc removed. ResNets take one
    parameter, ``stem``: "default" (the above) or "authors", the stems of the AdvEncoder/Gen-AF/ZePAD
    code's ``load_model`` — CIFAR conv1 with padding 1; ImageNet conv1 7×7 with stride 1 and padding
    1 and no max-pool (at 64×64, layer4 maps 8×8 instead of 2×2). Weights load either way.
    """
    from torchvision import models

    if arch == "small-cnn":
        net = SmallCNN(**params)
        return net, net.out_dim
    if arch in ("resnet18", "resnet18-imagenet", "resnet50"):
        stem = params.pop("stem", "default")
        if params or stem not in STEMS:
            raise ValueError(
                f"{arch} takes only stem ({', '.join(STEMS)}), got {sorted(params)}, stem={stem!r}"
            )
        net = models.resnet50() if arch == "resnet50" else models.resnet18()
        dim = net.fc.in_features
        net.fc = nn.Identity()
        authors = stem == "authors"
        if arch != "resnet18-imagenet":
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1 if authors else 2, bias=False)
            net.maxpool = nn.Identity()
        elif authors:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        return net, dim
    raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
