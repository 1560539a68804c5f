"""The paper's eleven SSL methods with solo-learn's CIFAR-10 recipes (HEAD config values).

Each method is a module holding ``backbone`` plus its heads under solo-learn's attribute names
(``projector``, ``predictor``, ``momentum_backbone``, ``momentum_projector``; DINO ``head``/
``momentum_head``; SwAV ``prototypes``), so ``state_dict()`` has solo-learn's key layout. The heads
are lightly's, taken as their inner ``nn.Sequential`` so keys read ``projector.0.weight`` as in
solo-learn. ``defaults`` is the recipe: the optimiser, schedule and augmentation preset (see
:mod:`.augment`) and the method's own sizes and temperatures.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.loss.wmse_loss import Whitening2d
from lightly.models.modules import heads
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.modules.nn_memory_bank import NNMemoryBankModule
from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import Tensor, nn

from zepad_bench.nn.precision import run_backbone

COMMON_DEFAULTS: dict[str, Any] = {
    "optimizer": "lars",  # lars | sgd | adam
    "lr": 0.4,
    "weight_decay": 1e-5,
    "momentum": 0.9,  # SGD/LARS momentum
    "lars_eta": 0.02,
    "clip_lr": True,
    "exclude_bias_n_norm": True,
    "warmup_epochs": 10.0,
    "warmup_start_lr": 3e-5,
    "min_lr": 0.0,
    "augment": "symmetric",
}
"""solo-learn's shared CIFAR settings: warmup-cosine per step (10 warmup epochs from 3e-5), LARS η 0.02."""


@dataclass
class Step:
    """Where training is: global step, totals, epoch, and the step's seeded CPU generator."""

    step: int
    total_steps: int
    epoch: int
    generator: torch.Generator


