"""Downstream classification: the paper's MLP head per frozen branch, fused by the defense."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from zepad_bench import DefendedModel, Metric, Task, TaskData
from zepad_bench.adaptive_target import AdaptiveTarget
from zepad_bench.interfaces import CORE_METRICS
from zepad_bench.metrics import accuracy, attack_success_rate, max_confidence, top_class_share
from zepad_bench.nn.heads import predict_logits
from zepad_bench.pipeline import classification_target, fused_prediction, task_heads


def branch_logits(
    task: Classification, model: DefendedModel, data: TaskData, which: tuple[str, ...]
) -> tuple[list[dict[str, torch.Tensor]], list[str]]:
    """Per branch: the logits of the task's head (:meth:`Classification.branch_heads`) on each split in
    ``which``; and the head kinds."""
    heads, head_kinds = task.branch_heads(model, data)
    outputs = [
        {w: predict_logits(h, data.features(model, i, w), device=task.ctx.device) for w in which}
        for i, h in enumerate(heads)
    ]
    return outputs, head_kinds


CLASSIFICATION_METRICS = (
    Metric(
        "head",
        "the classifier on the defense's encoder(s): `joint` = the head tuned with the encoder on D_f; "
        "`retrained` = heads trained on the task's train split over frozen encoder features",
        unit="",
        clean=True,
    ),
    Metric(
        "top_class_share",
        "share of the clean test images given the most predicted class (near 100: a collapsed prediction)",
        higher_is_better=False,
        clean=True,
        report=False,
    ),
    Metric(
        "top_class_share_adv",
        "share of the attacked test images given the most predicted class",
        higher_is_better=False,
        report=False,
    ),
    Metric(
        "BA:<branch>",
        "accuracy of branch <branch>'s own head on the clean test images",
        clean=True,
        report=False,
    ),
    Metric("RA:<branch>", "accuracy of branch <branch>'s own head on the attacked test images", report=False),
    Metric(
        "conf_clean:<branch>",
        "mean max-softmax confidence of branch <branch> on the clean test images",
        unit="",
        clean=True,
        report=False,
    ),
    Metric(
        "conf_adv:<branch>",
        "mean max-softmax confidence of branch <branch> on the attacked test images",
        unit="",
        report=False,
    ),
    Metric(
        "head:<branch>",
        "the head branch <branch> used (`joint` or `retrained`)",
        unit="",
        clean=True,
        report=False,
    ),
)
"""What :class:`Classification` returns besides BA, RA and ASR."""


class Classification(Task):
    """BA, RA and ASR of the fused per-branch MLP heads (ZePAD Eq. 1, Table 7; docs/architecture.md).

    Also per branch: its own BA/RA, mean confidences and head kind ("joint": the head tuned with
    the encoder on this dataset, used with ``head="auto"``; "retrained": a new head on the frozen
    encoder, always with ``head="retrained"``); and ``top_class_share[_adv]``, the share of the most
    predicted class, which flags a collapsed (one-class) prediction.
    """

    name = "classification"

    class Options(Task.Options):
        epochs: int = Field(20, ge=1, description="training epochs of each branch's MLP head")
        lr: float = Field(5e-3, gt=0, description="learning rate of the heads")
        batch_size: int = Field(256, ge=1, description="batch size of the heads' training")
        head: Literal["auto", "retrained"] = Field(
            "auto",
            description='"auto": a branch head tuned with its encoder on this dataset is used as is; '
            '"retrained": always a new head on the frozen encoder',
        )

    def metrics(self) -> list[Metric]:
        return [*CORE_METRICS, *CLASSIFICATION_METRICS]

    def branch_heads(self, model: DefendedModel, data: TaskData) -> tuple[list[torch.nn.Module], list[str]]:
        """Per branch: the head :meth:`run` scores with (a jointly tuned head when it was tuned on this
        task's dataset and ``head="auto"``, else a new head on frozen train features) and its kind."""
        return task_heads(
            model,
            data,
            self.ctx.seed,
            self.ctx.device,
            self.head,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
        )

    def adaptive_target(self, model: DefendedModel, data: TaskData) -> AdaptiveTarget:
        """The fused class scores of :meth:`heads` (:meth:`Defense.fused_scores`), judged by their argmax:
        the prediction :meth:`run` scores (``RA`` = 100 − the attacker's success rate)."""
        return classification_target(model, self.branch_heads(model, data)[0], data.train.num_classes)

    def run(self, model: DefendedModel, data: TaskData) -> dict[str, float | str]:
        outputs, head_kinds = branch_logits(self, model, data, ("test", "test_adv"))
        clean = fused_prediction(model, [o["test"] for o in outputs])[1]
        adv = fused_prediction(model, [o["test_adv"] for o in outputs])[1]
        labels = data.test.labels
        metrics: dict[str, float | str] = {
            "BA": accuracy(clean, labels),
            "RA": accuracy(adv, labels),
            "ASR": attack_success_rate(clean, adv),
            "head": "joint" if "joint" in head_kinds else "retrained",
            "top_class_share": top_class_share(clean),
            "top_class_share_adv": top_class_share(adv),
        }
        for branch, out, kind in zip(model.branches, outputs, head_kinds):
            metrics[f"BA:{branch.name}"] = accuracy(out["test"].argmax(1), labels)
            metrics[f"RA:{branch.name}"] = accuracy(out["test_adv"].argmax(1), labels)
            conf_clean, conf_adv = max_confidence(out["test"]), max_confidence(out["test_adv"])
            metrics[f"conf_clean:{branch.name}"] = conf_clean.mean().item()
            metrics[f"conf_adv:{branch.name}"] = conf_adv.mean().item()
            metrics[f"head:{branch.name}"] = kind
            self.ctx.record(f"confidence_clean:{branch.role}:{branch.name}", conf_clean)
            self.ctx.record(f"confidence_adv:{branch.role}:{branch.name}", conf_adv)
        return metrics
