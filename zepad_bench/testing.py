"""Conformance kit: the plugin contract's property tests, runnable against any registered plugin.

For plugin authors (e.g. in the package's own pytest suite)::

    from zepad_bench.testing import check_plugin

    def test_my_attack_conforms():
        assert check_plugin("attacks", "my-attack", params={"steps": 2}).ok

``zepad-bench check-plugin NAME`` runs the same checks and prints a readable report. Everything
runs on tiny seeded data (random-init small encoders, 16×16 images) on the CPU, in seconds.

Attacks: budget ‖x_adv − x‖∞ ≤ eps and values in [0, 1] (when ``clamp``); a label-free fit (only
unlabeled tensors, public encoders left untouched); the same seed gives the same perturbation;
a non-zero effect; the fitted state survives the cache (``state_dict`` → ``torch.save`` →
weights-only ``torch.load`` → ``load_state_dict`` → the same perturbation).
Defenses: ``fit`` returns branches whose encoders and heads survive the cache; branch heads map
features to one logit per class; ``fuse`` returns N×C; ``detection_score`` is ``None`` or N scores.
Backbones: the registered builder's module maps images to ``out_dim`` features, rebuilds from
its cached state, and passes gradients to its input.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from zepad_bench.adaptive_target import AdaptiveTarget
from zepad_bench.context import RunContext
from zepad_bench.data.images import LabeledImages
from zepad_bench.nn.backbones import plugin_backbones
from zepad_bench.nn.codec import head_from_state, head_state
from zepad_bench.nn.encoder import Encoder
from zepad_bench.params import build
from zepad_bench.registry import Registry, load_registry
from zepad_bench.seeding import seed_everything

SIZE = 16
EPS = 8 / 255


@dataclass
class Report:
    """The outcome of each named check (``ok`` when all passed)."""

    plugin: str
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(passed for _, passed, _ in self.results)

    def record(self, name: str, run: Callable[[], str | None]) -> None:
        try:
            self.results.append((name, True, run() or ""))
        except AssertionError as exc:
            self.results.append((name, False, str(exc)))
        except Exception as exc:  # a crash is a failed check, reported in one line
            self.results.append((name, False, f"{type(exc).__name__}: {' '.join(str(exc).split())}"))

    def lines(self) -> list[str]:
        width = max((len(n) for n, _, _ in self.results), default=0)
        out = [
            f"{'PASS' if ok else 'FAIL'}  {n:<{width}}  {detail}".rstrip() for n, ok, detail in self.results
        ]
        failed = sum(not ok for _, ok, _ in self.results)
        out.append(f"{self.plugin}: {len(self.results) - failed} passed, {failed} failed")
        return out


# ---------------------------------------------------------------- tiny data


def tiny_images(n: int = 32, seed: int = 0, size: int = SIZE) -> Tensor:
    """Smooth seeded float images in [0, 1] (N×3×size×size): blurred noise, so features vary."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def tiny_labeled(n: int = 48, classes: int = 3, seed: int = 0) -> LabeledImages:
    """Labeled uint8 images whose class sets the mean colour (learnable by a head)."""
    labels = torch.arange(n) % classes
    x = tiny_images(n, seed) * 0.5 + torch.eye(3)[labels % 3][:, :, None, None] * 0.5
    return LabeledImages((x * 255).round().to(torch.uint8), labels, [f"c{i}" for i in range(classes)], "tiny")


def tiny_encoders(count: int = 2, arch: str = "small-cnn", arch_params: dict | None = None) -> list[Encoder]:
    torch.manual_seed(0)
    params = {"width": 4} if arch_params is None and arch == "small-cnn" else dict(arch_params or {})
    return [Encoder(arch, params).eval() for _ in range(count)]


class Unlabeled:
    """A re-iterable stream of unlabeled float batches that counts its passes."""

    def __init__(self, images: Tensor, batch_size: int = 16):
        self.images, self.batch_size, self.passes = images, batch_size, 0

    def __iter__(self) -> Iterator[Tensor]:
        self.passes += 1
        for start in range(0, len(self.images), self.batch_size):
            yield self.images[start : start + self.batch_size]


# ---------------------------------------------------------------- attacks


def _median_split(encoder: nn.Module, reference: Tensor) -> AdaptiveTarget:
    """A two-class decision for adaptive attacks: the sign of an encoder's first feature around its
    median on ``reference`` images, so some images lie close to the decision boundary."""
    with torch.no_grad():
        median = encoder(reference)[:, 0].median()

    def decide(features: list[Tensor]) -> tuple[Tensor, Tensor]:
        z = features[0][:, 0] - median
        scores = torch.stack([z, -z], dim=1)
        return scores, scores.argmax(1)

    return AdaptiveTarget([encoder], decide, 2)


