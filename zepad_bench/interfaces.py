"""The public plugin contract: base classes of attacks, defenses, encoders, datasets and tasks.

Kept free of a module-level ``torch`` import so that ``zepad-bench --help`` starts fast.
See ``docs/plugins.md`` for the contract in prose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from zepad_bench import params as _params
from zepad_bench.context import RunContext

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from zepad_bench.adaptive_target import AdaptiveTarget
    from zepad_bench.data.images import LabeledImages
    from zepad_bench.nn.encoder import Encoder


class Plugin:
    """Common base: ``name`` is the key in suites; the suite table's params are its :class:`Options`.

    Construction validates the params against ``Options`` (one :class:`~zepad_bench.params.ParamError`
    line naming the rule broken), then hands them to the plugin as ``self.options`` (frozen) and as
    attributes of the same names. Construction must be cheap (no tensors, no I/O): the suite
    validator constructs every plugin before any work starts. The runner sets ``self.ctx`` (device,
    seed, progress) before the plugin does work.
    """

    class Options(_params.Options):
        """A plugin's parameters: subclass it in the plugin class (``class Options(Attack.Options)``)."""

    name: ClassVar[str]
    description: ClassVar[str | None] = None
    """One line for ``zepad-bench list`` (read from the class itself); default: the docstring's first
    sentence, markup removed."""
    options: Options
    ctx: RunContext
    runner_args: ClassVar[tuple[str, ...]] = ()
    """Constructor arguments the runner passes positionally, not suite parameters (an attack's ``eps``)."""
    path_params: ClassVar[tuple[str, ...]] = ()
    """Params that are file or folder paths: a relative path written in a suite resolves against
    the suite file's folder (so a suite runs the same from any working directory)."""
    param_help: ClassVar[dict[str, str]] = {}
    param_choices: ClassVar[dict[str, tuple[Any, ...]]] = {}
    extra_params: ClassVar[str | None] = None
    """The old form of declaring parameters (still supported): names, types and defaults in
    ``__init__``'s signature, one line of help per name in ``param_help``, allowed values in
    ``Literal[...]`` annotations or ``param_choices``, and what ``**extra`` names mean in
    ``extra_params`` (see :func:`zepad_bench.params.options_model`)."""

    def __init__(self, **params: Any):
        self.options = _params.parse(type(self).Options, params)
        for name in type(self.options).model_fields:
            setattr(self, name, getattr(self.options, name))
        self.ctx = RunContext()

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

    runner_args: ClassVar[tuple[str, ...]] = ("eps",)

    def __init__(self, eps: float, **params: Any):
        super().__init__(**params)
        try:
            self.eps = _params.parse_budget(eps)
        except ValueError as exc:
            raise _params.ParamError(f"eps {exc}") from None
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
        from zepad_bench.nn.batched import extract_features

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


@dataclass(frozen=True)
class Metric:
    """What one metric a task returns means; reports render every column and glossary line from these
    (stored with each result, so a board needs no plugin to explain itself).

    ``name`` may hold a placeholder in angle brackets for a family of metrics (``"RA:<branch>"``
    describes ``RA:victim``, ``RA:zepad-bmp``, …). ``clean``: measured on clean images only (one
    column per defense, not one per attack). ``report``: shown as a table on the board (every
    metric is kept in the data and explained in the glossary either way). ``unit``: ``"%"``, another
    unit, or ``""`` for a plain number or a label (a text value such as a head kind).
    """

    name: str
    definition: str
    higher_is_better: bool = True
    unit: str = "%"
    clean: bool = False
    report: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


CORE_METRICS = (
    Metric("BA", "benign accuracy: accuracy on the clean test images", clean=True),
    Metric("RA", "robust accuracy: accuracy on the attacked test images"),
    Metric(
        "ASR",
        "attack success rate: share of *all* test images whose prediction changes under attack "
        "(labels unused, the paper's definition)",
        higher_is_better=False,
    ),
)
"""BA, RA and ASR (design §1), as every task that reports them means them."""

ADAPTIVE_METRICS = (
    Metric(
        "grad_zero_frac",
        "share of the clean attacked images whose input gradient of the task's adaptive target (the "
        "cross-entropy of the outcomes that leave a sample unfooled) is exactly zero (gradient masking)",
        higher_is_better=False,
        report=False,
    ),
    Metric(
        "grad_nan_frac",
        "share of the clean attacked images whose input gradient of the task's adaptive target is not finite",
        higher_is_better=False,
        report=False,
    ),
    Metric(
        "grad_zero_frac:attacked",
        "as grad_zero_frac, on the images after each ensemble member (the largest share over the members)",
        higher_is_better=False,
        report=False,
    ),
    Metric(
        "grad_nan_frac:attacked",
        "as grad_nan_frac, on the images after each ensemble member (the largest share over the members)",
        higher_is_better=False,
        report=False,
    ),
    Metric(
        "grad_norm", "mean L1 norm of the target's input gradient on the clean images", unit="", report=False
    ),
    Metric(
        "RA_after:<member>",
        "share of the attacked images the task's own decision still gets right after the ensemble's members "
        "up to and including <member> (cumulative per-sample worst case, AutoAttack's log; detection: "
        "classified right or flagged)",
        report=False,
    ),
    Metric(
        "RA_recheck",
        "robust accuracy over the adaptive_n attacked images when the convergence re-check (the last member "
        "again with twice the iterations and restarts) also attacks a fixed seeded subset of recheck_n of "
        "them; flagged not-converged when it takes more than 1 point on that subset",
        report=False,
    ),
    Metric("recheck_n", "attacked images in the convergence re-check's subset", unit="images", report=False),
    Metric(
        "adaptive_n",
        "test images the adaptive attack ran on (a seeded random subset when fewer than the test split)",
        unit="images",
        report=False,
    ),
    Metric("RA_ci95_low", "lower end of RA's 95 % Wilson interval when a subset is attacked", report=False),
    Metric("RA_ci95_high", "upper end of RA's 95 % Wilson interval when a subset is attacked", report=False),
)
"""What the runner and the adaptive attack add to the metrics of an ``adaptive`` cell."""

UNDESCRIBED = "not described by its task (old `report_metrics` form)"


class Task(Plugin):
    """A downstream task evaluated on a defended model, clean and attacked."""

    report_metrics: ClassVar[tuple[str, ...]] = ("BA", "RA", "ASR")
    """Old form, kept working: the names :meth:`metrics` describes when a task does not override it."""

    def metrics(self) -> list[Metric]:
        """Every metric :meth:`run` returns, described (a method: names may depend on parameters, e.g.
        retrieval's ``k``). Default, for tasks written before this method: ``report_metrics``, with BA,
        RA and ASR described as :data:`CORE_METRICS` and any other name shown undescribed (clean when
        it is ``BA`` or ends in ``_clean``, as before)."""
        core = {m.name: m for m in CORE_METRICS}
        return [
            core.get(n) or Metric(n, UNDESCRIBED, clean=n.endswith("_clean")) for n in self.report_metrics
        ]

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
