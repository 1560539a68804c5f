"""The public plugin contract: base classes of attacks, defenses, encoders, datasets and tasks.

Kept free of a module-level ``torch`` import so that ``zepad-bench --help`` starts fast.
See ``docs/plugins.md`` for the contract in prose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from zepad_bench.context import RunContext

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder
    from zepad_bench.pipeline import AdaptiveTarget


class Plugin:
    """Common base: ``name`` is the key in suites; ``__init__`` takes the suite's params.

    ``__init__`` must be cheap (no tensors, no I/O): the suite validator instantiates every
    plugin to check its params before any work starts; raise ``ValueError`` for a bad value.
    The runner sets ``self.ctx`` (device, seed, progress) before the plugin does work.
    """

    name: ClassVar[str]
    ctx: RunContext
    path_params: ClassVar[tuple[str, ...]] = ()
    """Params that are file or folder paths: a relative path written in a suite resolves against
    the suite file's folder (so a suite runs the same from any working directory)."""
    param_help: ClassVar[dict[str, str]] = {}
    """One line of help per parameter; names, types and defaults come from ``__init__`` (see
    :mod:`zepad_bench.params`), allowed values from ``Literal[...]`` annotations or ``param_choices``."""
    param_choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    extra_params: ClassVar[str | None] = None
    """What ``**extra`` keyword parameters of ``__init__`` mean; ``None``: unknown names are rejected."""

    def __init__(self, **params: Any):
        if params:
            raise TypeError(f"unexpected parameters: {', '.join(sorted(params))}")
        self.ctx = RunContext()

    def __init_subclass__(cls, **kwargs: Any):
        """Every plugin's ``__init__`` checks its parameters against the declaration first."""
        super().__init_subclass__(**kwargs)
        if "__init__" in vars(cls):
            from zepad_bench.params import checked_init

            cls.__init__ = checked_init(vars(cls)["__init__"])  # type: ignore[method-assign]

    def check(self) -> None:
        """Cheap pre-flight checks run at suite validation (paths exist, …); raise ``UserError``."""

    def fingerprint(self) -> str:
        """What the params do not say about the output (e.g. a file's identity); part of cache keys."""
        return ""

    def code_dependencies(self) -> list[type]:
        """Classes of other plugins this one runs itself (e.g. ZePAD's generator attack): their code
        enters this plugin's cache keys, so editing them recomputes what this plugin made."""
        return []


TRANSFER_SCENARIOS = ("semi-black-box", "white-box")
SCENARIOS = (*TRANSFER_SCENARIOS, "defense-aware", "adaptive")
"""Threat models. Transfer: fitted on public encoders (the victim; + its auxiliaries in white-box).
``defense-aware``: fitted on the defended model's encoders (every branch) and unlabeled images, still
no head and no label. ``adaptive``: per sample on the task's whole differentiable pipeline (branch
encoders → the task's own decision, e.g. heads → the defense's fusion) with the test labels, as in
white-box evaluation (:class:`zepad_bench.pipeline.AdaptiveTarget`)."""