def check_attack(
    cls: type, params: dict[str, Any] | None = None, encoders: list[Encoder] | None = None, eps: float = EPS
) -> Report:
    params = dict(params or {})
    encoders = encoders or tiny_encoders()
    images, x = tiny_images(32, seed=1), tiny_images(6, seed=2)
    report = Report(f"attack {cls.name}")

    def make(seed: int):
        seed_everything(seed)  # as the runner does before a stage
        attack = cls(eps, **params)
        attack.ctx = RunContext(seed=seed, image_size=x.shape[-1])
        return attack

    def fitted(seed: int):
        attack = make(seed)
        attack.fit(encoders, Unlabeled(images))
        return attack

    state: dict[str, Any] = {}
    if "adaptive" in cls.scenarios and len(cls.scenarios) == 1:
        # an attack of the adaptive scenario alone perturbs a differentiable pipeline with labels
        target = _median_split(encoders[0].eval(), x)
        with torch.no_grad():
            labels = target(x)[1]  # classified right, some near the boundary: an attack can act

        def perturb(attack, images: Tensor) -> Tensor:
            return list(attack.perturb_adaptive(target, images, labels[: len(images)]).values())[-1]

    else:

        def perturb(attack, images: Tensor) -> Tensor:
            return attack.perturb(images)

    def attack():  # the attack fitted with seed 0 (by the label-free check, or here if that one failed)
        if "attack" not in state:
            state["attack"] = fitted(0)
        return state["attack"]

    def adversarial() -> Tensor:
        if "x_adv" not in state:
            state["x_adv"] = perturb(attack(), x)
        return state["x_adv"]

    def label_free() -> str:
        before = [copy.deepcopy(e.state_dict()) for e in encoders]
        stream = Unlabeled(images)
        attack = make(0)
        attack.fit(encoders, stream)
        state["attack"] = attack  # the other checks use it even when the assertions below fail
        for encoder, saved in zip(encoders, before):
            assert all(torch.equal(saved[k], v) for k, v in encoder.state_dict().items()), (
                "fit changed a public encoder's weights or buffers"
            )
            assert all(p.grad is None for p in encoder.parameters()), "fit left gradients on an encoder"
        return f"fit read {stream.passes} pass(es) of unlabeled tensors; encoders untouched"

    def budget() -> str:
        x_adv = adversarial()
        assert x_adv.shape == x.shape, f"perturb changed the shape {tuple(x.shape)} → {tuple(x_adv.shape)}"
        dist = (x_adv - x).abs().max().item()
        assert dist <= eps + 1e-6, f"‖x_adv − x‖∞ = {dist:.5f} > eps = {eps:.5f}"
        return f"‖x_adv − x‖∞ = {dist:.5f} ≤ {eps:.5f}"

    def value_range() -> str:
        x_adv = adversarial()
        if not cls.clamp:
            return "clamp = False: not required"
        assert x_adv.min() >= 0 and x_adv.max() <= 1, f"values in [{x_adv.min():.3f}, {x_adv.max():.3f}]"
        return "values in [0, 1]"

    def effect() -> str:
        changed = (adversarial() != x).float().mean().item()
        assert changed > 0, "perturb returned its input unchanged"
        return f"{100 * changed:.0f}% of values changed"

    def determinism() -> str:
        a, b = perturb(fitted(3), x), perturb(fitted(3), x)
        assert torch.equal(a, b), "two fits with the same seed perturb differently"
        return "same seed, same perturbation"

    def round_trip() -> str:
        original = attack()
        buffer = io.BytesIO()
        torch.save(original.state_dict(), buffer)
        buffer.seek(0)
        fresh = make(0)
        fresh.encoders = list(encoders)  # as the runner does before loading
        fresh.load_state_dict(torch.load(buffer, map_location="cpu", weights_only=True))
        restored = perturb(fresh, x)
        assert torch.equal(restored, perturb(original, x)), "the restored attack perturbs differently"
        return f"state_dict() keys: {', '.join(sorted(original.state_dict())) or 'none'}"

    # every check runs, whatever failed before it (a prerequisite that cannot be made fails it too)
    report.record("label-free fit", label_free)
    report.record("budget", budget)
    report.record("range [0, 1]", value_range)
    report.record("non-zero effect", effect)
    report.record("determinism per seed", determinism)
    report.record("state round trip", round_trip)
    return report


# ---------------------------------------------------------------- defenses


