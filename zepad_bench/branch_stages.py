"""Features and heads of a defended model's branches, served to a task as stages (``TaskData``'s
``feature_fn`` and ``head_fn``): each computed once per key the graph derives, so tasks and cells on
the same images share them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zepad_bench.data.images import LabeledImages
from zepad_bench.interfaces import DefendedModel
from zepad_bench.nn.batched import extract_features_together, groups_by_architecture
from zepad_bench.nn.codec import head_from_state, head_state
from zepad_bench.nn.heads import train_head
from zepad_bench.stage_cache import StageCache, as_is
from zepad_bench.stages import StageGraph
from zepad_bench.suite import Cell


class BranchStages:
    """The features and heads of ``model``'s branches for ``cell``, on its task's ``train`` and ``test``
    splits and on the attacked test images (``test_adv``, set once they exist). When an adaptive attack
    attacked a subset of the test split, ``rows`` (set with ``test_adv``) are its rows: ``"test"``
    features are then those rows of the whole split's (which every cell on the split shares)."""

    def __init__(
        self,
        stages: StageCache,
        graph: StageGraph,
        cell: Cell,
        model: DefendedModel,
        train: LabeledImages,
        test: LabeledImages,
        batch_size: int,
        device: str,
        track: Callable[..., Any],
    ):
        self.stages, self.graph, self.cell, self.model = stages, graph, cell, model
        self.train, self.test = train, test
        self.test_adv: torch.Tensor | None = None
        self.rows: torch.Tensor | None = None
        self.batch_size, self.device, self.track = batch_size, device, track
        self._together: dict[tuple[int, str], torch.Tensor] = {}

    def features(self, branch: int, which: str) -> torch.Tensor:
        """Features (CPU) of branch ``branch`` on ``which`` ∈ {"train", "test", "test_adv"}."""
        if which == "test" and self.rows is not None:
            return self._features(branch, which)[self.rows]
        return self._features(branch, which)

    def _features(self, branch: int, which: str) -> torch.Tensor:
        node = self.graph.features(self.cell, self.model.branches[branch].name, which)
        tensor = {"train": self.train.images, "test": self.test.images, "test_adv": self.test_adv}[which]

        def compute() -> torch.Tensor:
            # branches of one architecture are evaluated together (nn.batched); the others' features
            # wait in `_together` until their own (cached) stage asks for them
            if (branch, which) not in self._together:
                encoders = [b.encoder for b in self.model.branches]
                group = next(g for g in groups_by_architecture(encoders) if branch in g)
                feats = extract_features_together(
                    [encoders[i] for i in group], tensor, self.batch_size, self.device
                )
                self._together.update({(i, which): f for i, f in zip(group, feats)})
            return self._together.pop((branch, which))

        return self.stages.get(node, self.cell.seed, compute, as_is, as_is)

    def head(self, branch: int, params: dict[str, Any]) -> nn.Module:
        """A head trained on branch ``branch``'s frozen train features with :func:`train_head`
        settings ``params`` (seed included; the runner's device)."""
        settings = {k: v for k, v in params.items() if k != "device"}
        node = self.graph.head(self.cell, self.model.branches[branch].name, settings)

        def compute() -> nn.Module:
            return train_head(
                self.features(branch, "train"),
                self.train.labels,
                self.train.num_classes,
                track=self.track,
                **settings,
                device=self.device,
            )

        head = self.stages.get(node, int(settings.get("seed", 0)), compute, head_state, head_from_state)
        return head.to(self.device)
