"""Public hub architectures as :class:`Encoder` backbones: timm models and open_clip image towers.

An encoder's arch ``"timm:<model name>"`` or ``"open_clip:<model name>"`` (``arch_params``: the
constructor overrides, e.g. ``img_size``) is rebuilt here with random weights, so a cached encoder
(``Encoder.to_state``) loads back without the network; the sources (``hub``, ``clip``) then load the
pretrained weights. timm and open_clip are the optional ``hub`` extra.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from zepad_bench.errors import MissingPackage

PREFIXES = ("timm:", "open_clip:")
EXTRA = "pip install 'zepad-bench[hub]'"


def require(module: str) -> Any:
    """Import ``module`` (timm or open_clip), or a one-line :class:`MissingPackage` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingPackage(f"{module} is not installed: {EXTRA}") from None


def check_timm(name: str) -> None:
    """ValueError unless timm knows the model name (a pretrained tag such as ``.dino`` may follow)."""
    if not require("timm").is_model(name):
        raise ValueError(f"unknown timm model {name!r} (see timm.list_models())")


def check_clip(name: str, pretrained: str | None = None) -> None:
    """ValueError unless open_clip knows the model name and (when given) the pretrained tag."""
    open_clip = require("open_clip")
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r} (see open_clip.list_models())")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained and pretrained not in tags:
        raise ValueError(
            f"unknown pretrained tag {pretrained!r} for {name}; known: {', '.join(tags) or 'none'}"
        )


def timm_model(name: str, pretrained: bool = False, cache_dir: str | None = None, **params: Any) -> nn.Module:
    """A timm model without its classifier (``num_classes=0``: pooled features)."""
    check_timm(name)
    return require("timm").create_model(
        name, pretrained=pretrained, num_classes=0, cache_dir=cache_dir, **params
    )


def timm_dim(model: nn.Module) -> int:
    """Width of the pooled features timm returns with ``num_classes=0``."""
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def timm_preprocessing(
    model: nn.Module, img_size: Any = None
) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, input side) of a timm model's eval pipeline; ``img_size``: the constructor override."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    side = cfg["input_size"][-1] if img_size is None else img_size
    return tuple(cfg["mean"]), tuple(cfg["std"]), int(side if isinstance(side, int) else side[-1])


def clip_model(
    name: str, pretrained: str | None = None, cache_dir: str | None = None, **params: Any
) -> nn.Module:
    """The image tower (``model.visual``) of an open_clip model; ``params`` override its config."""
    check_clip(name, pretrained)
    model = require("open_clip").create_model(
        name, pretrained=pretrained or None, cache_dir=cache_dir, **params
    )
    return model.visual


def clip_preprocessing(visual: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, input side) of an open_clip image tower's eval pipeline."""
    cfg = visual.preprocess_cfg
    size = cfg["size"]
    return tuple(cfg["mean"]), tuple(cfg["std"]), int(size if isinstance(size, int) else size[-1])


def build_hub_backbone(arch: str, **params: Any) -> tuple[nn.Module, int]:
    """``(backbone, feature_dim)`` of a ``timm:``/``open_clip:`` arch, random weights."""
    kind, _, name = arch.partition(":")
    if kind == "timm":
        model = timm_model(name, **params)
        return model, timm_dim(model)
    visual = clip_model(name, **params)
    return visual, int(visual.output_dim)


WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.bin",
)
"""File names timm and open_clip fetch from a Hugging Face repository."""


def cached_weight_file(repo_id: str | None, cache_dir: str | None = None) -> str | None:
    """The weight file of ``repo_id`` in the Hugging Face cache, if one was fetched (else ``None``)."""
    if not repo_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in WEIGHT_FILES:
        found = try_to_load_from_cache(repo_id.strip("/"), filename, cache_dir=cache_dir)
        if isinstance(found, str):
            return found
    return None


def weights_sha256(module: nn.Module) -> str:
    """sha256 of a module's weights as loaded: each state-dict entry's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
