"""Pieces shared by the built-in attacks: their common options, the universal-δ base class, feature
losses, layer taps, data collection and the label-free pseudo-label probe (used by ``uap`` and ``art``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import AfterValidator, Field, model_validator
from torch import Tensor, nn

from zepad_bench.errors import UserError
from zepad_bench.interfaces import Attack
from zepad_bench.nn.adversarial_tuning import eval_mode
from zepad_bench.nn.batched import extract_features
from zepad_bench.params import Budget

# ---------------------------------------------------------------- options shared by the built-in attacks


class AttackOptions(Attack.Options):
    """The option every built-in attack takes."""

    clamp: bool = Field(
        True,
        description="keep x + δ in [0, 1] while fitting and in perturb (false: the authors' unclamped "
        "x + δ; ‖x_adv − x‖∞ ≤ eps holds either way)",
    )


class ProbeOptions(AttackOptions):
    """Options of attacks that fit the label-free :class:`PseudoLabelProbe` on attacker images."""

    clusters: int = Field(10, ge=2, description="k-means pseudo-classes of the label-free surrogate probe")
    probe_images_option: ClassVar[str] = "max_images"
    """The option that counts the images the probe is fitted on (at least ``clusters`` of them)."""

    @model_validator(mode="after")
    def _enough_images(self) -> ProbeOptions:
        images = getattr(self, self.probe_images_option)
        if images < self.clusters:
            raise ValueError(f"{self.probe_images_option} must be ≥ clusters ({images} < {self.clusters})")
        return self


class LayerOptions(AttackOptions):
    """Options of the attacks that ascend a loss of one layer's output by signed steps."""

    layer: str | None = Field(
        None,
        description="module whose output the loss reads (a name of the encoder's named_modules()); unset: "
        "the attack's default layer for the arch",
    )
    steps: int = Field(20000, ge=1, description="signed ascent steps (universal: one per attacker batch)")
    step_size: Budget = Field(2e-4, description="step α of each signed step, in pixels")


class UniversalLayerOptions(LayerOptions):
    """:class:`LayerOptions` of a universal δ fitted on batches of the attacker stream."""

    batch_size: int | None = Field(
        None, ge=1, description="attacker images per step (16: PAP's code); unset: the suite's batch size"
    )


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"must be [lo, hi] with lo ≤ hi (got {list(pair)})")
    return pair


Unit = Annotated[float, Field(ge=0, le=1)]
Interval = Annotated[tuple[Unit, Unit], AfterValidator(_ordered)]
"""A ``[lo, hi]`` pair with 0 ≤ lo ≤ hi ≤ 1."""


# ---------------------------------------------------------------- universal perturbations


def apply_delta(x: Tensor, delta: Tensor, clamp: bool = True) -> Tensor:
    """``clamp(x + δ, 0, 1)`` (or ``x + δ`` unclamped) for a universal ``delta`` (1×3×H×W) fitted at
    the size of ``x``."""
    if delta.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"the perturbation was fitted on {tuple(delta.shape[-2:])} images, got {tuple(x.shape[-2:])}"
        )
    x_adv = x + delta.to(x.device, x.dtype)
    return x_adv.clamp(0.0, 1.0) if clamp else x_adv


def random_delta(x: Tensor, eps: float, generator: torch.Generator, sign: bool = False) -> Tensor:
    """A 1×C×H×W perturbation for images like ``x``: uniform in [−eps, eps], or ±eps signs if ``sign``."""
    u = torch.rand((1, *x.shape[1:]), generator=generator) * 2 - 1
    return (eps * (torch.where(u < 0, -1.0, 1.0) if sign else u)).to(x.device)


class UniversalAttack(Attack):
    """An attack whose fitted state is one perturbation ``delta`` (‖δ‖∞ ≤ eps) added to every image.

    :meth:`add` applies δ as the ``clamp`` option says.
    """

    Options = AttackOptions

    def __init__(self, eps: float, **params: Any):
        super().__init__(eps, **params)
        self.delta: Tensor | None = None

    def add(self, x: Tensor, delta: Tensor) -> Tensor:
        """x + δ, clamped to [0, 1] when ``self.clamp``."""
        return apply_delta(x, delta, self.clamp)

    def fitted_delta(self) -> Tensor:
        if self.delta is None:
            raise RuntimeError(f"{self.name}: call fit() (or load_state_dict()) before perturb()")
        return self.delta

    def perturb(self, x: Tensor) -> Tensor:
        return self.add(x, self.fitted_delta())

    def state_dict(self) -> dict[str, Any]:
        return {"delta": self.fitted_delta().detach().cpu()}


# ---------------------------------------------------------------- encoders and data


@contextmanager
def frozen(encoders: Iterable[nn.Module]) -> Iterator[None]:
    """All ``encoders`` in eval mode and gradients enabled (even inside a caller's ``no_grad``) for the
    block; modes are restored after. Attacks take gradients with ``torch.autograd.grad`` w.r.t. their
    own variables only, so encoder weights never get ``.grad``."""
    with ExitStack() as stack:
        stack.enter_context(torch.enable_grad())
        for encoder in encoders:
            stack.enter_context(eval_mode(encoder))
        yield


