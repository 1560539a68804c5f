"""DAE detection from branch confidences (ZePAD Sec. 5.4, Table 6), beside the fused classification."""

from __future__ import annotations

import torch

from zepad_bench import DefendedModel, TaskData
from zepad_bench.metrics import accuracy, attack_success_rate, auroc, detection_rates
from zepad_bench_plugins.tasks.classification import Classification, branch_logits


class Detection(Classification):
    """Detection accuracy and AUROC of the defense's own DAE detector (ZePAD Sec. 5.4, Table 6).

    Per-branch heads are trained (or reused) exactly as in ``classification``; the defense scores
    each test image from its branches' softmax outputs (``DefendedModel.detection_score``; ZePAD:
    MPAE confidence − BMP confidence) and flags it when the score is strictly above the defense's
    ``detection_threshold`` (ZePAD: 0.1). The test set is balanced: the clean test images (negatives)
    and their attacked versions (positives). ``detection_accuracy`` is the share of the 2N images
    classified right (Table 6's metric); ``TPR``/``FPR`` are the flagged shares of attacked/clean
    images; ``AUROC`` (threshold-free, %) ranks attacked above clean images. A defense without a
    detector gets ``"n/a"``. ``BA``/``RA``/``ASR`` of the fused classifier are reported too.
    """

    name = "detection"
    DETECTION_KEYS = ("detection_accuracy", "TPR", "FPR", "AUROC")
    report_metrics = DETECTION_KEYS

    def run(self, model: DefendedModel, data: TaskData) -> dict[str, float | str]:
        outputs, _ = branch_logits(
            self, model, data, ("test", "test_adv"), self.head, self.epochs, self.lr, self.batch_size
        )
        clean = model.fuse([o["test"] for o in outputs]).argmax(1)
        adv = model.fuse([o["test_adv"] for o in outputs]).argmax(1)
        metrics: dict[str, float | str] = {
            "BA": accuracy(clean, data.test.labels),
            "RA": accuracy(adv, data.test.labels),
            "ASR": attack_success_rate(clean, adv),
        }
        scores = {
            w: model.detection_score([torch.softmax(o[w].float(), dim=1) for o in outputs])
            for w in ("test", "test_adv")
        }
        threshold = model.detection_threshold
        if scores["test"] is None or threshold is None:
            return {**metrics, **dict.fromkeys(self.DETECTION_KEYS, "n/a")}
        benign, adversarial = scores["test"].cpu(), scores["test_adv"].cpu()
        rates = detection_rates(benign, adversarial, threshold)
        self.ctx.record("detection_score_clean", benign)
        self.ctx.record("detection_score_adv", adversarial)
        return {
            **metrics,
            "detection_accuracy": rates["accuracy"],
            "TPR": rates["TPR"],
            "FPR": rates["FPR"],
            "AUROC": auroc(benign, adversarial),
            "threshold": threshold,
        }
