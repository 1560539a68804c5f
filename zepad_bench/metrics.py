"""Metric definitions (docs/architecture.md, Definitions): sample-weighted, as percentages."""

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


def top_class_share(predictions: Tensor) -> float:
    """Percentage of samples predicted as the most frequent class: near 100 flags a collapsed model."""
    if not len(predictions):
        return float("nan")
    return 100.0 * torch.bincount(predictions).max().item() / len(predictions)


def max_confidence(logits: Tensor) -> Tensor:
    """Per-sample maximum softmax probability."""
    return torch.softmax(logits.float(), dim=1).max(dim=1).values


# ---------------------------------------------------------------------- retrieval (ZePAD Appendix J)
def retrieval_embedding(branch_features: list[Tensor]) -> Tensor:
    """One embedding per sample from several branches: concatenated L2-normalised branch features / √B.

    Its cosine similarity is the mean over branches of the per-branch cosine similarities, so each
    branch weighs the same whatever its feature dimension or scale (one branch: just L2-normalised).
    """
    parts = [torch.nn.functional.normalize(f.float(), dim=1) for f in branch_features]
    return torch.cat(parts, dim=1) / len(parts) ** 0.5


def nearest_neighbours(queries: Tensor, gallery: Tensor, k: int, chunk: int = 256) -> Tensor:
    """N×k indices of each query's ``k`` most cosine-similar gallery rows, most similar first.

    Exact, brute force, in chunks of ``chunk`` queries; exact similarity ties are ordered by ``torch.topk``.
    """
    if not 1 <= k <= len(gallery):
        raise ValueError(f"k must be in [1, {len(gallery)}] (gallery size), got {k}")
    gallery = torch.nn.functional.normalize(gallery.float(), dim=1)
    out = []
    for start in range(0, len(queries), chunk):
        q = torch.nn.functional.normalize(queries[start : start + chunk].float().to(gallery.device), dim=1)
        out.append((q @ gallery.T).topk(k, dim=1).indices.cpu())
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)


def hit_at_k(neighbour_labels: Tensor, labels: Tensor) -> float:
    """hit@k: percentage of queries with at least one of their k neighbours (N×k labels) of their label."""
    if not len(labels):
        return float("nan")
    return 100.0 * (neighbour_labels == labels[:, None]).any(dim=1).float().mean().item()


def precision_at_k(neighbour_labels: Tensor, labels: Tensor) -> float:
    """precision@k: mean over queries of the share of their k neighbours that have the query's label (%)."""
    if not len(labels):
        return float("nan")
    return 100.0 * (neighbour_labels == labels[:, None]).float().mean().item()


def knn_vote(neighbour_labels: Tensor, num_classes: int) -> Tensor:
    """kNN majority vote over N×k neighbour labels (most similar first), unweighted.

    A tie between classes goes to the tied class whose first neighbour ranks highest.
    """
    n, k = neighbour_labels.shape
    one_hot = torch.nn.functional.one_hot(neighbour_labels, num_classes)  # N×k×C
    counts = one_hot.sum(dim=1)
    rank = torch.arange(k).view(1, k, 1).expand(n, k, num_classes)
    first = torch.where(one_hot.bool(), rank, torch.full_like(rank, k)).min(dim=1).values
    return (counts * (k + 1) - first).argmax(dim=1)


def neighbour_change_rate(clean_neighbours: Tensor, adversarial_neighbours: Tensor) -> float:
    """Retrieval ASR: percentage of all queries whose top-1 gallery neighbour changes under attack."""
    if not len(clean_neighbours):
        return float("nan")
    return 100.0 * (clean_neighbours[:, 0] != adversarial_neighbours[:, 0]).float().mean().item()


# ---------------------------------------------------------------------- detection (ZePAD Sec. 5.4)
def detection_rates(benign_scores: Tensor, adversarial_scores: Tensor, threshold: float) -> dict[str, float]:
    """Flag a sample as a DAE when its score is strictly above ``threshold`` (ZePAD Sec. 5.4).

    ``accuracy`` is over the union of both sets (balanced when they have the same size: the clean test
    images and their attacked versions); ``TPR`` = flagged adversarial, ``FPR`` = flagged benign (%).
    """
    flagged_benign, flagged_adv = benign_scores > threshold, adversarial_scores > threshold
    total = len(benign_scores) + len(adversarial_scores)
    correct = (~flagged_benign).sum().item() + flagged_adv.sum().item()
    return {
        "accuracy": 100.0 * correct / total if total else float("nan"),
        "TPR": 100.0 * flagged_adv.float().mean().item() if len(adversarial_scores) else float("nan"),
        "FPR": 100.0 * flagged_benign.float().mean().item() if len(benign_scores) else float("nan"),
    }


def auroc(benign_scores: Tensor, adversarial_scores: Tensor) -> float:
    """AUROC (%) of the score separating adversarial (positive) from benign samples.

    The Mann–Whitney statistic: P(score_adv > score_benign) + ½·P(equal), by average ranks.
    """
    n_neg, n_pos = len(benign_scores), len(adversarial_scores)
    if not n_neg or not n_pos:
        return float("nan")
    scores = torch.cat([benign_scores, adversarial_scores]).double()
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # rank of the last member of each group of equal scores (1-based)
    average_rank = (ends - (counts.double() - 1) / 2)[inverse]
    rank_sum = average_rank[n_neg:].sum().item()
    return 100.0 * (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
