"""Backbones by name: solo-learn's CIFAR ResNet18 stem, the ImageNet ResNet18, a small CPU CNN, and
those plugins register through the ``register_backbones`` hook.

A plugin's architectures live in its :class:`~zepad_bench.registry.Registry` (``registry.backbones``);
code that builds encoders for that registry (the runner's stages, plugin construction, the conformance
kit) does so inside :func:`plugin_backbones`, which makes them buildable by name for that block only.
No table of this module is ever edited.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

STEMS = ("default", "authors")
"""ResNet stems: solo-learn's ("default") or the AdvEncoder/Gen-AF/ZePAD code's ``load_model``."""


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


def _resnet(arch: str) -> Callable[..., nn.Module]:
    """solo-learn's CIFAR variant (conv1 3×3, stride 1, padding 2; maxpool and fc removed), or with
    ``-imagenet`` the standard stem, fc removed; torchvision layer names, so solo-learn keys load as is.
    ``stem = "authors"``: the stems of the AdvEncoder/Gen-AF/ZePAD code's ``load_model`` — CIFAR conv1
    with padding 1; ImageNet conv1 7×7 with stride 1 and padding 1 and no max-pool (at 64×64, layer4
    maps 8×8 instead of 2×2). Weights load either way."""

    def build(stem: str = "default") -> nn.Module:
        from torchvision import models

        if stem not in STEMS:
            raise ValueError(f"{arch}: stem must be one of {', '.join(STEMS)}, got {stem!r}")
        net = models.resnet50() if arch == "resnet50" else models.resnet18()
        net.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        authors = stem == "authors"
        if arch != "resnet18-imagenet":
            net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1 if authors else 2, bias=False)
            net.maxpool = nn.Identity()
        elif authors:
            net.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        return net

    return build


BUILDERS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(
    {
        "resnet18": _resnet("resnet18"),
        "resnet18-imagenet": _resnet("resnet18-imagenet"),
        "resnet50": _resnet("resnet50"),
        "small-cnn": SmallCNN,
    }
)
"""The built-in architectures: name → builder (``**arch_params`` → an ``nn.Module`` with an integer
``out_dim``). Read-only; plugins' architectures are in their registry."""

_plugins: contextvars.ContextVar[Mapping[str, Callable[..., nn.Module]]] = contextvars.ContextVar(
    "plugin_backbones", default=MappingProxyType({})
)


@contextlib.contextmanager
def plugin_backbones(builders: Mapping[str, Callable[..., nn.Module]]) -> Iterator[None]:
    """Make ``builders`` (a registry's ``backbones``) buildable by name — and so loadable from cached
    encoder states — in the enclosed code. A built-in name cannot be taken (the registry refuses it)."""
    token = _plugins.set(MappingProxyType(dict(builders)))
    try:
        yield
    finally:
        _plugins.reset(token)


def known_archs() -> tuple[str, ...]:
    """The built-in architectures and those of the registry in use (:func:`plugin_backbones`)."""
    return (*BUILDERS, *_plugins.get())


def build_backbone(arch: str, **params: Any) -> tuple[nn.Module, int]:
    """Return ``(backbone, feature_dim)`` made by the registered builder of ``arch``; ``timm:<name>``
    and ``open_clip:<name>`` are public hub models (:mod:`zepad_bench.nn.hub`)."""
    from zepad_bench.nn import hub

    if arch.startswith(hub.PREFIXES):
        return hub.build_hub_backbone(arch, **params)
    builders = {**_plugins.get(), **BUILDERS}
    if arch not in builders:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(builders)} (plugins may add more)")
    try:
        net = builders[arch](**params)
    except TypeError as exc:
        raise ValueError(f"arch {arch!r}: bad arch_params {params}: {exc}") from None
    dim = getattr(net, "out_dim", None)
    if not isinstance(net, nn.Module) or isinstance(dim, bool) or not isinstance(dim, int):
        raise ValueError(f"arch {arch!r}: its builder must return an nn.Module with an integer `out_dim`")
    return net, dim
