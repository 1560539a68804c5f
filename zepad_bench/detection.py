"""Training-free DAE detection scores from a defense's branch outputs, and their evaluation.

ZePAD (Sec. 5.4) flags a DAE when the MPAE-Branch is more confident than the BMP-Branch (the
confidence ``gap``, the defense's own :meth:`Defense.detection_score`). The paper does not say how
the MPAE encoders' confidences combine, and its authors' code has no detector, so the detection task
also reports other scores computed from the same softmax outputs, without any training:

- ``js``: Jensen–Shannon divergence (nats) between the mean robust-branch distribution and the
  reference branch's (role ``bmp``): a DAE moves the benign branch but not the robust ones.
- ``disagreement``: 1 when their top-1 classes differ, else 0.
- ``entropy``: entropy (nats) of the fused prediction, softmax(defense.fuse(logits)); needs one
  branch only, so the undefended baseline gets it too.

Every score flags larger values as adversarial. Thresholds are evaluated without touching the test
labels: :func:`calibrated_accuracy` picks the threshold on one random half of the test images (the
clean image and its attacked version stay together) and reports the accuracy on the other half.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zepad_bench.metrics import detection_rates

SCORES = ("gap", "js", "disagreement", "entropy")
DEFINITIONS = {
    "gap": "the paper's confidence gap: MPAE-Branch minus BMP-Branch max-softmax confidence (the defense's "
    "own detection score)",
    "js": "Jensen–Shannon divergence between the mean robust-branch prediction and the BMP branch's",
    "disagreement": "1 when the robust branches' and the BMP branch's top-1 classes differ, else 0",
    "entropy": "entropy of the fused prediction",
}
"""One line per score of :data:`SCORES` (metric descriptions of the detection task)."""
REFERENCE_ROLE = "bmp"


def entropy(p: Tensor) -> Tensor:
    """Per-row Shannon entropy (nats) of probability rows."""
    return -(p * p.clamp_min(1e-12).log()).sum(dim=1)


def js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Per-row Jensen–Shannon divergence (nats, in [0, ln 2]) between probability rows."""
    return entropy((p + q) / 2) - (entropy(p) + entropy(q)) / 2


def detection_scores(
    probabilities: list[Tensor], roles: list[str], fused: Tensor, gap: Tensor | None
) -> dict[str, Tensor]:
    """The scores of :data:`SCORES` available for one model on one set of images.

    ``probabilities``: per-branch softmax outputs (N×C) in branch order, ``roles`` their branch roles;
    ``fused``: the defense's fused probabilities (N×C); ``gap``: the defense's own score or ``None``.
    ``js`` and ``disagreement`` need a branch of role ``bmp`` and at least one other branch.
    """
    scores: dict[str, Tensor] = {} if gap is None else {"gap": gap.float()}
    reference = [p for p, role in zip(probabilities, roles) if role == REFERENCE_ROLE]
    robust = [p for p, role in zip(probabilities, roles) if role != REFERENCE_ROLE]
    if reference and robust:
        robust_mean, ref = torch.stack(robust).mean(dim=0), reference[0]
        scores["js"] = js_divergence(robust_mean, ref)
        scores["disagreement"] = (robust_mean.argmax(dim=1) != ref.argmax(dim=1)).float()
    scores["entropy"] = entropy(fused)
    return scores


def best_threshold(benign: Tensor, adversarial: Tensor) -> float:
    """The threshold t maximising the accuracy of "adversarial iff score > t" on these samples.

    Candidates: below every score, and midway between consecutive distinct scores; the lowest wins ties.
    """
    values = torch.unique(torch.cat([benign, adversarial]).double())
    candidates = torch.cat([values[:1] - 1, (values[1:] + values[:-1]) / 2])
    correct = (benign.double()[None, :] <= candidates[:, None]).sum(1) + (
        adversarial.double()[None, :] > candidates[:, None]
    ).sum(1)
    return candidates[int(correct.argmax())].item()


def calibrated_accuracy(benign: Tensor, adversarial: Tensor, seed: int) -> tuple[float, float]:
    """(accuracy %, threshold): the threshold is :func:`best_threshold` on a random half of the paired
    samples (``benign[i]`` and ``adversarial[i]`` come from the same image), the accuracy is measured on
    the other half. Needs at least 2 pairs."""
    n = len(benign)
    if n < 2 or len(adversarial) != n:
        return float("nan"), float("nan")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit, held_out = order[: n // 2], order[n // 2 :]
    threshold = best_threshold(benign[fit], adversarial[fit])
    return detection_rates(benign[held_out], adversarial[held_out], threshold)["accuracy"], threshold
