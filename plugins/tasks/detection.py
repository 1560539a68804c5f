"""DAE detection from branch confidences (ZePAD Sec. 5.4, Table 6), beside the fused classification."""

from __future__ import annotations

from dataclasses import replace

import torch

from zepad_bench import DefendedModel, Metric, TaskData
from zepad_bench.detection import DEFINITIONS, SCORES, calibrated_accuracy, detection_scores
from zepad_bench.interfaces import CORE_METRICS
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

    Detection examined (:mod:`zepad_bench.detection`): for each training-free score of
    :data:`~zepad_bench.detection.SCORES` (``gap`` is the paper's), ``AUROC:<score>`` and
    ``accuracy:<score>``, the accuracy on a held-out random half of the test images at the threshold
    that is best on the other half (seeded by the run); a score the model cannot give is ``"n/a"``.
    Every score of both sets is recorded (``detection_score_{clean,adv}:<score>``) for the threshold-sweep
    figure (:func:`zepad_bench.reports.figures.detection_figure`, from the stored histograms).
    """

    name = "detection"
    DETECTION_KEYS = ("detection_accuracy", "TPR", "FPR", "AUROC")
    SCORE_KEYS = tuple(f"{kind}:{score}" for kind in ("AUROC", "accuracy") for score in SCORES)

    def metrics(self) -> list[Metric]:
        fused = [
            replace(m, definition=f"{m.definition}, fused classifier", report=False) for m in CORE_METRICS
        ]
        scores = []
        for score in SCORES:
            what = f"the score `{score}`: {DEFINITIONS[score]}"
            scores += [
                Metric(f"AUROC:{score}", f"AUROC of {what}; attacked vs clean", report=score != "gap"),
                Metric(
                    f"accuracy:{score}",
                    f"detection accuracy of {what}; on a held-out random half of the test images, at the "
                    "threshold best on the other half",
                ),
            ]
        return [
            *fused,
            Metric(
                "detection_accuracy",
                "share of the 2N images (N clean, N attacked) the defense's detector classifies right, "
                "at the defense's threshold (paper Table 6)",
            ),
            Metric("TPR", "share of attacked images the defense's detector flags", report=False),
            Metric(
                "FPR",
                "share of clean images the defense's detector flags",
                higher_is_better=False,
                report=False,
            ),
            Metric(
                "AUROC",
                "area under the ROC curve of the defense's own detection score, attacked vs clean "
                "(threshold-free)",
            ),
            *scores,
            Metric("threshold", "the defense's detection threshold", unit="", clean=True, report=False),
        ]

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
        metrics.update(self.examine(model, outputs))
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

    def examine(self, model: DefendedModel, outputs: list[dict[str, torch.Tensor]]) -> dict[str, float | str]:
        """AUROC and held-out calibrated accuracy of every detection score; records the scores."""
        roles = [branch.role for branch in model.branches]
        scores = {}
        for w in ("test", "test_adv"):
            probabilities = [torch.softmax(o[w].float(), dim=1) for o in outputs]
            fused = torch.softmax(model.fuse([o[w] for o in outputs]).float(), dim=1)
            scores[w] = detection_scores(probabilities, roles, fused, model.detection_score(probabilities))
        metrics: dict[str, float | str] = dict.fromkeys(self.SCORE_KEYS, "n/a")
        for name, benign in scores["test"].items():
            benign, adversarial = benign.cpu(), scores["test_adv"][name].cpu()
            self.ctx.record(f"detection_score_clean:{name}", benign)
            self.ctx.record(f"detection_score_adv:{name}", adversarial)
            metrics[f"AUROC:{name}"] = auroc(benign, adversarial)
            metrics[f"accuracy:{name}"] = calibrated_accuracy(benign, adversarial, self.ctx.seed)[0]
        return metrics