class Attack(Plugin):
    """A downstream-agnostic attack: fitted on public encoders and unlabeled images only."""

    scenarios: ClassVar[tuple[str, ...]] = (*TRANSFER_SCENARIOS, "defense-aware")
    """The scenarios this attack supports (the suite validator rejects any other pairing). Any attack
    fitted by :meth:`fit` works in ``defense-aware`` (it just gets the defended encoders); an attack
    that lists ``"adaptive"`` implements :meth:`perturb_adaptive` (or the older :meth:`perturb_pipeline`)."""

    role: ClassVar[str] = "attack"
    """``"attack"``, or ``"control"`` for a reference that is not an attack (equal-budget noise):
    reports compare every attack with the suite's controls."""
    clamp: bool = True
    """Whether ``perturb`` keeps images in [0, 1] (our protocol). The runner checks every attacked
    batch for ``‖x_adv − x‖∞ ≤ eps`` and, when ``clamp`` is true, for values in [0, 1]."""

    def __init__(self, eps: float, **params: Any):
        super().__init__(**params)
        if not 0 < float(eps) <= 1:
            raise ValueError(f"eps must be in (0, 1] pixel units, got {eps}")
        self.eps = float(eps)
        self.encoders: list[Encoder] = []

    def fit(self, encoders: list[Encoder], images: Iterable[Tensor]) -> None:
        """Learn from public ``encoders`` (1 semi-black-box, ≥2 white-box) and unlabeled batches."""
        self.encoders = list(encoders)

    def perturb(self, x: Tensor) -> Tensor:
        """Return ``x_adv`` in [0, 1] with ``‖x_adv − x‖∞ ≤ eps``."""
        raise NotImplementedError

    samples: int = 0
    """``adaptive`` scenario: attack a seeded random subset of this many test images (0: all of them);
    the cell then reports ``adaptive_n`` and a 95 % interval of its robust accuracy."""
    recheck_samples: int = 0
    """``adaptive`` scenario: size of the seeded subset of attacked images that :meth:`convergence_check`
    attacks again (0: no re-check)."""

    def perturb_adaptive(self, target: AdaptiveTarget, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """``adaptive`` scenario: attacked images against a task's own decision ``target`` (differentiable
        scores and the exact scored decision) given the true labels ``y``; same budget rules as
        :meth:`perturb`. Returns the images after each stage of the attack, in order (an ensemble: one
        entry per member, each the per-sample worst case so far; the last entry is the result), so
        robust accuracy can be stored after every member. Called after :meth:`fit` per test batch.
        Default: the older form, :meth:`perturb_pipeline` on the target's scores."""
        return {self.name: self.perturb_pipeline(target.as_module(), x, y)}

    def convergence_check(self) -> Attack | None:
        """A stronger copy of this attack's last stage (e.g. twice the iterations and restarts), run
        again on a seeded subset of the attacked images to show that the attack has converged;
        ``None``: no re-check."""
        return None

    def perturb_pipeline(self, pipeline: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Older ``adaptive`` form: ``x_adv`` against ``pipeline`` (a differentiable module, images in
        [0, 1] → the target's scores, eval mode, frozen) given the true labels ``y``."""
        raise NotImplementedError(f"{self.name} does not support the adaptive scenario")

    def state_dict(self) -> dict[str, Any]:
        """Fitted state to cache; by default every tensor attribute (e.g. a universal ``delta``)."""
        import torch

        return {k: v.detach().cpu() for k, v in vars(self).items() if isinstance(v, torch.Tensor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the runner has set ``self.encoders`` and ``self.ctx`` first."""
        for key, value in state.items():
            setattr(self, key, value.to(self.ctx.device) if hasattr(value, "to") else value)


@dataclass
class Branch:
    """One branch of a defended model: an encoder (image → features) and optionally its tuned head."""

    name: str
    role: str  # "victim", "mpae", "bmp", "tuned", ...
    encoder: Encoder
    head: nn.Module | None = None
    head_data: str | None = None  # dataset id the joint head was tuned on


@dataclass
class DefendedModel:
    """What a defense returns: branches plus the defense's fusion rule and optional detector."""

    branches: list[Branch]
    defense: Defense
    info: dict[str, Any] = field(default_factory=dict)

    def fuse(self, logits: list[Tensor]) -> Tensor:
        return self.defense.fuse(logits)

    def fused_scores(self, logits: list[Tensor]) -> Tensor:
        return self.defense.fused_scores(logits)

    def detection_score(self, probabilities: list[Tensor]) -> Tensor | None:
        return self.defense.detection_score(probabilities)

    @property
    def detection_threshold(self) -> float | None:
        return self.defense.detection_threshold


class Defense(Plugin):
    """A defense: tuned once on the defender's labeled data D_f, reused by every task."""

    role: ClassVar[str] = "defense"
    """``"defense"``, or ``"baseline"`` for the undefended reference that reports compare with."""

    detection_threshold: float | None = None
    inference_params: ClassVar[tuple[str, ...]] = ()
    """Params that act only at inference (fusion, detection): left out of the tuning's cache key."""

    def fit(self, victim: Encoder, auxiliaries: list[Encoder], data: LabeledImages) -> DefendedModel:
        raise NotImplementedError

    def fuse(self, logits: list[Tensor]) -> Tensor:
        """Fuse per-branch class logits (N×C each); default: the mean (identity for one branch)."""
        import torch

        return torch.stack(logits).mean(0)

    def fused_scores(self, logits: list[Tensor]) -> Tensor:
        """The fused decision as class scores (N×C): its argmax is the fused prediction (what tasks
        score) and its softmax the fused distribution — log-probabilities for a fusion of probabilities,
        else the fused logits; adaptive attacks differentiate it. Default: :meth:`fuse` (a fusion of
        logits); a defense whose ``fuse`` returns probabilities returns their log here, computed in log
        space (no clamp: a clamped log has zero gradient once the branches are confident)."""
        return self.fuse(logits)

    def detection_score(self, probabilities: list[Tensor]) -> Tensor | None:
        """Per-sample DAE score from per-branch softmax outputs; ``None`` if the defense has no detector."""
        return None


class EncoderSource(Plugin):
    """Builds a public pre-trained encoder (e.g. loads a checkpoint or pretrains one)."""

    def build(self, data: LabeledImages | None) -> Encoder:
        """Return the encoder; ``data`` is the suite's ``data`` dataset (train split) when given."""
        raise NotImplementedError


class DatasetSource(Plugin):
    """Loads a labeled image dataset as uint8 NCHW tensors at a given size."""

    def load(self, split: str, image_size: int, seed: int) -> LabeledImages:
        """``split`` is ``"train"`` or ``"test"``; splits made here are deterministic in ``seed``."""
        raise NotImplementedError


@dataclass
class TaskData:
    """Inputs of one task run: labeled splits and the attacked test images (same order as ``test``)."""

    train: LabeledImages
    test: LabeledImages
    test_adv: Tensor
    attack: Attack
    feature_fn: Callable[[int, str], Tensor] | None = None
    head_fn: Callable[[int, dict[str, Any]], nn.Module] | None = None

    def features(self, model: DefendedModel, branch: int, which: str) -> Tensor:
        """Features (CPU) of branch ``branch`` on ``which`` ∈ {"train", "test", "test_adv"}.

        Served from the runner's feature cache when available, so the encoder never runs twice
        on the same images across tasks.
        """
        if self.feature_fn is not None:
            return self.feature_fn(branch, which)
        from zepad_bench.nn.encoder import extract_features

        images = {"train": self.train.images, "test": self.test.images, "test_adv": self.test_adv}[which]
        encoder = model.branches[branch].encoder
        return extract_features(encoder, images, device=str(device_of(encoder)))

    def head(self, model: DefendedModel, branch: int, **train: Any) -> nn.Module:
        """A paper MLP head trained on branch ``branch``'s frozen train features (``train``: the
        keyword arguments of :func:`zepad_bench.nn.heads.train_head`, seed included).

        Served from the runner's head cache when available, so tasks sharing a dataset (e.g.
        classification and detection) train each head once.
        """
        if self.head_fn is not None:
            return self.head_fn(branch, train)
        from zepad_bench.nn.heads import train_head

        return train_head(
            self.features(model, branch, "train"), self.train.labels, self.train.num_classes, **train
        )


class Task(Plugin):
    """A downstream task evaluated on a defended model, clean and attacked."""

    report_metrics: ClassVar[tuple[str, ...]] = ("BA", "RA", "ASR")
    """The metrics the leaderboard's section for this task shows (in this order); every metric
    the task returns is kept in the JSON. ``BA`` and names ending in ``_clean`` are clean metrics
    (one column per defense); every other one gets a column per attack."""

    def run(self, model: DefendedModel, data: TaskData) -> dict[str, float | str]:
        """Return metrics (percentages for accuracies/rates)."""
        raise NotImplementedError

    def adaptive_target(self, model: DefendedModel, data: TaskData) -> AdaptiveTarget | None:
        """How this task's own decision is attacked in the ``adaptive`` scenario: the differentiable
        scores an attacker climbs and the exact decision the task scores with (``data.test_adv`` holds
        the clean test images here). ``None`` (the default): the task has no adaptive attack and its
        adaptive cells report ``"n/a"``."""
        return None


def device_of(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (CPU if it has none)."""
    import torch

    for p in module.parameters():
        return p.device
    return torch.device("cpu")
