"""Downstream classification: the paper's MLP head per frozen branch, fused by the defense."""

from __future__ import annotations

import torch

from zepad_bench import DefendedModel, Task, TaskData
from zepad_bench.metrics import accuracy, attack_success_rate, max_confidence, top_class_share
from zepad_bench.nn.heads import predict_logits
from zepad_bench.pipeline import AdaptiveTarget, classification_target, fused_prediction, task_heads


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


class Classification(Task):
    """BA, RA and ASR of the fused per-branch MLP heads (ZePAD Eq. 1, Table 7; docs/architecture.md).

    Also per branch: its own BA/RA, mean confidences and head kind ("joint": the head tuned with
    the encoder on this dataset, used with ``head="auto"``; "retrained": a new head on the frozen
    encoder, always with ``head="retrained"``); and ``top_class_share[_adv]``, the share of the most
    predicted class, which flags a collapsed (one-class) prediction.
    """

    name = "classification"

    def __init__(self, epochs: int = 20, lr: float = 5e-3, batch_size: int = 256, head: str = "auto"):
        super().__init__()
        if epochs < 1 or lr <= 0 or batch_size < 1:
            raise ValueError("epochs, lr and batch_size must be positive")
        if head not in ("auto", "retrained"):
            raise ValueError(f"head must be 'auto' or 'retrained', got {head!r}")
        self.epochs, self.lr, self.batch_size, self.head = epochs, lr, batch_size, head

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