def cycle(images: Iterable[Tensor]) -> Iterator[Tensor]:
    """Endless stream of batches, re-iterating ``images`` (``UnlabeledBatches`` reshuffles per pass)."""
    while True:
        empty = True
        for batch in images:
            empty = False
            yield batch
        if empty:
            raise UserError("the attacker's image stream is empty")


def take(images: Iterable[Tensor], count: int) -> Iterator[Tensor]:
    """Batches of :func:`cycle` until at least ``count`` images have been yielded."""
    seen = 0
    for batch in cycle(images):
        yield batch
        seen += len(batch)
        if seen >= count:
            return


def rebatch(batches: Iterable[Tensor], size: int | None) -> Iterator[Tensor]:
    """``batches`` regrouped into batches of exactly ``size`` images (``None``: unchanged), e.g. an
    author's batch size over the suite's stream; a last partial group is dropped."""
    if size is None:
        yield from batches
        return
    pending: list[Tensor] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += len(batch)
        while count >= size:
            joined = torch.cat(pending)
            yield joined[:size]
            pending, count = [joined[size:]], count - size


def collect(images: Iterable[Tensor], limit: int) -> tuple[Tensor, int]:
    """The first ``limit`` images of one pass (float, CPU) and the stream's batch size."""
    out: list[Tensor] = []
    count = 0
    for batch in images:
        out.append(batch[: limit - count].detach().float().cpu())
        count += len(out[-1])
        if count >= limit:
            break
    if not out:
        raise UserError("the attacker's image stream is empty")
    return torch.cat(out), len(out[0])


def cosine_distance(clean: Sequence[Tensor], encoders: Sequence[nn.Module], x_adv: Tensor) -> Tensor:
    """Σ over encoders of the batch mean of 1 − cos(f(x), f(x_adv)); ``clean`` are the f(x)."""
    return sum(
        (1 - F.cosine_similarity(encoder(x_adv), c, dim=1)).mean() for encoder, c in zip(encoders, clean)
    )


class _Stop(Exception):
    """Raised by :func:`layer_output`'s hook to skip the layers above the tapped one."""


def layer_output(encoder: nn.Module, module: nn.Module, x: Tensor) -> Tensor:
    """The output of ``module`` (a submodule of ``encoder``) on ``x``; the layers above it are skipped."""
    out: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        out.append(output)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        encoder(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return out[0]


def resolve_layer(encoder: nn.Module, layer: str | None, defaults: dict[str, str]) -> nn.Module:
    """The module named ``layer`` in ``encoder.named_modules()``, or the default for ``encoder.arch``."""
    arch = getattr(encoder, "arch", None)
    name = layer if layer is not None else defaults.get(str(arch))
    if name is None:
        raise UserError(f"no default layer for arch {arch!r}; set the attack's `layer` to a module name")
    modules = dict(encoder.named_modules())
    if name not in modules or name == "":
        known = ", ".join(n for n in modules if n)
        raise UserError(f"layer {name!r} is not a module of the {arch} encoder; known: {known}")
    return modules[name]


# ---------------------------------------------------------------- label-free surrogate classifier


class PseudoLabelProbe(nn.Module):
    """Surrogate classifier built from unlabeled data only: a linear probe on the concatenated,
    L2-normalised features of the encoders, trained on k-means pseudo-labels (:func:`fit_probe`).

    Stands in for the supervised head that UAP/UAPGD/ART's classifier attacks need; the reference
    notes' proposal (attacks.md §2.4). The argmax defines the "decision" that such attacks flip.
    """

    def __init__(self, encoders: Sequence[nn.Module], weight: Tensor, bias: Tensor):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        self.weight, self.bias = weight, bias

    def forward(self, x: Tensor) -> Tensor:
        return self.logits([encoder(x) for encoder in self.encoders])

    def logits(self, features: Sequence[Tensor]) -> Tensor:
        """The probe's logits from the encoders' raw features (one tensor per encoder, same order)."""
        joint = torch.cat([F.normalize(f, dim=1) for f in features], dim=1)
        return joint @ self.weight.to(joint).T + self.bias.to(joint)


def fit_probe(
    encoders: Sequence[nn.Module], images: Tensor, clusters: int, seed: int, batch_size: int, device: str
) -> tuple[Tensor, Tensor]:
    """``(weight, bias)`` of a multinomial logistic regression on k-means (``clusters``) pseudo-labels."""
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression

    if len(images) < clusters:
        raise UserError(f"k-means needs at least {clusters} attacker images, got {len(images)}")
    features = torch.cat(
        [F.normalize(extract_features(e, images, batch_size, device), dim=1) for e in encoders], dim=1
    ).numpy()
    labels = KMeans(n_clusters=clusters, n_init=10, random_state=seed).fit_predict(features)
    if len(set(labels.tolist())) < 2:
        raise UserError("k-means found a single cluster in the attacker's features (constant features?)")
    probe = LogisticRegression(max_iter=1000).fit(features, labels)
    weight, bias = torch.tensor(probe.coef_, dtype=torch.float32), torch.tensor(probe.intercept_).float()
    if len(probe.classes_) == 2:  # sklearn keeps one row for two classes: logits ±z/2 give the same softmax
        weight, bias = torch.cat([-weight, weight]) / 2, torch.cat([-bias, bias]) / 2
    return weight, bias
