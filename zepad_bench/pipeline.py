"""The defended task pipeline as one differentiable module (adaptive scenario), and its gradient checks.

Adaptive evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness"; Tramèr et al.
2020, "On Adaptive Attacks to Adversarial Example Defenses") attacks what the defender deploys:
image → every branch encoder → that branch's task head → the defense's fusion → class logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from zepad_bench.interfaces import DefendedModel, TaskData

HEAD_DEFAULTS: dict[str, Any] = {"epochs": 20, "lr": 5e-3, "batch_size": 256}
"""Training settings of a retrained per-branch head (the ``classification`` task's defaults)."""


def task_heads(
    model: DefendedModel, data: TaskData, seed: int, device: str, head: str = "auto", **train: Any
) -> tuple[list[nn.Module], list[str]]:
    """Per branch: the head a classification-style task uses, and ``"joint"`` or ``"retrained"``.

    A branch's jointly tuned head is used when ``head="auto"`` and it was tuned on this task's
    dataset with its classes; otherwise a paper MLP head is trained on the branch's frozen train
    features (``train``: :func:`zepad_bench.nn.heads.train_head` settings over :data:`HEAD_DEFAULTS`,
    seed ``seed + branch``), served from the runner's head cache.
    """
    heads, kinds = [], []
    for i, branch in enumerate(model.branches):
        joint = (
            head == "auto"
            and branch.head is not None
            and branch.head_data == data.train.name
            and branch.head.num_classes == data.train.num_classes
        )
        if joint:
            heads.append(branch.head)
        else:
            heads.append(data.head(model, i, **{**HEAD_DEFAULTS, **train}, seed=seed + i, device=device))
        kinds.append("joint" if joint else "retrained")
    return heads, kinds


class DefendedPipeline(nn.Module):
    """``x`` in [0, 1] → ``model.fuse([head_i(encoder_i(x))])``: the defended task classifier end to end.

    Frozen (no parameter gradients) and in eval mode.
    """

    def __init__(self, model: DefendedModel, heads: list[nn.Module]):
        super().__init__()
        if len(heads) != len(model.branches):
            raise ValueError(f"{len(model.branches)} branches but {len(heads)} heads")
        self.encoders = nn.ModuleList([b.encoder for b in model.branches])
        self.heads = nn.ModuleList(heads)
        self.model = model
        self.requires_grad_(False).eval()

    def forward(self, x: Tensor) -> Tensor:
        fused = self.model.fuse([h(e(x)) for e, h in zip(self.encoders, self.heads)])
        if getattr(self.model.defense, "fuse_on", "logits") == "probabilities":
            # a fusion of softmax outputs (ZePAD's default) returns probabilities: their log is a
            # logit vector with the same softmax and argmax, which CE-based attacks (APGD-CE) expect
            return fused.clamp_min(1e-12).log()
        return fused


class EOT(nn.Module):
    """The mean of ``samples`` forward passes of ``module`` (Expectation over Transformation, Athalye
    et al., ICML 2018, Eq. 3): for a randomised defense its gradient is the mean of the sampled
    gradients, which is what an adaptive attacker follows; identical to ``module`` when deterministic."""

    def __init__(self, module: nn.Module, samples: int):
        super().__init__()
        self.module, self.samples = module, samples

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.module(x) for _ in range(self.samples)]).mean(0)


def input_gradient_stats(
    pipeline: nn.Module, x: Tensor, y: Tensor, batch_size: int = 256
) -> dict[str, float]:
    """Per-sample input gradient of the cross-entropy through ``pipeline`` (AutoAttack-style sanity):
    ``grad_zero_frac`` — share of samples whose gradient is exactly zero everywhere (masked or
    saturated gradients); ``grad_nan_frac`` — share with a NaN/inf entry; ``grad_norm`` — mean L1 norm."""
    zero = nan = 0
    norm = 0.0
    device = next((p.device for p in pipeline.parameters()), torch.device("cpu"))
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device).clone().requires_grad_(True)
        yb = y[start : start + batch_size].to(device)
        with torch.enable_grad():
            loss = F.cross_entropy(pipeline(xb), yb, reduction="sum")
            (grad,) = torch.autograd.grad(loss, xb)
        flat = grad.flatten(1)
        finite = torch.isfinite(flat).all(1)
        nan += int((~finite).sum())
        zero += int((finite & (flat == 0).all(1)).sum())
        norm += float(flat[finite].abs().sum())
    n = max(len(x), 1)
    return {"grad_zero_frac": 100.0 * zero / n, "grad_nan_frac": 100.0 * nan / n, "grad_norm": norm / n}
