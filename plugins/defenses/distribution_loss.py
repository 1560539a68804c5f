"""L_f, ZePAD's feature-distribution loss (Eq. 5–6), and the label-aware form of the authors' code.

Shared by ZePAD's MPAE tuning and Gen-AF stage I (same authors, same function).
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-7


def _pair_distribution(
    z: Tensor, exclude_self: bool, weight: Tensor | None = None, shift: Tensor | None = None
) -> Tensor:
    """Row-normalised pair distribution of Eq. 5: cosine distance d_ij minus row i's nearest-neighbour ρ_i.

    ``p_ij ∝ 2 − (d_ij − ρ_i)`` (= (s_ij + 1)/2 with s = 1 − (d − ρ)); with ``shift``, the shifted
    distance becomes ``(1 − weight)·(d − ρ) + shift`` (authors' label-aware target). Distances are
    clamped to [1e-7, 2 − 1e-7] as in the authors' code.
    """
    n = len(z)
    z = z.flatten(1)
    z = z / (z.norm(dim=1, keepdim=True) + EPS)
    self_pair = torch.eye(n, dtype=torch.bool, device=z.device)
    d = 1 - z @ z.T
    rho = d.masked_fill(self_pair, float("inf")).min(dim=1, keepdim=True).values
    d = (d - rho).masked_fill(self_pair, 0.0)
    if shift is not None:
        d = (1 - weight) * d + shift
    p = (2 - d.clamp(EPS, 2 - EPS)) / 2
    if exclude_self:
        p = p.masked_fill(self_pair, 0.0)
    return p / p.sum(dim=1, keepdim=True)


def _binary_kl(p: Tensor, q: Tensor) -> Tensor:
    """Σ_ij p log(p/q) + (1 − p) log((1 − p)/(1 − q)) (Eq. 6), 1e-7 inside the logs; summed, not averaged."""
    kl = p * ((p + EPS).log() - (q + EPS).log())
    return (kl + (1 - p) * ((1 - p + EPS).log() - (1 - q + EPS).log())).sum()


def distribution_loss(
    benign: Tensor, adversarial: Tensor, labels: Tensor | None = None, weights: Tensor | None = None
) -> Tensor:
    """L_f between a batch's benign and adversarial representations (N×d each; ZePAD Eq. 5–6).

    Without labels — the paper: D^b, D^a are the pair distributions of Eq. 5 (self-pairs excluded,
    ρ taken per row, as Eq. 5's normaliser reads most plausibly); the loss is Eq. 6's binary KL with
    the benign side as target, so it is exactly 0 when ``adversarial`` equals ``benign``.

    With ``labels`` and per-sample ``weights`` (the authors' ``genetic_regularization``, used for
    their tables): the adversarial side is the target and its distances are moved by the label
    shift Δ = 2·M⊙W, W_ij = tanh((w_i + w_j)/32), M_ij = +1 for different classes, −1 for the same
    class (self-pairs included), which pulls same-class pairs together and pushes others apart,
    harder for high-loss samples; the benign side is the model distribution. Rows of zero norm
    are not zeroed silently as in that code: a NaN input stays visible.
    """
    if benign.shape != adversarial.shape:
        raise ValueError(f"benign {tuple(benign.shape)} and adversarial {tuple(adversarial.shape)} differ")
    if (labels is None) != (weights is None):
        raise ValueError("the label-aware L_f needs both labels and per-sample weights")
    if len(benign) < 2:
        return (benign.sum() + adversarial.sum()) * 0.0
    if labels is None:
        return _binary_kl(_pair_distribution(benign, True), _pair_distribution(adversarial, True))
    weight = torch.tanh((weights.view(-1, 1) + weights.view(1, -1)) / 32)
    sign = torch.where(labels.view(-1, 1) != labels.view(1, -1), 1.0, -1.0).to(weight)
    target = _pair_distribution(adversarial, False, weight, 2 * sign * weight)
    return _binary_kl(target, _pair_distribution(benign, False))