class Method(nn.Module):
    """Base of an SSL method: ``loss(views, labels, step)``, then the hooks the training loop calls."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    num_views: ClassVar[int] = 2
    needs_labels: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, feature_dim: int, mean: tuple, std: tuple, cfg: dict[str, Any]):
        super().__init__()
        self.backbone, self.feature_dim, self.cfg = backbone, feature_dim, cfg
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def features(self, x: Tensor, backbone: nn.Module | None = None) -> Tensor:
        """Backbone features of [0, 1] images (normalised here, as the :class:`Encoder` does)."""
        return run_backbone(backbone or self.backbone, (x - self.mean) / self.std)

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        raise NotImplementedError

    def after_backward(self, step: Step) -> None:
        """Edit gradients before the optimiser step (e.g. frozen prototypes early on)."""

    def after_step(self, step: Step) -> None:
        """Update non-gradient state after the optimiser step (e.g. EMA targets)."""


class MomentumMethod(Method):
    """A method with EMA targets: τ cosine-annealed per step from ``base_tau`` to ``final_tau`` (BYOL)."""

    pairs: ClassVar[tuple[tuple[str, str], ...]] = (
        ("backbone", "momentum_backbone"),
        ("projector", "momentum_projector"),
    )

    def make_momentum(self) -> None:
        """Create the targets as copies of the online networks (call after building them)."""
        for online, target in self.pairs:
            module = copy.deepcopy(getattr(self, online))
            deactivate_requires_grad(module)
            setattr(self, target, module)

    def tau(self, step: Step) -> float:
        base, final = self.cfg["base_tau"], self.cfg["final_tau"]
        return final - (final - base) * (math.cos(math.pi * step.step / step.total_steps) + 1) / 2

    @torch.no_grad()
    def after_step(self, step: Step) -> None:
        tau = self.tau(step)
        for online, target in self.pairs:
            update_momentum(getattr(self, online), getattr(self, target), tau)


def _mlp(*dims: int, bn: bool = True, bias: bool = True, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear(–BN)–act blocks through ``dims``; the last Linear bare."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if i < len(dims) - 2:
            layers += ([nn.BatchNorm1d(d_out)] if bn else []) + [act()]
    return nn.Sequential(*layers)


def _in_batch_ce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """CE of normalised ``a·bᵀ/τ`` with the diagonal as targets (NNCLR / MoCo v3 cross-view InfoNCE)."""
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


class SimCLR(Method):
    """SimCLR (Chen et al., ICML 2020): NT-Xent over 2N views (lightly ``NTXentLoss``), τ 0.2.

    Projector 2048→256 without BN as solo-learn's (lightly's default adds BN).
    """

    name = "simclr"
    defaults = {
        "lr": 0.4,
        "weight_decay": 1e-4,
        "proj_hidden_dim": 2048,
        "proj_output_dim": 256,
        "temperature": 0.2,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = heads.SimCLRProjectionHead(
            self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"], batch_norm=False
        ).layers
        self.criterion = NTXentLoss(temperature=c["temperature"])

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        z1, z2 = (self.projector(self.features(v)) for v in views)
        return self.criterion(z1, z2)


class SupCon(SimCLR):
    """SupCon (Khosla et al., NeurIPS 2020) as solo-learn: the SimCLR loss with labels as identities.

    Positives: every other view with the anchor's label; the sum over positives sits inside the log
    (the paper's L_in), −log Σ_pos e^{s/τ} / Σ_{a≠i} e^{s/τ}. SGD, lr 0.4 (HEAD).
    """

    name = "supcon"
    needs_labels = True
    defaults = {**SimCLR.defaults, "optimizer": "sgd", "weight_decay": 1e-5}

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        assert labels is not None
        z = F.normalize(torch.cat([self.projector(self.features(v)) for v in views]), dim=1)
        y = labels.repeat(len(views))
        self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
        logits = (z @ z.T / self.cfg["temperature"]).masked_fill(self_mask, float("-inf"))
        positive = (y[:, None] == y[None, :]) & ~self_mask
        log_pos = torch.logsumexp(logits.masked_fill(~positive, float("-inf")), dim=1)
        return (torch.logsumexp(logits, dim=1) - log_pos).mean()


class BYOL(MomentumMethod):
    """BYOL (Grill et al., NeurIPS 2020): Σ over both view orders of 2 − 2·cos(p_w, sg(z'_v)).

    lightly heads (4096/256) and ``NegativeCosineSimilarity``; EMA τ 0.99 → 1; LARS lr 1.0.
    """

    name = "byol"
    defaults = {
        "lr": 1.0,
        "augment": "asymmetric",
        "proj_hidden_dim": 4096,
        "proj_output_dim": 256,
        "pred_hidden_dim": 4096,
        "base_tau": 0.99,
        "final_tau": 1.0,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = heads.BYOLProjectionHead(
            self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"]
        ).layers
        self.predictor = heads.BYOLPredictionHead(
            c["proj_output_dim"], c["pred_hidden_dim"], c["proj_output_dim"]
        ).layers
        self.make_momentum()
        self.criterion = NegativeCosineSimilarity()

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        p = [self.predictor(self.projector(self.features(v))) for v in views]
        with torch.no_grad():
            z = [self.momentum_projector(self.features(v, self.momentum_backbone)) for v in views]
        return sum(2 + 2 * self.criterion(p[w], z[1 - w]) for w in range(2))


class NNCLR(Method):
    """NNCLR (Dwibedi et al., ICCV 2021): nearest neighbours from a support queue as positives.

    lightly heads and ``NNMemoryBankModule`` (65,536×256); solo-learn's loss, cross-view only:
    ½[CE(nn₁·p₂ᵀ/τ) + CE(nn₂·p₁ᵀ/τ)], τ 0.2; only view 1's embeddings are enqueued.
    """

    name = "nnclr"
    defaults = {
        "lr": 0.4,
        "augment": "asymmetric",
        "proj_hidden_dim": 2048,
        "proj_output_dim": 256,
        "pred_hidden_dim": 4096,
        "temperature": 0.2,
        "queue_size": 65536,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = heads.NNCLRProjectionHead(
            self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"]
        ).layers
        self.predictor = heads.NNCLRPredictionHead(
            c["proj_output_dim"], c["pred_hidden_dim"], c["proj_output_dim"]
        ).layers
        self.queue = NNMemoryBankModule(size=(c["queue_size"], c["proj_output_dim"]))

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        z1, z2 = (self.projector(self.features(v)) for v in views)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        z1, z2 = F.normalize(z1, dim=1).detach(), F.normalize(z2, dim=1).detach()
        nn2 = self.queue(z2, update=False)
        nn1 = self.queue(z1, update=True)
        tau = self.cfg["temperature"]
        return (_in_batch_ce(nn1, p2, tau) + _in_batch_ce(nn2, p1, tau)) / 2


class MoCoV2Plus(MomentumMethod):
    """MoCo v2+ (Chen et al., 2020, arXiv:2003.04297) as solo-learn: one key queue per view (32,768 each).

    ½[NCE(q₁, k₂, queue₂) + NCE(q₂, k₁, queue₁)], τ 0.2; lightly ``MoCoProjectionHead`` (2048/256,
    no BN), ``MemoryBankModule`` queues, EMA τ 0.99 → 0.999; SGD lr 0.3.
    """

    name = "mocov2plus"
    defaults = {
        "optimizer": "sgd",
        "lr": 0.3,
        "weight_decay": 1e-4,
        "augment": "symmetric_weak",
        "proj_hidden_dim": 2048,
        "proj_output_dim": 256,
        "temperature": 0.2,
        "queue_size": 32768,
        "base_tau": 0.99,
        "final_tau": 0.999,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = heads.MoCoProjectionHead(
            self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"]
        ).layers
        self.make_momentum()
        size = (c["queue_size"], c["proj_output_dim"])
        self.queues = nn.ModuleList(MemoryBankModule(size, feature_dim_first=False) for _ in range(2))

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        q = [F.normalize(self.projector(self.features(v)), dim=1) for v in views]
        with torch.no_grad():
            k = [
                F.normalize(self.momentum_projector(self.features(v, self.momentum_backbone)), dim=1)
                for v in views
            ]
        tau, total = self.cfg["temperature"], 0.0
        for i in range(2):
            _, queue = self.queues[1 - i](k[1 - i], update=False)
            logits = torch.cat([(q[i] * k[1 - i]).sum(1, keepdim=True), q[i] @ queue.to(q[i]).T], 1) / tau
            total = total + F.cross_entropy(
                logits, torch.zeros(len(q[i]), dtype=torch.long, device=q[i].device)
            )
        for i in range(2):
            self.queues[i](k[i], update=True)
        return total / 2


class MoCoV3(MomentumMethod):
    """MoCo v3 (Chen, Xie & He, ICCV 2021), ResNet variant: ℓ(q₁,k₂) + ℓ(q₂,k₁), ℓ = 2τ·CE(q·kᵀ/τ), τ 0.2.

    Projector 4096/256 with BN (last BN without affine), predictor 4096/256, no biases; EMA of
    backbone + projector, τ 0.99 → 1; no queue; LARS lr 0.3.
    """

    name = "mocov3"
    defaults = {
        "lr": 0.3,
        "weight_decay": 1e-6,
        "augment": "asymmetric",
        "proj_hidden_dim": 4096,
        "proj_output_dim": 256,
        "pred_hidden_dim": 4096,
        "temperature": 0.2,
        "base_tau": 0.99,
        "final_tau": 1.0,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = _mlp(self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"], bias=False)
        self.projector.append(nn.BatchNorm1d(c["proj_output_dim"], affine=False))
        self.predictor = _mlp(c["proj_output_dim"], c["pred_hidden_dim"], c["proj_output_dim"], bias=False)
        self.make_momentum()

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        q = [self.predictor(self.projector(self.features(v))) for v in views]
        with torch.no_grad():
            k = [self.momentum_projector(self.features(v, self.momentum_backbone)) for v in views]
        tau = self.cfg["temperature"]
        return 2 * tau * (_in_batch_ce(q[0], k[1], tau) + _in_batch_ce(q[1], k[0], tau))


class ReSSL(MomentumMethod):
    """ReSSL (Zheng et al., NeurIPS 2021): match relations to a queue of past keys.

    −Σ_j softmax(k·Qᵀ/τ_k)_j · log softmax(q·Qᵀ/τ_q)_j with τ_q 0.1, τ_k 0.04; q from the strong view
    (online), k from the weak view (EMA, τ 0.99 → 1), 65,536-key queue; SGD lr 0.05.
    """

    name = "ressl"
    defaults = {
        "optimizer": "sgd",
        "lr": 0.05,
        "weight_decay": 1e-4,
        "augment": "ressl",
        "proj_hidden_dim": 4096,
        "proj_output_dim": 256,
        "temperature_q": 0.1,
        "temperature_k": 0.04,
        "queue_size": 65536,
        "base_tau": 0.99,
        "final_tau": 1.0,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = _mlp(self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"], bn=False)
        self.make_momentum()
        self.queue = MemoryBankModule((c["queue_size"], c["proj_output_dim"]), feature_dim_first=False)

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        q = F.normalize(self.projector(self.features(views[0])), dim=1)
        with torch.no_grad():
            k = F.normalize(self.momentum_projector(self.features(views[1], self.momentum_backbone)), dim=1)
        _, queue = self.queue(k, update=True)
        queue = queue.to(q)
        target = F.softmax(k @ queue.T / self.cfg["temperature_k"], dim=1)
        return -(target * F.log_softmax(q @ queue.T / self.cfg["temperature_q"], dim=1)).sum(1).mean()


class NormalizedLinear(nn.Module):
    """Bias-free linear layer with unit-norm rows: weight normalisation with the gain fixed at 1."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Linear(in_dim, out_dim, bias=False).weight

    def forward(self, x: Tensor) -> Tensor:
        return x @ F.normalize(self.weight, dim=1).T


class DINOHead(nn.Module):
    """DINO's head as solo-learn's: MLP (GELU, trunc-normal init σ 0.02) → L2-normalise → prototypes.

    Written here rather than lightly's ``DINOProjectionHead``, whose ``torch.nn.utils.weight_norm``
    layer cannot be deep-copied into the teacher; :class:`NormalizedLinear` is the same function.
    """

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, num_prototypes: int):
        super().__init__()
        self.mlp = _mlp(in_dim, hidden_dim, hidden_dim, bottleneck_dim, bn=False, act=nn.GELU)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = NormalizedLinear(bottleneck_dim, num_prototypes)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=1))


