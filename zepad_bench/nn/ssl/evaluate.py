"""Label-free and labeled checks of a pretrained encoder: view matching and weighted k-NN accuracy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zepad_bench.data.images import LabeledImages
from zepad_bench.interfaces import device_of
from zepad_bench.nn.batched import extract_features
from zepad_bench.nn.encoder import Encoder
from zepad_bench.nn.ssl.augment import PRESETS, make_views


def view_matching_accuracy(
    encoder: Encoder, images: Tensor, seed: int, preset: str = "view_matching"
) -> float:
    """% of augmented views whose cosine nearest neighbour among all other views is their partner view.

    Two views of each held-out image (``images``: uint8 N×3×H×W, N ≥ 2); chance is 100/(2N−1). The
    default views use SimCLR's colour distortion with crops of at least 35 % of the image, so the two
    views overlap (with solo-learn's 8 % crops, small images often give disjoint views). The SSL
    sanity metric: pretraining should raise it above a random init.
    """
    if len(images) < 2:
        raise ValueError("view matching needs at least 2 images")
    size = encoder.input_size or images.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    views = make_views(images, PRESETS[preset], size, generator)
    device = str(device_of(encoder))
    z = F.normalize(torch.cat([extract_features(encoder, v, device=device) for v in views]), dim=1)
    sim = (z @ z.T).fill_diagonal_(float("-inf"))
    n = len(images)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return 100.0 * (sim.argmax(1) == partner).float().mean().item()


def knn_accuracy(
    encoder: Encoder, train: LabeledImages, test: LabeledImages, k: int = 20, temperature: float = 0.07
) -> float:
    """Weighted k-NN top-1 accuracy (%) on frozen features (Wu et al., CVPR 2018; solo-learn's k 20, T 0.07).

    Cosine similarity; each of the ``k`` nearest training images votes for its label with weight
    exp(sim/T).
    """
    device = str(device_of(encoder))
    train_z = F.normalize(extract_features(encoder, train.images, device=device), dim=1)
    test_z = F.normalize(extract_features(encoder, test.images, device=device), dim=1)
    k = min(k, len(train_z))
    num_classes = max(train.num_classes, int(train.labels.max()) + 1)
    correct = 0
    for start in range(0, len(test_z), 1024):
        sim, idx = (test_z[start : start + 1024] @ train_z.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes).scatter_add_(
            1, train.labels[idx], (sim / temperature).exp()
        )
        correct += int((votes.argmax(1) == test.labels[start : start + 1024]).sum())
    return 100.0 * correct / len(test_z)
