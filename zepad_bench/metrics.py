"""Metric definitions (design §1): sample-weighted, as percentages."""

from __future__ import annotations

import torch
from torch import Tensor


def accuracy(predictions: Tensor, labels: Tensor) -> float:
    """BA/RA: percentage of samples whose prediction equals the label (sample-weighted)."""
    return 100.0 * (predictions == labels).float().mean().item() if len(labels) else float("nan")


def attack_success_rate(clean_predictions: Tensor, adversarial_predictions: Tensor) -> float:
    """ASR: percentage of *all* test samples whose prediction changes under attack (labels unused)."""
    if not len(clean_predictions):
        return float("nan")
    return 100.0 * (clean_predictions != adversarial_predictions).float().mean().item()


def max_confidence(logits: Tensor) -> Tensor:
    """Per-sample maximum softmax probability."""
    return torch.softmax(logits.float(), dim=1).max(dim=1).values