def check_defense(
    cls: type, params: dict[str, Any] | None = None, auxiliaries: int = 1, registry: Registry | None = None
) -> Report:
    victim, *aux = tiny_encoders(1 + auxiliaries)
    data = tiny_labeled()
    report = Report(f"defense {cls.name}")
    state: dict[str, Any] = {}

    def fitted():  # the defended model (from the fit check, or fitted here if that one failed)
        if "model" not in state:
            seed_everything(0)
            defense = cls(**dict(params or {}))
            defense.ctx = RunContext(seed=0, image_size=SIZE, plugins=registry.get if registry else None)
            state["model"] = defense.fit(victim.copy(), [a.copy() for a in aux], data)
        return state["model"]

    def fit() -> str:
        model = fitted()
        assert model.branches, "the defended model has no branch"
        return f"{len(model.branches)} branch(es): {', '.join(b.name for b in model.branches)}"

    def branches() -> str:
        x = data.float_images(slice(0, 8))
        for b in fitted().branches:
            restored = Encoder.from_state(b.encoder.to_state()).eval()
            with torch.no_grad():
                assert torch.allclose(restored(x), b.encoder.eval()(x), atol=1e-5), (
                    f"branch {b.name}: encoder does not survive to_state/from_state"
                )
            if b.head is not None:
                with torch.no_grad():
                    features = b.encoder(x)
                    logits = b.head.eval()(features)
                    again = head_from_state(head_state(b.head))(features)
                assert logits.shape == (len(x), data.num_classes), (
                    f"branch {b.name}: head gives {tuple(logits.shape)}, expected (N, {data.num_classes})"
                )
                assert torch.allclose(logits, again, atol=1e-5), (
                    f"branch {b.name}: head does not survive the cache"
                )
        return "encoders and heads survive the cache; heads give N × classes logits"

    def fusion() -> str:
        model, n, c = fitted(), 5, data.num_classes
        logits = [
            torch.randn(n, c, generator=torch.Generator().manual_seed(i)) for i in range(len(model.branches))
        ]
        fused = model.fuse(logits)
        assert fused.shape == (n, c), f"fuse gives {tuple(fused.shape)}, expected ({n}, {c})"
        score = model.detection_score([t.softmax(1) for t in logits])
        assert score is None or score.shape == (n,), (
            f"detection_score gives {tuple(score.shape)}, expected ({n},)"
        )
        return f"fuse → N × C; detection score: {'none' if score is None else 'N scores'}"

    report.record("fit", fit)
    report.record("branch heads", branches)
    report.record("fusion shapes", fusion)
    return report


# ---------------------------------------------------------------- backbones


def check_backbone(name: str, arch_params: dict[str, Any] | None = None) -> Report:
    report = Report(f"backbone {name}")
    x = tiny_images(4, seed=3).requires_grad_(True)

    def build() -> str:
        (encoder,) = tiny_encoders(1, name, arch_params)
        features = encoder(x)
        assert features.shape == (4, encoder.feature_dim), (
            f"features {tuple(features.shape)}, expected (N, out_dim={encoder.feature_dim})"
        )
        (grad,) = torch.autograd.grad(features.sum(), x)
        assert grad.abs().sum() > 0, "no gradient reaches the input (attacks need one)"
        restored = Encoder.from_state(encoder.to_state()).eval()
        assert torch.allclose(restored(x), features, atol=1e-5), "does not rebuild from its cached state"
        return f"out_dim = {encoder.feature_dim}; gradients reach the input; rebuilds from its state"

    report.record("build, gradients, cache", build)
    return report


# ---------------------------------------------------------------- entry point


def check_plugin(
    kind: str, name: str, params: dict[str, Any] | None = None, registry: Registry | None = None
) -> Report:
    """Run the contract's checks for plugin ``name`` of ``kind`` (attacks, defenses or backbones).

    Bad ``params`` raise ``TypeError``/``ValueError`` (the plugin's options, as one
    :class:`~zepad_bench.params.ParamError` line, or its constructor) before any check: they are the
    caller's mistake, not the plugin's.
    """
    registry = registry or load_registry()
    with plugin_backbones(registry.backbones):
        if kind == "backbones":
            return check_backbone(name, params or None)
        cls = registry.get(kind, name)
        build(cls, dict(params or {}), *((EPS,) if kind == "attacks" else ()))
        if kind == "attacks":
            return check_attack(cls, params)
        if kind == "defenses":
            return check_defense(cls, params, registry=registry)
    raise ValueError(f"the conformance kit checks attacks, defenses and backbones, not {kind}")
