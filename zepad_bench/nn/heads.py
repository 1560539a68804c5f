"""The paper's 3-layer MLP head and its training on cached (frozen-branch) features."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn


class MLPHead(nn.Module):
    """Linear(d,512)–ReLU–Dropout(0.2)–Linear(512,512)–ReLU–Linear(512,C) (ZePAD/Gen-AF head).

    ``mu``/``sigma`` standardise the input features (identity until :meth:`set_standardization`):
    a guard against near-zero feature variance in small encoders.
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 512, dropout: float = 0.2):
        super().__init__()
        self.in_dim, self.num_classes = in_dim, num_classes
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        self.register_buffer("mu", torch.zeros(in_dim))
        self.register_buffer("sigma", torch.ones(in_dim))

    def set_standardization(self, features: Tensor) -> None:
        self.mu.copy_(features.mean(0))
        self.sigma.copy_(
            features.std(0).clamp_min(1e-3) if len(features) > 1 else torch.ones_like(self.sigma)
        )

    def forward(self, features: Tensor) -> Tensor:
        return self.net((features - self.mu) / self.sigma)


def make_optimizer(
    groups: Iterable[tuple[Iterable[nn.Parameter], float]], weight_decay: float = 8e-4, gamma: float = 0.96
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ExponentialLR]:
    """Adam over ``(params, lr)`` groups with the papers' weight decay, and a per-epoch ExponentialLR."""
    optimizer = torch.optim.Adam(
        [{"params": list(p), "lr": lr} for p, lr in groups], weight_decay=weight_decay
    )
    return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def train_head(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 20,
    lr: float = 5e-3,
    weight_decay: float = 8e-4,
    gamma: float = 0.96,
    batch_size: int = 256,
    seed: int = 0,
    device: str = "cpu",
    track: Callable | None = None,
) -> MLPHead:
    """Train an :class:`MLPHead` with CE on fixed features (defaults: docs/architecture.md, Conventions);
    returns it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = MLPHead(features.shape[1], num_classes).to(device)
    head.set_standardization(features.to(device))
    optimizer, scheduler = make_optimizer([(head.parameters(), lr)], weight_decay, gamma)
    loss_fn = nn.CrossEntropyLoss()
    epochs_iter = range(epochs) if track is None else track(range(epochs), "head")
    head.train()
    for _ in epochs_iter:
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(head(features[idx].to(device)), labels[idx].to(device))
            loss.backward()
            optimizer.step()
        scheduler.step()
    return head.eval()


@torch.no_grad()
def predict_logits(head: nn.Module, features: Tensor, batch_size: int = 4096, device: str = "cpu") -> Tensor:
    head.eval()
    return torch.cat(
        [head(features[i : i + batch_size].to(device)).cpu() for i in range(0, len(features), batch_size)]
    )