class DINO(MomentumMethod):
    """DINO (Caron et al., ICCV 2021) with a ResNet: :class:`DINOHead` and lightly's ``DINOLoss``.

    Head 2048→2048→256, L2-normalised, weight-normalised 4096 prototypes (last layer frozen for the
    first epoch); T_s 0.1, T_t 0.07 (warmup 0.04 → 0.07 over ``warmup_teacher_temperature_epochs``,
    0 in HEAD, 50 in legacy), centre momentum 0.9; EMA τ 0.9995 → 1; LARS lr 0.3.
    """

    name = "dino"
    pairs = (("backbone", "momentum_backbone"), ("head", "momentum_head"))
    defaults = {
        "lr": 0.3,
        "weight_decay": 1e-6,
        "augment": "asymmetric",
        "proj_hidden_dim": 2048,
        "proj_output_dim": 256,
        "num_prototypes": 4096,
        "student_temperature": 0.1,
        "teacher_temperature": 0.07,
        "warmup_teacher_temperature": 0.04,
        "warmup_teacher_temperature_epochs": 0,
        "freeze_last_layer_epochs": 1,
        "base_tau": 0.9995,
        "final_tau": 1.0,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.head = DINOHead(
            self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"], c["num_prototypes"]
        )
        self.make_momentum()
        self.criterion = DINOLoss(
            output_dim=c["num_prototypes"],
            warmup_teacher_temp=c["warmup_teacher_temperature"],
            teacher_temp=c["teacher_temperature"],
            warmup_teacher_temp_epochs=c["warmup_teacher_temperature_epochs"],
            student_temp=c["student_temperature"],
            center_momentum=0.9,
        )

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        student = [self.head(self.features(v)) for v in views]
        with torch.no_grad():
            teacher = [self.momentum_head(self.features(v, self.momentum_backbone)) for v in views]
        return self.criterion(teacher, student, epoch=step.epoch)

    def after_backward(self, step: Step) -> None:
        if step.epoch < self.cfg["freeze_last_layer_epochs"]:
            self.head.last_layer.weight.grad = None


class SwAV(Method):
    """SwAV (Caron et al., NeurIPS 2020): swapped prediction of Sinkhorn codes (lightly ``SwaVLoss``).

    Projector 2048→128 (L2-normalised), 3000 bias-free unit-norm prototypes (solo-learn's weight-norm
    layer with gain 1), τ 0.1, Sinkhorn ε 0.05 × 3; per-view queues of 3840 embeddings used from
    epoch 50; prototypes frozen for 2 epochs; LARS lr 0.6.
    """

    name = "swav"
    defaults = {
        "lr": 0.6,
        "weight_decay": 1e-6,
        "proj_hidden_dim": 2048,
        "proj_output_dim": 128,
        "num_prototypes": 3000,
        "temperature": 0.1,
        "sinkhorn_iterations": 3,
        "sinkhorn_epsilon": 0.05,
        "queue_size": 3840,
        "queue_start_epoch": 50,
        "freeze_prototypes_epochs": 2,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = heads.SwaVProjectionHead(
            self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"]
        ).layers
        self.prototypes = NormalizedLinear(c["proj_output_dim"], c["num_prototypes"])
        size = (c["queue_size"], c["proj_output_dim"])
        self.queues = nn.ModuleList(MemoryBankModule(size, feature_dim_first=False) for _ in range(2))
        self.criterion = SwaVLoss(c["temperature"], c["sinkhorn_iterations"], c["sinkhorn_epsilon"])

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        z = [F.normalize(self.projector(self.features(v)), dim=1) for v in views]
        queued = [queue(zi.detach(), update=True)[1] for queue, zi in zip(self.queues, z)]
        queue_scores = None
        if step.epoch >= self.cfg["queue_start_epoch"]:
            with torch.no_grad():
                queue_scores = [self.prototypes(b.to(z[0])) for b in queued]
        return self.criterion([self.prototypes(zi) for zi in z], [], queue_outputs=queue_scores)

    def after_backward(self, step: Step) -> None:
        if step.epoch < self.cfg["freeze_prototypes_epochs"]:
            self.prototypes.weight.grad = None


class IterNorm(nn.Module):
    """Iterative normalisation (Huang et al., CVPR 2019): group whitening by T Newton–Schulz steps.

    Σ_N = Σ/tr(Σ); P ← 1.5P − 0.5P³Σ_N (T times); x̂ = P·(x − μ)/√tr(Σ); running μ and whitening
    matrix (momentum 0.1) are used in eval; per-channel affine.
    """

    def __init__(self, num_features: int, num_groups: int = 64, iterations: int = 5, eps: float = 1e-5):
        super().__init__()
        if num_features % num_groups:
            raise ValueError(f"IterNorm: {num_features} features do not split into {num_groups} groups")
        self.groups, self.size, self.iterations, self.eps = (
            num_groups,
            num_features // num_groups,
            iterations,
            eps,
        )
        self.momentum = 0.1
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_groups, self.size, 1))
        self.register_buffer("running_wm", torch.eye(self.size).expand(num_groups, -1, -1).clone())

    def forward(self, x: Tensor) -> Tensor:
        xg = x.T.reshape(self.groups, self.size, -1)  # G × d × N
        if self.training:
            mean = xg.mean(-1, keepdim=True)
            xc = xg - mean
            eye = torch.eye(self.size, device=x.device, dtype=x.dtype).expand_as(self.running_wm)
            sigma = eye * self.eps + xc @ xc.transpose(1, 2) / xg.shape[-1]
            r_tr = 1 / sigma.diagonal(dim1=1, dim2=2).sum(-1).view(-1, 1, 1)
            sigma_n, p = sigma * r_tr, eye
            for _ in range(self.iterations):
                p = 1.5 * p - 0.5 * torch.linalg.matrix_power(p, 3) @ sigma_n
            wm = p * r_tr.sqrt()
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_wm.lerp_(wm, self.momentum)
        else:
            xc, wm = xg - self.running_mean, self.running_wm
        out = (wm @ xc).reshape(-1, x.shape[0]).T
        return out * self.weight + self.bias


