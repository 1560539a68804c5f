"""Pieces shared by the built-in attacks: the universal-δ base class, parameter checks, feature
losses, layer taps, data collection and the label-free pseudo-label probe (used by ``uap`` and ``art``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zepad_bench.errors import UserError
from zepad_bench.interfaces import Attack
from zepad_bench.nn.adversarial_tuning import eval_mode
from zepad_bench.nn.batched import extract_features

# ---------------------------------------------------------------- parameter validation


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` as an int ≥ ``low``; ``ValueError`` naming the parameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return value


def check_float(
    name: str, value: Any, low: float = 0.0, high: float = math.inf, strict: bool = True
) -> float:
    """``value`` as a float in (low, high] (``strict``) or [low, high]; ``ValueError`` otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low) and value <= high
    if not ok:
        interval = f"{'(' if strict else '['}{low}, {high}]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def check_range(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> tuple[float, float]:
    """A ``[lo, hi]`` pair with ``low ≤ lo ≤ hi ≤ high``."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair [lo, hi], got {value!r}")
    lo, hi = (check_float(name, v, low, high, strict=False) for v in value)
    if lo > hi:
        raise ValueError(f"{name} must have lo ≤ hi, got {value!r}")
    return lo, hi


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def check_layer(layer: Any) -> str | None:
    """A module name (checked against the encoder at fit), or ``None`` for the arch's default."""
    if layer is not None and not isinstance(layer, str):
        raise ValueError(f"layer must be a module name (string), got {layer!r}")
    return layer


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


def set_clamp(attack: Attack, clamp: Any) -> None:
    """Validate and set the ``clamp`` parameter every built-in attack takes.

    ``clamp=true`` (default, our protocol) keeps x + δ in [0, 1] in every forward pass, while fitting
    and in ``perturb``; ``clamp=false`` is the authors' evaluation (the PAP, AdvEncoder, UAPGD and
    SSP reference codes never clamp): images may leave [0, 1], ``‖x_adv − x‖∞ ≤ eps`` still holds.
    """
    attack.clamp = check_bool("clamp", clamp)


class UniversalAttack(Attack):
    """An attack whose fitted state is one perturbation ``delta`` (‖δ‖∞ ≤ eps) added to every image.

    Subclasses pass their ``clamp`` parameter on; :meth:`add` applies δ as it says.
    """

    def __init__(self, eps: float, *, clamp: bool = True, **params: Any):
        super().__init__(eps, **params)
        set_clamp(self, clamp)
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
