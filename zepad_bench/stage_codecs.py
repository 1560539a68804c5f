"""How stage values are stored: plain data and tensors only (the cache loads with ``weights_only``).

A dataset split is its tensors and class names; a defended model is its branches (encoder state, head
codec, the id of the data a joint head was tuned on) and the tuning's info, rebuilt around a new
defense object; a fitted attack is its ``state_dict``, checked to survive the cache right after ``fit``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch

from zepad_bench.data.images import LabeledImages
from zepad_bench.errors import UserError
from zepad_bench.interfaces import Attack, Branch, DefendedModel, Defense
from zepad_bench.nn.codec import head_from_state, head_state
from zepad_bench.nn.encoder import Encoder
from zepad_bench.stage_cache import one_line


def encode_dataset(data: LabeledImages) -> dict[str, Any]:
    return {
        "images": data.images,
        "labels": data.labels,
        "classes": list(data.classes),
        "indices": data.indices,
    }


def decode_dataset(state: dict[str, Any], name: str) -> LabeledImages:
    return LabeledImages(state["images"], state["labels"], state["classes"], name, state["indices"])


def encode_defended(model: DefendedModel) -> dict[str, Any]:
    return {
        "info": model.info,
        "branches": [
            {
                "name": b.name,
                "role": b.role,
                "encoder": b.encoder.to_state(),
                "head": head_state(b.head),
                "head_data": b.head_data,
            }
            for b in model.branches
        ],
    }


def decode_defended(state: dict[str, Any], defense: Defense) -> DefendedModel:
    branches = [
        Branch(
            b["name"], b["role"], Encoder.from_state(b["encoder"]), head_from_state(b["head"]), b["head_data"]
        )
        for b in state["branches"]
    ]
    return DefendedModel(branches, defense, state["info"])


def attack_round_trip(
    attack: Attack, new_attack: Callable[[], Attack], images: Any, perturbs: bool = True
) -> Attack:
    """The fitted attack as a later run will load it: ``state_dict()`` through ``torch.save``/``load``
    (weights only) into a fresh instance, which must perturb a batch (``perturbs``; an adaptive
    attack perturbs a pipeline, not a batch). A state that does not survive is a one-line error
    naming the plugin and ``state_dict``, on the first run rather than the rerun."""
    x = next(iter(images))[:2]
    if perturbs:
        attack.perturb(x)  # a bug of perturb itself keeps its traceback
    try:
        buffer = io.BytesIO()
        torch.save(attack.state_dict(), buffer)
        buffer.seek(0)
        restored = new_attack()
        restored.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
        if perturbs:
            restored.perturb(x)
    except Exception as exc:
        raise UserError(
            f"attack plugin {attack.name!r}: its fitted state does not survive the cache "
            f"(state_dict() → load_state_dict() → perturb failed: {one_line(exc)}); keep the fitted "
            "state in tensors or plain data, or override state_dict()/load_state_dict()"
        ) from None
    return restored