class VIbCReg(Method):
    """VIbCReg (Lee & Aune, 2021, arXiv:2109.00783): 25·MSE + 25·variance hinge + 200·correlation.

    Projector 2048–2048–2048 (BN, GELU) ending in IterNorm (64 groups, 5 iterations); V and C summed
    over the two views; C is the mean over D² of the squared off-diagonal feature correlations.
    LARS lr 0.3 without lr clipping.
    """

    name = "vibcreg"
    defaults = {
        "lr": 0.3,
        "weight_decay": 1e-4,
        "clip_lr": False,
        "augment": "vibcreg",
        "proj_hidden_dim": 2048,
        "proj_output_dim": 2048,
        "iternorm_groups": 64,
        "sim_loss_weight": 25.0,
        "var_loss_weight": 25.0,
        "cov_loss_weight": 200.0,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = _mlp(
            self.feature_dim, c["proj_hidden_dim"], c["proj_hidden_dim"], c["proj_output_dim"], act=nn.GELU
        )
        self.projector.append(IterNorm(c["proj_output_dim"], c["iternorm_groups"]))

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        z1, z2 = (self.projector(self.features(v)) for v in views)
        variance = sum(F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean() for z in (z1, z2))
        covariance = 0.0
        for z in (z1, z2):
            zn = F.normalize(z - z.mean(0), dim=0)
            corr = (zn.T @ zn).fill_diagonal_(0)
            covariance = covariance + corr.pow(2).mean()
        c = self.cfg
        return (
            c["sim_loss_weight"] * F.mse_loss(z1, z2)
            + c["var_loss_weight"] * variance
            + c["cov_loss_weight"] * covariance
        )


class WMSE(Method):
    """W-MSE (Ermolov et al., ICML 2021): Cholesky-whiten random sub-batches, then 2 − 2·cos.

    Projector 1024→64; each view whitened in chunks of ``whitening_size`` (128) of one random
    permutation (lightly ``Whitening2d``, ε 0); loss 2 − 2·mean cos(w₁, sg(w₂)) with solo-learn's
    stop-gradient on the second view; Adam lr 2e-3, warmup from 0.
    """

    name = "wmse"
    defaults = {
        "optimizer": "adam",
        "lr": 2e-3,
        "weight_decay": 1e-6,
        "warmup_start_lr": 0.0,
        "augment": "wmse",
        "proj_hidden_dim": 1024,
        "proj_output_dim": 64,
        "whitening_size": 128,
        "whitening_iters": 1,
    }

    def __init__(self, *args: Any):
        super().__init__(*args)
        c = self.cfg
        self.projector = _mlp(self.feature_dim, c["proj_hidden_dim"], c["proj_output_dim"])
        self.whitening = Whitening2d(c["proj_output_dim"], track_running_stats=False, eps=0.0)

    def check_batch(self, batch_size: int) -> None:
        w = self.cfg["whitening_size"]
        if batch_size % w or w <= self.cfg["proj_output_dim"]:
            raise ValueError(
                f"wmse: batch_size ({batch_size}) must be a multiple of whitening_size ({w}), "
                f"which must exceed proj_output_dim ({self.cfg['proj_output_dim']})"
            )

    def loss(self, views: list[Tensor], labels: Tensor | None, step: Step) -> Tensor:
        z1, z2 = (self.projector(self.features(v)) for v in views)
        total = 0.0
        for _ in range(self.cfg["whitening_iters"]):
            chunks = torch.randperm(len(z1), generator=step.generator).view(-1, self.cfg["whitening_size"])
            w1, w2 = torch.empty_like(z1), torch.empty_like(z2)
            for idx in chunks.to(z1.device):
                w1[idx], w2[idx] = self.whitening(z1[idx].float()), self.whitening(z2[idx].float())
            total = total + 2 - 2 * F.cosine_similarity(w1, w2.detach(), dim=-1).mean()
        return total / self.cfg["whitening_iters"]


METHOD_CLASSES: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (WMSE, BYOL, NNCLR, SimCLR, MoCoV2Plus, MoCoV3, SupCon, ReSSL, DINO, SwAV, VIbCReg)
}
