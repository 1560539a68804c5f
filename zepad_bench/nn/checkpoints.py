"""solo-learn checkpoints: write them Lightning-style, load their backbone safely into an :class:`Encoder`.

Loading never executes pickled code (``torch.load(weights_only=True)``); every failure is a one-line
:class:`UserError` naming the file and the cause.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zepad_bench.errors import UserError
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.encoder_choices import CIFAR_MEAN, CIFAR_STD

LIGHTNING_VERSION = "2.1.2"
"""The Lightning version solo-learn pins; written into ``pytorch-lightning_version``."""

BACKBONE_PREFIXES = ("backbone.", "encoder.")
"""solo-learn's backbone prefix and the legacy (2021, v1.0.2) one."""


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_solo_learn(
    path: str | os.PathLike,
    state_dict: dict[str, Tensor],
    args: dict[str, Any],
    *,
    epoch: int = 0,
    global_step: int = 0,
) -> str:
    """Write a solo-learn-style checkpoint; return its sha256.

    ``path`` gets a Lightning-style dict (``state_dict``, ``epoch``, ``global_step``,
    ``pytorch-lightning_version``, ``hyper_parameters`` = ``args``); beside it ``args.json`` (as
    solo-learn) and ``<file>.sha256`` (``sha256sum`` format). The checkpoint is written atomically.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "epoch": int(epoch),
        "global_step": int(global_step),
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "hyper_parameters": args,
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(checkpoint, partial)
    os.replace(partial, path)
    (path.parent / "args.json").write_text(json.dumps(args, indent=2, sort_keys=True) + "\n")
    digest = file_sha256(path)
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def _read(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if unsafe:
            raise UserError(
                f"{path}: refused: the file needs unsafe unpickling ({unsafe.group(1)}); "
                "extract its state_dict in a trusted environment and save that instead"
            ) from None
        raise UserError(f"{path}: corrupt or not a torch checkpoint (unreadable pickle data)") from None
    except (RuntimeError, EOFError, OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        reason = str(exc).split(". ")[0].strip() or type(exc).__name__
        raise UserError(f"{path}: corrupt or truncated checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path}: not a checkpoint dict (got {type(checkpoint).__name__})")
    return checkpoint


def backbone_state(
    state_dict: dict[str, Any], source: str = "checkpoint"
) -> tuple[dict[str, Tensor], list[str]]:
    """Backbone weights with their prefix removed, and the sorted top-level names of the dropped keys.

    Takes ``backbone.*`` (or, in older files without it, ``encoder.*``); projector, predictor,
    momentum, classifier and queue entries are dropped by name, never by substring.
    """
    prefix = next((p for p in BACKBONE_PREFIXES if any(k.startswith(p) for k in state_dict)), None)
    if prefix is None:
        raise UserError(f"{source}: no backbone weights (no key starts with 'backbone.' or 'encoder.')")
    backbone = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    dropped = sorted({k.split(".", 1)[0] for k in state_dict if not k.startswith(prefix)})
    return backbone, dropped


def load_solo_learn(
    path: str | os.PathLike,
    arch: str,
    *,
    sha256: str | None = None,
    mean: tuple[float, ...] = CIFAR_MEAN,
    std: tuple[float, ...] = CIFAR_STD,
    input_size: int | None = None,
    arch_params: dict[str, Any] | None = None,
) -> Encoder:
    """Load the backbone of a solo-learn checkpoint (or a bare state dict) into an :class:`Encoder`.

    Checks ``sha256`` when given, and the ``<file>.sha256`` sidecar when present; loads strictly, so
    a checkpoint of another architecture is an error rather than a silently partial load.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    sidecar = Path(f"{path}.sha256")
    expected = sha256.lower() if sha256 else None
    if expected is None and sidecar.is_file():
        expected = (sidecar.read_text().split() or [""])[0].lower()
    actual = file_sha256(path)
    if expected is not None and actual != expected:
        where = "given sha256" if sha256 else sidecar.name
        raise UserError(
            f"{path}: sha256 mismatch ({where} {expected}, file {actual}): corrupt or replaced file"
        )
    checkpoint = _read(path)
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{path}: no tensor state_dict inside")
    backbone, dropped = backbone_state(state, str(path))
    try:
        meta = {"checkpoint": str(path), "sha256": actual, "dropped": dropped}
        encoder = Encoder(arch, arch_params, mean, std, input_size, meta=meta)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: {exc}") from None
    result = encoder.backbone.state_dict()
    missing = sorted(set(result) - set(backbone))
    unexpected = sorted(set(backbone) - set(result))
    mismatched = [k for k in backbone if k in result and backbone[k].shape != result[k].shape]
    if missing or unexpected or mismatched:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                details.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise UserError(f"{path}: weights do not fit arch {arch!r}: {', '.join(details)}")
    encoder.backbone.load_state_dict(backbone, strict=True)
    return encoder.eval()
